"""Enrolment: who enters which workflow, read from the feeds the service writes.

Three feeds are read incrementally, each with a cursor in ``automation_cursors``:
``transitions`` (``segment_transitions.at``), ``tag_changes`` (``tag_changes.at``) and
``events`` (``events.received_at``). Each read starts ``feed_overlap`` before the cursor,
because a transaction that began earlier can commit after a later one; a row read twice
enrols once, since an enrolment's ``cause`` names the row (``transition:<id>``,
``tag:<id>``, ``event:<event_id>``) and ``(workflow_id, cause)`` is unique. The re-entry
policy (:func:`~rfmflow.automation.journey.may_enter`) and the one-active-journey-per-customer
index decide the rest.

Events also act on journeys already running (:mod:`rfmflow.automation.event_feed`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from rfmflow.automation.definition import Trigger, Workflow
from rfmflow.automation.journey import may_enter, start
from rfmflow.service.db.tables import (
    automation_cursors,
    customer_scores,
    customer_tags,
    enrolments,
    segment_transitions,
    tag_changes,
    workflows,
)

FEEDS = ("transitions", "tag_changes", "events")
FEED_BATCH = 5000


def insert_ignore(conn: Connection, table: sa.Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` in the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def active_workflows(conn: Connection) -> list[tuple[int, int, datetime | None, Workflow]]:
    """(id, version, activated_at, workflow) of every active workflow."""
    from rfmflow.automation.definition import workflow_from_yaml

    w = workflows.c
    rows = conn.execute(
        sa.select(w.id, w.version, w.activated_at, w.yaml, w.name).where(w.status == "active")
    )
    return [(r.id, r.version, r.activated_at, workflow_from_yaml(r.yaml, source=r.name)) for r in rows]


def _segments(conn: Connection, ids: Iterable[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    s = customer_scores.c
    every = list(ids)
    for start_at in range(0, len(every), 1000):
        chunk = every[start_at : start_at + 1000]
        for cid, segment in conn.execute(sa.select(s.customer_id, s.segment).where(s.customer_id.in_(chunk))):
            found[cid] = segment
    return found


def enrol_many(
    conn: Connection,
    workflow_id: int,
    version: int,
    workflow: Workflow,
    candidates: Sequence[tuple[str, str]],
    at: datetime,
) -> int:
    """Enrol ``(customer_id, cause)`` pairs that the re-entry policy lets in; how many entered."""
    e = enrolments.c
    # A cause already enrolled (a feed row read again in the overlap) must not take the place of
    # a new cause of the same customer in this batch.
    causes = sorted({cause for _, cause in candidates})
    seen: set[str] = set()
    for startix in range(0, len(causes), 1000):
        chunk = causes[startix : startix + 1000]
        seen.update(
            conn.execute(sa.select(e.cause).where(e.workflow_id == workflow_id, e.cause.in_(chunk))).scalars()
        )
    candidates = [(cid, cause) for cid, cause in candidates if cause not in seen]
    if not candidates:
        return 0
    ids = sorted({cid for cid, _ in candidates})
    last: dict[str, tuple[datetime, bool]] = {}
    for startix in range(0, len(ids), 1000):
        chunk = ids[startix : startix + 1000]
        rows = conn.execute(
            sa.select(
                e.customer_id,
                sa.func.max(e.enrolled_at),
                sa.func.max(sa.case((e.status == "active", 1), else_=0)),
            )
            .where(e.workflow_id == workflow_id, e.customer_id.in_(chunk))
            .group_by(e.customer_id)
        ).all()
        for cid, latest, active in rows:
            last[cid] = (latest if latest.tzinfo else latest.replace(tzinfo=at.tzinfo), bool(active))
    segments = _segments(conn, ids)
    journey = start(workflow, at)
    values = []
    taken: set[str] = set()
    for cid, cause in candidates:
        latest, active = last.get(cid, (None, False))
        if cid in taken or not may_enter(workflow, latest, active, at):
            continue
        taken.add(cid)
        values.append(
            {
                "workflow_id": workflow_id,
                "workflow_version": version,
                "customer_id": cid,
                "status": "active",
                "step": journey.step,
                "due_at": journey.due_at,
                "waiting_for": None,
                "parked": False,
                "steps_taken": 0,
                "branch": None,
                "segment": segments.get(cid),
                "cause": cause,
                "enrolled_at": at,
            }
        )
    entered = 0
    for startix in range(0, len(values), 1000):
        result = conn.execute(
            insert_ignore(conn, enrolments).returning(enrolments.c.id), values[startix : startix + 1000]
        )
        entered += len(result.all())
    return entered


def enrol_existing(conn: Connection, stored: Any, at: datetime) -> int:
    """``entry: existing`` at activation: enrol everyone in the segment or holding the tag now."""
    workflow: Workflow = stored.workflow
    trigger = workflow.trigger
    if trigger.kind == "entered_segment":
        s = customer_scores.c
        ids = list(conn.execute(sa.select(s.customer_id).where(s.segment == trigger.segment)).scalars())
    elif trigger.kind == "tag_added":
        t = customer_tags.c
        ids = list(conn.execute(sa.select(t.customer_id).where(t.tag == trigger.tag)).scalars())
    else:
        return 0
    cause = f"existing:{at.isoformat()}"
    return enrol_many(conn, stored.id, stored.version, workflow, [(cid, f"{cause}:{cid}") for cid in ids], at)


def _matches_transition(trigger: Trigger, from_segment: str | None, to_segment: str) -> bool:
    if trigger.kind == "entered_segment":
        return to_segment == trigger.segment and from_segment != to_segment
    if trigger.kind == "left_segment":
        return from_segment == trigger.segment and to_segment != trigger.segment
    if trigger.kind == "moved":
        return (trigger.from_segment is None or from_segment == trigger.from_segment) and (
            trigger.segment is None or to_segment == trigger.segment
        )
    return False


def _cursor(conn: Connection, name: str) -> datetime | None:
    c = automation_cursors.c
    return conn.execute(sa.select(c.seen_until).where(c.name == name)).scalar_one_or_none()


def set_cursor(conn: Connection, name: str, until: datetime, now: datetime) -> None:
    c = automation_cursors.c
    done = conn.execute(
        sa.update(automation_cursors).where(c.name == name).values(seen_until=until, updated_at=now)
    ).rowcount
    if not done:
        conn.execute(
            insert_ignore(conn, automation_cursors).values(name=name, seen_until=until, updated_at=now)
        )


def read_window(conn: Connection, name: str, now: datetime, overlap: Any) -> tuple[datetime | None, datetime]:
    """Where to start reading a feed (``None``: from the beginning) and where to stop (``now``)."""
    seen = _cursor(conn, name)
    return (seen - overlap if seen is not None else None), now


def enrol_from_transitions(conn: Connection, now: datetime, overlap: Any) -> int:
    """Enrol from segment moves since the cursor (``entered_segment``, ``left_segment``, ``moved``)."""
    flows = [
        f for f in active_workflows(conn) if f[3].trigger.kind in ("entered_segment", "left_segment", "moved")
    ]
    since, until = read_window(conn, "transitions", now, overlap)
    entered = 0
    if flows:
        t = segment_transitions.c
        query = sa.select(t.id, t.customer_id, t.from_segment, t.to_segment, t.at).where(t.at < until)
        if since is not None:
            query = query.where(t.at >= since)
        earliest = min((f[2] for f in flows if f[2] is not None), default=None)
        if earliest is not None:
            query = query.where(t.at >= earliest)
        per_flow: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for row in conn.execute(query.order_by(t.at, t.id)):
            for wid, _version, activated, wf in flows:
                if activated is not None and row.at < activated:
                    continue
                if _matches_transition(wf.trigger, row.from_segment, row.to_segment):
                    per_flow[wid].append((row.customer_id, f"transition:{row.id}"))
        for wid, version, _activated, wf in flows:
            entered += enrol_many(conn, wid, version, wf, per_flow.get(wid, []), now)
    set_cursor(conn, "transitions", until, now)
    return entered


def enrol_from_tag_changes(conn: Connection, now: datetime, overlap: Any) -> int:
    """Enrol from tag changes since the cursor (``tag_added``, ``tag_removed``)."""
    flows = [f for f in active_workflows(conn) if f[3].trigger.kind in ("tag_added", "tag_removed")]
    since, until = read_window(conn, "tag_changes", now, overlap)
    entered = 0
    if flows:
        t = tag_changes.c
        wanted = {f[3].trigger.tag for f in flows}
        query = sa.select(t.id, t.customer_id, t.tag, t.change, t.at).where(t.at < until, t.tag.in_(wanted))
        if since is not None:
            query = query.where(t.at >= since)
        per_flow: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for row in conn.execute(query.order_by(t.at, t.id)):
            for wid, _version, activated, wf in flows:
                if activated is not None and row.at < activated:
                    continue
                change = "added" if wf.trigger.kind == "tag_added" else "removed"
                if row.tag == wf.trigger.tag and row.change == change:
                    per_flow[wid].append((row.customer_id, f"tag:{row.id}"))
        for wid, version, _activated, wf in flows:
            entered += enrol_many(conn, wid, version, wf, per_flow.get(wid, []), now)
    set_cursor(conn, "tag_changes", until, now)
    return entered


__all__ = [
    "FEEDS",
    "active_workflows",
    "enrol_existing",
    "enrol_from_tag_changes",
    "enrol_from_transitions",
    "enrol_many",
    "insert_ignore",
    "read_window",
    "set_cursor",
]

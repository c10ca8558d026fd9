"""Schedule triggers: ``trigger: {schedule: "weekly 10:00", audience: ...}``.

At each occurrence of the schedule, in the business time zone (``RFMFLOW_TIMEZONE``), every
customer the ``audience`` condition holds for is enrolled:

- ``daily HH:MM``: every day at that time;
- ``weekly HH:MM``: Mondays at that time;
- ``monthly HH:MM``: the 1st of each month at that time.

Exactly once per occurrence: an enrolment's cause is ``schedule:<occurrence>:<customer>``
(the occurrence in UTC, ``20260105T0900Z``) and ``(workflow_id, cause)`` is unique, so two workers racing
over the same occurrence, or one pass repeated after a crash, enrol each customer once. A cursor
per workflow (``automation_cursors``, ``schedule:<workflow id>``), written in the same
transaction, records the occurrence done, so later passes do not look at the audience again.
The workflow's re-entry policy applies as for every trigger: with the default ``never`` a
customer goes through a scheduled workflow once in all; use ``always`` or a cooldown for a
recurring newsletter.

No back-filling: an occurrence before the workflow was activated never fires, and after
downtime (the worker down, the workflow paused) only the latest missed occurrence fires, once,
when the engine next runs; the ones before it are skipped.

Who is in the audience is decided from the customers' current scores, profile and tags (the
same facts as a branch; customers never scored have no segment or scores and match only
conditions that need none).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.automation.definition import Condition, Workflow
from rfmflow.automation.enrol import active_workflows, enrol_many, set_cursor
from rfmflow.automation.journey import holds
from rfmflow.service.db.tables import automation_cursors, customer_scores

_SCHEDULE = re.compile(r"^\s*(daily|weekly|monthly)\s+(\d{1,2}):(\d{2})\s*$")
BATCH = 2000


def _at(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def latest_occurrence(schedule: str, now: datetime, zone: ZoneInfo) -> datetime:
    """The schedule's latest occurrence at or before ``now`` (UTC)."""
    match = _SCHEDULE.match(schedule)
    if match is None:
        raise ValueError(f"not a schedule: {schedule!r}")
    every, hour, minute = match.group(1), int(match.group(2)), int(match.group(3))
    at = time(hour, minute)
    today = now.astimezone(zone).date()
    if every == "daily":
        day = today
    elif every == "weekly":
        day = today - timedelta(days=today.weekday())
    else:
        day = today.replace(day=1)
    moment = _at(day, at, zone)
    while moment > now:
        day = _previous(every, day)
        moment = _at(day, at, zone)
    return moment


def _previous(every: str, day: date) -> date:
    if every == "daily":
        return day - timedelta(days=1)
    if every == "weekly":
        return day - timedelta(days=7)
    return (day - timedelta(days=1)).replace(day=1)


def occurrence_key(moment: datetime) -> str:
    """An occurrence in enrolment causes: compact UTC, ``20260105T0900Z``."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%MZ")


def _cursor_name(workflow_id: int) -> str:
    return f"schedule:{workflow_id}"


def _done_until(conn: Connection, workflow_id: int) -> datetime | None:
    c = automation_cursors.c
    return conn.execute(
        sa.select(c.seen_until).where(c.name == _cursor_name(workflow_id))
    ).scalar_one_or_none()


def audience(conn: Connection, condition: Condition, money_decimals: int, at: datetime) -> list[str]:
    """The scored customers ``condition`` holds for now (read in batches)."""
    from rfmflow.automation.runner import load_facts

    s = customer_scores.c
    query = sa.select(s.customer_id).order_by(s.customer_id)
    if condition.kind == "segment":  # the common case: let the database pick the segment
        query = query.where(s.segment.in_(condition.values))
    ids = list(conn.execute(query).scalars())
    found: list[str] = []
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        rows = [SimpleNamespace(id=i, customer_id=cid, enrolled_at=at) for i, cid in enumerate(chunk)]
        facts = load_facts(conn, rows, money_decimals)
        found.extend(cid for i, cid in enumerate(chunk) if holds(condition, facts[i]))
    return found


def enrol_from_schedules(
    conn: Connection, now: datetime, *, business_zone: str = "UTC", money_decimals: int = 2
) -> dict[str, Any]:
    """Enrol the audience of every scheduled workflow whose occurrence is due; what happened
    (``enrolled`` in all, and ``fired``: the workflows and the occurrence each fired for)."""
    zone = ZoneInfo(business_zone)
    out: dict[str, Any] = {"enrolled": 0, "fired": {}}
    flows: list[tuple[int, int, datetime | None, Workflow]] = [
        f for f in active_workflows(conn) if f[3].trigger.kind == "schedule"
    ]
    for wid, version, activated, workflow in flows:
        trigger = workflow.trigger
        assert trigger.schedule is not None and trigger.audience is not None
        occurrence = latest_occurrence(trigger.schedule, now, zone)
        if activated is not None and occurrence < activated:
            continue  # before activation: not back-filled
        done = _done_until(conn, wid)
        if done is not None and done >= occurrence:
            continue
        members = audience(conn, trigger.audience, money_decimals, now)
        cause = f"schedule:{occurrence_key(occurrence)}"
        entered = enrol_many(conn, wid, version, workflow, [(cid, f"{cause}:{cid}") for cid in members], now)
        set_cursor(conn, _cursor_name(wid), occurrence, now)
        out["enrolled"] += entered
        out["fired"][workflow.name] = {"occurrence": occurrence.isoformat(), "enrolled": entered}
    return out


__all__ = ["audience", "enrol_from_schedules", "latest_occurrence", "occurrence_key"]

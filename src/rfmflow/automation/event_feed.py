"""The events feed: events enrol (``trigger: {event: TYPE}``), move journeys that wait for
them, end journeys whose goal they are, and mark the message they answer.

Read by ``events.received_at`` from the ``events`` cursor with the feed overlap; every effect
is idempotent when an event is read twice:

- enrolment: the cause ``event:<event_id>`` is unique per workflow;
- a wait for an event: only a journey that began waiting at or before the event moves on
  (the wait began at ``due_at - timeout``), and it moves once (it is no longer parked on it);
- a goal: a journey converts once (``status`` leaves ``active``); ``revenue_minor`` is the sum
  of the customer's purchases from enrolment to the end of the attribution window
  (``goal.within``), recomputed from the events each time a purchase in the window arrives;
- replies and clicks: the newest message sent to the customer before the event (or the one
  named by the event's ``outbox_id`` property) gets ``replied_at`` / ``clicked_at`` once.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.automation.enrol import active_workflows, enrol_many, read_window, set_cursor
from rfmflow.automation.journey import event_arrived
from rfmflow.automation.runner import WorkflowCache, _journey
from rfmflow.service.db.tables import enrolments, events, outbox

MARKS = {"reply": "replied_at", "message": "replied_at", "click": "clicked_at"}


def _aware(value: datetime, like: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=like.tzinfo)


def _revenue(conn: Connection, customer_id: str, since: datetime, until: datetime) -> int:
    ev = events.c
    total = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(ev.amount_minor), 0)).where(
            ev.customer_id == customer_id,
            ev.event_type.in_(("purchase", "refund")),
            ev.occurred_at >= since,
            ev.occurred_at <= until,
        )
    ).scalar_one()
    return int(total)


def process_events(
    conn: Connection, now: datetime, overlap: timedelta, cache: WorkflowCache
) -> dict[str, int]:
    """Read the events feed once; counts of what it did."""
    since, until = read_window(conn, "events", now, overlap)
    ev = events.c
    query = sa.select(ev.event_id, ev.customer_id, ev.event_type, ev.occurred_at, ev.properties).where(
        ev.received_at < until
    )
    if since is not None:
        query = query.where(ev.received_at >= since)
    rows = list(conn.execute(query.order_by(ev.received_at, ev.event_id)))
    counts = {"events": len(rows), "enrolled": 0, "moved": 0, "converted": 0, "marked": 0}
    if rows:
        counts["enrolled"] = _enrol(conn, rows, now)
        moved, converted = _journeys(conn, rows, now, cache)
        counts["moved"], counts["converted"] = moved, converted
        counts["marked"] = _mark(conn, rows)
    set_cursor(conn, "events", until, now)
    return counts


def _enrol(conn: Connection, rows: list[Any], now: datetime) -> int:
    flows = [f for f in active_workflows(conn) if f[3].trigger.kind == "event"]
    entered = 0
    for wid, version, activated, wf in flows:
        candidates = [
            (r.customer_id, f"event:{r.event_id}")
            for r in rows
            if r.event_type == wf.trigger.event
            and (activated is None or _aware(r.occurred_at, now) >= activated)
        ]
        entered += enrol_many(conn, wid, version, wf, candidates, now)
    return entered


def _journeys(conn: Connection, rows: list[Any], now: datetime, cache: WorkflowCache) -> tuple[int, int]:
    by_customer: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        by_customer[r.customer_id].append(r)
    e = enrolments.c
    moved = converted = 0
    ids = sorted(by_customer)
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        query = sa.select(enrolments).where(e.customer_id.in_(chunk), e.status.in_(("active", "converted")))
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        for row in conn.execute(query).all():
            workflow = cache.get(conn, row.workflow_id, row.workflow_version)
            goal = workflow.goal
            for event in sorted(by_customer[row.customer_id], key=lambda r: r.occurred_at):
                at = _aware(event.occurred_at, now)
                if goal is not None and event.event_type in (goal.event, "purchase", "refund"):
                    window_end = row.enrolled_at + goal.within
                    if (
                        row.status == "active"
                        and event.event_type == goal.event
                        and row.enrolled_at <= at <= window_end
                    ):
                        conn.execute(
                            sa.update(enrolments)
                            .where(e.id == row.id, e.status == "active")
                            .values(
                                status="converted",
                                converted_at=at,
                                finished_at=now,
                                step=None,
                                due_at=None,
                                waiting_for=None,
                                revenue_minor=_revenue(conn, row.customer_id, row.enrolled_at, window_end),
                            )
                        )
                        converted += 1
                        break
                    if row.status == "converted" and row.enrolled_at <= at <= window_end:
                        conn.execute(
                            sa.update(enrolments)
                            .where(e.id == row.id)
                            .values(
                                revenue_minor=_revenue(conn, row.customer_id, row.enrolled_at, window_end)
                            )
                        )
                if (
                    row.status == "active"
                    and row.parked
                    and row.waiting_for == event.event_type
                    and row.step is not None
                ):
                    step = workflow.step(row.step)
                    began = row.due_at - step.timeout if (row.due_at and step.timeout) else row.enrolled_at
                    if at < began:
                        continue
                    new = event_arrived(workflow, _journey(row), event.event_type, now)
                    if new == _journey(row):
                        continue
                    conn.execute(
                        sa.update(enrolments)
                        .where(e.id == row.id, e.parked.is_(True), e.steps_taken == row.steps_taken)
                        .values(
                            status=new.status,
                            step=new.step,
                            due_at=new.due_at,
                            waiting_for=None,
                            parked=False,
                            steps_taken=new.steps_taken,
                            finished_at=now if new.finished else None,
                        )
                    )
                    from rfmflow.service.db.tables import journey_steps

                    conn.execute(
                        sa.insert(journey_steps).values(
                            enrolment_id=row.id,
                            workflow_id=row.workflow_id,
                            step=row.step,
                            kind="wait",
                            outcome="event",
                            at=now,
                        )
                    )
                    moved += 1
                    break
    return moved, converted


def _mark(
    conn: Connection,
    rows: list[Any],
) -> int:
    o = outbox.c
    marked = 0
    for r in rows:
        column = MARKS.get(r.event_type)
        if column is None:
            continue
        props = r.properties or {}
        target: Any = None
        if isinstance(props, dict) and str(props.get("outbox_id", "")).isdigit():
            target = int(props["outbox_id"])
        else:
            target = conn.execute(
                sa.select(o.id)
                .where(
                    o.customer_id == r.customer_id,
                    o.status == "delivered",
                    o.sent_at <= r.occurred_at,
                )
                .order_by(o.sent_at.desc(), o.id.desc())
                .limit(1)
            ).scalar_one_or_none()
        if target is None:
            continue
        done = conn.execute(
            sa.update(outbox)
            .where(o.id == target, o.customer_id == r.customer_id, getattr(o, column).is_(None))
            .values({column: r.occurred_at})
        ).rowcount
        marked += int(done or 0)
    return marked


__all__ = ["MARKS", "process_events"]

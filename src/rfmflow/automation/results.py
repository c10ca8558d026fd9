"""Results of workflows and broadcasts: what was sent, what happened to it, and what it earned.

Everything is counted inside the database (set-based SQL, the same on SQLite and PostgreSQL)
from the rows the engine and the dispatcher write, and broken down by **segment**: the segment
recorded on the outbox row (messages) or on the enrolment (journeys) when it was decided, so a
customer who has moved since still counts where they were.

Message counts (outbox rows):

- ``messages``: rows decided; ``sent``: rows handed to a channel (``sent_at``: the attempt);
  ``delivered``, ``failed``, ``blocked``, ``skipped``, ``cancelled``, ``unknown``: rows in that
  status; ``waiting``: rows still ``pending``, ``deferred`` or ``sending``;
- ``clicked`` / ``replied``: rows with ``clicked_at`` / ``replied_at`` (tracked links, replies).

Conversions and revenue, within the **attribution window** after the moment that counts:

- a broadcast: after each delivered message's ``sent_at``; ``converted``: recipients with a
  purchase in the window; ``revenue``: the sum of their purchases' amounts in it;
  ``conversion_rate``: converted / delivered;
- a workflow: after each enrolment's ``enrolled_at``; ``converted``: enrolments with a goal event
  (the workflow's goal, a purchase when it has none) in the window (default: the goal's
  ``within``, else 14 days); ``revenue``: purchases in it. Holdout members are measured the same
  way, so the **lift** of a random split compares like with like: the conversion rate of the
  treated enrolments (a split branch) against the holdout's, with the counts;
  ``conversion_rate``: converted / enrolled.

A window runs from the moment (included) for the window's length (excluded). Revenue is in
minor units in the database and returned as a decimal string (``settings.money_decimals``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.automation.definition import WorkflowError, workflow_from_yaml
from rfmflow.core.errors import RfmflowError
from rfmflow.service.db.tables import enrolments, events, journey_steps, outbox, workflows

DEFAULT_WINDOW = timedelta(days=14)
BROADCAST_WINDOW = timedelta(days=7)
MESSAGE_STATUSES = ("delivered", "failed", "blocked", "skipped", "cancelled", "unknown")
WAITING = ("pending", "deferred", "sending")
NO_SEGMENT = "(none)"
"""The segment key of rows decided for a customer with no segment recorded."""


class ResultsError(RfmflowError):
    """Nothing to report on (``status`` 404) or a bad window (422)."""

    def __init__(self, message: str, *, status: int = 404) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# --- SQL pieces -------------------------------------------------------------------------------
def _within(
    conn: Connection, at: sa.ColumnElement[Any], start: sa.ColumnElement[Any], window: timedelta
) -> sa.ColumnElement[bool]:
    """``start <= at < start + window``. SQLite keeps timestamps as text
    ``YYYY-MM-DD HH:MM:SS.ffffff``: the end is built in that form (seconds moved, the fraction
    kept), so text order is time order."""
    seconds = int(window.total_seconds())
    if conn.dialect.name == "postgresql":
        end: sa.ColumnElement[Any] = start + sa.literal_column(f"interval '{seconds} seconds'")
    else:
        end = sa.func.strftime("%Y-%m-%d %H:%M:%S", start, f"+{seconds} seconds").concat(
            sa.func.substr(start, 20)
        )
    return sa.and_(at >= start, at < end)


def _purchases(
    conn: Connection, customer: sa.ColumnElement[Any], start: sa.ColumnElement[Any], window: timedelta
) -> sa.ScalarSelect[Any]:
    e = events.c
    return (
        sa.select(sa.func.coalesce(sa.func.sum(e.amount_minor), 0))
        .where(
            e.customer_id == customer,
            e.event_type == "purchase",
            e.amount_minor.is_not(None),
            _within(conn, e.occurred_at, start, window),
        )
        .scalar_subquery()
    )


def _happened(
    conn: Connection,
    customer: sa.ColumnElement[Any],
    start: sa.ColumnElement[Any],
    window: timedelta,
    event_type: str,
) -> sa.Exists:
    e = events.c
    return (
        sa.select(e.event_id)
        .where(
            e.customer_id == customer, e.event_type == event_type, _within(conn, e.occurred_at, start, window)
        )
        .exists()
    )


def _flag(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.case((condition, 1), else_=0)


def _total(column: sa.ColumnElement[Any], name: str) -> sa.Label[Any]:
    return sa.func.coalesce(sa.func.sum(column), 0).label(name)


def _money(minor: int, decimals: int) -> str:
    return format(Decimal(int(minor)).scaleb(-decimals), "f")


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 6)


def _message_columns(rows: Any) -> list[sa.Label[Any]]:
    """Per-group message counts over a selectable with the outbox's columns."""
    c = rows.c
    return [
        sa.func.count().label("messages"),
        _total(_flag(c.sent_at.is_not(None)), "sent"),
        *(_total(_flag(c.status == s), s) for s in MESSAGE_STATUSES),
        _total(_flag(c.status.in_(WAITING)), "waiting"),
        _total(_flag(c.clicked_at.is_not(None)), "clicked"),
        _total(_flag(c.replied_at.is_not(None)), "replied"),
    ]


MESSAGE_FIELDS = ("messages", "sent", *MESSAGE_STATUSES, "waiting", "clicked", "replied")


def _as_counts(row: Mapping[Any, Any], names: Iterable[str]) -> dict[str, int]:
    return {name: int(row[name]) for name in names}


def _merge(into: dict[str, dict[str, Any]], segment: str | None, values: Mapping[str, Any]) -> None:
    into.setdefault(segment or NO_SEGMENT, {}).update(values)


def _sum(parts: Iterable[Mapping[str, Any]], names: Iterable[str]) -> dict[str, int]:
    listed = list(parts)
    return {name: sum(int(p.get(name, 0)) for p in listed) for name in names}


# --- broadcasts -------------------------------------------------------------------------------
def broadcast_results(
    conn: Connection, broadcast_id: int, *, window: timedelta = BROADCAST_WINDOW, decimals: int = 2
) -> dict[str, Any]:
    """A broadcast's messages, conversions and revenue, in total and per segment."""
    from rfmflow.service.db.tables import broadcasts

    if conn.execute(sa.select(broadcasts.c.id).where(broadcasts.c.id == broadcast_id)).first() is None:
        raise ResultsError(f"no broadcast {broadcast_id}")
    o = outbox.c
    sent = sa.and_(o.status == "delivered", o.sent_at.is_not(None))
    per_row = (
        sa.select(
            o.segment,
            o.status,
            o.sent_at,
            o.clicked_at,
            o.replied_at,
            sa.case((sent, _happened(conn, o.customer_id, o.sent_at, window, "purchase")), else_=False).label(
                "converted"
            ),
            sa.case((sent, _purchases(conn, o.customer_id, o.sent_at, window)), else_=0).label(
                "revenue_minor"
            ),
        )
        .where(o.broadcast_id == broadcast_id)
        .subquery()
    )
    query = sa.select(
        per_row.c.segment,
        *_message_columns(per_row),
        _total(_flag(per_row.c.converted), "converted"),
        _total(per_row.c.revenue_minor, "revenue_minor"),
    ).group_by(per_row.c.segment)
    by_segment: dict[str, dict[str, Any]] = {}
    for row in conn.execute(query).mappings():
        counts = _as_counts(row, (*MESSAGE_FIELDS, "converted", "revenue_minor"))
        _merge(by_segment, row["segment"], counts)
    total = _sum(by_segment.values(), (*MESSAGE_FIELDS, "converted", "revenue_minor"))
    return {
        "broadcast_id": broadcast_id,
        "window_days": window.total_seconds() / 86400,
        "totals": _finish(total, decimals, base="delivered"),
        "by_segment": {seg: _finish(v, decimals, base="delivered") for seg, v in sorted(by_segment.items())},
    }


def _finish(values: Mapping[str, Any], decimals: int, *, base: str) -> dict[str, Any]:
    out = {k: v for k, v in values.items() if k != "revenue_minor"}
    if "revenue_minor" in values:
        out["revenue"] = _money(int(values["revenue_minor"]), decimals)
    if "converted" in values:
        out["conversion_rate"] = _rate(int(values["converted"]), int(values.get(base, 0)))
    return out


# --- workflows --------------------------------------------------------------------------------
ENROLMENT_FIELDS = ("enrolled", "converted", "revenue_minor")


def workflow_results(
    conn: Connection, name: str, *, window: timedelta | None = None, decimals: int = 2
) -> dict[str, Any]:
    """A workflow's enrolments, messages, conversions and revenue: in total, per step and per
    segment, with the holdout lift of its random splits."""
    w = workflows.c
    found = conn.execute(sa.select(w.id, w.yaml).where(w.name == name)).one_or_none()
    if found is None:
        raise ResultsError(f"no workflow {name!r}")
    workflow_id, text = int(found.id), str(found.yaml)
    goal_event, goal_window = "purchase", DEFAULT_WINDOW
    try:
        goal = workflow_from_yaml(text, source=name).goal
    except WorkflowError:  # stored by an older version: count with the defaults
        goal = None
    if goal is not None:
        goal_event, goal_window = goal.event, goal.within
    window = window or goal_window

    en = enrolments.c
    per_enrolment = (
        sa.select(
            en.id,
            en.segment,
            en.branch,
            en.status,
            _happened(conn, en.customer_id, en.enrolled_at, window, goal_event).label("converted"),
            _purchases(conn, en.customer_id, en.enrolled_at, window).label("revenue_minor"),
        )
        .where(en.workflow_id == workflow_id)
        .subquery()
    )
    pe = per_enrolment.c
    enrolment_columns = [
        sa.func.count().label("enrolled"),
        _total(_flag(pe.converted), "converted"),
        _total(pe.revenue_minor, "revenue_minor"),
    ]

    by_segment: dict[str, dict[str, Any]] = {}
    for row in conn.execute(sa.select(pe.segment, *enrolment_columns).group_by(pe.segment)).mappings():
        _merge(by_segment, row["segment"], _as_counts(row, ENROLMENT_FIELDS))
    messages = sa.select(outbox).where(outbox.c.workflow_id == workflow_id).subquery()
    for row in conn.execute(
        sa.select(messages.c.segment, *_message_columns(messages)).group_by(messages.c.segment)
    ).mappings():
        _merge(by_segment, row["segment"], _as_counts(row, MESSAGE_FIELDS))
    fields = (*ENROLMENT_FIELDS, *MESSAGE_FIELDS)
    by_segment = {seg: {f: v.get(f, 0) for f in fields} for seg, v in by_segment.items()}

    return {
        "workflow": name,
        "goal_event": goal_event,
        "window_days": window.total_seconds() / 86400,
        "totals": _finish(_sum(by_segment.values(), fields), decimals, base="enrolled"),
        "by_segment": {s: _finish(v, decimals, base="enrolled") for s, v in sorted(by_segment.items())},
        "steps": _steps(conn, workflow_id, per_enrolment, enrolment_columns, messages, decimals),
        "splits": _splits(conn, per_enrolment, enrolment_columns, decimals),
    }


def _steps(
    conn: Connection,
    workflow_id: int,
    per_enrolment: sa.Subquery,
    enrolment_columns: list[sa.Label[Any]],
    messages: sa.Subquery,
    decimals: int,
) -> list[dict[str, Any]]:
    """Per step: the enrolments that went through it (and their conversions and revenue) and
    the messages it decided, each per segment."""
    js, pe = journey_steps.c, per_enrolment.c
    passed = (
        sa.select(js.step, js.enrolment_id, sa.func.min(js.kind).label("kind"))
        .where(js.workflow_id == workflow_id)
        .group_by(js.step, js.enrolment_id)
        .subquery()
    )
    steps: dict[str, dict[str, Any]] = {}
    query = (
        sa.select(passed.c.step, pe.segment, sa.func.min(passed.c.kind).label("kind"), *enrolment_columns)
        .select_from(passed.join(per_enrolment, pe.id == passed.c.enrolment_id))
        .group_by(passed.c.step, pe.segment)
    )
    for row in conn.execute(query).mappings():
        step = steps.setdefault(row["step"], {"kind": row["kind"], "segments": {}})
        _merge(step["segments"], row["segment"], _as_counts(row, ENROLMENT_FIELDS))
    m = messages.c
    query = (
        sa.select(m.step, m.segment, *_message_columns(messages))
        .where(m.step.is_not(None))
        .group_by(m.step, m.segment)
    )
    for row in conn.execute(query).mappings():
        step = steps.setdefault(row["step"], {"kind": "send", "segments": {}})
        _merge(step["segments"], row["segment"], _as_counts(row, MESSAGE_FIELDS))
    fields = (*ENROLMENT_FIELDS, *MESSAGE_FIELDS)
    out = []
    for name, step in sorted(steps.items()):
        segments = {s: {f: v.get(f, 0) for f in fields} for s, v in step["segments"].items()}
        out.append(
            {
                "step": name,
                "kind": step["kind"],
                "totals": _finish(_sum(segments.values(), fields), decimals, base="enrolled"),
                "by_segment": {s: _finish(v, decimals, base="enrolled") for s, v in sorted(segments.items())},
            }
        )
    return out


def _splits(
    conn: Connection, per_enrolment: sa.Subquery, enrolment_columns: list[sa.Label[Any]], decimals: int
) -> dict[str, Any] | None:
    """Conversion per split branch, treated (any branch) against the holdout, and the lift."""
    pe = per_enrolment.c
    holdout = sa.or_(pe.branch == "holdout", pe.status == "holdout")
    group = sa.case((holdout, "holdout"), else_=pe.branch).label("group")
    rows = conn.execute(
        sa.select(group, *enrolment_columns)
        .where(sa.or_(pe.branch.is_not(None), pe.status == "holdout"))
        .group_by(group)
    ).mappings()
    branches = {str(r["group"]): _as_counts(r, ENROLMENT_FIELDS) for r in rows}
    if "holdout" not in branches:
        return None
    held = branches["holdout"]
    treated = _sum([v for k, v in branches.items() if k != "holdout"], ENROLMENT_FIELDS)
    lift = relative = None
    if treated["enrolled"] and held["enrolled"]:
        rate_t = treated["converted"] / treated["enrolled"]
        rate_h = held["converted"] / held["enrolled"]
        lift = round(rate_t - rate_h, 6)
        relative = round((rate_t - rate_h) / rate_h, 6) if rate_h else None
    return {
        "branches": {k: _finish(v, decimals, base="enrolled") for k, v in sorted(branches.items())},
        "treated": _finish(treated, decimals, base="enrolled"),
        "holdout": _finish(held, decimals, base="enrolled"),
        "lift": lift,
        "relative_lift": relative,
    }


__all__ = ["BROADCAST_WINDOW", "DEFAULT_WINDOW", "ResultsError", "broadcast_results", "workflow_results"]

"""What automation did with one customer, for their page: journeys (enrolments in workflows),
messages (outbox rows) and open hand-off tasks. Newest first; each list is capped."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.service.db.tables import enrolments, outbox, tasks, workflows

JOURNEYS_LIMIT = 50
MESSAGES_LIMIT = 50
PRIORITY_ORDER = ("urgent", "high", "normal", "low")


def priority_rank(column: sa.ColumnElement[Any]) -> sa.ColumnElement[int]:
    """``urgent`` first, then ``high``, ``normal``, ``low``, then anything else."""
    return sa.case(*((column == name, i) for i, name in enumerate(PRIORITY_ORDER)), else_=len(PRIORITY_ORDER))


def journeys(conn: Connection, customer_id: str, *, decimals: int) -> list[dict[str, Any]]:
    """The workflows the customer is or was in: status, step, when enrolled and converted."""
    e, w = enrolments.c, workflows.c
    rows = conn.execute(
        sa.select(
            e.id,
            w.name.label("workflow"),
            e.workflow_version,
            e.status,
            e.step,
            e.branch,
            e.segment,
            e.enrolled_at,
            e.finished_at,
            e.converted_at,
            e.revenue_minor,
        )
        .select_from(enrolments.join(workflows, w.id == e.workflow_id))
        .where(e.customer_id == customer_id)
        .order_by(e.enrolled_at.desc(), e.id.desc())
        .limit(JOURNEYS_LIMIT)
    ).mappings()
    out = []
    for r in rows:
        item = dict(r)
        minor = item.pop("revenue_minor")
        item["revenue"] = None if minor is None else Decimal(int(minor)).scaleb(-decimals)
        out.append(item)
    return out


def messages(conn: Connection, customer_id: str) -> list[dict[str, Any]]:
    """The customer's outbox rows, newest first, with where they came from."""
    o, w = outbox.c, workflows.c
    rows = conn.execute(
        sa.select(
            o.id,
            o.channel,
            o.status,
            o.created_at,
            o.sent_at,
            o.clicked_at,
            o.replied_at,
            o.reason,
            o.step,
            o.broadcast_id,
            o.message,
            w.name.label("workflow"),
        )
        .select_from(outbox.outerjoin(workflows, w.id == o.workflow_id))
        .where(o.customer_id == customer_id)
        .order_by(o.created_at.desc(), o.id.desc())
        .limit(MESSAGES_LIMIT)
    ).mappings()
    out = []
    for r in rows:
        item = dict(r)
        message = item.pop("message") or {}
        text = str(message.get("subject") or message.get("text") or "") if isinstance(message, dict) else ""
        item["summary"] = text if len(text) <= 80 else text[:79] + "…"
        out.append(item)
    return out


def open_tasks(conn: Connection, customer_id: str | None = None, *, limit: int = 200) -> list[dict[str, Any]]:
    """Open hand-off tasks (of one customer, or all), most urgent and oldest first."""
    t, w = tasks.c, workflows.c
    query = (
        sa.select(
            t.id,
            t.customer_id,
            t.queue,
            t.priority,
            t.note,
            t.segment,
            t.created_at,
            w.name.label("workflow"),
        )
        .select_from(tasks.outerjoin(workflows, w.id == t.workflow_id))
        .where(t.status == "open")
        .order_by(priority_rank(t.priority), t.created_at, t.id)
        .limit(limit)
    )
    if customer_id is not None:
        query = query.where(t.customer_id == customer_id)
    return [dict(r) for r in conn.execute(query).mappings()]


__all__ = ["journeys", "messages", "open_tasks", "priority_rank"]

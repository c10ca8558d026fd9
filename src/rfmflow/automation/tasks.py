"""Hand-off tasks: what a workflow's ``handoff`` step asks a person to do.

A task is ``open`` until someone closes it as ``done`` or ``cancelled`` (who and when are
kept, and the audit log has a row). Lists come most urgent first (``urgent``, ``high``,
``normal``, ``low``), oldest first within a priority, in pages with an opaque cursor.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.automation.definition import PRIORITIES
from rfmflow.core.errors import RfmflowError
from rfmflow.service.db.tables import audit_log, tasks, workflows

TASK_STATUSES = ("open", "done", "cancelled")
CLOSED = ("done", "cancelled")


def _rank() -> sa.ColumnElement[int]:
    """0 for urgent ... 3 for low."""
    return sa.case({p: i for i, p in enumerate(PRIORITIES)}, value=tasks.c.priority, else_=len(PRIORITIES))


class TaskError(RfmflowError):
    """A task cannot be read or changed as asked; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def _cursor(rank: int, task_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([rank, task_id]).encode()).decode().rstrip("=")


def _read_cursor(text: str) -> tuple[int, int]:
    try:
        rank, task_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return int(rank), int(task_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise TaskError("cursor: not a cursor this list gave out") from None


def task_out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "customer_id": row.customer_id,
        "queue": row.queue,
        "priority": row.priority,
        "note": row.note,
        "status": row.status,
        "segment": row.segment,
        "workflow": row.workflow_name,
        "enrolment_id": row.enrolment_id,
        "created_at": row.created_at.isoformat(),
        "closed_at": row.closed_at.isoformat() if row.closed_at else None,
        "closed_by": row.closed_by,
    }


def _select() -> sa.Select[Any]:
    return sa.select(tasks, workflows.c.name.label("workflow_name"), _rank().label("rank")).select_from(
        tasks.outerjoin(workflows, workflows.c.id == tasks.c.workflow_id)
    )


def list_tasks(
    conn: Connection,
    *,
    status: str | None = "open",
    queue: str | None = None,
    priority: str | None = None,
    customer_id: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """A page of tasks, most urgent and oldest first; ``next_cursor`` when there are more."""
    if status is not None and status not in TASK_STATUSES:
        raise TaskError(f"status: {status!r} is not one of {', '.join(TASK_STATUSES)}")
    if priority is not None and priority not in PRIORITIES:
        raise TaskError(f"priority: {priority!r} is not one of {', '.join(PRIORITIES)}")
    query = _select()
    for column, value in (("status", status), ("queue", queue), ("priority", priority)):
        if value is not None:
            query = query.where(tasks.c[column] == value)
    if customer_id is not None:
        query = query.where(tasks.c.customer_id == customer_id)
    if cursor:
        rank, after = _read_cursor(cursor)
        position = _rank()
        query = query.where(sa.or_(position > rank, sa.and_(position == rank, tasks.c.id > after)))
    rows = conn.execute(query.order_by(sa.literal_column("rank"), tasks.c.id).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    open_counts = sa.select(tasks.c.priority, sa.func.count()).where(tasks.c.status == "open")
    counts = {priority: int(n) for priority, n in conn.execute(open_counts.group_by(tasks.c.priority))}
    return {
        "tasks": [task_out(r) for r in rows],
        "next_cursor": _cursor(rows[-1].rank, rows[-1].id) if more and rows else None,
        "open_by_priority": {p: int(counts.get(p, 0)) for p in PRIORITIES},
    }


def get_task(conn: Connection, task_id: int) -> dict[str, Any]:
    row = conn.execute(_select().where(tasks.c.id == task_id)).first()
    if row is None:
        raise TaskError(f"no task {task_id}", 404)
    return task_out(row)


def close_task(
    conn: Connection, task_id: int, status: str, *, actor: str, at: datetime, note: str = ""
) -> dict[str, Any]:
    """Close an open task as ``done`` or ``cancelled``; closing a closed task is a 409."""
    if status not in CLOSED:
        raise TaskError(f"status: {status!r} is not one of {', '.join(CLOSED)}")
    current = get_task(conn, task_id)
    if current["status"] != "open":
        raise TaskError(f"task {task_id} is {current['status']} already", 409)
    changed = conn.execute(
        tasks.update()
        .where(tasks.c.id == task_id, tasks.c.status == "open")
        .values(status=status, closed_at=at, closed_by=actor)
    ).rowcount
    if changed != 1:  # closed by someone else in between
        raise TaskError(f"task {task_id} was closed by someone else", 409)
    details = {"status": status, **({"note": note} if note else {})}
    conn.execute(
        sa.insert(audit_log).values(
            at=at, actor=actor, action="task.close", target=str(task_id), details=details
        )
    )
    return get_task(conn, task_id)


__all__ = ["TASK_STATUSES", "TaskError", "close_task", "get_task", "list_tasks", "task_out"]

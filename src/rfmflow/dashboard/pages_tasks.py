"""``/tasks``: the hand-off queue (open tasks most urgent first, filters by queue, priority and
status, pages) with a Done / Cancel button for admins and agents. The numbers are
:func:`rfmflow.automation.tasks.list_tasks`, exactly as ``GET /v1/tasks`` answers them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from rfmflow.automation.definition import PRIORITIES
from rfmflow.automation.tasks import TASK_STATUSES, TaskError, close_task, list_tasks
from rfmflow.dashboard.web import (
    BadForm,
    check_csrf,
    first,
    query_url,
    read_form,
    redirect,
    render,
    require_permission,
    signed_in,
    svc,
)
from rfmflow.service.db.engine import run_write

PAGE_SIZE = 50


def register(app: FastAPI) -> None:
    @app.get("/tasks", include_in_schema=False)
    async def tasks_page(request: Request) -> Response:
        session = signed_in(request, "customers:read")
        q = request.query_params
        filters: dict[str, Any] = {
            "status": q.get("status") or "open",
            "queue": q.get("queue") or None,
            "priority": q.get("priority") or None,
        }
        error = None

        def read() -> dict[str, Any]:
            with svc(request).engine.connect() as conn:
                return list_tasks(
                    conn,
                    status=None if filters["status"] == "all" else filters["status"],
                    queue=filters["queue"],
                    priority=filters["priority"],
                    limit=PAGE_SIZE,
                    cursor=q.get("cursor") or None,
                )

        try:
            found = await run_in_threadpool(read)
        except TaskError as err:
            error, found = str(err), {"tasks": [], "next_cursor": None, "open_by_priority": {}}
        more = (
            query_url("/tasks", {**{k: v for k, v in filters.items() if v}, "cursor": found["next_cursor"]})
            if found["next_cursor"]
            else None
        )
        return render(
            request,
            "tasks.html.j2",
            session=session,
            page="tasks",
            status=422 if error else 200,
            title="Hand-offs",
            tasks=found["tasks"],
            open_by_priority=found["open_by_priority"],
            filters=filters,
            statuses=(*TASK_STATUSES, "all"),
            priorities=PRIORITIES,
            more=more,
            error=error,
            can_close=session.allows("customers:write"),
            done=q.get("done"),
        )

    @app.post("/tasks/{task_id}/close", include_in_schema=False)
    async def close(request: Request, task_id: int) -> Response:
        session = signed_in(request, "customers:read")
        form = await read_form(request)
        check_csrf(request, session, form)
        require_permission(session, "customers:write", "close tasks")
        status = first(form, "status") or "done"
        note = (first(form, "note") or "").strip()[:2000]
        try:
            await run_in_threadpool(
                run_write,
                svc(request).engine,
                lambda conn: close_task(
                    conn, task_id, status, actor=session.actor, at=datetime.now(UTC), note=note
                ),
            )
        except TaskError as err:
            raise BadForm(err.status, str(err)) from None
        return redirect(f"/tasks?done={task_id}")


__all__ = ["register"]

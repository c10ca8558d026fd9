"""Hand-off tasks over HTTP.

=======================================  =====================  ==========================================
endpoint                                 roles                  what
=======================================  =====================  ==========================================
``GET /v1/tasks``                        admin, analyst, agent  tasks (``status`` open by default,
                                                                ``queue``, ``priority``, ``customer_id``),
                                                                most urgent first; ``cursor``/``limit``
``GET /v1/tasks/{id}``                   admin, analyst, agent  one task
``POST /v1/tasks/{id}/close``            admin, agent           ``{"status": "done"|"cancelled",
                                                                "note": "..."}``; 409 when already closed
=======================================  =====================  ==========================================
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from rfmflow.automation.tasks import TaskError, close_task, get_task, list_tasks
from rfmflow.service.app import ServiceDep, require
from rfmflow.service.auth import ApiKey
from rfmflow.service.db.engine import run_write

Reader = Annotated[ApiKey, Depends(require("customers:read"))]


Closer = Annotated[ApiKey, Depends(require("customers:write", "close tasks"))]


class CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["done", "cancelled"] = "done"
    note: Annotated[str, Field(max_length=2000)] = ""


def _error(err: TaskError) -> JSONResponse:
    if err.status == 422:
        field, _, reason = str(err).partition(": ")
        return JSONResponse(
            {"detail": [{"loc": ["query", field], "msg": reason, "type": "value_error"}]}, 422
        )
    return JSONResponse({"detail": str(err)}, err.status)


def register(app: FastAPI) -> None:
    @app.get(
        "/v1/tasks", tags=["automation"], summary="Hand-off tasks, most urgent first (admin, analyst, agent)"
    )
    def get_tasks(
        svc: ServiceDep,
        _key: Reader,
        status: Annotated[str | None, Query(description="open (default), done, cancelled or all")] = "open",
        queue: str | None = None,
        priority: str | None = None,
        customer_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: str | None = None,
    ) -> Any:
        try:
            with svc.engine.connect() as conn:
                return list_tasks(
                    conn,
                    status=None if status == "all" else status,
                    queue=queue,
                    priority=priority,
                    customer_id=customer_id,
                    limit=limit,
                    cursor=cursor,
                )
        except TaskError as err:
            return _error(err)

    @app.get("/v1/tasks/{task_id}", tags=["automation"], summary="One task (admin, analyst, agent)")
    def get_one(svc: ServiceDep, _key: Reader, task_id: int) -> Any:
        try:
            with svc.engine.connect() as conn:
                return get_task(conn, task_id)
        except TaskError as err:
            return _error(err)

    @app.post("/v1/tasks/{task_id}/close", tags=["automation"], summary="Close a task (admin, agent)")
    def close(svc: ServiceDep, key: Closer, task_id: int, body: CloseIn) -> Any:
        try:
            return run_write(
                svc.engine,
                lambda conn: close_task(
                    conn, task_id, body.status, actor=f"key:{key.id}", at=datetime.now(UTC), note=body.note
                ),
            )
        except TaskError as err:
            if err.status == 422:
                return JSONResponse(
                    {"detail": [{"loc": ["body", "status"], "msg": str(err), "type": "value_error"}]}, 422
                )
            return _error(err)


__all__ = ["register"]

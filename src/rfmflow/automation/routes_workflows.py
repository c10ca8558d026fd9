"""Workflows, consent and the customer's own data (export, erase) over HTTP.

===================================================  ===============  =====================================
endpoint                                             roles            what
===================================================  ===============  =====================================
``GET /v1/workflows``                                admin, analyst   every workflow with its enrolments
``POST /v1/workflows``                               admin            create or change one (a new YAML is
                                                                      a new version); body: the workflow
                                                                      as JSON, or ``{"yaml": "..."}``
``GET /v1/workflows/templates``                      admin, analyst   the built-in templates
``POST /v1/workflows/from-template/{template}``      admin            store a built-in template (draft)
``GET /v1/workflows/{name}``                         admin, analyst   one workflow, its YAML and counts
``PUT /v1/workflows/{name}``                         admin            as POST; the name must match
``POST /v1/workflows/{name}/activate|pause|stop``    admin            change its status
``GET /v1/customers/{id}/consent``                   admin, analyst,  consent per channel and its history
                                                     agent
``PUT /v1/customers/{id}/consent/{channel}``         admin, agent     ``{"status", "reason"}``
===================================================  ===============  =====================================

A workflow that does not load answers 422 with the path and the reason from the checks
(``workflow 'x': steps[0] (a).send.channel: unknown channel 'sms' ...``). Every change writes
an ``audit_log`` row with the key (``key:<id>``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NoReturn, TypeVar

from fastapi import Body, Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Connection

from rfmflow.automation import builtin_workflow_text, builtin_workflows
from rfmflow.automation import workflows_store as store
from rfmflow.automation.consent import CHANNELS, ConsentError, consent_of, history, set_consent
from rfmflow.automation.definition import WorkflowError
from rfmflow.service.app import ServiceDep, require
from rfmflow.service.auth import ApiKey
from rfmflow.service.db.engine import run_write
from rfmflow.service.tags import customer_known

T = TypeVar("T")
Admin = Annotated[ApiKey, Depends(require("admin"))]
Reader = Annotated[ApiKey, Depends(require("data:read"))]
CustomerReader = Annotated[ApiKey, Depends(require("customers:read"))]
_admin = require("admin")


ConsentWriter = Annotated[ApiKey, Depends(require("customers:write", "change consent"))]


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["opted_in", "opted_out"]
    reason: str = "manual"


def _actor(key: ApiKey) -> str:
    return f"key:{key.id}"


def _now() -> datetime:
    return datetime.now(UTC)


def _invalid(message: str, where: str = "body") -> NoReturn:
    raise HTTPException(422, [{"loc": [where], "msg": message, "type": "value_error"}])


def _write(svc: Any, work: Callable[[Connection], T]) -> T:
    try:
        return run_write(svc.engine, work)
    except store.WorkflowNotFound as err:
        raise HTTPException(404, str(err)) from None
    except store.WorkflowConflict as err:
        raise HTTPException(409, str(err)) from None
    except WorkflowError as err:
        _invalid(str(err))


def _parse(body: Any, source: str = "") -> tuple[Any, str]:
    if isinstance(body, dict) and set(body) == {"yaml"}:
        if not isinstance(body["yaml"], str):
            _invalid("yaml: expected the workflow's YAML as a string")
        data: str | dict[str, Any] = body["yaml"]
    elif isinstance(body, dict):
        data = body
    else:
        _invalid('expected the workflow as a JSON object, or {"yaml": "..."}')
    try:
        return store.parse(data, source)
    except WorkflowError as err:
        _invalid(str(err))


def register(app: FastAPI) -> None:
    @app.get("/v1/workflows", tags=["workflows"], summary="Workflows and their enrolments (admin, analyst)")
    def list_workflows(svc: ServiceDep, _key: Reader) -> dict[str, Any]:
        with svc.engine.connect() as conn:
            return {
                "workflows": [w.as_dict(store.enrolment_counts(conn, w.id)) for w in store.list_all(conn)]
            }

    @app.get("/v1/workflows/templates", tags=["workflows"], summary="Built-in templates (admin, analyst)")
    def templates(_key: Reader) -> dict[str, Any]:
        return {
            "templates": [
                {"name": name, "description": wf.description, "trigger": wf.trigger.describe()}
                for name, wf in builtin_workflows().items()
            ]
        }

    def _save(svc: Any, key: ApiKey, body: Any, name: str | None = None) -> JSONResponse:
        workflow, text = _parse(body, name or "")
        if name is not None and workflow.name != name:
            _invalid(f"name: the body names {workflow.name!r} but the URL names {name!r}")
        stored, what = _write(
            svc, lambda conn: store.save(conn, workflow, text, actor=_actor(key), at=_now())
        )
        return JSONResponse(
            {"result": what, "workflow": stored.as_dict()}, status_code=201 if what == "created" else 200
        )

    @app.post("/v1/workflows", tags=["workflows"], summary="Create or change a workflow (admin)")
    def post_workflow(svc: ServiceDep, key: Admin, body: Annotated[Any, Body()]) -> JSONResponse:
        return _save(svc, key, body)

    @app.post(
        "/v1/workflows/from-template/{template}",
        tags=["workflows"],
        summary="Store a built-in template as a draft workflow (admin)",
    )
    def from_template(svc: ServiceDep, key: Admin, template: str) -> JSONResponse:
        try:
            text = builtin_workflow_text(template)
        except WorkflowError as err:
            raise HTTPException(404, str(err)) from None
        return _save(svc, key, {"yaml": text})

    @app.get("/v1/workflows/{name}", tags=["workflows"], summary="One workflow (admin, analyst)")
    def get_workflow(svc: ServiceDep, _key: Reader, name: str) -> dict[str, Any]:
        with svc.engine.connect() as conn:
            try:
                stored = store.get(conn, name)
            except store.WorkflowNotFound as err:
                raise HTTPException(404, str(err)) from None
            return stored.as_dict(store.enrolment_counts(conn, stored.id))

    @app.put("/v1/workflows/{name}", tags=["workflows"], summary="Change a workflow (admin)")
    def put_workflow(svc: ServiceDep, key: Admin, name: str, body: Annotated[Any, Body()]) -> JSONResponse:
        return _save(svc, key, body, name)

    def _status_route(action: str) -> None:
        @app.post(
            f"/v1/workflows/{{name}}/{action}",
            tags=["workflows"],
            summary=f"{action.capitalize()} a workflow (admin)",
            name=f"workflow_{action}",
        )
        def change(svc: ServiceDep, key: Admin, name: str) -> dict[str, Any]:
            return _write(
                svc, lambda conn: store.set_status(conn, name, action, actor=_actor(key), at=_now())
            )

    for action in ("activate", "pause", "stop"):
        _status_route(action)

    @app.get("/v1/customers/{customer_id}/consent", tags=["consent"], summary="Consent per channel")
    def get_consent(svc: ServiceDep, _key: CustomerReader, customer_id: str) -> dict[str, Any]:
        with svc.engine.connect() as conn:
            if not customer_known(conn, customer_id):
                raise HTTPException(404, f"no customer {customer_id!r}")
            return {
                "customer_id": customer_id,
                "consent": [c.as_dict() for c in consent_of(conn, customer_id)],
                "history": history(conn, customer_id),
            }

    @app.put("/v1/customers/{customer_id}/consent/{channel}", tags=["consent"], summary="Change consent")
    def put_consent(
        svc: ServiceDep, key: ConsentWriter, customer_id: str, channel: str, body: ConsentIn
    ) -> dict[str, Any]:
        if channel not in CHANNELS:
            raise HTTPException(
                422,
                [
                    {
                        "loc": ["path", "channel"],
                        "msg": f"expected one of {', '.join(CHANNELS)}",
                        "type": "value_error",
                    }
                ],
            )

        def work(conn: Connection) -> dict[str, Any]:
            if not customer_known(conn, customer_id):
                raise HTTPException(404, f"no customer {customer_id!r}")
            try:
                changed = set_consent(
                    conn, customer_id, channel, body.status, body.reason, actor=_actor(key), at=_now()
                )
            except ConsentError as err:
                field_name = str(err).split(":", 1)[0]
                raise HTTPException(
                    422, [{"loc": ["body", field_name], "msg": str(err), "type": "value_error"}]
                ) from None
            current = consent_of(conn, customer_id, [channel])[0].as_dict()
            return {"customer_id": customer_id, "changed": changed, **current}

        return run_write(svc.engine, work)


__all__ = ["register"]

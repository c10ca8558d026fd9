"""The HTTP API: ``create_app(settings)`` builds a FastAPI app (nothing is built at import).

Endpoints (roles in brackets):

- ``POST /v1/events`` [admin, ingest]: one event object, or a batch (``{"batch": [...]}`` or
  a JSON array) of up to 1,000 events. A batch answers 200 with one result per item
  (``accepted``, ``duplicate``, ``rejected`` with field errors); ``?atomic=true`` makes it
  all or nothing (422 and nothing written when any item is rejected). A single event answers
  200 (``accepted`` or ``duplicate``) or 422 with field errors. Limits: 32 KB per event,
  500 KB per request (413).
- ``GET /v1/customers``, ``GET /v1/customers/{customer_id}`` and the other reads: route modules
  (:func:`service_routes`).
- ``GET /healthz`` (the process answers), ``GET /readyz`` (the database answers and is
  migrated), ``GET /metrics`` (Prometheus text), ``GET /openapi.json``, ``GET /docs``
  (a self-contained page; nothing is fetched from the internet). These need no key.

Keys go in ``Authorization: Bearer rfm_...`` (or ``X-API-Key``); a missing or unknown key is
401, a key whose role may not do what was asked is 403.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rfmflow.service.auth import ApiKey, authenticate, roles_with
from rfmflow.service.db.engine import create_db_engine
from rfmflow.service.db.migrate import current_revision, head_revision
from rfmflow.service.docs_page import render_docs
from rfmflow.service.events import MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES, EventIn
from rfmflow.service.ingest import FieldError, ItemResult, ingest, raw_event_id, validate_item
from rfmflow.service.metrics import CONTENT_TYPE, Metrics
from rfmflow.service.settings import Settings

log = logging.getLogger("rfmflow.service.http")

ACTIONS = {
    "events:write": "write events",
    "customers:read": "read customers",
    "customers:write": "change customers' tags, consent and tasks",
    "data:read": "read segments and runs",
    "data:export": "export data",
    "admin": "administer the service",
}


@dataclass
class ServiceState:
    """What the request handlers share: settings, the database engine and the metrics."""

    settings: Settings
    engine: Engine
    metrics: Metrics
    head: str


def service(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


ServiceDep = Annotated[ServiceState, Depends(service)]


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def require(permission: str, doing: str | None = None) -> Callable[[Request], ApiKey]:
    """A dependency: the request's API key, which must allow ``permission`` (a 403 says the key
    may not ``doing``, by default the permission's description)."""
    challenge = {"WWW-Authenticate": 'Bearer realm="rfmflow"'}
    allowed = ", ".join(roles_with(permission))
    what = doing or ACTIONS[permission]

    def dependency(request: Request) -> ApiKey:
        presented = _presented_key(request)
        if presented is None:
            raise HTTPException(
                401, "missing API key: send 'Authorization: Bearer rfm_...' (rfmflow keys create)", challenge
            )
        with service(request).engine.connect() as conn:
            key = authenticate(conn, presented)
        if key is None:
            raise HTTPException(401, "unknown or revoked API key", challenge)
        request.state.api_key = key
        if not key.allows(permission):
            raise HTTPException(
                403, f"a key with role {key.role!r} may not {what}; roles that may: {allowed}"
            )
        return key

    return dependency


class TooLarge(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body is {int(declared) / 1024:.1f} KB; the limit is {limit // 1024} KB")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body is over the {limit // 1024} KB limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(message: str) -> JSONResponse:
    return JSONResponse(
        {
            "detail": f"{message} (limits: {MAX_EVENT_BYTES // 1024} KB per event, "
            f"{MAX_BATCH_BYTES // 1024} KB and {MAX_BATCH_EVENTS} events per request)"
        },
        status_code=413,
    )


def _unprocessable(errors: list[dict[str, Any]], **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": errors, **extra}, status_code=422)


def _item_size(item: Any) -> int:
    return len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _validate_batch(items: list[Any]) -> list[EventIn | tuple[FieldError, ...]]:
    out: list[EventIn | tuple[FieldError, ...]] = []
    for item in items:
        size = _item_size(item)
        if size > MAX_EVENT_BYTES:
            message = f"event is {size / 1024:.1f} KB; the limit is {MAX_EVENT_BYTES // 1024} KB"
            out.append((FieldError((), message, "payload_too_large"),))
        else:
            out.append(validate_item(item))
    return out


def _name_rejected(results: list[ItemResult], items: list[Any]) -> list[ItemResult]:
    return [
        ItemResult(r.index, raw_event_id(items[r.index]), r.status, r.errors) if r.event_id is None else r
        for r in results
    ]


# --- response models (for the OpenAPI schema) -----------------------------------------------
class ErrorOut(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ItemOut(BaseModel):
    index: int
    event_id: str | None
    status: str
    errors: list[ErrorOut]


class BatchOut(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    items: list[ItemOut]


class EventOut(BaseModel):
    event_id: str
    status: str


def _event_body_schema() -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/EventIn"}
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        ref,
                        {
                            "type": "object",
                            "properties": {
                                "batch": {"type": "array", "items": ref, "maxItems": MAX_BATCH_EVENTS}
                            },
                            "required": ["batch"],
                        },
                        {"type": "array", "items": ref, "maxItems": MAX_BATCH_EVENTS},
                    ]
                }
            }
        },
    }


# --- middleware ---------------------------------------------------------------------------
class RequestLog:
    """Times every request for ``/metrics`` and writes one JSON log line per request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.request_seconds.labels(scope["method"], route, str(status)).observe(elapsed)
            self._log(scope, route, status, elapsed)

    @staticmethod
    def _log(scope: Scope, route: str, status: int, elapsed: float) -> None:
        state: MutableMapping[str, Any] = scope.get("state") or {}
        key = state.get("api_key")
        fields: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
        }
        if key is not None:
            fields["key_id"] = key.id
        if "ingest" in state:
            fields.update(state["ingest"])
        log.info("request", extra=fields)


# --- the app ------------------------------------------------------------------------------
def _package_version() -> str:
    try:
        return version("rfmflow")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    routes: Sequence[Callable[[FastAPI], None]] | None = None,
) -> FastAPI:
    """The service's ASGI app with ``routes`` (default: :func:`service_routes`). Without
    ``engine`` one is made from the settings and disposed when the app shuts down; a given
    engine stays the caller's. The schema must already be migrated (``rfmflow serve`` does it;
    ``/readyz`` tells)."""
    owned = engine is None
    db = engine if engine is not None else create_db_engine(settings.database_url)
    state = ServiceState(settings=settings, engine=db, metrics=Metrics(), head=head_revision())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if owned:
                db.dispose()

    app = FastAPI(
        title="rfmflow",
        version=_package_version(),
        description="Event ingest and live RFM segments. Send keys as `Authorization: Bearer rfm_...`.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = state
    app.add_middleware(RequestLog, metrics=state.metrics)
    app.add_exception_handler(sa.exc.OperationalError, _database_unavailable)
    _routes(app)
    for register in service_routes() if routes is None else routes:
        register(app)
    _openapi(app)
    return app


def service_routes() -> list[Callable[[FastAPI], None]]:
    """The service's own route groups, each a module with ``register(app)``. The product's
    whole app (dashboard, automation, alerts too) is put together one layer up, in
    :func:`rfmflow.cli.app.build_app`."""
    from rfmflow.service import (
        routes_customers,
        routes_exports,
        routes_history,
        routes_imports,
        routes_predictions,
        routes_profiles,
        routes_scoring,
        routes_sources,
        routes_tags,
    )

    return [
        routes_sources.register,
        routes_scoring.register,
        routes_predictions.register,
        routes_imports.register,
        routes_profiles.register,
        routes_tags.register,
        routes_customers.register,  # GET /v1/customers, /v1/customers/{id}, .../segment
        routes_history.register,  # GET /v1/snapshots, /v1/transitions/moves
        routes_exports.register,  # GET /v1/exports/...
    ]


async def _database_unavailable(_request: Request, err: Exception) -> JSONResponse:
    """A database that cannot be reached (for example while checking a key) is a 503."""
    log.error("database unavailable", extra={"error": str(err).strip().splitlines()[0]})
    return JSONResponse(
        {"detail": "the database is unavailable; nothing was written, retry later"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def _openapi(app: FastAPI) -> None:
    default = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["EventIn"] = EventIn.model_json_schema(ref_template="#/components/schemas/{model}")
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["operations"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="The database answers and its schema is current")
    def readyz(svc: ServiceDep) -> JSONResponse:
        try:
            with svc.engine.connect() as conn:
                revision = current_revision(conn)
        except sa.exc.SQLAlchemyError as err:
            log.warning("readiness check failed", extra={"error": str(err).splitlines()[0]})
            return JSONResponse({"status": "unavailable", "reason": "database unreachable"}, status_code=503)
        body = {
            "status": "ready",
            "database": svc.engine.dialect.name,
            "revision": revision,
            "head": svc.head,
        }
        if revision != svc.head:
            body.update(status="unavailable", reason="schema not migrated: run `rfmflow db upgrade`")
            return JSONResponse(body, status_code=503)
        return JSONResponse(body)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    def metrics(svc: ServiceDep) -> Response:
        return Response(svc.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(render_docs(app.openapi()))

    @app.post(
        "/v1/events",
        tags=["events"],
        summary="Send one event or a batch of up to 1,000",
        description=(
            "One event object answers `{event_id, status}` (200; `status` is `accepted` or `duplicate`) "
            'or 422 with field errors. A batch (`{"batch": [...]}` or a JSON array) answers 200 with one '
            "result per item; with `atomic=true` it is all or nothing (422 when any item is rejected). "
            "Limits: 32 KB per event, 500 KB and 1,000 events per request (413). Role: admin or ingest."
        ),
        openapi_extra={"requestBody": _event_body_schema()},
        responses={
            200: {"model": BatchOut, "description": "per-item results (a batch) or EventOut (one event)"},
            401: {"description": "missing or unknown API key"},
            403: {"description": "the key's role may not write events"},
            413: {"description": "an event over 32 KB or a request over 500 KB / 1,000 events"},
            422: {"description": "field errors: `{detail: [{loc, msg, type}]}`"},
        },
    )
    async def post_events(
        request: Request,
        svc: ServiceDep,
        _key: Annotated[ApiKey, Depends(require("events:write"))],
        atomic: Annotated[
            bool, Query(description="all or nothing: write no item when any is rejected")
        ] = False,
    ) -> JSONResponse:
        try:
            body = await _read_body(request, MAX_BATCH_BYTES)
        except TooLarge as err:
            svc.metrics.reject("size", source="api")
            return _too_large(err.message)
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            where = getattr(err, "pos", 0)
            return _unprocessable(
                [{"loc": ["body", where], "msg": f"invalid JSON: {err}", "type": "json_invalid"}]
            )
        if isinstance(payload, dict) and set(payload) == {"batch"}:
            payload = payload["batch"]
            if not isinstance(payload, list):
                return _unprocessable(
                    [{"loc": ["body", "batch"], "msg": "must be a list", "type": "list_type"}]
                )
        if isinstance(payload, list):
            return await _post_batch(request, svc, payload, atomic)
        if len(body) > MAX_EVENT_BYTES:
            svc.metrics.reject("size", source="api")
            return _too_large(
                f"event is {len(body) / 1024:.1f} KB; the limit is {MAX_EVENT_BYTES // 1024} KB"
            )
        return await _post_one(request, svc, payload)


async def _run_ingest(
    svc: ServiceState, items: list[EventIn | tuple[FieldError, ...]], atomic: bool
) -> list[ItemResult] | JSONResponse:
    try:
        return await run_in_threadpool(ingest, svc.engine, items, svc.settings, atomic=atomic)
    except sa.exc.SQLAlchemyError as err:
        log.error("ingest failed: database error", extra={"error": str(err).splitlines()[0]})
        return JSONResponse(
            {"detail": "the database is unavailable; nothing was written, retry later"},
            status_code=503,
            headers={"Retry-After": "1"},
        )


async def _post_batch(request: Request, svc: ServiceState, items: list[Any], atomic: bool) -> JSONResponse:
    if len(items) > MAX_BATCH_EVENTS:
        svc.metrics.reject("size", source="api", count=len(items))
        return _too_large(f"batch has {len(items)} events; the limit is {MAX_BATCH_EVENTS}")
    if not items:
        return _unprocessable([{"loc": ["body", "batch"], "msg": "the batch is empty", "type": "too_short"}])
    validated = await run_in_threadpool(_validate_batch, items)
    outcome = await _run_ingest(svc, validated, atomic)
    if isinstance(outcome, JSONResponse):
        return outcome
    results = _name_rejected(outcome, items)
    svc.metrics.count_results(results, source="api")
    counts = {
        "accepted": sum(r.status == "accepted" for r in results),
        "duplicates": sum(r.status == "duplicate" for r in results),
        "rejected": sum(r.status == "rejected" for r in results),
    }
    request.state.ingest = counts
    body = {**counts, "items": [r.as_dict() for r in results]}
    if atomic and counts["rejected"]:
        detail = [
            {"loc": ["body", "batch", r.index, *e.loc], "msg": e.msg, "type": e.type}
            for r in results
            if r.status == "rejected"
            for e in r.errors
        ]
        return JSONResponse({"detail": detail, **body}, status_code=422)
    return JSONResponse(body)


async def _post_one(request: Request, svc: ServiceState, item: Any) -> JSONResponse:
    validated = validate_item(item)
    outcome = await _run_ingest(svc, [validated], False)
    if isinstance(outcome, JSONResponse):
        return outcome
    result = _name_rejected(outcome, [item])[0]
    svc.metrics.count_results([result], source="api")
    request.state.ingest = {"status": result.status}
    if result.status == "rejected":
        return _unprocessable(
            [{"loc": ["body", *e.loc], "msg": e.msg, "type": e.type} for e in result.errors],
        )
    return JSONResponse({"event_id": result.event_id, "status": result.status})

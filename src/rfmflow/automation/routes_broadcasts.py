"""Broadcasts over HTTP (role: admin). Every change writes an ``audit_log`` row (``key:<id>``).

==============================================  ==================================================
endpoint                                        what
==============================================  ==================================================
``GET /v1/broadcasts/preview?channel=...&...``  audience count for the customer list's filters
                                                (same query parameters as ``GET /v1/customers``)
``POST /v1/broadcasts/preview``                 the same for ``{channel, audience}``
``POST /v1/broadcasts``                         create a draft (201)
``GET /v1/broadcasts``                          the latest broadcasts
``GET /v1/broadcasts/{id}``                     one broadcast, its outbox rows per status
``GET /v1/broadcasts/{id}/preview``             its audience now
``POST /v1/broadcasts/{id}/start``              write its outbox rows (``confirm_count`` above the
                                                confirmation size; 409 when missing or moved)
``POST /v1/broadcasts/{id}/pause``              hold it; ``resume`` lets it go on
``POST /v1/broadcasts/{id}/stop``               the kill switch: cancels every pending row at once
==============================================  ==================================================
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NoReturn, TypeVar

from fastapi import Body, Depends, FastAPI, HTTPException, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection

from rfmflow.automation.broadcasts import (
    Audience,
    BroadcastError,
    ConfirmationNeeded,
    create_broadcast,
    get_broadcast,
    list_broadcasts,
    outbox_counts,
    pause,
    preview,
    resume,
    settle,
    start,
    stop,
)
from rfmflow.automation.consent import CHANNELS
from rfmflow.service.app import ServiceDep, ServiceState, require
from rfmflow.service.auth import ApiKey
from rfmflow.service.customer_search import CustomerFilter, SearchError, check_segments
from rfmflow.service.db.engine import run_write
from rfmflow.service.routes_customers import FilterDep

T = TypeVar("T")
Admin = Annotated[ApiKey, Depends(require("admin"))]
BroadcastId = Annotated[int, Path(ge=1)]
Channel = Literal["telegram", "email", "webhook"]
assert set(CHANNELS) == {"telegram", "email", "webhook"}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PreviewIn(_Body):
    channel: Channel
    audience: Audience = Field(default_factory=Audience)


class BroadcastIn(_Body):
    name: str = Field(min_length=1, max_length=200)
    channel: Channel
    message: dict[str, Any] = Field(
        description="templates as in a workflow's send step: text, subject and html (e-mail), "
        "buttons, payload"
    )
    vars: dict[str, Any] | None = Field(default=None, description="values the templates may use")
    audience: Audience = Field(default_factory=Audience, description="the filters of GET /v1/customers")
    scheduled_at: datetime | None = Field(default=None, description="send from then (default: when started)")
    cap_policy: Literal["skip", "defer"] = Field(
        default="skip", description="past a frequency cap: skip the customer, or defer the message"
    )


class StartIn(_Body):
    confirm_count: int | None = Field(
        default=None,
        ge=0,
        description="the audience count the preview showed (needed above the confirm size)",
    )


def _actor(key: ApiKey) -> str:
    return f"key:{key.id}"


def _now() -> datetime:
    return datetime.now(UTC)


def _fail(err: BroadcastError) -> NoReturn:
    if err.status == 422:
        raise HTTPException(422, [{"loc": list(err.loc), "msg": err.message, "type": "value_error"}])
    raise HTTPException(err.status, err.message)


def _check_audience(conn: Connection, f: CustomerFilter, where: tuple[str, ...]) -> None:
    problems = f.problems()
    try:
        if problems:
            raise SearchError(problems)
        check_segments(conn, f.segments, param="segment")
    except SearchError as err:
        raise HTTPException(
            422, [{"loc": [*where, p], "msg": m, "type": "value_error"} for p, m in err.problems]
        ) from None


def _preview(svc: ServiceState, audience: Audience, channel: str, where: tuple[str, ...]) -> dict[str, Any]:
    with svc.engine.connect() as conn:
        _check_audience(conn, audience.to_filter(), where)
        counts = preview(conn, svc.settings, audience, channel)
    above = svc.settings.broadcast_confirm_above
    return {
        "channel": channel,
        **counts,
        "confirm_above": above,
        "needs_confirmation": counts["audience"] > above,
    }


def _write(svc: ServiceState, work: Callable[[Connection], T]) -> T:
    try:
        return run_write(svc.engine, work)
    except BroadcastError as err:
        _fail(err)


def _shown(svc: ServiceState, broadcast_id: int) -> dict[str, Any]:
    def work(conn: Connection) -> dict[str, Any]:
        settle(conn, broadcast_id, _now())
        b = get_broadcast(conn, broadcast_id)
        return {**b.as_dict(), "outbox": outbox_counts(conn, broadcast_id)}

    return _write(svc, work)


def register(app: FastAPI) -> None:
    """Add this module's routes to ``app``."""

    @app.get(
        "/v1/broadcasts/preview",
        tags=["broadcasts"],
        summary="Count an audience before sending: the customer list's filters (role: admin)",
        description=(
            "The query parameters of `GET /v1/customers` choose the audience; `audience` equals that list's "
            "`total`. `opted_out`: of them, opted out of the channel; `no_address`: of the others, no "
            "address on it; `reachable`: the rest. `needs_confirmation`: starting will need `confirm_count`."
        ),
    )
    def preview_query(svc: ServiceDep, _key: Admin, f: FilterDep, channel: Channel) -> dict[str, Any]:
        audience = Audience(
            segment=list(f.segments) or None,
            lifecycle=list(f.lifecycles) or None,
            tag=list(f.tags_all) or None,
            tag_any=list(f.tags_any) or None,
            tag_none=list(f.tags_none) or None,
            r_score_min=f.r_score.low,
            r_score_max=f.r_score.high,
            f_score_min=f.f_score.low,
            f_score_max=f.f_score.high,
            m_score_min=f.m_score.low,
            m_score_max=f.m_score.high,
            recency_min=f.recency.low,
            recency_max=f.recency.high,
            frequency_min=f.frequency.low,
            frequency_max=f.frequency.high,
            monetary_min=f.monetary.low,
            monetary_max=f.monetary.high,
            q=f.q,
        )
        return _preview(svc, audience, channel, ("query",))

    @app.post(
        "/v1/broadcasts/preview",
        tags=["broadcasts"],
        summary="Count an audience given as JSON (role: admin)",
    )
    def preview_body(svc: ServiceDep, _key: Admin, body: PreviewIn) -> dict[str, Any]:
        return _preview(svc, body.audience, body.channel, ("body", "audience"))

    @app.post(
        "/v1/broadcasts", tags=["broadcasts"], status_code=201, summary="Create a draft broadcast (admin)"
    )
    def post_broadcast(svc: ServiceDep, key: Admin, body: BroadcastIn) -> dict[str, Any]:
        with svc.engine.connect() as conn:
            _check_audience(conn, body.audience.to_filter(), ("body", "audience"))

        def work(conn: Connection) -> dict[str, Any]:
            b = create_broadcast(
                conn,
                name=body.name,
                channel=body.channel,
                message=body.message,
                variables=body.vars,
                audience=body.audience,
                scheduled_at=body.scheduled_at,
                cap_policy=body.cap_policy,
                actor=_actor(key),
                at=_now(),
            )
            return b.as_dict()

        return _write(svc, work)

    @app.get("/v1/broadcasts", tags=["broadcasts"], summary="The latest broadcasts (role: admin)")
    def get_broadcasts(
        svc: ServiceDep, _key: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> dict[str, Any]:
        with svc.engine.connect() as conn:
            return {"items": [b.as_dict() for b in list_broadcasts(conn, limit=limit)]}

    @app.get("/v1/broadcasts/{broadcast_id}", tags=["broadcasts"], summary="One broadcast (role: admin)")
    def get_one(svc: ServiceDep, _key: Admin, broadcast_id: BroadcastId) -> dict[str, Any]:
        return _shown(svc, broadcast_id)

    @app.get(
        "/v1/broadcasts/{broadcast_id}/preview",
        tags=["broadcasts"],
        summary="A broadcast's audience now (role: admin)",
    )
    def preview_one(svc: ServiceDep, _key: Admin, broadcast_id: BroadcastId) -> dict[str, Any]:
        with svc.engine.connect() as conn:
            try:
                b = get_broadcast(conn, broadcast_id)
            except BroadcastError as err:
                _fail(err)
        return {"broadcast_id": broadcast_id, **_preview(svc, b.audience, b.channel, ("audience",))}

    @app.post(
        "/v1/broadcasts/{broadcast_id}/start",
        tags=["broadcasts"],
        summary="Start: write one outbox row per customer, idempotently (role: admin)",
        description=(
            "Above `RFMFLOW_BROADCAST_CONFIRM_ABOVE` customers the body must repeat the previewed count as "
            "`confirm_count`; 409 (with `audience`) when it is missing or the audience moved more than "
            "`RFMFLOW_BROADCAST_CONFIRM_TOLERANCE` from it. Starting again writes nothing twice."
        ),
    )
    def post_start(
        svc: ServiceDep,
        key: Admin,
        broadcast_id: BroadcastId,
        body: Annotated[StartIn | None, Body()] = None,
    ) -> Any:
        confirm = body.confirm_count if body is not None else None
        try:
            return start(
                svc.engine, svc.settings, broadcast_id, confirm_count=confirm, actor=_actor(key), now=_now()
            )
        except ConfirmationNeeded as err:
            return JSONResponse(
                {"detail": err.message, "audience": err.audience, "confirm_above": err.confirm_above},
                status_code=409,
            )
        except BroadcastError as err:
            _fail(err)

    @app.post("/v1/broadcasts/{broadcast_id}/pause", tags=["broadcasts"], summary="Pause (role: admin)")
    def post_pause(svc: ServiceDep, key: Admin, broadcast_id: BroadcastId) -> dict[str, Any]:
        try:
            return pause(svc.engine, broadcast_id, actor=_actor(key), now=_now()).as_dict()
        except BroadcastError as err:
            _fail(err)

    @app.post("/v1/broadcasts/{broadcast_id}/resume", tags=["broadcasts"], summary="Resume (role: admin)")
    def post_resume(svc: ServiceDep, key: Admin, broadcast_id: BroadcastId) -> dict[str, Any]:
        try:
            return resume(svc.engine, broadcast_id, actor=_actor(key), now=_now()).as_dict()
        except BroadcastError as err:
            _fail(err)

    @app.post(
        "/v1/broadcasts/{broadcast_id}/stop",
        tags=["broadcasts"],
        summary="Kill switch: stop now and cancel every pending row (role: admin)",
    )
    def post_stop(svc: ServiceDep, key: Admin, broadcast_id: BroadcastId) -> dict[str, Any]:
        try:
            b, cancelled = stop(svc.engine, broadcast_id, actor=_actor(key), now=_now())
        except BroadcastError as err:
            _fail(err)
        return {**b.as_dict(), "cancelled": cancelled}


__all__ = ["register"]

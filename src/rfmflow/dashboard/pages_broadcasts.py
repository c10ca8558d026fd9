"""``/broadcasts``: the latest broadcasts with their status and outbox counts;
``/broadcasts/{id}``: one broadcast's results by segment (as ``GET /v1/broadcasts/{id}/results``
answers them) and the admin's buttons (start, pause, resume, stop: the kill switch);
``/broadcasts/new``: the admin's form (channel, message, audience by segment, tags and the
customer list's ranges) with the audience counted before anything is stored.

Starting above ``RFMFLOW_BROADCAST_CONFIRM_ABOVE`` customers needs the count the page showed to
be confirmed, exactly as ``POST /v1/broadcasts/{id}/start`` needs ``confirm_count``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from rfmflow.automation.broadcasts import (
    Audience,
    BroadcastError,
    ConfirmationNeeded,
    check_message,
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
from rfmflow.automation.results import ResultsError, broadcast_results
from rfmflow.dashboard.automation_charts import grouped_bars
from rfmflow.dashboard.pages_customers import tag_names
from rfmflow.dashboard.session import Session
from rfmflow.dashboard.web import BadForm, check_csrf, first, read_form, redirect, render, signed_in, svc
from rfmflow.service.customer_search import SearchError, check_segments
from rfmflow.service.db.engine import run_write
from rfmflow.service.scoring_schemes import active_scheme

LIST_LIMIT = 100
ACTIONS = ("start", "pause", "resume", "stop")
DONE = {"start": "started", "pause": "paused", "resume": "resumed", "stop": "stopped", "created": "created"}
RANGES = ("r_score", "f_score", "m_score", "recency", "frequency")
BAR_MEASURES = (("delivered", "delivered"), ("clicked", "clicked"), ("converted", "converted"))
OUTBOX_ORDER = (
    "pending",
    "deferred",
    "sending",
    "delivered",
    "failed",
    "blocked",
    "skipped",
    "cancelled",
    "unknown",
)


def _actor(session: Session) -> str:
    return f"key:{session.key.id}"


def _admin_only(session: Session, what: str) -> None:
    if not session.allows("admin"):
        raise BadForm(403, f"a {session.key.role} may not {what} (admin only)")


def read_broadcast_form(
    conn: Connection, form: dict[str, list[str]]
) -> tuple[dict[str, Any], Audience | None, dict[str, str]]:
    """The new-broadcast form: the values as given, the audience (None when it has errors)
    and the errors by field name."""
    errors: dict[str, str] = {}
    given: dict[str, Any] = {
        "name": (first(form, "name") or "").strip(),
        "channel": first(form, "channel") or "",
        "subject": first(form, "subject") or "",
        "text": (first(form, "text") or "").replace("\r\n", "\n"),
        "segment": [s for s in form.get("segment", []) if s],
        "tag": [t for t in form.get("tag", []) if t],
        "tag_none": [t for t in form.get("tag_none", []) if t],
        "q": (first(form, "q") or "").strip(),
        "cap_policy": first(form, "cap_policy") or "skip",
    }
    data: dict[str, Any] = {}
    for key in ("segment", "tag", "tag_none"):
        if given[key]:
            data[key] = given[key]
    if given["q"]:
        data["q"] = given["q"]
    for name in RANGES:
        for end in ("min", "max"):
            key = f"{name}_{end}"
            text = (first(form, key) or "").strip()
            given[key] = text
            if not text:
                continue
            if not text.isdigit():
                errors[key] = f"{text!r} is not a whole number of 0 or more"
                continue
            data[key] = int(text)
    if given["channel"] not in CHANNELS:
        errors["channel"] = f"choose one of {', '.join(CHANNELS)}"
    if given["cap_policy"] not in ("skip", "defer"):
        errors["cap_policy"] = "must be skip or defer"
    audience = None
    if not errors:
        try:
            audience = Audience.model_validate(data)
        except ValidationError as err:
            for e in err.errors():
                errors.setdefault(str(e["loc"][0]), str(e["msg"]))
    if audience is not None:
        problems = list(audience.to_filter().problems())
        try:
            check_segments(conn, tuple(given["segment"]), param="segment")
        except SearchError as err:
            problems += list(err.problems)
        for param, message in problems:
            errors.setdefault(param, message)
        if problems:
            audience = None
    return given, audience, errors


def _message(given: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"text": given["text"]}
    if given["channel"] == "email":
        out["subject"] = given["subject"]
    return out


def _new_page(
    request: Request,
    session: Session,
    *,
    given: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    counts: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    state = svc(request)
    with state.engine.connect() as conn:
        segments = [s.name for s in active_scheme(conn).scheme.segments]
        all_tags = tag_names(conn)
    return render(
        request,
        "broadcast_new.html.j2",
        session=session,
        page="broadcasts",
        title="New broadcast",
        status=status,
        given=given
        or {"channel": "telegram", "segment": [], "tag": [], "tag_none": [], "cap_policy": "skip"},
        errors=errors or {},
        counts=counts,
        segments=segments,
        tags=all_tags,
        channels=CHANNELS,
        ranges=(
            ("r_score", "R score"),
            ("f_score", "F score"),
            ("m_score", "M score"),
            ("recency", "Recency (days)"),
            ("frequency", "Frequency"),
        ),
        confirm_above=state.settings.broadcast_confirm_above,
    )


def _detail(
    request: Request,
    session: Session,
    broadcast_id: int,
    *,
    action_error: str | None = None,
    status: int = 200,
) -> Response:
    state = svc(request)

    def read(conn: Connection) -> tuple[Any, dict[str, int], dict[str, Any], dict[str, Any] | None]:
        settle(conn, broadcast_id, datetime.now(UTC))
        b = get_broadcast(conn, broadcast_id)
        counts = outbox_counts(conn, broadcast_id)
        results = broadcast_results(conn, broadcast_id, decimals=state.settings.money_decimals)
        audience = None
        if b.status == "draft" and session.allows("admin"):
            audience = preview(conn, state.settings, b.audience, b.channel)
            audience["needs_confirmation"] = audience["audience"] > state.settings.broadcast_confirm_above
        return b, counts, results, audience

    try:
        b, counts, results, audience = run_write(state.engine, read)
    except (BroadcastError, ResultsError) as err:
        return render(
            request,
            "error.html.j2",
            session=session,
            status=404,
            title="No such broadcast",
            message=err.message,
        )
    chart = None
    if results["by_segment"]:
        chart = grouped_bars(
            list(results["by_segment"].items()), BAR_MEASURES, label=f"{b.name}: results by segment"
        )
    done = request.query_params.get("done")
    return render(
        request,
        "broadcast.html.j2",
        session=session,
        page="broadcasts",
        title=f"Broadcast {b.name}",
        status=status,
        b=b,
        outbox=[(s, counts[s]) for s in OUTBOX_ORDER if s in counts],
        outbox_total=sum(counts.values()),
        results=results,
        chart=chart,
        audience=audience,
        confirm_above=state.settings.broadcast_confirm_above,
        can_change=session.allows("admin"),
        action_error=action_error,
        notice=f"broadcast {DONE[done]}" if done in DONE else None,
        filters=b.audience.stored(),
    )


def register(app: FastAPI) -> None:
    @app.get("/broadcasts", include_in_schema=False)
    def broadcasts_page(request: Request) -> Response:
        session = signed_in(request, "data:read")
        state = svc(request)
        with state.engine.connect() as conn:
            items: list[dict[str, Any]] = [
                {"b": b, "outbox": outbox_counts(conn, b.id)} for b in list_broadcasts(conn, limit=LIST_LIMIT)
            ]
        for item in items:
            o = item["outbox"]
            item["total"] = sum(o.values())
            item["waiting"] = sum(o.get(s, 0) for s in ("pending", "deferred", "sending"))
        return render(
            request,
            "broadcasts.html.j2",
            session=session,
            page="broadcasts",
            title="Broadcasts",
            items=items,
            limit=LIST_LIMIT,
            can_change=session.allows("admin"),
        )

    @app.get("/broadcasts/new", include_in_schema=False)
    def new_page(request: Request) -> Response:
        return _new_page(request, signed_in(request, "admin"))

    @app.post("/broadcasts/new", include_in_schema=False)
    async def new_post(request: Request) -> Response:
        session = await run_in_threadpool(signed_in, request, "data:read")
        form = await read_form(request)
        check_csrf(request, session, form)
        _admin_only(session, "create broadcasts")
        state = svc(request)
        action = first(form, "action")

        def work() -> Response:
            with state.engine.connect() as conn:
                given, audience, errors = read_broadcast_form(conn, form)
                if action not in ("preview", "create"):
                    errors["action"] = "must be preview or create"
                counts = None
                if audience is not None and not errors:
                    counts = preview(conn, state.settings, audience, given["channel"])
                    counts["needs_confirmation"] = counts["audience"] > state.settings.broadcast_confirm_above
            if not errors and action == "create":
                if not given["name"]:
                    errors["name"] = "give the broadcast a name"
                else:
                    try:
                        check_message(given["channel"], _message(given), None)
                    except BroadcastError as err:
                        errors[str(err.loc[-1]) if err.loc else "text"] = err.message
            if errors or action == "preview":
                return _new_page(
                    request, session, given=given, errors=errors, counts=counts, status=422 if errors else 200
                )
            assert audience is not None

            def create(conn: Connection) -> int:
                b = create_broadcast(
                    conn,
                    name=given["name"],
                    channel=given["channel"],
                    message=_message(given),
                    variables=None,
                    audience=audience,
                    scheduled_at=None,
                    cap_policy=given["cap_policy"],
                    actor=_actor(session),
                    at=datetime.now(UTC),
                )
                return b.id

            try:
                new_id = run_write(state.engine, create)
            except BroadcastError as err:
                errors[str(err.loc[-1]) if err.loc else "name"] = err.message
                return _new_page(
                    request, session, given=given, errors=errors, counts=counts, status=err.status
                )
            return redirect(f"/broadcasts/{new_id}?done=created")

        return await run_in_threadpool(work)

    @app.get("/broadcasts/{broadcast_id:int}", include_in_schema=False)
    def broadcast_page(request: Request, broadcast_id: int) -> Response:
        return _detail(request, signed_in(request, "data:read"), broadcast_id)

    @app.post("/broadcasts/{broadcast_id:int}/action", include_in_schema=False)
    async def broadcast_action(request: Request, broadcast_id: int) -> Response:
        session = await run_in_threadpool(signed_in, request, "data:read")
        form = await read_form(request)
        check_csrf(request, session, form)
        _admin_only(session, "start, pause or stop broadcasts")
        state = svc(request)
        action = first(form, "action")
        actor, now = _actor(session), datetime.now(UTC)

        def work() -> Response:
            try:
                if action == "start":
                    confirmed = first(form, "confirm") == "yes"
                    text = first(form, "confirm_count") or ""
                    count = int(text) if confirmed and text.isdigit() else None
                    start(
                        state.engine, state.settings, broadcast_id, confirm_count=count, actor=actor, now=now
                    )
                elif action == "pause":
                    pause(state.engine, broadcast_id, actor=actor, now=now)
                elif action == "resume":
                    resume(state.engine, broadcast_id, actor=actor, now=now)
                elif action == "stop":
                    stop(state.engine, broadcast_id, actor=actor, now=now)
                else:
                    return _detail(
                        request,
                        session,
                        broadcast_id,
                        action_error=f"action: must be one of {', '.join(ACTIONS)}",
                        status=422,
                    )
            except ConfirmationNeeded as err:
                message = (
                    f"confirm: this broadcast reaches {err.audience:,} customers "
                    f"(more than {err.confirm_above:,}); "
                    "tick the confirmation box with the count shown and start again"
                    if first(form, "confirm") != "yes"
                    else err.message
                )
                return _detail(request, session, broadcast_id, action_error=message, status=409)
            except BroadcastError as err:
                if err.status == 404:
                    return render(
                        request,
                        "error.html.j2",
                        session=session,
                        status=404,
                        title="No such broadcast",
                        message=err.message,
                    )
                return _detail(request, session, broadcast_id, action_error=err.message, status=err.status)
            return redirect(f"/broadcasts/{broadcast_id}?done={action}")

        return await run_in_threadpool(work)


__all__ = ["read_broadcast_form", "register"]

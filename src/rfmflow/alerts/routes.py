"""Alerts and reports over HTTP, and the alerts loop in the app's lifespan.

=============================================  ===============  ==========================================
endpoint                                       roles            what
=============================================  ===============  ==========================================
``GET /v1/alerts/rules``                       admin, analyst   the rules
``POST /v1/alerts/rules``                      admin            create one (201); 422 names the field
``GET/PATCH/DELETE /v1/alerts/rules/{id}``     admin (GET:      one rule; change some fields (``enabled``
                                               analyst too)     to switch it off); delete it (204)
``POST /v1/alerts/evaluate``                   admin            evaluate the rules now and send
``GET /v1/alerts/events``                      admin, analyst   occurrences, newest first, with their
                                                                delivery status (``rule_id``, ``status``,
                                                                ``before`` (an id), ``limit``)
``GET /v1/reports``                            admin, analyst   the reports, newest first
``GET /v1/reports/{id}``                       admin, analyst   one report's numbers and deliveries
``GET /v1/reports/{id}.html``                  admin, analyst   the self-contained page (a download)
``POST /v1/reports/weekly?send=``              admin            make the report of the 7 days up to now
                                                                (201); ``send=true``: to the report targets
=============================================  ===============  ==========================================

In ``rfmflow serve`` (which marks its app ``run_automation``; an app built by ``create_app``
alone, as in tests, runs no background loop) and with ``RFMFLOW_ALERTS_INTERVAL`` other than
``off``, :func:`register` starts :func:`rfmflow.alerts.loop.run_forever` when the app starts and
stops it when the app stops. ``serve --no-automation`` leaves it to ``rfmflow worker``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Path, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from rfmflow.alerts import store
from rfmflow.alerts.delivery import alert_senders
from rfmflow.alerts.loop import run_forever, tick
from rfmflow.alerts.reports import (
    ReportNotFound,
    add_targets,
    get_report,
    list_reports,
    make_report,
    report_json,
    send_report,
)
from rfmflow.alerts.rules import RuleError
from rfmflow.alerts.settings import AlertSettings, load_alert_settings
from rfmflow.service.app import ServiceDep, ServiceState, require
from rfmflow.service.auth import ApiKey
from rfmflow.service.db.engine import run_write

log = logging.getLogger("rfmflow.alerts")

Admin = Annotated[ApiKey, Depends(require("admin"))]
Reader = Annotated[ApiKey, Depends(require("data:read"))]
RuleId = Annotated[int, Path(ge=1)]
ReportId = Annotated[int, Path(ge=1)]
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
"""The report page may use its inline style and nothing from anywhere."""


def _invalid(err: RuleError) -> HTTPException:
    loc = ["body", *err.field.split(".")]
    return HTTPException(422, [{"loc": loc, "msg": err.reason, "type": "value_error"}])


def _write(svc: ServiceState, work: Callable[[Connection], Any]) -> Any:
    try:
        return run_write(svc.engine, work)
    except store.RuleNotFound as err:
        raise HTTPException(404, str(err)) from None
    except store.NameTaken as err:
        raise HTTPException(409, [{"loc": ["body", "name"], "msg": err.reason, "type": "conflict"}]) from None
    except RuleError as err:
        raise _invalid(err) from None


def report_page(html: str, report_id: int, *, download: bool = True) -> HTMLResponse:
    headers = {"Content-Security-Policy": REPORT_CSP, "X-Content-Type-Options": "nosniff"}
    if download:
        headers["Content-Disposition"] = f'attachment; filename="rfmflow-report-{report_id}.html"'
    return HTMLResponse(html, headers=headers)


def alert_settings(app: FastAPI) -> AlertSettings:
    found: AlertSettings = app.state.alerts
    return found


def register(app: FastAPI) -> None:
    svc_state: ServiceState = app.state.service
    settings = load_alert_settings(svc_state.settings)  # a bad setting stops the app here
    app.state.alerts = settings
    if settings.interval is not None:
        _run_with_app(app, settings)

    @app.get("/v1/alerts/rules", tags=["alerts"], summary="Alert rules (admin, analyst)")
    def rules_list(svc: ServiceDep, _key: Reader) -> dict[str, Any]:
        with svc.engine.connect() as conn:
            return {"rules": [r.as_dict() for r in store.list_rules(conn)]}

    @app.post("/v1/alerts/rules", tags=["alerts"], summary="Create an alert rule (admin)", status_code=201)
    def rules_create(svc: ServiceDep, key: Admin, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        rule = _write(svc, lambda c: store.create_rule(c, body, actor=f"key:{key.id}", at=datetime.now(UTC)))
        return {"rule": rule.as_dict()}

    @app.get("/v1/alerts/rules/{rule_id}", tags=["alerts"], summary="One alert rule (admin, analyst)")
    def rules_get(svc: ServiceDep, _key: Reader, rule_id: RuleId) -> dict[str, Any]:
        try:
            with svc.engine.connect() as conn:
                return {"rule": store.get_rule(conn, rule_id).as_dict()}
        except store.RuleNotFound as err:
            raise HTTPException(404, str(err)) from None

    @app.patch("/v1/alerts/rules/{rule_id}", tags=["alerts"], summary="Change an alert rule (admin)")
    def rules_patch(
        svc: ServiceDep, _key: Admin, rule_id: RuleId, body: Annotated[dict[str, Any], Body()]
    ) -> dict[str, Any]:
        unknown = sorted(set(body) - {"name", "kind", "params", "channel", "target", "enabled"})
        if unknown:
            raise _invalid(RuleError(unknown[0], "is not a field of a rule"))
        rule = _write(svc, lambda c: store.update_rule(c, rule_id, body, at=datetime.now(UTC)))
        return {"rule": rule.as_dict()}

    @app.delete("/v1/alerts/rules/{rule_id}", tags=["alerts"], summary="Delete an alert rule (admin)")
    def rules_delete(svc: ServiceDep, _key: Admin, rule_id: RuleId) -> Response:
        _write(svc, lambda c: store.delete_rule(c, rule_id))
        return Response(status_code=204)

    @app.post("/v1/alerts/evaluate", tags=["alerts"], summary="Evaluate the rules and send now (admin)")
    async def evaluate_now(svc: ServiceDep, _key: Admin) -> dict[str, Any]:
        async with alert_senders(settings) as senders:
            return await tick(svc.engine, svc.settings, settings, senders)

    @app.get("/v1/alerts/events", tags=["alerts"], summary="Alert occurrences, newest first (admin, analyst)")
    def events_list(
        svc: ServiceDep,
        _key: Reader,
        rule_id: Annotated[int | None, Query(ge=1)] = None,
        status: Annotated[str | None, Query(description=", ".join(store.STATUSES))] = None,
        before: Annotated[int | None, Query(ge=1, description="occurrences with a smaller id")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        if status is not None and status not in store.STATUSES:
            raise HTTPException(
                422,
                [
                    {
                        "loc": ["query", "status"],
                        "msg": f"one of {', '.join(store.STATUSES)}",
                        "type": "value_error",
                    }
                ],
            )
        with svc.engine.connect() as conn:
            found = store.list_events(conn, rule_id=rule_id, status=status, before_id=before, limit=limit)
            counts = store.counts_by_status(conn)
        return {"events": found, "counts": counts}

    @app.get("/v1/reports", tags=["reports"], summary="Weekly reports, newest first (admin, analyst)")
    def reports_list(
        svc: ServiceDep, _key: Reader, limit: Annotated[int, Query(ge=1, le=200)] = 50
    ) -> dict[str, Any]:
        with svc.engine.connect() as conn:
            return {"reports": list_reports(conn, limit=limit), "schedule": settings.report_schedule.text}

    @app.get("/v1/reports/{report_id}.html", tags=["reports"], summary="A report as a self-contained page")
    def report_html(svc: ServiceDep, _key: Reader, report_id: ReportId) -> HTMLResponse:
        try:
            with svc.engine.connect() as conn:
                row = get_report(conn, report_id)
        except ReportNotFound as err:
            raise HTTPException(404, str(err)) from None
        return report_page(row.html, report_id)

    @app.get("/v1/reports/{report_id}", tags=["reports"], summary="One report's numbers (admin, analyst)")
    def report_get(svc: ServiceDep, _key: Reader, report_id: ReportId) -> dict[str, Any]:
        try:
            with svc.engine.connect() as conn:
                return {"report": report_json(get_report(conn, report_id))}
        except ReportNotFound as err:
            raise HTTPException(404, str(err)) from None

    @app.post("/v1/reports/weekly", tags=["reports"], summary="Make the weekly report now (admin)")
    async def report_now(
        svc: ServiceDep,
        _key: Admin,
        send: Annotated[bool, Query(description="send it to the report targets too")] = False,
    ) -> JSONResponse:
        report_id = await run_in_threadpool(make_now, svc, settings, send)
        if send:
            async with alert_senders(settings) as senders:
                await send_report(svc.engine, report_id, senders, settings)
        with svc.engine.connect() as conn:
            body = report_json(get_report(conn, report_id))
        return JSONResponse({"report": body}, status_code=201)


def make_now(svc: ServiceState, settings: AlertSettings, send: bool, *, trigger: str = "api") -> int:
    """Make the report of the 7 days up to now (to the second); its id."""
    now = datetime.now(UTC).replace(microsecond=0)
    targets = settings.report_targets if send else []
    report_id, new = run_write(
        svc.engine, lambda c: make_report(c, svc.settings, settings, now, trigger=trigger, targets=targets)
    )
    if not new and targets:
        add_targets(svc.engine, report_id, targets)
    return report_id


def _run_with_app(app: FastAPI, settings: AlertSettings) -> None:
    """Run the alerts loop between the app's startup and shutdown."""
    inner: Callable[[Any], AbstractAsyncContextManager[Any]] = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(target: Any) -> AsyncIterator[Any]:
        async with inner(target) as state:
            if not getattr(app.state, "run_automation", False):
                yield state
                return
            stop = asyncio.Event()
            svc: ServiceState = app.state.service
            task = asyncio.create_task(run_forever(svc.engine, svc.settings, stop, alerts=settings))
            try:
                yield state
            finally:
                stop.set()
                try:
                    await asyncio.wait_for(task, timeout=30)
                except Exception:
                    log.exception("the alerts loop did not stop cleanly")

    app.router.lifespan_context = lifespan


__all__ = ["REPORT_CSP", "alert_settings", "make_now", "register", "report_page"]

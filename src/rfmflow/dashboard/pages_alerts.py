"""``/alerts``: the alert rules (admins add, switch on and off, delete) and the history of
their occurrences with the delivery status; ``/reports``: the weekly reports to download, and
(admins) one made now."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from rfmflow.alerts import store
from rfmflow.alerts.reports import ReportNotFound, get_report, list_reports
from rfmflow.alerts.routes import alert_settings, make_now, report_page
from rfmflow.alerts.rules import CHANNELS, KINDS, METRICS, RuleError
from rfmflow.dashboard.session import Session
from rfmflow.dashboard.web import BadForm, check_csrf, first, read_form, redirect, render, signed_in, svc
from rfmflow.service.db.engine import run_write

PARAM_FIELDS = ("segment", "metric", "pct", "days", "min_rate", "min_sent", "wait_hours", "hours")
NUMERIC = {"pct", "days", "min_rate", "min_sent", "wait_hours", "hours"}
KIND_PARAMS = {
    "segment_growth": ("segment", "pct", "days"),
    "segment_metric_drop": ("segment", "metric", "pct", "days"),
    "broadcast_conversion_below": ("min_rate", "min_sent", "wait_hours"),
    "no_events": ("hours",),
}


def _number(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def rule_from_form(form: Mapping[str, list[str]]) -> dict[str, Any]:
    """The add form's fields as a rule body (only the chosen kind's parameters, typed)."""
    kind = first(form, "kind") or ""
    params: dict[str, Any] = {}
    for name in KIND_PARAMS.get(kind, ()):
        value = (first(form, name) or "").strip()
        if value:
            params[name] = _number(value) if name in NUMERIC else value
    return {
        "name": first(form, "name") or "",
        "kind": kind,
        "params": params,
        "channel": first(form, "channel") or "",
        "target": first(form, "target") or "",
        "enabled": True,
    }


def _alerts_page(
    request: Request,
    session: Session,
    *,
    errors: dict[str, str] | None = None,
    given: Mapping[str, str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    state = svc(request)
    with state.engine.connect() as conn:
        rules = store.list_rules(conn)
        events = store.list_events(conn, limit=100)
        counts = store.counts_by_status(conn)
    return render(
        request,
        "alerts.html.j2",
        session=session,
        page="alerts",
        title="Alerts",
        status=status,
        rules=rules,
        events=events,
        counts=counts,
        can_edit=session.allows("admin"),
        kinds=KINDS,
        metrics=list(METRICS),
        channels=CHANNELS,
        errors=errors or {},
        given=given or {},
        notice=notice,
    )


def _reports_page(request: Request, session: Session, *, notice: str | None = None) -> Response:
    state = svc(request)
    with state.engine.connect() as conn:
        found = list_reports(conn)
    settings = alert_settings(request.app)
    return render(
        request,
        "reports.html.j2",
        session=session,
        page="reports",
        title="Reports",
        reports=found,
        schedule=settings.report_schedule.text,
        targets=settings.report_targets,
        can_edit=session.allows("admin"),
        notice=notice,
    )


def register(app: FastAPI) -> None:
    @app.get("/alerts", include_in_schema=False)
    def alerts_page(request: Request) -> Response:
        session = signed_in(request, "data:read")
        done = request.query_params.get("done")
        return _alerts_page(request, session, notice=done[:200] if done else None)

    @app.post("/alerts", include_in_schema=False)
    async def alerts_post(request: Request) -> Response:
        session = await run_in_threadpool(signed_in, request, "data:read")
        form = await read_form(request)
        check_csrf(request, session, form)
        if not session.allows("admin"):
            raise BadForm(403, f"a {session.key.role} may see alerts but not change them (admin only)")
        action = first(form, "action")
        state = svc(request)
        now = datetime.now(UTC)
        if action == "add":
            body = rule_from_form(form)
            given = {
                k: v[0] for k, v in form.items() if k in (*PARAM_FIELDS, "name", "kind", "channel", "target")
            }
            try:
                rule = await run_in_threadpool(
                    run_write,
                    state.engine,
                    lambda c: store.create_rule(c, body, actor=f"key:{session.key.id}", at=now),
                )
            except RuleError as err:
                problem = {err.field.removeprefix("params."): err.reason}
                return await run_in_threadpool(
                    lambda: _alerts_page(request, session, errors=problem, given=given, status=422)
                )
            return redirect(f"/alerts?done=rule+{rule.id}+added")
        rule_text = first(form, "rule_id") or ""
        if action not in ("enable", "disable", "delete") or not rule_text.isdigit():
            raise BadForm(422, "action must be add, enable, disable or delete, with a rule_id")
        rule_id = int(rule_text)
        try:
            if action == "delete":
                await run_in_threadpool(run_write, state.engine, lambda c: store.delete_rule(c, rule_id))
            else:
                changes = {"enabled": action == "enable"}
                await run_in_threadpool(
                    run_write, state.engine, lambda c: store.update_rule(c, rule_id, changes, at=now)
                )
        except RuleError as err:
            raise BadForm(404, str(err)) from None
        return redirect(f"/alerts?done=rule+{rule_id}+{action}d")

    @app.get("/reports", include_in_schema=False)
    def reports_page(request: Request) -> Response:
        session = signed_in(request, "data:read")
        made = request.query_params.get("made")
        notice = f"report {made} made" if made and made.isdigit() else None
        return _reports_page(request, session, notice=notice)

    @app.post("/reports", include_in_schema=False)
    async def reports_post(request: Request) -> Response:
        session = await run_in_threadpool(signed_in, request, "data:read")
        form = await read_form(request)
        check_csrf(request, session, form)
        if not session.allows("admin"):
            raise BadForm(403, f"a {session.key.role} may download reports but not make them (admin only)")
        settings = alert_settings(request.app)
        report_id = await run_in_threadpool(make_now, svc(request), settings, False, trigger="dashboard")
        return redirect(f"/reports?made={report_id}")

    @app.get("/reports/{report_id}.html", include_in_schema=False)
    def report_download(request: Request, report_id: int) -> Response:
        signed_in(request, "data:read")
        try:
            with svc(request).engine.connect() as conn:
                row = get_report(conn, report_id)
        except ReportNotFound as err:
            raise BadForm(404, str(err)) from None
        return report_page(row.html, report_id, download=request.query_params.get("view") != "1")

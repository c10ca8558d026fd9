"""``/workflows``: every workflow with its enrolments and results; ``/workflows/{name}``: its
definition, results by step and by segment (with the holdout lift of its splits), and the
admin's buttons (activate, pause, resume, stop) and YAML editor; ``/workflows/new``: a built-in
template to start from. The numbers are :func:`rfmflow.automation.results.workflow_results`,
exactly as ``GET /v1/workflows/{name}/results`` answers them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from rfmflow.automation import builtin_workflow_text, builtin_workflows
from rfmflow.automation import workflows_store as store
from rfmflow.automation.definition import WorkflowError
from rfmflow.automation.results import ResultsError, workflow_results
from rfmflow.automation.routes_results import parse_window
from rfmflow.dashboard.automation_charts import grouped_bars
from rfmflow.dashboard.scheme_lines import Problem, locate
from rfmflow.dashboard.session import Session
from rfmflow.dashboard.web import BadForm, check_csrf, first, read_form, redirect, render, signed_in, svc
from rfmflow.service.db.engine import run_write

MAX_WORKFLOW_BYTES = 100 * 1024
ACTIONS = ("activate", "pause", "resume", "stop")
DONE = {
    "activate": "activated",
    "pause": "paused",
    "resume": "resumed",
    "stop": "stopped",
    "created": "saved as a draft",
    "updated": "saved as a new version",
    "unchanged": "saved (nothing changed)",
}
BAR_MEASURES = (("enrolled", "enrolled"), ("sent", "sent"), ("converted", "converted"))
_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _actor(session: Session) -> str:
    return f"key:{session.key.id}"


def _path(name: str) -> str:
    return quote(name, safe="")


def problem_of(text: str, err: WorkflowError) -> Problem:
    """The definition's error with the line it points at (``steps[1] (offer).send.text``)."""
    where = err.where or ""
    path: list[str | int] = []
    for name, index in _PART.findall(re.sub(r"\([^)]*\)", "", where)):
        path.append(int(index) if index else name)
    line = locate(text, path) if path else None
    return Problem(where or "workflow", err.reason, line)


def _window(request: Request, errors: dict[str, str]) -> tuple[timedelta | None, str]:
    text = (request.query_params.get("window") or "").strip()
    if not text:
        return None, ""
    try:
        return parse_window(text), text
    except HTTPException as err:
        detail = err.detail[0]["msg"] if isinstance(err.detail, list) else str(err.detail)
        errors["window"] = detail
        return None, text


def _summary(conn: Connection, stored: store.StoredWorkflow, decimals: int) -> dict[str, Any]:
    counts = store.enrolment_counts(conn, stored.id)
    totals = workflow_results(conn, stored.name, decimals=decimals)["totals"]
    try:
        trigger = stored.workflow.trigger.describe()
    except WorkflowError:
        trigger = "(does not load)"
    return {
        "name": stored.name,
        "status": stored.status,
        "version": stored.version,
        "trigger": trigger,
        "enrolled": sum(counts.values()),
        "active": counts.get("active", 0),
        "converted": totals["converted"],
        "sent": totals["sent"],
        "failed": totals["failed"],
        "conversion_rate": totals["conversion_rate"],
        "revenue": totals["revenue"],
    }


def _detail(
    request: Request,
    session: Session,
    name: str,
    *,
    text: str | None = None,
    errors: list[Problem] | None = None,
    action_error: str | None = None,
    status: int = 200,
) -> Response:
    state = svc(request)
    field_errors: dict[str, str] = {}
    window, window_text = _window(request, field_errors)
    with state.engine.connect() as conn:
        try:
            stored = store.get(conn, name)
        except store.WorkflowNotFound as err:
            return render(
                request,
                "error.html.j2",
                session=session,
                status=404,
                title="No such workflow",
                message=str(err),
            )
        counts = store.enrolment_counts(conn, stored.id)
        try:
            results = workflow_results(conn, name, window=window, decimals=state.settings.money_decimals)
        except ResultsError as err:  # pragma: no cover - the workflow was just read
            results = None
            action_error = err.message
    try:
        definition = stored.workflow
        load_error = None
    except WorkflowError as err:
        definition, load_error = None, str(err)
    chart = None
    step_chart = None
    if results is not None and results["by_segment"]:
        chart = grouped_bars(
            list(results["by_segment"].items()), BAR_MEASURES, label=f"{name}: results by segment"
        )
    if results is not None and results["steps"]:
        step_chart = grouped_bars(
            [(s["step"], s["totals"]) for s in results["steps"]],
            BAR_MEASURES,
            label=f"{name}: results by step",
        )
    done = request.query_params.get("done")
    return render(
        request,
        "workflow.html.j2",
        session=session,
        page="workflows",
        title=f"Workflow {name}",
        status=status if not field_errors else 422,
        w=stored,
        definition=definition,
        load_error=load_error,
        counts=counts,
        enrolled=sum(counts.values()),
        results=results,
        chart=chart,
        step_chart=step_chart,
        can_change=session.allows("admin"),
        text=text if text is not None else stored.yaml,
        errors=errors or [],
        action_error=action_error,
        field_errors=field_errors,
        window=window_text,
        notice=f"workflow {DONE[done]}" if done in DONE else None,
        path=_path(name),
        yaml_lines=list(enumerate(stored.yaml.splitlines(), start=1)),
    )


def _new_page(
    request: Request,
    session: Session,
    *,
    template: str | None,
    text: str | None = None,
    errors: list[Problem] | None = None,
    status: int = 200,
) -> Response:
    templates = builtin_workflows()
    if text is None and template:
        try:
            text = builtin_workflow_text(template)
        except WorkflowError as err:
            errors = [Problem("template", str(err), None)]
            status = 404
    return render(
        request,
        "workflow_new.html.j2",
        session=session,
        page="workflows",
        title="New workflow",
        status=status,
        templates=[
            {"name": n, "description": wf.description, "trigger": wf.trigger.describe()}
            for n, wf in templates.items()
        ],
        chosen=template,
        text=text,
        errors=errors or [],
    )


def _read_yaml(form: dict[str, list[str]]) -> tuple[str, Problem | None, int]:
    text = (first(form, "yaml") or "").replace("\r\n", "\n")
    if not text.strip():
        return text, Problem("yaml", "the workflow is empty", None), 422
    if len(text.encode("utf-8")) > MAX_WORKFLOW_BYTES:
        return text, Problem("yaml", f"the workflow is over {MAX_WORKFLOW_BYTES // 1024} KB", None), 413
    return text, None, 200


def _admin_only(session: Session, what: str) -> None:
    if not session.allows("admin"):
        raise BadForm(403, f"a {session.key.role} may not {what} (admin only)")


def register(app: FastAPI) -> None:
    @app.get("/workflows", include_in_schema=False)
    def workflows_page(request: Request) -> Response:
        session = signed_in(request, "data:read")
        state = svc(request)
        with state.engine.connect() as conn:
            items = [_summary(conn, w, state.settings.money_decimals) for w in store.list_all(conn)]
        return render(
            request,
            "workflows.html.j2",
            session=session,
            page="workflows",
            title="Workflows",
            items=items,
            can_change=session.allows("admin"),
        )

    @app.get("/workflows/new", include_in_schema=False)
    def new_page(request: Request) -> Response:
        session = signed_in(request, "admin")
        return _new_page(request, session, template=request.query_params.get("template") or None)

    @app.post("/workflows/new", include_in_schema=False)
    async def new_post(request: Request) -> Response:
        session = await run_in_threadpool(signed_in, request, "data:read")
        form = await read_form(request)
        check_csrf(request, session, form)
        _admin_only(session, "create workflows")
        template = first(form, "template")
        text, problem, status = _read_yaml(form)

        async def page(errors: list[Problem], status: int) -> Response:
            return await run_in_threadpool(
                lambda: _new_page(
                    request, session, template=template, text=text, errors=errors, status=status
                )
            )

        if problem is not None:
            return await page([problem], status)
        action = first(form, "action")
        if action not in ("save", "activate"):
            return await page([Problem("action", "must be save or activate", None)], 422)
        try:
            workflow, text = store.parse(text)
        except WorkflowError as err:
            return await page([problem_of(text, err)], 422)
        state = svc(request)
        actor, now = _actor(session), datetime.now(UTC)

        def work(conn: Connection) -> str | None:
            try:
                store.get(conn, workflow.name)
            except store.WorkflowNotFound:
                pass
            else:
                return (
                    f"a workflow named {workflow.name!r} exists already: change the name, "
                    "or edit that workflow on its page"
                )
            store.save(conn, workflow, text, actor=actor, at=now)
            if action == "activate":
                store.set_status(conn, workflow.name, "activate", actor=actor, at=now)
            return None

        taken = await run_in_threadpool(run_write, state.engine, work)
        if taken is not None:
            return await page([Problem("name", taken, locate(text, ["name"]))], 409)
        done = "activate" if action == "activate" else "created"
        return redirect(f"/workflows/{_path(workflow.name)}?done={done}")

    @app.get("/workflows/{name}", include_in_schema=False)
    def workflow_page(request: Request, name: str) -> Response:
        return _detail(request, signed_in(request, "data:read"), name)

    @app.post("/workflows/{name}", include_in_schema=False)
    async def workflow_edit(request: Request, name: str) -> Response:
        session = await run_in_threadpool(signed_in, request, "data:read")
        form = await read_form(request)
        check_csrf(request, session, form)
        _admin_only(session, "change workflows")
        text, problem, status = _read_yaml(form)

        async def page(errors: list[Problem], status: int) -> Response:
            return await run_in_threadpool(
                lambda: _detail(request, session, name, text=text, errors=errors, status=status)
            )

        if problem is not None:
            return await page([problem], status)
        try:
            workflow, text = store.parse(text, name)
        except WorkflowError as err:
            return await page([problem_of(text, err)], 422)
        if workflow.name != name:
            return await page(
                [
                    Problem(
                        "name",
                        f"the YAML names {workflow.name!r}; this page edits {name!r}",
                        locate(text, ["name"]),
                    )
                ],
                422,
            )
        state = svc(request)
        actor = _actor(session)

        def work(conn: Connection) -> str:
            store.get(conn, name)
            return store.save(conn, workflow, text, actor=actor, at=datetime.now(UTC))[1]

        try:
            what = await run_in_threadpool(run_write, state.engine, work)
        except store.WorkflowNotFound as err:
            return await page([Problem("name", str(err), None)], 404)
        return redirect(f"/workflows/{_path(name)}?done={what}")

    @app.post("/workflows/{name}/status", include_in_schema=False)
    async def workflow_status(request: Request, name: str) -> Response:
        session = await run_in_threadpool(signed_in, request, "data:read")
        form = await read_form(request)
        check_csrf(request, session, form)
        _admin_only(session, "activate, pause or stop workflows")
        action = first(form, "action")
        if action not in ACTIONS:
            return await run_in_threadpool(
                lambda: _detail(
                    request,
                    session,
                    name,
                    action_error=f"action: must be one of {', '.join(ACTIONS)}",
                    status=422,
                )
            )
        state = svc(request)
        actor = _actor(session)

        def work(conn: Connection) -> dict[str, Any]:
            if action == "resume":
                current = store.get(conn, name, for_update=True)
                if current.status != "paused":
                    raise store.WorkflowConflict(
                        f"workflow {name!r} is {current.status}; only a paused workflow can be resumed"
                    )
            change = "activate" if action == "resume" else str(action)
            return store.set_status(conn, name, change, actor=actor, at=datetime.now(UTC))

        try:
            await run_in_threadpool(run_write, state.engine, work)
        except store.WorkflowNotFound as err:
            missing = str(err)
            return await run_in_threadpool(
                lambda: render(
                    request,
                    "error.html.j2",
                    session=session,
                    status=404,
                    title="No such workflow",
                    message=missing,
                )
            )
        except store.WorkflowConflict as err:
            message = str(err)
            return await run_in_threadpool(
                lambda: _detail(request, session, name, action_error=message, status=409)
            )
        return redirect(f"/workflows/{_path(name)}?done={action}")


__all__ = ["problem_of", "register"]

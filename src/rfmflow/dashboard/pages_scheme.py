"""``/scheme``: the active scheme and its versions; admins edit it, preview the segment
counts it would give (the dry run of ``PUT /v1/scheme?dry_run=true``) and apply it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from rfmflow.core.coverage import check_coverage
from rfmflow.core.errors import SchemeError
from rfmflow.dashboard.scheme_lines import Problem, problems
from rfmflow.dashboard.session import Session
from rfmflow.dashboard.web import BadForm, check_csrf, first, read_form, redirect, render, signed_in, svc
from rfmflow.service.routes_scoring import SCHEME_WAIT_SECONDS
from rfmflow.service.scoring import preview_scheme
from rfmflow.service.scoring_jobs import RunInProgress, run_now
from rfmflow.service.scoring_schemes import (
    MAX_SCHEME_BYTES,
    SchemeVersion,
    active_scheme,
    get_version,
    list_versions,
    parse_scheme,
    scheme_error_details,
)


def _page(
    request: Request,
    session: Session,
    *,
    text: str | None = None,
    errors: list[Problem] | None = None,
    preview: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    state = svc(request)
    shown_error = None
    wanted = request.query_params.get("version")
    with state.engine.connect() as conn:
        active = active_scheme(conn)
        versions = list_versions(conn)
        shown: SchemeVersion = active
        if wanted:
            found = get_version(conn, int(wanted)) if wanted.isdigit() else None
            if found is None:
                shown_error = f"version: no scheme version {wanted!r}"
                status = 404
            else:
                shown = found
    rows = []
    if preview is not None:
        current, proposed = preview["current"]["segment_counts"], preview["proposed"]["segment_counts"]
        names = list(proposed) + [n for n in current if n not in proposed]
        rows = [(n, current.get(n), proposed.get(n)) for n in names]
    return render(
        request,
        "scheme.html.j2",
        session=session,
        page="scheme",
        title="Scheme",
        status=status,
        active=active,
        shown=shown,
        shown_error=shown_error,
        versions=versions,
        can_edit=session.allows("admin"),
        text=text if text is not None else active.yaml,
        errors=errors or [],
        preview=preview,
        preview_rows=rows,
        warnings=warnings if warnings is not None else check_coverage(shown.scheme).messages(),
        notice=notice,
        yaml_lines=list(enumerate(shown.yaml.splitlines(), start=1)),
    )


def register(app: FastAPI) -> None:
    @app.get("/scheme", include_in_schema=False)
    def scheme_page(request: Request) -> Response:
        session = signed_in(request, "data:read")
        applied = request.query_params.get("applied")
        notice = None
        if applied and applied.isdigit():
            notice = f"version {applied} applied; every customer was re-scored"
        return _page(request, session, notice=notice)

    @app.post("/scheme", include_in_schema=False)
    async def scheme_post(request: Request) -> Response:
        session = await run_in_threadpool(signed_in, request, "data:read")
        form = await read_form(request)
        check_csrf(request, session, form)
        if not session.allows("admin"):
            raise BadForm(403, f"a {session.key.role} may view the scheme but not change it (admin only)")
        text = (first(form, "yaml") or "").replace("\r\n", "\n")
        action = first(form, "action")
        state = svc(request)

        async def page(**kwargs: Any) -> Response:
            return await run_in_threadpool(lambda: _page(request, session, text=text, **kwargs))

        if action not in ("preview", "apply"):
            return await page(errors=[Problem("action", "must be preview or apply", None)], status=422)
        if not text.strip():
            return await page(errors=[Problem("yaml", "the scheme is empty", None)], status=422)
        if len(text.encode("utf-8")) > MAX_SCHEME_BYTES:
            return await page(
                errors=[Problem("yaml", f"the scheme is over {MAX_SCHEME_BYTES // 1024} KB", None)],
                status=413,
            )
        try:
            scheme = parse_scheme(text)
        except SchemeError as err:
            return await page(errors=problems(text, scheme_error_details(err)), status=422)
        warnings = check_coverage(scheme).messages()
        if action == "preview":
            preview = await run_in_threadpool(preview_scheme, state.engine, state.settings, scheme)
            return await page(preview=preview, warnings=warnings)
        try:
            result = await run_in_threadpool(
                lambda: run_now(
                    state.engine,
                    state.settings,
                    trigger="scheme",
                    actor=f"key:{session.key.id}",
                    wait_seconds=SCHEME_WAIT_SECONDS,
                    scheme_text=text,
                    scheme=scheme,
                )
            )
        except RunInProgress as err:
            return await page(errors=[Problem("scheme", str(err), None)], status=409)
        return redirect(f"/scheme?applied={result.scheme_version}")

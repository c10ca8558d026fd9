"""Sign in with an API key or a user name and password (a session cookie), sign out."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from rfmflow.dashboard.session import (
    LOGIN_COOKIE,
    LOGIN_SECONDS,
    SESSION_COOKIE,
    SESSION_SECONDS,
    SIGN_IN_ROLES,
    login_token,
    login_token_ok,
    secret_hash_of,
)
from rfmflow.dashboard.web import (
    check_csrf,
    current_session,
    dashboard,
    first,
    read_form,
    redirect,
    render,
    safe_next,
    svc,
)
from rfmflow.service.auth import ApiKey, authenticate
from rfmflow.service.db.engine import run_write
from rfmflow.service.users import User, sign_in

log = logging.getLogger("rfmflow.dashboard")


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _form(request: Request, *, next_path: str, error: str | None = None, status: int = 200) -> Response:
    token = login_token()
    response = render(
        request,
        "login.html.j2",
        session=None,
        status=status,
        title="Sign in",
        login_token=token,
        next_path=next_path,
        error=error,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=LOGIN_SECONDS,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/login",
    )
    return response


def _signed_in(request: Request, cookie: str, target: str) -> Response:
    response = redirect(target)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


async def _password_sign_in(request: Request, username: str, password: str, target: str) -> Response:
    if not password:
        return _form(request, next_path=target, status=422, error="password: enter the password")
    state = svc(request)

    def check(conn: Connection) -> User | None:
        return sign_in(conn, username, password, now=datetime.now(UTC))

    user = await run_in_threadpool(run_write, state.engine, check)
    if user is None:
        log.info("dashboard sign-in refused", extra={"username": username})
        return _form(
            request,
            next_path=target,
            status=401,
            error="password: wrong user name or password, or the user is disabled",
        )
    cookie, _claims = dashboard(request).signer.issue(
        user.id, user.password_hash, now=int(time.time()), kind="user"
    )
    log.info("dashboard sign-in", extra={"user": user.username, "role": user.role})
    return _signed_in(request, cookie, target)


def register(app: FastAPI) -> None:
    @app.get("/login", include_in_schema=False)
    def login_page(request: Request, next: str | None = None) -> Response:
        target = safe_next(next)
        if current_session(request) is not None:
            return redirect(target)
        return _form(request, next_path=target)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await read_form(request)
        target = safe_next(first(form, "next"))
        if not login_token_ok(request.cookies.get(LOGIN_COOKIE), first(form, "login_token")):
            return _form(
                request,
                next_path=target,
                status=403,
                error="the sign-in form expired or came from another site: try again",
            )
        username = (first(form, "username") or "").strip()
        if username:
            return await _password_sign_in(request, username, first(form, "password") or "", target)
        presented = (first(form, "api_key") or "").strip()
        if not presented:
            return _form(
                request,
                next_path=target,
                status=422,
                error="api_key: enter an API key (rfm_...), or a user name and password",
            )
        state = svc(request)

        def check() -> tuple[ApiKey | None, str]:
            with state.engine.connect() as conn:
                key = authenticate(conn, presented)
                return key, (secret_hash_of(conn, key.id) if key is not None else "")

        key, secret_hash = await run_in_threadpool(check)
        if key is None:
            return _form(request, next_path=target, status=401, error="api_key: unknown or revoked API key")
        if key.role not in SIGN_IN_ROLES:
            return _form(
                request,
                next_path=target,
                status=403,
                error=f"api_key: a key with role {key.role!r} sends events and cannot sign in; "
                f"use an admin, analyst or agent key",
            )
        cookie, _claims = dashboard(request).signer.issue(key.id, secret_hash, now=int(time.time()))
        log.info("dashboard sign-in", extra={"key_id": key.id, "role": key.role})
        return _signed_in(request, cookie, target)

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        session = current_session(request)
        if session is not None:
            check_csrf(request, session, await read_form(request))
        response = redirect("/login")
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
        return response

"""What every dashboard page shares: templates, the signed-in session, forms and responses."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from rfmflow.dashboard.session import SESSION_COOKIE, Session, Signer, session_key
from rfmflow.service.app import ServiceState, service
from rfmflow.service.auth import roles_with
from rfmflow.service.secret_key import load_secret_key
from rfmflow.service.settings import Settings

MAX_FORM_BYTES = 300 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

NAV = (
    ("overview", "/", "Overview", "data:read"),
    ("customers", "/customers", "Customers", "customers:read"),
    ("scheme", "/scheme", "Scheme", "data:read"),
    ("workflows", "/workflows", "Workflows", "data:read"),
    ("broadcasts", "/broadcasts", "Broadcasts", "data:read"),
    ("tasks", "/tasks", "Hand-offs", "customers:read"),
)
"""The navigation: page id, path, label and the permission it needs."""


class NeedsSignIn(Exception):
    """No valid session: the page answers with a redirect to the sign-in form."""


class Forbidden(Exception):
    """The session's role may not see the page."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadForm(Exception):
    """A form that cannot be read (too large, not UTF-8, a wrong CSRF token)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Dashboard:
    """The dashboard's shared objects, made when the app is built (the secret on first use)."""

    settings: Settings
    templates: Environment
    _signer: Signer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def signer(self) -> Signer:
        with self._lock:
            if self._signer is None:
                self._signer = Signer(load_secret_key(self.settings))
            return self._signer


def money_text(value: Decimal | int | str | None, decimals: int) -> str:
    """``1234.5`` → ``1,234.50`` (thousands separated, the currency's decimals)."""
    if value is None:
        return "–"
    return f"{Decimal(value):,.{decimals}f}"


def _count(value: int | None) -> str:
    return "–" if value is None else f"{int(value):,}"


def _percent(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def make_templates() -> Environment:
    env = Environment(
        loader=PackageLoader("rfmflow.dashboard", "templates"),
        autoescape=select_autoescape(["html", "j2", "svg"], default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["count"] = _count
    env.filters["percent"] = _percent
    env.filters["urlquote"] = lambda s: quote(str(s), safe="")
    return env


def dashboard(request: Request) -> Dashboard:
    dash: Dashboard = request.app.state.dashboard
    return dash


def current_session(request: Request) -> Session | None:
    """The request's session, or None (no cookie, forged, expired, key revoked)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    dash = dashboard(request)
    claims = dash.signer.read(cookie, now=int(time.time()))
    if claims is None:
        return None
    with service(request).engine.connect() as conn:
        key = session_key(conn, dash.signer, claims)
    if key is None:
        return None
    request.state.api_key = key
    return Session(key, claims, dash.signer.csrf(claims.nonce))


def signed_in(request: Request, permission: str) -> Session:
    """The session, which must allow ``permission`` (else sign-in or a 403 page)."""
    session = current_session(request)
    if session is None:
        raise NeedsSignIn()
    if not session.allows(permission):
        raise Forbidden(f"a {session.key.role} may not see this page")
    return session


def svc(request: Request) -> ServiceState:
    return service(request)


async def read_form(request: Request) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` body as lists of values per name."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise BadForm(413, f"the form is over {MAX_FORM_BYTES // 1024} KB")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise BadForm(413, f"the form is over {MAX_FORM_BYTES // 1024} KB")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadForm(400, "the form is not UTF-8") from None
    return parse_qs(text, keep_blank_values=True)


def first(form: Mapping[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def require_permission(session: Session, permission: str, doing: str) -> None:
    """A :class:`BadForm` 403 (naming the roles that may) unless the session has ``permission``."""
    if not session.allows(permission):
        allowed = ", ".join(roles_with(permission))
        raise BadForm(403, f"a {session.key.role} may not {doing}; roles that may: {allowed}")


def check_csrf(request: Request, session: Session, form: Mapping[str, list[str]]) -> None:
    if not dashboard(request).signer.csrf_ok(session.claims, first(form, "csrf_token")):
        raise BadForm(
            403, "the form's security token is missing or out of date: reload the page and try again"
        )


def render(
    request: Request,
    template: str,
    *,
    session: Session | None,
    page: str = "",
    status: int = 200,
    title: str = "",
    **context: Any,
) -> HTMLResponse:
    dash = dashboard(request)
    nav = [
        {"id": pid, "path": path, "label": label, "current": pid == page}
        for pid, path, label, permission in NAV
        if session is not None and session.allows(permission)
    ]
    html = dash.templates.get_template(template).render(
        session=session,
        nav=nav,
        page=page,
        title=title,
        settings=dash.settings,
        currency=dash.settings.currency,
        money=lambda v: money_text(v, dash.settings.money_decimals),
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def redirect(path: str, status: int = 303) -> Response:
    return RedirectResponse(path, status_code=status, headers={"Cache-Control": "no-store"})


def safe_next(value: str | None) -> str:
    """A local path to go to after sign-in (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def query_url(path: str, params: Mapping[str, Any]) -> str:
    """``path`` with the non-empty ``params`` (lists repeat the name)."""
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        if value is None or value == "" or value == []:
            continue
        if isinstance(value, list | tuple):
            pairs += [(name, str(v)) for v in value if v not in (None, "")]
        else:
            pairs.append((name, str(value)))
    return f"{path}?{urlencode(pairs)}" if pairs else path

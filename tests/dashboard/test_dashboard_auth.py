"""Dashboard sign-in, sessions, roles and CSRF, through real HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from urllib.parse import unquote

import httpx
from dashboard_helpers import Clients, form_value
from service_helpers import Server

from rfmflow.dashboard.session import SESSION_COOKIE, Signer, secret_hash_of
from rfmflow.service.auth import revoke_key
from rfmflow.service.secret_key import load_secret_key


def _key_id(server: Server, role: str) -> int:
    from rfmflow.service.auth import list_keys

    return next(k.id for k in list_keys(server.engine) if k.role == role and k.active)


def test_sign_in_sign_out_and_the_cookie(server: Server, clients: Clients) -> None:
    anonymous = clients.anonymous()
    answer = anonymous.get("/customers?segment=Loyal")
    assert answer.status_code == 303
    assert unquote(answer.headers["location"]) == "/login?next=/customers?segment=Loyal"

    page = anonymous.get("/login?next=/customers")
    assert page.status_code == 200
    assert 'name="api_key"' in page.text
    assert "HttpOnly" in page.headers["set-cookie"]
    token = form_value(page.text, "login_token")
    answer = anonymous.post(
        "/login", data={"api_key": server.keys["analyst"], "login_token": token, "next": "/customers"}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/customers"
    cookie = next(
        v for k, v in answer.headers.multi_items() if k == "set-cookie" and v.startswith(SESSION_COOKIE)
    )
    attributes = cookie.lower()
    assert "httponly" in attributes and "samesite=lax" in attributes and "path=/" in attributes
    assert "max-age=43200" in attributes  # 12 hours
    assert server.keys["analyst"] not in cookie and server.keys["analyst"].split("_")[2] not in cookie

    page = anonymous.get("/customers")
    assert page.status_code == 200
    assert "test analyst · analyst" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["cache-control"] == "no-store"

    answer = anonymous.post("/logout", data={"csrf_token": form_value(page.text, "csrf_token")})
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert anonymous.get("/customers").status_code == 303


def test_sign_in_refuses_bad_keys_with_a_message(server: Server, clients: Clients) -> None:
    client = clients.anonymous()

    def attempt(key: str, *, token: str | None = None) -> httpx.Response:
        page = client.get("/login")
        data = {
            "api_key": key,
            "login_token": token if token is not None else form_value(page.text, "login_token"),
        }
        return client.post("/login", data=data)

    answer = attempt("rfm_00000000_" + "x" * 43)
    assert answer.status_code == 401
    assert "api_key: unknown or revoked API key" in answer.text
    answer = attempt(server.keys["ingest"])
    assert answer.status_code == 403
    assert "role &#39;ingest&#39; sends events and cannot sign in" in answer.text
    answer = attempt("   ")
    assert answer.status_code == 422 and "api_key: enter an API key" in answer.text
    answer = attempt(server.keys["admin"], token="forged")
    assert answer.status_code == 403 and "expired or came from another site" in answer.text
    assert SESSION_COOKIE not in client.cookies
    # an open redirect is not possible through ?next=
    page = client.get("/login?next=//evil.example/")
    assert form_value(page.text, "next") == "/"


def test_a_revoked_key_ends_its_session(server: Server, clients: Clients) -> None:
    client = clients.sign_in("analyst")
    assert client.get("/customers").status_code == 200
    revoke_key(server.engine, _key_id(server, "analyst"), actor="test")
    answer = client.get("/customers")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")


def test_forged_and_expired_sessions_are_refused(server: Server, clients: Clients) -> None:
    client = clients.sign_in("admin")
    genuine = client.cookies[SESSION_COOKIE]
    body, mac = genuine.split(".")
    other = clients.anonymous()
    other.cookies.set(SESSION_COOKIE, body + "." + mac[:-2] + ("AA" if not mac.endswith("AA") else "BB"))
    assert other.get("/").status_code == 303
    signer = Signer(load_secret_key(server.settings))
    key_id = _key_id(server, "admin")
    with server.engine.connect() as conn:
        secret_hash = secret_hash_of(conn, key_id)
    expired, _ = signer.issue(key_id, secret_hash, now=int(time.time()) - 13 * 3600)
    other.cookies.set(SESSION_COOKIE, expired)
    assert other.get("/").status_code == 303
    fresh, _ = signer.issue(key_id, secret_hash, now=int(time.time()))
    other.cookies.set(SESSION_COOKIE, fresh)
    assert other.get("/").status_code == 200
    wrong_secret, _ = Signer(b"another secret of enough length, 32+").issue(
        key_id, secret_hash, now=int(time.time())
    )
    other.cookies.set(SESSION_COOKIE, wrong_secret)
    assert other.get("/").status_code == 303
    # the generated secret is kept in the data directory, private to its owner
    secret_file = server.settings.data_dir / "secret_key"
    assert secret_file.stat().st_mode & 0o077 == 0


def test_roles_decide_what_each_user_sees(server: Server, clients: Clients) -> None:
    agent = clients.sign_in("agent")
    answer = agent.get("/")
    assert answer.status_code == 303 and answer.headers["location"] == "/customers"
    page = agent.get("/customers")
    assert page.status_code == 200
    assert 'href="/scheme"' not in page.text and 'href="/"' not in page.text.replace(
        'class="brand" href="/"', ""
    )
    assert "export.csv" not in page.text
    assert agent.get("/scheme").status_code == 403
    assert agent.get("/customers/export.csv").status_code == 403
    assert agent.get("/moves?from_segment=Loyal&to_segment=Lost").status_code == 403

    analyst = clients.sign_in("analyst")
    page = analyst.get("/scheme")
    assert page.status_code == 200
    assert "<textarea" not in page.text and "Read only" in page.text
    answer = analyst.post(
        "/scheme", data={"csrf_token": form_value(page.text, "csrf_token"), "yaml": "x", "action": "apply"}
    )
    assert answer.status_code == 403 and "may view the scheme but not change it" in answer.text
    assert "export.csv" in analyst.get("/customers").text

    admin = clients.sign_in("admin")
    assert "<textarea" in admin.get("/scheme").text


def test_forms_need_the_session_csrf_token(server: Server, clients: Clients) -> None:
    admin = clients.sign_in("admin")
    page = admin.get("/scheme")
    token = form_value(page.text, "csrf_token")
    for data in (
        {"yaml": "name: x", "action": "preview"},
        {"yaml": "name: x", "action": "preview", "csrf_token": "bad"},
    ):
        answer = admin.post("/scheme", data=data)
        assert answer.status_code == 403
        assert "security token is missing or out of date" in answer.text
    assert admin.post("/logout", data={}).status_code == 403
    assert admin.get("/scheme").status_code == 200  # still signed in
    other = clients.sign_in("admin")  # another session has another token
    assert (
        other.post("/scheme", data={"yaml": "name: x", "action": "preview", "csrf_token": token}).status_code
        == 403
    )

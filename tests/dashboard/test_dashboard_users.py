"""Dashboard users with a password: sign-in, roles, disabling and password changes ending
sessions, the audit log and ``rfmflow users``, through real HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from dashboard_helpers import Clients, form_value
from service_helpers import Server

from rfmflow.cli.main import main
from rfmflow.service.db.engine import write_transaction
from rfmflow.service.db.tables import audit_log, users
from rfmflow.service.users import UserError, create_user, set_disabled, set_password, verify_password

PASSWORD = "correct horse battery"


def _make(server: Server, name: str, role: str, password: str = PASSWORD) -> None:
    with write_transaction(server.engine) as conn:
        create_user(conn, name, password, role, actor="test", now=datetime.now(UTC))


def _sign_in(client: httpx.Client, username: str, password: str, next_path: str = "/") -> httpx.Response:
    page = client.get("/login")
    token = form_value(page.text, "login_token")
    return client.post(
        "/login", data={"username": username, "password": password, "login_token": token, "next": next_path}
    )


def test_a_user_signs_in_with_a_password_and_has_the_roles_permissions(
    server: Server, clients: Clients
) -> None:
    _make(server, "ana", "agent")
    client = clients.anonymous()
    answer = _sign_in(client, "ana", PASSWORD, "/customers")
    assert answer.status_code == 303 and answer.headers["location"] == "/customers"
    assert PASSWORD not in answer.headers["set-cookie"]
    page = client.get("/customers")
    assert page.status_code == 200 and "ana · agent" in page.text
    assert client.get("/scheme").status_code == 403  # an agent sees customers, not settings
    with server.engine.connect() as conn:
        assert conn.execute(sa.select(users.c.last_login_at).where(users.c.username == "ana")).scalar_one()
    # users cannot use the HTTP API with their password: no key, no access
    assert httpx.get(f"{server.url}/v1/segments", auth=("ana", PASSWORD)).status_code == 401


def test_wrong_passwords_unknown_and_disabled_users_are_refused(server: Server, clients: Clients) -> None:
    _make(server, "bob", "analyst")
    client = clients.anonymous()
    for name, password in (("bob", "wrong password!"), ("nobody", PASSWORD)):
        answer = _sign_in(client, name, password)
        assert answer.status_code == 401 and "wrong user name or password" in answer.text
    answer = _sign_in(client, "bob", "")
    assert answer.status_code == 422 and "password: enter the password" in answer.text
    with write_transaction(server.engine) as conn:
        set_disabled(conn, "bob", True, actor="test", now=datetime.now(UTC))
    assert _sign_in(client, "bob", PASSWORD).status_code == 401
    assert client.get("/").status_code == 303


@pytest.mark.parametrize("change", ["disable", "password"])
def test_disabling_or_a_new_password_ends_open_sessions(
    server: Server, clients: Clients, change: str
) -> None:
    _make(server, "cy", "admin")
    client = clients.anonymous()
    assert _sign_in(client, "cy", PASSWORD).status_code == 303
    assert client.get("/").status_code == 200
    with write_transaction(server.engine) as conn:
        if change == "disable":
            set_disabled(conn, "cy", True, actor="test", now=datetime.now(UTC))
        else:
            set_password(conn, "cy", "another long password", actor="test", now=datetime.now(UTC))
    answer = client.get("/")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    if change == "password":
        assert _sign_in(client, "cy", "another long password").status_code == 303
        assert client.get("/").status_code == 200


def test_bad_users_are_refused_with_the_field(server: Server) -> None:
    now = datetime.now(UTC)
    with write_transaction(server.engine) as conn:
        create_user(conn, "dee", PASSWORD, "analyst", actor="test", now=now)
        for args, field in (
            (("dee", PASSWORD, "analyst"), "username: 'dee' exists already"),
            (("x", PASSWORD, "analyst"), "username: 2 to 64"),
            (("eve", PASSWORD, "ingest"), "role: 'ingest'"),
            (("eve", "short", "agent"), "password: at least 10"),
        ):
            with pytest.raises(UserError, match=field):
                create_user(conn, *args, actor="test", now=now)
        stored = conn.execute(sa.select(users.c.password_hash).where(users.c.username == "dee")).scalar_one()
        actions = [
            r.action for r in conn.execute(sa.select(audit_log.c.action).where(audit_log.c.target == "dee"))
        ]
    assert stored.startswith("scrypt$") and PASSWORD not in stored
    assert verify_password(PASSWORD, stored) and not verify_password(PASSWORD + "x", stored)
    assert not verify_password(PASSWORD, "garbage") and actions == ["user.create"]


def test_users_cli(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFMFLOW_DATABASE_URL", server.settings.database_url)
    monkeypatch.setenv("RFMFLOW_DATA_DIR", str(server.settings.data_dir))
    runner = CliRunner()
    made = runner.invoke(
        main, ["users", "create", "fay", "--role", "analyst", "--password-stdin"], input=PASSWORD
    )
    assert made.exit_code == 0, made.output
    short = runner.invoke(
        main, ["users", "create", "gus", "--role", "analyst", "--password-stdin"], input="short"
    )
    assert short.exit_code == 1 and "password: at least 10 characters" in short.output
    prompted = runner.invoke(
        main, ["users", "create", "hal", "--role", "agent"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert prompted.exit_code == 0, prompted.output
    assert runner.invoke(main, ["users", "disable", "fay"]).exit_code == 0
    listed = runner.invoke(main, ["users", "list"])
    assert "fay" in listed.output and "disabled" in listed.output and "hal" in listed.output
    unknown = runner.invoke(main, ["users", "password", "zed", "--password-stdin"], input=PASSWORD)
    assert unknown.exit_code == 1 and "username: no user 'zed'" in unknown.output
    with server.engine.connect() as conn:
        actors = {
            r.actor for r in conn.execute(sa.select(audit_log).where(audit_log.c.action.like("user.%")))
        }
    assert all(a.startswith("cli") for a in actors)

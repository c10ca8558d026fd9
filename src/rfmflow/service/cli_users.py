"""``rfmflow users``: dashboard users with a password (create, list, disable, enable, password)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import Connection

from rfmflow.service.cli import _errors, _migrated_engine, _settings, env_file_option
from rfmflow.service.users import USER_ROLES

password_stdin = click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of standard input."
)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


def _write(env_file: Path | None, work: Callable[[Connection, str, datetime], Any]) -> Any:
    from rfmflow.service.auth import cli_actor
    from rfmflow.service.db.engine import run_write

    engine = _migrated_engine(_settings(env_file))
    try:
        return run_write(engine, lambda conn: work(conn, cli_actor(), datetime.now(UTC)))
    finally:
        engine.dispose()


@click.group()
def users() -> None:
    """Dashboard users who sign in with a password (changes go to the audit log)."""


@users.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(USER_ROLES), required=True, help="What the user may do.")
@password_stdin
@env_file_option
@_errors
def create(username: str, role: str, password_stdin: bool, env_file: Path | None) -> None:
    """Create USERNAME with a password (asked twice, or --password-stdin)."""
    from rfmflow.service.users import check_password, create_user

    password = _password(password_stdin)
    check_password(password)  # before touching the database
    user = _write(env_file, lambda c, a, n: create_user(c, username, password, role, actor=a, now=n))
    click.echo(f"created user {user.username} ({user.role}); they sign in at the dashboard's /login")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@env_file_option
@_errors
def list_cmd(as_json: bool, env_file: Path | None) -> None:
    """List users (name, role, created, last sign-in, disabled); passwords are never shown."""
    from rfmflow.service.users import list_users

    engine = _migrated_engine(_settings(env_file))
    try:
        with engine.connect() as conn:
            found = [u.as_dict() for u in list_users(conn)]
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo("no users yet: rfmflow users create NAME --role analyst", err=True)
    for u in found:
        state = f"disabled {u['disabled_at'][:10]}" if u["disabled_at"] else "active"
        last = (u["last_login_at"] or "never")[:16]
        click.echo(f"{u['username']:<24} {u['role']:<8} {state:<20} last sign-in {last}")


@users.command("disable")
@click.argument("username")
@env_file_option
@_errors
def disable(username: str, env_file: Path | None) -> None:
    """Disable USERNAME: their sessions end and they cannot sign in."""
    from rfmflow.service.users import set_disabled

    _write(env_file, lambda c, a, n: set_disabled(c, username, True, actor=a, now=n))
    click.echo(f"disabled {username}")


@users.command("enable")
@click.argument("username")
@env_file_option
@_errors
def enable(username: str, env_file: Path | None) -> None:
    """Enable USERNAME again."""
    from rfmflow.service.users import set_disabled

    _write(env_file, lambda c, a, n: set_disabled(c, username, False, actor=a, now=n))
    click.echo(f"enabled {username}")


@users.command("password")
@click.argument("username")
@password_stdin
@env_file_option
@_errors
def password(username: str, password_stdin: bool, env_file: Path | None) -> None:
    """Set USERNAME's password (their open sessions end)."""
    from rfmflow.service.users import set_password

    new = _password(password_stdin)
    _write(env_file, lambda c, a, n: set_password(c, username, new, actor=a, now=n))
    click.echo(f"changed the password of {username}")

"""The service's commands: ``rfmflow serve``, ``rfmflow keys ...``, ``rfmflow db ...``.

Register them on the main group with ``main.add_command(serve)``, ``main.add_command(keys)``
and ``main.add_command(db)``; ``python -m rfmflow.service`` runs them on their own. Heavy
imports (FastAPI, SQLAlchemy, uvicorn) happen inside the commands, so ``rfmflow score``
does not pay for them.

Exit status: 0 success, 1 runtime error (bad setting, database unreachable, unknown key),
2 usage error.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rfmflow.service.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
ROLES = ("admin", "analyst", "agent", "ingest")

env_file_option = click.option(
    "--env-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read RFMFLOW_* settings from this file (default: ./.env if present).",
)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _errors(func: F) -> F:
    """Print user-caused and database errors as one line and exit 1 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import sqlalchemy as sa

        from rfmflow.core.errors import RfmflowError

        try:
            return func(*args, **kwargs)
        except RfmflowError as err:
            _fail(str(err))
        except sa.exc.OperationalError as err:
            _fail(f"the database is unreachable: {str(err.orig).strip().splitlines()[0]}")
        except sa.exc.SQLAlchemyError as err:
            _fail(f"database error: {str(err).strip().splitlines()[0]}")
        except OSError as err:
            _fail(f"{getattr(err, 'filename', '') or ''}: {err.strerror or err}")
        return None

    return wrapper  # type: ignore[return-value]


def _settings(env_file: Path | None, **overrides: Any) -> Settings:
    from rfmflow.service.settings import load_settings

    settings = load_settings(env_file=env_file)
    changes = {k: v for k, v in overrides.items() if v is not None}
    return settings.with_changes(**changes) if changes else settings


def _engine(settings: Settings) -> Any:
    from rfmflow.service.db.engine import create_db_engine

    return create_db_engine(settings.database_url)


def _migrated_engine(settings: Settings) -> Any:
    """An engine on a database migrated to the newest schema (as ``serve`` leaves it), so
    keys can be managed before the first start too."""
    from rfmflow.service.db.migrate import upgrade

    engine = _engine(settings)
    try:
        upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


@click.command()
@click.option("--host", help="Address to listen on. Default: RFMFLOW_HOST or 127.0.0.1.")
@click.option("--port", type=click.IntRange(1, 65535), help="Port. Default: RFMFLOW_PORT or 8000.")
@env_file_option
@_errors
def serve(host: str | None, port: int | None, env_file: Path | None) -> None:
    """Run the HTTP API: migrate the database, create an admin key on first start, serve.

    Stops gracefully on Ctrl-C or SIGTERM (requests in flight finish first).
    """
    from rfmflow.service.server import serve as run

    run(_settings(env_file, host=host, port=port), announce=lambda text: click.echo(text))


# --- keys ---------------------------------------------------------------------------------
@click.group()
def keys() -> None:
    """Create, list and revoke API keys (changes are written to the audit log)."""


@keys.command("create")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the key may do.")
@click.option("--name", required=True, help="Who or what uses the key (for the list and the audit log).")
@click.option("--json", "as_json", is_flag=True, help="Print the key and its record as JSON.")
@env_file_option
@_errors
def keys_create(role: str, name: str, as_json: bool, env_file: Path | None) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from rfmflow.service.auth import cli_actor, create_key

    engine = _migrated_engine(_settings(env_file))
    try:
        key, text = create_key(engine, role=role, name=name, actor=cli_actor())
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps({**key.as_dict(), "key": text}, indent=2))
    else:
        click.echo(text)
        click.echo(f"created key {key.id} ({key.role}, {key.name!r}); it is shown only this once", err=True)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@env_file_option
@_errors
def keys_list(as_json: bool, env_file: Path | None) -> None:
    """List keys (id, name, role, prefix, created, revoked); secrets are never shown."""
    from rfmflow.service.auth import list_keys

    engine = _migrated_engine(_settings(env_file))
    try:
        found = list_keys(engine)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps([k.as_dict() for k in found], indent=2))
        return
    if not found:
        click.echo("no API keys (create one with `rfmflow keys create --role admin --name NAME`)", err=True)
        return
    rows = [("id", "name", "role", "prefix", "created", "status")]
    for k in found:
        status = "active" if k.active else f"revoked {k.revoked_at:%Y-%m-%d %H:%M}"
        rows.append(
            (str(k.id), k.name, k.role, f"rfm_{k.prefix}_…", f"{k.created_at:%Y-%m-%d %H:%M}", status)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


@keys.command("revoke")
@click.argument("key_id", type=int)
@env_file_option
@_errors
def keys_revoke(key_id: int, env_file: Path | None) -> None:
    """Revoke key KEY_ID (see `rfmflow keys list`); it stops working at once."""
    from rfmflow.service.auth import cli_actor, revoke_key

    engine = _migrated_engine(_settings(env_file))
    try:
        key = revoke_key(engine, key_id, actor=cli_actor())
    finally:
        engine.dispose()
    click.echo(f"revoked key {key.id} ({key.role}, {key.name!r})", err=True)


# --- db -----------------------------------------------------------------------------------
@click.group()
def db() -> None:
    """The service's database schema (Alembic migrations shipped with rfmflow)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@env_file_option
@_errors
def db_upgrade(revision: str, env_file: Path | None) -> None:
    """Migrate the schema up to REVISION (default: head, the newest)."""
    from rfmflow.service.db.migrate import current, upgrade

    engine = _engine(_settings(env_file))
    try:
        before = current(engine)
        upgrade(engine, revision)
        after = current(engine)
    finally:
        engine.dispose()
    click.echo(after or "base")
    click.echo(f"schema at {after or 'base'} (was {before or 'base'})", err=True)


@db.command("downgrade")
@click.argument("revision")
@env_file_option
@_errors
def db_downgrade(revision: str, env_file: Path | None) -> None:
    """Migrate the schema down to REVISION (`-1`: one step; `base`: drop every table and its data)."""
    from rfmflow.service.db.migrate import current, downgrade

    engine = _engine(_settings(env_file))
    try:
        before = current(engine)
        downgrade(engine, revision)
        after = current(engine)
    finally:
        engine.dispose()
    click.echo(after or "base")
    click.echo(f"schema at {after or 'base'} (was {before or 'base'})", err=True)


@db.command("current")
@env_file_option
@_errors
def db_current(env_file: Path | None) -> None:
    """Print the schema's revision (and whether it is the newest)."""
    from rfmflow.service.db.migrate import current, head_revision

    engine = _engine(_settings(env_file))
    try:
        revision = current(engine)
    finally:
        engine.dispose()
    head = head_revision()
    click.echo(revision or "base")
    if revision == head:
        click.echo("the schema is current", err=True)
    else:
        click.echo(f"the newest revision is {head}: run `rfmflow db upgrade`", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def service_cli() -> None:
    """rfmflow's service commands (also available as `rfmflow serve|keys|db`)."""


service_cli.add_command(serve)
service_cli.add_command(keys)
service_cli.add_command(db)

"""The service's commands: ``rfmflow import``, ``rfmflow keys ...``, ``rfmflow db ...`` (and the
helpers ``rfmflow serve`` uses; that command is composed in :mod:`rfmflow.cli.serve_cmd`).

Register them on the main group with ``main.add_command(import_events)`` (named ``import``),
``main.add_command(keys)`` and ``main.add_command(db)``;
``python -m rfmflow.service`` runs them on their own. Heavy
imports (FastAPI, SQLAlchemy, uvicorn) happen inside the commands, so ``rfmflow score``
does not pay for them.

Exit status: 0 success, 1 runtime error (bad setting, database unreachable, unknown key),
2 usage error.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from rfmflow.engines.duckdb_engine import Progress
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


@contextmanager
def service_database(env_file: Path | None) -> Iterator[tuple[Settings, Any]]:
    """The settings and a migrated engine, disposed at the end (for commands on the database)."""
    settings = _settings(env_file)
    engine = _migrated_engine(settings)
    try:
        yield settings, engine
    finally:
        engine.dispose()


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON (dates and other values as text)."""
    click.echo(json.dumps(data, indent=2, default=str))


def _load_demo_if_empty(settings: Settings) -> None:
    """Migrate, then load the demo data unless the database already holds events."""
    from rfmflow.service.demo_data import has_events, load_demo

    engine = _migrated_engine(settings)
    try:
        if has_events(engine):
            click.echo("the database already holds events: the demo data was not loaded", err=True)
            return
        with _progress_bar() as progress:
            progress.start("Loading demo data", None)
            loaded = load_demo(engine, settings, progress=lambda done, total: progress.total(done, total))
        click.echo(loaded.describe(), err=True)
        from rfmflow.service.scoring_jobs import run_now

        run = run_now(engine, settings, trigger="cli", wait_seconds=30.0)
        segments = ", ".join(f"{name} {count:,}" for name, count in run.segment_counts.items())
        click.echo(f"scored {run.customers:,} customers as of {run.as_of}: {segments}", err=True)
        if settings.predictions:
            from rfmflow.service.cli_predictions import describe_fit
            from rfmflow.service.predictions import fit_predictions

            fit = fit_predictions(engine, settings)
            click.echo(describe_fit(fit.as_dict()), err=True)
    finally:
        engine.dispose()


# --- import -------------------------------------------------------------------------------
class _RichProgress:
    """A transient rich progress bar on stderr (nothing when stderr is not a terminal).

    Implements the engines' ``Progress`` port (start/update/stop)."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.bar: Any = None
        self.task: Any = None

    def start(self, description: str, total: float | None) -> None:
        if not self.console.is_terminal:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.stop()
        self.bar = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            MofNCompleteColumn() if description.startswith(("Importing", "Loading")) else TextColumn(""),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task(description, total=total)

    def update(self, completed: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=completed)

    def total(self, completed: float, total: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=completed, total=total)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
        self.bar = None
        self.task = None


@contextlib.contextmanager
def _progress_bar() -> Iterator[_RichProgress]:
    progress = _RichProgress()
    try:
        yield progress
    finally:
        progress.stop()


def _reading_options(func: F) -> F:
    """The options of ``rfmflow score`` that say how to read a file (same names and meaning)."""
    options = [
        click.option(
            "--tz",
            "--timezone",
            "timezone",
            help="Time zone of dates written without one (IANA name). Default: RFMFLOW_TIMEZONE.",
        ),
        click.option(
            "--event-type",
            "event_types",
            multiple=True,
            metavar="TYPE[,TYPE]",
            help="Import only events of these types (repeatable).",
        ),
        click.option("--customer-col", help="Column holding the customer id."),
        click.option("--date-col", help="Column holding the event date or timestamp."),
        click.option("--amount-col", help="Column holding the amount (total of the line)."),
        click.option("--price-col", help="Unit price column (amount = price x quantity)."),
        click.option("--quantity-col", help="Quantity column (amount = price x quantity)."),
        click.option("--type-col", help="Column holding the event type (purchase, refund, message, ...)."),
        click.option("--order-col", help="Column holding the order id (the lines of one order count once)."),
        click.option("--currency-col", help="Column holding the currency code (must be RFMFLOW_CURRENCY)."),
        click.option(
            "--id-col",
            help="Column holding a unique event id (default: a column named event_id or id; "
            "without one, ids are derived from each row's content).",
        ),
        click.option(
            "--delimiter", help="Field delimiter (default: sniffed). Use 'tab' or 'whitespace' for those."
        ),
        click.option("--no-header", is_flag=True, help="The file has no header line."),
        click.option(
            "--columns", "column_names", help="Comma-separated column names (with --no-header, or to rename)."
        ),
        click.option(
            "--date-format", help="strptime format of the dates, e.g. %d/%m/%Y (default: detected)."
        ),
        click.option(
            "--encoding",
            default="utf-8",
            show_default=True,
            help="Text encoding of CSV/JSON files (e.g. cp1252).",
        ),
        click.option("--decimal-comma", is_flag=True, help="Amounts use a decimal comma (12,50)."),
        click.option(
            "--strict",
            is_flag=True,
            help="Stop at the first malformed row and import nothing (one transaction).",
        ),
        click.option(
            "--rejects",
            "rejects_path",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Where to write rejected rows (default: <input name>.rejects.csv in the current directory).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _split(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _check_zone(name: str | None) -> None:
    if name is None:
        return
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(
            f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)", param_hint="--tz"
        ) from None


@click.command("import")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@_reading_options
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=10_000,
    show_default=True,
    help="Events stored per transaction.",
)
@click.option(
    "--demo", is_flag=True, help="Load the demo data instead of a file (into a database without events)."
)
@click.option("--database-url", help="The database (default: RFMFLOW_DATABASE_URL, else the SQLite file).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@env_file_option
@_errors
def import_events(
    file: Path | None,
    batch_size: int,
    demo: bool,
    database_url: str | None,
    as_json: bool,
    env_file: Path | None,
    **opts: Any,
) -> None:
    """Import the event history in FILE (CSV, JSON lines or Parquet, read as `rfmflow score`
    reads it) into the service's database.

    Rows that cannot be read are rejected with their line number and reason and written to
    the rejects file; the others are stored with the customers' aggregates. Event ids come
    from an event_id/id column, or are derived from each row's content, so importing the
    same file again counts nothing twice. The database is migrated first if needed.
    """
    if demo == (file is not None):
        raise click.UsageError("give a FILE to import, or --demo (not both)")
    _check_zone(opts["timezone"])
    settings = _settings(env_file, database_url=database_url)
    if demo:
        _load_demo_if_empty(settings)
        return
    assert file is not None
    from rfmflow.service.imports import import_events as run_import
    from rfmflow.service.imports import reading_options

    columns = {
        role: opts[f"{role}_col"]
        for role in ("customer", "date", "amount", "price", "quantity", "type", "order", "currency")
        if opts.get(f"{role}_col")
    }
    names = [c.strip() for c in opts["column_names"].split(",")] if opts["column_names"] else None
    options = reading_options(
        settings,
        timezone=opts["timezone"],
        event_types=_split(opts["event_types"]) or None,
        columns=columns,
        delimiter=opts["delimiter"],
        header=not opts["no_header"],
        column_names=names,
        date_format=opts["date_format"],
        decimal_comma=opts["decimal_comma"],
        encoding=opts["encoding"],
        strict=opts["strict"],
    )
    engine = _migrated_engine(settings)
    try:
        with _progress_bar() as progress:
            report = run_import(
                engine,
                file,
                settings,
                options,
                id_column=opts["id_col"],
                rejects_path=opts["rejects_path"],
                batch_size=batch_size,
                progress=cast("Progress", progress),  # implements the port (start/update/stop)
            )
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(report.as_dict(max_rejects=100), indent=2))
    else:
        _print_report(report)


def _print_report(report: Any) -> None:
    ids = f"column {report.id_column!r}" if report.id_column else "derived from each row's content"
    lines = [
        ("rows read", f"{report.rows_read:,}"),
        ("accepted", f"{report.accepted:,} (new events)"),
        ("duplicates", f"{report.duplicates:,} (stored before; not counted again)"),
        (
            "rejected",
            f"{report.rejected:,}" + (f" (in {report.rejects_path})" if report.rejects_path else ""),
        ),
    ]
    if report.skipped:
        lines.append(("skipped", f"{report.skipped:,} (other event types)"))
    lines += [
        ("customers", f"{report.customers:,}"),
        ("dates", f"{report.first_date} to {report.last_date}" if report.first_date else "-"),
        ("columns", ", ".join(f"{role}={col}" for role, col in report.columns.items())),
        ("event ids", ids),
        ("time", f"{report.seconds:.1f} s ({report.rows_per_second:,.0f} rows/s)"),
    ]
    if report.scoring_run is not None:
        lines.append(("scoring", f"run {report.scoring_run} re-scored every customer (large import)"))
    width = max(len(k) for k, _ in lines)
    click.echo(f"imported {report.source}")
    for key, value in lines:
        click.echo(f"  {key.ljust(width)}  {value}")
    for line, reason, _raw in report.rejects[:5]:
        click.echo(f"{report.line_label} {line}: {reason}", err=True)
    if report.rejected > 5:
        click.echo(f"... and {report.rejected - 5:,} more rejected rows in {report.rejects_path}", err=True)
    for note in report.notes:
        click.echo(f"note: {note}", err=True)


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
    from rfmflow.service.db.migrate import upgrade

    _migrate(env_file, lambda engine: upgrade(engine, revision))


@db.command("downgrade")
@click.argument("revision")
@env_file_option
@_errors
def db_downgrade(revision: str, env_file: Path | None) -> None:
    """Migrate the schema down to REVISION (`-1`: one step; `base`: drop every table and its data)."""
    from rfmflow.service.db.migrate import downgrade

    _migrate(env_file, lambda engine: downgrade(engine, revision))


def _migrate(env_file: Path | None, step: Callable[[Engine], None]) -> None:
    """Run one migration step and print the revision before and after it."""
    from rfmflow.service.db.migrate import current

    engine = _engine(_settings(env_file))
    try:
        before = current(engine)
        step(engine)
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
    """rfmflow's service commands (also available as `rfmflow serve|import|keys|db`)."""


service_cli.add_command(import_events)
service_cli.add_command(keys)
service_cli.add_command(db)

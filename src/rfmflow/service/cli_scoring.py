"""``rfmflow worker`` and ``rfmflow scheme apply``.

Register them with ``main.add_command(worker)`` and, on the ``scheme`` group,
``scheme.add_command(scheme_apply)`` (its name is ``apply``). Heavy imports happen inside
the commands. Exit status: 0 success, 1 runtime error (invalid scheme, database unreachable,
a run in progress), 2 usage error.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rfmflow.service.cli import _errors, _migrated_engine, _settings, env_file_option

if TYPE_CHECKING:
    from rfmflow.service.scoring import RunResult


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


def _print_run(run: dict[str, Any]) -> None:
    click.echo(
        f"run {run['id']} as of {run['as_of']}: {run['customers']} customers scored with scheme version "
        f"{run['scheme_version']}, {run['moves']} segment moves, {run['duration_ms'] / 1000:.2f} s",
        err=True,
    )
    rows = [("segment", "customers")]
    rows += [(name, str(n)) for name, n in run["segment_counts"].items()]
    _table(rows)


@click.command()
@click.option("--once", is_flag=True, help="Run the scheduled run if it is due, then exit.")
@click.option(
    "--now",
    "run_now_flag",
    is_flag=True,
    help="Score everyone now (not waiting for the schedule), then exit.",
)
@click.option(
    "--poll",
    type=click.FloatRange(0.1, 3600),
    default=30.0,
    show_default=True,
    help="Seconds between checks for a due run.",
)
@click.option("--json", "as_json", is_flag=True, help="With --once or --now: print the run as JSON.")
@env_file_option
@_errors
def worker(once: bool, run_now_flag: bool, poll: float, as_json: bool, env_file: Path | None) -> None:
    """Run scheduled scoring runs (RFMFLOW_SCORE_CRON, default 'daily 03:00') until stopped.

    Start as many workers as you like on PostgreSQL: each due run is done by exactly one.
    SIGTERM or Ctrl-C stops the worker after the run in progress, if any.
    """
    from rfmflow.service.logs import configure_logging
    from rfmflow.service.scoring_jobs import (
        ensure_job,
        load_schedule,
        run_due,
        run_now,
        worker_id,
        worker_loop,
    )

    settings = _settings(env_file)
    configure_logging(settings.log_level)
    schedule = load_schedule(env_file=env_file)
    engine = _migrated_engine(settings)
    try:
        if run_now_flag or once:
            result: RunResult | None
            if run_now_flag:
                result = run_now(engine, settings, trigger="cli", actor=worker_id("cli"), wait_seconds=3600)
            else:
                ensure_job(engine, schedule, settings)
                result = run_due(engine, settings, schedule, worker_id())
            if result is None:
                click.echo("no scoring run is due", err=True)
            elif as_json:
                click.echo(json.dumps(result.as_dict(), indent=2))
            else:
                _print_run(result.as_dict())
            return
        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda _s, _f: stop.set())
        click.echo(f"worker started: schedule {schedule.text!r} ({settings.timezone})", err=True)
        worker_loop(engine, settings, stop, schedule=schedule, poll_seconds=poll)
        click.echo("worker stopped", err=True)
    finally:
        engine.dispose()


@click.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Only show the segment counts it would give; store nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@env_file_option
@_errors
def scheme_apply(file: Path, dry_run: bool, as_json: bool, env_file: Path | None) -> None:
    """Store the scheme in FILE as the service's next version and re-score everyone.

    The scheme is validated first (errors name the field); with --dry-run the segment counts
    it would give today are shown next to the current ones and nothing is stored.
    """
    from rfmflow.core.coverage import check_coverage
    from rfmflow.service.auth import cli_actor
    from rfmflow.service.scoring import preview_scheme
    from rfmflow.service.scoring_jobs import run_now
    from rfmflow.service.scoring_schemes import parse_scheme

    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        click.echo(f"error: {file}: not UTF-8 text", err=True)
        sys.exit(1)
    scheme = parse_scheme(text, source=str(file))
    warnings = check_coverage(scheme).messages()
    for message in warnings:
        click.echo(f"warning: {message}", err=True)
    settings = _settings(env_file)
    engine = _migrated_engine(settings)
    try:
        if dry_run:
            preview = preview_scheme(engine, settings, scheme)
            if as_json:
                click.echo(json.dumps({**preview, "warnings": warnings}, indent=2))
                return
            current, proposed = preview["current"], preview["proposed"]
            names = list(dict.fromkeys([*proposed["segment_counts"], *current["segment_counts"]]))
            rows = [("segment", f"now (v{current['version']} {current['name']})", f"with {proposed['name']}")]
            rows += [
                (n, str(current["segment_counts"].get(n, 0)), str(proposed["segment_counts"].get(n, 0)))
                for n in names
            ]
            rows.append(("total", str(current["customers"]), str(proposed["customers"])))
            _table(rows)
            click.echo(f"dry run as of {preview['as_of']}: nothing was stored", err=True)
            return
        result = run_now(
            engine,
            settings,
            trigger="scheme",
            actor=cli_actor(),
            wait_seconds=300,
            scheme_text=text,
            scheme=scheme,
        )
    finally:
        engine.dispose()
    if as_json:
        click.echo(
            json.dumps({"version": result.scheme_version, "run": result.as_dict(), "warnings": warnings})
        )
        return
    click.echo(f"stored scheme {scheme.name!r} as version {result.scheme_version}", err=True)
    _print_run(result.as_dict())

"""``rfmflow scheme apply`` and the printing of a scoring run (``rfmflow worker``, composed in
:mod:`rfmflow.cli.worker_cmd`, uses it).

Register it on the ``scheme`` group: ``scheme.add_command(scheme_apply)`` (its name is
``apply``). Heavy imports happen inside the command. Exit status: 0 success, 1 runtime error
(invalid scheme, database unreachable, a run in progress), 2 usage error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rfmflow.service.cli import _errors, _migrated_engine, _settings, env_file_option

if TYPE_CHECKING:
    pass


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

"""``rfmflow tags list|import|export|add|remove``: customers' tags in the service's database.

Register with ``main.add_command(tags)``. The database comes from the same settings as the
other service commands (``RFMFLOW_DATABASE_URL``, ``.env``, ``--env-file``) and is migrated
first if needed. Changes are recorded like the API's (``tag_changes``, one ``audit_log``
row per command, actor ``cli:<user>``). Exit status: 0 success, 1 runtime error (unknown
customer or tag, a rule tag, rejected import lines), 2 usage error.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from rfmflow.service.cli import _errors, _migrated_engine, _settings, env_file_option


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


@contextmanager
def _engine(env_file: Path | None) -> Iterator[Any]:
    engine = _migrated_engine(_settings(env_file))
    try:
        yield engine
    finally:
        engine.dispose()


_COUNTED = (
    ("added", "added"),
    ("removed", "removed"),
    ("replaced", "replaced"),
    ("unchanged", "unchanged"),
    ("duplicate", "duplicates"),
    ("skipped", "skipped (rule tags)"),
    ("rejected", "rejected"),
)


@click.group()
def tags() -> None:
    """List, import, export, add and remove customers' tags (service database)."""


@tags.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the tags as JSON.")
@env_file_option
@_errors
def tags_list(as_json: bool, env_file: Path | None) -> None:
    """Every tag: kind (rule or manual), group, customers holding it, description."""
    from rfmflow.service.tags import list_tags

    with _engine(env_file) as engine, engine.connect() as conn:
        found = list_tags(conn)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo("no tags yet (rule tags appear after the first scoring run)", err=True)
        return
    rows = [("tag", "kind", "group", "customers", "description")]
    rows += [(t["name"], t["kind"], t["group"] or "", f"{t['customers']:,}", t["description"]) for t in found]
    _table(rows)


def _print_results(customer: str, results: Sequence[Any]) -> None:
    for r in results:
        extra = f" (replaced {', '.join(r.replaced)})" if r.replaced else ""
        click.echo(f"{customer}: {r.tag}: {r.status}{extra}", err=True)


def _change(env_file: Path | None, customer: str, names: Sequence[str], action: str) -> None:
    from rfmflow.service.auth import cli_actor
    from rfmflow.service.db.engine import run_write
    from rfmflow.service.tags import TagError, TagOp, TagRejected, change_tags, customer_known

    ops = [TagOp(customer, name, "add" if action == "add" else "remove") for name in names]
    with _engine(env_file) as engine:

        def work(conn: Any) -> Any:
            if not customer_known(conn, customer):
                raise TagError(f"no customer {customer!r}")
            return change_tags(
                conn,
                ops,
                actor=cli_actor(),
                at=datetime.now(UTC),
                audit_action=f"tag.{action}",
                audit_target=f"customer:{customer}",
                audit_details={"tags": list(names)},
            )

        try:
            report = run_write(engine, work)
        except TagRejected as err:
            for r in err.report.results:
                if r.status == "rejected":
                    click.echo(f"error: {r.tag}: {r.reason}", err=True)
            click.echo("nothing was changed", err=True)
            sys.exit(1)
    _print_results(customer, report.results)


@tags.command("add")
@click.argument("customer")
@click.argument("tag_names", metavar="TAG...", nargs=-1, required=True)
@env_file_option
@_errors
def tags_add(customer: str, tag_names: tuple[str, ...], env_file: Path | None) -> None:
    """Add manual tags to CUSTOMER (all or nothing; a tag of an exclusive group replaces the other)."""
    _change(env_file, customer, tag_names, "add")


@tags.command("remove")
@click.argument("customer")
@click.argument("tag_name", metavar="TAG")
@env_file_option
@_errors
def tags_remove(customer: str, tag_name: str, env_file: Path | None) -> None:
    """Remove a manual tag from CUSTOMER."""
    _change(env_file, customer, [tag_name], "remove")


@tags.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--partial", is_flag=True, help="Apply the good lines even when some are rejected.")
@click.option(
    "--create", is_flag=True, help="Create unknown tags as manual tags (default: reject those lines)."
)
@click.option(
    "--rejects",
    "rejects_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write rejected lines (default: <input name>.rejects.csv in the current directory).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@env_file_option
@_errors
def tags_import(
    file: Path, partial: bool, create: bool, rejects_path: Path | None, as_json: bool, env_file: Path | None
) -> None:
    """Import tag changes from a CSV FILE: a header naming customer_id, tag and optionally action
    (add or remove; default add) and kind (lines of kind rule are skipped).

    All or nothing unless --partial: any rejected line (unknown customer or tag, a rule tag,
    a malformed line) fails the import, which then writes nothing. Rejected lines are printed
    with their line numbers and written to the rejects file.
    """
    from rfmflow.service.auth import cli_actor
    from rfmflow.service.cli import _progress_bar
    from rfmflow.service.db.engine import run_write
    from rfmflow.service.tags_csv import ImportRejected, ImportReport, decode, import_tags

    text = decode(file.read_bytes())
    with _engine(env_file) as engine, _progress_bar() as bar:

        def progress(done: int, total: int) -> None:
            if bar.bar is None:
                bar.start("Importing tags", total)
            bar.update(done)

        try:
            report: ImportReport = run_write(
                engine,
                lambda conn: import_tags(
                    conn,
                    text,
                    actor=cli_actor(),
                    at=datetime.now(UTC),
                    partial=partial,
                    create=create,
                    source=file.name,
                    progress=progress,
                ),
                attempts=1,
            )
        except ImportRejected as err:
            report = err.report
    target = rejects_path or Path(file.stem + ".rejects.csv")
    if report.rejects:
        with target.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["line", "reason", "raw"])
            writer.writerows((r.line, r.reason, r.raw) for r in report.rejects)
    if as_json:
        click.echo(json.dumps({**report.as_dict(max_rejects=100), "rejects_path": str(target)}, indent=2))
    else:
        c = report.as_dict()
        state = "imported" if report.applied else "nothing imported"
        parts = [f"{label} {c.get(key, 0):,}" for key, label in _COUNTED]
        click.echo(f"{state} {file}: {report.lines:,} lines; {', '.join(parts)}")
        if report.created_tags:
            click.echo(f"created tags: {', '.join(report.created_tags)}")
    for r in report.rejects[:5]:
        click.echo(f"line {r.line}: {r.reason}", err=True)
    if report.rejects:
        more = f" ({len(report.rejects) - 5:,} more)" if len(report.rejects) > 5 else ""
        click.echo(f"rejected lines{more} written to {target}", err=True)
    if not report.applied:
        click.echo("nothing was imported (use --partial to import the other lines)", err=True)
        sys.exit(1)


@tags.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file.")
@click.option("--tag", "tag_names", multiple=True, help="Only this tag (repeatable).")
@click.option("--kind", type=click.Choice(["rule", "manual"]), help="Only tags of this kind.")
@env_file_option
@_errors
def tags_export(
    output: Path | None, tag_names: tuple[str, ...], kind: str | None, env_file: Path | None
) -> None:
    """Export customers' tags as CSV: customer_id,tag,kind,added_at,added_by."""
    from rfmflow.service.tags import get_tag
    from rfmflow.service.tags_csv import export_csv

    with _engine(env_file) as engine, engine.connect() as conn, conn.begin():  # one snapshot for the file
        for name in tag_names:
            get_tag(conn, name)  # unknown: an error naming it
        chunks = export_csv(conn, names=tag_names, kind=kind)
        if output is None:
            for chunk in chunks:
                click.echo(chunk, nl=False)
            return
        tmp = output.with_name(output.name + ".tmp")
        rows = -1
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            for chunk in chunks:
                rows += chunk.count("\n")
                fh.write(chunk)
        tmp.replace(output)
    click.echo(f"wrote {rows:,} tag rows to {output}", err=True)

"""``rfmflow export customers|transitions|runs|snapshots``: the service's lists to a file.

Register with ``main.add_command(export)``. Reads the service database (the same settings as
``rfmflow serve``); the rows and columns are those of the HTTP exports (``/v1/exports/...``).
The format is ``--format``, else the extension of ``-o`` (``.parquet``/``.pq``: Parquet, else
CSV); without ``-o``, CSV goes to stdout. A file is written under a temporary name and renamed
when complete. A progress bar shows on stderr when it is a terminal.

Exit status: 0 success, 1 runtime error (database unreachable, unknown segment), 2 usage
error (bad option, a range upside down, Parquet without ``-o``).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from rfmflow.service.cli import _errors, _migrated_engine, _progress_bar, _settings, env_file_option

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from rfmflow.service.exports import Column
    from rfmflow.service.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
RANGES = (
    ("r_score", int),
    ("f_score", int),
    ("m_score", int),
    ("recency", int),
    ("frequency", int),
    ("monetary", Decimal),
)


class _DecimalType(click.ParamType[Decimal, Any]):
    name = "DECIMAL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Decimal:
        from decimal import InvalidOperation

        try:
            number = Decimal(str(value))
        except InvalidOperation:
            self.fail(f"{value!r} is not a decimal number", param, ctx)
        if not number.is_finite():
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def _output_options(func: F) -> F:
    options = [
        click.option(
            "-o",
            "--output",
            type=click.Path(dir_okay=False, path_type=Path),
            help="File to write (.csv or .parquet). Default: CSV on stdout.",
        ),
        click.option(
            "--format",
            "fmt",
            type=click.Choice(["csv", "parquet"]),
            help="Format (default: from the -o extension, else csv).",
        ),
        env_file_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _day_options(func: F) -> F:
    options = [
        click.option("--from", "from_", type=click.DateTime(["%Y-%m-%d"]), help="First day (YYYY-MM-DD)."),
        click.option("--to", type=click.DateTime(["%Y-%m-%d"]), help="Last day (YYYY-MM-DD)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _customer_options(func: F) -> F:
    options: list[Callable[[F], F]] = [
        click.option("--segment", multiple=True, help="Segment (repeat: any of them)."),
        click.option("--lifecycle", multiple=True, help="Lifecycle stage (repeat: any of them)."),
        click.option(
            "--churn-risk",
            multiple=True,
            type=click.Choice(["low", "medium", "high"]),
            help="Predicted churn risk (repeat: any of them).",
        ),
        click.option("--tag", multiple=True, help="Has this tag (repeat: all of them)."),
        click.option("--tag-any", multiple=True, help="Has at least one of these tags (repeat)."),
        click.option("--tag-none", multiple=True, help="Has none of these tags (repeat)."),
        click.option("-q", "--query", "q", help="Prefix of the customer id, the email or the name."),
    ]
    for name, kind in RANGES:
        flag = name.replace("_", "-")
        unit = " (currency units)" if name == "monetary" else ""
        param: click.ParamType[Any, Any] = _DecimalType() if kind is Decimal else click.IntRange(min=0)
        options.append(
            click.option(f"--{flag}-min", f"{name}_min", type=param, help=f"{name}, at least{unit}.")
        )
        options.append(
            click.option(f"--{flag}-max", f"{name}_max", type=param, help=f"{name}, at most{unit}.")
        )
    from rfmflow.service.customer_search import SORTS

    options += [
        click.option("--sort", type=click.Choice(SORTS), default="customer_id", show_default=True),
        click.option("--order", type=click.Choice(["asc", "desc"]), default="asc", show_default=True),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _day(value: datetime | None) -> int | None:
    from rfmflow.service.history import day_number

    return None if value is None else day_number(value.date())


def _usage(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _write(
    what: str,
    output: Path | None,
    fmt: str | None,
    env_file: Path | None,
    columns: Callable[[Connection], Sequence[Column]],
    rows: Callable[[Connection, Settings], Iterator[Mapping[str, Any]]],
    count: Callable[[Connection, Settings], int | None],
) -> None:
    """Open the database, then write ``rows`` to ``output`` (or stdout) with a progress bar."""
    from rfmflow.service.exports import csv_chunks, format_of, write_file

    chosen = format_of(output or "out.csv", fmt)
    if chosen == "parquet" and output is None:
        _usage("Parquet needs a file: give -o FILE.parquet")
    settings = _settings(env_file)
    engine = _migrated_engine(settings)
    try:
        with engine.connect() as conn, _progress_bar() as progress:
            total = count(conn, settings)
            progress.start(f"Exporting {what}", total)
            cols = columns(conn)
            done = 0

            def counted() -> Iterator[Mapping[str, Any]]:
                nonlocal done
                for row in rows(conn, settings):
                    done += 1
                    yield row

            if output is None:
                for chunk in csv_chunks(cols, counted(), progress=progress.update):
                    sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
            else:
                write_file(
                    output,
                    chosen,
                    cols,
                    counted(),
                    money_decimals=settings.money_decimals,
                    progress=progress.update,
                )
        where = "stdout" if output is None else str(output)
        click.echo(f"exported {done:,} {what} to {where} ({chosen})", err=True)
    finally:
        engine.dispose()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def export() -> None:
    """Export the service's lists (customers, segment moves, runs, snapshots) as CSV or Parquet."""


def _errors_and_usage(func: F) -> F:
    """Runtime errors exit 1 (``_errors``); a bad filter is a usage error (exit 2)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from rfmflow.service.customer_search import SearchError

        try:
            return func(*args, **kwargs)
        except SearchError as err:
            names = {p: "--query" if p == "q" else "--" + p.replace("_", "-") for p, _ in err.problems}
            _usage("; ".join(f"{names[p]}: {m}" for p, m in err.problems))
        return None

    return _errors(wrapper)  # type: ignore[return-value]


@export.command("customers")
@_customer_options
@_output_options
@_errors_and_usage
def export_customers(
    output: Path | None, fmt: str | None, env_file: Path | None, sort: str, order: str, **opts: Any
) -> None:
    """Every customer the filters select (the columns of GET /v1/customers), in the list's order."""
    from rfmflow.service.customer_search import (
        Bounds,
        CustomerFilter,
        SearchError,
        check_segments,
        count_matches,
        iter_customers,
        money_scheme,
    )
    from rfmflow.service.exports import customer_columns

    f = CustomerFilter(
        segments=tuple(opts["segment"]),
        lifecycles=tuple(opts["lifecycle"]),
        churn_risks=tuple(opts["churn_risk"]),
        tags_all=tuple(opts["tag"]),
        tags_any=tuple(opts["tag_any"]),
        tags_none=tuple(opts["tag_none"]),
        q=opts["q"],
        **{name: Bounds(opts[f"{name}_min"], opts[f"{name}_max"]) for name, _kind in RANGES},
    )
    problems = f.problems()
    if problems:
        raise SearchError(problems)

    def columns(conn: Connection) -> Sequence[Column]:
        check_segments(conn, f.segments)
        return customer_columns(money=money_scheme(conn))

    def count(conn: Connection, settings: Settings) -> int:
        try:
            check_segments(conn, f.segments)
        except SearchError as err:  # an unknown segment is a runtime error (exit 1), not usage
            from rfmflow.core.errors import RfmflowError

            raise RfmflowError(err.problems[0][1]) from None
        return count_matches(conn, settings, f)

    _write(
        "customers",
        output,
        fmt,
        env_file,
        columns,
        lambda conn, settings: iter_customers(conn, settings, f, sort=sort, order=order),
        count,
    )


@export.command("transitions")
@_day_options
@click.option(
    "--from-segment", multiple=True, help="Moved out of this segment (repeat; '(none)': first scored)."
)
@click.option("--to-segment", multiple=True, help="Moved into this segment (repeat).")
@click.option("--cause", multiple=True, type=click.Choice(["run", "event", "scheme"]), help="Why (repeat).")
@_output_options
@_errors_and_usage
def export_transitions(
    output: Path | None,
    fmt: str | None,
    env_file: Path | None,
    from_: datetime | None,
    to: datetime | None,
    from_segment: tuple[str, ...],
    to_segment: tuple[str, ...],
    cause: tuple[str, ...],
) -> None:
    """The segment moves after --from up to --to (default: the last 30 days), oldest first."""
    from rfmflow.service.exports import MOVES
    from rfmflow.service.history import MoveFilter, count_moves, day_number, iter_moves
    from rfmflow.service.scoring_live import business_day

    def moves(settings: Settings) -> MoveFilter:
        end = day_number(to.date()) if to is not None else business_day(datetime.now().astimezone(), settings)
        start = day_number(from_.date()) if from_ is not None else end - 30
        return MoveFilter(start, end, from_segments=from_segment, to_segments=to_segment, causes=cause)

    def count(conn: Connection, settings: Settings) -> int:
        return count_moves(conn, moves(settings))

    _write(
        "segment moves",
        output,
        fmt,
        env_file,
        lambda _conn: MOVES,
        lambda conn, settings: iter_moves(conn, moves(settings)),
        count,
    )


@export.command("runs")
@_day_options
@_output_options
@_errors_and_usage
def export_runs(
    output: Path | None, fmt: str | None, env_file: Path | None, from_: datetime | None, to: datetime | None
) -> None:
    """The finished scoring runs (as-of day between --from and --to), oldest first."""
    from rfmflow.service.exports import RUNS
    from rfmflow.service.history import run_rows

    _check_days(from_, to)
    _write(
        "runs",
        output,
        fmt,
        env_file,
        lambda _conn: RUNS,
        lambda conn, _settings: run_rows(conn, from_day=_day(from_), to_day=_day(to)),
        lambda _conn, _settings: None,
    )


@export.command("snapshots")
@_day_options
@click.option("--segment", multiple=True, help="Only these segments (repeat).")
@click.option(
    "--per",
    type=click.Choice(["day", "run"]),
    default="day",
    show_default=True,
    help="day: the last run of each as-of day; run: every run.",
)
@_output_options
@_errors_and_usage
def export_snapshots(
    output: Path | None,
    fmt: str | None,
    env_file: Path | None,
    from_: datetime | None,
    to: datetime | None,
    segment: tuple[str, ...],
    per: str,
) -> None:
    """One row per run (or day) and segment: customers, share, revenue, revenue share, means."""
    from rfmflow.service.exports import SNAPSHOTS
    from rfmflow.service.history import snapshot_rows

    _check_days(from_, to)
    _write(
        "snapshot rows",
        output,
        fmt,
        env_file,
        lambda _conn: SNAPSHOTS,
        lambda conn, settings: snapshot_rows(
            conn, settings, from_day=_day(from_), to_day=_day(to), segments=segment, per=per
        ),
        lambda _conn, _settings: None,
    )


def _check_days(from_: datetime | None, to: datetime | None) -> None:
    if from_ is not None and to is not None and from_ > to:
        _usage("--from must not be after --to")


__all__ = ["export"]

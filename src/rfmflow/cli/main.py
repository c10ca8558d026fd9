"""The ``rfmflow`` command: parse, call, render.

Exit status: 0 on success, 1 on a runtime error (bad input, invalid scheme), 2 on a usage
error. Messages go to stderr, results to stdout or ``-o``.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from rfmflow.core.errors import RfmflowError

F = TypeVar("F", bound=Callable[..., Any])


def _consoles() -> tuple[Console, Console]:
    out, err = Console(), Console(stderr=True)
    if not out.is_terminal:
        out = Console(width=160)
    if not err.is_terminal:
        err = Console(stderr=True, width=160)
    return out, err


def _fail(message: str) -> None:
    # Messages quote user data (column names such as "[Customer]"): never read it as markup.
    Console(stderr=True).print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(1)


def _handle_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RfmflowError as err:
            _fail(str(err))
        except OSError as err:
            _fail(f"{getattr(err, 'filename', '') or ''}: {err.strerror or err}")
        return None

    return wrapper  # type: ignore[return-value]


def _split(values: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for value in values:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return out


def _input_options(func: F) -> F:
    """Options shared by ``score`` and ``report``."""
    options = [
        click.option(
            "--scheme",
            "scheme_name",
            metavar="NAME",
            help="Built-in scheme (see `rfmflow scheme list`). Default: rfm11.",
        ),
        click.option(
            "--config",
            "scheme_file",
            type=click.Path(dir_okay=False),
            help="A scheme YAML file (instead of --scheme).",
        ),
        click.option(
            "--as-of",
            "as_of",
            type=click.DateTime(formats=["%Y-%m-%d"]),
            help="Reference date (YYYY-MM-DD). Default: the day after the last event.",
        ),
        click.option(
            "--tz",
            "--timezone",
            "timezone",
            default="UTC",
            show_default=True,
            help="Business time zone in which days are counted (IANA name).",
        ),
        click.option(
            "--event-type",
            "event_types",
            multiple=True,
            metavar="TYPE[,TYPE]",
            help="Use only events of these types (repeatable).",
        ),
        click.option("--customer-col", help="Column holding the customer id."),
        click.option("--date-col", help="Column holding the event date or timestamp."),
        click.option("--amount-col", help="Column holding the amount (total of the line)."),
        click.option("--price-col", help="Unit price column (amount = price x quantity)."),
        click.option("--quantity-col", help="Quantity column (amount = price x quantity)."),
        click.option("--type-col", help="Column holding the event type (purchase, refund, message, ...)."),
        click.option("--order-col", help="Column holding the order id (for frequency.count: orders)."),
        click.option("--currency-col", help="Column holding the currency code."),
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
        click.option("--currency", help="The currency to score; rows in other currencies are rejected."),
        click.option(
            "--money-decimals",
            type=click.IntRange(0, 6),
            default=2,
            show_default=True,
            help="Decimals of the currency's minor unit.",
        ),
        click.option(
            "--strict", is_flag=True, help="Stop at the first malformed row instead of rejecting it."
        ),
        click.option(
            "--drop-after-as-of", is_flag=True, help="Ignore events after --as-of instead of failing."
        ),
        click.option(
            "--rejects",
            "rejects_path",
            type=click.Path(dir_okay=False),
            help="Where to write rejected rows (default: <input name>.rejects.csv in the current directory).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _run_score(file: str, opts: dict[str, Any], err: Console) -> Any:
    from rfmflow.api import score
    from rfmflow.cli.render import RichProgress

    if opts["scheme_name"] and opts["scheme_file"]:
        raise click.UsageError("give --scheme or --config, not both")
    _check_timezone_option(opts["timezone"])
    columns = {
        role: opts[f"{role}_col"]
        for role in ("customer", "date", "amount", "price", "quantity", "type", "order", "currency")
        if opts.get(f"{role}_col")
    }
    as_of: date | None = opts["as_of"].date() if opts["as_of"] else None
    names = [c.strip() for c in opts["column_names"].split(",")] if opts["column_names"] else None
    return score(
        file,
        scheme=opts["scheme_file"] or opts["scheme_name"],
        as_of=as_of,
        timezone=opts["timezone"],
        event_types=_split(opts["event_types"]) or None,
        columns=columns,
        date_format=opts["date_format"],
        decimal_comma=opts["decimal_comma"],
        delimiter=opts["delimiter"],
        header=not opts["no_header"],
        column_names=names,
        currency=opts["currency"],
        money_decimals=opts["money_decimals"],
        strict=opts["strict"],
        drop_after_as_of=opts["drop_after_as_of"],
        rejects_path=opts["rejects_path"],
        encoding=opts["encoding"],
        progress=RichProgress(err),
    )


def _check_timezone_option(name: str) -> None:
    from rfmflow.api import check_timezone

    try:
        check_timezone(name)
    except RfmflowError as err:
        raise click.BadParameter(str(err).removeprefix("timezone: "), param_hint="--tz") from None


def _check_output_option(path: str | None) -> None:
    from rfmflow.result import OUTPUT_FORMATS

    if path and Path(path).suffix.lower() not in OUTPUT_FORMATS:
        raise click.BadParameter(
            f"{path}: unknown format {Path(path).suffix!r}; use .csv, .parquet or .json", param_hint="-o"
        )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rfmflow")
def main() -> None:
    """rfmflow: RFM segmentation and lifecycle automation."""


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@_input_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write per-customer rows to .csv, .parquet or .json.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of tables.")
@_handle_errors
def score(file: str, output: str | None, as_json: bool, **opts: Any) -> None:
    """Score every customer in FILE (CSV, Parquet or JSON lines of transactions or interactions)."""
    from rfmflow.cli.render import print_result

    out, err = _consoles()
    _check_output_option(output)
    result = _run_score(file, opts, err)
    if output:
        result.write(output)
    if as_json:
        payload = result.summary_dict()
        payload["output"] = output
        click.echo(json.dumps(payload, indent=2))
        for warning in result.warnings:
            err.print(f"[yellow]warning:[/] {escape(warning.message)}", highlight=False)
    else:
        print_result(result, out, err)
    if output:
        err.print(f"wrote {result.n_customers:,} customers to {output}")
    elif not as_json:
        err.print("(use -o scores.csv|.parquet|.json to write the per-customer rows)")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@_input_options
@click.option(
    "--html",
    "html_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the HTML report.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Also write per-customer rows.")
@_handle_errors
def report(file: str, html_path: str, output: str | None, **opts: Any) -> None:
    """Score FILE and write a self-contained HTML report with charts."""
    from rfmflow.cli.render import print_result

    out, err = _consoles()
    _check_output_option(output)
    result = _run_score(file, opts, err)
    print_result(result, out, err)
    _write_report(result, Path(html_path))
    if output:
        result.write(output)
        err.print(f"wrote {result.n_customers:,} customers to {output}")
    err.print(f"wrote the report to {html_path}")


def _write_report(result: Any, path: Path) -> None:
    from rfmflow.report import render_html

    html = render_html(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)


@main.command()
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False),
    default="out",
    show_default=True,
    help="Where to write the scores and the report.",
)
@click.option(
    "--scheme", "scheme_name", default="rfm11", show_default=True, help="Built-in scheme or YAML path."
)
@_handle_errors
def demo(out_dir: str, scheme_name: str) -> None:
    """Score the bundled demo data (CDNOW, 23,570 real customers) and write the report."""
    from rfmflow.api import score as score_api
    from rfmflow.cli.render import RichProgress, print_result
    from rfmflow.demo import demo_path

    out, err = _consoles()
    with demo_path() as path:
        result = score_api(path, scheme=scheme_name, progress=RichProgress(err))
    print_result(result, out, err)
    target = Path(out_dir)
    result.write(target / "demo-scores.csv")
    _write_report(result, target / "demo-report.html")
    err.print(f"wrote {target / 'demo-scores.csv'} and {target / 'demo-report.html'}")


@main.group()
def scheme() -> None:
    """List, show and check schemes."""


@scheme.command("list")
def scheme_list() -> None:
    """List the built-in schemes."""
    from rfmflow.schemes import builtin_names, load_scheme

    for name in builtin_names():
        s = load_scheme(name)
        click.echo(f"{name:<24} {' '.join(s.description.split())[:90]}")


@scheme.command("show")
@click.argument("name")
@_handle_errors
def scheme_show(name: str) -> None:
    """Print a built-in scheme's YAML (copy it to edit: rfmflow scheme show rfm11 > mine.yaml)."""
    from rfmflow.schemes import builtin_text

    click.echo(builtin_text(name), nl=False)


@scheme.command("check")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_handle_errors
def scheme_check(file: str, as_json: bool) -> None:
    """Validate a scheme (a YAML file or a built-in name): fields, expressions and coverage.

    Exits 1 when the scheme is invalid or leaves score combinations without a segment.
    """
    from rfmflow.cli.render import print_scheme_check
    from rfmflow.core.coverage import check_coverage
    from rfmflow.schemes import load_scheme

    out, err = _consoles()
    s = load_scheme(file)
    coverage = check_coverage(s)
    if as_json:
        click.echo(json.dumps({
            "scheme": s.name, "version": s.version, "valid": True, "complete": coverage.complete,
            "combinations": coverage.combinations, "uncovered": coverage.uncovered,
            "data_dependent": coverage.data_dependent, "never_matching": coverage.never_matching,
            "messages": coverage.messages(),
        }, indent=2))  # fmt: skip
    else:
        print_scheme_check(s, coverage, out)
        for message in coverage.messages():
            err.print(f"[yellow]problem:[/] {escape(message)}", highlight=False)
    if coverage.uncovered or coverage.data_dependent:
        sys.exit(1)
    if not as_json and not coverage.never_matching:
        err.print(f"[green]ok:[/] all {coverage.combinations} score combinations land in exactly one segment")

"""Options and helpers shared by the ``rfmflow`` subcommands."""

from __future__ import annotations

import functools
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


def consoles() -> tuple[Console, Console]:
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


def handle_errors(func: F) -> F:
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


def split_values(values: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for value in values:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return out


def input_options(func: F) -> F:
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


def read_kwargs(opts: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`rfmflow.score` / :func:`rfmflow.predict` that say how
    to read the input, from the options of :func:`input_options`."""
    if opts["scheme_name"] and opts["scheme_file"]:
        raise click.UsageError("give --scheme or --config, not both")
    check_timezone_option(opts["timezone"])
    columns = {
        role: opts[f"{role}_col"]
        for role in ("customer", "date", "amount", "price", "quantity", "type", "order", "currency")
        if opts.get(f"{role}_col")
    }
    as_of: date | None = opts["as_of"].date() if opts["as_of"] else None
    names = [c.strip() for c in opts["column_names"].split(",")] if opts["column_names"] else None
    return dict(
        scheme=opts["scheme_file"] or opts["scheme_name"],
        as_of=as_of,
        timezone=opts["timezone"],
        event_types=split_values(opts["event_types"]) or None,
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
    )


def check_timezone_option(name: str) -> None:
    from rfmflow.api import check_timezone

    try:
        check_timezone(name)
    except RfmflowError as err:
        raise click.BadParameter(str(err).removeprefix("timezone: "), param_hint="--tz") from None


def check_output_option(path: str | None) -> None:
    from rfmflow.result import OUTPUT_FORMATS

    if path and Path(path).suffix.lower() not in OUTPUT_FORMATS:
        raise click.BadParameter(
            f"{path}: unknown format {Path(path).suffix!r}; use .csv, .parquet or .json", param_hint="-o"
        )


def _thresholds(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        high, medium = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: give two numbers such as 0.3,0.7", ctx, param) from None
    return high, medium


def prediction_options(func: F) -> F:
    """Options that tune the models (defaults from the scheme's ``predictions`` block)."""
    options = [
        click.option(
            "--model",
            type=click.Choice(["bgnbd", "pareto-nbd", "mbgnbd"]),
            help="Purchase model (default: the scheme's, mbgnbd).",
        ),
        click.option(
            "--time-unit",
            type=click.Choice(["days", "weeks"]),
            help="Time unit of the models' t_x, T and parameters (default: weeks).",
        ),
        click.option(
            "--horizon",
            "horizon_days",
            type=click.IntRange(1, 3650),
            help="Days ahead for expected_purchases (default: 90).",
        ),
        click.option(
            "--clv-horizon",
            "clv_horizon_days",
            type=click.IntRange(1, 3650),
            help="Days ahead for the CLV (default: 365).",
        ),
        click.option(
            "--discount-rate",
            type=click.FloatRange(0, 1, max_open=True),
            help="Annual discount rate of the CLV (default: 0.1).",
        ),
        click.option(
            "--penalizer", type=click.FloatRange(0), help="L2 penalty on the parameters (default: 0)."
        ),
        click.option(
            "--churn-thresholds",
            callback=_thresholds,
            metavar="HIGH,MEDIUM",
            help="churn_risk is high below p_alive HIGH, medium below MEDIUM (default: 0.3,0.7).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def prediction_kwargs(opts: dict[str, Any]) -> dict[str, Any]:
    """Pop the :func:`prediction_options` from ``opts``: the settings that were given."""
    out: dict[str, Any] = {}
    for key in ("model", "time_unit", "horizon_days", "clv_horizon_days", "discount_rate", "penalizer"):
        value = opts.pop(key)
        if value is not None:
            out[key] = value
    thresholds = opts.pop("churn_thresholds")
    if thresholds is not None:
        out["churn_risk"] = {"high_below": thresholds[0], "medium_below": thresholds[1]}
    return out


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)

"""The Python API for notebooks and scripts: score a file path or a data frame."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from rfmflow.core.errors import InputError
from rfmflow.core.scheme import Scheme
from rfmflow.engines.duckdb_engine import Progress, ScoreOptions, score_with_duckdb
from rfmflow.result import ScoreResult
from rfmflow.schemes import load_scheme


def _as_date(value: date | str | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InputError(f"as_of: {value!r} is not a date (use YYYY-MM-DD)") from None


def score(
    data: Any,
    *,
    scheme: str | Path | Scheme | None = None,
    as_of: date | str | None = None,
    timezone: str = "UTC",
    event_types: Sequence[str] | None = None,
    columns: Mapping[str, str] | None = None,
    date_format: str | None = None,
    decimal_comma: bool = False,
    delimiter: str | None = None,
    header: bool = True,
    column_names: Sequence[str] | None = None,
    currency: str | None = None,
    money_decimals: int = 2,
    strict: bool = False,
    drop_after_as_of: bool = False,
    rejects_path: str | Path | None = None,
    progress: Progress | None = None,
    encoding: str = "utf-8",
) -> ScoreResult:
    """Score every customer in ``data`` and return a :class:`~rfmflow.ScoreResult`.

    ``data`` is a path to a CSV/TSV/TXT (any delimiter), Parquet or JSON(-lines) file, a
    pandas or Polars DataFrame, or a pyarrow Table, holding one row per transaction or
    interaction. Columns are detected by their names (``customer_id``, ``order_date``,
    ``amount`` and common variants) or mapped with ``columns={"customer": ..., "date": ...,
    "amount": ..., "type": ..., "order": ..., "price": ..., "quantity": ..., "currency": ...}``.

    ``scheme`` is a built-in scheme name (default ``rfm11``), a YAML path or a Scheme.
    ``as_of`` defaults to the day after the last event. Call ``.to_pandas()`` or
    ``.to_polars()`` on the result for a frame.
    """
    resolved = load_scheme(scheme)
    if (
        delimiter is not None
        and len(delimiter) != 1
        and delimiter not in ("tab", "\\t", "whitespace", "space")
    ):
        raise InputError(f"delimiter: {delimiter!r} must be one character, 'tab' or 'whitespace'")
    if not 0 <= money_decimals <= 6:
        raise InputError("money_decimals: must be between 0 and 6")
    options = ScoreOptions(
        as_of=_as_date(as_of),
        timezone=check_timezone(timezone),
        event_types=tuple(event_types) if event_types else None,
        columns=dict(columns or {}),
        delimiter=delimiter,
        header=header,
        column_names=tuple(column_names) if column_names else None,
        date_format=date_format,
        decimal_comma=decimal_comma,
        currency=currency,
        money_scale=money_decimals,
        strict=strict,
        drop_future=drop_after_as_of,
        rejects_path=Path(rejects_path) if rejects_path else None,
        encoding=encoding,
    )
    return score_with_duckdb(data, resolved, options, progress=progress)


def check_timezone(name: str) -> str:
    """Return ``name`` if it is an IANA time zone DuckDB knows; else raise :class:`InputError`."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

    try:
        ZoneInfo(name)
        if name not in available_timezones() or name in ("localtime", "posixrules", "Factory"):
            raise ValueError(name)  # not a zone DuckDB knows
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(
            f"timezone: unknown time zone {name!r} (use an IANA name such as Europe/Berlin)"
        ) from None
    return name

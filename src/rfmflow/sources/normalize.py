"""Turning a raw relation (any file's columns) into the events relation the query reads.

Runs in DuckDB. The result is a view with the columns of :mod:`rfmflow.core.query` plus
``_line`` (line or row number in the source) and ``_reason`` (NULL for a valid row, else why
it is rejected). Rejection reasons, first failing check wins:

- ``missing customer id``
- ``missing date`` / ``unparseable date '…' (expected …)``
- ``missing event type``
- ``missing amount`` / ``non-numeric amount '…'`` (purchases and refunds only)
- ``currency XXX differs from USD``

Dates without a zone are taken as already local to the business; dates with an offset or
``Z`` are converted to the business time zone before taking the calendar day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import duckdb

from rfmflow.core.columns import ColumnMap
from rfmflow.core.errors import InputError
from rfmflow.core.sql_text import quote_ident as _q
from rfmflow.core.sql_text import quote_literal as _lit

DATE_FORMATS = (
    "%Y%m%d", "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y", "%d/%m/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S", "%d/%m/%Y", "%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y",
    "%Y/%m/%d %H:%M:%S", "%Y/%m/%d", "%d-%m-%Y", "%Y.%m.%d",
)  # fmt: skip
MONEY_TYPES = ("purchase", "refund")


@dataclass(frozen=True)
class NormalizeOptions:
    timezone: str = "UTC"
    date_format: str | None = None
    decimal_comma: bool = False
    money_scale: int = 2
    currency: str | None = None
    fields: tuple[str, ...] = ()
    trim: bool = True
    """Trim blanks around text values (text files); typed tables keep values as they are."""


@dataclass(frozen=True)
class Normalized:
    view: str
    date_format: str  # what was used (a strptime format, "iso", "iso+offset" or a typed column)
    notes: tuple[str, ...]
    currency: str | None


def _types(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    rows = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    return {r[0]: str(r[1]).upper() for r in rows}


def _is_text(type_name: str) -> bool:
    return type_name in ("VARCHAR", "TEXT", "STRING") or type_name.startswith("VARCHAR")


OFFSET = r"\d\d:\d\d(:\d\d(\.\d+)?)?\s*(Z|[+-]\d\d(:?\d\d)?|[A-Z]{3,5}|[A-Za-z]+/[A-Za-z_]+(/[A-Za-z_]+)?)"
"""A time of day followed by a zone (offset, Z, UTC/EST-style name or Area/City): such values are
converted to the business zone; values without one are taken as already local."""


def _detect_date(
    con: duckdb.DuckDBPyConnection, relation: str, column: str, forced: str | None
) -> tuple[str, list[str]]:
    """Return (method, notes); method is 'iso', 'epoch_s', 'epoch_ms' or a strptime format.

    Every value of the column is tried (one pass in DuckDB), not a sample, so that a file
    whose first rows happen to fit month/day is not misread when later rows are day/month.
    """
    if forced:
        return forced, []
    col = _q(column)
    iso = r"regexp_full_match(v, '\d{4}-\d\d-\d\d([ T].*)?')"
    candidates: list[tuple[str, str]] = [
        ("iso", f"CASE WHEN {iso} THEN COALESCE(TRY_CAST(v AS TIMESTAMP), TRY_CAST(v AS TIMESTAMPTZ)) END"),
        ("epoch_ms", r"CASE WHEN regexp_full_match(v, '\d{13}') THEN 1 END"),
        ("epoch_s", r"CASE WHEN regexp_full_match(v, '\d{9,10}') THEN 1 END"),
        *((f, f"TRY_STRPTIME(v, {_lit(f)})") for f in DATE_FORMATS),
    ]
    row = con.execute(
        "SELECT count(*), "
        + ", ".join(f"count({expr})" for _, expr in candidates)
        + f" FROM (SELECT TRIM({col}) AS v FROM {relation} WHERE NULLIF(TRIM({col}), '') IS NOT NULL)"
    ).fetchall()[0]
    total, found = int(row[0]), row[1:]
    if not total:
        return "iso", []
    counts = dict(zip((method for method, _ in candidates), found, strict=True))
    best = max(counts.values())
    if best * 2 < total:  # most values fit no format: ask for it rather than reject most rows
        shown = ", ".join(
            repr(r[0])
            for r in con.execute(
                f"SELECT TRIM({col}) FROM {relation} WHERE NULLIF(TRIM({col}), '') IS NOT NULL LIMIT 3"
            ).fetchall()
        )
        raise InputError(
            f"column {column!r}: cannot recognise the date format of values such as {shown}; "
            f"pass --date-format (a strptime format such as %d/%m/%Y)"
        )
    fits = [method for method, n in counts.items() if n == best]
    if fits[0] == "epoch_ms":
        return "epoch_ms", ["dates read as Unix epoch milliseconds"]
    if fits[0] == "epoch_s":
        return "epoch_s", ["dates read as Unix epoch seconds"]
    if fits[0] == "iso":
        return "iso", []
    notes = []
    first = fits[0]
    if first.startswith("%m/%d") and any(f.startswith("%d/%m") for f in fits):
        notes.append(
            f"dates in {column!r} fit both month/day and day/month; read as month/day ({first}); "
            f"pass --date-format %d/%m/%Y if they are day/month"
        )
    return first, notes


def _date_day(method: str, col: str, tz: str) -> tuple[str, str]:
    """Return (SQL for the local day number or NULL, expected-format text).

    A value with a zone offset is converted to the business zone ``tz``; a value without one
    is taken as already local (row by row, so mixed files are right too).
    """
    epoch = "DATE '1970-01-01'"
    zone = _lit(tz)
    if method == "iso":
        local = (
            f"CASE WHEN regexp_matches({col}, '{OFFSET}$') "
            f"THEN CAST(timezone({zone}, TRY_CAST({col} AS TIMESTAMPTZ)) AS DATE) "
            f"ELSE CAST(TRY_CAST({col} AS TIMESTAMP) AS DATE) END"
        )
        return f"({local} - {epoch})", "an ISO date such as 2024-03-01"
    if method in ("epoch_s", "epoch_ms"):
        div, digits = (1000, r"\d{13}") if method == "epoch_ms" else (1, r"\d{9,10}")
        local = (
            f"CASE WHEN regexp_full_match({col}, '{digits}') "
            f"THEN timezone({zone}, to_timestamp(CAST({col} AS DOUBLE) / {div})) END"
        )
        return f"(CAST({local} AS DATE) - {epoch})", "a Unix epoch number"
    return f"({_strptime_day(col, method)} - {epoch})", f"format {method}"


def _strptime_day(col: str, method: str) -> str:
    """The date of ``col`` parsed with ``method``; compact %Y%m%d needs exactly 8 digits."""
    parsed = f"CAST(TRY_STRPTIME({col}, {_lit(method)}) AS DATE)"
    if method == "%Y%m%d":
        return f"CASE WHEN regexp_full_match({col}, '[0-9]{{8}}') THEN {parsed} END"
    return parsed


def _number(col: str, type_name: str, decimal_comma: bool) -> str:
    """SQL for a DECIMAL(38,6) value of a column, NULL when it is not a number."""
    if not _is_text(type_name):
        return f"TRY_CAST({col} AS DECIMAL(38, 6))"
    cleaned = f"regexp_replace(TRIM({col}), '[\\s  $€£¥₽]', '', 'g')"
    if decimal_comma:
        cleaned = (
            f"replace(CASE WHEN regexp_full_match({cleaned}, '-?\\d{{1,3}}(\\.\\d{{3}})+(,\\d+)?') "
            f"THEN replace({cleaned}, '.', '') ELSE {cleaned} END, ',', '.')"
        )
    else:
        cleaned = (
            f"CASE WHEN regexp_full_match({cleaned}, '-?\\d{{1,3}}(,\\d{{3}})+(\\.\\d+)?') "
            f"THEN replace({cleaned}, ',', '') ELSE {cleaned} END"
        )
    return f"TRY_CAST({cleaned} AS DECIMAL(38, 6))"


COMMA_HINT = (
    "CASE WHEN regexp_full_match(TRIM(CAST(_src_amount AS VARCHAR)), '-?[0-9]{1,3}([. ][0-9]{3})*,[0-9]+') "
    "THEN ' (a decimal comma? pass --decimal-comma)' ELSE '' END"
)
"""Reject-reason suffix for amounts that look like 12,50 when decimal commas were not asked for."""


def _blank(col: str, type_name: str) -> str:
    """SQL: the value is missing (NULL, or blank text)."""
    return f"NULLIF(TRIM({col}), '') IS NULL" if _is_text(type_name) else f"{col} IS NULL"


FIRST_DAY = (date(1900, 1, 1) - date(1970, 1, 1)).days
LAST_DAY = (date(2199, 12, 31) - date(1970, 1, 1)).days
"""Event days outside 1900..2199 are rejected (sentinels such as 9999-12-31, typos)."""


def max_amount(scale: int) -> int:
    """Amounts must stay below this in absolute value: 10^15 minor units a row, so that sums
    of many rows still fit 64-bit integers (10^13 for a currency with cents)."""
    return int(10 ** (15 - scale))


def _minor_units(col: str, type_name: str, scale: int, decimal_comma: bool) -> tuple[str, str, str, str]:
    """SQL for (amount in minor units as BIGINT, missing, not a number, out of range).

    Typed columns stay in 64-bit integer arithmetic where they can (a DECIMAL(18,2) is
    multiplied, not re-parsed); text goes through the tolerant number parser. Out-of-range
    and non-finite amounts give NULL minor units, and their rows are rejected.
    """
    factor = 10**scale
    limit = max_amount(scale)
    decimal = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", type_name)
    missing = f"{col} IS NULL"
    if decimal and int(decimal.group(1)) <= 18 and int(decimal.group(2)) <= scale:
        too_big = f"({col} <= -{limit} OR {col} >= {limit})"
        return f"CASE WHEN NOT {too_big} THEN CAST({col} * {factor} AS BIGINT) END", missing, "FALSE", too_big
    if type_name in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"):
        too_big = f"({col} <= -{limit} OR {col} >= {limit})"
        return f"CASE WHEN NOT {too_big} THEN CAST({col} AS BIGINT) * {factor} END", missing, "FALSE", too_big
    if type_name in ("DOUBLE", "FLOAT", "REAL"):
        too_big = f"(NOT isfinite({col}) OR abs({col}) >= {limit})"
        minor = f"CASE WHEN NOT {too_big} THEN CAST(ROUND({col} * {factor}) AS BIGINT) END"
        return minor, missing, "FALSE", too_big
    number = _number(col, type_name, decimal_comma)
    too_big = f"abs({number}) >= {limit}"
    minor = f"CASE WHEN NOT {too_big} THEN CAST(ROUND({number} * {factor}) AS BIGINT) END"
    return minor, _blank(col, type_name), f"(NOT {_blank(col, type_name)} AND {number} IS NULL)", too_big


def normalize(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    columns: ColumnMap,
    options: NormalizeOptions,
    *,
    line_column: str,
    view: str = "events",
) -> Normalized:
    """Create the ``view`` of normalised, validated events over ``relation``."""
    types = _types(con, relation)
    notes: list[str] = []
    cust = _q(columns.customer)
    if not _is_text(types[columns.customer]):
        customer = f"CAST({cust} AS VARCHAR)"
    elif options.trim:
        customer = f"NULLIF(TRIM({cust}), '')"
    else:
        customer = f"NULLIF({cust}, '')"

    dcol = _q(columns.date)
    dtype = types[columns.date]
    date_missing = f"{dcol} IS NULL"
    if _is_text(dtype):
        method, more = _detect_date(con, relation, columns.date, options.date_format)
        notes += more
        day, expected = _date_day(method, f"NULLIF(TRIM({dcol}), '')", options.timezone)
        date_missing = f"NULLIF(TRIM({dcol}), '') IS NULL"
    elif dtype.startswith("TIMESTAMP WITH TIME ZONE") or dtype == "TIMESTAMPTZ":
        method, expected = "timestamptz", "a timestamp"
        day = f"(CAST(timezone({_lit(options.timezone)}, {dcol}) AS DATE) - DATE '1970-01-01')"
    elif dtype.startswith("TIMESTAMP") or dtype == "DATE":
        method, expected = dtype.lower(), "a date"
        day = f"(CAST({dcol} AS DATE) - DATE '1970-01-01')"
    elif dtype in ("INTEGER", "BIGINT", "HUGEINT", "UBIGINT"):
        # Whole numbers are read as yyyymmdd unless a format is given.
        method = options.date_format or "%Y%m%d"
        expected = f"format {method}"
        day = f"({_strptime_day(f'CAST({dcol} AS VARCHAR)', method)} - DATE '1970-01-01')"
    else:
        raise InputError(f"column {columns.date!r} has type {dtype}, which is not a date")

    if columns.type:
        tcol = _q(columns.type)
        etype_raw = f"NULLIF(LOWER(TRIM(CAST({tcol} AS VARCHAR))), '')"
    else:
        etype_raw = "'purchase'"

    scale = options.money_scale
    amount_src = "CAST(NULL AS VARCHAR)"
    if columns.amount:
        acol = _q(columns.amount)
        amount_src = acol
        minor, amount_missing, amount_bad, amount_range = _minor_units(
            acol, types[columns.amount], scale, options.decimal_comma
        )
    elif columns.price and columns.quantity:
        pcol, qcol = _q(columns.price), _q(columns.quantity)
        amount_src = f"CAST({pcol} AS VARCHAR) || ' x ' || CAST({qcol} AS VARCHAR)"
        price = _number(pcol, types[columns.price], options.decimal_comma)
        quantity = _number(qcol, types[columns.quantity], options.decimal_comma)
        minor = f"CAST(ROUND({price} * {quantity} * {10**scale}) AS BIGINT)"
        amount_missing = f"({_blank(pcol, types[columns.price])} OR {_blank(qcol, types[columns.quantity])})"
        amount_bad = f"({price} IS NULL OR {quantity} IS NULL)"
        amount_range = (
            f"(abs(CAST({price} AS DOUBLE) * CAST({quantity} AS DOUBLE)) >= {max_amount(scale)} "
            f"OR abs({price}) >= 1e15 OR abs({quantity}) >= 1e15)"
        )
        minor = f"CASE WHEN NOT {amount_range} THEN {minor} END"
    else:
        minor, amount_missing, amount_bad, amount_range = "CAST(NULL AS BIGINT)", "FALSE", "FALSE", "FALSE"
    money_types = ", ".join(_lit(t) for t in MONEY_TYPES)

    currency = options.currency.upper() if options.currency else None
    currency_check = "NULL"
    if columns.currency:
        ccol = f"NULLIF(UPPER(TRIM(CAST({_q(columns.currency)} AS VARCHAR))), '')"
        if currency is None:
            found = [
                r[0]
                for r in con.execute(
                    f"SELECT DISTINCT {ccol} AS c FROM {relation} WHERE {ccol} IS NOT NULL "
                    "ORDER BY c LIMIT 10"
                ).fetchall()
            ]
            if len(found) > 1:
                raise InputError(
                    f"column {columns.currency!r} holds several currencies ({', '.join(found)}); rfmflow "
                    f"scores one currency at a time: pass --currency CODE (rows in other currencies "
                    f"are rejected)"
                )
            currency = found[0] if found else None
        if currency is not None:
            currency_check = (
                f"CASE WHEN {ccol} IS NOT NULL AND {ccol} <> {_lit(currency)} "
                f"THEN 'currency ' || {ccol} || ' differs from {currency}' END"
            )

    fields = "".join(f", TRY_CAST({_q(f)} AS DOUBLE) AS {_q(f)}" for f in options.fields if f in types)
    missing_fields = [f for f in options.fields if f not in types]
    if missing_fields:
        raise InputError(
            f"the scheme measures M from the field(s) {', '.join(missing_fields)}, which the file "
            f"does not have; it has: {', '.join(t for t in types if t != line_column)}"
        )
    order = (
        f"NULLIF(TRIM(CAST({_q(columns.order)} AS VARCHAR)), '')"
        if columns.order
        else "CAST(NULL AS VARCHAR)"
    )

    reason = (
        "CASE "
        "WHEN _cust IS NULL THEN 'missing customer id' "
        "WHEN _date_missing THEN 'missing date' "
        "WHEN _day IS NULL THEN 'unparseable date ''' || TRIM(CAST(_src_date AS VARCHAR)) || "
        f"''' (expected {expected})' "
        "WHEN _type IS NULL THEN 'missing event type' "
        f"WHEN _type IN ({money_types}) AND _amount_missing THEN 'missing amount' "
        f"WHEN _type IN ({money_types}) AND _amount_bad "
        "THEN 'non-numeric amount ''' || TRIM(CAST(_src_amount AS VARCHAR)) || '''' || "
        f"{COMMA_HINT} "
        f"WHEN _type IN ({money_types}) AND _amount_range "
        "THEN 'amount ''' || TRIM(CAST(_src_amount AS VARCHAR)) || ''' is not a finite number below "
        f"{max_amount(scale):.0e}' "
        f"WHEN _day < {FIRST_DAY} OR _day > {LAST_DAY} THEN 'date ''' || TRIM(CAST(_src_date AS VARCHAR)) || "
        "''' is out of range (1900 to 2199)' "
        + "".join(
            f"WHEN {_q(f)} IS NOT NULL AND NOT isfinite({_q(f)}) "
            f"THEN {_lit(f'field {f} is not a finite number')} "
            for f in options.fields
            if f in types
        )
        + "WHEN _currency_reason IS NOT NULL THEN _currency_reason "
        "END"
    )
    # The inner select computes what every row needs; source values pass through untouched
    # and are turned into text only for the rows that are rejected.
    inner = (
        f"SELECT {_q(line_column)} AS _line, {customer} AS _cust, {dcol} AS _src_date, "
        f"{date_missing} AS _date_missing, CAST({day} AS INTEGER) AS _day, {etype_raw} AS _type, "
        f"{minor} AS _minor, {amount_missing} AS _amount_missing, {amount_bad} AS _amount_bad, "
        f"{amount_range} AS _amount_range, "
        f"{amount_src} AS _src_amount, {currency_check} AS _currency_reason, {order} AS order_id{fields} "
        f"FROM {relation}"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {view} AS "
        f"SELECT _line, {reason} AS _reason, _cust AS customer_id, _day AS day, "
        "CASE WHEN _type = 'purchase' AND _minor < 0 THEN 'refund' ELSE _type END AS event_type, "
        "CASE WHEN _type = 'refund' THEN -ABS(_minor) ELSE _minor END AS amount_minor, "
        "order_id, CAST(_src_date AS VARCHAR) AS _raw_date, CAST(_src_amount AS VARCHAR) AS _raw_amount"
        + "".join(f", {_q(f)}" for f in options.fields)
        + f" FROM ({inner}) AS n"
    )
    return Normalized(view, method, tuple(notes), currency)

"""Scoring files and frames in process with DuckDB.

The pipeline: open the source as a raw relation (Parquet is scanned in place; text and JSON
are read to Arrow with line numbers), map its columns, normalise and validate every row
(skipped for Parquet whose statistics prove every row valid), fix the as-of day, run the one
RFM query (:mod:`rfmflow.core.query`), write the rejects, and summarise. The events never
pass through Python objects on the Parquet path.
"""

from __future__ import annotations

import csv
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from rfmflow.core.columns import ColumnMap, detect_columns
from rfmflow.core.errors import EngineError, InputError, RejectedRowError
from rfmflow.core.health import health_warnings
from rfmflow.core.model_inputs import build_model_inputs_query
from rfmflow.core.prediction_results import DAYS_PER_UNIT, PredictionReport, PredictOptions
from rfmflow.core.query import build_query
from rfmflow.core.results import NO_SEGMENT, InputStats, ScoreBand, SegmentSummary, Warning
from rfmflow.core.scheme import SCORE_COLUMN, SCORE_KEYS, Scheme, ScoreKey
from rfmflow.result import PredictResult, ScoreResult
from rfmflow.sources.normalize import FIRST_DAY, LAST_DAY, OFFSET, NormalizeOptions, max_amount, normalize
from rfmflow.sources.text import LINE, read_delimited, read_json

EPOCH = date(1970, 1, 1)
TEXT_SUFFIXES = {".csv", ".tsv", ".txt", ".dat"}
JSON_SUFFIXES = {".json", ".jsonl", ".ndjson"}
PARQUET_SUFFIXES = {".parquet", ".pq"}


class Progress:
    """Progress reporting port; the CLI plugs in a rich progress bar. Default: silent."""

    def start(self, description: str, total: float | None) -> None:
        pass

    def update(self, completed: float) -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass(frozen=True)
class ScoreOptions:
    """How to read the input and score it. Every field has a safe default."""

    as_of: date | None = None
    timezone: str = "UTC"
    event_types: tuple[str, ...] | None = None
    columns: dict[str, str] = field(default_factory=dict)
    delimiter: str | None = None
    header: bool = True
    column_names: tuple[str, ...] | None = None
    date_format: str | None = None
    decimal_comma: bool = False
    currency: str | None = None
    money_scale: int = 2
    strict: bool = False
    drop_future: bool = False
    rejects_path: Path | None = None
    sort: bool = True
    encoding: str = "utf-8"


def _day(value: date) -> int:
    return (value - EPOCH).days


def _date(day: int | None) -> date | None:
    return None if day is None else EPOCH + timedelta(days=int(day))


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz" and len(suffixes) > 1:
        return suffixes[-2]
    return suffixes[-1] if suffixes else ""


@dataclass
class _Source:
    name: str
    relation: str
    line_label: str  # "line" for text files, "row" for tables
    rows: int
    text_rejects: list[tuple[int, str, str]]
    parquet: str | None = None  # the path, for Parquet sources (their statistics are used)
    text: bool = False  # read from a text file: values are trimmed


def _open_source(
    con: duckdb.DuckDBPyConnection, data: Any, options: ScoreOptions, progress: Progress
) -> _Source:
    if isinstance(data, str | Path):
        path = Path(data)
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if path.is_dir():
            raise InputError(f"{path}: is a directory, expected an event file")
        if path.stat().st_size == 0:
            raise InputError(f"{path}: the file is empty")
        suffix = _suffix(path)
        if suffix in PARQUET_SUFFIXES:
            escaped = str(path).replace("'", "''")
            try:
                con.execute(
                    f"CREATE TEMP VIEW raw AS SELECT * EXCLUDE (file_row_number), "
                    f"file_row_number + 1 AS {LINE} FROM read_parquet('{escaped}', file_row_number = true)"
                )
                count = con.execute(
                    "SELECT sum(row_group_num_rows) FROM (SELECT DISTINCT row_group_id, row_group_num_rows "
                    f"FROM parquet_metadata('{escaped}'))"
                ).fetchall()[0]
            except duckdb.Error as err:
                raise InputError(f"{path}: cannot read as Parquet: {err}") from None
            return _Source(str(path), "raw", "row", int(count[0] or 0) if count else 0, [], str(path))
        total = path.stat().st_size
        progress.start(f"Reading {path.name}", total)
        try:
            if suffix in JSON_SUFFIXES:
                read = read_json(
                    path, progress=progress.update, strict=options.strict, encoding=options.encoding
                )
            elif suffix in TEXT_SUFFIXES or suffix == "":
                read = read_delimited(
                    path,
                    delimiter=options.delimiter,
                    header=options.header,
                    column_names=list(options.column_names) if options.column_names else None,
                    progress=progress.update,
                    strict=options.strict,
                    encoding=options.encoding,
                )
            else:
                raise InputError(
                    f"{path}: unknown file type {suffix!r}; use .csv/.tsv/.txt, .parquet, .json or .jsonl"
                )
        except UnicodeError as err:
            raise InputError(
                f"{path}: not {options.encoding} text ({err}): pass --encoding (for example "
                f"cp1252 or latin-1) or save it as UTF-8"
            ) from None
        except LookupError:
            raise InputError(f"unknown encoding {options.encoding!r}") from None
        finally:
            progress.stop()
        con.register("raw", read.table)
        return _Source(
            str(path), "raw", "line", read.table.num_rows + len(read.rejects), read.rejects, text=True
        )
    table = _frame_to_arrow(data)
    table = table.append_column(LINE, pa.array(range(1, table.num_rows + 1), type=pa.int64()))
    con.register("raw", table)
    return _Source("(data frame)", "raw", "row", table.num_rows, [])


def _frame_to_arrow(data: Any) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    module = type(data).__module__.split(".")[0]
    if module == "pandas":
        return pa.Table.from_pandas(data, preserve_index=False)
    if module == "polars":
        table: pa.Table = data.to_arrow()
        return table
    raise InputError(
        f"cannot score a {type(data).__name__}: pass a file path, a pandas or Polars DataFrame "
        "or a pyarrow Table"
    )


def _write_rejects(path: Path, rejects: Sequence[tuple[int, str, str]], label: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([label, "reason", "raw"])
        writer.writerows(rejects)
    tmp.replace(path)


def _run_with_progress(
    con: duckdb.DuckDBPyConnection, sql: str, progress: Progress, description: str
) -> pa.Table:
    """Run ``sql`` into an Arrow table, polling DuckDB's query progress into ``progress``."""
    done = threading.Event()
    progress.start(description, 100.0)
    # DuckDB tracks progress only with its progress bar on; it must not print it itself.
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")

    def poll() -> None:
        while not done.wait(0.2):
            try:
                value = con.query_progress()
            except duckdb.Error:  # pragma: no cover - progress is best effort
                return
            if value is not None and value >= 0:
                progress.update(float(value))

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        table: pa.Table = con.sql(sql).to_arrow_table()
    finally:
        done.set()
        watcher.join()
        progress.update(100.0)
        progress.stop()
    return table


def score_with_duckdb(
    data: Any,
    scheme: Scheme,
    options: ScoreOptions,
    *,
    progress: Progress | None = None,
    connect: Callable[[], duckdb.DuckDBPyConnection] = duckdb.connect,
    predict: PredictOptions | None = None,
) -> ScoreResult:
    """Score ``data`` (a path, a pandas/Polars frame or an Arrow table) with ``scheme``.

    With ``predict`` (or when the scheme's rules read predictions) the models are fitted
    first and their predictions are output beside the scores and readable by the rules.
    """
    progress = progress or Progress()
    con = connect()
    try:
        # Results must not depend on the machine's time zone: zones are handled explicitly.
        con.execute("SET TimeZone = 'UTC'")
        return _score(con, data, scheme, options, progress, predict)
    except duckdb.Error as err:
        raise EngineError(f"DuckDB failed: {err}") from None
    finally:
        con.close()


@dataclass
class _Prepared:
    """A validated ``valid`` view over the input and the facts found on the way."""

    source: _Source
    names: list[str]
    columns: ColumnMap
    notes: list[str]
    currency: str | None
    rejects: list[tuple[int, str, str]]
    types_present: set[str]
    first_day: int | None
    last_day: int
    as_of_day: int
    as_of_is_default: bool
    write_rejects: Callable[[], str | None]
    date_method: str = "iso"
    """How the date column was read (see :func:`rfmflow.sources.normalize.normalize`)."""


def _prepare(
    con: duckdb.DuckDBPyConnection, data: Any, scheme: Scheme, options: ScoreOptions, progress: Progress
) -> _Prepared:
    source = _open_source(con, data, options, progress)
    names = [
        r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source.relation}").fetchall() if r[0] != LINE
    ]
    if not names:
        raise InputError(f"{source.name}: no columns found")
    columns = detect_columns(names, options.columns)
    if scheme.metrics.frequency.count == "orders" and not columns.order:
        raise InputError(
            f"scheme {scheme.name!r} counts orders (metrics.frequency.count: orders) but {source.name} "
            f"has no order id column; map one with --order-col NAME"
        )
    try:
        norm = normalize(
            con,
            source.relation,
            columns,
            NormalizeOptions(
                timezone=options.timezone,
                date_format=options.date_format,
                decimal_comma=options.decimal_comma,
                money_scale=options.money_scale,
                currency=options.currency,
                fields=tuple(scheme.fields_used),
                trim=source.text,
            ),
            line_column=LINE,
        )
    except duckdb.Error as err:
        raise InputError(f"{source.name}: {err}") from None

    type_filter = ""
    if options.event_types:
        listed = ", ".join("'" + t.lower().replace("'", "''") + "'" for t in options.event_types)
        type_filter = f" AND event_type IN ({listed})"
    rejects = list(source.text_rejects)
    proven = _parquet_proves_clean(con, source, columns, options)
    if proven is not None:
        # Parquet statistics show that no row can be rejected: no validation pass at all.
        first_day, last_day, n_valid = proven
        valid_filter = ""
        types_present = {"purchase", "refund"}  # no type column: purchases, refunds if negative
    else:
        valid_filter = f" AND _reason IS NULL{type_filter}"
        stats = con.execute(
            f"SELECT min(day) FILTER (WHERE _reason IS NULL{type_filter}), "
            f"max(day) FILTER (WHERE _reason IS NULL{type_filter}), "
            f"count(*) FILTER (WHERE _reason IS NULL{type_filter}), "
            f"count(*) FILTER (WHERE _reason IS NOT NULL), "
            f"list(DISTINCT event_type) FILTER (WHERE _reason IS NULL{type_filter}) FROM {norm.view}"
        ).fetchall()[0]
        first_day, last_day, n_valid, n_rejected, found_types = stats
        types_present = set(found_types or [])
        if n_rejected:
            rejects += [
                (int(line), str(reason), str(raw) if raw is not None else "")
                for line, reason, raw in con.execute(
                    "SELECT _line, _reason, "
                    "concat_ws(' | ', customer_id, _raw_date, event_type, _raw_amount) "
                    f"FROM {norm.view} WHERE _reason IS NOT NULL ORDER BY _line"
                ).fetchall()
            ]
    rejects.sort(key=lambda r: r[0])
    if rejects and options.strict:
        line, reason, _ = rejects[0]
        raise RejectedRowError(line, reason, source.name)
    con.execute(f"CREATE TEMP VIEW valid AS SELECT * FROM {norm.view} WHERE TRUE{valid_filter}")

    def write_rejects() -> str | None:
        if not rejects:
            return None
        target = options.rejects_path or Path(Path(source.name).stem + ".rejects.csv")
        _write_rejects(target, rejects, source.line_label)
        return str(target)

    if not n_valid:
        what = (
            "no valid rows"
            if not options.event_types
            else f"no valid rows of type {', '.join(options.event_types)}"
        )
        shown = "; ".join(f"{source.line_label} {line}: {reason}" for line, reason, _ in rejects[:3])
        more = f" ({len(rejects)} rejected, first: {shown}; all in {write_rejects()})" if rejects else ""
        raise InputError(f"{source.name}: {what} to score{more}")
    as_of_is_default = options.as_of is None
    as_of_day = int(last_day) + 1 if options.as_of is None else _day(options.as_of)
    if int(last_day) > as_of_day:
        future = con.execute(
            f"SELECT count(*), min(_line) FROM {norm.view} WHERE day > {as_of_day}{valid_filter}"
        ).fetchall()[0] or (0, 0)
        if not options.drop_future:
            raise InputError(
                f"{source.name}: {future[0]} events are after the as-of date {_date(as_of_day)} (first at "
                f"{source.line_label} {future[1]}, last event on {_date(last_day)}); pass --drop-after-as-of "
                f"to score as of {_date(as_of_day)} with the earlier events only"
            )
    if first_day is not None and int(first_day) > as_of_day:
        raise InputError(f"{source.name}: every event is after the as-of date {_date(as_of_day)}")
    notes = list(norm.notes)
    if options.event_types:
        notes.append(f"only events of type {', '.join(options.event_types)} were used")
    return _Prepared(
        source=source,
        names=names,
        columns=columns,
        notes=notes,
        currency=norm.currency,
        rejects=rejects,
        types_present=types_present,
        first_day=None if first_day is None else int(first_day),
        last_day=int(last_day),
        as_of_day=as_of_day,
        as_of_is_default=as_of_is_default,
        write_rejects=write_rejects,
        date_method=norm.date_format,
    )


def _score(
    con: duckdb.DuckDBPyConnection,
    data: Any,
    scheme: Scheme,
    options: ScoreOptions,
    progress: Progress,
    predict: PredictOptions | None,
) -> ScoreResult:
    p = _prepare(con, data, scheme, options, progress)
    source, as_of_day, first_day, last_day, rejects = (
        p.source,
        p.as_of_day,
        p.first_day,
        p.last_day,
        p.rejects,
    )
    report = None
    if predict is None and scheme.uses_predictions:
        predict = PredictOptions(settings=scheme.predictions)
    if predict is not None:
        report = _predict(con, p, scheme, options, predict, progress)
    plan = build_query(
        scheme,
        as_of_day=as_of_day,
        events="valid",
        dialect="duckdb",
        money_scale=options.money_scale,
        has_order_id=p.columns.order is not None,
        order_by_customer=options.sort,
        predictions="predictions" if report is not None else None,
    )
    present = _presentation(plan.columns, plan.money_scale)
    customers = _run_with_progress(con, f"SELECT {present} FROM ({plan.sql}) AS result", progress, "Scoring")
    # The summaries read the per-customer rows back from Arrow, without copying them.
    con.register("scored_rows", customers)
    con.execute(f"CREATE TEMP VIEW scored AS SELECT * {_unpresentation(plan.money_scale)} FROM scored_rows")

    # The scores exist: only now is the rejects file written (a failed run writes nothing).
    rejects_path = p.write_rejects()
    duplicates = _duplicate_rows(con, source, p.names) if source.parquet is None else 0
    summaries = order_summaries(_summaries(con, plan.money_scale), scheme)
    bands = _bands(con, scheme, plan.money_scale)
    missing_recency = con.execute("SELECT count(*) FROM scored WHERE recency_days IS NULL").fetchall()[0]
    history = None if first_day is None else int(last_day) - int(first_day) + 1
    warnings = health_warnings(
        scheme,
        summaries=summaries,
        bands=bands,
        customers=customers.num_rows,
        without_qualifying_event=int(missing_recency[0]) if missing_recency else 0,
        history_days=history,
        rows_rejected=len(rejects),
        event_types_present=p.types_present,
    )
    if duplicates:
        warnings.append(
            Warning(
                "duplicate-rows",
                f"{duplicates} {source.line_label}s repeat an earlier {source.line_label} exactly (every "
                f"column); they count as separate events: remove them if they are duplicates",
            )
        )
    return ScoreResult(
        customers=customers,
        scheme=scheme,
        as_of=_date(as_of_day) or EPOCH,
        as_of_is_default=p.as_of_is_default,
        summaries=summaries,
        bands=bands,
        warnings=warnings,
        input=InputStats(
            source=source.name,
            rows_read=source.rows,
            rows_rejected=len(rejects),
            rejects_path=rejects_path,
            first_day=_date(first_day),
            last_day=_date(last_day),
            columns=p.columns.as_dict(),
        ),
        notes=p.notes,
        currency=p.currency,
        timezone=options.timezone,
        predictions=report,
    )


def _predict(
    con: duckdb.DuckDBPyConnection,
    p: _Prepared,
    scheme: Scheme,
    options: ScoreOptions,
    predict: PredictOptions,
    progress: Progress,
) -> PredictionReport:
    """Fit the models on the ``valid`` events and register ``predictions`` (and ``holdout``)."""
    money_scale = options.money_scale  # transaction values are amounts, whatever the scheme's M is
    cal_day = None
    if predict.calibration_end is not None:
        cal_day = _day(predict.calibration_end)
        first = p.first_day if p.first_day is not None else p.as_of_day
        if not first <= cal_day < p.last_day:
            raise InputError(
                f"calibration end {predict.calibration_end}: outside the data, which runs from "
                f"{_date(first)} to {_date(p.last_day)} (as of {_date(p.as_of_day)}); choose a day on or "
                "after the first event and before the last, leaving a holdout period after it"
            )
    from rfmflow.engines.predictions import predict_customers  # scipy: imported when needed

    progress.start("Fitting models", None)
    try:
        current = con.sql(
            build_model_inputs_query(
                scheme, calibration_end_day=p.as_of_day, as_of_day=p.as_of_day, events="valid"
            )
        ).to_arrow_table()
        calibration = (
            con.sql(
                build_model_inputs_query(
                    scheme, calibration_end_day=cal_day, as_of_day=p.as_of_day, events="valid"
                )
            ).to_arrow_table()
            if cal_day is not None
            else None
        )
        everyone = con.execute("SELECT count(DISTINCT customer_id) FROM valid").fetchall()[0][0]
        if current.num_rows == 0:
            kinds = scheme.metrics.frequency.events
            what = "any event" if kinds == "any" else ", ".join(kinds)
            raise InputError(f"{p.source.name}: no customer has a transaction ({what}) to fit the models on")
        table, holdout, report = predict_customers(
            current,
            calibration,
            predict,
            as_of=_date(p.as_of_day) or EPOCH,
            money_scale=money_scale,
            customers_without_transactions=int(everyone) - current.num_rows,
        )
    finally:
        progress.stop()
    con.register("predictions", table)
    con.register("model_inputs", current)
    if holdout is not None:
        con.register("holdout", holdout)
    return report


def predict_with_duckdb(
    data: Any,
    scheme: Scheme,
    options: ScoreOptions,
    predict: PredictOptions,
    *,
    progress: Progress | None = None,
) -> PredictResult:
    """Fit the models on ``data`` and predict every customer with a transaction."""
    progress = progress or Progress()
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        p = _prepare(con, data, scheme, options, progress)
        report = _predict(con, p, scheme, options, predict, progress)
        unit = DAYS_PER_UNIT[report.time_unit]
        scale = options.money_scale
        holdout_cols = ", h.holdout_x, h.holdout_expected" if predict.calibration_end is not None else ""
        holdout_join = (
            " LEFT JOIN holdout AS h ON h.customer_id = i.customer_id"
            if predict.calibration_end is not None
            else ""
        )
        customers = con.sql(
            "SELECT i.customer_id, DATE '1970-01-01' + CAST(i.first_day AS INTEGER) AS first_purchase, "
            "DATE '1970-01-01' + CAST(i.last_day AS INTEGER) AS last_purchase, i.x, "
            f"CAST(i.last_day - i.first_day AS DOUBLE) / {unit} AS t_x, "
            f"CAST({p.as_of_day} - i.first_day AS DOUBLE) / {unit} AS T, "
            f"CASE WHEN i.x > 0 AND i.repeat_valued = i.x THEN ROUND(CAST(i.repeat_value_minor AS DOUBLE) "
            f"/ {10**scale} / i.x, 2) END AS m_x, "
            "pr.* EXCLUDE (customer_id)" + holdout_cols + " FROM model_inputs AS i "
            "JOIN predictions AS pr ON pr.customer_id = i.customer_id"
            + holdout_join
            + (" ORDER BY i.customer_id" if options.sort else "")
        ).to_arrow_table()
        rejects_path = p.write_rejects()
        return PredictResult(
            customers=customers,
            report=report,
            scheme=scheme,
            as_of=_date(p.as_of_day) or EPOCH,
            as_of_is_default=p.as_of_is_default,
            source=p.source.name,
            rows_rejected=len(p.rejects),
            rejects_path=rejects_path,
            notes=p.notes,
            currency=p.currency,
        )
    except duckdb.Error as err:
        raise EngineError(f"DuckDB failed: {err}") from None
    finally:
        con.close()


def _parquet_proves_clean(
    con: duckdb.DuckDBPyConnection, source: _Source, columns: ColumnMap, options: ScoreOptions
) -> tuple[int, int, int] | None:
    """(first day, last day, rows) from Parquet statistics when they prove every row valid.

    That holds for typed columns without nulls (and without empty customer ids), dates
    without a time zone, and no type, currency or event-type filtering; otherwise ``None``
    and the caller validates row by row.
    """
    if source.parquet is None or options.event_types or columns.type or columns.currency or columns.price:
        return None
    types = {
        r[0]: str(r[1]).upper() for r in con.execute(f"DESCRIBE SELECT * FROM {source.relation}").fetchall()
    }
    date_type = types[columns.date]
    if not (date_type == "DATE" or (date_type.startswith("TIMESTAMP") and "TIME ZONE" not in date_type)):
        return None
    if columns.amount and types[columns.amount].startswith(("VARCHAR", "BLOB", "DOUBLE", "FLOAT", "REAL")):
        return None  # text must be parsed; floats may hold NaN, which statistics do not show
    used = [c for c in (columns.customer, columns.date, columns.amount) if c]
    path = source.parquet.replace("'", "''")
    listed = ", ".join("'" + c.replace("'", "''") + "'" for c in used)
    # One read of the file's metadata: per column, over all row groups.
    rows = con.execute(
        "SELECT path_in_schema, "
        "bool_or(stats_null_count IS NULL OR stats_null_count > 0 OR stats_min_value IS NULL), "
        "min(stats_min_value), "
        "max(greatest(abs(lo), abs(hi))), bool_or(lo IS NULL OR hi IS NULL), "
        "CAST(min(TRY_CAST(stats_min_value AS TIMESTAMP)) AS DATE) - DATE '1970-01-01', "
        "CAST(max(TRY_CAST(stats_max_value AS TIMESTAMP)) AS DATE) - DATE '1970-01-01' "
        "FROM (SELECT *, TRY_CAST(stats_min_value AS DOUBLE) AS lo, "
        "TRY_CAST(stats_max_value AS DOUBLE) AS hi "
        f"FROM parquet_metadata('{path}') WHERE path_in_schema IN ({listed})) GROUP BY path_in_schema"
    ).fetchall()
    facts = {r[0]: r[1:] for r in rows}
    if set(facts) != set(used) or any(facts[c][0] for c in used):
        return None  # a column may hold NULLs, or has no statistics
    customer_min = facts[columns.customer][1]
    if types[columns.customer].startswith("VARCHAR") and customer_min == "":
        return None
    if columns.amount:
        _, _, extreme, not_numeric, _, _ = facts[columns.amount]
        if not_numeric or extreme is None or extreme >= max_amount(options.money_scale):
            return None
    first, last = facts[columns.date][4], facts[columns.date][5]
    if first is None or last is None or first < FIRST_DAY or last > LAST_DAY:
        return None  # no usable date statistics, or dates out of range: validate row by row
    return int(first), int(last), source.rows


def _duplicate_rows(con: duckdb.DuckDBPyConnection, source: _Source, names: Sequence[str]) -> int:
    """How many rows repeat an earlier row in every column (files read into memory and frames)."""
    columns = ", ".join('"' + n.replace('"', '""') + '"' for n in names)
    row = con.execute(
        f"SELECT COALESCE(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM {source.relation} "
        f"GROUP BY {columns} HAVING count(*) > 1)"
    ).fetchall()[0]
    return int(row[0])


def _money(scale: int | None, column: str = "monetary_minor") -> str:
    if scale is None:
        return "monetary"
    if scale == 0:
        return f"CAST({column} AS DECIMAL(18, 0))"
    exact = f"CAST({column} AS DECIMAL(38, 0)) * CAST(1e-{scale} AS DECIMAL(18, {scale}))"
    return f"CAST({exact} AS DECIMAL(18, {scale}))"


def _presentation(columns: Sequence[str], scale: int | None) -> str:
    parts = []
    for col in columns:
        if col == "monetary_minor":
            parts.append(f"{_money(scale)} AS monetary")
        else:
            parts.append('"' + col + '"')
    return ", ".join(parts)


def _unpresentation(scale: int | None) -> str:
    """Columns the summaries need beyond the presented rows (money back in minor units)."""
    if scale is None:
        return ""
    return f", CAST(CAST(monetary AS DECIMAL(38, {scale})) * {10**scale} AS BIGINT) AS monetary_minor"


def _monetary_number(scale: int | None) -> str:
    return "monetary" if scale is None else f"CAST(monetary_minor AS DOUBLE) / {10**scale}"


def _summaries(con: duckdb.DuckDBPyConnection, scale: int | None) -> list[SegmentSummary]:
    revenue = "monetary" if scale is None else "monetary_minor"
    rows = con.execute(
        f"SELECT COALESCE(segment, '{NO_SEGMENT}') AS seg, count(*), avg(recency_days), avg(frequency), "
        f"avg({_monetary_number(scale)}), sum({revenue}) FROM scored GROUP BY seg"
    ).fetchall()
    total = sum(r[1] for r in rows) or 1
    positive = sum((max(Decimal(str(r[5] or 0)), Decimal(0)) for r in rows), Decimal(0))
    out = []
    for seg, n, rec, freq, mon, rev in rows:
        amount = Decimal(str(rev or 0))
        if scale is not None:
            amount = amount.scaleb(-scale)
        share_base = positive.scaleb(-scale) if scale is not None else positive
        out.append(
            SegmentSummary(
                segment=seg,
                customers=int(n),
                share=n / total,
                mean_recency_days=None if rec is None else float(rec),
                mean_frequency=float(freq or 0),
                mean_monetary=float(mon or 0),
                revenue=amount,
                revenue_share=float(max(amount, Decimal(0)) / share_base) if share_base > 0 else 0.0,
            )
        )
    return out


def order_summaries(summaries: list[SegmentSummary], scheme: Scheme) -> list[SegmentSummary]:
    """Every segment of the scheme in its order (empty ones with 0 customers), '(no segment)' last."""
    rank = {s.name: i for i, s in enumerate(scheme.segments)}
    present = {s.segment for s in summaries}
    empty = [
        SegmentSummary(seg.name, 0, 0.0, None, 0.0, 0.0, Decimal(0), 0.0)
        for seg in scheme.segments
        if seg.name not in present
    ]
    return sorted([*summaries, *empty], key=lambda s: rank.get(s.segment, len(rank)))


def _bands(con: duckdb.DuckDBPyConnection, scheme: Scheme, scale: int | None) -> dict[str, list[ScoreBand]]:
    values: dict[ScoreKey, str] = {
        "recency": "recency_days",
        "frequency": "frequency_decayed" if scheme.metrics.frequency.half_life_days else "frequency",
        "monetary": "monetary_decayed" if scheme.metrics.monetary.half_life_days else _monetary_number(scale),
    }
    out: dict[str, list[ScoreBand]] = {}
    for key in SCORE_KEYS:
        spec = scheme.score_spec(key)
        if spec is None:
            continue
        col = SCORE_COLUMN[key]
        rows = {
            int(r[0]): (r[1], r[2], int(r[3]))
            for r in con.execute(
                f"SELECT {col}, min({values[key]}), max({values[key]}), count(*) FROM scored "
                f"WHERE {col} IS NOT NULL GROUP BY {col}"
            ).fetchall()
        }
        bands = []
        for score in range(1, spec.bins + 1):
            low, high, n = rows.get(score, (None, None, 0))
            low_open = False
            if spec.edges is not None and scheme.lifecycle is None:
                whole = key == "recency" or (
                    key == "frequency" and not scheme.metrics.frequency.half_life_days
                )
                low, high = _fixed_band(key, [float(e) for e in spec.edges], score, whole=whole)
                low_open = low is not None and not whole
            bands.append(
                ScoreBand(
                    score,
                    None if low is None else float(low),
                    None if high is None else float(high),
                    n,
                    low_open,
                )
            )
        out[key] = bands
    return out


def _fixed_band(
    key: ScoreKey, edges: list[float], score: int, *, whole: bool
) -> tuple[float | None, float | None]:
    """The fixed value range of ``score`` (upper-inclusive edges; recency is reversed).

    For whole-number metrics the lower bound is the previous edge + 1; otherwise it is the
    previous edge itself, excluded (the caller marks the band ``low_open``).
    """
    bins = len(edges) + 1
    index = bins - score if key == "recency" else score - 1  # position in ascending value order
    low = None if index == 0 else edges[index - 1]
    high = None if index == bins - 1 else edges[index]
    if low is not None and whole:
        low = low + 1
    return low, high


# --- reading events without scoring them (the service's file import) -----------------------
@dataclass
class EventRows:
    """An event file's valid rows, normalised exactly as :func:`score_with_duckdb` reads them.

    ``view`` (in ``con``) holds one row per valid event, in no particular order:
    ``_line`` (line or row number in the source), ``customer_id``, ``occurred_at`` (the moment,
    TIMESTAMPTZ in UTC: a date without a zone is local to ``options.timezone``, a date-only
    value is local midnight), ``day`` (its calendar day in that zone, days since 1970-01-01),
    ``event_type``, ``amount_minor`` (refunds negative) and ``order_id``. ``raw`` is the source
    as read (text files: every value as text), with the line number in ``line_column``, to
    reach columns that play no role. ``rejects`` are the (line, reason, raw text) of the rows
    left out, sorted by line.
    """

    con: duckdb.DuckDBPyConnection
    view: str
    raw: str
    line_column: str
    source: str
    line_label: str
    rows_read: int
    valid_rows: int
    names: list[str]
    columns: ColumnMap
    notes: list[str]
    currency: str | None
    rejects: list[tuple[int, str, str]]
    first_day: int | None
    last_day: int | None

    def write_rejects(self, path: Path, rejects: Sequence[tuple[int, str, str]] | None = None) -> None:
        """Write ``rejects`` (default: :attr:`rejects`) as CSV: line, reason, raw."""
        _write_rejects(path, self.rejects if rejects is None else rejects, self.line_label)


def _moment_sql(method: str, timezone: str, raw: str = "_raw_date") -> str:
    """SQL for the moment (TIMESTAMPTZ) of a valid row's date text, read as ``normalize`` read it."""
    text = f"NULLIF(TRIM({raw}), '')"
    zone = "'" + timezone.replace("'", "''") + "'"
    if method == "iso":
        return (
            f"CASE WHEN regexp_matches({text}, '{OFFSET}$') THEN TRY_CAST({text} AS TIMESTAMPTZ) "
            f"ELSE timezone({zone}, TRY_CAST({text} AS TIMESTAMP)) END"
        )
    if method in ("epoch_s", "epoch_ms"):
        return f"to_timestamp(CAST({text} AS DOUBLE) / {1000 if method == 'epoch_ms' else 1})"
    if method == "timestamptz":
        return f"CAST({text} AS TIMESTAMPTZ)"
    if method == "date" or method.startswith("timestamp"):
        return f"timezone({zone}, CAST({text} AS TIMESTAMP))"
    fmt = "'" + method.replace("'", "''") + "'"
    if "%z" in method or "%Z" in method:
        return f"CAST(TRY_STRPTIME({text}, {fmt}) AS TIMESTAMPTZ)"
    return f"timezone({zone}, CAST(TRY_STRPTIME({text}, {fmt}) AS TIMESTAMP))"


@contextmanager
def open_event_rows(
    data: Any,
    options: ScoreOptions,
    *,
    scheme: Scheme | None = None,
    progress: Progress | None = None,
    connect: Callable[[], duckdb.DuckDBPyConnection] = duckdb.connect,
) -> Iterator[EventRows]:
    """Open and validate ``data`` as ``score`` does, and yield its valid rows (no scoring).

    The same reading as :func:`score_with_duckdb`: formats, column detection and mapping,
    time zone, date formats, decimal comma, currency, money decimals, event-type filter, and
    the same rejects with line numbers. ``options.strict`` is NOT applied and no rejects file
    is written: the caller may reject more rows and then decides (see :class:`EventRows`).
    A source without any valid row raises :class:`InputError` naming the first rejects (after
    writing them to ``options.rejects_path``, as ``score`` does). The connection is closed
    when the block ends.
    """
    from rfmflow.schemes import load_scheme

    progress = progress or Progress()
    con = connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        lenient = replace(options, strict=False, as_of=None, drop_future=False)
        try:
            p = _prepare(con, data, scheme or load_scheme(None), lenient, progress)
        except InputError as err:
            if type(err) is InputError and " no valid rows" in str(err):
                raise InputError(str(err).replace(" to score", "")) from None
            raise
        moment = _moment_sql(p.date_method, options.timezone)
        con.execute(
            "CREATE TEMP VIEW event_rows AS SELECT _line, customer_id, "
            f"{moment} AS occurred_at, day, event_type, amount_minor, order_id FROM valid"
        )
        valid = con.execute("SELECT count(*) FROM valid").fetchall()[0][0]
        yield EventRows(
            con=con,
            view="event_rows",
            raw=p.source.relation,
            line_column=LINE,
            source=p.source.name,
            line_label=p.source.line_label,
            rows_read=p.source.rows,
            valid_rows=int(valid),
            names=p.names,
            columns=p.columns,
            notes=p.notes,
            currency=p.currency,
            rejects=sorted(p.rejects, key=lambda r: r[0]),
            first_day=p.first_day,
            last_day=p.last_day,
        )
    except duckdb.Error as err:
        raise EngineError(f"DuckDB failed: {err}") from None
    finally:
        con.close()

"""Bulk import of event history from a file: ``rfmflow import FILE`` and ``POST /v1/imports``.

The file is read exactly as ``rfmflow score`` reads it (:func:`rfmflow.engines.duckdb_engine.
open_event_rows`: CSV/TSV/text with any delimiter, JSON lines or arrays, Parquet; column
detection and mapping; time zone; date formats; decimal comma; currency; rejects with line
numbers and reasons). Rows the service cannot take either (an event type it does not know,
an id too long, a date more than a day ahead) are rejected the same way, before anything is
written. The valid rows are then stored through the service's one ingest path
(:func:`rfmflow.service.ingest.ingest`) in chunks of :data:`DEFAULT_BATCH` events, one
transaction each, so each chunk updates the customers' aggregates as live events do.

Event ids: the file's ``event_id`` (or ``id``) column when it has one, else a deterministic
id computed from the row, ``import:<sha256>`` of the customer, the moment (UTC), the type,
the amount in minor units, the order id and the values of the columns that play no role,
plus the row's occurrence among identical rows. Importing the same file again, or a later
export that repeats its rows (even with dates or amounts formatted differently), therefore
counts nothing twice: repeated rows are answered as duplicates. Two identical rows of one
file stay two events, as ``score`` counts them.

Atomicity: with ``strict`` the first rejected row (by line) fails the import before anything
is written, and the whole import is one transaction. Otherwise each chunk is all or nothing;
an interrupted import is completed by running it again (what was stored is answered as
duplicates).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import ValidationError
from sqlalchemy.engine import Connection, Engine

from rfmflow.core.columns import normalise
from rfmflow.core.errors import InputError, RejectedRowError
from rfmflow.engines.duckdb_engine import EventRows, Progress, ScoreOptions, open_event_rows
from rfmflow.service.db.engine import run_write
from rfmflow.service.events import EVENT_TYPES, MAX_EVENT_BYTES, MONEY_TYPES, EventIn
from rfmflow.service.ingest import FUTURE_TOLERANCE, FieldError, ItemResult, errors_from_validation, ingest
from rfmflow.service.scoring_live import live_rescoring_paused
from rfmflow.service.settings import Settings

DEFAULT_BATCH = 10_000
LIVE_LIMIT = 10_000
"""Imports of more rows than this pause live re-scoring and end with one full scoring run."""
RUN_WAIT_SECONDS = 600.0
"""How long a large import waits for a scoring run in progress before its own."""
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
ID_COLUMN_NAMES = ("eventid", "id")
"""Columns taken as the event id when not mapped explicitly (normalised names, best first)."""
SOURCE = "import"

Reject = tuple[int, str, str]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class ImportReport:
    """What an import did. ``rows_read`` = ``accepted + duplicates + rejected + skipped``
    (``skipped``: rows left out by an event-type filter)."""

    source: str
    rows_read: int
    accepted: int
    duplicates: int
    rejected: int
    skipped: int
    rejects: list[Reject]
    rejects_path: str | None
    line_label: str
    columns: dict[str, str]
    id_column: str | None
    notes: list[str] = field(default_factory=list)
    first_date: date | None = None
    last_date: date | None = None
    customers: int = 0
    seconds: float = 0.0
    scoring_run: int | None = None
    """The id of the full scoring run after a large import (see :data:`LIVE_LIMIT`)."""

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self, max_rejects: int | None = None) -> dict[str, Any]:
        shown = self.rejects if max_rejects is None else self.rejects[:max_rejects]
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "skipped": self.skipped,
            "customers": self.customers,
            "first_date": self.first_date.isoformat() if self.first_date else None,
            "last_date": self.last_date.isoformat() if self.last_date else None,
            "columns": self.columns,
            "id_column": self.id_column,
            "notes": self.notes,
            "rejects_path": self.rejects_path,
            "scoring_run": self.scoring_run,
            "rejects": [{self.line_label: line, "reason": reason, "raw": raw} for line, reason, raw in shown],
            "rejects_truncated": len(shown) < len(self.rejects),
            "seconds": round(self.seconds, 3),
        }


def reading_options(
    settings: Settings,
    *,
    timezone: str | None = None,
    event_types: Sequence[str] | None = None,
    columns: dict[str, str] | None = None,
    delimiter: str | None = None,
    header: bool = True,
    column_names: Sequence[str] | None = None,
    date_format: str | None = None,
    decimal_comma: bool = False,
    encoding: str = "utf-8",
    strict: bool = False,
) -> ScoreOptions:
    """How to read an import file: ``score``'s options, with the service's currency, money
    decimals and (unless given) time zone. ``timezone`` is the zone of dates written without
    one; dates with an offset or ``Z`` are exact whatever it is."""
    return ScoreOptions(
        timezone=timezone or settings.timezone,
        event_types=tuple(t.lower() for t in event_types) if event_types else None,
        columns=dict(columns or {}),
        delimiter=delimiter,
        header=header,
        column_names=tuple(column_names) if column_names else None,
        date_format=date_format,
        decimal_comma=decimal_comma,
        currency=settings.currency,
        money_scale=settings.money_decimals,
        strict=strict,
        sort=False,
        encoding=encoding,
    )


def default_rejects_path(source: str | Path) -> Path:
    """``<input name>.rejects.csv`` in the working directory, as ``score`` writes it."""
    return Path(Path(str(source)).stem + ".rejects.csv")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _id_column(rows: EventRows, given: str | None) -> str | None:
    if given:
        if given not in rows.names:
            raise InputError(f"--id-col {given!r}: no such column; the file has: {', '.join(rows.names)}")
        return given
    used = set(rows.columns.as_dict().values())
    by_norm = {normalise(n): n for n in reversed(rows.names) if n not in used}
    return next((by_norm[c] for c in ID_COLUMN_NAMES if c in by_norm), None)


class _Plan:
    """The service's own checks and the rows to store, over an open file.

    One pass joins the valid rows to their source columns and materialises what every later
    step reads (``import_checked``): the reason the service rejects a row, the given id, the
    key a derived id is computed from, and the columns that play no role, as properties.
    """

    def __init__(self, rows: EventRows, id_column: str | None, now: datetime) -> None:
        self.rows = rows
        role_columns = set(rows.columns.as_dict().values())
        extra = [n for n in rows.names if n not in role_columns and n != id_column]
        known = ", ".join(_lit(t) for t in EVENT_TYPES)
        limit = (now + FUTURE_TOLERANCE).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        clock = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        checks = [
            f"WHEN event_type NOT IN ({known}) THEN 'unknown event type ''' || event_type || "
            f"''' (known: {', '.join(EVENT_TYPES)})'",
            "WHEN length(customer_id) > 256 THEN 'customer id is longer than 256 characters'",
            "WHEN length(order_id) > 128 THEN 'order id is longer than 128 characters'",
        ]
        given = "CAST(NULL AS VARCHAR)"
        if id_column is not None:
            given = f"NULLIF(TRIM(CAST(r.{_q(id_column)} AS VARCHAR)), '')"
            checks += [
                f"WHEN given_id IS NULL THEN {_lit(f'missing event id (column {id_column!r})')}",
                "WHEN length(given_id) > 128 THEN 'event id is longer than 128 characters'",
            ]
        checks.append(
            f"WHEN octet_length(CAST(properties AS BLOB)) > {MAX_EVENT_BYTES} THEN 'the columns stored as "
            f"properties ({', '.join(extra)}) are larger than {MAX_EVENT_BYTES // 1024} KB'"
        )
        checks.append(
            f"WHEN occurred_at > TIMESTAMPTZ '{limit}+00' THEN 'date ' || "
            "strftime(occurred_at, '%Y-%m-%dT%H:%M:%SZ') || "
            f"' is more than a day after the server''s clock ({clock} UTC)'"
        )
        raw_text = "concat_ws(' | ', " + ", ".join(f"CAST(r.{_q(n)} AS VARCHAR)" for n in rows.names) + ")"
        key_parts = [
            "e.customer_id",
            "strftime(e.occurred_at, '%Y-%m-%dT%H:%M:%S.%fZ')",
            "e.event_type",
            "CAST(e.amount_minor AS VARCHAR)",
            "e.order_id",
            *(f"CAST(r.{_q(n)} AS VARCHAR)" for n in extra),
        ]
        props = "CAST(NULL AS VARCHAR)"
        if extra:
            entries = ", ".join(
                f"struct_pack(k := {_lit(n)}, v := CAST(r.{_q(n)} AS VARCHAR))" for n in extra
            )
            kept = f"list_filter([{entries}], lambda x: NULLIF(TRIM(x.v), '') IS NOT NULL)"
            props = f"CASE WHEN len({kept}) > 0 THEN to_json(map_from_entries({kept})) END"
        line = _q(rows.line_column)
        joined = (
            f"SELECT e.*, {given} AS given_id, to_json(list_value({', '.join(key_parts)})) AS _key, "
            f"{props} AS properties, {raw_text} AS raw_text "
            f"FROM {rows.view} AS e JOIN {rows.raw} AS r ON r.{line} = e._line"
        )
        rows.con.execute(
            "CREATE TEMP TABLE import_checked AS SELECT * EXCLUDE (raw_text), "
            "CASE WHEN reason IS NOT NULL THEN raw_text END AS raw "
            f"FROM (SELECT *, CASE {' '.join(checks)} END AS reason FROM ({joined}))"
        )

    def service_rejects(self) -> list[Reject]:
        """Rows ``score`` takes but the service does not, with line and reason."""
        result = self.rows.con.execute(
            "SELECT _line, reason, raw FROM import_checked WHERE reason IS NOT NULL ORDER BY _line"
        ).fetchall()
        return [(int(line), str(reason), str(raw or "")) for line, reason, raw in result]

    def facts(self) -> tuple[int, int, int | None, int | None, int]:
        """(rows to store, their customers, first day, last day, amounts on types without money)."""
        money = ", ".join(_lit(t) for t in MONEY_TYPES)
        row = self.rows.con.execute(
            "SELECT count(*) FILTER (WHERE reason IS NULL), "
            "count(DISTINCT customer_id) FILTER (WHERE reason IS NULL), "
            "min(day) FILTER (WHERE reason IS NULL), max(day) FILTER (WHERE reason IS NULL), "
            f"count(*) FILTER (WHERE event_type NOT IN ({money}) AND amount_minor <> 0) FROM import_checked"
        ).fetchall()[0]
        first = None if row[2] is None else int(row[2])
        last = None if row[3] is None else int(row[3])
        return int(row[0]), int(row[1]), first, last, int(row[4])

    @staticmethod
    def stored_query() -> str:
        """The rows to store, in file order, with their ids (given, or derived from the content)."""
        money = ", ".join(_lit(t) for t in MONEY_TYPES)
        return (
            "SELECT _line, COALESCE(given_id, 'import:' || sha256(_key || '#' || "
            "CAST(row_number() OVER (PARTITION BY _key ORDER BY _line) AS VARCHAR))) AS event_id, "
            "customer_id, epoch_us(occurred_at) AS occurred_us, event_type, "
            f"CASE WHEN event_type IN ({money}) THEN amount_minor END AS amount_minor, order_id, properties "
            "FROM import_checked WHERE reason IS NULL ORDER BY _line"
        )


Batch = tuple[list[int], list[EventIn | tuple[FieldError, ...]]]


def _events(batch: pa.RecordBatch, scale: int) -> Batch:
    """A batch of stored-query rows as validated events (their line numbers beside them).

    ``properties`` (text columns as a JSON object of strings, built by DuckDB, their size
    checked there) are attached after validation: re-encoding each one to measure it again
    cost as much as the rest of the validation.
    """
    cols = batch.to_pydict()
    lines: list[int] = cols["_line"]
    out: list[EventIn | tuple[FieldError, ...]] = []
    validate = EventIn.model_validate
    for event_id, customer, moment, kind, minor, order, props in zip(
        cols["event_id"],
        cols["customer_id"],
        cols["occurred_us"],
        cols["event_type"],
        cols["amount_minor"],
        cols["order_id"],
        cols["properties"],
        strict=True,
    ):
        raw = {
            "event_id": event_id,
            "customer_id": customer,
            "type": kind,
            "occurred_at": EPOCH + timedelta(microseconds=moment),
            "amount": None if minor is None else Decimal(minor).scaleb(-scale),
            "order_id": order,
        }
        try:
            event = validate(raw)
            if props is not None:
                event.properties = json.loads(props)
            out.append(event)
        except ValidationError as err:
            out.append(errors_from_validation(err))
    return lines, out


def _describe(errors: Sequence[FieldError]) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e.loc)}: {e.msg}" if e.loc else e.msg for e in errors)


@dataclass
class _Tally:
    accepted: int = 0
    duplicates: int = 0
    late_rejects: list[Reject] = field(default_factory=list)


@contextmanager
def _progress_stopped(progress: Progress) -> Iterator[None]:
    try:
        yield
    finally:
        progress.stop()


def _store_batches(
    target: Engine | Connection,
    rows: EventRows,
    query: str,
    settings: Settings,
    *,
    batch_size: int,
    strict: bool,
    source: str,
    progress: Progress,
) -> _Tally:
    tally = _Tally()
    done = 0
    for batch in rows.con.sql(query).to_arrow_reader(batch_size):
        lines, items = _events(batch, settings.money_decimals)
        results: list[ItemResult] = ingest(target, items, settings, source=source)
        for result in results:
            if result.status == "accepted":
                tally.accepted += 1
            elif result.status == "duplicate":
                tally.duplicates += 1
            elif result.status == "rejected":
                reject = (lines[result.index], _describe(result.errors), str(result.event_id or ""))
                if strict:
                    raise RejectedRowError(reject[0], reject[1], rows.source)
                tally.late_rejects.append(reject)
        done += len(items)
        progress.update(done)
    return tally


def import_events(
    engine: Engine,
    data: Any,
    settings: Settings,
    options: ScoreOptions,
    *,
    id_column: str | None = None,
    rejects_path: Path | None = None,
    write_rejects: bool = True,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    source: str = SOURCE,
    trigger: str = "cli",
    live_limit: int = LIVE_LIMIT,
) -> ImportReport:
    """Import the events of ``data`` (a file path, a data frame or an Arrow table) into the
    service's database; see the module docstring.

    The rejects are written to ``rejects_path`` (default ``<input name>.rejects.csv`` in the
    working directory) when there are any and ``write_rejects`` is true, after the rows
    were stored. With ``options.strict`` the first rejected row raises
    :class:`~rfmflow.core.errors.RejectedRowError` and nothing is written.

    An import of more than ``live_limit`` rows stores its events with live re-scoring
    paused, then re-scores everyone in one scoring run (``trigger``; waiting for a run in
    progress), much faster than re-scoring each purchase as it is stored; a smaller import
    re-scores live, as single events do.
    """
    started = time.perf_counter()
    progress = progress or Progress()
    now = datetime.now(UTC)
    target = rejects_path or default_rejects_path(data if isinstance(data, str | Path) else "events")
    # A file without any valid row fails in open_event_rows, which writes the rejects there.
    with open_event_rows(data, replace(options, rejects_path=target), progress=progress) as rows:
        ids = _id_column(rows, id_column)
        plan = _Plan(rows, ids, now)
        rejects = sorted(rows.rejects + plan.service_rejects(), key=lambda r: r[0])
        if rejects and options.strict:
            line, reason, _ = rejects[0]
            raise RejectedRowError(line, reason, rows.source)
        total, customers, first, last, ignored = plan.facts()
        if not total:
            if write_rejects:
                rows.write_rejects(target, rejects)
            shown = "; ".join(f"{rows.line_label} {line}: {reason}" for line, reason, _ in rejects[:3])
            where = f"; all in {target}" if write_rejects else ""
            raise InputError(f"{rows.source}: no valid rows ({len(rejects)} rejected, first: {shown}{where})")
        notes = list(rows.notes)
        if ignored:
            kinds = ", ".join(t for t in EVENT_TYPES if t not in MONEY_TYPES)
            notes.append(
                f"{ignored} rows of types without money ({kinds}) carried an amount; it was not stored"
            )
        query = plan.stored_query()
        progress.start(f"Importing {Path(rows.source).name}", float(total))
        bulk = total > live_limit
        with live_rescoring_paused() if bulk else nullcontext(), _progress_stopped(progress):
            if options.strict:

                def work(conn: Connection) -> _Tally:
                    progress.update(0)
                    return _store_batches(
                        conn, rows, query, settings, batch_size=batch_size, strict=True, source=source,
                        progress=progress,
                    )  # fmt: skip

                tally = run_write(engine, work)
            else:
                tally = _store_batches(
                    engine, rows, query, settings, batch_size=batch_size, strict=False, source=source,
                    progress=progress,
                )  # fmt: skip
        scoring_run = None
        if bulk and tally.accepted:
            from rfmflow.service.scoring_jobs import run_now

            scoring_run = run_now(engine, settings, trigger=trigger, wait_seconds=RUN_WAIT_SECONDS).id
        rejects = sorted(rejects + tally.late_rejects, key=lambda r: r[0])
        written: str | None = None
        if rejects and write_rejects:
            rows.write_rejects(target, rejects)
            written = str(target)
        return ImportReport(
            source=rows.source,
            rows_read=rows.rows_read,
            accepted=tally.accepted,
            duplicates=tally.duplicates,
            rejected=len(rejects),
            skipped=rows.rows_read - rows.valid_rows - len(rows.rejects),
            rejects=rejects,
            rejects_path=written,
            line_label=rows.line_label,
            columns=rows.columns.as_dict(),
            id_column=ids,
            notes=notes,
            first_date=_date(first),
            last_date=_date(last),
            customers=customers,
            seconds=time.perf_counter() - started,
            scoring_run=scoring_run,
        )


def _date(day: int | None) -> date | None:
    return None if day is None else date(1970, 1, 1) + timedelta(days=day)

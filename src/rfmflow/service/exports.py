"""Writing lists as CSV or Parquet without holding them in memory.

A list is a sequence of column specs and an iterator of rows (dicts keyed by column name,
typed values: ``Decimal`` money, ``date``, ``datetime``, lists of tags). CSV is produced in
chunks as rows arrive (the HTTP API streams them); Parquet is written by pyarrow in row groups
to a file (the API then streams the file and deletes it).

CSV conventions: UTF-8, a header line, ``,`` separators, RFC 4180 quoting; empty cell for a
missing value; money as a plain decimal (``12.30``); dates and timestamps ISO 8601; a list of
tags joined by ``;``. Parquet keeps the types: money ``decimal128(38, money_decimals)``, dates
``date32``, timestamps in UTC (microseconds), tags ``list<string>``.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rfmflow.service.customer_search import CUSTOMER_COLUMNS
from rfmflow.service.history import MOVE_COLUMNS, RUN_COLUMNS, SNAPSHOT_COLUMNS

if TYPE_CHECKING:
    import pyarrow as pa

Format = Literal["csv", "parquet"]
FORMATS = ("csv", "parquet")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
Kind = Literal["str", "int", "float", "money", "date", "datetime", "tags"]
ROW_GROUP = 65_536
CSV_CHUNK_ROWS = 2_000
Progress = Callable[[int], None]
"""Called with the number of rows written so far."""


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind


def _columns(names: Sequence[str], kinds: Mapping[str, Kind]) -> tuple[Column, ...]:
    return tuple(Column(name, kinds.get(name, "str")) for name in names)


def customer_columns(*, money: bool) -> tuple[Column, ...]:
    """The customer list's columns; ``monetary`` is money when the scheme's M is."""
    ints = ("r_score", "f_score", "m_score", "recency_days", "frequency", "purchases", "scheme_version")
    kinds: dict[str, Kind] = {name: "int" for name in ints}
    kinds.update(
        monetary="money" if money else "float",
        revenue="money",
        tags="tags",
        last_activity="date",
        last_purchase_date="date",
        as_of="date",
    )
    return _columns(CUSTOMER_COLUMNS, kinds)


MOVES = _columns(
    MOVE_COLUMNS, {"id": "int", "date": "date", "at": "datetime", "run_id": "int", "scheme_version": "int"}
)
RUNS = _columns(
    RUN_COLUMNS,
    {
        "id": "int",
        "as_of": "date",
        "scheme_version": "int",
        "started_at": "datetime",
        "finished_at": "datetime",
        "duration_ms": "float",
        "customers": "int",
        "moves": "int",
    },
)
SNAPSHOTS = _columns(
    SNAPSHOT_COLUMNS,
    {
        "run_id": "int",
        "as_of": "date",
        "scheme_version": "int",
        "customers": "int",
        "share": "float",
        "revenue": "money",
        "revenue_share": "float",
        "mean_recency_days": "float",
        "mean_frequency": "float",
    },
)


# --- CSV -------------------------------------------------------------------------------------
def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ";".join(str(v) for v in value)
    return value


def csv_chunks(
    columns: Sequence[Column], rows: Iterable[Mapping[str, Any]], *, progress: Progress | None = None
) -> Iterator[bytes]:
    """The CSV text of ``rows``, in chunks of about :data:`CSV_CHUNK_ROWS` rows (header first)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([c.name for c in columns])
    names = [c.name for c in columns]
    done = 0
    for row in rows:
        writer.writerow([_cell(row[name]) for name in names])
        done += 1
        if done % CSV_CHUNK_ROWS == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
            if progress is not None:
                progress(done)
    yield buffer.getvalue().encode("utf-8")
    if progress is not None:
        progress(done)


# --- Parquet ---------------------------------------------------------------------------------
def _arrow_type(kind: Kind, money_decimals: int) -> pa.DataType:
    import pyarrow as pa

    types: dict[str, pa.DataType] = {
        "str": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "money": pa.decimal128(38, money_decimals),
        "date": pa.date32(),
        "datetime": pa.timestamp("us", tz="UTC"),
        "tags": pa.list_(pa.string()),
    }
    return types[kind]


def arrow_schema(columns: Sequence[Column], money_decimals: int) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([pa.field(c.name, _arrow_type(c.kind, money_decimals)) for c in columns])


def write_parquet(
    target: str | os.PathLike[str],
    columns: Sequence[Column],
    rows: Iterable[Mapping[str, Any]],
    *,
    money_decimals: int,
    row_group: int = ROW_GROUP,
    progress: Progress | None = None,
) -> int:
    """Write ``rows`` to a Parquet file in row groups of ``row_group`` rows; the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema(columns, money_decimals)
    names = [c.name for c in columns]
    done = 0
    with pq.ParquetWriter(os.fspath(target), schema, compression="zstd") as writer:
        batch: dict[str, list[Any]] = {name: [] for name in names}
        filled = 0

        def flush() -> None:
            writer.write_table(pa.table(batch, schema=schema), row_group_size=row_group)
            for values in batch.values():
                values.clear()

        for row in rows:
            for name in names:
                batch[name].append(row[name])
            filled += 1
            done += 1
            if filled == row_group:
                flush()
                filled = 0
                if progress is not None:
                    progress(done)
        if filled or done == 0:
            flush()
    if progress is not None:
        progress(done)
    return done


def parquet_tempfile(
    columns: Sequence[Column], rows: Iterable[Mapping[str, Any]], *, money_decimals: int
) -> Path:
    """``rows`` written to a new temporary Parquet file (the caller deletes it)."""
    handle, name = tempfile.mkstemp(prefix="rfmflow-export-", suffix=".parquet")
    os.close(handle)
    try:
        write_parquet(name, columns, rows, money_decimals=money_decimals)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def write_file(
    path: str | os.PathLike[str],
    fmt: Format,
    columns: Sequence[Column],
    rows: Iterable[Mapping[str, Any]],
    *,
    money_decimals: int,
    progress: Progress | None = None,
) -> int:
    """Write ``rows`` to ``path`` as CSV or Parquet (through a temporary file renamed at the
    end, so a failed export leaves no half-written file); the row count."""
    target = Path(path)
    temp = target.with_name(f".{target.name}.partial")
    try:
        if fmt == "parquet":
            count = write_parquet(temp, columns, rows, money_decimals=money_decimals, progress=progress)
        else:
            count = 0

            def counted() -> Iterator[Mapping[str, Any]]:
                nonlocal count
                for row in rows:
                    count += 1
                    yield row

            with temp.open("wb") as out:
                for chunk in csv_chunks(columns, counted(), progress=progress):
                    out.write(chunk)
        temp.replace(target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return count


def format_of(path: str | os.PathLike[str], given: str | None) -> Format:
    """The format asked for, else the one the file name says (``.parquet``/``.pq``, else CSV)."""
    if given is not None:
        if given not in FORMATS:
            raise ValueError(f"unknown format {given!r}; one of: {', '.join(FORMATS)}")
        return "parquet" if given == "parquet" else "csv"
    return "parquet" if Path(path).suffix.lower() in (".parquet", ".pq") else "csv"


__all__ = [
    "FORMATS",
    "MEDIA_TYPES",
    "MOVES",
    "RUNS",
    "SNAPSHOTS",
    "Column",
    "arrow_schema",
    "csv_chunks",
    "customer_columns",
    "format_of",
    "parquet_tempfile",
    "write_file",
    "write_parquet",
]

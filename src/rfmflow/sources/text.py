"""Reading delimited text and JSON files into Arrow, keeping every row's line number.

CSV with any delimiter (sniffed, or given), UTF-8 with or without BOM, quoted fields (also
spanning lines), whitespace-separated files (like CDNOW's), JSON lines and JSON arrays.
All values are read as text; typing and validation happen later, in one place, so that a
bad value is reported with its line rather than failing the whole read.

Rows with the wrong number of fields never reach the table: they are returned as rejects
with their line number.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from rfmflow.core.errors import InputError

LINE = "__rfmflow_line"
CHUNK = 100_000
ProgressFn = Callable[[int], None]
"""Called with the number of bytes consumed so far."""


@dataclass
class TextRead:
    table: pa.Table
    rejects: list[tuple[int, str, str]] = field(default_factory=list)  # (line, reason, raw text)
    delimiter: str = ","


class _CountingReader(io.RawIOBase):
    def __init__(self, raw: IO[bytes], progress: ProgressFn | None) -> None:
        self.raw = raw
        self.progress = progress
        self.count = 0

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.raw.close()
        super().close()

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.count += n
        if self.progress is not None:
            self.progress(self.count)
        return n


def _open_binary(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def _open_text(path: Path, progress: ProgressFn | None, encoding: str = "utf-8") -> IO[str]:
    raw = _open_binary(path)
    head = raw.read(3)
    raw.seek(0)
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"
    counting = io.BufferedReader(_CountingReader(raw, progress), buffer_size=1 << 20)
    return io.TextIOWrapper(counting, encoding=encoding, newline="")


def _widths(sample: str, delimiter: str) -> set[int]:
    """Field counts of the first 20 non-blank records, quoted fields (also spanning lines) kept whole."""
    widths: list[int] = []
    try:
        for fields in csv.reader(io.StringIO(sample), delimiter=delimiter):
            if fields and any(f.strip() for f in fields):
                widths.append(len(fields))
            if len(widths) >= 20:
                break
    except csv.Error:
        return set()
    return set(widths)


def sniff_delimiter(sample: str) -> str:
    """Guess the delimiter: one of ``, ; TAB |`` or ``"whitespace"`` (runs of blanks)."""
    lines = [ln for ln in sample.splitlines() if ln.strip()][:50]
    if not lines:
        return ","
    candidates = [",", ";", "\t", "|"]
    with contextlib.suppress(csv.Error):
        candidates.insert(0, csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|").delimiter)
    for delim in candidates:
        widths = _widths(sample, delim)
        if len(widths) == 1 and next(iter(widths)) > 1:
            return delim
    widths = {len(ln.split()) for ln in lines[:20]}
    if len(widths) == 1 and next(iter(widths)) > 1:
        return "whitespace"
    return ","


def _records(handle: IO[str], delimiter: str) -> Iterator[tuple[int, list[str], str]]:
    """Yield (first line number, fields, raw text) for every non-blank record."""
    if delimiter == "whitespace":
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line.split(), line.rstrip("\r\n")
        return
    reader = csv.reader(handle, delimiter=delimiter, quotechar='"', doublequote=True, strict=False)
    previous = 0
    try:
        for fields in reader:
            start, previous = previous + 1, reader.line_num
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            yield start, fields, delimiter.join(fields)
    except csv.Error as err:
        raise InputError(f"line {reader.line_num + 1}: cannot parse the CSV: {err}") from None


def read_delimited(
    path: Path,
    *,
    delimiter: str | None = None,
    header: bool = True,
    column_names: list[str] | None = None,
    progress: ProgressFn | None = None,
    strict: bool = False,
    encoding: str = "utf-8",
) -> TextRead:
    """Read a delimited text file; every column is text, plus the line-number column ``LINE``.

    Rows with the wrong number of fields are returned as rejects even when ``strict``: an
    earlier row may still fail a value check, and strict mode must name the first bad line.
    """
    with _open_text(path, None, encoding) as probe:
        sample = probe.read(65536)
    if not sample.strip():
        raise InputError(f"{path}: the file is empty")
    first_line = sample.lstrip("\ufeff").splitlines()[0].rstrip("\r\n ") if sample.strip() else ""
    excel_sep = re.fullmatch(r"sep=(.)", first_line)  # Excel's "sep=;" line names the delimiter
    if excel_sep:
        sample = sample.split("\n", 1)[1] if "\n" in sample else ""
    delim = delimiter or (excel_sep.group(1) if excel_sep else sniff_delimiter(sample))
    if delim in ("\\t", "tab"):
        delim = "\t"
    if delim in ("space", "whitespace", " "):
        delim = "whitespace"
    rejects: list[tuple[int, str, str]] = []
    batches: list[pa.RecordBatch] = []
    with _open_text(path, progress, encoding) as handle:
        records = _records(handle, delim)
        if excel_sep:
            next(records, None)
        if header:
            first = next(records, None)
            if first is None:
                raise InputError(f"{path}: the file is empty")
            names = [n.strip() for n in first[1]]
            if len(names) > 1 and names[-1] == "":
                names.pop()  # a trailing delimiter after the last column name
        else:
            names = []
        if column_names:
            names = list(column_names)
        if not names:
            first = next(records, None)
            if first is None:
                raise InputError(f"{path}: the file has no data rows")
            names = [f"column{i + 1}" for i in range(len(first[1]))]
            records = _chain(first, records)
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InputError(f"{path}: duplicate column names in the header: {', '.join(dupes)}")
        width = len(names)
        cols: list[list[str | None]] = [[] for _ in range(width)]
        lines: list[int] = []
        for line, fields, raw in records:
            if len(fields) == width + 1 and not fields[-1].strip():
                fields = fields[:-1]  # a trailing delimiter, as many exports write
            if len(fields) != width:
                rejects.append((line, f"wrong number of fields: expected {width}, got {len(fields)}", raw))
                continue
            lines.append(line)
            for i, value in enumerate(fields):
                cols[i].append(value)
            if len(lines) >= CHUNK:
                batches.append(_batch(names, cols, lines))
                cols = [[] for _ in range(width)]
                lines = []
        if lines or not batches:
            batches.append(_batch(names, cols, lines))
    table = pa.Table.from_batches(batches)
    return TextRead(table, rejects, delim)


def _chain(
    first: tuple[int, list[str], str], rest: Iterator[tuple[int, list[str], str]]
) -> Iterator[tuple[int, list[str], str]]:
    yield first
    yield from rest


def _batch(names: list[str], cols: list[list[str | None]], lines: list[int]) -> pa.RecordBatch:
    arrays = [pa.array(c, type=pa.string()) for c in cols] + [pa.array(lines, type=pa.int64())]
    return pa.RecordBatch.from_arrays(arrays, names=[*names, LINE])


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def read_json(
    path: Path, *, progress: ProgressFn | None = None, strict: bool = False, encoding: str = "utf-8"
) -> TextRead:
    """Read JSON lines (one object a line) or a JSON array of objects.

    Malformed lines are returned as rejects even when ``strict`` (see :func:`read_delimited`).
    """
    rejects: list[tuple[int, str, str]] = []
    rows: list[tuple[int, dict[str, Any]]] = []
    with _open_text(path, progress, encoding) as handle:
        text_head = handle.read(1)
        while text_head and text_head.isspace():
            text_head = handle.read(1)
        if not text_head:
            raise InputError(f"{path}: the file is empty")
        if text_head == "[":
            try:
                items = json.loads("[" + handle.read())
            except json.JSONDecodeError as err:
                raise InputError(f"{path}: line {err.lineno}: invalid JSON: {err.msg}") from None
            for i, item in enumerate(items, start=1):
                if not isinstance(item, dict):
                    rejects.append((i, f"array item {i} is not an object", _text(item) or ""))
                    continue
                rows.append((i, item))
        else:
            for number, line in enumerate(_chain_text(text_head, handle), start=1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as err:
                    rejects.append(
                        (number, f"invalid JSON: {err.msg} (column {err.colno})", line.rstrip("\r\n"))
                    )
                    continue
                if not isinstance(item, dict):
                    rejects.append((number, "not a JSON object", line.rstrip("\r\n")))
                    continue
                rows.append((number, item))
    names: dict[str, None] = {}
    for _, item in rows:
        for key in item:
            names.setdefault(str(key), None)
    columns = {n: pa.array([_text(item.get(n)) for _, item in rows], type=pa.string()) for n in names}
    columns[LINE] = pa.array([n for n, _ in rows], type=pa.int64())
    return TextRead(pa.table(columns), rejects, "json")


def _chain_text(first: str, handle: IO[str]) -> Iterator[str]:
    rest = handle.readline()
    yield first + rest
    yield from handle

"""Tag import and export as CSV (``POST /v1/tags/import``, ``GET /v1/tags/export``,
``rfmflow tags import|export``).

Import: a header line naming the columns, then one line per change. Columns (any order,
names case-insensitive): ``customer_id`` and ``tag`` (required), ``action`` (``add`` or
``remove``; default ``add``), ``kind`` (lines saying ``rule`` are skipped, so an export can be
imported as it is); other columns (``added_at``, ``added_by``, ...) are ignored. Lines are
applied in order. By default the import is all or nothing: any rejected line (unknown
customer or tag, a rule tag, a malformed line) fails it with every rejected line numbered,
and nothing is written; ``partial`` applies the good lines and reports the others. Unknown
tags are rejected unless ``create`` is asked for: then they are created as manual tags
without a group. One audit row (``tags.import``) records the counts.

Export: ``customer_id,tag,kind,added_at,added_by``, ordered by tag and customer.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from rfmflow.service.tags import (
    EXPORT_COLUMNS,
    ChangeReport,
    OpResult,
    TagError,
    TagOp,
    audit,
    change_tags,
    export_rows,
)

MAX_IMPORT_BYTES = 20 * 2**20
CHUNK = 5000
Progress = Callable[[int, int], None]
"""``progress(done, total)``: lines applied so far, of the total."""


@dataclass
class Reject:
    line: int
    reason: str
    raw: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "reason": self.reason, "raw": self.raw}


@dataclass
class ParsedFile:
    ops: list[TagOp]
    rejects: list[Reject]
    raws: dict[int, str]
    skipped: int = 0
    lines: int = 0


@dataclass
class ImportReport:
    """What an import did (or, when ``applied`` is false, why it did nothing)."""

    lines: int
    applied: bool
    counts: dict[str, int]
    rejects: list[Reject]
    created_tags: list[str] = field(default_factory=list)

    def as_dict(self, max_rejects: int | None = None) -> dict[str, Any]:
        shown = self.rejects if max_rejects is None else self.rejects[:max_rejects]
        return {
            "lines": self.lines,
            "applied": self.applied,
            **self.counts,
            "created_tags": self.created_tags,
            "rejects": [r.as_dict() for r in shown],
            "rejects_truncated": len(shown) < len(self.rejects),
        }


class ImportRejected(TagError):
    """An all-or-nothing import had rejected lines; nothing was written."""

    def __init__(self, report: ImportReport) -> None:
        first = report.rejects[0]
        super().__init__(
            f"{len(report.rejects)} rejected lines (first: line {first.line}: {first.reason}); "
            "nothing was imported (send partial=true to import the other lines)"
        )
        self.report = report


def decode(data: bytes) -> str:
    """The file's text (UTF-8, with or without a byte-order mark)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise TagError(f"the file is not UTF-8 text (byte {err.start})", loc=()) from None


def parse(text: str) -> ParsedFile:
    """Read the CSV: the ops to apply (with their line numbers), the malformed lines, and
    the lines skipped because their ``kind`` says ``rule``."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise TagError("the file is empty: expected a header line 'customer_id,tag[,action]'") from None
    except csv.Error as err:
        raise TagError(f"line 1: {err}") from None
    names = [h.strip().lower() for h in header]
    missing = [c for c in ("customer_id", "tag") if c not in names]
    if missing:
        raise TagError(
            f"line 1: the header must name the columns customer_id and tag (and optionally action, kind); "
            f"missing {', '.join(missing)} in {','.join(header)!r}"
        )
    col: dict[str, int] = {
        name: names.index(name) for name in ("customer_id", "tag", "action", "kind") if name in names
    }
    out = ParsedFile([], [], {})
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            out.rejects.append(Reject(start, f"malformed CSV: {err}", ""))
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        out.lines += 1
        raw = ",".join(row)

        def cell(name: str, row: list[str] = row) -> str:
            i = col.get(name)
            return row[i].strip() if i is not None and i < len(row) else ""

        customer, tag, action = cell("customer_id"), cell("tag"), cell("action").lower() or "add"
        if cell("kind").lower() == "rule":
            out.skipped += 1
            continue
        if not customer:
            out.rejects.append(Reject(line, "customer_id is empty", raw))
        elif not tag:
            out.rejects.append(Reject(line, "tag is empty", raw))
        elif action not in ("add", "remove"):
            out.rejects.append(Reject(line, f"action must be add or remove, not {action!r}", raw))
        else:
            out.ops.append(TagOp(customer, tag, "add" if action == "add" else "remove", line=line))
            out.raws[line] = raw
    return out


def _rejects(parsed: ParsedFile, results: Iterable[OpResult]) -> list[Reject]:
    found = list(parsed.rejects)
    for r in results:
        if r.status == "rejected" and r.line is not None:
            found.append(Reject(r.line, r.reason or "rejected", parsed.raws.get(r.line, "")))
    return sorted(found, key=lambda r: r.line)


def import_tags(
    conn: Connection,
    text: str,
    *,
    actor: str,
    at: datetime,
    partial: bool = False,
    create: bool = False,
    source: str = "upload",
    progress: Progress | None = None,
) -> ImportReport:
    """Apply a tag CSV inside the caller's write transaction (see the module doc). Raises
    :class:`ImportRejected` (nothing written) when not ``partial`` and a line is rejected."""
    parsed = parse(text)
    total = len(parsed.ops)
    if not partial:
        checked = change_tags(
            conn, parsed.ops, actor=actor, at=at, create_missing=create, audit_action=None, validate_only=True
        )
        rejects = _rejects(parsed, checked.results)
        if rejects:
            counts = {"rejected": len(rejects), "skipped": parsed.skipped}
            raise ImportRejected(ImportReport(parsed.lines, False, counts, rejects))
    seen: set[tuple[str, str, str]] = set()
    merged = ChangeReport([])
    if progress is not None:
        progress(0, total)
    for begin in range(0, total, CHUNK):
        part = change_tags(
            conn,
            parsed.ops[begin : begin + CHUNK],
            actor=actor,
            at=at,
            atomic=False,
            create_missing=create,
            audit_action=None,
            seen=seen,
        )
        merged.results += part.results
        merged.created += part.created
        if progress is not None:
            progress(min(begin + CHUNK, total), total)
    rejects = _rejects(parsed, merged.results)
    counts = merged.counts()
    counts["rejected"] = len(rejects)
    counts["skipped"] = parsed.skipped
    report = ImportReport(parsed.lines, True, counts, rejects, merged.created)
    details: dict[str, Any] = {"source": source, "lines": parsed.lines, **counts, "partial": partial}
    if merged.created:
        details["created_tags"] = merged.created
    audit(conn, at, actor, "tags.import", "tags", details)
    return report


def export_csv(
    conn: Connection, *, names: Iterable[str] = (), kind: str | None = None, flush_bytes: int = 64 * 1024
) -> Iterator[str]:
    """The export as chunks of CSV text (header first)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for row in export_rows(conn, names=list(names), kind=kind):
        writer.writerow(row)
        if buffer.tell() >= flush_bytes:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


__all__ = [
    "MAX_IMPORT_BYTES",
    "ImportRejected",
    "ImportReport",
    "Reject",
    "decode",
    "export_csv",
    "import_tags",
    "parse",
]

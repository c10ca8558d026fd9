"""Bulk imports of event history (``POST /v1/imports``).

The request body is the file itself (not a multipart form), up to 50 MB: CSV/TSV
(``text/csv``, ``text/tab-separated-values``, ``text/plain``), JSON lines
(``application/x-ndjson``), JSON (``application/json``: an array or lines) or Parquet
(``application/vnd.apache.parquet``). It is read exactly as ``rfmflow import FILE`` reads a
file (:mod:`rfmflow.service.imports`); query parameters carry the same options. The answer
is the import's report, with the first 100 rejected rows inline.

Role: ``admin`` or ``ingest`` (it writes events).
"""

from __future__ import annotations

import csv
import logging
import tempfile
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from rfmflow.core.errors import InputError, RejectedRowError, RfmflowError
from rfmflow.service.app import ServiceDep, ServiceState, require
from rfmflow.service.auth import ApiKey
from rfmflow.service.imports import MAX_UPLOAD_BYTES, SOURCE, ImportReport, import_events, reading_options

log = logging.getLogger("rfmflow.service.imports")

MAX_REJECTS_SHOWN = 100
SUFFIXES = {
    "text/csv": ".csv",
    "application/csv": ".csv",
    "text/tab-separated-values": ".tsv",
    "text/plain": ".txt",
    "application/x-ndjson": ".jsonl",
    "application/ndjson": ".jsonl",
    "application/jsonl": ".jsonl",
    "application/json-lines": ".jsonl",
    "application/json": ".json",
    "application/vnd.apache.parquet": ".parquet",
    "application/x-parquet": ".parquet",
}


def _suffix(content_type: str | None) -> str | None:
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return SUFFIXES.get(kind)


class _TooLarge(Exception):
    pass


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.0f} KB"


async def _save_body(request: Request, path: Path) -> int:
    """Stream the body to ``path``; raise :class:`_TooLarge` past the limit (nothing kept)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise _TooLarge(f"the file is {_size(int(declared))}")
    size = 0
    with path.open("wb") as fh:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise _TooLarge(f"the file is over {_size(MAX_UPLOAD_BYTES)}")
            fh.write(chunk)
    return size


def _rejects_from_file(path: Path, limit: int) -> list[dict[str, Any]]:
    """The first rejects written by a failed import (the file's label column kept)."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None) or ["line", "reason", "raw"]
        out: list[dict[str, Any]] = []
        for row in reader:
            if len(out) >= limit:
                break
            if len(row) == 3:
                out.append({header[0]: int(row[0]), "reason": row[1], "raw": row[2]})
        return out


def _shown(err: Exception, path: Path, display: str) -> str:
    """The error's message with the server's temporary paths replaced by what the client knows."""
    text = str(err).replace(str(path.parent / "rejects.csv"), "rejects")
    return text.replace(str(path), display)


def _count(svc: ServiceState, report: ImportReport) -> None:
    metrics = svc.metrics
    if report.accepted:
        metrics.ingested.labels(SOURCE).inc(report.accepted)
    if report.duplicates:
        metrics.duplicates.labels(SOURCE).inc(report.duplicates)
    if report.rejected:
        metrics.reject("file_row", source=SOURCE, count=report.rejected)


def register(app: FastAPI) -> None:
    """Add ``POST /v1/imports`` to ``app``."""

    @app.post(
        "/v1/imports",
        tags=["events"],
        summary="Import event history from a file (CSV, JSON lines or Parquet, up to 50 MB)",
        description=(
            "The body is the file itself; its `Content-Type` says the format: `text/csv` (any "
            "delimiter, sniffed), `application/x-ndjson` (JSON lines), `application/json`, "
            "`application/vnd.apache.parquet`. It is read as `rfmflow score` and `rfmflow import` read "
            "files: columns detected by name or mapped with `*_col`, dates in any common format (zone: "
            "`tz`, default the business time zone), amounts with `decimal_comma`. Rows that cannot be "
            "read are answered in `rejects` (line, reason, raw; the first 100) and not written. Event ids "
            "come from an `event_id`/`id` column or are derived from each row's content, so sending the "
            "same file again answers its rows as `duplicates`. Events are stored in transactions of "
            "10,000; with `strict=true` the first bad row fails the request (422) and nothing is "
            "written. Role: admin or ingest."
        ),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    kind: {"schema": {"type": "string", "format": "binary"}}
                    for kind in (
                        "text/csv",
                        "application/x-ndjson",
                        "application/json",
                        "application/vnd.apache.parquet",
                    )
                },
            }
        },
        responses={
            200: {
                "description": "the import's report: rows_read, accepted, duplicates, rejected, rejects, ..."
            },
            401: {"description": "missing or unknown API key"},
            403: {"description": "the key's role may not write events"},
            413: {"description": "the file is larger than 50 MB"},
            415: {"description": "a Content-Type that is not CSV, JSON lines, JSON or Parquet"},
            422: {
                "description": "the file cannot be used (no valid rows, unknown columns; strict: a bad row)"
            },
        },
    )
    async def post_import(
        request: Request,
        svc: ServiceDep,
        _key: Annotated[ApiKey, Depends(require("events:write"))],
        strict: Annotated[bool, Query(description="fail on the first bad row; write nothing")] = False,
        tz: Annotated[
            str | None, Query(description="zone of dates without one (default: the business zone)")
        ] = None,
        event_type: Annotated[list[str] | None, Query(description="import only these event types")] = None,
        customer_col: str | None = None,
        date_col: str | None = None,
        amount_col: str | None = None,
        price_col: str | None = None,
        quantity_col: str | None = None,
        type_col: str | None = None,
        order_col: str | None = None,
        currency_col: str | None = None,
        id_col: Annotated[str | None, Query(description="column of unique event ids")] = None,
        delimiter: str | None = None,
        header: bool = True,
        columns: Annotated[str | None, Query(description="comma-separated column names")] = None,
        date_format: Annotated[str | None, Query(description="strptime format, e.g. %d/%m/%Y")] = None,
        decimal_comma: bool = False,
        encoding: str = "utf-8",
        name: Annotated[str | None, Query(description="the file's name, for messages")] = None,
    ) -> JSONResponse:
        suffix = _suffix(request.headers.get("content-type"))
        if suffix is None:
            return JSONResponse(
                {
                    "detail": f"unsupported Content-Type {request.headers.get('content-type')!r}; send "
                    "text/csv, application/x-ndjson, application/json or application/vnd.apache.parquet"
                },
                status_code=415,
            )
        if tz is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError):
                return JSONResponse(
                    {
                        "detail": [
                            {
                                "loc": ["query", "tz"],
                                "msg": f"unknown time zone {tz!r}",
                                "type": "value_error",
                            }
                        ]
                    },
                    status_code=422,
                )
        roles = {
            "customer": customer_col,
            "date": date_col,
            "amount": amount_col,
            "price": price_col,
            "quantity": quantity_col,
            "type": type_col,
            "order": order_col,
            "currency": currency_col,
        }
        options = reading_options(
            svc.settings,
            timezone=tz,
            event_types=[t.strip() for value in event_type or [] for t in value.split(",") if t.strip()]
            or None,
            columns={role: col for role, col in roles.items() if col},
            delimiter=delimiter,
            header=header,
            column_names=[c.strip() for c in columns.split(",")] if columns else None,
            date_format=date_format,
            decimal_comma=decimal_comma,
            encoding=encoding,
            strict=strict,
        )
        stem = Path(name).stem if name and Path(name).stem else "upload"
        display = name or f"upload{suffix}"
        with tempfile.TemporaryDirectory(prefix="rfmflow-import-") as tmp:
            path = Path(tmp) / f"{stem}{suffix}"
            rejects_path = Path(tmp) / "rejects.csv"
            try:
                size = await _save_body(request, path)
            except _TooLarge as err:
                svc.metrics.reject("size", source=SOURCE)
                return JSONResponse(
                    {
                        "detail": f"{err}; the limit is {_size(MAX_UPLOAD_BYTES)}: "
                        "split it, or use `rfmflow import`"
                    },
                    status_code=413,
                )
            if size == 0:
                return JSONResponse(
                    {"detail": "the body is empty: send the file as the body"}, status_code=422
                )
            try:
                report = await run_in_threadpool(
                    import_events,
                    svc.engine,
                    path,
                    svc.settings,
                    options,
                    id_column=id_col,
                    rejects_path=rejects_path,
                    trigger="api",
                )
            except RejectedRowError as err:
                return JSONResponse(
                    {
                        "detail": _shown(err, path, display),
                        "line": err.line,
                        "reason": err.reason,
                        "written": 0,
                    },
                    status_code=422,
                )
            except RfmflowError as err:
                body: dict[str, Any] = {"detail": _shown(err, path, display)}
                if isinstance(err, InputError):
                    body["rejects"] = _rejects_from_file(rejects_path, MAX_REJECTS_SHOWN)
                return JSONResponse(body, status_code=422)
            except sa.exc.SQLAlchemyError as err:
                log.error("import failed: database error", extra={"error": str(err).splitlines()[0]})
                return JSONResponse(
                    {
                        "detail": "the database is unavailable; send the same file again "
                        "(nothing is counted twice)"
                    },
                    status_code=503,
                    headers={"Retry-After": "1"},
                )
        _count(svc, report)
        request.state.ingest = {
            "accepted": report.accepted,
            "duplicates": report.duplicates,
            "rejected": report.rejected,
        }
        body = report.as_dict(max_rejects=MAX_REJECTS_SHOWN)
        body["source"] = display
        body["rejects_path"] = None
        return JSONResponse(body)

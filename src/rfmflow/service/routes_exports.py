"""Exports over HTTP: any list as CSV (streamed) or Parquet, under ``/v1/exports/``.

One convention for every list: ``GET /v1/exports/<list>?format=csv|parquet`` with the list's
own filters, answered as a download (``Content-Disposition: attachment``). Role: a key that
may export (admin, analyst). CSV is streamed as it is read (a million rows never sit in
memory); Parquet is written in row groups to a temporary file, then streamed and deleted.

============================================  ==================================================
endpoint                                      rows
============================================  ==================================================
``/v1/exports/customers``                     the customer list (``GET /v1/customers``'s filters
                                              and sort), every match
``/v1/exports/segments/{name}/customers``     one segment's customers (same filters)
``/v1/exports/transitions``                   the segment moves between two days
``/v1/exports/runs``                          the scoring runs
``/v1/exports/snapshots``                     per run (or day) and segment: the snapshot
============================================  ==================================================
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from rfmflow.service.app import ServiceDep, ServiceState, require
from rfmflow.service.auth import ApiKey
from rfmflow.service.customer_search import (
    CustomerFilter,
    SearchError,
    check_segments,
    iter_customers,
    money_scheme,
)
from rfmflow.service.exports import (
    MEDIA_TYPES,
    MOVES,
    RUNS,
    SNAPSHOTS,
    Column,
    csv_chunks,
    customer_columns,
    parquet_tempfile,
)
from rfmflow.service.history import iter_moves, run_rows, snapshot_rows
from rfmflow.service.routes_customers import FilterDep, OrderParam, SortParam, unprocessable
from rfmflow.service.routes_history import MoveFilterDep, Per, SnapshotRange
from rfmflow.service.settings import Settings

Exporter = Annotated[ApiKey, Depends(require("data:export"))]
FormatParam = Annotated[
    Literal["csv", "parquet"], Query(alias="format", description="csv (streamed) or parquet")
]
Rows = Callable[[Connection], Iterator[Mapping[str, Any]]]


def _filename(name: str, fmt: str) -> str:
    """``rfmflow-<name>-<UTC time>.<fmt>``, the name reduced to letters, digits, ``.``, ``_``, ``-``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "list"
    return f"rfmflow-{safe}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.{fmt}"


def _download(
    svc: ServiceState, name: str, fmt: str, columns: Sequence[Column], rows: Rows, settings: Settings
) -> Response:
    """The answer: CSV streamed from a connection held while it lasts, or a Parquet file."""
    headers = {"Content-Disposition": f'attachment; filename="{_filename(name, fmt)}"'}
    if fmt == "csv":

        def stream() -> Iterator[bytes]:
            with svc.engine.connect() as conn:
                yield from csv_chunks(columns, rows(conn))

        return StreamingResponse(stream(), media_type=MEDIA_TYPES["csv"], headers=headers)

    def write() -> str:
        with svc.engine.connect() as conn:
            return str(parquet_tempfile(columns, rows(conn), money_decimals=settings.money_decimals))

    return ParquetDownload(write, headers)


class ParquetDownload(Response):
    """Writes the Parquet file in a worker thread when the answer is sent, then streams it
    and deletes it."""

    def __init__(self, write: Callable[[], str], headers: dict[str, str]) -> None:
        super().__init__(media_type=MEDIA_TYPES["parquet"])
        self.write = write
        self.extra_headers = headers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = await run_in_threadpool(self.write)
        try:
            await FileResponse(path, media_type=MEDIA_TYPES["parquet"], headers=self.extra_headers)(
                scope, receive, send
            )
        finally:  # also when the client goes away mid-download
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _customers(svc: ServiceState, f: CustomerFilter, sort: str, order: str, fmt: str, name: str) -> Response:
    try:
        with svc.engine.connect() as conn:
            check_segments(conn, f.segments)
            money = money_scheme(conn)
    except SearchError as err:
        raise unprocessable(err) from None
    settings = svc.settings

    def rows(conn: Connection) -> Iterator[Mapping[str, Any]]:
        return iter_customers(conn, settings, f, sort=sort, order=order)

    return _download(svc, name, fmt, customer_columns(money=money), rows, settings)


def register(app: FastAPI) -> None:
    """Add this module's routes to ``app``."""

    @app.get(
        "/v1/exports/customers",
        tags=["exports"],
        summary="Export the customer list (filters and sort of GET /v1/customers) as CSV or Parquet",
        description=(
            "Every customer the filters select, in the list's order and with its columns (tags joined by `;` "
            "in CSV, a list in Parquet; money as decimals). Role: admin or analyst."
        ),
        response_class=Response,
    )
    def export_customers(
        svc: ServiceDep,
        _key: Exporter,
        f: FilterDep,
        sort: SortParam = "customer_id",
        order: OrderParam = "asc",
        fmt: FormatParam = "csv",
    ) -> Response:
        return _customers(svc, f, sort, order, fmt, "customers")

    @app.get(
        "/v1/exports/segments/{name}/customers",
        tags=["exports"],
        summary="Export one segment's customers as CSV or Parquet (role: admin or analyst)",
        response_class=Response,
    )
    def export_segment(
        svc: ServiceDep,
        _key: Exporter,
        name: Annotated[str, Path(min_length=1, max_length=64)],
        f: FilterDep,
        sort: SortParam = "customer_id",
        order: OrderParam = "asc",
        fmt: FormatParam = "csv",
    ) -> Response:
        if f.segments:
            raise HTTPException(
                422,
                [
                    {
                        "loc": ["query", "segment"],
                        "msg": "the path names the segment here",
                        "type": "value_error",
                    }
                ],
            )
        try:
            with svc.engine.connect() as conn:
                check_segments(conn, [name])
        except SearchError as err:
            raise HTTPException(404, err.problems[0][1]) from None
        narrowed = dataclasses.replace(f, segments=(name,))
        return _customers(svc, narrowed, sort, order, fmt, f"segment-{name}")

    @app.get(
        "/v1/exports/transitions",
        tags=["exports"],
        summary="Export the segment moves between two days as CSV or Parquet (role: admin or analyst)",
        response_class=Response,
    )
    def export_moves(svc: ServiceDep, _key: Exporter, f: MoveFilterDep, fmt: FormatParam = "csv") -> Response:
        return _download(svc, "transitions", fmt, MOVES, lambda conn: iter_moves(conn, f), svc.settings)

    @app.get(
        "/v1/exports/runs",
        tags=["exports"],
        summary="Export the scoring runs as CSV or Parquet (role: admin or analyst)",
        response_class=Response,
    )
    def export_runs(
        svc: ServiceDep, _key: Exporter, days: SnapshotRange, fmt: FormatParam = "csv"
    ) -> Response:
        return _download(
            svc,
            "runs",
            fmt,
            RUNS,
            lambda conn: run_rows(conn, from_day=days[0], to_day=days[1]),
            svc.settings,
        )

    @app.get(
        "/v1/exports/snapshots",
        tags=["exports"],
        summary="Export the snapshots, one row per run (or day) and segment, as CSV or Parquet",
        response_class=Response,
    )
    def export_snapshots(
        svc: ServiceDep,
        _key: Exporter,
        days: SnapshotRange,
        segment: Annotated[list[str] | None, Query(description="only these segments (repeat)")] = None,
        per: Per = "day",
        fmt: FormatParam = "csv",
    ) -> Response:
        settings = svc.settings

        def rows(conn: Connection) -> Iterator[Mapping[str, Any]]:
            return snapshot_rows(
                conn, settings, from_day=days[0], to_day=days[1], segments=tuple(segment or ()), per=per
            )

        return _download(svc, "snapshots", fmt, SNAPSHOTS, rows, settings)


__all__ = ["register"]

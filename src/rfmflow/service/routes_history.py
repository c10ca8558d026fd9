"""Segments over time over HTTP: snapshots per run or day, and the list of segment moves.

=================================================  ===============  ====================================
endpoint                                           roles            what
=================================================  ===============  ====================================
``GET /v1/snapshots?from=&to=&segment=&per=``      admin, analyst   per day (or run): customers, shares,
                                                                    revenue, revenue shares, means
``GET /v1/transitions/moves?from=&to=&...``        admin, analyst   the moves between two days, paged
=================================================  ===============  ====================================
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query

from rfmflow.service.app import ServiceDep, require
from rfmflow.service.auth import ApiKey
from rfmflow.service.customer_search import SearchError
from rfmflow.service.history import MoveFilter, day_number, list_snapshots, move_json, moves_page
from rfmflow.service.run_summary import move_flows
from rfmflow.service.scoring_live import business_day, day_date
from rfmflow.service.settings import Settings

DataReader = Annotated[ApiKey, Depends(require("data:read"))]
DEFAULT_MOVE_DAYS = 30


def _bad(param: str, msg: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["query", param], "msg": msg, "type": "value_error"}])


def snapshot_range(
    from_: Annotated[
        date | None, Query(alias="from", description="first as-of day (default: the first run)")
    ] = None,
    to: Annotated[date | None, Query(description="last as-of day (default: the latest run)")] = None,
) -> tuple[int | None, int | None]:
    if from_ is not None and to is not None and from_ > to:
        raise _bad("from", "must not be after 'to'")
    return (day_number(from_) if from_ else None, day_number(to) if to else None)


SnapshotRange = Annotated[tuple[int | None, int | None], Depends(snapshot_range)]
Per = Annotated[
    Literal["day", "run"], Query(description="day: the last run of each as-of day; run: every run")
]
Segments = Annotated[list[str] | None, Query(description="only these segments (repeat)")]


def _today(settings: Settings) -> int:
    return business_day(datetime.now(UTC), settings)


def move_filter(
    svc: ServiceDep,
    from_: Annotated[
        date | None, Query(alias="from", description="moves after this day; default: 30 days before `to`")
    ] = None,
    to: Annotated[
        date | None, Query(description="moves up to this day; default: today (business time zone)")
    ] = None,
    from_segment: Annotated[
        list[str] | None, Query(description="moved out of (repeat; `(none)`: first scored)")
    ] = None,
    to_segment: Annotated[list[str] | None, Query(description="moved into (repeat)")] = None,
    cause: Annotated[list[str] | None, Query(description="run, event or scheme (repeat)")] = None,
    customer_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
) -> MoveFilter:
    end = day_number(to) if to is not None else _today(svc.settings)
    start = day_number(from_) if from_ is not None else end - DEFAULT_MOVE_DAYS
    found = MoveFilter(
        start,
        end,
        from_segments=tuple(from_segment or ()),
        to_segments=tuple(to_segment or ()),
        causes=tuple(cause or ()),
        customer_id=customer_id,
    )
    problems = found.problems()
    if problems:
        raise HTTPException(422, SearchError(problems).details())
    return found


MoveFilterDep = Annotated[MoveFilter, Depends(move_filter)]


def register(app: FastAPI) -> None:
    """Add this module's routes to ``app``."""

    @app.get(
        "/v1/snapshots",
        tags=["segments"],
        summary="Segments over time: one snapshot per day or per run (role: admin or analyst)",
        description=(
            "Oldest first. Each snapshot: run id, as-of day, scheme version, customers and revenue, and per "
            "segment customers, share, revenue, revenue share, mean recency and mean frequency as the run "
            "recorded them. Runs made before schema revision 0003 recorded counts only: their revenue and "
            "means are null."
        ),
    )
    def get_snapshots(
        svc: ServiceDep,
        _key: DataReader,
        days: SnapshotRange,
        segment: Segments = None,
        per: Per = "day",
    ) -> dict[str, Any]:
        with svc.engine.connect() as conn:
            found = list_snapshots(
                conn, svc.settings, from_day=days[0], to_day=days[1], segments=tuple(segment or ()), per=per
            )
        return {"per": per, "currency": svc.settings.currency, "snapshots": found}

    @app.get(
        "/v1/transitions/moves",
        tags=["segments"],
        summary="The segment moves between two days, oldest first, with a cursor (role: admin or analyst)",
        description=(
            "Moves seen after `from` up to `to` (the days the matrix of `GET /v1/transitions` compares), in "
            "(day, id) order. Pass `next_cursor` back as `cursor` with the same filters."
        ),
    )
    def get_moves(
        svc: ServiceDep,
        _key: DataReader,
        f: MoveFilterDep,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    ) -> dict[str, Any]:
        try:
            with svc.engine.connect() as conn:
                items, nxt = moves_page(conn, f, limit=limit, cursor=cursor)
        except SearchError as err:
            raise HTTPException(422, err.details()) from None
        return {
            "from": day_date(f.from_day).isoformat(),
            "to": day_date(f.to_day).isoformat(),
            "items": [move_json(m) for m in items],
            "next_cursor": nxt,
        }

    @app.get(
        "/v1/transitions/flows",
        tags=["segments"],
        summary="The segment moves between two days counted per from→to segment (role: admin or analyst)",
        description=(
            "The moves `GET /v1/transitions/moves` lists for `from`/`to`, counted per segment left "
            "(`(none)`: first scored) and segment entered, and per cause: what the dashboard's matrix shows. "
            "Read from the scoring runs' summaries, not from every move."
        ),
    )
    def get_flows(svc: ServiceDep, _key: DataReader, f: MoveFilterDep) -> dict[str, Any]:
        if f.from_segments or f.to_segments or f.causes or f.customer_id is not None:
            raise _bad("from_segment", "flows take only from and to; list the moves for the other filters")
        with svc.engine.connect() as conn:
            return move_flows(conn, f.from_day, f.to_day)


__all__ = ["MoveFilterDep", "Per", "SnapshotRange", "move_filter", "register", "snapshot_range"]

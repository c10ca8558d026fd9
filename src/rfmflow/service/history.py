"""Segments over time: snapshots per scoring run, the list of segment moves, the runs.

A **snapshot** is what a run recorded about each segment when it finished
(``scoring_runs.segment_stats``, since revision 0003): customers, revenue (net purchases of
all time, minor units), mean recency and mean frequency. Runs made before 0003 kept only the
counts (``segment_counts``); their snapshots have customers and shares, and empty revenue and
means. Shares are of the run's customers; revenue shares of the positive revenue.

``per="day"`` keeps the last run of each as-of day (a scheme change and the daily run on one
day give one point), ``per="run"`` every run.

A **move** is a row of ``segment_transitions``: a customer seen in another segment than the
stored one by a run, a live re-score (``event``) or a scheme change, with the business day.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.service.customer_search import SearchError
from rfmflow.service.db.tables import CAUSES, scoring_runs, segment_transitions
from rfmflow.service.scoring_live import EPOCH_ORDINAL, day_date
from rfmflow.service.settings import Settings

NO_PREVIOUS = "(none)"
"""``from_segment`` of a customer's first move (they were not scored before)."""

SNAPSHOT_COLUMNS = (
    "run_id",
    "as_of",
    "scheme_version",
    "segment",
    "customers",
    "share",
    "revenue",
    "revenue_share",
    "mean_recency_days",
    "mean_frequency",
)
MOVE_COLUMNS = (
    "id",
    "customer_id",
    "from_segment",
    "to_segment",
    "date",
    "at",
    "cause",
    "run_id",
    "scheme_version",
)
RUN_COLUMNS = (
    "id",
    "as_of",
    "scheme_version",
    "trigger",
    "actor",
    "started_at",
    "finished_at",
    "duration_ms",
    "customers",
    "moves",
)


def day_number(value: date) -> int:
    return value.toordinal() - EPOCH_ORDINAL


def _money(minor: int | None, decimals: int) -> Decimal | None:
    return None if minor is None else Decimal(int(minor)).scaleb(-decimals)


# --- snapshots -----------------------------------------------------------------------------------
def _run_rows(
    conn: Connection, from_day: int | None, to_day: int | None, per: str
) -> list[Mapping[Any, Any]]:
    r = scoring_runs.c
    query = sa.select(
        r.id, r.as_of_day, r.scheme_version, r.finished_at, r.segment_counts, r.segment_stats
    ).where(r.finished_at.is_not(None))
    if from_day is not None:
        query = query.where(r.as_of_day >= from_day)
    if to_day is not None:
        query = query.where(r.as_of_day <= to_day)
    rows: list[Mapping[Any, Any]] = list(conn.execute(query.order_by(r.as_of_day, r.id)).mappings())
    if per == "day":
        last: dict[int, Mapping[Any, Any]] = {}
        for row in rows:
            last[int(row["as_of_day"])] = row
        rows = list(last.values())
    return rows


def _segments(row: Mapping[Any, Any]) -> list[tuple[str, dict[str, Any]]]:
    if row["segment_stats"]:
        return [(str(name), dict(stats)) for name, stats in row["segment_stats"]]
    return [
        (
            str(name),
            {"customers": int(n), "revenue_minor": None, "mean_recency_days": None, "mean_frequency": None},
        )
        for name, n in row["segment_counts"] or []
    ]


def snapshots(
    conn: Connection,
    settings: Settings,
    *,
    from_day: int | None = None,
    to_day: int | None = None,
    segments: Sequence[str] = (),
    per: str = "day",
) -> list[dict[str, Any]]:
    """One snapshot per run (or per as-of day), oldest first, with typed values: ``as_of`` a
    date, revenue a ``Decimal`` (None before revision 0003). ``segments`` limits the segments
    listed (shares stay shares of all the run's customers)."""
    if per not in ("day", "run"):
        raise ValueError(f"per must be 'day' or 'run', not {per!r}")
    wanted = set(segments)
    out = []
    for row in _run_rows(conn, from_day, to_day, per):
        parts = _segments(row)
        total = sum(int(s["customers"]) for _, s in parts)
        known = [s["revenue_minor"] for _, s in parts if s["revenue_minor"] is not None]
        positive = sum(max(int(v), 0) for v in known)
        revenue = sum(int(v) for v in known) if known else None
        listed = []
        for name, s in parts:
            if wanted and name not in wanted:
                continue
            minor = s["revenue_minor"]
            listed.append(
                {
                    "segment": name,
                    "customers": int(s["customers"]),
                    "share": int(s["customers"]) / total if total else 0.0,
                    "revenue": _money(minor, settings.money_decimals),
                    "revenue_minor": minor,
                    "revenue_share": None
                    if minor is None
                    else (max(int(minor), 0) / positive if positive else 0.0),
                    "mean_recency_days": s["mean_recency_days"],
                    "mean_frequency": s["mean_frequency"],
                }
            )
        out.append(
            {
                "run_id": int(row["id"]),
                "as_of": day_date(int(row["as_of_day"])),
                "scheme_version": int(row["scheme_version"]),
                "finished_at": row["finished_at"],
                "customers": total,
                "revenue": _money(revenue, settings.money_decimals),
                "revenue_minor": revenue,
                "segments": listed,
            }
        )
    return out


def list_snapshots(conn: Connection, settings: Settings, **kwargs: Any) -> list[dict[str, Any]]:
    """:func:`snapshots` for JSON: ISO dates, decimal strings."""
    return [_snapshot_json(s) for s in snapshots(conn, settings, **kwargs)]


def _snapshot_json(snap: Mapping[str, Any]) -> dict[str, Any]:
    def money(value: Decimal | None) -> str | None:
        return None if value is None else format(value, "f")

    return {
        **snap,
        "as_of": snap["as_of"].isoformat(),
        "finished_at": snap["finished_at"].isoformat(),
        "revenue": money(snap["revenue"]),
        "segments": [{**s, "revenue": money(s["revenue"])} for s in snap["segments"]],
    }


def snapshot_rows(conn: Connection, settings: Settings, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """:func:`snapshots` flattened: one row per run and segment (the export's rows)."""
    for snap in snapshots(conn, settings, **kwargs):
        for s in snap["segments"]:
            yield {
                "run_id": snap["run_id"],
                "as_of": snap["as_of"],
                "scheme_version": snap["scheme_version"],
                **{k: s[k] for k in SNAPSHOT_COLUMNS[3:]},
            }


# --- runs ----------------------------------------------------------------------------------------
def run_rows(
    conn: Connection, *, from_day: int | None = None, to_day: int | None = None
) -> Iterator[dict[str, Any]]:
    """Finished runs, oldest first, one flat row each (the export's rows)."""
    r = scoring_runs.c
    query = sa.select(
        r.id,
        r.as_of_day,
        r.scheme_version,
        r.trigger,
        r.actor,
        r.started_at,
        r.finished_at,
        r.duration_ms,
        r.customers,
        r.moves,
    ).where(r.finished_at.is_not(None))
    if from_day is not None:
        query = query.where(r.as_of_day >= from_day)
    if to_day is not None:
        query = query.where(r.as_of_day <= to_day)
    for row in conn.execute(query.order_by(r.id)).mappings():
        out = dict(row)
        out["as_of"] = day_date(out.pop("as_of_day"))
        yield {name: out[name] for name in RUN_COLUMNS}


# --- moves ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MoveFilter:
    """Moves seen after ``from_day`` up to ``to_day`` (as the matrix counts them)."""

    from_day: int
    to_day: int
    from_segments: tuple[str, ...] = ()
    to_segments: tuple[str, ...] = ()
    causes: tuple[str, ...] = ()
    customer_id: str | None = None

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.from_day > self.to_day:
            out.append(("from", "must not be after 'to'"))
        unknown = sorted(set(self.causes) - set(CAUSES))
        if unknown:
            out.append(("cause", f"unknown cause {unknown[0]!r}; one of: {', '.join(CAUSES)}"))
        return out


def _move_conditions(f: MoveFilter) -> list[sa.ColumnElement[bool]]:
    t = segment_transitions.c
    out: list[sa.ColumnElement[bool]] = [t.day > f.from_day, t.day <= f.to_day]
    if f.from_segments:
        named = [s for s in f.from_segments if s != NO_PREVIOUS]
        either = [t.from_segment.in_(named)] if named else []
        if NO_PREVIOUS in f.from_segments:
            either.append(t.from_segment.is_(None))
        out.append(sa.or_(*either))
    if f.to_segments:
        out.append(t.to_segment.in_(f.to_segments))
    if f.causes:
        out.append(t.cause.in_(f.causes))
    if f.customer_id is not None:
        out.append(t.customer_id == f.customer_id)
    return out


def _move(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        "id": int(row["id"]),
        "customer_id": row["customer_id"],
        "from_segment": row["from_segment"] if row["from_segment"] is not None else NO_PREVIOUS,
        "to_segment": row["to_segment"],
        "date": day_date(int(row["day"])),
        "at": row["at"],
        "cause": row["cause"],
        "run_id": row["run_id"],
        "scheme_version": row["scheme_version"],
    }


def _move_select() -> sa.Select[Any]:
    t = segment_transitions.c
    return sa.select(
        t.id, t.customer_id, t.from_segment, t.to_segment, t.day, t.at, t.cause, t.run_id, t.scheme_version
    )


def encode_move_cursor(day: int, move_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([day, move_id]).encode()).decode("ascii").rstrip("=")


def decode_move_cursor(text: str) -> tuple[int, int]:
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        data = json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        data = None
    if not (isinstance(data, list) and len(data) == 2 and all(type(v) is int for v in data)):
        raise SearchError([("cursor", "not a cursor this API returned")])
    return data[0], data[1]


def moves_page(
    conn: Connection, f: MoveFilter, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of moves in (day, id) order, and the cursor of the next page."""
    problems = f.problems()
    if problems:
        raise SearchError(problems)
    t = segment_transitions.c
    query = _move_select().where(*_move_conditions(f))
    if cursor:
        day, move_id = decode_move_cursor(cursor)
        query = query.where(sa.tuple_(t.day, t.id) > sa.tuple_(sa.literal(day), sa.literal(move_id)))
    rows = list(conn.execute(query.order_by(t.day, t.id).limit(limit + 1)).mappings())
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_move_cursor(int(rows[-1]["day"]), int(rows[-1]["id"])) if more and rows else None
    return [_move(r) for r in rows], nxt


def iter_moves(conn: Connection, f: MoveFilter, *, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """Every move ``f`` selects, in (day, id) order, streamed."""
    problems = f.problems()
    if problems:
        raise SearchError(problems)
    t = segment_transitions.c
    query = _move_select().where(*_move_conditions(f)).order_by(t.day, t.id)
    for row in conn.execute(query.execution_options(stream_results=True, yield_per=batch)).mappings():
        yield _move(row)


def count_moves(conn: Connection, f: MoveFilter) -> int:
    problems = f.problems()
    if problems:
        raise SearchError(problems)
    query = sa.select(sa.func.count()).select_from(segment_transitions).where(*_move_conditions(f))
    return int(conn.execute(query).scalar_one())


def move_json(move: Mapping[str, Any]) -> dict[str, Any]:
    return {**move, "date": move["date"].isoformat(), "at": move["at"].isoformat()}


__all__ = [
    "MOVE_COLUMNS",
    "NO_PREVIOUS",
    "RUN_COLUMNS",
    "SNAPSHOT_COLUMNS",
    "MoveFilter",
    "count_moves",
    "day_number",
    "iter_moves",
    "list_snapshots",
    "move_json",
    "moves_page",
    "run_rows",
    "snapshot_rows",
    "snapshots",
]

"""What a scoring run keeps for the overview, so a page view reads a few rows instead of 1M.

Each run stores, next to its bands (``scoring_runs.bands["summary"]``):

- ``grid``: customers and revenue (net purchases, all time, minor units) per R score, F score
  and segment of the scores the run left: the R×F heat map;
- ``moves_through``: the highest ``segment_transitions.id`` when the run finished;
- ``flows``: the moves recorded since the previous run's ``moves_through`` (the run's own and
  the live re-scores in between), counted per business day, cause, from- and to-segment:
  ``[day, cause, from_segment (None: first scored), to_segment, count]``. The first run that
  stores a summary counts every move before it, so the flows of the runs cover every move.

Read side:

- :func:`segments_now`: the newest run's segment counts plus the moves recorded since it
  (exact counts and shares: every change of a customer's segment is a move); revenue and the
  means are the run's (they change with every purchase, and the values a live re-score
  replaced are not kept, so they cannot be adjusted without scanning every score);
- :func:`grid_now`: the newest run's R×F grid;
- :func:`move_flows`: the moves recorded in a period, counted per from→to segment, from the
  runs' flows plus the moves since the newest run (exactly what counting the rows of
  ``segment_transitions`` in the period gives).

Without a run that stored a summary (runs before this existed) each falls back to the direct
query over every score or move.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.service.db.tables import customer_scores, customers, scoring_runs, segment_transitions
from rfmflow.service.scoring_live import day_date

KEY = "summary"
NONE_SEGMENT = "(none)"
"""The from-segment of a customer's first move (not scored before)."""


@dataclass(frozen=True)
class Snapshot:
    """The newest finished run's summary."""

    run_id: int
    as_of_day: int
    moves_through: int
    grid: list[list[Any]]
    segment_stats: list[list[Any]]


def _max_move_id(conn: Connection) -> int:
    return int(
        conn.execute(sa.select(sa.func.coalesce(sa.func.max(segment_transitions.c.id), 0))).scalar_one()
    )


def previous_through(conn: Connection, run_id: int) -> int:
    """``moves_through`` of the newest run before ``run_id`` that stored a summary (0: none)."""
    r = scoring_runs.c
    rows = conn.execute(
        sa.select(r.bands[KEY]["moves_through"])
        .where(r.id < run_id, r.finished_at.is_not(None))
        .order_by(r.id.desc())
        .limit(50)
    ).scalars()
    for value in rows:
        if value is not None:
            return int(value)
    return 0


def grid_rows(conn: Connection) -> list[list[Any]]:
    """``[r_score, f_score, segment, customers, revenue_minor]`` of the scores stored now
    (revenue: net purchases of all time)."""
    cs = customer_scores.c
    grid = conn.execute(
        sa.select(
            cs.r_score,
            cs.f_score,
            cs.segment,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(customers.c.monetary_minor), 0),
        )
        .select_from(customer_scores.outerjoin(customers, customers.c.customer_id == cs.customer_id))
        .group_by(cs.r_score, cs.f_score, cs.segment)
    ).all()
    return [[int(r), int(f), str(seg), int(n), int(rev)] for r, f, seg, n, rev in grid]


def compute(conn: Connection, since: int) -> dict[str, Any]:
    """The summary of the scores stored now and of the moves with an id above ``since``."""
    grid = grid_rows(conn)
    through = _max_move_id(conn)
    return {
        "moves_through": through,
        "grid": grid,
        "flows": _flows(conn, since, through),
    }


def _flows(conn: Connection, above: int, through: int | None) -> list[list[Any]]:
    t = segment_transitions.c
    # ``day + 0``: SQLite would otherwise group along the index on day, a scan of every move,
    # instead of reading the id range
    day = (t.day + 0).label("day")
    query = sa.select(day, t.cause, t.from_segment, t.to_segment, sa.func.count()).where(t.id > above)
    if through is not None:
        query = query.where(t.id <= through)
    rows = conn.execute(query.group_by(day, t.cause, t.from_segment, t.to_segment)).all()
    return [[int(d), str(c), None if a is None else str(a), str(b), int(n)] for d, c, a, b, n in rows]


def with_summary(bands: Mapping[str, Any], summary: Mapping[str, Any]) -> dict[str, Any]:
    return {**bands, KEY: dict(summary)}


def newest(conn: Connection) -> Snapshot | None:
    """The newest finished run, if it stored a summary."""
    r = scoring_runs.c
    row = conn.execute(
        sa.select(r.id, r.as_of_day, r.bands[KEY], r.segment_stats)
        .where(r.finished_at.is_not(None))
        .order_by(r.id.desc())
        .limit(1)
    ).first()
    if row is None or not row[2] or not row[3]:
        return None
    summary = row[2]
    return Snapshot(int(row[0]), int(row[1]), int(summary["moves_through"]), summary["grid"], row[3])


def _moves_since(conn: Connection, through: int) -> dict[tuple[str | None, str], int]:
    t = segment_transitions.c
    rows = conn.execute(
        sa.select(t.from_segment, t.to_segment, sa.func.count())
        .where(t.id > through)
        .group_by(t.from_segment, t.to_segment)
    ).all()
    return {(a, str(b)): int(n) for a, b, n in rows}


def segment_counts_now(conn: Connection, snap: Snapshot) -> dict[str, int]:
    """The run's segment counts plus every move recorded since it."""
    counts = {str(name): int(stats["customers"]) for name, stats in snap.segment_stats}
    for (src, dst), n in _moves_since(conn, snap.moves_through).items():
        if src is not None:
            counts[src] = counts.get(src, 0) - n
        counts[dst] = counts.get(dst, 0) + n
    return counts


def move_flows(conn: Connection, from_day: int, to_day: int) -> dict[str, Any]:
    """Moves recorded after ``from_day`` up to ``to_day``, counted per from→to segment
    (``(none)``: first scored) and per cause."""
    snap = newest(conn)
    if snap is None:
        found = _flows(conn, 0, None)
    else:
        r = scoring_runs.c
        first = (
            sa.select(sa.func.min(r.id)).where(r.bands[KEY]["moves_through"].is_not(None)).scalar_subquery()
        )
        rows = conn.execute(
            sa.select(r.bands[KEY]["flows"]).where(
                r.finished_at.is_not(None), sa.or_(r.as_of_day >= from_day, r.id == first)
            )
        ).scalars()
        found = [f for flows in rows if flows for f in flows]
        found += _flows(conn, snap.moves_through, None)
    matrix: dict[str, dict[str, int]] = {}
    causes: dict[str, int] = {}
    for day, cause, src, dst, n in found:
        if not from_day < int(day) <= to_day:
            continue
        row = matrix.setdefault(NONE_SEGMENT if src is None else str(src), {})
        row[str(dst)] = row.get(str(dst), 0) + int(n)
        causes[str(cause)] = causes.get(str(cause), 0) + int(n)
    first_scored = sum(matrix.get(NONE_SEGMENT, {}).values())
    total = sum(causes.values())
    return {
        "from": day_date(from_day).isoformat(),
        "to": day_date(to_day).isoformat(),
        "moves": total,
        "changed": total - first_scored,
        "first_scored": first_scored,
        "moves_recorded": dict(sorted(causes.items())),
        "matrix": {k: dict(sorted(v.items())) for k, v in sorted(matrix.items())},
    }


__all__ = ["KEY", "Snapshot", "compute", "move_flows", "newest", "previous_through", "segment_counts_now"]

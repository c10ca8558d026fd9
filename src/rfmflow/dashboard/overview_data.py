"""The overview's numbers: the R×F grid, the customers behind a cell of the transition
matrix, and health warnings.

Segment sizes now, the trend (the runs' snapshots) and the transition matrix come from the
service's own read functions (:func:`rfmflow.service.scoring.segment_summary`,
:func:`rfmflow.service.history.snapshots`, :func:`rfmflow.service.scoring.transition_matrix`),
so the dashboard shows what ``GET /v1/segments``, ``GET /v1/snapshots`` and
``GET /v1/transitions`` answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection

from rfmflow.core.coverage import check_coverage
from rfmflow.core.scheme import Scheme
from rfmflow.service import run_summary
from rfmflow.service.db.tables import NO_SEGMENT
from rfmflow.service.scoring import segment_summary
from rfmflow.service.scoring_live import EPOCH_ORDINAL, day_date
from rfmflow.service.scoring_schemes import active_scheme
from rfmflow.service.settings import Settings

TOP_SHARE_LIMIT = 0.20
"""A segment the scheme marks ``top`` holding more than this share of customers is a warning."""
LARGEST_SHARE_LIMIT = 0.50
"""Any one segment holding more than this share of customers is a warning."""
STALE_DAYS = 2
"""The newest run older than this many days (as-of against today) is a warning."""
NONE_SEGMENT = "(none)"
"""The transition matrix's row for customers not yet scored on the first day."""


def day_number(value: date) -> int:
    return value.toordinal() - EPOCH_ORDINAL


@dataclass(frozen=True)
class GridCell:
    r: int
    f: int
    customers: int
    revenue_minor: int
    segments: list[tuple[str, int]]


def grid_cells(rows: Sequence[Sequence[Any]]) -> list[GridCell]:
    """``[r, f, segment, customers, revenue_minor]`` rows as the grid's cells (best R on top),
    with the segments in each cell."""
    cells: dict[tuple[int, int], GridCell] = {}
    for r, f, segment, n, revenue in rows:
        key = (int(r), int(f))
        cell = cells.get(key) or GridCell(key[0], key[1], 0, 0, [])
        cell.segments.append((str(segment), int(n)))
        cells[key] = GridCell(
            key[0], key[1], cell.customers + int(n), cell.revenue_minor + int(revenue), cell.segments
        )
    for cell in cells.values():
        cell.segments.sort(key=lambda s: (-s[1], s[0]))
    return sorted(cells.values(), key=lambda c: (-c.r, c.f))


def rf_grid(conn: Connection) -> list[GridCell]:
    """Customers and revenue (net purchases, all time) per R and F score of the stored scores,
    with the segments in each cell."""
    return grid_cells(run_summary.grid_rows(conn))


def snapshot_grid(snap: run_summary.Snapshot) -> list[GridCell]:
    """:func:`rf_grid` as the newest run left it (its summary)."""
    return grid_cells(snap.grid)


def segments_now(conn: Connection, settings: Settings) -> tuple[dict[str, Any], list[GridCell]]:
    """The overview's segments now and R×F grid, from the newest run's summary: segment counts
    and shares are the run's plus every move since (exact); revenue, revenue shares, the means
    and the grid are the run's. Without a summary (no run since it existed): the direct
    queries over every score (:func:`rfmflow.service.scoring.segment_summary`, :func:`rf_grid`)."""
    snap = run_summary.newest(conn)
    if snap is None:
        return segment_summary(conn, settings), rf_grid(conn)
    version = active_scheme(conn)
    counts = run_summary.segment_counts_now(conn, snap)
    stats = {str(name): dict(values) for name, values in snap.segment_stats}
    names = [s.name for s in version.scheme.segments]
    names += [n for n in sorted(set(counts) | set(stats)) if n not in names and counts.get(n, 0) > 0]
    total = sum(counts.get(n, 0) for n in names)
    revenue_total = sum(max(int(stats.get(n, {}).get("revenue_minor") or 0), 0) for n in names)
    meta = {s.name: s for s in version.scheme.segments}
    out = []
    for name in names:
        n = counts.get(name, 0)
        revenue = int(stats.get(name, {}).get("revenue_minor") or 0)
        rule = meta.get(name)
        out.append(
            {
                "name": name,
                "customers": n,
                "share": n / total if total else 0.0,
                "revenue": format(Decimal(revenue).scaleb(-settings.money_decimals), "f"),
                "revenue_minor": revenue,
                "revenue_share": max(revenue, 0) / revenue_total if revenue_total else 0.0,
                "mean_recency_days": stats.get(name, {}).get("mean_recency_days"),
                "mean_frequency": stats.get(name, {}).get("mean_frequency"),
                "top": bool(rule and rule.top),
                "description": rule.description if rule else "",
                "action": rule.action if rule else "",
            }
        )
    summary = {
        "scheme_version": version.version,
        "scheme": version.name,
        "customers": total,
        "currency": settings.currency,
        "segments": out,
        "run_id": snap.run_id,
        "run_as_of": day_date(snap.as_of_day).isoformat(),
    }
    return summary, snapshot_grid(snap)


@dataclass(frozen=True)
class Warning:
    """A health warning: what was found, and where to look (a customer list, or None)."""

    message: str
    href: str | None = None
    customers: int | None = None


CHECKS = (
    f"a segment the scheme marks top (for example Champions) holds more than {TOP_SHARE_LIMIT:.0%} "
    "of customers",
    f"one segment holds more than {LARGEST_SHARE_LIMIT:.0%} of customers",
    "customers match no segment rule, or the scheme leaves score combinations uncovered",
    f"the newest scoring run is more than {STALE_DAYS} days old, or there is none",
    "ties left fewer distinct scores than the scheme's bins in the newest run",
)
"""What :func:`health` checks, for the page to say."""


def health(
    summary: dict[str, Any], scheme: Scheme, newest_run: dict[str, Any] | None, *, today: date
) -> list[Warning]:
    """Warnings from the current segment counts, the scheme and the newest run."""
    out: list[Warning] = []
    total = int(summary["customers"])
    for seg in summary["segments"]:
        href = f"/customers?segment={seg['name']}"
        if seg["top"] and total and seg["share"] > TOP_SHARE_LIMIT:
            out.append(
                Warning(
                    f"top segment {seg['name']} holds {seg['share']:.1%} of customers (over "
                    f"{TOP_SHARE_LIMIT:.0%}): the scores may be too generous, or ties lump customers "
                    "together",
                    href,
                    seg["customers"],
                )
            )
        elif total and seg["share"] > LARGEST_SHARE_LIMIT:
            out.append(
                Warning(
                    f"segment {seg['name']} holds {seg['share']:.1%} of customers (over "
                    f"{LARGEST_SHARE_LIMIT:.0%}): the map separates few of them",
                    href,
                    seg["customers"],
                )
            )
        if seg["name"] == NO_SEGMENT and seg["customers"]:
            out.append(Warning("customers match no segment rule of the scheme", href, seg["customers"]))
    for message in check_coverage(scheme).messages():
        out.append(Warning(f"scheme: {message}"))
    if newest_run is None:
        out.append(
            Warning(
                "no scoring run yet: the segments are only live re-scores (POST /v1/runs, or wait for "
                "the schedule)"
            )
        )
    else:
        as_of = date.fromisoformat(newest_run["as_of"])
        age = (today - as_of).days
        if age > STALE_DAYS:
            out.append(
                Warning(
                    f"the newest scoring run is {age} days old (as of {as_of.isoformat()}): is the "
                    "scheduler running?"
                )
            )
        for column, counts in (newest_run.get("score_counts") or {}).items():
            key = {"r_score": "recency", "f_score": "frequency", "m_score": "monetary"}.get(column)
            bins = scheme.bins(key) if key else None  # type: ignore[arg-type]
            used = sum(1 for n in counts.values() if int(n) > 0)
            if bins and 0 < used < bins:
                out.append(
                    Warning(f"{column}: ties left {used} distinct scores of {bins} in run {newest_run['id']}")
                )
    return out

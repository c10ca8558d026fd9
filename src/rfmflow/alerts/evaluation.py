"""Evaluate the enabled rules on the database and record what fired.

:func:`evaluate_rules` reads what the rules look at (the finished scoring runs' snapshots, the
broadcasts' results, the latest event's receipt time), asks :mod:`rfmflow.alerts.rules`
whether each rule fires, and inserts each occurrence once (:func:`~rfmflow.alerts.store.record_occurrence`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.alerts.rules import (
    MAX_EPISODE_RUNS,
    BroadcastPoint,
    Occurrence,
    RunPoint,
    evaluate_broadcasts,
    evaluate_no_events,
    evaluate_segment,
)
from rfmflow.alerts.store import Rule, list_rules, record_occurrence
from rfmflow.automation.results import broadcast_results
from rfmflow.service.db.tables import broadcasts, events, scoring_runs

BROADCASTS_LOOKED_AT = timedelta(days=30)
"""Broadcasts started longer ago than this are not looked at again."""


@dataclass(frozen=True)
class Fired:
    rule_id: int
    rule: str
    occurrence: str
    title: str
    new: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "rule": self.rule,
            "occurrence": self.occurrence,
            "title": self.title,
            "new": self.new,
        }


def load_runs(conn: Connection, *, limit: int = MAX_EPISODE_RUNS + 400) -> list[RunPoint]:
    """The latest finished runs, oldest first, with each segment's recorded numbers."""
    r = scoring_runs.c
    rows = conn.execute(
        sa.select(r.id, r.as_of_day, r.segment_stats, r.segment_counts)
        .where(r.finished_at.is_not(None))
        .order_by(r.as_of_day.desc(), r.id.desc())
        .limit(limit)
    ).all()
    out = []
    for row in reversed(rows):
        if row.segment_stats:
            segments = {str(name): dict(stats) for name, stats in row.segment_stats}
        else:
            segments = {str(name): {"customers": int(n)} for name, n in row.segment_counts or []}
        out.append(RunPoint(int(row.id), int(row.as_of_day), segments))
    return out


def load_broadcasts(conn: Connection, now: datetime) -> list[BroadcastPoint]:
    b = broadcasts.c
    rows = conn.execute(
        sa.select(b.id, b.name, b.status, b.started_at).where(
            b.status.in_(("running", "done")),
            b.started_at.is_not(None),
            b.started_at >= now - BROADCASTS_LOOKED_AT,
        )
    ).all()
    out = []
    for row in rows:
        totals = broadcast_results(conn, int(row.id))["totals"]
        out.append(
            BroadcastPoint(
                int(row.id),
                row.name,
                row.status,
                row.started_at,
                int(totals["delivered"]),
                int(totals["converted"]),
            )
        )
    return out


def last_received(conn: Connection) -> datetime | None:
    """When the latest event was received (``max()`` keeps the column's type: UTC-aware)."""
    found: datetime | None = conn.execute(sa.select(sa.func.max(events.c.received_at))).scalar()
    return found


def occurrences_of(rule: Rule, conn: Connection, now: datetime, cache: dict[str, Any]) -> list[Occurrence]:
    """What ``rule`` sees now (``cache`` shares the loaded data between rules)."""
    if rule.kind in ("segment_growth", "segment_metric_drop"):
        if "runs" not in cache:
            cache["runs"] = load_runs(conn)
        found = evaluate_segment(rule.kind, rule.params, cache["runs"])
        return [found] if found else []
    if rule.kind == "broadcast_conversion_below":
        if "broadcasts" not in cache:
            cache["broadcasts"] = load_broadcasts(conn, now)
        return evaluate_broadcasts(rule.params, cache["broadcasts"], now)
    if "last_received" not in cache:
        cache["last_received"] = last_received(conn)
    found = evaluate_no_events(rule.params, cache["last_received"], now)
    return [found] if found else []


def evaluate_rules(conn: Connection, now: datetime) -> list[Fired]:
    """Evaluate every enabled rule and insert what fired (in the caller's transaction)."""
    cache: dict[str, Any] = {}
    out = []
    for rule in list_rules(conn, enabled_only=True):
        for occurrence in occurrences_of(rule, conn, now, cache):
            new = record_occurrence(conn, rule, occurrence, at=now)
            out.append(Fired(rule.id, rule.name, occurrence.key, occurrence.title, new))
    return out


def latest_run_id(conn: Connection) -> int | None:
    r = scoring_runs.c
    found = conn.execute(sa.select(sa.func.max(r.id)).where(r.finished_at.is_not(None))).scalar()
    return None if found is None else int(found)


__all__ = [
    "Fired",
    "evaluate_rules",
    "last_received",
    "latest_run_id",
    "load_broadcasts",
    "load_runs",
    "occurrences_of",
]

"""The weekly report's numbers, read from the database (JSON-ready: dates ISO, money decimal strings).

The report ends at ``period_end`` (the scheduled moment, or when it was asked for); its days are
the 7 business days after ``from`` up to ``to`` (``to`` = the business day of ``period_end``),
the days ``GET /v1/transitions?from=&to=`` compares:

- **segments**: each segment's customers, revenue and means at the latest run up to ``to``
  against the latest run up to ``from`` (``GET /v1/snapshots?to=``), with the change;
- **moves**: customers in another segment on ``to`` than on ``from`` (the transition matrix),
  the largest flows first;
- **biggest changes**: the segments whose size changed most;
- **new customers**: customers whose first event falls in the days; **revenue**: purchases net
  of refunds in the days, and in the 7 days before;
- **alerts**: occurrences fired in the 7 × 24 hours before ``period_end``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.alerts.store import list_events
from rfmflow.service.db.tables import customers, events
from rfmflow.service.history import snapshots
from rfmflow.service.scoring import transition_matrix
from rfmflow.service.scoring_live import business_day, day_date
from rfmflow.service.settings import Settings

PERIOD_DAYS = 7
TOP_MOVES = 10
TOP_CHANGES = 5


def _money(minor: int | None, decimals: int) -> str | None:
    return None if minor is None else format(Decimal(int(minor)).scaleb(-decimals), "f")


def _latest(conn: Connection, settings: Settings, to_day: int) -> dict[str, Any] | None:
    found = snapshots(conn, settings, to_day=to_day, per="day")
    return found[-1] if found else None


def _revenue(conn: Connection, after_day: int, to_day: int) -> int:
    e = events.c
    total = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(e.amount_minor), 0)).where(
            e.event_type.in_(("purchase", "refund")), e.day > after_day, e.day <= to_day
        )
    ).scalar_one()
    return int(total)


def _pct(before: float | None, now: float | None) -> float | None:
    if before is None or now is None or before == 0:
        return None
    return round((now - before) / abs(before) * 100, 2)


def weekly_summary(conn: Connection, settings: Settings, period_end: datetime) -> dict[str, Any]:
    """The report's numbers for the 7 days up to ``period_end`` (UTC-aware)."""
    to_day = business_day(period_end, settings)
    from_day = to_day - PERIOD_DAYS
    decimals = settings.money_decimals
    now, before = _latest(conn, settings, to_day), _latest(conn, settings, from_day)
    rows: dict[str, dict[str, Any]] = {}
    for snap, side in ((before, "before"), (now, "now")):
        for s in snap["segments"] if snap else []:
            row = rows.setdefault(s["segment"], {"segment": s["segment"]})
            row[f"customers_{side}"] = s["customers"]
            row[f"revenue_{side}"] = _money(s["revenue_minor"], decimals)
            row[f"mean_recency_days_{side}"] = s["mean_recency_days"]
            row[f"mean_frequency_{side}"] = s["mean_frequency"]
            row[f"share_{side}"] = round(s["share"], 6)
    segments = []
    for row in rows.values():
        for side in ("before", "now"):
            row.setdefault(f"customers_{side}", 0)
            for name in ("revenue", "mean_recency_days", "mean_frequency", "share"):
                row.setdefault(f"{name}_{side}", None)
        row["change"] = row["customers_now"] - row["customers_before"]
        row["change_pct"] = _pct(row["customers_before"], row["customers_now"])
        segments.append(row)
    matrix = transition_matrix(conn, from_day, to_day)
    flows = sorted(
        (
            {"from": src, "to": dst, "customers": n}
            for src, targets in matrix["matrix"].items()
            for dst, n in targets.items()
            if src != dst
        ),
        key=lambda f: (-f["customers"], f["from"], f["to"]),
    )
    biggest = sorted((s for s in segments if s["change"]), key=lambda s: (-abs(s["change"]), s["segment"]))
    c = customers.c
    new_customers = conn.execute(
        sa.select(sa.func.count()).where(c.first_day > from_day, c.first_day <= to_day)
    ).scalar_one()
    revenue = _revenue(conn, from_day, to_day)
    revenue_before = _revenue(conn, from_day - PERIOD_DAYS, from_day)
    alerts = list_events(conn, since=period_end - timedelta(days=PERIOD_DAYS), until=period_end, limit=200)

    def run(snap: dict[str, Any] | None) -> dict[str, Any] | None:
        if snap is None:
            return None
        return {"run_id": snap["run_id"], "as_of": snap["as_of"].isoformat(), "customers": snap["customers"]}

    return {
        "period_end": period_end.isoformat(),
        "from": day_date(from_day).isoformat(),
        "to": day_date(to_day).isoformat(),
        "timezone": settings.timezone,
        "currency": settings.currency,
        "run_now": run(now),
        "run_before": run(before),
        "customers_now": now["customers"] if now else 0,
        "customers_before": before["customers"] if before else 0,
        "segments": segments,
        "moves": {
            "changed": matrix["changed"],
            "moves_recorded": matrix["moves_recorded"],
            "top": flows[:TOP_MOVES],
        },
        "biggest_changes": [
            {"segment": s["segment"], "change": s["change"], "change_pct": s["change_pct"]}
            for s in biggest[:TOP_CHANGES]
        ],
        "new_customers": int(new_customers),
        "revenue": _money(revenue, decimals),
        "revenue_before": _money(revenue_before, decimals),
        "alerts": [{k: a[k] for k in ("id", "rule", "title", "fired_at", "status")} for a in alerts],
    }


def summary_text(summary: dict[str, Any], link: str = "") -> str:
    """A short plain-text version (a Telegram message)."""
    change = summary["customers_now"] - summary["customers_before"]
    lines = [
        f"rfmflow weekly report {summary['from']} – {summary['to']}",
        f"Customers: {summary['customers_now']:,} ({change:+,})",
        f"New customers: {summary['new_customers']:,}; revenue {summary['revenue']} {summary['currency']} "
        f"(week before {summary['revenue_before']})",
    ]
    if summary["biggest_changes"]:
        lines.append(
            "Biggest changes: "
            + ", ".join(f"{c['segment']} {c['change']:+,}" for c in summary["biggest_changes"][:3])
        )
    top = summary["moves"]["top"][:3]
    if top:
        lines.append("Moves: " + ", ".join(f"{m['from']} → {m['to']} {m['customers']:,}" for m in top))
    lines.append(f"Alerts: {len(summary['alerts'])}")
    if link:
        lines.append(link)
    return "\n".join(lines)


__all__ = ["PERIOD_DAYS", "summary_text", "weekly_summary"]

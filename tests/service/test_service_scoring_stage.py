"""A full run reads the customers' aggregates instead of every event when the scheme allows
it: the results must be exactly those of the scan, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from rfmflow.schemes import builtin_text
from rfmflow.service.db.tables import NO_SEGMENT
from rfmflow.service.ingest import ingest_raw
from rfmflow.service.scoring import full_query, run_scoring
from rfmflow.service.scoring_live import business_day
from rfmflow.service.scoring_schemes import parse_scheme
from rfmflow.service.scoring_stage import aggregates_query, scan_reasons
from rfmflow.service.settings import Settings

NOW = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
FAST_BUILTINS = ("rfm11", "crm")
SCAN_BUILTINS = ("telegram-scrm", "telegram-scrm-rf", "telegram-scrm-messages")
# Not built in: the other branches of the aggregates (recency and frequency of any event, counts
# of chosen types, a lifecycle, percentiles, a composite).
COUNTS = """
name: counts
metrics:
  recency: {events: any}
  frequency: {events: any, count: events}
  monetary: {events: [message, visit], measure: count}
scores:
  recency: {quantiles: 4}
  frequency: {edges: [1, 3, 6]}
  monetary: {quantiles: 3}
lifecycle: {new_within_days: 60, scores: {recency: {edges: [7, 30, 90]}}}
composite: {recency: 2, frequency: 1, monetary: 0.5}
segments:
  - {name: Busy, when: f_pct >= 0.5 and m_score >= 2}
  - {name: Newcomer, when: lifecycle == 'new'}
  - {name: Rest, when: true}
tags:
  - {name: Chatty, when: monetary >= 2}
"""
ORDER_LINES = """
name: order-lines
metrics:
  frequency: {events: [purchase, refund], count: events}
scores:
  recency: {quantiles: 3}
  frequency: {quantiles: 3}
  monetary: {edges: [10, 100]}
segments:
  - {name: Best, when: r_pct >= 0.5 and frequency >= 2}
  - {name: Other, when: true}
"""


def history(n_customers: int, *, seed: int) -> list[dict[str, Any]]:
    """Purchases (orders of one to three lines, some without an order id), refunds (some
    customers only refund), visits, messages and clicks (some customers only those), over
    400 days; a few events dated up to a day ahead (allowed clock skew)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n_customers):
        cid = f"c{i:04d}"
        profile = rng.choice(["shopper", "shopper", "shopper", "browser", "refunder"])
        for j in range(rng.randint(1, 9)):
            if profile == "browser":
                kind = rng.choice(["visit", "message", "click"])
            elif profile == "refunder":
                kind = "refund"
            else:
                kind = rng.choice(["purchase", "purchase", "purchase", "refund", "visit", "message"])
            when = NOW - timedelta(days=rng.randint(0, 400), hours=rng.randint(0, 11))
            if rng.random() < 0.02:
                when = NOW + timedelta(hours=rng.randint(1, 20))
            item: dict[str, Any] = {
                "event_id": f"{cid}-{j}",
                "customer_id": cid,
                "type": kind,
                "occurred_at": when.isoformat(),
            }
            if kind in ("purchase", "refund"):
                item["amount"] = f"{rng.randint(1, 300)}.{rng.randint(0, 99):02d}"
            if kind == "purchase" and rng.random() < 0.85:
                item["order_id"] = f"o-{cid}-{j // 3}"
            out.append(item)
    return out


def stored(engine: Engine, settings: Settings, *, n: int = 300, seed: int = 11) -> None:
    items = history(n, seed=seed)
    for start in range(0, len(items), 250):
        results = ingest_raw(engine, items[start : start + 250], settings, now=NOW)
        assert all(r.status == "accepted" for r in results), results


def rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            sql = sql.replace("%", "%%")
        return [tuple(r) for r in conn.exec_driver_sql(f"SELECT * FROM ({sql}) AS q ORDER BY 1").all()]


def both(engine: Engine, settings: Settings, text: str, as_of_day: int) -> tuple[list[Any], list[Any]]:
    scheme = parse_scheme(text)
    with engine.connect() as conn:
        fast = aggregates_query(conn, scheme, as_of_day, settings)
        scan = full_query(conn, scheme, as_of_day, settings)
    assert fast is not None
    return rows(engine, fast), rows(engine, scan)


@pytest.mark.parametrize(
    "text",
    [*(builtin_text(n) for n in FAST_BUILTINS), COUNTS, ORDER_LINES],
    ids=[*FAST_BUILTINS, "counts", "order-lines"],
)
def test_aggregates_give_exactly_the_event_scan_results(
    engine: Engine, settings: Settings, text: str
) -> None:
    stored(engine, settings)
    today = business_day(NOW, settings)
    # Today (a few customers have an event dated tomorrow: their events are aggregated one by
    # one), a month ago (many customers have later events; some have none on or before it),
    # and tomorrow (every event counts: the aggregates alone).
    for as_of_day in (today, today - 30, today + 1):
        fast, scan = both(engine, settings, text, as_of_day)
        assert len(scan) > 100
        different = [(a, b) for a, b in zip(fast, scan, strict=False) if a != b]
        assert (len(fast), different[:3]) == (len(scan), []), f"as of day {as_of_day}"


def test_the_scheme_features_that_need_the_event_scan(engine: Engine, settings: Settings) -> None:
    for text in (*(builtin_text(n) for n in FAST_BUILTINS), COUNTS, ORDER_LINES):
        assert scan_reasons(parse_scheme(text)) == []
    assert scan_reasons(parse_scheme(builtin_text("telegram-scrm"))) == [
        "frequency has a window (window_days)",
        "frequency counts orders of events other than purchases",
    ]
    many = parse_scheme(
        "name: many\nmetrics:\n  recency: {events: [purchase, visit]}\n"
        "  frequency: {events: [purchase, refund], half_life_days: 30}\n"
        "  monetary: {events: [purchase], half_life_days: 90, window_days: 365}\n"
        "segments: [{name: All, when: true}]\n"
    )
    assert scan_reasons(many) == [
        "recency reads events other than purchases (or any)",
        "frequency is time-decayed (half_life_days)",
        "frequency counts orders of events other than purchases",
        "monetary has a window (window_days)",
        "monetary is time-decayed (half_life_days)",
        "monetary sums amounts of events other than purchases and refunds",
    ]
    days = parse_scheme(
        "name: days\nmetrics:\n  frequency: {count: days}\nsegments: [{name: All, when: true}]\n"
    )
    assert scan_reasons(days) == ["frequency counts days"]
    stored(engine, settings, n=40)
    with engine.connect() as conn:
        for name in SCAN_BUILTINS:
            scheme = parse_scheme(builtin_text(name))
            assert scan_reasons(scheme)
            assert aggregates_query(conn, scheme, business_day(NOW, settings), settings) is None


def test_runs_read_the_aggregates_or_the_events_and_store_the_query_results(
    engine: Engine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A run of rfm11 reads the aggregates, one of telegram-scrm scans the events; each run
    stores what the scan's query gives."""
    stored(engine, settings, n=150, seed=5)
    caplog.set_level(logging.INFO, logger="rfmflow.service.scoring")
    today = business_day(NOW, settings)
    for name, source in (("rfm11", "customers"), ("telegram-scrm", "events")):
        text = builtin_text(name)
        scheme = parse_scheme(text)
        result = run_scoring(
            engine, settings, trigger="scheme", actor="test", scheme_text=text, scheme=scheme, now=NOW
        )
        logged = [
            getattr(r, "source", None) for r in caplog.records if getattr(r, "run_id", None) == result.id
        ]
        assert logged == [source]
        with engine.connect() as conn:
            scan = full_query(conn, scheme, today, settings)
            got = {
                r.customer_id: (r.segment, r.rfm, r.recency_days, r.frequency)
                for r in conn.execute(sa.text("SELECT * FROM customer_scores"))
            }
        expected = {r[0]: (r[8] or NO_SEGMENT, r[7], r[1], r[2]) for r in rows(engine, scan)}
        assert got == expected

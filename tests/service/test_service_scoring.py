"""Scoring in the database: full runs, live re-scores, transitions, scheme versions, rebuilds.

Every test runs on SQLite and PostgreSQL (the ``engine`` fixture).
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from rfmflow.core.errors import SchemeError
from rfmflow.engines.sql_engine import score_table
from rfmflow.schemes import builtin_text
from rfmflow.service.db import downgrade, upgrade
from rfmflow.service.db.tables import NO_SEGMENT, customer_scores, segment_transitions
from rfmflow.service.ingest import ingest_raw, rebuild_customers
from rfmflow.service.scoring import run_scoring, segment_on, transition_matrix
from rfmflow.service.scoring_jobs import run_now
from rfmflow.service.scoring_live import Band, RunBands, business_day, load_context
from rfmflow.service.scoring_schemes import active_scheme, parse_scheme, scheme_error_details
from rfmflow.service.settings import Settings

NOW = datetime.now(UTC)
COMPARED = [c.name for c in customer_scores.columns if c.name not in ("scored_at", "cause", "run_id")]
FIXED = builtin_text("telegram-scrm")  # fixed thresholds (edges) only


def events(n_customers: int, *, seed: int = 7, days: int = 400, prefix: str = "c") -> list[dict[str, Any]]:
    """A small shop: purchases (some orders with two lines), refunds, visits and messages."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n_customers):
        cid = f"{prefix}{i:04d}"
        for j in range(rng.randint(1, 7)):
            kind = rng.choice(["purchase", "purchase", "purchase", "refund", "visit", "message"])
            when = NOW - timedelta(days=rng.randint(0, days), hours=rng.randint(0, 23))
            item: dict[str, Any] = {
                "event_id": f"{cid}-{j}-{seed}",
                "customer_id": cid,
                "type": kind,
                "occurred_at": when.isoformat(),
            }
            if kind in ("purchase", "refund"):
                item["amount"] = f"{rng.randint(1, 300)}.{rng.randint(0, 99):02d}"
            if kind == "purchase":
                item["order_id"] = f"o-{cid}-{j // 2}"
            out.append(item)
    return out


def buy(
    event_id: str, customer: str, when: datetime, amount: str, order: str | None = None
) -> dict[str, Any]:
    item = {
        "event_id": event_id,
        "customer_id": customer,
        "type": "purchase",
        "occurred_at": when.isoformat(),
    }
    return {**item, "amount": amount, **({"order_id": order} if order else {})}


def send(engine: Engine, settings: Settings, items: list[dict[str, Any]], batch: int = 97) -> None:
    for start in range(0, len(items), batch):
        results = ingest_raw(engine, items[start : start + batch], settings)
        assert all(r.status != "rejected" for r in results), [r for r in results if r.status == "rejected"]


def scores(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(customer_scores).order_by(customer_scores.c.customer_id)).mappings()
        return {r["customer_id"]: {k: r[k] for k in COMPARED} for r in rows}


def transitions(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(segment_transitions).order_by(segment_transitions.c.id)).mappings()
        return [dict(r) for r in rows]


def apply_scheme(engine: Engine, settings: Settings, text: str, **kwargs: Any) -> Any:
    return run_now(
        engine,
        settings,
        trigger="scheme",
        actor="test",
        scheme_text=text,
        scheme=parse_scheme(text),
        **kwargs,
    )


# --- migrations -------------------------------------------------------------------------------
def test_revision_0002_up_and_down(bare_engine: Engine) -> None:
    upgrade(bare_engine, "0001")
    upgrade(bare_engine)
    with bare_engine.connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
    assert {"scheme_versions", "customer_scores", "scoring_runs", "segment_transitions", "jobs"} <= names
    downgrade(bare_engine, "0001")
    with bare_engine.connect() as conn:
        assert "customer_scores" not in set(sa.inspect(conn).get_table_names())
    upgrade(bare_engine)


# --- full runs --------------------------------------------------------------------------------
def test_full_run_scores_everyone_in_the_database(engine: Engine, settings: Settings) -> None:
    send(engine, settings, events(120))
    result = run_scoring(engine, settings, trigger="cli")
    assert result.customers == 120 and result.moves == 120 and result.scheme_version == 1
    assert sum(result.segment_counts.values()) == 120
    assert sum(result.score_counts["r_score"].values()) == 120
    stored = scores(engine)
    # The same definition through the engine the CLI uses on a database (score_table).
    raw = engine.raw_connection()
    try:
        expected = score_table(
            raw.driver_connection,  # type: ignore[arg-type]
            parse_scheme(builtin_text("rfm11")),
            dialect="postgres" if engine.dialect.name == "postgresql" else "sqlite",
            as_of_day=business_day(result.started_at, settings),
        )
    finally:
        raw.close()
    assert len(expected) == len(stored) == 120
    for row in expected:
        got = stored[row["customer_id"]]
        assert (got["r_score"], got["f_score"], got["m_score"], got["rfm"]) == (
            row["r_score"],
            row["f_score"],
            row["m_score"],
            row["rfm"],
        )
        assert got["segment"] == (row["segment"] or NO_SEGMENT)
        assert (got["recency_days"], got["frequency"], got["monetary_minor"]) == (
            row["recency_days"],
            row["frequency"],
            row["monetary_minor"],
        )
    again = run_scoring(engine, settings, trigger="cli")
    assert again.moves == 0 and again.id == result.id + 1
    assert len(transitions(engine)) == 120
    with engine.connect() as conn:
        assert active_scheme(conn).stored  # the built-in default was stored as version 1


def test_segment_on_any_past_day(engine: Engine, settings: Settings) -> None:
    old = NOW - timedelta(days=200)
    send(engine, settings, [buy("a1", "a", old, "5"), buy("b1", "b", old, "500"), buy("b2", "b", old, "500")])
    day1 = NOW - timedelta(days=100)
    run_scoring(engine, settings, trigger="cli", now=day1)
    send(engine, settings, [buy(f"a{i}", "a", NOW - timedelta(days=i), "900", f"x{i}") for i in (2, 3)])
    run_scoring(engine, settings, trigger="cli", now=NOW)
    d1, d2 = business_day(day1, settings), business_day(NOW, settings)
    with engine.connect() as conn:
        first = {c: segment_on(conn, c, d1) for c in ("a", "b")}
        last = {c: segment_on(conn, c, d2) for c in ("a", "b")}
        assert segment_on(conn, "a", d1 - 1) is None  # not scored yet
        assert segment_on(conn, "nobody", d2) is None
        assert segment_on(conn, "a", date.fromordinal(d1 + date(1970, 1, 1).toordinal())) == first["a"]
        assert segment_on(conn, "a", (d1 + d2) // 2) == first["a"]
        matrix = transition_matrix(conn, d1, d2)
        now_rows = dict(
            conn.execute(sa.select(customer_scores.c.customer_id, customer_scores.c.segment)).all()
        )
    assert last == now_rows
    assert first["a"] != last["a"]  # a came back and bought a lot: a move
    assert matrix["customers"] == 2 and matrix["matrix"][first["a"]][last["a"]] >= 1


# --- scheme versions --------------------------------------------------------------------------
def test_scheme_versions_and_errors(engine: Engine, settings: Settings) -> None:
    send(engine, settings, events(40))
    with engine.connect() as conn:
        default = active_scheme(conn)
    assert (default.version, default.name, default.stored) == (1, "rfm11", False)
    result = apply_scheme(engine, settings, FIXED)
    assert result.scheme_version == 2 and result.trigger == "scheme"  # rfm11 stored as 1 first
    with engine.connect() as conn:
        now = active_scheme(conn)
        audit = conn.execute(sa.text("SELECT action, target, actor FROM audit_log")).all()
        causes = {r[0] for r in conn.execute(sa.select(segment_transitions.c.cause)).all()}
    assert (now.version, now.name) == (2, "telegram-scrm")
    assert ("scheme.update", "scheme:2", "test") in [tuple(a) for a in audit]
    assert causes == {"scheme"}
    assert set(result.segment_counts) <= {s.name for s in now.scheme.segments} | {NO_SEGMENT}

    with pytest.raises(SchemeError) as err:
        parse_scheme("name: bad\nsegments:\n  - {name: A, wen: true}\n")
    details = {tuple(d["loc"]): d["msg"] for d in scheme_error_details(err.value)}
    assert "did you mean 'when'" in details["body", "yaml", "segments", 0, "wen"]
    assert details["body", "yaml", "segments", 0, "when"] == "required field is missing"
    with pytest.raises(SchemeError) as err:
        parse_scheme("name: bad\nsegments:\n  - {name: A, when: r_scor >= 1}\n")
    assert scheme_error_details(err.value)[0]["loc"] == ["body", "yaml", "segments", 0, "when"]
    with pytest.raises(SchemeError, match="predictions"):
        parse_scheme("name: p\nsegments:\n  - {name: A, when: p_alive > 0.5}\n  - {name: B, when: true}\n")


# --- live re-scoring ----------------------------------------------------------------------------
def test_live_rescore_with_fixed_thresholds(engine: Engine, settings: Settings) -> None:
    apply_scheme(engine, settings, FIXED)
    send(engine, settings, [{"event_id": "m1", "customer_id": "x", "type": "message",
                             "occurred_at": (NOW - timedelta(days=90)).isoformat()}])  # fmt: skip
    before = scores(engine)["x"]
    assert before["r_score"] == 1 and before["segment"] == "Churned"
    send(engine, settings, [buy(f"p{i}", "x", NOW - timedelta(hours=i), "120", f"o{i}") for i in range(12)])
    after = scores(engine)["x"]
    assert (after["r_score"], after["f_score"], after["m_score"], after["segment"]) == (5, 5, 5, "High-Value")
    moves = [
        (t["from_segment"], t["to_segment"], t["cause"])
        for t in transitions(engine)
        if t["customer_id"] == "x"
    ]
    assert moves == [(None, "Churned", "event"), ("Churned", "High-Value", "event")]


def test_bands_give_the_score_of_the_band_a_value_falls_into() -> None:
    bands = RunBands(
        1,
        1,
        10,
        {
            "frequency": {"all": [Band(1, 1, 1, 5), Band(3, 2, 2, 3), Band(5, 4, 9, 2)]},
            "recency": {"all": [Band(1, 200, 400, 4), Band(2, 100, 150, 3), Band(5, 0, 10, 3)]},
        },
        {"monetary": [(0.0, 0), (10.0, 5), (20.0, 9)]},
    )
    assert [bands.score("frequency", "all", v) for v in (0, 1, 2, 3, 4, 7, 50)] == [1, 1, 3, 3, 5, 5, 5]
    assert [bands.score("recency", "all", v) for v in (0, 10, 11, 120, 160, 999, None)] == [
        5,
        5,
        2,
        2,
        1,
        1,
        1,
    ]
    assert bands.score("frequency", "new", 4) == 5  # a cohort without bands uses another's
    assert bands.pct("monetary", 10.0) == 0.5 and bands.pct("monetary", -1.0) == 0.0
    assert bands.pct("monetary", 15.0) == pytest.approx(0.75) and bands.pct("monetary", 99.0) == 0.9


def test_live_rescore_with_quantiles_uses_the_latest_run(engine: Engine, settings: Settings) -> None:
    send(engine, settings, events(80))
    with engine.connect() as conn:
        assert not load_context(conn).scorable  # rfm11 needs a run first
    send(engine, settings, [buy("early", "new1", NOW, "10")])
    assert "new1" not in scores(engine)
    run = run_scoring(engine, settings, trigger="cli")
    send(engine, settings, [buy("n2", "new2", NOW, "5000", "big")])
    row = scores(engine)["new2"]
    assert (
        row["r_score"] == 5 and row["m_score"] == 5 and row["f_score"] == 1
    )  # best recency and spend, one order
    assert row["segment"] == "New"
    (move,) = [t for t in transitions(engine) if t["customer_id"] == "new2"]
    assert (move["from_segment"], move["to_segment"], move["cause"], move["run_id"]) == (
        None,
        "New",
        "event",
        None,
    )
    # A visit does not touch rfm11's metrics: no re-score for a known customer.
    stamp = scores(engine)["c0001"]
    send(
        engine,
        settings,
        [{"event_id": "v", "customer_id": "c0001", "type": "visit", "occurred_at": NOW.isoformat()}],
    )
    assert scores(engine)["c0001"] == stamp
    assert run.customers == 81


# --- rebuilds -------------------------------------------------------------------------------------
def _rebuild_from_scratch(engine: Engine, settings: Settings) -> dict[str, dict[str, Any]]:
    with engine.begin() as conn:
        conn.execute(sa.delete(customer_scores))
    rebuild_customers(engine)
    run_scoring(engine, settings, trigger="cli")
    return scores(engine)


def test_live_state_equals_a_rebuild_for_fixed_thresholds(engine: Engine, settings: Settings) -> None:
    apply_scheme(engine, settings, FIXED)
    stream = events(90, seed=3)
    random.Random(5).shuffle(stream)  # late and out-of-order events
    send(engine, settings, stream, batch=23)
    send(engine, settings, stream[:40], batch=40)  # repeats: duplicates change nothing
    live = scores(engine)
    assert len(live) == 90
    assert _rebuild_from_scratch(engine, settings) == live


def test_live_state_equals_a_rebuild_for_quantiles_after_a_run(engine: Engine, settings: Settings) -> None:
    send(engine, settings, events(60, seed=11))
    run_scoring(engine, settings, trigger="cli")
    stream = events(30, seed=12, prefix="d") + events(20, seed=13)  # new customers and more of the known
    send(engine, settings, stream, batch=31)
    run_scoring(engine, settings, trigger="cli")
    incremental = scores(engine)
    assert _rebuild_from_scratch(engine, settings) == incremental


def test_events_arriving_during_a_run_are_not_lost(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events committed after the run's snapshot (while it computes) are caught up at the swap."""
    from rfmflow.service import scoring

    apply_scheme(engine, settings, FIXED)  # exact comparison (quantiles would move with the late events)
    send(engine, settings, events(30, seed=21))
    original = scoring._stage
    late = [
        buy(f"late-{i}", cid, NOW, "777", f"late-{i}")
        for i, cid in enumerate(["c0003", "c0004", "brand-new"])
    ]

    def stage_then_ingest(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        send(engine, settings, late)  # another connection, committed before the swap

    monkeypatch.setattr(scoring, "_stage", stage_then_ingest)
    result = run_scoring(engine, settings, trigger="cli")
    monkeypatch.setattr(scoring, "_stage", original)
    maintained = scores(engine)
    assert result.customers == 31 and "brand-new" in maintained
    assert maintained["c0003"]["recency_days"] == 0
    assert _rebuild_from_scratch(engine, settings) == maintained


def test_live_rescoring_can_be_paused_for_bulk_imports(engine: Engine, settings: Settings) -> None:
    from rfmflow.service.scoring_live import live_rescoring_paused

    apply_scheme(engine, settings, FIXED)
    with live_rescoring_paused():
        send(engine, settings, events(10, seed=31))
    assert scores(engine) == {}
    send(engine, settings, [buy("after", "c0001", NOW, "1")])
    assert list(scores(engine)) == ["c0001"]


def test_runs_and_live_ingest_at_the_same_time(engine: Engine, settings: Settings) -> None:
    """Runs and ingest threads interleave freely (no deadlock, nothing lost); the result is
    the rebuild's."""
    import threading

    apply_scheme(engine, settings, FIXED)
    stream = events(60, seed=41)
    random.Random(9).shuffle(stream)
    errors: list[BaseException] = []

    def sender(part: list[dict[str, Any]]) -> None:
        try:
            send(engine, settings, part, batch=9)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=sender, args=(stream[i::2],)) for i in range(2)]
    for t in threads:
        t.start()
    runs = 0
    while any(t.is_alive() for t in threads) or runs < 2:
        run_scoring(engine, settings, trigger="cli")
        runs += 1
    for t in threads:
        t.join(60)
    assert not errors
    maintained = scores(engine)
    assert len(maintained) == 60
    assert _rebuild_from_scratch(engine, settings) == maintained

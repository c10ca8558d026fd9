"""The ingest use case on SQLite and PostgreSQL: idempotency, live aggregates, rebuild, bad items."""

from __future__ import annotations

import json
import random
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from service_helpers import count_rows, event
from sqlalchemy.engine import Engine

import rfmflow
from rfmflow.engines.sql_engine import score_table
from rfmflow.schemes import load_scheme
from rfmflow.service.db import create_db_engine
from rfmflow.service.db.store import read_customers
from rfmflow.service.events import EventIn
from rfmflow.service.ingest import EPOCH_ORDINAL, event_day, ingest, ingest_raw, rebuild_customers
from rfmflow.service.settings import Settings

NOW = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)


def events_in(*items: dict[str, Any]) -> list[EventIn]:
    return [EventIn.model_validate(item) for item in items]


def count_rows_in(conn: sa.Connection, table: str) -> int:
    return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def statuses(results: list[Any]) -> list[str]:
    return [r.status for r in results]


def without_times(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        k: {c: v for c, v in row.items() if c not in ("created_at", "updated_at")} for k, row in rows.items()
    }


def history(seed: int, customers: int = 25, n: int = 400) -> list[dict[str, Any]]:
    """A random but reproducible event history: purchases (some multi-line orders), refunds,
    messages and clicks over a year, in several time-zone offsets."""
    rng = random.Random(seed)
    out = []
    start = datetime(2023, 6, 1, tzinfo=UTC)
    for i in range(n):
        cid = f"cust-{rng.randrange(customers):03d}"
        kind = rng.choices(["purchase", "refund", "message", "click"], weights=[6, 1, 2, 1])[0]
        moment = start + timedelta(minutes=rng.randrange(365 * 24 * 60))
        offset = rng.choice(["Z", "+02:00", "-05:00", "+09:30"])
        local = moment.astimezone(datetime.strptime(offset.replace("Z", "+00:00"), "%z").tzinfo)
        item: dict[str, Any] = {
            "event_id": f"h{seed}-{i}",
            "customer_id": cid,
            "type": kind,
            "occurred_at": local.isoformat().replace("+00:00", "Z"),
        }
        if kind in ("purchase", "refund"):
            item["amount"] = str(Decimal(rng.randrange(1, 50_000)) / 100)
        if kind == "purchase" and rng.random() < 0.6:
            item["order_id"] = f"o-{cid}-{rng.randrange(8)}"  # lines of one order share an id
        out.append(item)
    return out


def test_same_event_twice_is_stored_once(engine: Engine, settings: Settings) -> None:
    first = ingest(engine, events_in(event(event_id="e1")), settings, now=NOW)
    again = ingest(engine, events_in(event(event_id="e1", amount="99.00")), settings, now=NOW)
    assert statuses(first) == ["accepted"]
    assert statuses(again) == ["duplicate"]
    assert count_rows(engine, "events") == 1
    with engine.connect() as conn:
        row = read_customers(conn)["c1"]
    assert row["n_events"] == 1 and row["monetary_minor"] == 1000 and row["purchases"] == 1


def test_repeat_within_one_batch_is_a_duplicate(engine: Engine, settings: Settings) -> None:
    items = events_in(event(event_id="x"), event(event_id="y"), event(event_id="x"))
    assert statuses(ingest(engine, items, settings, now=NOW)) == ["accepted", "accepted", "duplicate"]
    assert count_rows(engine, "events") == 2


def test_duplicate_across_restart(engine: Engine, settings: Settings) -> None:
    ingest(engine, events_in(event(event_id="r1")), settings, now=NOW)
    fresh = create_db_engine(settings.database_url)  # a new process would make a new engine
    try:
        assert statuses(ingest(fresh, events_in(event(event_id="r1")), settings, now=NOW)) == ["duplicate"]
    finally:
        fresh.dispose()
    assert count_rows(engine, "events") == 1


def test_concurrent_duplicates_count_once(engine: Engine, settings: Settings) -> None:
    """Eight threads send the same batch at once: each event is accepted exactly once."""
    batch = [event(event_id=f"k{i}", customer_id=f"c{i % 3}", order_id=f"o{i}") for i in range(20)]
    barrier = threading.Barrier(8)
    outcomes: list[list[str]] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            barrier.wait()
            outcomes.append(statuses(ingest(engine, events_in(*batch), settings, now=NOW)))
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(20):
        assert sum(o[i] == "accepted" for o in outcomes) == 1
    assert count_rows(engine, "events") == 20
    with engine.connect() as conn:
        live = read_customers(conn)
    assert sum(r["purchases"] for r in live.values()) == 20
    assert sum(r["monetary_minor"] for r in live.values()) == 20 * 1000


def test_out_of_order_equals_in_order_and_rebuild(
    engine: Engine, settings: Settings, database: Any, tmp_path: Path
) -> None:
    items = history(seed=1)
    ordered = sorted(items, key=lambda e: datetime.fromisoformat(e["occurred_at"]))
    shuffled = items[:]
    random.Random(7).shuffle(shuffled)
    # in order, one event at a time, on a second database
    other = create_db_engine(f"sqlite:///{tmp_path / 'ordered.db'}")
    try:
        from rfmflow.service.db import upgrade

        upgrade(other)
        for item in ordered:
            ingest(other, events_in(item), settings, now=NOW)
        with other.connect() as conn:
            in_order = read_customers(conn)
    finally:
        other.dispose()
    # shuffled, in uneven batches, with repeats
    pos = 0
    rng = random.Random(3)
    while pos < len(shuffled):
        size = rng.randint(1, 60)
        chunk = shuffled[pos : pos + size] + rng.sample(shuffled[: pos + size], k=min(5, pos + size))
        ingest(engine, events_in(*chunk), settings, now=NOW)
        pos += size
    with engine.connect() as conn:
        live = read_customers(conn)
    assert without_times(live) == without_times(in_order)
    assert count_rows(engine, "events") == len(items)
    rebuild_customers(engine)
    with engine.connect() as conn:
        rebuilt = read_customers(conn)
    assert rebuilt == live  # timestamps included: created/updated_at are min/max received_at


def test_aggregates_match_their_definitions(engine: Engine, settings: Settings) -> None:
    items = [
        event(customer_id="a", order_id="o1", amount="10.00", occurred_at="2024-03-05T10:00:00Z"),
        event(
            customer_id="a", order_id="o1", amount="5.50", occurred_at="2024-03-05T10:00:01Z"
        ),  # same order
        event(customer_id="a", amount="7.00", occurred_at="2024-03-01T09:00:00Z"),  # no order id
        event(customer_id="a", type="refund", amount="3.00", occurred_at="2024-03-20T00:00:00Z"),
        event(customer_id="a", type="message", amount=None, occurred_at="2024-04-01T00:00:00Z"),
        event(customer_id="a", type="click", amount=None, occurred_at="2024-02-01T00:00:00Z"),
    ]
    assert statuses(ingest(engine, events_in(*items), settings, now=NOW)) == ["accepted"] * 6
    # another line of o1 later, alone: still one order
    ingest(engine, events_in(event(customer_id="a", order_id="o1", amount="1.00")), settings, now=NOW)
    with engine.connect() as conn:
        row = read_customers(conn)["a"]
    day = lambda text: date.fromisoformat(text).toordinal() - EPOCH_ORDINAL  # noqa: E731
    assert row["first_day"] == day("2024-02-01")
    assert row["last_day"] == day("2024-05-01")
    assert row["last_purchase_day"] == day("2024-05-01")
    assert row["purchases"] == 2  # order o1 (three lines) + the purchase without an order
    assert row["monetary_minor"] == 1000 + 550 + 700 - 300 + 100  # refunds are stored negative
    assert (row["n_events"], row["n_purchase"], row["n_refund"], row["n_message"], row["n_click"]) == (
        7,
        4,
        1,
        1,
        1,
    )


def test_days_are_counted_like_rfmflow_score(engine: Engine, database: Any, tmp_path: Path) -> None:
    """In a business time zone, the events table scored by the SQL engine gives what
    ``rfmflow score --tz`` gives on the same events in a file, and the live aggregates agree."""
    settings = database.settings(tmp_path, timezone="America/New_York")
    items = history(seed=2, customers=15, n=200)
    ingest(engine, events_in(*items), settings, now=NOW)
    csv = tmp_path / "events.csv"
    lines = ["event_id,customer_id,type,timestamp,amount,order_id"]
    for e in items:
        lines.append(
            f"{e['event_id']},{e['customer_id']},{e['type']},{e['occurred_at']},{e.get('amount', '')},"
            f"{e.get('order_id', '')}"
        )
    csv.write_text("\n".join(lines) + "\n")
    as_of = date(2024, 7, 1)
    as_of_day = as_of.toordinal() - EPOCH_ORDINAL
    from_file = rfmflow.score(csv, scheme="rfm11", as_of=as_of, timezone="America/New_York").to_pandas()
    dialect = "sqlite" if database.kind == "sqlite" else "postgres"
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        in_db = score_table(raw, load_scheme("rfm11"), dialect=dialect, as_of_day=as_of_day, table="events")
        live = read_customers(conn)
    by_id = {r["customer_id"]: r for r in in_db}
    assert set(by_id) == set(from_file["customer_id"])
    for rec in from_file.to_dict("records"):
        mine = by_id[rec["customer_id"]]
        assert mine["recency_days"] == (None if pd.isna(rec["recency_days"]) else rec["recency_days"])
        assert mine["frequency"] == rec["frequency"]
        assert mine["tenure_days"] == rec["tenure_days"]
        assert Decimal(mine["monetary_minor"]) / 100 == Decimal(str(rec["monetary"]))
        assert mine["rfm"] == rec["rfm"] and mine["segment"] == rec["segment"]
        agg = live[rec["customer_id"]]
        assert agg["purchases"] == mine["frequency"]
        assert agg["monetary_minor"] == mine["monetary_minor"]
        assert agg["first_day"] == as_of_day - mine["tenure_days"]
        if mine["recency_days"] is not None:
            assert agg["last_purchase_day"] == as_of_day - mine["recency_days"]


def test_event_day_uses_the_business_time_zone() -> None:
    from zoneinfo import ZoneInfo

    moment = datetime(2024, 3, 1, 3, 30, tzinfo=UTC)  # still 29 February in New York
    assert event_day(moment, ZoneInfo("UTC")) == date(2024, 3, 1).toordinal() - EPOCH_ORDINAL
    assert event_day(moment, ZoneInfo("America/New_York")) == date(2024, 2, 29).toordinal() - EPOCH_ORDINAL


@pytest.mark.parametrize(
    ("fields", "loc", "words"),
    [
        ({"currency": "EUR"}, ("currency",), "differs from this installation's USD"),
        ({"amount": "10.001"}, ("amount",), "more than 2 decimals"),
        ({"occurred_at": "2999-01-01T00:00:00Z"}, ("occurred_at",), "between 1900-01-01 and 2199-12-31"),
        ({"occurred_at": "2024-07-05T00:00:00Z"}, ("occurred_at",), "more than a day after"),
    ],
)
def test_rejected_items_write_nothing(
    engine: Engine, settings: Settings, fields: dict[str, Any], loc: tuple[str, ...], words: str
) -> None:
    good = event(event_id="good", customer_id="g")
    bad = event(event_id="bad", customer_id="b", **fields)
    results = ingest(engine, events_in(good, bad), settings, now=NOW)
    assert statuses(results) == ["accepted", "rejected"]
    (error,) = results[1].errors
    assert error.loc == loc and words in error.msg
    assert count_rows(engine, "events") == 1
    with engine.connect() as conn:
        assert set(read_customers(conn)) == {"g"}


def test_atomic_batch_is_all_or_nothing(engine: Engine, settings: Settings) -> None:
    results = ingest(
        engine,
        events_in(event(event_id="a1"), event(event_id="a2", currency="GBP")),
        settings,
        now=NOW,
        atomic=True,
    )
    assert statuses(results) == ["skipped", "rejected"]
    assert count_rows(engine, "events") == 0 and count_rows(engine, "customers") == 0


def test_raw_items_are_validated_with_field_errors(engine: Engine, settings: Settings) -> None:
    raw = [
        event(event_id="ok"),
        event(event_id="t", type="teleport"),
        event(event_id="n", occurred_at="2024-05-01T10:00:00"),
        event(event_id="m", amount="ten"),
        {"event_id": "x", "surprise": 1},
        "not an object",
    ]
    results = ingest_raw(engine, raw, settings, now=NOW)
    assert statuses(results) == ["accepted"] + ["rejected"] * 5
    assert [r.event_id for r in results] == ["ok", "t", "n", "m", "x", None]
    assert (
        results[1].errors[0].loc == ("type",) and "unknown event type 'teleport'" in results[1].errors[0].msg
    )
    assert results[2].errors[0].loc == ("occurred_at",) and "needs a time zone" in results[2].errors[0].msg
    assert results[3].errors[0].loc == ("amount",) and "'ten'" in results[3].errors[0].msg
    assert ("surprise",) in [e.loc for e in results[4].errors]
    assert count_rows(engine, "events") == 1


def test_a_failed_transaction_leaves_nothing(engine: Engine, settings: Settings) -> None:
    """An error later in the caller's transaction rolls back the events and aggregates
    ingest wrote in it: the event row and its customer update stand or fall together."""
    with pytest.raises(sa.exc.SQLAlchemyError), engine.begin() as conn:
        ingest(conn, events_in(event(event_id="t1")), settings, now=NOW)
        assert count_rows_in(conn, "events") == 1
        conn.execute(sa.text("SELECT * FROM no_such_table"))
    assert count_rows(engine, "events") == 0 and count_rows(engine, "customers") == 0


def test_events_without_money_or_orders(engine: Engine, settings: Settings) -> None:
    """A batch where every optional column is empty (no amount, order, properties, purchase)."""
    items = events_in(
        event(event_id="m1", type="message", amount=None, customer_id="bot-user"),
        event(event_id="m2", type="click", amount=None, customer_id="bot-user", properties={"b": "menu"}),
    )
    assert statuses(ingest(engine, items, settings, now=NOW)) == ["accepted", "accepted"]
    with engine.connect() as conn:
        row = read_customers(conn)["bot-user"]
        props = conn.execute(sa.text("SELECT properties FROM events WHERE event_id = 'm2'")).scalar_one()
    assert row["last_purchase_day"] is None and row["purchases"] == 0 and row["monetary_minor"] == 0
    assert (row["n_message"], row["n_click"]) == (1, 1)
    assert (json.loads(props) if isinstance(props, str) else props) == {"b": "menu"}

"""File imports (``rfmflow import``, ``import_events``) on SQLite and PostgreSQL.

Read as ``rfmflow score`` reads; bad rows rejected with line numbers and never written;
importing again counts nothing twice; the stored aggregates equal ``rfmflow score`` on the
same file; strict mode writes nothing.
"""

from __future__ import annotations

import csv
import json
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from service_helpers import Database, count_rows
from sqlalchemy.engine import Engine

import rfmflow
from rfmflow.core.errors import InputError, RejectedRowError
from rfmflow.service.cli import service_cli
from rfmflow.service.db.store import read_customers
from rfmflow.service.db.tables import events
from rfmflow.service.imports import ImportReport, import_events, reading_options
from rfmflow.service.ingest import EPOCH_ORDINAL, rebuild_customers
from rfmflow.service.settings import Settings

HEADER = "customer_id,order_date,type,amount,order_id,channel\n"
MESSY = HEADER + (
    "c1,2024-05-01T10:00:00Z,purchase,10.50,o1,web\n"  # 2 ok
    'c1,2024-05-03 09:00,purchase,"1,234.50",o2,app\n'  # 3 ok (thousands separator)
    "c2,2024-05-02,purchase,abc,o3,web\n"  # 4 non-numeric amount
    ",2024-05-02,purchase,5,o4,web\n"  # 5 missing customer
    "c3,not a date,purchase,5,o5,web\n"  # 6 unparseable date
    "c3,2024-05-04T23:30:00+02:00,refund,3.00,o1,\n"  # 7 ok (refund)
    "c4,2024-05-05,pageview,,,web\n"  # 8 a type the service does not know
    "c4,2024-05-05,message,,,telegram\n"  # 9 ok
    "c5,2099-01-01,purchase,5,o9,web\n"  # 10 in the future
    "c5,2024-05-06,purchase,5,o10\n"  # 11 wrong number of fields
    "c1,2024-05-01T10:00:00Z,purchase,10.50,o1,web\n"  # 12 ok: the same line again is a second event
    'c6,2024-05-07,purchase,"12,5",o11,web\n'  # 13 decimal comma without --decimal-comma
)
REJECTED_LINES = [4, 5, 6, 8, 10, 11, 13]


def run(engine: Engine, path: Path | Any, settings: Settings, **kwargs: Any) -> ImportReport:
    options = reading_options(
        settings, **{k: kwargs.pop(k) for k in list(kwargs) if k in ("timezone", "strict", "columns")}
    )
    return import_events(engine, path, settings, options, **kwargs)


def read_rejects(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def stored_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT event_id FROM events")).scalars())


def test_messy_csv_rejects_bad_rows_with_lines_and_stores_the_rest(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "messy.csv"
    path.write_text(MESSY)
    rejects = tmp_path / "out" / "messy.rejects.csv"
    report = run(engine, path, settings, rejects_path=rejects)
    assert (report.rows_read, report.accepted, report.duplicates, report.rejected) == (12, 5, 0, 7)
    assert report.rejects_path == str(rejects) and report.line_label == "line"
    rows = read_rejects(rejects)
    assert [int(r["line"]) for r in rows] == REJECTED_LINES
    reasons = {int(r["line"]): r["reason"] for r in rows}
    assert reasons[4] == "non-numeric amount 'abc'"
    assert reasons[5] == "missing customer id"
    assert reasons[6].startswith("unparseable date 'not a date'")
    assert reasons[8].startswith("unknown event type 'pageview'")
    assert "more than a day after the server's clock" in reasons[10]
    assert reasons[11] == "wrong number of fields: expected 6, got 5"
    assert "--decimal-comma" in reasons[13]
    # Nothing of a rejected row is written: its customers do not exist.
    assert count_rows(engine, "events") == 5
    with engine.connect() as conn:
        customers = read_customers(conn)
        sources = {str(r[0]) for r in conn.execute(sa.text("SELECT source FROM events"))}
    assert set(customers) == {"c1", "c3", "c4"}
    assert sources == {"import"}
    c1 = customers["c1"]
    assert (c1["purchases"], c1["monetary_minor"], c1["n_purchase"]) == (2, 1050 + 123450 + 1050, 3)
    assert customers["c3"]["monetary_minor"] == -300 and customers["c3"]["last_purchase_day"] is None
    assert customers["c4"]["n_message"] == 1
    assert read_customers_after_rebuild(engine) == customers


def read_customers_after_rebuild(engine: Engine) -> dict[str, dict[str, Any]]:
    rebuild_customers(engine)
    with engine.connect() as conn:
        return read_customers(conn)


def test_importing_again_counts_nothing_twice(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "messy.csv"
    path.write_text(MESSY)
    first = run(engine, path, settings, rejects_path=tmp_path / "r1.csv")
    with engine.connect() as conn:
        before = read_customers(conn)
    second = run(engine, path, settings, rejects_path=tmp_path / "r2.csv")
    assert (second.accepted, second.duplicates, second.rejected) == (0, first.accepted, first.rejected)
    assert count_rows(engine, "events") == first.accepted
    with engine.connect() as conn:
        assert read_customers(conn) == before
    ids = stored_ids(engine)
    assert all(i.startswith("import:") and len(i) == 71 for i in ids)
    # The same rows in another format, with dates written differently: still the same events.
    jsonl = tmp_path / "again.jsonl"
    with jsonl.open("w") as fh:
        for item in (
            {"customer_id": "c1", "order_date": "2024-05-01 12:00:00+02:00", "type": "purchase",
             "amount": 10.5, "order_id": "o1", "channel": "web"},
            {"customer_id": "c4", "order_date": "2024-05-05", "type": "message", "channel": "telegram"},
        ):  # fmt: skip
            fh.write(json.dumps(item) + "\n")
    third = run(engine, jsonl, settings)
    assert (third.accepted, third.duplicates) == (0, 2)
    assert stored_ids(engine) == ids


def test_strict_fails_on_the_first_bad_line_and_writes_nothing(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "messy.csv"
    path.write_text(MESSY)
    with pytest.raises(RejectedRowError) as err:
        run(engine, path, settings, strict=True, rejects_path=tmp_path / "r.csv")
    assert err.value.line == 4 and "non-numeric amount" in str(err.value)
    assert count_rows(engine, "events") == 0 and not (tmp_path / "r.csv").exists()
    # A row only the service refuses (an unknown type) counts too, by its line.
    only_type = tmp_path / "types.csv"
    only_type.write_text(HEADER + "c1,2024-05-01,purchase,5,o1,web\nc1,2024-05-02,visited,,,web\n")
    with pytest.raises(RejectedRowError) as err:
        run(engine, only_type, settings, strict=True)
    assert err.value.line == 3 and "unknown event type 'visited'" in err.value.reason
    assert count_rows(engine, "events") == 0


def test_strict_is_one_transaction_across_chunks(engine: Engine, database: Database, tmp_path: Path) -> None:
    # Yen: no minor unit, so amounts up to 10^15 pass the reading checks; the ingest use case
    # refuses 10^13 and more, which it finds only in the third chunk.
    settings = database.settings(tmp_path, currency="JPY", money_decimals=0)
    lines = [f"c{i % 7},2024-05-{1 + i % 28:02d},purchase,{100 + i},o{i},web" for i in range(25)]
    lines[22] = "c1,2024-05-20,purchase,100000000000000,o22,web"
    path = tmp_path / "yen.csv"
    path.write_text(HEADER + "\n".join(lines) + "\n")
    with pytest.raises(RejectedRowError) as err:
        run(engine, path, settings, strict=True, batch_size=10)
    assert err.value.line == 24 and "too large" in err.value.reason
    assert count_rows(engine, "events") == 0 and count_rows(engine, "customers") == 0
    report = run(engine, path, settings, batch_size=10, rejects_path=tmp_path / "yen.rejects.csv")
    assert (report.accepted, report.rejected) == (24, 1)
    assert report.rejects[0][0] == 24 and report.rejects[0][1].startswith("amount: ")
    assert read_rejects(tmp_path / "yen.rejects.csv")[0]["line"] == "24"


def test_a_file_without_any_valid_row_is_an_error(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "c1,nope,purchase,1,o1,web\nc2,2024-01-01,pageview,,,web\n")
    with pytest.raises(InputError, match=r"no valid rows \(2 rejected, first: line 2: unparseable date"):
        run(engine, path, settings, rejects_path=tmp_path / "bad.rejects.csv")
    assert len(read_rejects(tmp_path / "bad.rejects.csv")) == 2
    assert count_rows(engine, "events") == 0


def test_event_id_column_is_used(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    path.write_text(
        "id,user_id,timestamp,event,revenue\n"
        "e-1,u1,2024-03-01T08:00:00Z,purchase,9.99\n"
        "e-2,u1,2024-03-02T08:00:00Z,click,\n"
        ",u2,2024-03-02T08:00:00Z,click,\n"
        "e-1,u1,2024-03-05T08:00:00Z,purchase,1.00\n"
    )
    report = run(engine, path, settings, rejects_path=tmp_path / "ids.rejects.csv")
    assert report.id_column == "id"
    assert (report.accepted, report.duplicates, report.rejected) == (2, 1, 1)
    assert report.rejects[0][:2] == (4, "missing event id (column 'id')")
    assert stored_ids(engine) == {"e-1", "e-2"}
    with engine.connect() as conn:
        assert read_customers(conn)["u1"]["monetary_minor"] == 999  # the first e-1 counted, once


def history_file(path: Path, seed: int = 3, rows: int = 3000) -> None:
    """Purchases (multi-line orders), refunds, messages and clicks over two years, with
    dates written in several ways (UTC, offsets, local times, dates only)."""
    rng = random.Random(seed)
    start = datetime(2023, 1, 1, tzinfo=UTC)
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["CustomerID", "InvoiceDate", "event_type", "Total", "InvoiceNo", "product"])
        for _ in range(rows):
            cid = f"C{rng.randrange(300):04d}"
            moment = start + timedelta(minutes=rng.randrange(700 * 24 * 60))
            style = rng.randrange(4)
            if style == 0:
                text = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
            elif style == 1:
                text = moment.astimezone(datetime.strptime("+0530", "%z").tzinfo).isoformat()
            elif style == 2:
                text = moment.strftime("%Y-%m-%d %H:%M:%S")  # local to the business zone
            else:
                text = moment.strftime("%Y-%m-%d")
            kind = rng.choices(["purchase", "refund", "message", "click"], weights=[6, 1, 2, 1])[0]
            amount = f"{rng.randint(100, 50000) / 100:.2f}" if kind in ("purchase", "refund") else ""
            order = f"INV{rng.randrange(2000)}" if kind != "message" and rng.random() < 0.9 else ""
            out.writerow([cid, text, kind, amount, order, rng.choice(["tea", "mug", ""])])


def test_stored_aggregates_equal_rfmflow_score_on_the_same_file(
    engine: Engine, database: Database, tmp_path: Path
) -> None:
    settings = database.settings(tmp_path, timezone="Europe/Berlin")
    path = tmp_path / "history.csv"
    history_file(path)
    report = run(engine, path, settings)
    assert report.rejected == 0 and report.accepted == 3000
    as_of = date(2025, 1, 1)
    scored = rfmflow.score(path, timezone="Europe/Berlin", as_of=as_of, rejects_path=tmp_path / "s.csv")
    by_score = {r["customer_id"]: r for r in scored.customers.to_pylist()}
    with engine.connect() as conn:
        stored = read_customers(conn)
    assert set(stored) == set(by_score)
    as_of_day = as_of.toordinal() - EPOCH_ORDINAL
    for cid, row in stored.items():
        expected = by_score[cid]
        recency = None if row["last_purchase_day"] is None else as_of_day - row["last_purchase_day"]
        assert recency == expected["recency_days"], cid
        assert row["purchases"] == expected["frequency"], cid
        assert Decimal(row["monetary_minor"]).scaleb(-2) == Decimal(expected["monetary"]), cid
    assert read_customers_after_rebuild(engine) == stored
    again = run(engine, path, settings)
    assert (again.accepted, again.duplicates) == (0, 3000)


def test_parquet_and_frames_are_read_like_score(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    table = pa.table(
        {
            "user_id": ["a", "a", "b"],
            "ts": pa.array(
                [datetime(2024, 1, 1, 10, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC), None],
                pa.timestamp("us", tz="UTC"),
            ),
            "amount": pa.array([Decimal("5.25"), Decimal("-1.25"), Decimal(3)], pa.decimal128(10, 2)),
        }
    )
    path = tmp_path / "events.parquet"
    pq.write_table(table, path)
    report = run(engine, path, settings, rejects_path=tmp_path / "p.csv")
    assert (report.accepted, report.rejected, report.line_label) == (2, 1, "row")
    assert report.rejects[0][:2] == (3, "missing date")
    with engine.connect() as conn:
        a = read_customers(conn)["a"]
    assert (a["monetary_minor"], a["n_purchase"], a["n_refund"]) == (
        400,
        1,
        1,
    )  # a negative purchase is a refund
    frame = run(engine, table.slice(0, 2), settings)
    assert (frame.accepted, frame.duplicates) == (0, 2)


def test_import_command(engine: Engine, database: Database, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "messy.csv").write_text(MESSY)
    runner = CliRunner()
    base = ["import", "--database-url", database.url]
    done = runner.invoke(service_cli, [*base, "messy.csv"])
    assert done.exit_code == 0, done.output
    assert "accepted    5" in done.stdout and "rejected    7 (in messy.rejects.csv)" in done.stdout
    assert "line 4: non-numeric amount 'abc'" in done.stderr
    assert [int(r["line"]) for r in read_rejects(tmp_path / "messy.rejects.csv")] == REJECTED_LINES
    again = runner.invoke(service_cli, [*base, "messy.csv", "--json", "--rejects", "again.csv"])
    assert again.exit_code == 0, again.output
    payload = json.loads(again.stdout)
    assert (payload["accepted"], payload["duplicates"], payload["rejected"]) == (0, 5, 7)
    assert payload["rejects"][0] == {
        "line": 4,
        "reason": "non-numeric amount 'abc'",
        "raw": "c2 | 2024-05-02 | purchase | abc",
    }
    strict = runner.invoke(service_cli, [*base, "messy.csv", "--strict"])
    assert strict.exit_code == 1 and "line 4: non-numeric amount" in strict.stderr
    assert runner.invoke(service_cli, ["import", "--database-url", database.url]).exit_code == 2
    assert runner.invoke(service_cli, [*base, "messy.csv", "--tz", "Mars/Base"]).exit_code == 2
    missing = runner.invoke(service_cli, [*base, "nope.csv"])
    assert missing.exit_code == 1 and "no such file" in missing.stderr
    mapped = tmp_path / "mapped.csv"
    mapped.write_text("who;when;what;paid\nz1;03.02.2024;purchase;12,50\n")
    done = runner.invoke(
        service_cli,
        [*base, str(mapped), "--customer-col", "who", "--date-col", "when", "--type-col", "what",
         "--amount-col", "paid", "--decimal-comma", "--date-format", "%d.%m.%Y"],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    with engine.connect() as conn:
        z1 = read_customers(conn)["z1"]
    assert z1["monetary_minor"] == 1250 and z1["first_day"] == date(2024, 2, 3).toordinal() - EPOCH_ORDINAL
    assert count_rows(engine, "events") == 6


@pytest.mark.parametrize("form", ["epoch", "parquet-naive", "format"])
def test_moments_and_days_follow_the_zone(
    engine: Engine, database: Database, tmp_path: Path, form: str
) -> None:
    """Each way a date can be read gives the moment whose day in the business zone is the
    day ``score`` counts: 2023-11-14 in New York for all three rows."""
    settings = database.settings(tmp_path, timezone="America/New_York")
    moments = [datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC), datetime(2023, 11, 15, 1, 0, tzinfo=UTC)]
    zone = settings.zone
    if form == "epoch":
        path = tmp_path / "epoch.csv"
        path.write_text("user,ts\n" + "".join(f"u,{int(m.timestamp())}\n" for m in moments))
    elif form == "format":
        path = tmp_path / "format.csv"
        path.write_text("user,ts\n" + "".join(f"u,{m.astimezone(zone):%d/%m/%Y %H:%M}\n" for m in moments))
    else:
        path = tmp_path / "naive.parquet"
        local = [m.astimezone(zone).replace(tzinfo=None) for m in moments]
        pq.write_table(pa.table({"user": ["u", "u"], "ts": pa.array(local, pa.timestamp("us"))}), path)
    report = run(engine, path, settings)
    assert report.accepted == 2
    with engine.connect() as conn:
        stored = list(conn.execute(sa.select(events.c.occurred_at).order_by(events.c.occurred_at)).scalars())
        u = read_customers(conn)["u"]
    expected = [m.replace(second=0) if form == "format" else m for m in moments]
    assert [s.replace(tzinfo=UTC) if s.tzinfo is None else s.astimezone(UTC) for s in stored] == expected
    day = date(2023, 11, 14).toordinal() - EPOCH_ORDINAL
    assert (u["first_day"], u["last_day"], u["last_purchase_day"]) == (day, day, day)
    scored = rfmflow.score(
        path, timezone="America/New_York", as_of=date(2023, 11, 20), rejects_path=tmp_path / "x"
    )
    assert scored.customers.column("recency_days").to_pylist() == [6]


def test_a_large_import_pauses_live_rescoring_and_ends_with_one_run(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "history.csv"
    rows = [f"c{n % 7},2024-0{1 + n % 5}-1{n % 9},purchase,{5 + n},o{n}" for n in range(40)]
    path.write_text("customer_id,order_date,type,amount,order_id\n" + "\n".join(rows) + "\n")
    report = run(engine, path, settings, live_limit=10)
    assert report.accepted == 40 and report.scoring_run is not None
    assert report.as_dict()["scoring_run"] == report.scoring_run
    with engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT id, trigger, customers FROM scoring_runs")).all()
        causes = set(conn.execute(sa.text("SELECT DISTINCT cause FROM segment_transitions")).scalars())
        scored = conn.execute(sa.text("SELECT count(*) FROM customer_scores")).scalar_one()
    assert [tuple(r) for r in runs] == [(report.scoring_run, "cli", 7)]
    assert causes == {"run"} and scored == 7  # scored once, by the run: no live re-score per event
    small = tmp_path / "small.csv"
    small.write_text("customer_id,order_date,type,amount,order_id\nc1,2024-06-01,purchase,9,o99\n")
    assert run(engine, small, settings, live_limit=10).scoring_run is None  # re-scored live
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM scoring_runs")).scalar_one() == 1
        live = conn.execute(sa.text("SELECT cause FROM customer_scores WHERE customer_id = 'c1'"))
    assert live.scalar_one() == "event"

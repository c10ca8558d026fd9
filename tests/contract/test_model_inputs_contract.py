"""The buy-till-you-die model inputs, and schemes that read predictions, are one definition
with identical results on DuckDB, SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from test_engine_contract import AS_OF, CASES, Row, _assert_same

from rfmflow.core.model_inputs import MODEL_INPUT_COLUMNS, build_model_inputs_query
from rfmflow.core.prediction_results import PREDICTION_OUTPUT
from rfmflow.core.query import build_query
from rfmflow.core.scheme import Scheme, scheme_from_dict
from rfmflow.engines.sql_engine import EVENTS_DDL, model_inputs_table, score_table
from rfmflow.schemes import load_scheme

CAL = AS_OF - 60
PREDICTING: dict[str, Any] = {
    "name": "contract-predictions",
    "columns": {"value_left": "clv * p_alive"},
    "segments": [
        {"name": "Slipping VIP", "when": "m_score >= 4 and churn_risk == 'high'"},
        {"name": "Safe", "when": "p_alive >= 0.7"},
        {"name": "Unknown", "when": "p_alive is None"},
        {"name": "Rest", "when": True},
    ],
    "tags": [
        {"name": "at-risk", "when": "p_alive < 0.3"},
        {"name": "soon", "when": "days_to_next_purchase <= 14"},
    ],
}
PRED_DDL = (
    "CREATE TABLE predictions (customer_id TEXT, p_alive DOUBLE PRECISION, "
    "expected_purchases DOUBLE PRECISION, expected_spend DOUBLE PRECISION, clv DOUBLE PRECISION, "
    "churn_risk TEXT, days_to_next_purchase INTEGER, expected_next_purchase INTEGER)"
)


def _events(rows: list[Row]) -> pa.Table:
    return pa.table(
        {
            "customer_id": [r[0] for r in rows],
            "day": pa.array([r[1] for r in rows], pa.int32()),
            "event_type": [r[2] for r in rows],
            "amount_minor": pa.array([r[3] for r in rows], pa.int64()),
            "order_id": [r[4] for r in rows],
        }
    )


def _predictions(rows: list[Row]) -> list[tuple[Any, ...]]:
    """Deterministic made-up predictions for every other customer (the rest get NULL)."""
    out = []
    for i, cust in enumerate(sorted({r[0] for r in rows})):
        if i % 2:
            continue
        p = (i * 37 % 100) / 100
        risk = "high" if p < 0.3 else ("medium" if p < 0.7 else "low")
        out.append((cust, p, p * 3, 20.5, p * 61.25, risk, i % 30, AS_OF + i % 30))
    return out


def _duckdb_inputs(rows: list[Row], cal: int) -> list[dict[str, Any]]:
    con = duckdb.connect()
    con.register("events", _events(rows))
    sql = build_model_inputs_query(load_scheme("rfm11"), calibration_end_day=cal, as_of_day=AS_OF)
    out = [dict(zip(MODEL_INPUT_COLUMNS, r, strict=True)) for r in con.execute(sql).fetchall()]
    con.close()
    return out


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("cal", [AS_OF, CAL])
def test_model_inputs_agree_on_duckdb_and_sqlite(case: str, cal: int) -> None:
    rows = CASES[case]
    reference = _duckdb_inputs(rows, cal)
    conn = sqlite3.connect(":memory:")
    conn.execute(EVENTS_DDL["sqlite"].format(table="events"))
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", rows)
    got = model_inputs_table(
        conn, load_scheme("rfm11"), dialect="sqlite", calibration_end_day=cal, as_of_day=AS_OF
    )
    conn.close()
    _assert_same(reference, got, f"sqlite/{case}/{cal}")


@pytest.mark.postgres
@pytest.mark.parametrize("cal", [AS_OF, CAL])
def test_model_inputs_agree_on_duckdb_and_postgres(pg_conn: Any, cal: int) -> None:
    for case, rows in CASES.items():
        pg_conn.execute("DROP TABLE IF EXISTS events")
        pg_conn.execute(EVENTS_DDL["postgres"].format(table="events"))
        with pg_conn.cursor() as cur:
            cur.executemany("INSERT INTO events VALUES (%s, %s, %s, %s, %s)", rows)
        got = model_inputs_table(
            pg_conn, load_scheme("rfm11"), dialect="postgres", calibration_end_day=cal, as_of_day=AS_OF
        )
        _assert_same(_duckdb_inputs(rows, cal), got, f"postgres/{case}/{cal}")


def test_model_inputs_follow_the_definition() -> None:
    """Same-day purchases are one transaction; refunds and messages are not transactions."""
    rows: list[Row] = [
        ("a", AS_OF - 100, "purchase", 1000, None),
        ("a", AS_OF - 100, "purchase", 500, None),  # same day: one transaction of 15.00
        ("a", AS_OF - 90, "refund", -500, None),  # not a transaction
        ("a", AS_OF - 70, "purchase", 2000, None),  # repeat 1 (calibration)
        ("a", AS_OF - 40, "purchase", 4000, None),  # repeat 2 (calibration)
        ("a", AS_OF - 10, "purchase", 3000, None),  # holdout
        ("a", AS_OF - 10, "purchase", 3000, None),  # same day: still one holdout transaction
        ("b", AS_OF - 5, "purchase", 1000, None),  # first purchase after the calibration end
        ("c", AS_OF - 80, "message", None, None),  # never bought
        ("d", AS_OF - 80, "purchase", 1000, None),
        ("d", AS_OF - 79, "purchase", None, None),  # a repeat without an amount
    ]
    got = {r["customer_id"]: r for r in _duckdb_inputs(rows, AS_OF - 30)}
    assert set(got) == {"a", "d"}
    a = got["a"]
    assert (a["first_day"], a["last_day"], a["x"], a["holdout_x"]) == (AS_OF - 100, AS_OF - 40, 2, 1)
    assert (a["repeat_value_minor"], a["repeat_valued"]) == (6000, 2)
    d = got["d"]
    assert (d["x"], d["repeat_value_minor"], d["repeat_valued"]) == (1, None, 0)


def _score_duckdb(rows: list[Row], scheme: Scheme) -> list[dict[str, Any]]:
    con = duckdb.connect()
    con.register("events", _events(rows))
    preds = _predictions(rows)
    columns = list(zip(*preds, strict=True))
    con.register(
        "predictions",
        pa.table(
            {name: list(col) for name, col in zip(("customer_id", *PREDICTION_OUTPUT), columns, strict=True)}
        ),
    )
    plan = build_query(scheme, as_of_day=AS_OF, has_order_id=True, predictions="predictions")
    out = [dict(zip(plan.columns, r, strict=True)) for r in con.execute(plan.sql).fetchall()]
    con.close()
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_scheme_reading_predictions_agrees_on_duckdb_and_sqlite(case: str) -> None:
    rows, scheme = CASES[case], scheme_from_dict(PREDICTING)
    reference = _score_duckdb(rows, scheme)
    assert {r["segment"] for r in reference} >= {"Safe", "Unknown", "Rest"}
    assert any(r["tags"] and "at-risk" in r["tags"] for r in reference)
    conn = sqlite3.connect(":memory:")
    conn.execute(EVENTS_DDL["sqlite"].format(table="events"))
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", rows)
    conn.execute(PRED_DDL)
    conn.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _predictions(rows))
    got = score_table(conn, scheme, dialect="sqlite", as_of_day=AS_OF, predictions="predictions")
    conn.close()
    _assert_same(reference, got, f"sqlite/{case}")


@pytest.mark.postgres
def test_a_scheme_reading_predictions_agrees_on_duckdb_and_postgres(pg_conn: Any) -> None:
    scheme = scheme_from_dict(PREDICTING)
    for case, rows in CASES.items():
        for table in ("events", "predictions"):
            pg_conn.execute(f"DROP TABLE IF EXISTS {table}")
        pg_conn.execute(EVENTS_DDL["postgres"].format(table="events"))
        pg_conn.execute(PRED_DDL)
        with pg_conn.cursor() as cur:
            cur.executemany("INSERT INTO events VALUES (%s, %s, %s, %s, %s)", rows)
            cur.executemany(
                "INSERT INTO predictions VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", _predictions(rows)
            )
        got = score_table(pg_conn, scheme, dialect="postgres", as_of_day=AS_OF, predictions="predictions")
        _assert_same(_score_duckdb(rows, scheme), got, f"postgres/{case}")

"""Running the RFM query inside a SQL database that holds the events (SQLite, PostgreSQL).

The database needs an events table with the columns described in
:mod:`rfmflow.core.query` (``customer_id, day, event_type, amount_minor`` and optionally
``order_id``). The query is the same definition DuckDB runs on files, transpiled to the
database's dialect; nothing is pulled through Python but the per-customer result.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Any, Protocol

from rfmflow.core.errors import EngineError
from rfmflow.core.model_inputs import MODEL_INPUT_COLUMNS, build_model_inputs_query
from rfmflow.core.query import QueryPlan, build_query
from rfmflow.core.scheme import Scheme

EVENTS_DDL = {
    "sqlite": (
        "CREATE TABLE {table} (customer_id TEXT NOT NULL, day INTEGER NOT NULL, event_type TEXT NOT NULL, "
        "amount_minor INTEGER, order_id TEXT)"
    ),
    "postgres": (
        "CREATE TABLE {table} (customer_id TEXT NOT NULL, day INTEGER NOT NULL, event_type TEXT NOT NULL, "
        "amount_minor BIGINT, order_id TEXT)"
    ),
}


class Connection(Protocol):
    def cursor(self) -> Any: ...


def prepare_sqlite(conn: sqlite3.Connection) -> None:
    """Give SQLite the math function the decayed metrics use (``EXP``), whatever its build."""
    conn.create_function("exp", 1, math.exp, deterministic=True)


def run_query(conn: Connection, plan: QueryPlan) -> list[dict[str, Any]]:
    """Run a compiled plan and return one dict per customer (column names as in the plan)."""
    cur = conn.cursor()
    try:
        cur.execute(plan.sql)
        rows = cur.fetchall()
    except Exception as err:  # DB-API drivers raise their own hierarchies
        raise EngineError(f"{plan.dialect} failed to run the RFM query: {err}") from err
    finally:
        close = getattr(cur, "close", None)
        if close is not None:
            close()
    return [dict(zip(plan.columns, row, strict=True)) for row in rows]


def score_table(
    conn: Connection,
    scheme: Scheme,
    *,
    dialect: str,
    as_of_day: int,
    table: str = "events",
    money_scale: int = 2,
    has_order_id: bool = True,
    predictions: str | None = None,
) -> list[dict[str, Any]]:
    """Score every customer of ``table`` in the database behind ``conn``; ``predictions`` names
    a table of model predictions to join (see :func:`rfmflow.core.query.build_query`)."""
    if dialect == "sqlite" and isinstance(conn, sqlite3.Connection):
        prepare_sqlite(conn)
    plan = build_query(
        scheme,
        as_of_day=as_of_day,
        events=table,
        dialect=dialect,
        money_scale=money_scale,
        has_order_id=has_order_id,
        predictions=predictions,
    )
    return run_query(conn, plan)


def model_inputs_table(
    conn: Connection,
    scheme: Scheme,
    *,
    dialect: str,
    calibration_end_day: int,
    as_of_day: int,
    table: str = "events",
) -> list[dict[str, Any]]:
    """The buy-till-you-die model inputs of every customer (:mod:`rfmflow.core.model_inputs`)."""
    sql = build_model_inputs_query(
        scheme, calibration_end_day=calibration_end_day, as_of_day=as_of_day, events=table, dialect=dialect
    )
    return run_query(conn, QueryPlan(sql=sql, dialect=dialect, columns=MODEL_INPUT_COLUMNS, money_scale=None))

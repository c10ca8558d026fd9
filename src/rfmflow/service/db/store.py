"""The statements ingest needs: idempotent inserts and additive upserts, SQLite and PostgreSQL.

Every write here relies on a unique constraint to decide what is new
(``INSERT ... ON CONFLICT DO NOTHING RETURNING``), never on a read followed by a write, so
concurrent transactions cannot both take the same event or order as new. Rows are sent
sorted by key, so concurrent transactions lock rows in one order and do not deadlock.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.service.db.tables import EVENT_COUNT_COLUMNS, customer_orders, customers, events

EVENT_COLUMNS = (
    ("event_id", "text"),
    ("customer_id", "text"),
    ("event_type", "text"),
    ("occurred_at", "timestamptz"),
    ("received_at", "timestamptz"),
    ("day", "int"),
    ("amount_minor", "bigint"),
    ("currency", "text"),
    ("order_id", "text"),
    ("properties", "jsonb"),
    ("source", "text"),
)
CUSTOMER_COLUMNS = (
    ("customer_id", "text"),
    ("first_day", "int"),
    ("last_day", "int"),
    ("last_purchase_day", "int"),
    ("purchases", "int"),
    ("monetary_minor", "bigint"),
    ("n_events", "int"),
    *((col, "int") for col in EVENT_COUNT_COLUMNS.values()),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
)
ORDER_COLUMNS = (("customer_id", "text"), ("order_id", "text"))
SQLITE_ROWS_PER_STATEMENT = 2000  # 11 parameters a row, well under SQLite's 32,766


def _sqlite_timestamp(value: datetime) -> str:
    """SQLAlchemy's SQLite storage format for a UTC timestamp: ``YYYY-MM-DD HH:MM:SS.ffffff``."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


_SQLITE_CONVERT: dict[str, Callable[[Any], Any]] = {"timestamptz": _sqlite_timestamp, "jsonb": json.dumps}
"""What SQLAlchemy's SQLite types would store: naive UTC text timestamps, JSON text."""


def _pg_value(value: Any, kind: str) -> Any:
    if value is not None and kind == "jsonb":
        return json.dumps(value)
    return value


def _bulk_insert(
    conn: Connection,
    table: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[dict[str, Any]],
    tail: str,
) -> list[tuple[Any, ...]]:
    """``INSERT INTO table (columns) <rows> <tail>`` as few statements as the driver allows.

    PostgreSQL: one statement whatever the number of rows, the values sent as one array per
    column and unnested (no per-row SQL to build or parse). SQLite: multi-row VALUES.
    Hand-written SQL rather than SQLAlchemy's bulk insert: converting every parameter in
    Python was most of the ingest time. Returns the rows of ``tail``'s RETURNING, if any.
    """
    names = ", ".join(name for name, _ in columns)
    returns = "RETURNING" in tail
    if conn.dialect.name == "postgresql":
        arrays = ", ".join(f"%({name})b::{kind}[]" for name, kind in columns)
        params = {name: [_pg_value(r[name], kind) for r in rows] for name, kind in columns}
        sql = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) {tail}"
        result = conn.exec_driver_sql(sql, params)
        return [tuple(r) for r in result] if returns else []
    if conn.dialect.name != "sqlite":
        raise ValueError(f"unsupported database {conn.dialect.name!r}")
    out: list[tuple[Any, ...]] = []
    converters = [(name, _SQLITE_CONVERT.get(kind)) for name, kind in columns]
    one = "(" + ", ".join("?" * len(columns)) + ")"
    for start in range(0, len(rows), SQLITE_ROWS_PER_STATEMENT):
        chunk = rows[start : start + SQLITE_ROWS_PER_STATEMENT]
        flat: list[Any] = []
        for r in chunk:
            for name, convert in converters:
                value = r[name]
                flat.append(value if convert is None or value is None else convert(value))
        sql = f"INSERT INTO {table} ({names}) VALUES {', '.join([one] * len(chunk))} {tail}"
        result = conn.exec_driver_sql(sql, tuple(flat))
        if returns:
            out.extend(tuple(r) for r in result)
    return out


def insert_new_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert the rows whose ``event_id`` is new; return the ids actually inserted."""
    if not rows:
        return set()
    ordered = sorted(rows, key=lambda r: r["event_id"])
    returned = _bulk_insert(
        conn, "events", EVENT_COLUMNS, ordered, "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
    )
    return {r[0] for r in returned}


def insert_new_orders(conn: Connection, pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Record (customer_id, order_id) pairs; return the ones not seen before."""
    if not pairs:
        return set()
    rows = [{"customer_id": c, "order_id": o} for c, o in sorted(pairs)]
    returned = _bulk_insert(
        conn,
        "customer_orders",
        ORDER_COLUMNS,
        rows,
        "ON CONFLICT (customer_id, order_id) DO NOTHING RETURNING customer_id, order_id",
    )
    return {(r[0], r[1]) for r in returned}


def _upsert_customers_tail(dialect: str) -> str:
    least, greatest = ("LEAST", "GREATEST") if dialect == "postgresql" else ("min", "max")

    def nullable_max(col: str) -> str:
        if dialect == "postgresql":  # GREATEST ignores NULLs
            return f"{col} = GREATEST(customers.{col}, excluded.{col})"
        return (
            f"{col} = CASE WHEN customers.{col} IS NULL THEN excluded.{col} "
            f"WHEN excluded.{col} > customers.{col} THEN excluded.{col} ELSE customers.{col} END"
        )

    sets = [
        f"first_day = {least}(customers.first_day, excluded.first_day)",
        f"last_day = {greatest}(customers.last_day, excluded.last_day)",
        nullable_max("last_purchase_day"),
        f"created_at = {least}(customers.created_at, excluded.created_at)",
        f"updated_at = {greatest}(customers.updated_at, excluded.updated_at)",
    ]
    for col in ("purchases", "monetary_minor", "n_events", *EVENT_COUNT_COLUMNS.values()):
        sets.append(f"{col} = customers.{col} + excluded.{col}")
    return "ON CONFLICT (customer_id) DO UPDATE SET " + ", ".join(sets)


def add_to_customers(conn: Connection, deltas: Sequence[dict[str, Any]]) -> None:
    """Create customers or add ``deltas`` (one row per customer) to their aggregates.

    Days combine as min/max (late and out-of-order events land where they belong), counts
    and money add up, ``created_at``/``updated_at`` keep the first/latest ``received_at``.
    (Timestamps compare correctly as text in SQLite: one fixed-width UTC format.)
    """
    if not deltas:
        return
    ordered = sorted(deltas, key=lambda d: d["customer_id"])
    _bulk_insert(conn, "customers", CUSTOMER_COLUMNS, ordered, _upsert_customers_tail(conn.dialect.name))


def customers_from_events() -> sa.Select[Any]:
    """SELECT of every customer's aggregates computed from ``events`` alone (the rebuild).

    ``purchases`` counts as the RFM query's ``frequency`` with ``count: orders`` does:
    distinct order ids of purchases, plus purchases without an order id.
    """
    e = events.c
    is_purchase = e.event_type == "purchase"
    has_money = e.event_type.in_(("purchase", "refund"))
    counts = [
        sa.func.count(sa.case((e.event_type == kind, 1))).label(col)
        for kind, col in EVENT_COUNT_COLUMNS.items()
    ]
    return sa.select(
        e.customer_id,
        sa.func.min(e.day).label("first_day"),
        sa.func.max(e.day).label("last_day"),
        sa.func.max(sa.case((is_purchase, e.day))).label("last_purchase_day"),
        (
            sa.func.count(sa.distinct(sa.case((is_purchase, e.order_id))))
            + sa.func.count(sa.case((is_purchase & e.order_id.is_(None), 1)))
        ).label("purchases"),
        sa.cast(sa.func.coalesce(sa.func.sum(sa.case((has_money, e.amount_minor))), 0), sa.BigInteger).label(
            "monetary_minor"
        ),
        sa.func.count().label("n_events"),
        *counts,
        sa.func.min(e.received_at).label("created_at"),
        sa.func.max(e.received_at).label("updated_at"),
    ).group_by(e.customer_id)


def rebuild_derived(conn: Connection) -> int:
    """Replace ``customers`` and ``customer_orders`` by what ``events`` says; return customers."""
    conn.execute(sa.delete(customer_orders))
    conn.execute(sa.delete(customers))
    e = events.c
    orders = (
        sa.select(e.customer_id, e.order_id)
        .where(e.event_type == "purchase", e.order_id.is_not(None))
        .group_by(e.customer_id, e.order_id)
    )
    conn.execute(sa.insert(customer_orders).from_select(["customer_id", "order_id"], orders))
    query = customers_from_events()
    conn.execute(sa.insert(customers).from_select([col.name for col in query.selected_columns], query))
    return int(conn.execute(sa.select(sa.func.count()).select_from(customers)).scalar_one())


def read_customers(conn: Connection) -> dict[str, dict[str, Any]]:
    """Every customer's row, by id (for comparisons and tests)."""
    rows = conn.execute(sa.select(customers).order_by(customers.c.customer_id)).mappings()
    return {row["customer_id"]: dict(row) for row in rows}


def read_customer(conn: Connection, customer_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(customers).where(customers.c.customer_id == customer_id)).mappings().first()
    return dict(row) if row is not None else None


def insert_or_ignore(conn: Connection, table: sa.Table, values: Mapping[str, Any]) -> bool:
    """Insert one row unless it would break a unique constraint; whether it was inserted
    (``RETURNING`` tells: for a table with a generated id PostgreSQL's row count is unknown)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        statement: Any = pg_insert(table)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(table)
    key = next(iter(table.primary_key.columns))
    return (
        conn.execute(statement.values(**values).on_conflict_do_nothing().returning(key)).first() is not None
    )

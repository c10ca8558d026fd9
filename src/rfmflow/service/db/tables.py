"""The service's tables (SQLAlchemy Core), the one description the migrations must match.

``events`` is the source of truth (append-only, unique by ``event_id``). ``customers`` and
``customer_orders`` are derived from it and can be rebuilt
(:func:`rfmflow.service.ingest.rebuild_customers`). ``events`` has the columns the RFM query
of :mod:`rfmflow.core.query` reads (``customer_id, day, event_type, amount_minor,
order_id``), so scoring runs on it in place.

Days are whole days since 1970-01-01 of the event's calendar date in the business time zone
(the ``RFMFLOW_TIMEZONE`` setting), as ``rfmflow score --tz`` counts them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from rfmflow.service.events import EVENT_TYPES


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back time-zone aware (UTC).

    PostgreSQL keeps it as ``timestamptz``; SQLite has no zones, so it is stored as naive UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the service stores UTC timestamps only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def json_type() -> sa.types.TypeEngine[Any]:
    """JSON (text in SQLite), JSONB in PostgreSQL."""
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

SOURCES = ("api", "segment", "stripe", "shopify", "woocommerce", "import", "demo")
"""Where an event came from (``events.source``)."""

events = sa.Table(
    "events",
    metadata,
    sa.Column("event_id", sa.String(128), primary_key=True, comment="the sender's idempotency key"),
    sa.Column("customer_id", sa.String(256), nullable=False),
    sa.Column("event_type", sa.String(32), nullable=False),
    sa.Column("occurred_at", UTCDateTime(), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("day", sa.Integer(), nullable=False, comment="business-time-zone day, days since 1970-01-01"),
    sa.Column("amount_minor", sa.BigInteger(), nullable=True, comment="minor units; refunds negative"),
    sa.Column("currency", sa.String(3), nullable=True),
    sa.Column("order_id", sa.String(128), nullable=True),
    sa.Column("properties", json_type(), nullable=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Index(None, "customer_id", "day"),
)

EVENT_COUNT_COLUMNS = {kind: f"n_{kind}" for kind in EVENT_TYPES}
"""``customers`` column counting each event type (``n_purchase``, ``n_message``, ...)."""

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("customer_id", sa.String(256), primary_key=True),
    sa.Column("first_day", sa.Integer(), nullable=False, comment="day of the first event of any type"),
    sa.Column("last_day", sa.Integer(), nullable=False, comment="day of the last event of any type"),
    sa.Column("last_purchase_day", sa.Integer(), nullable=True),
    sa.Column("purchases", sa.Integer(), nullable=False, comment="distinct orders (frequency, rfm11)"),
    sa.Column("monetary_minor", sa.BigInteger(), nullable=False, comment="purchases net of refunds"),
    sa.Column("n_events", sa.Integer(), nullable=False),
    *(sa.Column(col, sa.Integer(), nullable=False) for col in EVENT_COUNT_COLUMNS.values()),
    sa.Column("created_at", UTCDateTime(), nullable=False, comment="received_at of the first event"),
    sa.Column("updated_at", UTCDateTime(), nullable=False, comment="received_at of the latest event"),
)

customer_orders = sa.Table(
    "customer_orders",
    metadata,
    sa.Column("customer_id", sa.String(256), primary_key=True),
    sa.Column("order_id", sa.String(128), primary_key=True),
    comment="orders seen per customer, so the lines of one order count as one purchase",
)

ROLES = ("admin", "analyst", "agent", "ingest")

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False, unique=True),
    sa.Column("secret_hash", sa.String(64), nullable=False, comment="hex SHA-256 of the secret part"),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.CheckConstraint("role IN ('admin', 'analyst', 'agent', 'ingest')", name="role"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False, comment="'cli:<user>' or 'key:<id>'"),
    sa.Column("action", sa.String(64), nullable=False, comment="for example key.create, key.revoke"),
    sa.Column("target", sa.String(256), nullable=True),
    sa.Column("details", json_type(), nullable=True),
    sa.Index(None, "at"),
)

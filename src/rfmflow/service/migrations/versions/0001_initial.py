"""The first schema: events, customer aggregates, orders per customer, API keys, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copies: a migration must not change when the code it was written with changes.
EVENT_TYPES = ("purchase", "refund", "message", "command", "click", "open", "visit", "support_ticket",
               "signup", "reply")  # fmt: skip


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("event_id", sa.String(128), nullable=False, comment="the sender's idempotency key"),
        sa.Column("customer_id", sa.String(256), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        _ts("occurred_at"),
        _ts("received_at"),
        sa.Column(
            "day", sa.Integer(), nullable=False, comment="business-time-zone day, days since 1970-01-01"
        ),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True, comment="minor units; refunds negative"),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("order_id", sa.String(128), nullable=True),
        sa.Column("properties", _json(), nullable=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_events"),
    )
    op.create_index("ix_events_customer_id_day", "events", ["customer_id", "day"])

    op.create_table(
        "customers",
        sa.Column("customer_id", sa.String(256), nullable=False),
        sa.Column("first_day", sa.Integer(), nullable=False, comment="day of the first event of any type"),
        sa.Column("last_day", sa.Integer(), nullable=False, comment="day of the last event of any type"),
        sa.Column("last_purchase_day", sa.Integer(), nullable=True),
        sa.Column("purchases", sa.Integer(), nullable=False, comment="distinct orders (frequency, rfm11)"),
        sa.Column("monetary_minor", sa.BigInteger(), nullable=False, comment="purchases net of refunds"),
        sa.Column("n_events", sa.Integer(), nullable=False),
        *(sa.Column(f"n_{kind}", sa.Integer(), nullable=False) for kind in EVENT_TYPES),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, comment="received_at of the first event"
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="received_at of the latest event",
        ),
        sa.PrimaryKeyConstraint("customer_id", name="pk_customers"),
    )

    op.create_table(
        "customer_orders",
        sa.Column("customer_id", sa.String(256), nullable=False),
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "order_id", name="pk_customer_orders"),
        comment="orders seen per customer, so the lines of one order count as one purchase",
    )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False, comment="hex SHA-256 of the secret part"),
        sa.Column("role", sa.String(16), nullable=False),
        _ts("created_at"),
        _ts("revoked_at", nullable=True),
        sa.CheckConstraint("role IN ('admin', 'analyst', 'agent', 'ingest')", name="ck_api_keys_role"),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("prefix", name="uq_api_keys_prefix"),
    )

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _ts("at"),
        sa.Column("actor", sa.String(200), nullable=False, comment="'cli:<user>' or 'key:<id>'"),
        sa.Column("action", sa.String(64), nullable=False, comment="for example key.create, key.revoke"),
        sa.Column("target", sa.String(256), nullable=True),
        sa.Column("details", _json(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("api_keys")
    op.drop_table("customer_orders")
    op.drop_table("customers")
    op.drop_index("ix_events_customer_id_day", table_name="events")
    op.drop_table("events")

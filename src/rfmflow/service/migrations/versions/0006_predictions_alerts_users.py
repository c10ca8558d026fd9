"""Predictions in the service, alerts and their occurrences, weekly reports, dashboard users,
GDPR erasures, and an index on ``events.received_at`` for automation's event feed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, nullable: bool = False, comment: str | None = None) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, comment=comment)


def upgrade() -> None:
    op.create_index("ix_events_received_at", "events", ["received_at"])
    op.create_table(
        "prediction_fits",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("as_of_day", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True, comment="the scoring run it followed, if any"),
        sa.Column(
            "model",
            sa.String(length=16),
            nullable=False,
            comment="mbgnbd, bgnbd or paretonbd (+ gamma-gamma)",
        ),
        sa.Column("time_unit", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False, comment="done or failed"),
        sa.Column("params", _json(), nullable=True, comment="fitted parameters of both models"),
        sa.Column("summary", _json(), nullable=True, comment="churn counts, expected revenue by segment"),
        sa.Column("customers", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True, comment="why the fit failed"),
        _ts("started_at"),
        _ts("finished_at", nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.CheckConstraint("status IN ('running', 'done', 'failed')", name="ck_prediction_fits_status"),
        sa.PrimaryKeyConstraint("id", name="pk_prediction_fits"),
    )
    op.create_table(
        "customer_predictions",
        sa.Column("customer_id", sa.String(length=256), nullable=False),
        sa.Column("fit_id", sa.Integer(), nullable=False),
        sa.Column("p_alive", sa.Float(), nullable=True),
        sa.Column("expected_purchases", sa.Float(), nullable=True, comment="within the fit's horizon"),
        sa.Column(
            "expected_spend_minor", sa.BigInteger(), nullable=True, comment="mean order value, minor units"
        ),
        sa.Column("clv_minor", sa.BigInteger(), nullable=True, comment="discounted, minor units"),
        sa.Column("churn_risk", sa.String(length=8), nullable=True, comment="low, medium or high"),
        sa.Column("days_to_next_purchase", sa.Float(), nullable=True),
        _ts("predicted_at"),
        sa.PrimaryKeyConstraint("customer_id", name="pk_customer_predictions"),
    )
    op.create_index(
        "ix_customer_predictions_churn_risk_customer_id",
        "customer_predictions",
        ["churn_risk", "customer_id"],
    )
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False, comment="segment_growth, metric_drop, ..."),
        sa.Column("params", _json(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False, comment="telegram, email or webhook"),
        sa.Column("target", sa.String(length=500), nullable=False, comment="chat id, address or URL"),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        _ts("created_at"),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_alert_rules"),
        sa.UniqueConstraint("name", name="uq_alert_rules_name"),
    )
    op.create_table(
        "alert_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column(
            "occurrence",
            sa.String(length=200),
            nullable=False,
            comment="one row, one delivery per occurrence",
        ),
        _ts("fired_at"),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", _json(), nullable=True),
        sa.Column(
            "status",
            sa.String(length=16),
            nullable=False,
            comment="pending, sending, sent, failed or unknown",
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("delivered_at", nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alert_events"),
        sa.UniqueConstraint("rule_id", "occurrence", name="uq_alert_events_rule_id_occurrence"),
    )
    op.create_index("ix_alert_events_fired_at", "alert_events", ["fired_at"])
    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False, comment="weekly"),
        _ts("period_start"),
        _ts("period_end"),
        _ts("generated_at"),
        sa.Column("summary", _json(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False, comment="self-contained page"),
        sa.Column("deliveries", _json(), nullable=True, comment="per target: status, at, error"),
        sa.PrimaryKeyConstraint("id", name="pk_reports"),
        sa.UniqueConstraint("kind", "period_end", name="uq_reports_kind_period_end"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=300), nullable=False, comment="scrypt, salted"),
        sa.Column("role", sa.String(length=16), nullable=False),
        _ts("created_at"),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        _ts("disabled_at", nullable=True),
        _ts("last_login_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )
    op.create_table(
        "erasures",
        sa.Column("customer_id", sa.String(length=256), nullable=False),
        _ts("erased_at"),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("summary", _json(), nullable=True, comment="what was removed and what was kept"),
        sa.PrimaryKeyConstraint("customer_id", name="pk_erasures"),
        comment="customers whose personal data was erased on request (GDPR); their counts remain",
    )


def downgrade() -> None:
    op.drop_table("erasures")
    op.drop_table("users")
    op.drop_table("reports")
    op.drop_index("ix_alert_events_fired_at", table_name="alert_events")
    op.drop_table("alert_events")
    op.drop_table("alert_rules")
    op.drop_index("ix_customer_predictions_churn_risk_customer_id", table_name="customer_predictions")
    op.drop_table("customer_predictions")
    op.drop_table("prediction_fits")
    op.drop_index("ix_events_received_at", table_name="events")

"""Scoring: scheme versions, customer scores, scoring runs, segment transitions, jobs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, *, nullable: bool = False, comment: str | None = None) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, comment=comment)


def upgrade() -> None:
    op.create_table(
        "scheme_versions",
        sa.Column(
            "version", sa.Integer(), autoincrement=False, nullable=False, comment="1, 2, ...; newest active"
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("yaml", sa.Text(), nullable=False, comment="the scheme as given"),
        _ts("created_at"),
        sa.Column(
            "created_by", sa.String(200), nullable=False, comment="'key:<id>', 'cli:<user>' or 'builtin'"
        ),
        sa.PrimaryKeyConstraint("version", name="pk_scheme_versions"),
    )

    op.create_table(
        "customer_scores",
        sa.Column("customer_id", sa.String(256), nullable=False),
        sa.Column("as_of_day", sa.Integer(), nullable=False, comment="the day the scores are for"),
        sa.Column("scheme_version", sa.Integer(), nullable=False),
        sa.Column("recency_days", sa.Integer(), nullable=True),
        sa.Column("frequency", sa.Integer(), nullable=False),
        sa.Column("monetary_minor", sa.BigInteger(), nullable=True, comment="when M is money, minor units"),
        sa.Column("monetary", sa.Float(), nullable=True, comment="when M is not money (a count or a field)"),
        sa.Column("r_value", sa.Float(), nullable=True, comment="the value r_score is computed from"),
        sa.Column("f_value", sa.Float(), nullable=True, comment="the value f_score is computed from"),
        sa.Column("m_value", sa.Float(), nullable=True, comment="the value m_score is computed from"),
        sa.Column("tenure_days", sa.Integer(), nullable=True),
        sa.Column("lifecycle", sa.String(16), nullable=True),
        sa.Column("r_score", sa.Integer(), nullable=False),
        sa.Column("f_score", sa.Integer(), nullable=False),
        sa.Column("m_score", sa.Integer(), nullable=True),
        sa.Column("rfm", sa.String(8), nullable=False),
        sa.Column("segment", sa.String(64), nullable=False),
        sa.Column("tags", sa.Text(), nullable=True, comment="rule tags, ';'-separated"),
        _ts("scored_at"),
        sa.Column("cause", sa.String(16), nullable=False, comment="run, event or scheme"),
        sa.Column("run_id", sa.Integer(), nullable=True, comment="the run of the scores (NULL: an event)"),
        sa.PrimaryKeyConstraint("customer_id", name="pk_customer_scores"),
    )
    op.create_index("ix_customer_scores_segment_customer_id", "customer_scores", ["segment", "customer_id"])

    op.create_table(
        "scoring_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("as_of_day", sa.Integer(), nullable=False),
        sa.Column("scheme_version", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False, comment="schedule, api, cli or scheme"),
        sa.Column("actor", sa.String(200), nullable=True),
        _ts("started_at"),
        _ts("finished_at", nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("customers", sa.Integer(), nullable=True),
        sa.Column("moves", sa.Integer(), nullable=True, comment="segment transitions the run recorded"),
        sa.Column("segment_counts", _json(), nullable=True),
        sa.Column("score_counts", _json(), nullable=True, comment="customers per r/f/m score"),
        sa.Column("bands", _json(), nullable=True, comment="per score the min/max value (live re-scoring)"),
        sa.PrimaryKeyConstraint("id", name="pk_scoring_runs"),
    )

    op.create_table(
        "segment_transitions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("customer_id", sa.String(256), nullable=False),
        sa.Column("from_segment", sa.String(64), nullable=True, comment="NULL: first scored"),
        sa.Column("to_segment", sa.String(64), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False, comment="business day the move was seen (as-of)"),
        _ts("at", comment="run start, or the event's occurred_at"),
        sa.Column("cause", sa.String(16), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("scheme_version", sa.Integer(), nullable=False),
        sa.CheckConstraint("cause IN ('run', 'event', 'scheme')", name="ck_segment_transitions_cause"),
        sa.PrimaryKeyConstraint("id", name="pk_segment_transitions"),
    )
    op.create_index("ix_segment_transitions_customer_id_day", "segment_transitions", ["customer_id", "day"])
    op.create_index("ix_segment_transitions_day", "segment_transitions", ["day"])

    op.create_table(
        "jobs",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("schedule", sa.String(100), nullable=False, comment="'daily HH:MM' or a 5-field cron"),
        _ts("next_run_at", nullable=True),
        sa.Column("locked_by", sa.String(200), nullable=True, comment="the worker holding the lease"),
        _ts("locked_until", nullable=True),
        sa.Column("last_run_id", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_jobs"),
    )


def downgrade() -> None:
    op.drop_table("jobs")
    op.drop_index("ix_segment_transitions_day", table_name="segment_transitions")
    op.drop_index("ix_segment_transitions_customer_id_day", table_name="segment_transitions")
    op.drop_table("segment_transitions")
    op.drop_table("scoring_runs")
    op.drop_index("ix_customer_scores_segment_customer_id", table_name="customer_scores")
    op.drop_table("customer_scores")
    op.drop_table("scheme_versions")

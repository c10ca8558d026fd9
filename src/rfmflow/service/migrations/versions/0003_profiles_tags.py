"""Profiles and tags: customer profiles (identify traits), tag groups, tags, customer tags,
tag changes; per-segment statistics on each scoring run; an index on events.order_id.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, *, nullable: bool = False, comment: str | None = None) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, comment=comment)


def upgrade() -> None:
    op.create_table(
        "customer_profiles",
        sa.Column("customer_id", sa.String(256), nullable=False),
        sa.Column("traits", _json(), nullable=True, comment="identify traits, merged (newest wins)"),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("phone", sa.String(64), nullable=True),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=True, comment="IANA zone, for quiet hours and waits"),
        sa.Column("language", sa.String(16), nullable=True),
        sa.Column("telegram_chat_id", sa.BigInteger(), nullable=True),
        _ts("updated_at"),
        sa.Column("source", sa.String(32), nullable=False, comment="where the latest traits came from"),
        sa.PrimaryKeyConstraint("customer_id", name="pk_customer_profiles"),
    )
    op.create_index("ix_customer_profiles_email", "customer_profiles", ["email"])
    op.create_index("ix_customer_profiles_telegram_chat_id", "customer_profiles", ["telegram_chat_id"])

    op.create_table(
        "tag_groups",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("exclusive", sa.Boolean(), nullable=False, comment="at most one tag of it per customer"),
        _ts("created_at"),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_tag_groups"),
    )
    op.create_table(
        "tags",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("group_name", sa.String(64), nullable=True),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        _ts("created_at"),
        sa.Column(
            "created_by", sa.String(200), nullable=False, comment="'scheme:<version>', 'key:<id>', ..."
        ),
        sa.CheckConstraint("kind IN ('rule', 'manual')", name="ck_tags_kind"),
        sa.ForeignKeyConstraint(["group_name"], ["tag_groups.name"], name="fk_tags_group_name_tag_groups"),
        sa.PrimaryKeyConstraint("name", name="pk_tags"),
    )
    op.create_table(
        "customer_tags",
        sa.Column("customer_id", sa.String(256), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False, comment="the tag's kind when it was added"),
        _ts("added_at"),
        sa.Column("added_by", sa.String(200), nullable=False, comment="'run:<id>', 'event', 'key:<id>', ..."),
        sa.PrimaryKeyConstraint("customer_id", "tag", name="pk_customer_tags"),
    )
    op.create_index("ix_customer_tags_tag_customer_id", "customer_tags", ["tag", "customer_id"])
    op.create_table(
        "tag_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("customer_id", sa.String(256), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.Column("change", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        _ts("at"),
        sa.Column("actor", sa.String(200), nullable=False, comment="'run:<id>', 'event', 'key:<id>', ..."),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("change IN ('added', 'removed')", name="ck_tag_changes_change"),
        sa.PrimaryKeyConstraint("id", name="pk_tag_changes"),
        comment="every tag added or removed, for history, audit and automation triggers",
    )
    op.create_index("ix_tag_changes_customer_id_at", "tag_changes", ["customer_id", "at"])
    op.create_index("ix_tag_changes_at", "tag_changes", ["at"])

    op.add_column(
        "scoring_runs",
        sa.Column(
            "segment_stats",
            _json(),
            nullable=True,
            comment="per segment: customers, revenue, mean recency/frequency (the run's snapshot)",
        ),
    )
    op.create_index("ix_events_order_id", "events", ["order_id"])


def downgrade() -> None:
    op.drop_index("ix_events_order_id", table_name="events")
    with op.batch_alter_table("scoring_runs") as batch:
        batch.drop_column("segment_stats")
    op.drop_index("ix_tag_changes_at", table_name="tag_changes")
    op.drop_index("ix_tag_changes_customer_id_at", table_name="tag_changes")
    op.drop_table("tag_changes")
    op.drop_index("ix_customer_tags_tag_customer_id", table_name="customer_tags")
    op.drop_table("customer_tags")
    op.drop_table("tags")
    op.drop_table("tag_groups")
    op.drop_index("ix_customer_profiles_telegram_chat_id", table_name="customer_profiles")
    op.drop_index("ix_customer_profiles_email", table_name="customer_profiles")
    op.drop_table("customer_profiles")

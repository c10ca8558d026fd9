"""Automation: workflows, enrolments and their steps, the outbox, hand-off tasks, consent,
broadcasts and the cursors of the feeds automation reads.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "automation_cursors",
        sa.Column(
            "name", sa.String(length=64), nullable=False, comment="a feed: transitions, tag_changes, events"
        ),
        sa.Column(
            "seen_until",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="rows stamped before this were read",
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_automation_cursors"),
        comment="how far each feed was read; feeds are re-read with an overlap and handled idempotently",
    )
    op.create_table(
        "broadcasts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("message", _json(), nullable=False, comment="templates, as a workflow's send step"),
        sa.Column("audience", _json(), nullable=False, comment="segments, tags and filters"),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("audience_count", sa.Integer(), nullable=True, comment="when it was confirmed"),
        sa.Column(
            "cap_policy", sa.String(length=8), nullable=False, comment="skip or defer past a frequency cap"
        ),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('draft', 'scheduled', 'running', 'paused', 'stopped', 'done')",
            name="ck_broadcasts_status",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_broadcasts"),
    )
    op.create_table(
        "consent_changes",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("customer_id", sa.String(length=256), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_consent_changes"),
    )
    op.create_index(
        "ix_consent_changes_customer_id_at", "consent_changes", ["customer_id", "at"], unique=False
    )
    op.create_table(
        "consents",
        sa.Column("customer_id", sa.String(length=256), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "channel", name="pk_consents"),
    )
    op.create_table(
        "enrolments",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("workflow_id", sa.Integer(), nullable=False),
        sa.Column("workflow_version", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.String(length=256), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "step", sa.String(length=64), nullable=True, comment="where the journey is (NULL: finished)"
        ),
        sa.Column(
            "due_at", sa.DateTime(timezone=True), nullable=True, comment="when the engine looks at it next"
        ),
        sa.Column(
            "waiting_for", sa.String(length=32), nullable=True, comment="the event type a wait waits for"
        ),
        sa.Column("parked", sa.Boolean(), nullable=False, comment="sitting in a wait that has begun"),
        sa.Column("steps_taken", sa.Integer(), nullable=False),
        sa.Column("branch", sa.String(length=64), nullable=True, comment="the split branch, or 'holdout'"),
        sa.Column(
            "segment", sa.String(length=64), nullable=True, comment="the customer's segment at enrolment"
        ),
        sa.Column(
            "cause",
            sa.String(length=200),
            nullable=False,
            comment="what enrolled them: 'transition:<id>', ...",
        ),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("converted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revenue_minor", sa.BigInteger(), nullable=True, comment="attributed revenue"),
        sa.Column("locked_by", sa.String(length=200), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'completed', 'converted', 'exited', 'holdout', 'stopped')",
            name="ck_enrolments_status",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_enrolments"),
        sa.UniqueConstraint("workflow_id", "cause", name="uq_enrolments_workflow_id_cause"),
    )
    op.create_index("ix_enrolments_customer_id_status", "enrolments", ["customer_id", "status"], unique=False)
    op.create_index("ix_enrolments_status_due_at", "enrolments", ["status", "due_at"], unique=False)
    op.create_index(
        "ix_enrolments_workflow_id_customer_id_enrolled_at",
        "enrolments",
        ["workflow_id", "customer_id", "enrolled_at"],
        unique=False,
    )
    op.create_index(
        "uq_enrolments_one_active",
        "enrolments",
        ["workflow_id", "customer_id"],
        unique=True,
        sqlite_where=sa.text("status = 'active'"),
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "journey_steps",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("enrolment_id", sa.BigInteger(), nullable=False),
        sa.Column("workflow_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=64), server_default="", nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_journey_steps"),
        comment="each step a journey went through, for per-step results",
    )
    op.create_index("ix_journey_steps_enrolment_id", "journey_steps", ["enrolment_id"], unique=False)
    op.create_index(
        "ix_journey_steps_workflow_id_step", "journey_steps", ["workflow_id", "step"], unique=False
    )
    op.create_table(
        "outbox",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False, comment="one decision, one row"),
        sa.Column("customer_id", sa.String(length=256), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column(
            "recipient", sa.String(length=512), nullable=True, comment="chat id, address or URL when decided"
        ),
        sa.Column("message", _json(), nullable=False, comment="the rendered message"),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "not_before",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="send at or after (quiet hours, deferrals)",
        ),
        sa.Column("locked_by", sa.String(length=200), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True, comment="why it failed, was skipped or is unknown"),
        sa.Column(
            "provider_id", sa.String(length=200), nullable=True, comment="the channel's id for the message"
        ),
        sa.Column("workflow_id", sa.Integer(), nullable=True),
        sa.Column("enrolment_id", sa.BigInteger(), nullable=True),
        sa.Column("step", sa.String(length=64), nullable=True),
        sa.Column("broadcast_id", sa.Integer(), nullable=True),
        sa.Column(
            "segment", sa.String(length=64), nullable=True, comment="the customer's segment when decided"
        ),
        sa.Column("clicked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replied_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'delivered', 'failed', 'blocked', 'deferred', 'unknown', "
            "'skipped', 'cancelled')",
            name="ck_outbox_status",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("dedupe_key", name="uq_outbox_dedupe_key"),
        comment="every message decided, written with the decision; a worker sends and records the outcome",
    )
    op.create_index("ix_outbox_broadcast_id_status", "outbox", ["broadcast_id", "status"], unique=False)
    op.create_index(
        "ix_outbox_customer_id_channel_sent_at", "outbox", ["customer_id", "channel", "sent_at"], unique=False
    )
    op.create_index("ix_outbox_status_not_before", "outbox", ["status", "not_before"], unique=False)
    op.create_index("ix_outbox_workflow_id_step", "outbox", ["workflow_id", "step"], unique=False)
    op.create_table(
        "tasks",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("customer_id", sa.String(length=256), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.String(length=8), nullable=False),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False, comment="open, done or cancelled"),
        sa.Column("segment", sa.String(length=64), nullable=True),
        sa.Column("workflow_id", sa.Integer(), nullable=True),
        sa.Column("enrolment_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        comment="hand-offs to people",
    )
    op.create_index("ix_tasks_status_queue_priority", "tasks", ["status", "queue", "priority"], unique=False)
    op.create_table(
        "workflows",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, comment="1, 2, ...: each change of the YAML"),
        sa.Column("yaml", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "activated_at", sa.DateTime(timezone=True), nullable=True, comment="'new' entry counts from here"
        ),
        sa.CheckConstraint("status IN ('draft', 'active', 'paused', 'stopped')", name="ck_workflows_status"),
        sa.PrimaryKeyConstraint("id", name="pk_workflows"),
        sa.UniqueConstraint("name", name="uq_workflows_name"),
    )
    op.create_table(
        "workflow_versions",
        sa.Column("workflow_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("yaml", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("workflow_id", "version", name="pk_workflow_versions"),
        comment="every version of each workflow: running journeys keep the version they enrolled in",
    )
    # ### end Alembic commands ###


def downgrade() -> None:
    op.drop_table("workflow_versions")
    op.drop_table("workflows")
    op.drop_table("tasks")
    op.drop_table("outbox")
    op.drop_table("journey_steps")
    op.drop_table("enrolments")
    op.drop_table("consents")
    op.drop_table("consent_changes")
    op.drop_table("broadcasts")
    op.drop_table("automation_cursors")

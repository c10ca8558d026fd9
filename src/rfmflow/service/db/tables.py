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

SOURCES = ("api", "segment", "stripe", "shopify", "woocommerce", "import", "demo", "telegram")
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
    sa.Index(None, "order_id"),
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

# --- scoring (schemes, scores, runs, transitions, jobs) -------------------------------------
NO_SEGMENT = "(no segment)"
"""``segment`` of a customer no rule of the scheme matched."""
CAUSES = ("run", "event", "scheme")
"""Why a customer's segment moved (``segment_transitions.cause``)."""


def _id_type() -> sa.types.TypeEngine[int]:
    """BIGINT in PostgreSQL; INTEGER in SQLite, where only ``INTEGER PRIMARY KEY`` autoincrements."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


scheme_versions = sa.Table(
    "scheme_versions",
    metadata,
    sa.Column(
        "version", sa.Integer(), primary_key=True, autoincrement=False, comment="1, 2, ...; newest active"
    ),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("yaml", sa.Text(), nullable=False, comment="the scheme as given"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False, comment="'key:<id>', 'cli:<user>' or 'builtin'"),
)

customer_scores = sa.Table(
    "customer_scores",
    metadata,
    sa.Column("customer_id", sa.String(256), primary_key=True),
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
    sa.Column("scored_at", UTCDateTime(), nullable=False),
    sa.Column("cause", sa.String(16), nullable=False, comment="run, event or scheme"),
    sa.Column("run_id", sa.Integer(), nullable=True, comment="the run of the scores (NULL: an event)"),
    sa.Index(None, "segment", "customer_id"),
)

scoring_runs = sa.Table(
    "scoring_runs",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("as_of_day", sa.Integer(), nullable=False),
    sa.Column("scheme_version", sa.Integer(), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False, comment="schedule, api, cli or scheme"),
    sa.Column("actor", sa.String(200), nullable=True),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("duration_ms", sa.Float(), nullable=True),
    sa.Column("customers", sa.Integer(), nullable=True),
    sa.Column("moves", sa.Integer(), nullable=True, comment="segment transitions the run recorded"),
    sa.Column("segment_counts", json_type(), nullable=True),
    sa.Column("score_counts", json_type(), nullable=True, comment="customers per r/f/m score"),
    sa.Column("bands", json_type(), nullable=True, comment="per score the min/max value (live re-scoring)"),
    sa.Column(
        "segment_stats",
        json_type(),
        nullable=True,
        comment="per segment: customers, revenue, mean recency/frequency (the run's snapshot)",
    ),
)

segment_transitions = sa.Table(
    "segment_transitions",
    metadata,
    sa.Column("id", _id_type(), primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.String(256), nullable=False),
    sa.Column("from_segment", sa.String(64), nullable=True, comment="NULL: first scored"),
    sa.Column("to_segment", sa.String(64), nullable=False),
    sa.Column("day", sa.Integer(), nullable=False, comment="business day the move was seen (as-of)"),
    sa.Column("at", UTCDateTime(), nullable=False, comment="run start, or the event's occurred_at"),
    sa.Column("cause", sa.String(16), nullable=False),
    sa.Column("run_id", sa.Integer(), nullable=True),
    sa.Column("scheme_version", sa.Integer(), nullable=False),
    sa.CheckConstraint("cause IN ('run', 'event', 'scheme')", name="cause"),
    sa.Index(None, "customer_id", "day"),
    sa.Index(None, "day"),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("schedule", sa.String(100), nullable=False, comment="'daily HH:MM' or a 5-field cron"),
    sa.Column("next_run_at", UTCDateTime(), nullable=True),
    sa.Column("locked_by", sa.String(200), nullable=True, comment="the worker holding the lease"),
    sa.Column("locked_until", UTCDateTime(), nullable=True),
    sa.Column("last_run_id", sa.Integer(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
)

# --- profiles and tags (revision 0003) ------------------------------------------------------
TAG_KINDS = ("rule", "manual")
"""``rule``: held while a rule of the active scheme holds (recomputed, overwrite semantics);
``manual``: added and removed only by people (API, CLI, import), never by a rule."""
TAG_CHANGES = ("added", "removed")

customer_profiles = sa.Table(
    "customer_profiles",
    metadata,
    sa.Column("customer_id", sa.String(256), primary_key=True),
    sa.Column("traits", json_type(), nullable=True, comment="identify traits, merged (newest wins)"),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("phone", sa.String(64), nullable=True),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("timezone", sa.String(64), nullable=True, comment="IANA zone, for quiet hours and waits"),
    sa.Column("language", sa.String(16), nullable=True),
    sa.Column("telegram_chat_id", sa.BigInteger(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("source", sa.String(32), nullable=False, comment="where the latest traits came from"),
    sa.Index(None, "email"),
    sa.Index(None, "telegram_chat_id"),
)
# 0004: the customer list's search (`q`): a case-insensitive prefix of the email or the name
sa.Index(
    "ix_customer_profiles_email_lower",
    sa.func.lower(customer_profiles.c.email).label("email_lower"),
    postgresql_ops={"email_lower": "text_pattern_ops"},
)
sa.Index(
    "ix_customer_profiles_name_lower",
    sa.func.lower(customer_profiles.c.name).label("name_lower"),
    postgresql_ops={"name_lower": "text_pattern_ops"},
)

tag_groups = sa.Table(
    "tag_groups",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("description", sa.Text(), nullable=False, server_default=""),
    sa.Column("exclusive", sa.Boolean(), nullable=False, comment="at most one tag of it per customer"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
)

tags = sa.Table(
    "tags",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("group_name", sa.String(64), sa.ForeignKey("tag_groups.name"), nullable=True),
    sa.Column("description", sa.Text(), nullable=False, server_default=""),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False, comment="'scheme:<version>', 'key:<id>', ..."),
    sa.CheckConstraint("kind IN ('rule', 'manual')", name="kind"),
)

customer_tags = sa.Table(
    "customer_tags",
    metadata,
    sa.Column("customer_id", sa.String(256), primary_key=True),
    sa.Column("tag", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False, comment="the tag's kind when it was added"),
    sa.Column("added_at", UTCDateTime(), nullable=False),
    sa.Column("added_by", sa.String(200), nullable=False, comment="'run:<id>', 'event', 'key:<id>', ..."),
    sa.Index(None, "tag", "customer_id"),
)

tag_changes = sa.Table(
    "tag_changes",
    metadata,
    sa.Column("id", _id_type(), primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.String(256), nullable=False),
    sa.Column("tag", sa.String(64), nullable=False),
    sa.Column("change", sa.String(8), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False, comment="'run:<id>', 'event', 'key:<id>', ..."),
    sa.Column("run_id", sa.Integer(), nullable=True),
    sa.CheckConstraint("change IN ('added', 'removed')", name="change"),
    sa.Index(None, "customer_id", "at"),
    sa.Index(None, "at"),
    comment="every tag added or removed, for history, audit and automation triggers",
)

# --- automation (revision 0005) -------------------------------------------------------------
WORKFLOW_STATUSES = ("draft", "active", "paused", "stopped")
ENROLMENT_STATUSES = ("active", "completed", "converted", "exited", "holdout", "stopped")
OUTBOX_STATUSES = (
    "pending", "sending", "delivered", "failed", "blocked", "deferred", "unknown", "skipped", "cancelled",
)  # fmt: skip
CONSENT_STATUSES = ("opted_in", "opted_out")
CONSENT_REASONS = ("requested", "unsubscribed", "stop", "blocked", "bounced", "manual", "unblocked", "erased")
BROADCAST_STATUSES = ("draft", "scheduled", "running", "paused", "stopped", "done")

workflows = sa.Table(
    "workflows",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("version", sa.Integer(), nullable=False, comment="1, 2, ...: each change of the YAML"),
    sa.Column("yaml", sa.Text(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("activated_at", UTCDateTime(), nullable=True, comment="'new' entry counts from here"),
    sa.CheckConstraint("status IN ('draft', 'active', 'paused', 'stopped')", name="status"),
)

workflow_versions = sa.Table(
    "workflow_versions",
    metadata,
    sa.Column("workflow_id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("yaml", sa.Text(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    comment="every version of each workflow: running journeys keep the version they enrolled in",
)

enrolments = sa.Table(
    "enrolments",
    metadata,
    sa.Column("id", _id_type(), primary_key=True, autoincrement=True),
    sa.Column("workflow_id", sa.Integer(), nullable=False),
    sa.Column("workflow_version", sa.Integer(), nullable=False),
    sa.Column("customer_id", sa.String(256), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("step", sa.String(64), nullable=True, comment="where the journey is (NULL: finished)"),
    sa.Column("due_at", UTCDateTime(), nullable=True, comment="when the engine looks at it next"),
    sa.Column("waiting_for", sa.String(32), nullable=True, comment="the event type a wait waits for"),
    sa.Column("parked", sa.Boolean(), nullable=False, comment="sitting in a wait that has begun"),
    sa.Column("steps_taken", sa.Integer(), nullable=False),
    sa.Column("branch", sa.String(64), nullable=True, comment="the split branch, or 'holdout'"),
    sa.Column("segment", sa.String(64), nullable=True, comment="the customer's segment at enrolment"),
    sa.Column("cause", sa.String(200), nullable=False, comment="what enrolled them: 'transition:<id>', ..."),
    sa.Column("enrolled_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("converted_at", UTCDateTime(), nullable=True),
    sa.Column("revenue_minor", sa.BigInteger(), nullable=True, comment="attributed revenue"),
    sa.Column("locked_by", sa.String(200), nullable=True),
    sa.Column("locked_until", UTCDateTime(), nullable=True),
    sa.CheckConstraint(
        "status IN ('active', 'completed', 'converted', 'exited', 'holdout', 'stopped')", name="status"
    ),
    sa.Index(None, "status", "due_at"),
    sa.Index(None, "workflow_id", "customer_id", "enrolled_at"),
    sa.Index(None, "customer_id", "status"),
    sa.UniqueConstraint("workflow_id", "cause"),  # one enrolment per trigger occurrence
    sa.Index(
        "uq_enrolments_one_active",
        "workflow_id",
        "customer_id",
        unique=True,
        sqlite_where=sa.text("status = 'active'"),
        postgresql_where=sa.text("status = 'active'"),
    ),
)

journey_steps = sa.Table(
    "journey_steps",
    metadata,
    sa.Column("id", _id_type(), primary_key=True, autoincrement=True),
    sa.Column("enrolment_id", sa.BigInteger(), nullable=False),
    sa.Column("workflow_id", sa.Integer(), nullable=False),
    sa.Column("step", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(64), nullable=False, server_default=""),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Index(None, "workflow_id", "step"),
    sa.Index(None, "enrolment_id"),
    comment="each step a journey went through, for per-step results",
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", _id_type(), primary_key=True, autoincrement=True),
    sa.Column("dedupe_key", sa.String(200), nullable=False, unique=True, comment="one decision, one row"),
    sa.Column("customer_id", sa.String(256), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("recipient", sa.String(512), nullable=True, comment="chat id, address or URL when decided"),
    sa.Column("message", json_type(), nullable=False, comment="the rendered message"),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column(
        "not_before", UTCDateTime(), nullable=False, comment="send at or after (quiet hours, deferrals)"
    ),
    sa.Column("locked_by", sa.String(200), nullable=True),
    sa.Column("locked_until", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("sent_at", UTCDateTime(), nullable=True),
    sa.Column("reason", sa.Text(), nullable=True, comment="why it failed, was skipped or is unknown"),
    sa.Column("provider_id", sa.String(200), nullable=True, comment="the channel's id for the message"),
    sa.Column("workflow_id", sa.Integer(), nullable=True),
    sa.Column("enrolment_id", sa.BigInteger(), nullable=True),
    sa.Column("step", sa.String(64), nullable=True),
    sa.Column("broadcast_id", sa.Integer(), nullable=True),
    sa.Column("segment", sa.String(64), nullable=True, comment="the customer's segment when decided"),
    sa.Column("clicked_at", UTCDateTime(), nullable=True),
    sa.Column("replied_at", UTCDateTime(), nullable=True),
    sa.CheckConstraint(
        "status IN ('pending', 'sending', 'delivered', 'failed', 'blocked', 'deferred', 'unknown', "
        "'skipped', 'cancelled')",
        name="status",
    ),
    sa.Index(None, "status", "not_before"),
    sa.Index(None, "customer_id", "channel", "sent_at"),
    sa.Index(None, "broadcast_id", "status"),
    sa.Index(None, "workflow_id", "step"),
    comment="every message decided, written with the decision; a worker sends and records the outcome",
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", _id_type(), primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.String(256), nullable=False),
    sa.Column("queue", sa.String(64), nullable=False),
    sa.Column("priority", sa.String(8), nullable=False),
    sa.Column("note", sa.Text(), nullable=False, server_default=""),
    sa.Column("status", sa.String(8), nullable=False, comment="open, done or cancelled"),
    sa.Column("segment", sa.String(64), nullable=True),
    sa.Column("workflow_id", sa.Integer(), nullable=True),
    sa.Column("enrolment_id", sa.BigInteger(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("closed_at", UTCDateTime(), nullable=True),
    sa.Column("closed_by", sa.String(200), nullable=True),
    sa.Index(None, "status", "queue", "priority"),
    comment="hand-offs to people",
)

consents = sa.Table(
    "consents",
    metadata,
    sa.Column("customer_id", sa.String(256), primary_key=True),
    sa.Column("channel", sa.String(16), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(16), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
)

consent_changes = sa.Table(
    "consent_changes",
    metadata,
    sa.Column("id", _id_type(), primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.String(256), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(16), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Index(None, "customer_id", "at"),
)

broadcasts = sa.Table(
    "broadcasts",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("message", json_type(), nullable=False, comment="templates, as a workflow's send step"),
    sa.Column("audience", json_type(), nullable=False, comment="segments, tags and filters"),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("audience_count", sa.Integer(), nullable=True, comment="when it was confirmed"),
    sa.Column("cap_policy", sa.String(8), nullable=False, comment="skip or defer past a frequency cap"),
    sa.Column("scheduled_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.CheckConstraint(
        "status IN ('draft', 'scheduled', 'running', 'paused', 'stopped', 'done')", name="status"
    ),
)

automation_cursors = sa.Table(
    "automation_cursors",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True, comment="a feed: transitions, tag_changes, events"),
    sa.Column("seen_until", UTCDateTime(), nullable=False, comment="rows stamped before this were read"),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    comment="how far each feed was read; feeds are re-read with an overlap and handled idempotently",
)

# --- 0006: predictions, alerts, reports, users, erasures -------------------------------------

prediction_fits = sa.Table(
    "prediction_fits",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("as_of_day", sa.Integer(), nullable=False),
    sa.Column("run_id", sa.Integer(), nullable=True, comment="the scoring run it followed, if any"),
    sa.Column("model", sa.String(16), nullable=False, comment="mbgnbd, bgnbd or paretonbd (+ gamma-gamma)"),
    sa.Column("time_unit", sa.String(8), nullable=False),
    sa.Column("status", sa.String(8), nullable=False, comment="done or failed"),
    sa.Column("params", json_type(), nullable=True, comment="fitted parameters of both models"),
    sa.Column("summary", json_type(), nullable=True, comment="churn counts, expected revenue by segment"),
    sa.Column("customers", sa.Integer(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True, comment="why the fit failed"),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("duration_ms", sa.Float(), nullable=True),
    sa.CheckConstraint("status IN ('running', 'done', 'failed')", name="status"),
)

customer_predictions = sa.Table(
    "customer_predictions",
    metadata,
    sa.Column("customer_id", sa.String(256), primary_key=True),
    sa.Column("fit_id", sa.Integer(), nullable=False),
    sa.Column("p_alive", sa.Float(), nullable=True),
    sa.Column("expected_purchases", sa.Float(), nullable=True, comment="within the fit's horizon"),
    sa.Column(
        "expected_spend_minor", sa.BigInteger(), nullable=True, comment="mean order value, minor units"
    ),
    sa.Column("clv_minor", sa.BigInteger(), nullable=True, comment="discounted, minor units"),
    sa.Column("churn_risk", sa.String(8), nullable=True, comment="low, medium or high"),
    sa.Column("days_to_next_purchase", sa.Float(), nullable=True),
    sa.Column("predicted_at", UTCDateTime(), nullable=False),
    sa.Index(None, "churn_risk", "customer_id"),
)

alert_rules = sa.Table(
    "alert_rules",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("kind", sa.String(32), nullable=False, comment="segment_growth, metric_drop, ..."),
    sa.Column("params", json_type(), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False, comment="telegram, email or webhook"),
    sa.Column("target", sa.String(500), nullable=False, comment="chat id, address or URL"),
    sa.Column("enabled", sa.Boolean(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

alert_events = sa.Table(
    "alert_events",
    metadata,
    sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    sa.Column("rule_id", sa.Integer(), nullable=False),
    sa.Column("occurrence", sa.String(200), nullable=False, comment="one row, one delivery per occurrence"),
    sa.Column("fired_at", UTCDateTime(), nullable=False),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("message", sa.Text(), nullable=False),
    sa.Column("details", json_type(), nullable=True),
    sa.Column("status", sa.String(16), nullable=False, comment="pending, sending, sent, failed or unknown"),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("delivered_at", UTCDateTime(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.UniqueConstraint("rule_id", "occurrence"),
    sa.Index(None, "fired_at"),
)

reports = sa.Table(
    "reports",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False, comment="weekly"),
    sa.Column("period_start", UTCDateTime(), nullable=False),
    sa.Column("period_end", UTCDateTime(), nullable=False),
    sa.Column("generated_at", UTCDateTime(), nullable=False),
    sa.Column("summary", json_type(), nullable=False),
    sa.Column("html", sa.Text(), nullable=False, comment="self-contained page"),
    sa.Column("deliveries", json_type(), nullable=True, comment="per target: status, at, error"),
    sa.UniqueConstraint("kind", "period_end"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(200), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(300), nullable=False, comment="scrypt, salted"),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("disabled_at", UTCDateTime(), nullable=True),
    sa.Column("last_login_at", UTCDateTime(), nullable=True),
)

erasures = sa.Table(
    "erasures",
    metadata,
    sa.Column("customer_id", sa.String(256), primary_key=True),
    sa.Column("erased_at", UTCDateTime(), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("summary", json_type(), nullable=True, comment="what was removed and what was kept"),
    comment="customers whose personal data was erased on request (GDPR); their counts remain",
)

events_received_index = sa.Index("ix_events_received_at", events.c.received_at)

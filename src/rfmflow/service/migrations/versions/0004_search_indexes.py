"""Customer search: case-insensitive prefix indexes on profile emails and names.

PostgreSQL answers ``lower(email) LIKE 'prefix%'`` from an index only with the
``text_pattern_ops`` operator class (whatever the database's collation); SQLite answers a
binary range on ``lower(email)`` from a plain expression index.

No index was added for the list's sorts: measured at 1M customers (bench/bench_search.py),
an index per sort column on ``customer_scores`` made the full run's refill of that table
several times slower (seven: SQLite 3.8 s to 26 s, PostgreSQL 14 s to 63 s), and an index on
``customers(last_day)`` cost batch ingest 13-29%. The list sorts those columns with a top-N
scan instead (docs/service.md).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pattern = " text_pattern_ops" if op.get_bind().dialect.name == "postgresql" else ""
    for trait in ("email", "name"):
        op.create_index(
            f"ix_customer_profiles_{trait}_lower", "customer_profiles", [sa.text(f"lower({trait}){pattern}")]
        )


def downgrade() -> None:
    op.drop_index("ix_customer_profiles_name_lower", table_name="customer_profiles")
    op.drop_index("ix_customer_profiles_email_lower", table_name="customer_profiles")

"""Alembic migrations up and down on SQLite and PostgreSQL, and ``rfmflow db``."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from service_helpers import Database
from sqlalchemy.engine import Engine

from rfmflow.service.cli import service_cli
from rfmflow.service.db import current, downgrade, head_revision, is_current, upgrade
from rfmflow.service.db.tables import metadata

INGEST_TABLES = {"events", "customers", "customer_orders", "api_keys", "audit_log"}  # revision 0001
SCORING_TABLES = {"scheme_versions", "scoring_runs", "customer_scores", "segment_transitions", "jobs"}  # 0002
TAG_TABLES = {"customer_profiles", "tag_groups", "tags", "customer_tags", "tag_changes"}  # 0003
AUTOMATION_TABLES = {  # 0005
    "workflows", "enrolments", "journey_steps", "outbox", "tasks", "consents", "consent_changes",
    "broadcasts", "automation_cursors", "workflow_versions",
}  # fmt: skip
SERVICE_TABLES = {  # 0006
    "prediction_fits", "customer_predictions", "alert_rules", "alert_events", "reports", "users", "erasures",
}  # fmt: skip
TABLES = INGEST_TABLES | SCORING_TABLES | TAG_TABLES | AUTOMATION_TABLES | SERVICE_TABLES
SEARCH_INDEXES = {"ix_customer_profiles_email_lower", "ix_customer_profiles_name_lower"}  # 0004


def tables(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names()) - {"alembic_version"}


def test_up_down_up(bare_engine: Engine) -> None:
    assert current(bare_engine) is None and not is_current(bare_engine)
    upgrade(bare_engine)
    assert current(bare_engine) == head_revision() and is_current(bare_engine)
    assert tables(bare_engine) == TABLES
    upgrade(bare_engine)  # again: nothing to do
    assert indexes(bare_engine) >= SEARCH_INDEXES | {"ix_events_received_at"}
    downgrade(bare_engine, "0005")
    assert tables(bare_engine) == TABLES - SERVICE_TABLES
    assert "ix_events_received_at" not in indexes(bare_engine)
    downgrade(bare_engine, "0004")
    assert tables(bare_engine) == TABLES - AUTOMATION_TABLES - SERVICE_TABLES
    downgrade(bare_engine, "0003")
    assert not SEARCH_INDEXES & indexes(bare_engine)
    assert tables(bare_engine) == INGEST_TABLES | SCORING_TABLES | TAG_TABLES
    downgrade(bare_engine, "0002")
    assert tables(bare_engine) == INGEST_TABLES | SCORING_TABLES
    with bare_engine.connect() as conn:
        assert "segment_stats" not in {c["name"] for c in sa.inspect(conn).get_columns("scoring_runs")}
    downgrade(bare_engine, "0001")
    assert tables(bare_engine) == INGEST_TABLES
    downgrade(bare_engine, "base")
    assert current(bare_engine) is None and tables(bare_engine) == set()
    upgrade(bare_engine)
    assert tables(bare_engine) == TABLES


def indexes(engine: Engine) -> set[str]:
    """Index names (SQLite cannot reflect expression indexes, so they come from its catalog)."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            query = "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'ix_%'"
            return set(conn.exec_driver_sql(query).scalars())
        return {
            i["name"] for t in sa.inspect(conn).get_table_names() for i in sa.inspect(conn).get_indexes(t)
        }


@pytest.mark.filterwarnings("ignore:.*expression-based index:UserWarning")  # SQLite: not reflected
@pytest.mark.filterwarnings("ignore:.*expression-based index:sqlalchemy.exc.SAWarning")
def test_migrated_schema_matches_the_tables(engine: Engine) -> None:
    """The hand-written migrations and the SQLAlchemy tables describe the same schema."""
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []
    assert indexes(engine) >= SEARCH_INDEXES  # SQLite's expression indexes are not compared above


def _env_file(tmp_path: Path, database: Database) -> str:
    path = tmp_path / "service.env"
    path.write_text(f"RFMFLOW_DATABASE_URL={database.url}\n")
    return str(path)


def test_db_commands(bare_engine: Engine, database: Database, tmp_path: Path) -> None:
    env = _env_file(tmp_path, database)
    runner = CliRunner()
    before = runner.invoke(service_cli, ["db", "current", "--env-file", env])
    assert before.exit_code == 0 and before.stdout.strip() == "base"
    assert "rfmflow db upgrade" in before.stderr
    up = runner.invoke(service_cli, ["db", "upgrade", "--env-file", env])
    assert up.exit_code == 0, up.output
    assert up.stdout.strip() == head_revision()
    now = runner.invoke(service_cli, ["db", "current", "--env-file", env])
    assert now.stdout.strip() == head_revision() and "current" in now.stderr
    down = runner.invoke(service_cli, ["db", "downgrade", "base", "--env-file", env])
    assert down.exit_code == 0 and down.stdout.strip() == "base"
    assert tables(bare_engine) == set()


def test_db_command_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.env"
    bad.write_text("RFMFLOW_DATABASE_URL=postgresql://nobody@127.0.0.1:1/none?connect_timeout=2\n")
    unreachable = runner.invoke(service_cli, ["db", "current", "--env-file", str(bad)])
    assert unreachable.exit_code == 1 and "the database is unreachable" in unreachable.stderr
    bad.write_text("RFMFLOW_TIMEZONE=Nowhere/Land\n")
    wrong = runner.invoke(service_cli, ["db", "upgrade", "--env-file", str(bad)])
    assert wrong.exit_code == 1 and "RFMFLOW_TIMEZONE" in wrong.stderr
    usage = runner.invoke(service_cli, ["db", "downgrade"])
    assert usage.exit_code == 2


def test_bulk_statements_name_every_column() -> None:
    """The hand-written bulk inserts list the tables' columns, all of them, in order."""
    from rfmflow.service.db.store import CUSTOMER_COLUMNS, EVENT_COLUMNS, ORDER_COLUMNS
    from rfmflow.service.db.tables import customer_orders, customers, events

    for columns, table in (
        (EVENT_COLUMNS, events),
        (CUSTOMER_COLUMNS, customers),
        (ORDER_COLUMNS, customer_orders),
    ):
        assert [name for name, _ in columns] == [c.name for c in table.columns]

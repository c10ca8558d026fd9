"""Alembic, configured in code: the migrations ship inside the package (no alembic.ini).

``upgrade``, ``downgrade`` and ``current`` are what ``rfmflow db`` runs; ``serve`` calls
:func:`upgrade` on start. Each command runs in one transaction (DDL is transactional in
SQLite and PostgreSQL), holding the write lock (SQLite) or an advisory lock (PostgreSQL),
so two processes starting at once do not migrate twice.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from rfmflow.service.db.engine import write_transaction

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
_ADVISORY_LOCK = 0x52464D46  # "RFMF"


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision this version of rfmflow ships."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads: {heads}")
    return heads[0]


def _locked(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK})


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the schema up to ``revision`` (default: the newest)."""
    with write_transaction(engine) as conn:
        _locked(conn)
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate down to ``revision`` (``base`` drops every table; ``-1`` goes one step back)."""
    with write_transaction(engine) as conn:
        _locked(conn)
        command.downgrade(alembic_config(conn), revision)


def current_revision(conn: Connection) -> str | None:
    """The revision the database is at (None: never migrated)."""
    heads = MigrationContext.configure(conn).get_current_heads()
    return heads[0] if heads else None


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return current_revision(conn)


def is_current(engine: Engine) -> bool:
    """True when the database is at the newest revision."""
    return current(engine) == head_revision()

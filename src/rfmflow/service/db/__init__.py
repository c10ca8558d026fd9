"""The service's storage: tables, engines and migrations (SQLAlchemy Core, Alembic)."""

from rfmflow.service.db.engine import create_db_engine, ping, run_write, write_transaction
from rfmflow.service.db.migrate import current, downgrade, head_revision, is_current, upgrade

__all__ = [
    "create_db_engine",
    "current",
    "downgrade",
    "head_revision",
    "is_current",
    "ping",
    "run_write",
    "upgrade",
    "write_transaction",
]

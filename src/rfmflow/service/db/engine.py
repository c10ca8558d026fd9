"""Engines for the service's database: an SQLite file (WAL) or PostgreSQL through psycopg 3.

SQLite connections get ``journal_mode=WAL``, ``synchronous=FULL`` (an acknowledged write
survives a crash of the process or of the machine), ``busy_timeout`` and foreign keys on.
Write transactions (:func:`write_transaction`) start with ``BEGIN IMMEDIATE`` on SQLite, so
two writers queue for the lock instead of failing half way, and writers in one process
queue on a lock of their own rather than polling SQLite's busy handler. On PostgreSQL a
write that loses a deadlock or a serialization race is retried as a whole
(:func:`run_write`): every write is one transaction, so a retry never repeats half of one.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.url import make_url

log = logging.getLogger("rfmflow.service.db")

T = TypeVar("T")
SQLITE_BUSY_TIMEOUT_MS = 30_000
_WRITE_OPTION = "rfmflow_write"
_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
RETRYABLE_SQLSTATES = ("40P01", "40001")  # deadlock detected, serialization failure


def create_db_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine for ``url`` (``sqlite:///PATH`` or ``postgresql+psycopg://...``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if not database or database == ":memory:":
            raise ValueError("the service needs an SQLite file, not an in-memory database")
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            max_overflow=10,
        )
        _configure_sqlite(engine)
        _WRITE_LOCKS[engine] = threading.Lock()
        return engine
    if parsed.get_backend_name() == "postgresql":
        return sa.create_engine(parsed, pool_size=pool_size, max_overflow=10, pool_pre_ping=True)
    raise ValueError(f"unsupported database {parsed.get_backend_name()!r}: use SQLite or PostgreSQL")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how transactions start.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction: committed when the block ends, rolled back on an exception."""
    lock = _WRITE_LOCKS.get(engine)
    with lock if lock is not None else nullcontext(), engine.connect() as conn:
        conn.execution_options(**{_WRITE_OPTION: True})
        with conn.begin():
            yield conn


def is_retryable(err: BaseException) -> bool:
    """A deadlock or serialization failure (PostgreSQL) or a lock timeout (SQLite)."""
    orig = getattr(err, "orig", None)
    if getattr(orig, "sqlstate", None) in RETRYABLE_SQLSTATES:
        return True
    return isinstance(orig, sqlite3.OperationalError) and "locked" in str(orig)


def run_write(engine: Engine, work: Callable[[Connection], T], *, attempts: int = 5) -> T:
    """Run ``work`` in a write transaction, again from the start if it loses a lock race."""
    for attempt in range(1, attempts + 1):
        try:
            with write_transaction(engine) as conn:
                return work(conn)
        except sa.exc.DBAPIError as err:
            if attempt == attempts or not is_retryable(err):
                raise
            log.warning("write transaction retried", extra={"attempt": attempt, "error": str(err.orig)})
            time.sleep(0.01 * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def ping(engine: Engine) -> None:
    """Raise unless the database answers."""
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))

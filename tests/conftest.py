"""Shared fixtures: the real CDNOW data and a PostgreSQL schema per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RFMFLOW_SHARED", ROOT.parent / "shared"))
POSTGRES_URL = os.environ.get("RFMFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def cdnow_master() -> Path:
    path = SHARED / "data" / "CDNOW_master.txt"
    if not path.exists():  # the demo copy ships inside the package
        pytest.fail(f"the CDNOW data set is missing at {path}")
    return path


@pytest.fixture
def pg_conn() -> Iterator[Any]:
    """A psycopg connection whose search_path is a fresh schema, dropped afterwards.

    Skips when no server answers, except when RFMFLOW_REQUIRE_POSTGRES=1 (set by .ci/run),
    where a missing server is a failure: CI must not silently skip these tests.
    """
    psycopg = pytest.importorskip("psycopg")
    try:
        conn = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as err:
        if os.environ.get("RFMFLOW_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here but not reachable at {POSTGRES_URL}: {err}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(f"SET search_path TO {schema}")
    try:
        yield conn
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()

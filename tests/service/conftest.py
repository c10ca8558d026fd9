"""Service fixtures: the same tests on SQLite (a temporary file) and PostgreSQL (a fresh schema).

``database`` is parametrised over both; PostgreSQL tests skip when no server answers unless
``RFMFLOW_REQUIRE_POSTGRES=1`` (set by ``scripts/test`` and CI), where that is a failure.
``server`` runs the real app under uvicorn on a free loopback port in a background thread,
so API tests go through real HTTP.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from service_helpers import Database, Server, ThreadedServer, make_keys
from sqlalchemy.engine import Engine

from rfmflow.cli.app import build_app
from rfmflow.service.db import create_db_engine, upgrade
from rfmflow.service.settings import Settings

POSTGRES_URL = os.environ.get("RFMFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_admin() -> Any:
    psycopg = pytest.importorskip("psycopg")
    try:
        return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as err:
        if os.environ.get("RFMFLOW_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here but not reachable at {POSTGRES_URL}: {err}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        yield Database("sqlite", f"sqlite:///{tmp_path / 'service.db'}")
        return
    admin = _postgres_admin()
    schema = f"svc_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    try:
        options = quote(f"-csearch_path={schema}", safe="")
        yield Database("postgres", f"{POSTGRES_URL}?options={options}")
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


@pytest.fixture
def settings(database: Database, tmp_path: Path) -> Settings:
    return database.settings(tmp_path)


@pytest.fixture
def bare_engine(settings: Settings) -> Iterator[Engine]:
    """An engine on the (empty, unmigrated) test database."""
    engine = create_db_engine(settings.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def engine(bare_engine: Engine) -> Engine:
    """An engine on the test database, migrated to the newest revision."""
    upgrade(bare_engine)
    return bare_engine


@pytest.fixture
def server(engine: Engine, settings: Settings) -> Iterator[Server]:
    keys = make_keys(engine)
    running = ThreadedServer(build_app(settings, engine=engine))
    url = running.start()
    try:
        yield Server(url=url, keys=keys, settings=settings, engine=engine)
    finally:
        running.stop()

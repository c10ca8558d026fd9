"""Alerts fixtures: the service tests' fixtures (``database`` on SQLite and PostgreSQL,
``settings``, ``engine``, ``server``) from ``tests/service/conftest.py``, a webhook receiver on
loopback, the fake Bot API and an aiosmtpd inbox."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parents[1]
for folder in ("service", "automation", "dashboard"):
    if str(TESTS / folder) not in sys.path:
        sys.path.insert(0, str(TESTS / folder))

_spec = importlib.util.spec_from_file_location("alerts_service_fixtures", TESTS / "service" / "conftest.py")
assert _spec is not None and _spec.loader is not None
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

database = _fixtures.database
settings = _fixtures.settings
bare_engine = _fixtures.bare_engine
engine = _fixtures.engine
server = _fixtures.server


@pytest.fixture
def receiver() -> Iterator[Any]:
    from alerts_helpers import Receiver

    running = Receiver()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def fake() -> Iterator[Any]:
    from rfmflow.fake_telegram import FakeTelegram

    with FakeTelegram() as running:
        yield running


@pytest.fixture
def inbox() -> Iterator[Any]:
    from engine_helpers import smtp_inbox

    with smtp_inbox() as running:
        yield running


@pytest.fixture(autouse=True)
def no_loop_in_test_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests drive ``tick`` themselves: the servers they start run no alerts loop of their own
    (``test_serve_runs_the_loop_after_a_scoring_run`` turns it back on)."""
    monkeypatch.setenv("RFMFLOW_ALERTS_INTERVAL", "off")

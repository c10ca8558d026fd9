"""Dashboard fixtures: the service tests' fixtures (``database`` on SQLite and PostgreSQL,
``settings``, ``engine``, ``server``), loaded from ``tests/service/conftest.py``, plus seeded data.

Test folders have no ``__init__.py``; pytest puts a folder on ``sys.path`` only when it
imports a conftest from it, so ``tests/service`` is added here for ``service_helpers``.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SERVICE_TESTS = Path(__file__).resolve().parents[1] / "service"
if str(SERVICE_TESTS) not in sys.path:
    sys.path.insert(0, str(SERVICE_TESTS))

_spec = importlib.util.spec_from_file_location("service_test_fixtures", SERVICE_TESTS / "conftest.py")
assert _spec is not None and _spec.loader is not None
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

database = _fixtures.database
settings = _fixtures.settings
bare_engine = _fixtures.bare_engine
engine = _fixtures.engine
server = _fixtures.server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium for one test module (browser_helpers.launch). Not for the session:
    Playwright's sync API keeps an event loop running in this thread while it is open, and the
    other tests that run in the same process call ``asyncio.run``."""
    from browser_helpers import launch

    yield from launch()


@pytest.fixture
def clients(server: Any) -> Iterator[Any]:
    """:class:`dashboard_helpers.Clients` of the running server."""
    from dashboard_helpers import Clients

    made = Clients(server)
    try:
        yield made
    finally:
        made.close()

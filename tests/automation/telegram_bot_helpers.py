"""Helpers for the bot tests: the service's fixtures, and the app with its bot against the fake Bot API.

Test folders have no ``__init__.py``; the service fixtures (``database`` on SQLite and
PostgreSQL, ``settings``, ``engine``, ``server``) are loaded from ``tests/service/conftest.py``
into the test module, as ``tests/dashboard/conftest.py`` does.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

SERVICE_TESTS = Path(__file__).resolve().parents[1] / "service"
if str(SERVICE_TESTS) not in sys.path:
    sys.path.insert(0, str(SERVICE_TESTS))

from service_helpers import ThreadedServer, free_port  # noqa: E402

from rfmflow.automation.telegram_runtime import BotRuntime  # noqa: E402
from rfmflow.cli.app import build_app  # noqa: E402
from rfmflow.fake_telegram import FakeTelegram  # noqa: E402
from rfmflow.service.db.tables import consents, customer_profiles, events  # noqa: E402
from rfmflow.service.settings import Settings  # noqa: E402

SECRET = "test-secret_42"
WEBHOOK_PATH = "/v1/telegram/webhook"


def service_fixtures() -> ModuleType:
    spec = importlib.util.spec_from_file_location("service_test_fixtures", SERVICE_TESTS / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class BotApp:
    """The service (with its bot) running on loopback against the fake Bot API."""

    url: str
    settings: Settings
    engine: Engine
    fake: FakeTelegram
    server: ThreadedServer

    @property
    def runtime(self) -> BotRuntime:
        runtime = self.server.server.config.app.state.telegram_bot
        assert isinstance(runtime, BotRuntime)
        return runtime

    def stop(self) -> None:
        self.server.stop()


def start_bot_app(
    engine: Engine, settings: Settings, fake: FakeTelegram, mode: str, **changes: Any
) -> BotApp:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    bot_settings = settings.with_changes(
        telegram_bot_token=fake.token,
        telegram_api_url=fake.base_url,
        telegram_mode=mode,
        telegram_webhook_secret=SECRET,
        telegram_webhook_url=f"{url}{WEBHOOK_PATH}" if mode == "webhook" else "",
        **changes,
    )
    server = ThreadedServer(build_app(bot_settings, engine=engine))
    server.port = port
    server.server.config.port = port
    server.start()
    return BotApp(url, bot_settings, engine, fake, server)


def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)


def event_rows(engine: Engine, customer_id: str) -> list[Any]:
    e = events.c
    with engine.connect() as conn:
        query = sa.select(events).where(e.customer_id == customer_id).order_by(e.occurred_at, e.event_id)
        return list(conn.execute(query).all())


def consent_row(engine: Engine, customer_id: str) -> tuple[str, str] | None:
    c = consents.c
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(c.status, c.reason).where(c.customer_id == customer_id, c.channel == "telegram")
        ).first()
    return (row.status, row.reason) if row is not None else None


def profile_row(engine: Engine, customer_id: str) -> Any:
    p = customer_profiles.c
    with engine.connect() as conn:
        return conn.execute(sa.select(customer_profiles).where(p.customer_id == customer_id)).first()


def chat_commands(fake: FakeTelegram, chat_id: int) -> list[str]:
    """The commands the bot set for ``chat_id`` (``BotCommandScopeChat``), as the fake recorded them."""
    with fake.state.lock:
        found = fake.state.commands.get((f"chat:{chat_id}", ""), [])
        return [c["command"] for c in found]

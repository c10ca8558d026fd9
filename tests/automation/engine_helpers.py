"""Helpers for the automation engine's tests: the service fixtures, an SMTP inbox (aiosmtpd),
shop data whose first scoring run puts customers in At Risk, and the engine's pieces wired up.

Test folders have no ``__init__.py``; the service fixtures (``database`` on SQLite and
PostgreSQL, ``settings``, ``engine``, ``server``) come from ``tests/service/conftest.py``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path
from types import ModuleType
from typing import Any

import sqlalchemy as sa
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.engine import Engine

SERVICE_TESTS = Path(__file__).resolve().parents[1] / "service"
if str(SERVICE_TESTS) not in sys.path:
    sys.path.insert(0, str(SERVICE_TESTS))

from service_helpers import Server, shop_purchases  # noqa: E402

from rfmflow.automation.outbox import DispatchStats, dispatch_all  # noqa: E402
from rfmflow.automation.senders import ChannelSenders  # noqa: E402
from rfmflow.automation.settings import AutomationSettings  # noqa: E402
from rfmflow.automation.worker import decide  # noqa: E402
from rfmflow.service.settings import Settings  # noqa: E402

NOW = datetime.now(UTC)


def service_fixtures() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "automation_service_fixtures", SERVICE_TESTS / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Inbox:
    """An aiosmtpd handler keeping what it accepts; ``gone@`` addresses bounce."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, Message]] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("gone@"):
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        self.messages.append((envelope, message_from_bytes(content, policy=policy.default)))
        return "250 Message accepted"


def shop(n: int = 40) -> list[dict[str, Any]]:
    """:func:`service_helpers.shop_purchases` before the module's ``NOW``."""
    return shop_purchases(NOW, n)


def set_profile(server: Server, customer_id: str, **traits: Any) -> None:
    with server.client("admin") as admin:
        response = admin.patch(f"/v1/customers/{customer_id}/profile", json={"traits": traits})
    assert response.status_code == 200, response.text


def rows(engine: Engine, query: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(query), params))


def automation_settings(
    fake_base_url: str | None = None, token: str = "", smtp_port: int | None = None, **changes: Any
) -> AutomationSettings:
    return AutomationSettings(
        telegram_token=token,
        telegram_api_url=fake_base_url,
        smtp_host="127.0.0.1" if smtp_port else "",
        smtp_port=smtp_port or 25,
        smtp_from="Shop <news@shop.example>",
        **changes,
    )


def dispatch(engine: Engine, auto: AutomationSettings, now: datetime | None = None) -> DispatchStats:
    async def go() -> DispatchStats:
        async with ChannelSenders(auto) as senders:
            return await dispatch_all(engine, senders, auto, now=now)

    return asyncio.run(go())


def decide_now(
    engine: Engine, settings: Settings, auto: AutomationSettings, now: datetime | None = None
) -> dict[str, Any]:
    return decide(engine, settings, auto, now=now)


@contextmanager
def smtp_inbox() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server (aiosmtpd) on a free loopback port: its handler and port."""
    from aiosmtpd.controller import Controller

    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()

"""Helpers for the broadcast and results tests: the service fixtures (from
``tests/service/conftest.py``; ``tests/service`` goes on ``sys.path`` for its helpers) and a
small scored shop with profiles, Telegram chats and consents."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import sqlalchemy as sa

SERVICE_TESTS = Path(__file__).resolve().parents[1] / "service"
if str(SERVICE_TESTS) not in sys.path:
    sys.path.insert(0, str(SERVICE_TESTS))

from customer_helpers import N, seed  # noqa: E402
from service_helpers import Server  # noqa: E402

from rfmflow.automation.consent import set_consent  # noqa: E402
from rfmflow.service.db.engine import run_write  # noqa: E402
from rfmflow.service.db.tables import customer_profiles  # noqa: E402

OPTED_OUT_EMAIL = ("c00", "c04", "c07")
"""Opted out of e-mail (c07 has no profile: still counted as opted out, not as no address)."""
TELEGRAM = tuple(f"c{i:02d}" for i in range(0, N, 4))
"""Customers with a Telegram chat (every fourth; all have profiles)."""


def service_fixtures() -> ModuleType:
    spec = importlib.util.spec_from_file_location("service_test_fixtures", SERVICE_TESTS / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seed_shop(server: Server) -> None:
    """The customer list tests' shop (40 scored customers; even ones have a profile with an
    e-mail; tags vip/newsletter/churn-risk), plus Telegram chats and e-mail opt-outs."""
    seed(server)
    now = datetime.now(UTC)

    def work(conn: Any) -> None:
        for i, cid in enumerate(TELEGRAM):
            conn.execute(
                sa.update(customer_profiles)
                .where(customer_profiles.c.customer_id == cid)
                .values(telegram_chat_id=1000 + i)
            )
        for cid in OPTED_OUT_EMAIL:
            set_consent(conn, cid, "email", "opted_out", "unsubscribed", actor="test", at=now)
        set_consent(conn, "c08", "telegram", "opted_out", "stop", actor="test", at=now)

    run_write(server.engine, work)


def has_email(i: int) -> bool:
    return i % 2 == 0


__all__ = ["OPTED_OUT_EMAIL", "TELEGRAM", "N", "has_email", "seed_shop", "service_fixtures"]

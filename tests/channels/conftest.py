"""Telegram channel fixtures: the fake Bot API server on loopback, one per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rfmflow.fake_telegram import FakeTelegram


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    """The fake Bot API with Telegram's default limits (30/s overall, 1/s per chat, 20/min per group)."""
    with FakeTelegram() as server:
        yield server

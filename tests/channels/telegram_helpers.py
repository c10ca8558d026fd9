"""Helpers for the Telegram tests: a sender on the fake, windows over request times, a receiver."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

import uvicorn

from rfmflow.channels.outbound import OutboundMessage, SendOutcome
from rfmflow.channels.telegram_limits import TelegramLimits
from rfmflow.channels.telegram_sender import TelegramSender
from rfmflow.fake_telegram import FakeTelegram

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def sender_for(fake: FakeTelegram, **limits: Any) -> TelegramSender:
    return TelegramSender.for_token(fake.token, TelegramLimits(**limits), base_url=fake.base_url)


async def send_all(sender: TelegramSender, messages: Iterable[OutboundMessage]) -> dict[str, SendOutcome]:
    """Send through ``sender`` (already entered) and return the outcomes by message id."""
    return {outcome.message_id: outcome async for outcome in sender.send_many(list(messages))}


def broadcast(
    fake: FakeTelegram, messages: Sequence[OutboundMessage], **limits: Any
) -> dict[str, SendOutcome]:
    async def go() -> dict[str, SendOutcome]:
        async with sender_for(fake, **limits) as sender:
            return await send_all(sender, messages)

    return run(go())


def most_in_window(times: Sequence[float], window: float) -> int:
    """The largest number of ``times`` inside any half-open interval of length ``window``."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def request_times(fake: FakeTelegram, chat_id: Any = None, status: int | None = None) -> list[float]:
    """When the fake received send requests (to ``chat_id``, with answer ``status``)."""
    with fake.state.lock:
        log = list(fake.state.send_log)
    return [
        at
        for at, chat, code in log
        if (chat_id is None or str(chat) == str(chat_id)) and (status is None or code == status)
    ]


class Receiver:
    """A real HTTP server on loopback (uvicorn in a thread) running ``app`` until ``stop()``."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(app, log_config=None, access_log=False, http="h11", ws="none", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the receiver did not start")
            time.sleep(0.01)
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

"""A fake Telegram Bot API server on loopback, run in a background thread for a test.

>>> from rfmflow.fake_telegram import FakeTelegram, FakeUser
>>> with FakeTelegram() as fake:  # doctest: +SKIP
...     bot = telegram.Bot(fake.token, base_url=fake.base_url)
...     fake.user_sends(FakeUser(42), "/start")
...     ...
...     assert fake.messages[0].text == "Welcome"

The server is real HTTP (uvicorn) on ``127.0.0.1`` and a free port; the real client library
talks to it through ``base_url``. The methods below are the user's side (sending a message
or command, pressing a button, paying, blocking the bot) and the test's controls (limits,
forced errors); what the bot sent is in :attr:`FakeTelegram.messages`.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import uvicorn

from rfmflow.fake_telegram import updates as build
from rfmflow.fake_telegram.flood import FakeLimits
from rfmflow.fake_telegram.http_app import create_app
from rfmflow.fake_telegram.state import FakeBotState, SentMessage
from rfmflow.fake_telegram.updates import FakeUser

DEFAULT_TOKEN = "123456789:AAF-fake-token_for-rfmflow-tests"


class FakeTelegram:
    """The fake Bot API in a background thread: ``start()`` (or ``with``) and ``stop()``."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        limits: FakeLimits | None = None,
        strict_chats: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_retry_delay: float = 0.2,
    ) -> None:
        self.token = token
        self.state = FakeBotState(token, limits, strict_chats=strict_chats)
        self._host = host
        self._port = port
        self._webhook_retry_delay = webhook_retry_delay
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self._ids = itertools.count(1)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> str:
        """Serve on loopback; returns the server's URL (``http://127.0.0.1:<port>``)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # uvicorn leaves Nagle on for sockets handed to it: every answer would then wait ~40 ms
        # for the client's delayed ACK; accepted sockets inherit this flag on Linux
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self._host, self._port))
        port = sock.getsockname()[1]
        app = create_app(self.state, webhook_retry_delay=self._webhook_retry_delay)
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            http="h11",
            ws="none",
            lifespan="on",
            timeout_keep_alive=120,
            backlog=2048,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake Telegram server did not start")
            time.sleep(0.01)
        self.url = f"http://{self._host}:{port}"
        return self.url

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeTelegram:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """What python-telegram-bot's ``Bot(token, base_url=...)`` takes (it appends the token)."""
        return f"{self.url}/bot"

    @property
    def bot_id(self) -> int:
        return self.state.bot_id

    # -- what the bot did ------------------------------------------------------------------

    @property
    def messages(self) -> list[SentMessage]:
        """Every message the fake accepted, in order (a copy)."""
        with self.state.lock:
            return list(self.state.messages)

    def messages_to(self, chat_id: int | str) -> list[SentMessage]:
        return [m for m in self.messages if m.chat_id == chat_id]

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Poll ``condition`` until it holds; ``AssertionError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s")
            time.sleep(0.01)

    # -- the test's controls ---------------------------------------------------------------

    def set_limits(self, limits: FakeLimits) -> None:
        self.state.set_limits(limits)

    def force_error(
        self,
        code: int = 429,
        *,
        retry_after: int | None = None,
        count: int = 1,
        chat_id: int | str | None = None,
        description: str | None = None,
    ) -> None:
        """Answer the next ``count`` sends (to ``chat_id``, or to any chat) with this error."""
        self.state.force_error(
            code, retry_after=retry_after, count=count, chat_id=chat_id, description=description
        )

    def force_delay(self, seconds: float, *, count: int = 1) -> None:
        """Answer the next ``count`` sends only after ``seconds`` (they are accepted and recorded)."""
        self.state.force_delay(seconds, count=count)

    def add_user(self, user: FakeUser) -> None:
        """Make the user's private chat known (needed when ``strict_chats`` is on)."""
        self.state.add_chat(user.as_private_chat())

    # -- the user's side -------------------------------------------------------------------

    def user_sends(self, user: FakeUser, text: str, *, chat: dict[str, Any] | None = None) -> dict[str, Any]:
        """The user sends ``text`` (a ``/command`` gets its ``bot_command`` entity); the update."""
        chat_id = chat["id"] if chat else user.id
        body = build.text_message(
            user, text, message_id=self.state.next_message_id(chat_id), date=self.state.now(), chat=chat
        )
        return self.state.inject(body)

    def user_presses(
        self, user: FakeUser, data: str, *, message: SentMessage | None = None
    ) -> dict[str, Any]:
        """The user presses an inline button carrying ``data`` (on ``message``, if given)."""
        shown = None
        if message is not None:
            shown = {
                "message_id": message.message_id,
                "from": self.state.bot_user,
                "chat": user.as_private_chat(),
                "date": self.state.now(),
                "text": message.text or "",
            }
        body = build.callback_query(user, data, query_id=f"{self.bot_id}{next(self._ids):08d}", message=shown)
        return self.state.inject(body)

    def user_pays(
        self,
        user: FakeUser,
        *,
        currency: str,
        total_amount: int,
        payload: str = "order",
        charge_id: str | None = None,
    ) -> dict[str, Any]:
        """The user completes a payment: a ``successful_payment`` message (amount in smallest units)."""
        n = next(self._ids)
        body = build.successful_payment(
            user,
            currency=currency,
            total_amount=total_amount,
            payload=payload,
            charge_id=charge_id or f"tg-charge-{n}",
            provider_charge_id=f"provider-{n}",
            message_id=self.state.next_message_id(user.id),
            date=self.state.now(),
        )
        return self.state.inject(body)

    def user_blocks(self, user: FakeUser) -> dict[str, Any]:
        """The user blocks the bot: sends to them get 403 and a ``my_chat_member`` update is queued."""
        self.state.block(user.id)
        return self.state.inject(
            build.my_chat_member(user, self.state.bot_user, blocked=True, date=self.state.now())
        )

    def user_unblocks(self, user: FakeUser) -> dict[str, Any]:
        self.state.unblock(user.id)
        return self.state.inject(
            build.my_chat_member(user, self.state.bot_user, blocked=False, date=self.state.now())
        )

    def inject(self, body: dict[str, Any]) -> dict[str, Any]:
        """Queue any update body (numbered by the server)."""
        return self.state.inject(body)

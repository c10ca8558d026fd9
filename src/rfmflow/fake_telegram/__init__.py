"""A fake Telegram Bot API server for tests and benchmarks (never used by the product).

Real HTTP on loopback speaking the Bot API wire format at ``/bot<token>/<method>``, so the
real client library (python-telegram-bot, pointed at it with ``base_url``) is what a test
exercises. It enforces Telegram's flood limits with 429 and ``retry_after``, answers 403
"bot was blocked by the user" for blocked chats, records every accepted message, and delivers
the updates a test injects (messages, commands, button presses, payments, blocks) through
``getUpdates`` or to a webhook with its secret token. See ``docs/telegram.md``.

- :class:`FakeTelegram`: the server in a background thread of the test process.
- :class:`FakeTelegramProcess`: the server in a child process (benchmarks).
- :class:`FakeLimits`: the limits it enforces; :class:`FakeUser`: the user side.
"""

from rfmflow.fake_telegram.flood import FakeLimits
from rfmflow.fake_telegram.process import FakeTelegramProcess
from rfmflow.fake_telegram.server import DEFAULT_TOKEN, FakeTelegram
from rfmflow.fake_telegram.state import ApiError, SentMessage
from rfmflow.fake_telegram.updates import FakeUser

__all__ = [
    "DEFAULT_TOKEN",
    "ApiError",
    "FakeLimits",
    "FakeTelegram",
    "FakeTelegramProcess",
    "FakeUser",
    "SentMessage",
]

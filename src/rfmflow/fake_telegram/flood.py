"""The fake Bot API's flood control: the limits Telegram enforces, answered with a 429.

Telegram documents three limits for bots (https://core.telegram.org/bots/faq): about 30
messages per second overall (up to 1,000 per second for paid broadcasts, sent with
``allow_paid_broadcast``), no more than one message per second to one chat, and no more than
20 messages per minute to one group. :class:`FloodControl` enforces each on the messages it
accepts (a rejected request does not count) and, when one would be exceeded, says for how
many whole seconds to back off, as the ``retry_after`` Telegram puts in its 429 answer.

The overall limit is a token bucket (``global_per_second`` refilled continuously, holding at
most ``global_burst`` tokens: Telegram tolerates short bursts), the private-chat limit a
minimum interval between two accepted messages, the group limit a sliding window. Chats with a
negative id are groups, as in Telegram; positive ids are private chats.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass
class FakeLimits:
    """What the fake server enforces; ``None`` switches a limit off.

    ``global_per_second`` and ``global_burst`` (the bucket's size, default one second's worth)
    limit every bot message; a request with ``allow_paid_broadcast`` counts against
    ``paid_per_second`` instead. ``chat_interval`` is the minimum time between two messages
    to one private chat; ``group_messages`` per ``group_window`` seconds the limit for one
    group (negative chat id).
    """

    global_per_second: float | None = 30.0
    global_burst: float | None = None
    paid_per_second: float | None = 1000.0
    chat_interval: float | None = 1.0
    group_messages: int | None = 20
    group_window: float = 60.0

    def as_dict(self) -> dict[str, float | int | None]:
        """The limits as JSON-ready values (the control API's shape)."""
        return {
            "global_per_second": self.global_per_second,
            "global_burst": self.global_burst,
            "paid_per_second": self.paid_per_second,
            "chat_interval": self.chat_interval,
            "group_messages": self.group_messages,
            "group_window": self.group_window,
        }


class _Bucket:
    """A token bucket: ``rate`` tokens a second, at most ``size`` held."""

    def __init__(self, rate: float, size: float, now: float) -> None:
        self.rate = rate
        self.size = size
        self.tokens = size
        self.at = now

    def wait(self, now: float) -> float:
        """Seconds until one token is available (0 when one is)."""
        self.tokens = min(self.size, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1.0


def _whole_seconds(wait: float) -> int:
    """Telegram's ``retry_after``: whole seconds, at least one."""
    return max(1, math.ceil(wait - 1e-9))


class FloodControl:
    """Decides, for each message the fake is asked to send, whether Telegram would take it."""

    def __init__(self, limits: FakeLimits, now: float) -> None:
        self.limits = limits
        self._now = now
        self._global = self._bucket(limits.global_per_second, limits.global_burst, now)
        self._paid = self._bucket(limits.paid_per_second, None, now)
        self._last_private: dict[int | str, float] = {}
        self._group_times: dict[int | str, deque[float]] = {}

    @staticmethod
    def _bucket(rate: float | None, size: float | None, now: float) -> _Bucket | None:
        if rate is None:
            return None
        return _Bucket(rate, size if size is not None else max(1.0, rate), now)

    def check(self, chat_id: int | str, now: float, *, paid: bool = False) -> int | None:
        """``None`` when the message may go (and it is counted), else the ``retry_after``."""
        limits = self.limits
        group = _is_group(chat_id)
        if group and limits.group_messages is not None:
            times = self._group_times.setdefault(chat_id, deque())
            while times and times[0] <= now - limits.group_window:
                times.popleft()
            if len(times) >= limits.group_messages:
                return _whole_seconds(times[0] + limits.group_window - now)
        if not group and limits.chat_interval is not None:
            last = self._last_private.get(chat_id)
            if last is not None and now - last < limits.chat_interval:
                return _whole_seconds(last + limits.chat_interval - now)
        bucket = self._paid if paid else self._global
        if bucket is not None:
            wait = bucket.wait(now)
            if wait > 0:
                return _whole_seconds(wait)
            bucket.take()
        if group and limits.group_messages is not None:
            self._group_times[chat_id].append(now)
        if not group:
            self._last_private[chat_id] = now
        return None


def _is_group(chat_id: int | str) -> bool:
    """Groups and channels: negative ids, or an ``@username`` (which only channels have here)."""
    return isinstance(chat_id, str) or chat_id < 0

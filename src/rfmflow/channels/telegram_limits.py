"""Telegram's sending limits as the sender applies them to itself.

Telegram (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this):
about 30 messages per second overall (paid broadcasts, sent with ``allow_paid_broadcast``,
up to 1,000 per second), no more than one message per second to one chat, no more than 20
messages per minute to one group, and a 429 answer carries ``retry_after``, which must be
obeyed. :class:`TelegramLimits` holds those numbers (all adjustable, for a bot with other
limits and for tests); :class:`TokenBucket` paces the overall rate; :class:`ChatPacing`
spaces the messages to each chat.

Per-chat spacing is counted from the moment the previous answer for that chat came back, not
from when it was sent: Telegram saw the previous message no later than that, so the next one
reaches it at least ``chat_interval`` later whatever the network's jitter.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class TelegramLimits:
    """How fast the Telegram sender may go.

    ``messages_per_second``: the overall rate (Telegram: 30; 1,000 with ``paid_broadcast``).
    ``burst``: how many messages may leave at once after an idle moment (default: 1/20 s of
    the rate, at least one). ``chat_interval``: seconds between two messages to one chat.
    ``group_messages`` per ``group_window`` seconds: the limit for one group (chat id < 0).
    ``paid_broadcast``: send with ``allow_paid_broadcast`` (Telegram charges Stars for it).
    ``max_retry_after``: a 429 asking to wait longer than this defers the message (outcome
    ``deferred`` with ``retry_at``) instead of holding it. ``max_in_flight``: concurrent
    requests (default: enough for 40 ms of the rate, at least 4). ``transport_attempts``:
    tries when the request could not even be sent (connection refused), with backoff.
    """

    messages_per_second: float = 30.0
    burst: float | None = None
    chat_interval: float = 1.0
    group_messages: int = 20
    group_window: float = 60.0
    paid_broadcast: bool = False
    max_retry_after: float = 300.0
    max_in_flight: int | None = None
    transport_attempts: int = 4

    def __post_init__(self) -> None:
        positive = {
            "messages_per_second": self.messages_per_second,
            "group_messages": self.group_messages,
            "group_window": self.group_window,
            "transport_attempts": self.transport_attempts,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name}: must be greater than 0 (got {value})")
        for name, maybe in (("burst", self.burst), ("max_in_flight", self.max_in_flight)):
            if maybe is not None and not maybe >= 1:
                raise ValueError(f"{name}: must be at least 1 (got {maybe})")
        if self.chat_interval < 0 or self.max_retry_after < 0:
            raise ValueError("chat_interval and max_retry_after: must not be negative")

    @property
    def bucket_size(self) -> float:
        return self.burst if self.burst is not None else max(1.0, self.messages_per_second / 20)

    @property
    def concurrency(self) -> int:
        if self.max_in_flight is not None:
            return self.max_in_flight
        return max(4, min(256, math.ceil(self.messages_per_second / 40)))


class TokenBucket:
    """``rate`` tokens a second, at most ``size`` held; starts full."""

    def __init__(self, rate: float, size: float, now: float) -> None:
        self.rate = rate
        self.size = size
        self.tokens = size
        self.at = now

    def wait(self, now: float) -> float:
        """Seconds until a token is available (0 when one is)."""
        if now < self.at:  # paused
            return self.at - now
        self.tokens = min(self.size, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1.0

    def pause_until(self, until: float) -> None:
        """Nothing before ``until``, and no burst after it: the bucket restarts empty."""
        if until > self.at:
            self.tokens = 0.0
            self.at = until


class ChatPacing:
    """When the next message to one chat may leave, from when previous answers came back."""

    __slots__ = ("answers", "last_answer", "not_before")

    def __init__(self) -> None:
        self.not_before = 0.0
        self.last_answer = -math.inf
        self.answers: deque[float] = deque()

    def ready_at(self) -> float:
        return self.not_before

    def answered(self, at: float, limits: TelegramLimits, *, group: bool) -> None:
        """A request to this chat got its answer at ``at``."""
        self.last_answer = at
        next_at = at + limits.chat_interval
        if group:
            self.answers.append(at)
            while len(self.answers) > limits.group_messages:
                self.answers.popleft()
            if len(self.answers) >= limits.group_messages:
                next_at = max(next_at, self.answers[0] + limits.group_window)
        self.not_before = max(self.not_before, next_at)

    def hold_until(self, until: float) -> None:
        self.not_before = max(self.not_before, until)

    def busy_recently(self, now: float, limits: TelegramLimits, *, group: bool) -> bool:
        """Whether this chat's own limit could explain a 429 (we sent to it within its window)."""
        window = limits.group_window if group else max(2 * limits.chat_interval, 2.0)
        return now - self.last_answer < window


def is_group(chat_id: int | str) -> bool:
    """Groups, supergroups and channels: a negative id, or an ``@username``."""
    return isinstance(chat_id, str) or chat_id < 0

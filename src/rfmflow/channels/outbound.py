"""The sender port: what every channel (Telegram, email, webhooks) takes and answers.

A channel's sender takes its messages (:class:`OutboundMessage` for Telegram; each channel
has its own, all with an ``id``), one at a time (:meth:`Sender.send`) or as a batch or stream
(:meth:`Sender.send_many`), and answers one :class:`SendOutcome` per message id. The outbox
that drives it (built by the automation engine) records each outcome:

``delivered``
    the channel accepted the message (``provider_message_id`` is its id there);
``blocked``
    the recipient cannot be reached and will not be until they act (Telegram: 403, the user
    blocked the bot or left the group); never retried; the reason is the channel's text;
``failed``
    a permanent error for this message (bad request, chat not found, invalid token);
``deferred``
    not sent now, and safe to send later: ``retry_at`` says when (a flood wait longer than the
    sender is willing to wait, the kill switch, transport errors before the request left);
``unknown``
    the request may have reached the channel but no answer came (a read timeout, a dropped
    connection, a server error): resending could deliver it twice, so the sender does not,
    and the outbox must not resend it blindly;
``duplicate``
    the message id was already taken by this sender instance; nothing was sent again.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

OutcomeStatus = Literal["delivered", "blocked", "failed", "deferred", "unknown", "duplicate"]
OUTCOME_STATUSES: tuple[OutcomeStatus, ...] = (
    "delivered",
    "blocked",
    "failed",
    "deferred",
    "unknown",
    "duplicate",
)


@dataclass(frozen=True)
class OutboundMessage:
    """One message to one recipient.

    ``id`` identifies the message for idempotency (the outbox row's id): a sender never sends
    the same id twice. ``chat_id`` is the recipient's address on the channel (a Telegram chat
    id: positive for a private chat, negative for a group; or ``@channel``). ``reply_markup``
    is the Bot API JSON object (an inline or reply keyboard); ``photo`` (a file id or URL)
    sends a photo with ``text`` as its caption.
    """

    id: str
    chat_id: int | str
    text: str
    reply_markup: Mapping[str, Any] | None = None
    parse_mode: str | None = None
    disable_notification: bool = False
    photo: str | None = None


@dataclass(frozen=True)
class SendOutcome:
    """What became of one message. Times are UTC; ``attempts`` counts requests made."""

    message_id: str
    status: OutcomeStatus
    reason: str | None = None
    retry_at: datetime | None = None
    provider_message_id: str | None = None
    sent_at: datetime | None = None
    attempts: int = 0
    details: Mapping[str, Any] = field(default_factory=dict)


MessageSource = Iterable[OutboundMessage] | AsyncIterable[OutboundMessage]


class HasId(Protocol):
    """Any channel's message: it has the id the sender deduplicates on."""

    @property
    def id(self) -> str: ...


MessageT = TypeVar("MessageT", bound=HasId, contravariant=True)


class Sender(Protocol[MessageT]):
    """A channel's sender of ``MessageT`` (``Sender[OutboundMessage]`` for Telegram).

    Implementations pace themselves to the channel's limits and answer one
    :class:`SendOutcome` per message id.
    """

    @property
    def channel(self) -> str:
        """The channel's name (``telegram``, ``email``, ``webhook``)."""
        ...

    async def send(self, message: MessageT) -> SendOutcome:
        """Send one message (waiting for its turn under the limits) and return its outcome."""
        ...

    def send_many(self, messages: Iterable[MessageT] | AsyncIterable[MessageT]) -> AsyncIterator[SendOutcome]:
        """Send a batch or stream, yielding one outcome per message as each is known."""
        ...


M = TypeVar("M")


async def one_by_one(
    send: Callable[[M], Awaitable[SendOutcome]], messages: Iterable[M] | AsyncIterable[M]
) -> AsyncIterator[SendOutcome]:
    """``send`` each of ``messages`` in turn, yielding the outcomes (for senders without
    their own pacing, such as e-mail and webhooks)."""
    if isinstance(messages, AsyncIterable):
        async for message in messages:
            yield await send(message)
    else:
        for message in messages:
            yield await send(message)

"""The Telegram sender: python-telegram-bot, paced to Telegram's limits, one outcome per message.

:class:`TelegramSender` implements the :class:`~rfmflow.channels.outbound.Sender` port. Every
message goes through one dispatcher that

- keeps a queue per chat and sends at most one request to a chat at a time, spaced by
  ``chat_interval`` (and ``group_messages`` per ``group_window`` for groups) from the previous
  answer, so a broadcast never waits behind one busy chat;
- takes a token from the overall bucket (``messages_per_second``) for each request and keeps
  up to ``max_in_flight`` requests open at once, which is what reaches the rate;
- on a 429 holds the chat for ``retry_after`` and, unless that chat's own limit explains the
  429 (we sent to it within its window), holds every chat (Telegram does not say which limit
  was hit; a 429 for a chat we had left alone can only be the overall one); the bucket then
  restarts empty, so no burst follows the pause; the message is retried after the wait, or
  reported ``deferred`` when the wait is longer than ``max_retry_after``;
- on a 403 reports ``blocked`` and sends nothing more to that chat in this sender's life;
- on a 400 reports ``failed`` (``chat not found`` also fails the chat's queued messages);
- retries, with backoff, only requests that certainly never left (connection refused, no
  free connection); one that may have reached Telegram without an answer is ``unknown``.

No message id is sent twice by one sender: a repeated id gets a ``duplicate`` outcome. The
outbox that survives crashes is the caller's (see ``docs/telegram.md``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import os
import socket
import time
import warnings
from collections import Counter, deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal

from telegram import (
    Bot,
    ForceReply,
    InlineKeyboardMarkup,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import BaseRequest, HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from rfmflow.channels.outbound import MessageSource, OutboundMessage, OutcomeStatus, SendOutcome
from rfmflow.channels.telegram_limits import ChatPacing, TelegramLimits, TokenBucket, is_group
from rfmflow.channels.telegram_transport import AiohttpRequest, certainly_not_sent

#: HTTP connections per ``Bot`` client on httpx (see :func:`telegram_bots`).
CONNECTIONS_PER_BOT = 4

ReplyMarkup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | ForceReply
ChatKey = int | str

Transport = Literal["aiohttp", "httpx"]


def telegram_bot(
    token: str,
    *,
    base_url: str | None = None,
    connections: int = CONNECTIONS_PER_BOT,
    timeout: float = 10.0,
    transport: Transport = "aiohttp",
) -> Bot:
    """A python-telegram-bot ``Bot`` with its own pool of ``connections`` HTTP connections.

    ``base_url`` is the Bot API root with ``/bot`` (``https://api.telegram.org/bot`` by
    default; a local Bot API server or the tests' fake otherwise); the token is appended.
    ``transport`` is ``aiohttp`` (:class:`~rfmflow.channels.telegram_transport.AiohttpRequest`,
    the cheaper one) or ``httpx`` (python-telegram-bot's own ``HTTPXRequest``).
    """
    use_timedelta_durations()
    request: BaseRequest
    polling: BaseRequest
    if transport == "aiohttp":
        request = AiohttpRequest(connections=connections, timeout=timeout)
        polling = AiohttpRequest(connections=1, timeout=timeout)
    elif transport == "httpx":
        nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        request = HTTPXRequest(
            connection_pool_size=connections,
            read_timeout=timeout,
            write_timeout=timeout,
            connect_timeout=timeout,
            pool_timeout=timeout,
            socket_options=nodelay,
        )
        polling = HTTPXRequest(connection_pool_size=1, read_timeout=timeout, socket_options=nodelay)
    else:
        raise ValueError(f"transport: expected aiohttp or httpx, got {transport!r}")
    if base_url is None:
        return Bot(token, request=request, get_updates_request=polling)
    return Bot(token, base_url=base_url, request=request, get_updates_request=polling)


def use_timedelta_durations() -> None:
    """Opt into python-telegram-bot's timedelta durations (``PTB_TIMEDELTA=true``).

    Without it, python-telegram-bot 22 emits a deprecation warning each time it builds a
    ``RetryAfter`` (that is, on every 429), because its next major version turns
    ``retry_after`` into a ``timedelta``. The sender reads either type; this setting (of the
    process environment, where python-telegram-bot looks for it) only silences the warning.
    """
    os.environ.setdefault("PTB_TIMEDELTA", "true")


def telegram_bots(
    token: str, limits: TelegramLimits, *, base_url: str | None = None, transport: Transport = "aiohttp"
) -> list[Bot]:
    """The ``Bot`` clients a sender with these limits needs: ``limits.concurrency`` connections.

    One aiohttp client holds them all. httpx's connection pool looks at every connection for
    every request, so one pool of a hundred connections costs more CPU per message than the
    rest of the client together: with httpx they are split over clients of
    :data:`CONNECTIONS_PER_BOT` connections each.
    """
    if transport == "aiohttp":
        return [telegram_bot(token, base_url=base_url, connections=limits.concurrency, transport=transport)]
    count = max(1, math.ceil(limits.concurrency / CONNECTIONS_PER_BOT))
    return [telegram_bot(token, base_url=base_url, transport=transport) for _ in range(count)]


@dataclass(eq=False)
class _Job:
    message: OutboundMessage
    future: asyncio.Future[SendOutcome]
    attempts: int = 0
    cancelled: bool = False


@dataclass
class SenderStats:
    """Counters over the sender's life: outcomes by status, 429s received, pauses."""

    outcomes: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    global_pauses: int = 0
    chat_pauses: int = 0
    transport_retries: int = 0
    requests: int = 0


class TelegramSender:
    """Sends :class:`OutboundMessage` objects through ``telegram.Bot`` clients within the limits.

    ``bot`` is one client or several of the same bot (requests go round them; see
    :func:`telegram_bots`); :meth:`for_token` builds them. Use the sender as an async context
    manager (it initialises and shuts down the clients), then ``await send(message)`` or
    ``async for outcome in send_many(messages)``. ``clock`` is a monotonic clock in seconds.
    """

    channel = "telegram"

    def __init__(
        self,
        bot: Bot | Sequence[Bot],
        limits: TelegramLimits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        use_timedelta_durations()
        self.bots = [bot] if isinstance(bot, Bot) else list(bot)
        if not self.bots:
            raise ValueError("bot: at least one telegram.Bot is needed")
        self.bot = self.bots[0]
        self._next_bot = itertools.cycle(self.bots)
        self.limits = limits or TelegramLimits()
        self.stats = SenderStats()
        self._clock = clock
        self._bucket = TokenBucket(self.limits.messages_per_second, self.limits.bucket_size, clock())
        self._paused_until = 0.0
        self._chats: dict[ChatKey, ChatPacing] = {}
        self._closed_chats: dict[ChatKey, tuple[OutcomeStatus, str]] = {}
        self._pending: dict[ChatKey, deque[_Job]] = {}
        self._heap: list[tuple[float, int, ChatKey]] = []
        self._in_heap: set[ChatKey] = set()
        self._in_flight: set[ChatKey] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._seen: set[str] = set()
        self._seq = itertools.count()
        self._wake: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._stopped: str | None = None
        self._fatal: str | None = None
        self._dispatched = 0

    @classmethod
    def for_token(
        cls,
        token: str,
        limits: TelegramLimits | None = None,
        *,
        base_url: str | None = None,
        transport: Transport = "aiohttp",
    ) -> TelegramSender:
        """A sender with the clients its limits need, for the bot with this token."""
        chosen = limits or TelegramLimits()
        return cls(telegram_bots(token, chosen, base_url=base_url, transport=transport), chosen)

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> TelegramSender:
        try:
            await asyncio.gather(*(bot.initialize() for bot in self.bots))
        except BaseException as err:
            await asyncio.gather(*(bot.shutdown() for bot in self.bots), return_exceptions=True)
            if isinstance(err, InvalidToken):  # its message would carry the token
                raise InvalidToken("the bot token was refused by Telegram") from None
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:  # leaving on an error: what has not left stays unsent
            self.stop("the sender was closed")
        await self.drain()
        await asyncio.gather(*(bot.shutdown() for bot in self.bots))

    async def drain(self) -> None:
        """Wait until every submitted message has its outcome."""
        while self._pending or self._tasks:
            waiting = [t for t in (self._dispatcher, *self._tasks) if t is not None and not t.done()]
            if not waiting:
                break
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)

    def stop(self, reason: str = "stopped") -> None:
        """The kill switch: nothing more leaves. Queued and later messages are ``deferred``."""
        self._stopped = reason
        for chat in list(self._pending):
            for job in self._pending.pop(chat):
                self._resolve(job, "deferred", reason, retry_at=self._wall_in(0.0))
        self._heap.clear()
        self._in_heap.clear()
        self._poke()

    def resume(self) -> None:
        """Undo :meth:`stop` for messages submitted from now on."""
        self._stopped = None

    # -- the port --------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendOutcome:
        return await self._submit(message).future

    async def send_many(
        self, messages: MessageSource, *, window: int | None = None
    ) -> AsyncIterator[SendOutcome]:
        """Send every message, yielding outcomes as they are known (not in input order).

        At most ``window`` messages (default: 10 s of the rate, at least 1,000) are taken from
        ``messages`` ahead of their outcomes, so a stream of any length is read lazily. If the
        caller stops iterating early, messages not yet sent are withdrawn (those in flight
        finish, but their outcomes are not yielded).
        """
        limit = window or max(1000, int(self.limits.messages_per_second * 10))
        done: asyncio.Queue[SendOutcome] = asyncio.Queue()
        open_jobs: set[_Job] = set()

        def finished(job: _Job) -> Callable[[asyncio.Future[SendOutcome]], None]:
            def callback(future: asyncio.Future[SendOutcome]) -> None:
                open_jobs.discard(job)
                done.put_nowait(future.result())

            return callback

        try:
            async for message in _aiter(messages):
                job = self._submit(message)
                open_jobs.add(job)
                job.future.add_done_callback(finished(job))
                while len(open_jobs) >= limit:
                    yield await done.get()
                while not done.empty():
                    yield done.get_nowait()
            while open_jobs or not done.empty():
                yield await done.get()
        finally:
            for job in list(open_jobs):
                self._withdraw(job)

    # -- dispatching -----------------------------------------------------------------------

    def _submit(self, message: OutboundMessage) -> _Job:
        loop = asyncio.get_running_loop()
        job = _Job(message, loop.create_future())
        if message.id in self._seen:
            self._resolve(job, "duplicate", "this message id was already taken by this sender")
            return job
        self._seen.add(message.id)
        chat = _chat_key(message.chat_id)
        problem = _invalid(message, self.bot)
        if problem is not None:
            self._resolve(job, "failed", problem)
        elif self._fatal is not None:
            self._resolve(job, "failed", self._fatal)
        elif self._stopped is not None:
            self._resolve(job, "deferred", self._stopped, retry_at=self._wall_in(0.0))
        elif chat in self._closed_chats:
            status, reason = self._closed_chats[chat]
            self._resolve(job, status, reason)
        else:
            self._pending.setdefault(chat, deque()).append(job)
            self._schedule(chat)
            self._ensure_dispatcher()
        return job

    def _withdraw(self, job: _Job) -> None:
        """Take a message back if it has not left yet (an abandoned ``send_many``)."""
        job.cancelled = True
        queue = self._pending.get(_chat_key(job.message.chat_id))
        if queue is not None and job in queue:
            queue.remove(job)
            self._resolve(job, "deferred", "withdrawn before sending", retry_at=self._wall_in(0.0))

    def _schedule(self, chat: ChatKey) -> None:
        if chat in self._in_heap or chat in self._in_flight or not self._pending.get(chat):
            return
        pacing = self._chats.get(chat)
        ready = pacing.ready_at() if pacing is not None else 0.0
        heapq.heappush(self._heap, (ready, next(self._seq), chat))
        self._in_heap.add(chat)
        self._poke()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _ensure_dispatcher(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._wake = asyncio.Event()
            self._dispatcher = asyncio.create_task(self._dispatch())
            self._dispatcher.add_done_callback(self._dispatcher_done)

    def _dispatcher_done(self, task: asyncio.Task[None]) -> None:
        """A dispatcher that died must not leave callers waiting: everything queued fails."""
        if not task.cancelled() and task.exception() is not None:
            self._fatal = f"internal error in the Telegram sender: {task.exception()!r}"
            self._fail_everything(self._fatal)

    async def _nap(self, seconds: float | None) -> None:
        """Sleep until poked (a new message, an answer) or ``seconds`` have passed."""
        wake = self._wake
        assert wake is not None
        if seconds is None:
            await wake.wait()
            return
        timer = asyncio.get_running_loop().call_later(seconds, wake.set)
        try:
            await wake.wait()
        finally:
            timer.cancel()

    async def _dispatch(self) -> None:
        assert self._wake is not None
        concurrency = self.limits.concurrency
        while self._heap or self._pending:
            self._wake.clear()
            if not self._heap:
                await self._nap(None)  # every queued chat is in flight: wait for an answer
                continue
            now = self._clock()
            ready, _, chat = self._heap[0]
            start = max(ready, self._paused_until)
            if start > now:
                await self._nap(start - now)
                continue
            if len(self._tasks) >= concurrency:
                await self._nap(None)
                continue
            wait = self._bucket.wait(now)
            if wait > 0:
                await self._nap(wait)
                continue
            heapq.heappop(self._heap)
            self._in_heap.discard(chat)
            pacing = self._chats.get(chat)
            if pacing is not None and pacing.ready_at() > now:  # held by a 429 since it was queued
                self._schedule(chat)
                continue
            queue = self._pending.get(chat)
            job = queue.popleft() if queue else None
            if queue is not None and not queue:
                del self._pending[chat]
            if job is None:
                continue
            if job.cancelled:
                self._resolve(job, "deferred", "withdrawn before sending", retry_at=self._wall_in(0.0))
                self._schedule(chat)
                continue
            self._bucket.take()
            self._in_flight.add(chat)
            task = asyncio.create_task(self._attempt(chat, job))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)
            self._dispatched += 1
            if self._dispatched % 10_000 == 0:
                self._forget_quiet_chats(now)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._poke()

    def _forget_quiet_chats(self, now: float) -> None:
        keep = self.limits.group_window + self.limits.chat_interval
        for chat, pacing in list(self._chats.items()):
            quiet = now - pacing.last_answer > keep and pacing.not_before < now
            if quiet and chat not in self._pending and chat not in self._in_flight:
                del self._chats[chat]

    # -- one request -----------------------------------------------------------------------

    async def _attempt(self, chat: ChatKey, job: _Job) -> None:
        job.attempts += 1
        self.stats.requests += 1
        group = is_group(chat)
        pacing = self._chats.setdefault(chat, ChatPacing())
        requeue = False
        try:
            sent = await self._call(job.message)
        except RetryAfter as err:
            requeue = self._rate_limited(chat, job, pacing, _retry_after_seconds(err), group=group)
        except Forbidden as err:
            self._close_chat(chat, "blocked", str(err), job)
        except ChatMigrated as err:
            reason = f"the group became supergroup {err.new_chat_id}; send to that chat id"
            self._resolve(job, "failed", reason, details={"migrate_to_chat_id": err.new_chat_id})
        except InvalidToken as err:
            self._fatal = f"the bot token was refused: {err}"
            self._resolve(job, "failed", self._fatal)
            self._fail_everything(self._fatal)
        except BadRequest as err:
            if "chat not found" in str(err).lower():
                self._close_chat(chat, "failed", str(err), job)
            else:
                self._resolve(job, "failed", str(err))
        except (TimedOut, NetworkError) as err:
            requeue = self._transport_error(chat, job, pacing, err)
        except TelegramError as err:
            self._resolve(job, "failed", str(err))
        except Exception as err:  # a failure inside the client: the request may have left
            self._resolve(job, "unknown", f"unexpected error while sending: {err!r}")
        else:
            self._resolve(job, "delivered", provider_message_id=str(sent.message_id), sent_at=_utcnow())
        finally:
            pacing.answered(self._clock(), self.limits, group=group)
            self._in_flight.discard(chat)
            if requeue and self._stopped is not None:
                self._resolve(job, "deferred", self._stopped, retry_at=self._wall_in(0.0))
            elif requeue:
                self._pending.setdefault(chat, deque()).appendleft(job)
            self._schedule(chat)
            if self._pending:
                self._ensure_dispatcher()

    async def _call(self, message: OutboundMessage) -> Message:
        bot = next(self._next_bot)
        markup = _reply_markup(message.reply_markup, bot)
        extra: dict[str, Any] = {"disable_notification": message.disable_notification}
        if message.parse_mode:
            extra["parse_mode"] = message.parse_mode
        if self.limits.paid_broadcast:
            extra["allow_paid_broadcast"] = True
        if message.photo is not None:
            return await bot.send_photo(
                message.chat_id, message.photo, caption=message.text or None, reply_markup=markup, **extra
            )
        return await bot.send_message(message.chat_id, message.text, reply_markup=markup, **extra)

    def _rate_limited(
        self, chat: ChatKey, job: _Job, pacing: ChatPacing, wait: float, *, group: bool
    ) -> bool:
        now = self._clock()
        self.stats.rate_limited += 1
        until = now + wait
        pacing.hold_until(until)
        if pacing.busy_recently(now, self.limits, group=group):
            self.stats.chat_pauses += 1
        else:
            self.stats.global_pauses += 1
            self._paused_until = max(self._paused_until, until)
            self._bucket.pause_until(until)
        if wait > self.limits.max_retry_after:
            reason = f"Telegram asked to wait {wait:g} s (more than max_retry_after)"
            self._resolve(job, "deferred", reason, retry_at=self._wall_in(wait))
            return False
        return True

    def _transport_error(self, chat: ChatKey, job: _Job, pacing: ChatPacing, err: TelegramError) -> bool:
        if not certainly_not_sent(err):
            reason = f"no answer from Telegram, the message may have been delivered: {err}"
            self._resolve(job, "unknown", reason)
            return False
        backoff = min(30.0, 0.5 * 2 ** (job.attempts - 1))
        if job.attempts >= self.limits.transport_attempts:
            self._resolve(
                job, "deferred", f"could not reach Telegram: {err}", retry_at=self._wall_in(backoff)
            )
            return False
        self.stats.transport_retries += 1
        pacing.hold_until(self._clock() + backoff)
        return True

    def _close_chat(self, chat: ChatKey, status: OutcomeStatus, reason: str, job: _Job) -> None:
        """This chat cannot be reached: the job and everything queued for the chat get ``status``."""
        self._closed_chats[chat] = (status, reason)
        self._resolve(job, status, reason)
        for queued in self._pending.pop(chat, deque()):
            self._resolve(queued, status, reason, attempts=0)

    def _fail_everything(self, reason: str) -> None:
        for chat in list(self._pending):
            for queued in self._pending.pop(chat):
                self._resolve(queued, "failed", reason)
        self._heap.clear()
        self._in_heap.clear()

    # -- outcomes --------------------------------------------------------------------------

    def _resolve(
        self,
        job: _Job,
        status: OutcomeStatus,
        reason: str | None = None,
        *,
        retry_at: datetime | None = None,
        provider_message_id: str | None = None,
        sent_at: datetime | None = None,
        details: Mapping[str, Any] | None = None,
        attempts: int | None = None,
    ) -> None:
        if job.future.done():
            return
        self.stats.outcomes[status] += 1
        job.future.set_result(
            SendOutcome(
                message_id=job.message.id,
                status=status,
                reason=reason,
                retry_at=retry_at,
                provider_message_id=provider_message_id,
                sent_at=sent_at,
                attempts=job.attempts if attempts is None else attempts,
                details=dict(details or {}),
            )
        )

    def _wall_in(self, seconds: float) -> datetime:
        return _utcnow() + timedelta(seconds=seconds)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _chat_key(chat_id: int | str) -> ChatKey:
    if isinstance(chat_id, str):
        text = chat_id.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        return text
    return chat_id


def _retry_after_seconds(err: RetryAfter) -> float:
    """``retry_after`` in seconds, whichever type this python-telegram-bot version returns."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = err.retry_after
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def _invalid(message: OutboundMessage, bot: Bot) -> str | None:
    """Why the message cannot be sent as given, or ``None``."""
    if not message.text and message.photo is None:
        return "text: must not be empty"
    try:
        _reply_markup(message.reply_markup, bot)
    except (ValueError, TypeError, KeyError) as err:
        return f"reply_markup: not a keyboard the Bot API knows ({err})"
    return None


def _reply_markup(markup: Mapping[str, Any] | None, bot: Bot) -> ReplyMarkup | None:
    """The Bot API JSON of a keyboard as the python-telegram-bot object it stands for."""
    if markup is None:
        return None
    data = dict(markup)
    if "inline_keyboard" in data:
        return InlineKeyboardMarkup.de_json(data, bot)
    if "keyboard" in data:
        return ReplyKeyboardMarkup.de_json(data, bot)
    if data.get("remove_keyboard"):
        return ReplyKeyboardRemove.de_json(data, bot)
    if data.get("force_reply"):
        return ForceReply.de_json(data, bot)
    raise ValueError("expected an object with inline_keyboard, keyboard, remove_keyboard or force_reply")


async def _aiter(messages: MessageSource) -> AsyncIterator[OutboundMessage]:
    if isinstance(messages, AsyncIterable):
        async for message in messages:
            yield message
    else:
        for message in messages:
            yield message

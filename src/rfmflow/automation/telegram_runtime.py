"""The bot's process side: an asyncio loop in a thread that talks to Telegram.

:class:`BotRuntime` owns one paced :class:`~rfmflow.channels.telegram_sender.TelegramSender`
(replies keep Telegram's limits) and its ``Bot`` client (``setMyCommands``,
``answerCallbackQuery``, ``setWebhook``, ``getUpdates``). It runs in the ``serve`` process
(started and stopped with the app; see :mod:`rfmflow.automation.routes_telegram`):

- webhook mode: on start, ``setWebhook`` with ``RFMFLOW_TELEGRAM_WEBHOOK_URL`` and the secret
  when the URL is set; the HTTP route hands each handled update's actions to :meth:`submit`;
- polling mode: ``deleteWebhook``, then ``getUpdates`` with the offset of the last update
  handled (an update whose handling failed on the database is fetched again, so nothing is
  confirmed to Telegram before it is committed);
- both: every ``menu_refresh_seconds`` the menus of customers whose segment or tags changed
  since their menu was set (:func:`~rfmflow.automation.telegram_bot.stale_menus`) are set again.

A 403 from a reply opts the customer out (``blocked``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from typing import Any

from sqlalchemy.engine import Engine
from telegram import BotCommand, BotCommandScopeChat
from telegram.error import TelegramError

from rfmflow.automation.telegram_bot import (
    BotActions,
    SetMenu,
    bot_id_of,
    handle_update,
    record_blocked,
    remember_menu,
    stale_menus,
)
from rfmflow.automation.telegram_menus import BotConfig
from rfmflow.channels.telegram_limits import TelegramLimits
from rfmflow.channels.telegram_sender import TelegramSender
from rfmflow.channels.telegram_updates import TelegramUpdateError
from rfmflow.service.settings import Settings

log = logging.getLogger("rfmflow.automation.telegram")

ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]
POLL_TIMEOUT = 10
"""Seconds a ``getUpdates`` long poll waits for an update."""
RETRY_SECONDS = 2.0
MENU_REFRESH_SECONDS = 60.0


class BotRuntime:
    """The bot's loop in a daemon thread; :meth:`start` returns once the client is ready."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        config: BotConfig,
        *,
        poll_timeout: int | None = None,
        menu_refresh_seconds: float = MENU_REFRESH_SECONDS,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.config = config
        self.bot_id = bot_id_of(settings.telegram_bot_token)
        self.poll_timeout = POLL_TIMEOUT if poll_timeout is None else poll_timeout
        self.menu_refresh_seconds = menu_refresh_seconds
        self.handled = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main_task: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._sender: TelegramSender | None = None
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        self._thread = threading.Thread(target=self._run, name="rfmflow-telegram-bot", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the Telegram bot did not start in time")
        if self._error is not None:
            raise RuntimeError(f"the Telegram bot could not start: {self._error}") from self._error

    def stop(self, timeout: float = 30.0) -> None:
        loop, task = self._loop, self._main_task
        if loop is not None and task is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, actions: BotActions) -> None:
        """Carry out ``actions`` (from any thread); returns at once."""
        loop = self._loop
        if loop is None or loop.is_closed():
            log.warning("telegram bot not running; actions dropped", extra={"update_id": actions.update_id})
            return
        if not actions.messages and actions.set_menu is None and actions.answer_callback is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._perform(actions), loop)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as err:  # reported to start() or logged
            if not self._ready.is_set():
                self._error = err
                self._ready.set()
            else:
                log.exception("telegram bot stopped on an error")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._main_task = asyncio.current_task()
        settings = self.settings
        sender = TelegramSender.for_token(
            settings.telegram_bot_token, TelegramLimits(), base_url=settings.telegram_api_url
        )
        try:
            async with sender:
                self._sender = sender
                await self._configure_webhook()
                self._ready.set()
                refresher = asyncio.create_task(self._refresh_menus())
                try:
                    if settings.telegram_mode == "polling":
                        await self._poll()
                    else:
                        await asyncio.Event().wait()
                finally:
                    refresher.cancel()
                    await asyncio.gather(refresher, return_exceptions=True)
        except asyncio.CancelledError:
            pass
        finally:
            self._sender = None

    async def _configure_webhook(self) -> None:
        assert self._sender is not None
        bot, settings = self._sender.bot, self.settings
        if settings.telegram_mode == "polling":
            await bot.delete_webhook()
        elif settings.telegram_webhook_url:
            await bot.set_webhook(
                settings.telegram_webhook_url,
                secret_token=settings.telegram_webhook_secret,
                allowed_updates=ALLOWED_UPDATES,
            )

    # -- receiving -------------------------------------------------------------------------

    async def _poll(self) -> None:
        assert self._sender is not None
        bot = self._sender.bot
        offset: int | None = None
        while True:
            try:
                updates = await bot.get_updates(
                    offset=offset, timeout=self.poll_timeout, allowed_updates=ALLOWED_UPDATES
                )
            except TelegramError as err:
                log.warning("getUpdates failed; retrying", extra={"error": str(err)})
                await asyncio.sleep(RETRY_SECONDS)
                continue
            for update in updates:
                try:
                    actions = await asyncio.to_thread(self.handle, update.to_dict())
                except TelegramUpdateError as err:
                    log.warning(
                        "telegram update skipped", extra={"update_id": update.update_id, "error": str(err)}
                    )
                except Exception:
                    log.exception(
                        "telegram update not handled; fetching it again",
                        extra={"update_id": update.update_id},
                    )
                    await asyncio.sleep(RETRY_SECONDS)
                    break
                else:
                    await self._perform(actions)
                offset = update.update_id + 1

    def handle(self, update: dict[str, Any]) -> BotActions:
        """Record one update (the webhook route and the polling loop both come here)."""
        actions = handle_update(self.engine, self.settings, self.config, update, bot_id=self.bot_id)
        self.handled += 1
        return actions

    # -- acting ----------------------------------------------------------------------------

    async def _perform(self, actions: BotActions) -> None:
        sender = self._sender
        if sender is None:
            return
        try:
            if actions.answer_callback:
                await sender.bot.answer_callback_query(actions.answer_callback)
            for message in actions.messages:
                outcome = await sender.send(message)
                if outcome.status == "blocked":
                    await asyncio.to_thread(record_blocked, self.engine, int(message.chat_id))
                elif outcome.status != "delivered":
                    log.warning(
                        "telegram reply not delivered",
                        extra={"message_id": message.id, "status": outcome.status, "reason": outcome.reason},
                    )
            if actions.set_menu is not None:
                await self._set_menu(actions.set_menu)
        except Exception:
            log.exception("telegram actions failed", extra={"update_id": actions.update_id})

    async def _set_menu(self, change: SetMenu) -> None:
        assert self._sender is not None
        commands = [BotCommand(c["command"], c["description"]) for c in change.menu.bot_commands()]
        await self._sender.bot.set_my_commands(commands, scope=BotCommandScopeChat(change.chat_id))
        await asyncio.to_thread(remember_menu, self.engine, change.customer_id, change.menu.name)

    async def _refresh_menus(self) -> None:
        while True:
            await asyncio.sleep(self.menu_refresh_seconds)
            try:
                for change in await asyncio.to_thread(stale_menus, self.engine, self.config):
                    await self._set_menu(change)
            except Exception:
                log.exception("telegram menu refresh failed")

    async def refresh_menus_now(self) -> int:
        changes = await asyncio.to_thread(stale_menus, self.engine, self.config)
        for change in changes:
            await self._set_menu(change)
        return len(changes)

    def refresh_menus(self, timeout: float = 60.0) -> int:
        """Set the stale menus now (from any thread but the bot's); how many were set."""
        loop = self._loop
        if loop is None or loop.is_closed():
            raise RuntimeError("the Telegram bot is not running")
        return asyncio.run_coroutine_threadsafe(self.refresh_menus_now(), loop).result(timeout)

    @property
    def running(self) -> bool:
        """The client is ready (between a successful start and the stop)."""
        return self._sender is not None

    def idle(self) -> bool:
        """No submitted actions still running (for tests and graceful stops)."""
        with self._lock:
            return not self._pending


__all__ = ["ALLOWED_UPDATES", "BotRuntime"]

"""``POST /v1/telegram/webhook`` and the bot's start and stop with the app.

With ``RFMFLOW_TELEGRAM_MODE`` ``webhook`` or ``polling``, :func:`register` adds a
:class:`~rfmflow.automation.telegram_runtime.BotRuntime` to the app's lifespan (started when the
app starts, stopped when it stops). The webhook answers:

- 404 when the bot is not in webhook mode;
- 401 without ``X-Telegram-Bot-Api-Secret-Token``, 403 with a wrong one;
- 400 when the body is not a JSON object, 422 (naming the field) for a malformed update;
- 503 when the bot's client is not running (Telegram retries);
- 200 ``{update_id, customer_id, events: [...], replies, consent, menu, ignored}`` otherwise,
  after the update's events, profile and consent are committed (a re-delivery answers 200
  with ``duplicate`` events and sends nothing again).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from rfmflow.automation.telegram_menus import load_config
from rfmflow.automation.telegram_runtime import BotRuntime
from rfmflow.channels.telegram_updates import TelegramUpdateError

log = logging.getLogger("rfmflow.automation.telegram")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATE_BYTES = 1024 * 1024


def register(app: FastAPI) -> None:
    settings = app.state.service.settings
    runtime: BotRuntime | None = None
    if settings.telegram_mode != "off":
        config = load_config(settings.telegram_menus)  # a bad configuration stops the app here
        runtime = BotRuntime(settings, app.state.service.engine, config)
        _run_with_app(app, runtime)
    app.state.telegram_bot = runtime

    @app.post(
        "/v1/telegram/webhook",
        tags=["telegram"],
        summary="Telegram's webhook for the business's bot",
        description=(
            "Telegram POSTs each update here with `X-Telegram-Bot-Api-Secret-Token` (401 without it, "
            "403 when wrong). The update's events (messages, commands, button presses, payments) are "
            "ingested once, the profile and consent updated, then the bot answers. 404 unless "
            "RFMFLOW_TELEGRAM_MODE=webhook."
        ),
    )
    async def telegram_webhook(request: Request) -> JSONResponse:
        if runtime is None or settings.telegram_mode != "webhook":
            return JSONResponse(
                {"detail": "the Telegram webhook is not enabled (RFMFLOW_TELEGRAM_MODE)"}, 404
            )
        presented = request.headers.get(SECRET_HEADER)
        if not presented:
            return JSONResponse({"detail": f"missing {SECRET_HEADER}"}, 401)
        if not hmac.compare_digest(presented.encode(), settings.telegram_webhook_secret.encode()):
            return JSONResponse({"detail": f"wrong {SECRET_HEADER}"}, 403)
        body = await request.body()
        if len(body) > MAX_UPDATE_BYTES:
            return JSONResponse({"detail": "the update is over 1 MB"}, 413)
        try:
            update: Any = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            return JSONResponse({"detail": f"the body is not JSON: {err}"}, 400)
        if not isinstance(update, dict):
            return JSONResponse({"detail": "the body must be a JSON object (one Telegram Update)"}, 400)
        if not runtime.running:
            return JSONResponse({"detail": "the Telegram bot is not running; retry later"}, 503)
        try:
            actions = await run_in_threadpool(runtime.handle, update)
        except TelegramUpdateError as err:
            detail = [{"loc": ["body", *err.field.split(".")], "msg": err.reason, "type": "value_error"}]
            return JSONResponse({"detail": detail}, 422)
        runtime.submit(actions)
        return JSONResponse(actions.as_dict())


def _run_with_app(app: FastAPI, runtime: BotRuntime) -> None:
    """Start the bot after the app's own startup and stop it before the app's shutdown."""
    inner: Callable[[Any], AbstractAsyncContextManager[Any]] = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(target: Any) -> AsyncIterator[Any]:
        async with inner(target) as state:
            try:
                await run_in_threadpool(runtime.start)
            except RuntimeError as err:  # Telegram unreachable or the token refused: serve anyway
                log.error("telegram bot not started", extra={"error": str(err)})
            try:
                yield state
            finally:
                await run_in_threadpool(runtime.stop)

    app.router.lifespan_context = lifespan


__all__ = ["SECRET_HEADER", "register"]

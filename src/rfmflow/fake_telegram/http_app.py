"""The fake Bot API over HTTP: ``/bot<token>/<method>``, the webhook pusher and a control API.

Requests are read the way Telegram reads them: query string, ``application/json`` or
``application/x-www-form-urlencoded`` bodies (what python-telegram-bot sends); a multipart
upload is refused with a 400 (the fake takes photos by file id or URL only). Answers are
Telegram's envelope, ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": ...,
"description": ..., "parameters": {"retry_after": N}}`` with the same HTTP status. A token
other than the bot's is answered 401 ``Unauthorized`` (404 when it is not even shaped like a
token), as Telegram does.

``getUpdates`` long-polls: with ``timeout`` > 0 it waits until an update is queued or the
timeout passes. While a webhook is set, a background task POSTs each queued update, oldest
first, to its URL with the ``X-Telegram-Bot-Api-Secret-Token`` header; an answer other than
2xx (or no answer) is recorded in ``getWebhookInfo`` and the update is retried.

The control API (``/_fake/...``, JSON) lets a test or benchmark in another process read the
counters, change the limits, block chats, force errors and inject updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rfmflow.fake_telegram.flood import FakeLimits
from rfmflow.fake_telegram.state import ApiError, FakeBotState, bad_request, bot_id_from_token

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


async def _params(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query_params)
    body = await request.body()
    if not body:
        return params
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            parsed = json.loads(body)
        except json.JSONDecodeError as err:
            raise bad_request("can't parse JSON request body") from err
        if not isinstance(parsed, dict):
            raise bad_request("the JSON request body must be an object")
        params.update(parsed)
    elif kind == "application/x-www-form-urlencoded":
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    elif kind == "multipart/form-data":
        raise bad_request("file uploads are not supported by the fake Bot API; send a file id or URL")
    else:
        raise bad_request(f"unsupported content type {kind or '(none)'}")
    return params


def create_app(
    state: FakeBotState, *, poll_interval: float = 0.02, webhook_retry_delay: float = 0.2
) -> Starlette:
    """The ASGI app serving ``state``; the webhook pusher runs for the app's lifetime."""

    def envelope(result: Any) -> JSONResponse:
        return JSONResponse({"ok": True, "result": result})

    def failure(err: ApiError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.code)

    async def long_poll(params: dict[str, Any]) -> Any:
        result = state.call("getUpdates", params)
        raw_timeout = params.get("timeout") or 0
        try:
            timeout = float(raw_timeout)
        except (TypeError, ValueError) as err:
            raise bad_request("timeout must be a number") from err
        deadline = time.monotonic() + min(max(timeout, 0.0), 60.0)
        params = {k: v for k, v in params.items() if k != "offset"}  # confirmed on the first pass
        while not result and time.monotonic() < deadline:
            await asyncio.sleep(poll_interval)
            with state.lock:
                result = state.take_updates(params)
        return result

    async def bot_method(request: Request) -> Response:
        token, method = request.path_params["token"], request.path_params["method"]
        if token != state.token:
            try:
                bot_id_from_token(token)
            except ValueError:
                return failure(ApiError(404, "Not Found"))
            return failure(ApiError(401, "Unauthorized"))
        try:
            params = await _params(request)
            if method.lower() == "getupdates":
                return envelope(await long_poll(params))
            result = state.call(method, params)
            delay = state.take_delay(method)
            if delay:
                await asyncio.sleep(delay)
            return envelope(result)
        except ApiError as err:
            return failure(err)

    async def stats(_request: Request) -> Response:
        return JSONResponse(state.stats())

    async def reset(_request: Request) -> Response:
        state.reset()
        return JSONResponse({"ok": True})

    async def limits(request: Request) -> Response:
        body = await request.json()
        state.set_limits(FakeLimits(**body))
        return JSONResponse(state.limits.as_dict())

    async def block(request: Request) -> Response:
        body = await request.json()
        for chat_id in body.get("chat_ids", []):
            (state.block if body.get("blocked", True) else state.unblock)(chat_id)
        return JSONResponse({"ok": True})

    async def force(request: Request) -> Response:
        body = await request.json()
        state.force_error(
            int(body.get("code", 429)),
            retry_after=body.get("retry_after"),
            count=int(body.get("count", 1)),
            chat_id=body.get("chat_id"),
            description=body.get("description"),
        )
        return JSONResponse({"ok": True})

    async def messages(request: Request) -> Response:
        offset = int(request.query_params.get("offset", "0"))
        limit = int(request.query_params.get("limit", "1000000"))
        with state.lock:
            chosen = state.messages[offset : offset + limit]
            rows = [
                {
                    "message_id": m.message_id,
                    "chat_id": m.chat_id,
                    "method": m.method,
                    "text": m.text,
                    "at": m.at,
                }
                for m in chosen
            ]
        return JSONResponse(rows)

    async def inject(request: Request) -> Response:
        return JSONResponse(state.inject(await request.json()))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        pusher = asyncio.create_task(_push_webhooks(state, poll_interval, webhook_retry_delay))
        try:
            yield
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher

    routes = [
        Route("/bot{token}/{method}", bot_method, methods=["GET", "POST"]),
        Route("/_fake/stats", stats, methods=["GET"]),
        Route("/_fake/reset", reset, methods=["POST"]),
        Route("/_fake/limits", limits, methods=["PUT"]),
        Route("/_fake/block", block, methods=["POST"]),
        Route("/_fake/force", force, methods=["POST"]),
        Route("/_fake/messages", messages, methods=["GET"]),
        Route("/_fake/updates", inject, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def _push_webhooks(state: FakeBotState, poll_interval: float, retry_delay: float) -> None:
    """POST queued updates to the webhook one at a time, oldest first, until answered 2xx."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        while True:
            item = state.next_webhook_delivery()
            if item is None:
                await asyncio.sleep(poll_interval)
                continue
            hook, update = item
            headers = {SECRET_HEADER: hook.secret_token} if hook.secret_token else {}
            status: int | None = None
            error: str | None = None
            try:
                response = await client.post(hook.url, json=update, headers=headers)
                status = response.status_code
                if not 200 <= status < 300:
                    error = f"Wrong response from the webhook: {status} {response.reason_phrase}"
            except httpx.HTTPError as err:
                error = f"Connection failed: {type(err).__name__}"
            state.webhook_result(update["update_id"], status, error)
            if error is not None:
                await asyncio.sleep(retry_delay)

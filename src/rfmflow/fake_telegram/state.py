"""The fake Bot API's state and methods, independent of HTTP.

:class:`FakeBotState` answers Bot API method calls (``call("sendMessage", params)``) the way
Telegram does, from parameters as they arrive on the wire (form fields and query strings are
text, JSON bodies are typed; objects such as ``reply_markup`` may be JSON text). It records
every accepted message, counts every refusal by error code, keeps the queue of updates the
tests inject (delivered by ``getUpdates`` or to the webhook) and the bot's command menus per
scope. Errors are :class:`ApiError` with Telegram's code and description. Every method takes
the state's lock, so a test thread can inject and read while the server thread serves.
"""

from __future__ import annotations

import json
import re
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rfmflow.fake_telegram.flood import FakeLimits, FloodControl
from rfmflow.fake_telegram.updates import chat_object

MAX_TEXT = 4096
MAX_CAPTION = 1024
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
_COMMAND = re.compile(r"[a-z0-9_]{1,32}")
_SEND_METHODS = frozenset({"sendmessage", "sendphoto"})


class ApiError(Exception):
    """A Bot API error answer: ``{"ok": false, "error_code": code, "description": ...}``."""

    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            out["parameters"] = self.parameters
        return out


def bad_request(reason: str) -> ApiError:
    return ApiError(400, f"Bad Request: {reason}")


@dataclass(frozen=True)
class SentMessage:
    """One message the fake accepted. ``at`` is ``time.monotonic()`` when it was accepted."""

    message_id: int
    chat_id: int | str
    method: str
    text: str | None
    reply_markup: dict[str, Any] | None
    at: float
    params: dict[str, Any] = field(repr=False)


@dataclass
class _Forced:
    code: int
    description: str
    retry_after: int | None
    chat_id: int | str | None
    remaining: int


@dataclass
class Webhook:
    url: str
    secret_token: str | None
    allowed_updates: list[str] | None
    max_connections: int
    last_error_date: int | None = None
    last_error_message: str | None = None


def bot_id_from_token(token: str) -> int:
    match = re.fullmatch(r"(\d+):[A-Za-z0-9_-]+", token)
    if not match:
        raise ValueError(f"not a bot token: {token!r} (expected <bot id>:<secret>)")
    return int(match.group(1))


class FakeBotState:
    """Everything the fake Telegram knows, and the Bot API methods over it."""

    def __init__(
        self,
        token: str,
        limits: FakeLimits | None = None,
        *,
        strict_chats: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.token = token
        self.bot_id = bot_id_from_token(token)
        self.bot_user: dict[str, Any] = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "rfmflow test bot",
            "username": "rfmflow_test_bot",
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.strict_chats = strict_chats
        self.lock = threading.RLock()
        self._clock = clock
        self._wall = wall
        self.limits = limits or FakeLimits()
        self.flood = FloodControl(self.limits, clock())
        self.messages: list[SentMessage] = []
        self.edits: list[dict[str, Any]] = []
        self.refusals: Counter[int] = Counter()
        self.duplicates = 0
        self._seen: set[tuple[int | str, str]] = set()
        self.blocked: set[int | str] = set()
        self.chats: dict[int | str, dict[str, Any]] = {}
        self.commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self.callback_answers: list[dict[str, Any]] = []
        self._open_callbacks: set[str] = set()
        self._forced: list[_Forced] = []
        self._delays: list[list[float]] = []  # [seconds, remaining count]
        self._message_ids: dict[int | str, int] = {}
        self.updates: list[dict[str, Any]] = []  # queued: not yet confirmed or delivered
        self.history: list[dict[str, Any]] = []  # every injected update
        self._next_update_id = 100_000
        self.webhook: Webhook | None = None
        self.webhook_deliveries: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self.send_log: list[tuple[float, Any, int]] = []  # (at, chat_id as sent, HTTP status) per send
        self._handlers = self._methods()

    # -- configuration and injection (the test's side) -------------------------------------

    def set_limits(self, limits: FakeLimits) -> None:
        with self.lock:
            self.limits = limits
            self.flood = FloodControl(limits, self._clock())

    def reset(self) -> None:
        """Forget messages, counters, rate history and queued updates (limits stay)."""
        with self.lock:
            self.messages.clear()
            self.edits.clear()
            self.refusals.clear()
            self.duplicates = 0
            self._seen.clear()
            self._message_ids.clear()
            self._forced.clear()
            self._delays.clear()
            self.calls.clear()
            self.send_log.clear()
            self.updates.clear()
            self.flood = FloodControl(self.limits, self._clock())

    def force_error(
        self,
        code: int = 429,
        *,
        retry_after: int | None = None,
        count: int = 1,
        chat_id: int | str | None = None,
        description: str | None = None,
    ) -> None:
        """Answer the next ``count`` sends (to ``chat_id``, or any chat) with this error."""
        if code == 429 and retry_after is None:
            retry_after = 1
        text = description or (
            f"Too Many Requests: retry after {retry_after}" if code == 429 else f"Error {code}"
        )
        with self.lock:
            self._forced.append(_Forced(code, text, retry_after, chat_id, count))

    def force_delay(self, seconds: float, *, count: int = 1) -> None:
        """Hold the answer to the next ``count`` sends for ``seconds`` (the message is still sent)."""
        with self.lock:
            self._delays.append([seconds, count])

    def take_delay(self, method: str) -> float:
        """The delay to apply to this request (0 for none); used by the HTTP layer."""
        if method.lower() not in _SEND_METHODS:
            return 0.0
        with self.lock:
            if not self._delays:
                return 0.0
            delay = self._delays[0]
            delay[1] -= 1
            if delay[1] <= 0:
                self._delays.pop(0)
            return delay[0]

    def block(self, chat_id: int | str) -> None:
        with self.lock:
            self.blocked.add(chat_id)

    def unblock(self, chat_id: int | str) -> None:
        with self.lock:
            self.blocked.discard(chat_id)

    def add_chat(self, chat: Mapping[str, Any]) -> None:
        with self.lock:
            self.chats[chat["id"]] = dict(chat)

    def now(self) -> int:
        return int(self._wall())

    def next_message_id(self, chat_id: int | str) -> int:
        with self.lock:
            value = self._message_ids.get(chat_id, 0) + 1
            self._message_ids[chat_id] = value
            return value

    def inject(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Queue an update (numbered here) for ``getUpdates`` or the webhook; returns it."""
        with self.lock:
            self._next_update_id += 1
            update = {"update_id": self._next_update_id, **body}
            for kind in ("message", "edited_message", "my_chat_member"):
                if kind in update and "chat" in update[kind]:
                    chat = update[kind]["chat"]
                    self.chats.setdefault(chat["id"], dict(chat))
            if "callback_query" in update:
                self._open_callbacks.add(update["callback_query"]["id"])
            self.updates.append(update)
            self.history.append(update)
            return update

    def stats(self) -> dict[str, Any]:
        """Counters for tests and the benchmark (the control API's ``/_fake/stats``)."""
        with self.lock:
            first = self.messages[0].at if self.messages else None
            last = self.messages[-1].at if self.messages else None
            return {
                "accepted": len(self.messages),
                "refused": {str(code): n for code, n in sorted(self.refusals.items())},
                "too_many_requests": self.refusals.get(429, 0),
                "duplicates": self.duplicates,
                "first_at": first,
                "last_at": last,
                "queued_updates": len(self.updates),
                "limits": self.limits.as_dict(),
                "calls": dict(self.calls),
            }

    # -- the Bot API -----------------------------------------------------------------------

    def call(self, method: str, params: Mapping[str, Any]) -> Any:
        """Run one Bot API method; returns its ``result`` or raises :class:`ApiError`."""
        handler = self._handlers.get(method.lower())
        if handler is None:
            raise ApiError(404, "Not Found: method not found")
        sending = method.lower() in _SEND_METHODS
        with self.lock:
            self.calls[method] += 1
            try:
                result = handler(params)
            except ApiError as err:
                self.refusals[err.code] += 1
                if sending:
                    self.send_log.append((self._clock(), params.get("chat_id"), err.code))
                raise
            if sending:
                self.send_log.append((self._clock(), params.get("chat_id"), 200))
            return result

    def _methods(self) -> dict[str, Callable[[Mapping[str, Any]], Any]]:
        return {
            "getme": lambda _p: dict(self.bot_user),
            "sendmessage": self._send_message,
            "sendphoto": self._send_photo,
            "editmessagereplymarkup": self._edit_reply_markup,
            "answercallbackquery": self._answer_callback_query,
            "setmycommands": self._set_my_commands,
            "getmycommands": self._get_my_commands,
            "deletemycommands": self._delete_my_commands,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "getupdates": lambda params: self.take_updates(params),
            "logout": lambda _p: True,
            "close": lambda _p: True,
        }

    def _chat(self, params: Mapping[str, Any]) -> tuple[int | str, dict[str, Any]]:
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise bad_request("chat_id is empty")
        chat_id: int | str
        if isinstance(raw, int) and not isinstance(raw, bool):
            chat_id = raw
        elif isinstance(raw, str) and re.fullmatch(r"-?\d{1,20}", raw.strip()):
            chat_id = int(raw)
        elif isinstance(raw, str) and raw.startswith("@"):
            chat_id = raw
        else:
            raise bad_request("chat not found")
        if chat_id in self.chats:
            return chat_id, self.chats[chat_id]
        if self.strict_chats:
            raise bad_request("chat not found")
        return chat_id, chat_object(chat_id)

    def _deliverable(self, chat_id: int | str, params: Mapping[str, Any]) -> None:
        """Raise what Telegram would answer instead of sending (forced, blocked, flood)."""
        for forced in self._forced:
            if forced.chat_id is None or forced.chat_id == chat_id:
                forced.remaining -= 1
                if forced.remaining <= 0:
                    self._forced.remove(forced)
                extra = {"retry_after": forced.retry_after} if forced.retry_after is not None else None
                raise ApiError(forced.code, forced.description, extra)
        if chat_id in self.blocked:
            if _is_group(chat_id):
                raise ApiError(403, "Forbidden: bot was kicked from the group chat")
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        paid = _flag(params, "allow_paid_broadcast")
        retry_after = self.flood.check(chat_id, self._clock(), paid=paid)
        if retry_after is not None:
            raise ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})

    def _accept(
        self,
        method: str,
        chat_id: int | str,
        chat: dict[str, Any],
        params: Mapping[str, Any],
        body: dict[str, Any],
    ) -> dict[str, Any]:
        markup = _json_object(params, "reply_markup")
        message_id = self.next_message_id(chat_id)
        text = body.get("text", body.get("caption"))
        self.messages.append(
            SentMessage(message_id, chat_id, method, text, markup, self._clock(), dict(params))
        )
        key = (chat_id, f"{method}:{text}")
        if key in self._seen:
            self.duplicates += 1
        self._seen.add(key)
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": dict(self.bot_user),
            "chat": chat,
            "date": self.now(),
            **body,
        }
        if markup is not None and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        return message

    def _send_message(self, params: Mapping[str, Any]) -> dict[str, Any]:
        chat_id, chat = self._chat(params)
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise bad_request("message text is empty")
        if len(text) > MAX_TEXT:
            raise bad_request("message is too long")
        _json_object(params, "reply_markup")
        self._deliverable(chat_id, params)
        return self._accept("sendMessage", chat_id, chat, params, {"text": text})

    def _send_photo(self, params: Mapping[str, Any]) -> dict[str, Any]:
        chat_id, chat = self._chat(params)
        photo = params.get("photo")
        if not isinstance(photo, str) or not photo:
            raise bad_request("there is no photo in the request")
        caption = params.get("caption")
        if caption is not None and (not isinstance(caption, str) or len(caption) > MAX_CAPTION):
            raise bad_request("message caption is too long")
        self._deliverable(chat_id, params)
        size = {
            "file_id": photo,
            "file_unique_id": f"u{zlib.crc32(photo.encode())}",
            "width": 90,
            "height": 90,
        }
        body: dict[str, Any] = {"photo": [size]}
        if caption:
            body["caption"] = caption
        return self._accept("sendPhoto", chat_id, chat, params, body)

    def _edit_reply_markup(self, params: Mapping[str, Any]) -> dict[str, Any]:
        chat_id, chat = self._chat(params)
        message_id = _int(params, "message_id")
        markup = _json_object(params, "reply_markup")
        for sent in self.messages:
            if sent.chat_id == chat_id and sent.message_id == message_id:
                self.edits.append({"chat_id": chat_id, "message_id": message_id, "reply_markup": markup})
                out: dict[str, Any] = {
                    "message_id": message_id,
                    "from": dict(self.bot_user),
                    "chat": chat,
                    "date": self.now(),
                    "edit_date": self.now(),
                }
                if sent.text is not None:
                    out["text"] = sent.text
                if markup is not None:
                    out["reply_markup"] = markup
                return out
        raise bad_request("message to edit not found")

    def _answer_callback_query(self, params: Mapping[str, Any]) -> bool:
        query_id = params.get("callback_query_id")
        if not isinstance(query_id, str) or query_id not in self._open_callbacks:
            raise bad_request("query is too old and response timeout expired or query ID is invalid")
        self._open_callbacks.discard(query_id)
        self.callback_answers.append(
            {
                "callback_query_id": query_id,
                "text": params.get("text"),
                "show_alert": _flag(params, "show_alert"),
            }
        )
        return True

    def _scope_key(self, params: Mapping[str, Any]) -> tuple[str, str]:
        scope = _json_object(params, "scope") or {"type": "default"}
        kind = scope.get("type")
        needs_chat = {"chat", "chat_administrators", "chat_member"}
        known = {"default", "all_private_chats", "all_group_chats", "all_chat_administrators", *needs_chat}
        if kind not in known:
            raise bad_request(f"unsupported bot command scope type {kind!r}")
        parts = [str(kind)]
        if kind in needs_chat:
            if scope.get("chat_id") in (None, ""):
                raise bad_request("scope chat_id is empty")
            parts.append(str(scope["chat_id"]))
        if kind == "chat_member":
            parts.append(str(scope.get("user_id")))
        language = params.get("language_code") or ""
        if not isinstance(language, str):
            raise bad_request("language_code must be a string")
        return ":".join(parts), language

    def _set_my_commands(self, params: Mapping[str, Any]) -> bool:
        raw = params.get("commands")
        commands = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad_request("commands must be a list of at most 100 BotCommand")
        clean: list[dict[str, str]] = []
        for item in commands:
            if not isinstance(item, dict):
                raise bad_request("a command must be an object")
            name, description = item.get("command"), item.get("description")
            if not isinstance(name, str) or not _COMMAND.fullmatch(name):
                raise bad_request("BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
            clean.append({"command": name, "description": description})
        self.commands[self._scope_key(params)] = clean
        return True

    def _get_my_commands(self, params: Mapping[str, Any]) -> list[dict[str, str]]:
        return list(self.commands.get(self._scope_key(params), []))

    def _delete_my_commands(self, params: Mapping[str, Any]) -> bool:
        self.commands.pop(self._scope_key(params), None)
        return True

    def _set_webhook(self, params: Mapping[str, Any]) -> bool:
        url = params.get("url")
        if not isinstance(url, str):
            raise bad_request("bad webhook: the url is missing")
        if _flag(params, "drop_pending_updates"):
            self.updates.clear()
        if url == "":
            self.webhook = None
            return True
        if not re.match(r"https?://", url):
            raise bad_request("bad webhook: an HTTP or HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and (not isinstance(secret, str) or not _SECRET_TOKEN.fullmatch(secret)):
            raise bad_request("secret token contains unallowed characters")
        allowed = _json_list(params, "allowed_updates")
        max_connections = _int(params, "max_connections") if params.get("max_connections") else 40
        self.webhook = Webhook(url, secret or None, allowed, max_connections)
        return True

    def _delete_webhook(self, params: Mapping[str, Any]) -> bool:
        if _flag(params, "drop_pending_updates"):
            self.updates.clear()
        self.webhook = None
        return True

    def _get_webhook_info(self, _params: Mapping[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.webhook.url if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self.updates),
        }
        if self.webhook:
            info["max_connections"] = self.webhook.max_connections
            if self.webhook.allowed_updates is not None:
                info["allowed_updates"] = self.webhook.allowed_updates
            if self.webhook.last_error_date is not None:
                info["last_error_date"] = self.webhook.last_error_date
                info["last_error_message"] = self.webhook.last_error_message
        return info

    def take_updates(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``getUpdates`` without waiting: confirms updates below ``offset``, returns the rest."""
        if self.webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _int(params, "offset") if params.get("offset") not in (None, "") else None
        limit = _int(params, "limit") if params.get("limit") not in (None, "") else 100
        allowed = _json_list(params, "allowed_updates")
        if offset is not None and offset > 0:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        elif offset is not None and offset < 0:
            self.updates = self.updates[offset:]
        chosen = [u for u in self.updates if _allowed(u, allowed)]
        return chosen[: max(1, min(100, limit))]

    def next_webhook_delivery(self) -> tuple[Webhook, dict[str, Any]] | None:
        """The oldest queued update the webhook should get (updates it does not want are dropped)."""
        with self.lock:
            if self.webhook is None:
                return None
            while self.updates and not _allowed(self.updates[0], self.webhook.allowed_updates):
                self.updates.pop(0)
            return (self.webhook, self.updates[0]) if self.updates else None

    def webhook_result(self, update_id: int, status: int | None, error: str | None) -> None:
        """Record a delivery attempt; a 2xx answer removes the update from the queue."""
        with self.lock:
            self.webhook_deliveries.append(
                {"update_id": update_id, "status": status, "error": error, "at": self._clock()}
            )
            if status is not None and 200 <= status < 300:
                self.updates = [u for u in self.updates if u["update_id"] != update_id]
            elif self.webhook is not None:
                self.webhook.last_error_date = self.now()
                self.webhook.last_error_message = error or f"Wrong response from the webhook: {status}"


def _is_group(chat_id: int | str) -> bool:
    return isinstance(chat_id, str) or chat_id < 0


def _allowed(update: Mapping[str, Any], allowed: list[str] | None) -> bool:
    if not allowed:  # Telegram: an empty list means every kind except a few opt-in ones
        return True
    return any(kind in update for kind in allowed)


def _flag(params: Mapping[str, Any], name: str) -> bool:
    value = params.get(name)
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


def _int(params: Mapping[str, Any], name: str) -> int:
    value = params.get(name)
    if isinstance(value, bool):
        raise bad_request(f"{name} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,20}", value.strip()):
        return int(value)
    raise bad_request(f"{name} must be an integer" if value not in (None, "") else f"{name} is empty")


def _json_value(params: Mapping[str, Any], name: str) -> Any:
    value = params.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as err:
            raise bad_request(f"can't parse {name} JSON object") from err
    return value


def _json_object(params: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = _json_value(params, name)
    if value is not None and not isinstance(value, dict):
        raise bad_request(f"{name} must be a JSON object")
    return value


def _json_list(params: Mapping[str, Any], name: str) -> list[str] | None:
    value = _json_value(params, name)
    if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise bad_request(f"{name} must be a JSON array of strings")
    return value

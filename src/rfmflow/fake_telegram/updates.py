"""Updates as Telegram sends them, for tests to inject: the user's side of the conversation.

Each builder returns the body of one ``Update`` without its ``update_id`` (the server numbers
them when they are queued): a text message, a command (with a ``bot_command`` entity, as the
Telegram apps send), a press on an inline button (``callback_query``), a payment
(``successful_payment``) and the bot being blocked or unblocked by a user (``my_chat_member``).
The shapes follow the Bot API reference (https://core.telegram.org/bots/api#update).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FakeUser:
    """A Telegram user; in a private chat with the bot the chat id equals the user id."""

    id: int
    first_name: str = "Test"
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None
    is_premium: bool | None = None

    def as_user(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code", "is_premium"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def as_private_chat(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": "private", "first_name": self.first_name}
        if self.last_name is not None:
            out["last_name"] = self.last_name
        if self.username is not None:
            out["username"] = self.username
        return out


def chat_object(chat_id: int | str) -> dict[str, Any]:
    """The ``Chat`` Telegram reports for an id: negative ids are groups (``-100…`` supergroups)."""
    if isinstance(chat_id, str):
        return {"id": -1000000000001, "type": "channel", "username": chat_id.lstrip("@")}
    if chat_id < 0:
        kind = "supergroup" if str(chat_id).startswith("-100") else "group"
        return {"id": chat_id, "type": kind, "title": f"group {chat_id}"}
    return {"id": chat_id, "type": "private", "first_name": f"user {chat_id}"}


def text_message(
    user: FakeUser, text: str, *, message_id: int, date: int, chat: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A ``message`` update; text starting with ``/`` carries a ``bot_command`` entity."""
    message: dict[str, Any] = {
        "message_id": message_id,
        "from": user.as_user(),
        "chat": chat or user.as_private_chat(),
        "date": date,
        "text": text,
    }
    if text.startswith("/"):
        length = len(text.split(maxsplit=1)[0])
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
    return {"message": message}


def callback_query(
    user: FakeUser, data: str, *, query_id: str, message: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A ``callback_query`` update: the user pressed an inline button carrying ``data``."""
    query: dict[str, Any] = {
        "id": query_id,
        "from": user.as_user(),
        "chat_instance": f"ci-{user.id}",
        "data": data,
    }
    if message is not None:
        query["message"] = message
    return {"callback_query": query}


def successful_payment(
    user: FakeUser,
    *,
    currency: str,
    total_amount: int,
    payload: str,
    charge_id: str,
    provider_charge_id: str,
    message_id: int,
    date: int,
) -> dict[str, Any]:
    """A ``message`` update with ``successful_payment`` (``total_amount`` in the smallest units)."""
    payment = {
        "currency": currency,
        "total_amount": total_amount,
        "invoice_payload": payload,
        "telegram_payment_charge_id": charge_id,
        "provider_payment_charge_id": provider_charge_id,
    }
    return {
        "message": {
            "message_id": message_id,
            "from": user.as_user(),
            "chat": user.as_private_chat(),
            "date": date,
            "successful_payment": payment,
        }
    }


def my_chat_member(user: FakeUser, bot: dict[str, Any], *, blocked: bool, date: int) -> dict[str, Any]:
    """A ``my_chat_member`` update: the user blocked (``kicked``) or unblocked (``member``) the bot."""
    old, new = ("member", "kicked") if blocked else ("kicked", "member")
    return {
        "my_chat_member": {
            "chat": user.as_private_chat(),
            "from": user.as_user(),
            "date": date,
            "old_chat_member": _member(bot, old),
            "new_chat_member": _member(bot, new),
        }
    }


def _member(bot: dict[str, Any], status: str) -> dict[str, Any]:
    """A ``ChatMember`` of the bot; a ``kicked`` one (banned: the user blocked it) has ``until_date``."""
    out: dict[str, Any] = {"user": bot, "status": status}
    if status == "kicked":
        out["until_date"] = 0
    return out

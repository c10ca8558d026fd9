"""A Telegram update as rfmflow sees it: events, profile traits and block/unblock signals.

Pure mapping, for the service to wire to its bot (webhook or long polling): it takes one
``Update`` (the Bot API JSON as a dict, or a python-telegram-bot ``Update``) and returns a
:class:`MappedUpdate`:

- ``events``: dicts in the shape of ``POST /v1/events`` (``event_id``, ``customer_id``,
  ``type``, ``occurred_at``, ``amount``/``currency``/``order_id`` for money, ``properties``):

  ==========================================  ============  =====================================
  update                                      event type    notes
  ==========================================  ============  =====================================
  ``message`` with text                       ``message``   ``properties.kind`` = ``text``
  ``message`` with other content              ``message``   ``kind`` = ``photo``, ``sticker``, ...
  ``message`` starting with a command         ``command``   ``properties.command`` (no ``/``,
                                                            no ``@botname``), ``args``
  ``callback_query`` (inline button)          ``click``     ``properties.data``
  ``message.successful_payment``              ``purchase``  ``amount`` = ``total_amount`` /
                                                            10^exp, ``order_id`` = the
                                                            ``telegram_payment_charge_id``
  ``message.refunded_payment``                ``refund``    the same, negative
  ==========================================  ============  =====================================

- ``profile``: the sender's traits (``telegram_user_id``, ``first_name``, ``last_name``,
  ``telegram_username``, ``language`` from ``language_code``, ``telegram_is_premium``; and
  ``telegram_chat_id`` when the update comes from the private chat with the bot), in the
  names the service's profile merge lifts into columns; a shared own contact adds ``phone``.
- ``signals``: not RFM events but facts the automation acts on: ``blocked`` and ``unblocked``
  (``my_chat_member`` in the private chat turning ``kicked``, or back to ``member``),
  ``stopped`` (the user sent ``/stop``: an opt-out), ``started`` (``/start``, with the deep
  link ``payload``).

The customer id is ``tg:<user id>`` (:func:`customer_id_for`); the Telegram *user* is the
customer, wherever they wrote from. Event ids are deterministic, so a re-delivered update
maps to the same ids and the service answers it as a duplicate:
``tg:<bot id>:<chat id>:<message id>`` for messages, payments and refunds (each arrives as a
message, and a message id is unique within its chat) and ``tg:<bot id>:cb:<callback query
id>`` for button presses. They are built from what the update carries rather than from
``update_id`` alone, because Telegram restarts ``update_id`` at a random value after a week
without updates. Times are the update's ``date`` (UTC); a button press carries none, so it is
stamped with ``received_at``. Updates with nothing to record (edits, channel posts, service
messages, messages from bots, the bot's own membership in groups, pre-checkout queries) come
back with ``ignored`` saying why. A malformed update raises :class:`TelegramUpdateError` naming
the field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from rfmflow.channels.telegram_currencies import amount_from_smallest_units

CUSTOMER_PREFIX = "tg:"
MAX_EVENT_ID = 128

#: Message content kinds, in the order they are looked for; the first present names the message.
CONTENT_KINDS = (
    "text", "photo", "video", "animation", "sticker", "voice", "video_note", "audio", "document",
    "contact", "location", "venue", "poll", "dice", "game", "story",
)  # fmt: skip

SignalKind = Literal["blocked", "unblocked", "stopped", "started"]


class TelegramUpdateError(ValueError):
    """A Telegram update that cannot be read; ``field`` is the path in the update."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


@dataclass(frozen=True)
class TelegramSignal:
    """A fact about the customer that is not an RFM event (see the module docstring)."""

    kind: SignalKind
    customer_id: str
    chat_id: int
    occurred_at: str
    detail: str | None = None


@dataclass(frozen=True)
class MappedUpdate:
    """What one update means: events to ingest, a profile update, signals, or why nothing."""

    update_id: int
    events: list[dict[str, Any]] = field(default_factory=list)
    profile: dict[str, Any] | None = None
    signals: list[TelegramSignal] = field(default_factory=list)
    ignored: str | None = None


def customer_id_for(user_id: int) -> str:
    """The rfmflow customer id of a Telegram user: ``tg:<user id>``."""
    return f"{CUSTOMER_PREFIX}{user_id}"


def map_update(
    update: Mapping[str, Any] | Any,
    *,
    bot_id: int,
    received_at: datetime,
    currency_exponents: Mapping[str, int] | None = None,
    keep_text: bool = False,
) -> MappedUpdate:
    """Map one update (see the module docstring).

    ``bot_id`` is the bot's user id (the number before the colon of its token);
    ``received_at`` (aware) stamps updates without a date; ``currency_exponents`` adds or
    overrides decimals per currency; ``keep_text`` copies a message's text (at most 1,000
    characters) into ``properties.text`` (off by default: texts are personal data).
    """
    data = _as_dict(update)
    update_id = data.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise TelegramUpdateError("update_id", "missing or not an integer")
    if received_at.tzinfo is None:
        raise ValueError("received_at must be an aware datetime")
    context = _Context(bot_id, update_id, received_at.astimezone(UTC), currency_exponents, keep_text)
    if "message" in data:
        return context.message(_object(data, "message", "message"))
    if "callback_query" in data:
        return context.callback_query(_object(data, "callback_query", "callback_query"))
    if "my_chat_member" in data:
        return context.my_chat_member(_object(data, "my_chat_member", "my_chat_member"))
    kinds = [k for k in data if k != "update_id"]
    reasons = {
        "edited_message": "an edit is not a new interaction",
        "pre_checkout_query": "the purchase is recorded when successful_payment arrives",
        "channel_post": "channel posts are the channel's, not a customer's",
        "edited_channel_post": "channel posts are the channel's, not a customer's",
    }
    kind = kinds[0] if kinds else "(empty)"
    return MappedUpdate(update_id, ignored=reasons.get(kind, f"{kind} updates are not recorded"))


@dataclass(frozen=True)
class _Context:
    bot_id: int
    update_id: int
    received_at: datetime
    exponents: Mapping[str, int] | None
    keep_text: bool

    def _event_id(self, *parts: object) -> str:
        text = ":".join(["tg", str(self.bot_id), *(str(p) for p in parts)])
        if len(text) <= MAX_EVENT_ID:
            return text
        return f"tg:{self.bot_id}:h:{hashlib.sha256(text.encode()).hexdigest()}"

    def message(self, message: dict[str, Any]) -> MappedUpdate:
        sender = message.get("from")
        if not isinstance(sender, dict):
            return MappedUpdate(self.update_id, ignored="no sender (an anonymous admin or a channel)")
        user_id = _int(sender, "id", "message.from.id")
        if sender.get("is_bot"):
            return MappedUpdate(self.update_id, ignored="sent by a bot")
        chat = _object(message, "chat", "message.chat")
        chat_id = _int(chat, "id", "message.chat.id")
        chat_type = str(chat.get("type", ""))
        message_id = _int(message, "message_id", "message.message_id")
        occurred_at = _date(message, "message.date")
        customer = customer_id_for(user_id)
        profile = _profile(customer, sender, chat_id if chat_type == "private" else None)
        base = {"chat_id": chat_id, "chat_type": chat_type, "message_id": message_id}
        event_id = self._event_id(chat_id, message_id)

        if "successful_payment" in message or "refunded_payment" in message:
            refund = "successful_payment" not in message
            where = "message.refunded_payment" if refund else "message.successful_payment"
            payment = _object(message, "refunded_payment" if refund else "successful_payment", where)
            event = self._payment(payment, where, customer, occurred_at, base, refund=refund)
            event["event_id"] = event_id
            return MappedUpdate(self.update_id, events=[event], profile=profile)

        kind = next((k for k in CONTENT_KINDS if k in message), None)
        if kind is None:
            return MappedUpdate(
                self.update_id, profile=profile, ignored="a service message, not an interaction"
            )
        contact = message.get("contact")
        if isinstance(contact, dict) and contact.get("user_id") == user_id and contact.get("phone_number"):
            assert profile is not None
            profile["traits"]["phone"] = str(contact["phone_number"])
        properties: dict[str, Any] = {**base, "kind": kind}
        reply_to = message.get("reply_to_message")
        if isinstance(reply_to, dict) and isinstance(reply_to.get("message_id"), int):
            properties["reply_to_message_id"] = reply_to["message_id"]
            properties["reply_to_bot"] = bool((reply_to.get("from") or {}).get("id") == self.bot_id)
        text = message.get("text")
        command = _command(message) if isinstance(text, str) else None
        signals: list[TelegramSignal] = []
        event_type = "message"
        if command is not None:
            name, args = command
            event_type = "command"
            properties["command"] = name
            if args:
                properties["args"] = args[:256]
            if name in ("stop", "start"):
                signal: SignalKind = "stopped" if name == "stop" else "started"
                signals.append(TelegramSignal(signal, customer, chat_id, occurred_at, args or None))
        elif self.keep_text and isinstance(text, str):
            properties["text"] = text[:1000]
        event = {
            "event_id": event_id,
            "customer_id": customer,
            "type": event_type,
            "occurred_at": occurred_at,
            "properties": properties,
        }
        return MappedUpdate(self.update_id, events=[event], profile=profile, signals=signals)

    def _payment(
        self,
        payment: dict[str, Any],
        where: str,
        customer: str,
        occurred_at: str,
        base: dict[str, Any],
        *,
        refund: bool,
    ) -> dict[str, Any]:
        currency = payment.get("currency")
        if not isinstance(currency, str) or not currency.strip():
            raise TelegramUpdateError(f"{where}.currency", "missing")
        total = _int(payment, "total_amount", f"{where}.total_amount")
        if total < 0:
            raise TelegramUpdateError(f"{where}.total_amount", f"must not be negative (got {total})")
        charge = payment.get("telegram_payment_charge_id")
        if not isinstance(charge, str) or not charge:
            raise TelegramUpdateError(f"{where}.telegram_payment_charge_id", "missing")
        try:
            amount = amount_from_smallest_units(total, currency, self.exponents)
        except KeyError:
            raise TelegramUpdateError(
                f"{where}.currency",
                f"unknown currency {currency!r}: its number of decimals is not in the bundled table "
                "(pass currency_exponents)",
            ) from None
        properties: dict[str, Any] = {**base, "total_amount": total}
        for key in ("invoice_payload", "provider_payment_charge_id", "is_recurring", "is_first_recurring"):
            if payment.get(key) not in (None, ""):
                properties[key] = payment[key]
        return {
            "customer_id": customer,
            "type": "refund" if refund else "purchase",
            "occurred_at": occurred_at,
            "amount": str(-amount if refund else amount),
            "currency": currency.strip().upper(),
            "order_id": charge[:128],
            "properties": properties,
        }

    def callback_query(self, query: dict[str, Any]) -> MappedUpdate:
        query_id = query.get("id")
        if not isinstance(query_id, str) or not query_id:
            raise TelegramUpdateError("callback_query.id", "missing")
        sender = _object(query, "from", "callback_query.from")
        user_id = _int(sender, "id", "callback_query.from.id")
        customer = customer_id_for(user_id)
        properties: dict[str, Any] = {"callback_query_id": query_id}
        data = query.get("data")
        if isinstance(data, str):
            properties["data"] = data
        elif isinstance(query.get("game_short_name"), str):
            properties["game_short_name"] = query["game_short_name"]
        chat_id: int | None = None
        shown = query.get("message")
        if isinstance(shown, dict) and isinstance(shown.get("chat"), dict):
            chat = shown["chat"]
            chat_id = _int(chat, "id", "callback_query.message.chat.id")
            properties["chat_id"] = chat_id
            properties["chat_type"] = str(chat.get("type", ""))
            if isinstance(shown.get("message_id"), int):
                properties["message_id"] = shown["message_id"]
            if str(chat.get("type")) != "private":
                chat_id = None
        elif isinstance(query.get("inline_message_id"), str):
            properties["inline_message_id"] = query["inline_message_id"]
        event = {
            "event_id": self._event_id("cb", query_id),
            "customer_id": customer,
            "type": "click",
            "occurred_at": _iso(self.received_at),
            "properties": properties,
        }
        return MappedUpdate(self.update_id, events=[event], profile=_profile(customer, sender, chat_id))

    def my_chat_member(self, change: dict[str, Any]) -> MappedUpdate:
        chat = _object(change, "chat", "my_chat_member.chat")
        if str(chat.get("type")) != "private":
            return MappedUpdate(self.update_id, ignored="the bot's own membership in a group or channel")
        sender = _object(change, "from", "my_chat_member.from")
        user_id = _int(sender, "id", "my_chat_member.from.id")
        chat_id = _int(chat, "id", "my_chat_member.chat.id")
        occurred_at = _date(change, "my_chat_member.date")
        new = str(_object(change, "new_chat_member", "my_chat_member.new_chat_member").get("status"))
        old = str((change.get("old_chat_member") or {}).get("status"))
        customer = customer_id_for(user_id)
        profile = _profile(customer, sender, chat_id)
        if new == "kicked":
            signal = TelegramSignal("blocked", customer, chat_id, occurred_at, "the user blocked the bot")
            return MappedUpdate(self.update_id, profile=profile, signals=[signal])
        if new == "member" and old in ("kicked", "left"):
            signal = TelegramSignal("unblocked", customer, chat_id, occurred_at, "the user unblocked the bot")
            return MappedUpdate(self.update_id, profile=profile, signals=[signal])
        return MappedUpdate(
            self.update_id, profile=profile, ignored=f"membership {old} -> {new} changes nothing"
        )


def _as_dict(update: Mapping[str, Any] | Any) -> dict[str, Any]:
    if isinstance(update, Mapping):
        return dict(update)
    to_dict = getattr(update, "to_dict", None)
    if callable(to_dict):  # a python-telegram-bot Update
        result = to_dict()
        if isinstance(result, dict):
            return result
    raise TelegramUpdateError(
        "update", f"expected a JSON object or a telegram.Update, got {type(update).__name__}"
    )


def _object(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise TelegramUpdateError(where, "missing or not an object")
    return value


def _int(data: Mapping[str, Any], key: str, where: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TelegramUpdateError(where, "missing or not an integer")
    return value


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _date(data: Mapping[str, Any], where: str) -> str:
    value = data.get("date")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return _iso(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise TelegramUpdateError(where, "missing or not a Unix time")
    return _iso(datetime.fromtimestamp(value, UTC))


def _command(message: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(name, args)`` when the message starts with a bot command, else ``None``."""
    text = str(message["text"])
    entities = message.get("entities") or []
    length = None
    for entity in entities:
        if (
            isinstance(entity, dict)
            and str(entity.get("type")) == "bot_command"
            and entity.get("offset") == 0
        ):
            length = entity.get("length")
            break
    if length is None:
        if not text.startswith("/") or len(text) < 2:
            return None
        length = len(text.split(maxsplit=1)[0])
    if not isinstance(length, int) or length < 2:
        return None
    name = text[1:length].split("@", 1)[0].lower()
    return name, text[length:].strip()


def _profile(customer: str, sender: Mapping[str, Any], chat_id: int | None) -> dict[str, Any]:
    traits: dict[str, Any] = {"telegram_user_id": sender.get("id")}
    for source, target in (
        ("first_name", "first_name"),
        ("last_name", "last_name"),
        ("username", "telegram_username"),
        ("language_code", "language"),
        ("is_premium", "telegram_is_premium"),
    ):
        if sender.get(source) not in (None, ""):
            traits[target] = sender[source]
    if chat_id is not None:
        traits["telegram_chat_id"] = chat_id
    return {"customer_id": customer, "traits": traits}

"""The business's bot: what one Telegram update changes in the database, and what the bot answers.

:func:`handle_update` takes one update (Bot API JSON), maps it with
:func:`rfmflow.channels.telegram_updates.map_update` and, in ONE write transaction:

1. ingests its events (``source="telegram"``; ids are deterministic, so a re-delivered update
   is a ``duplicate`` and counts once) — messages, commands, button presses (``click``) and
   ``successful_payment`` (a ``purchase`` with its amount), so R and F need no other
   integration; the live re-score runs in the same transaction;
2. merges the user's profile traits (chat id, language, names);
3. honours the signals: ``/stop`` → Telegram consent ``opted_out`` (``stop``); ``/start`` after
   an opt-out → ``opted_in`` (``requested``); the user blocking the bot → ``opted_out``
   (``blocked``); unblocking it → ``opted_in`` (``unblocked``, only when a block was the reason).

It returns :class:`BotActions`: the replies to send (only for updates seen for the first time,
so a re-delivery is not answered twice), the callback query to answer and, when the customer's
menu is not the one last set for their chat, the menu to set. Sending is the runtime's
(:mod:`rfmflow.automation.telegram_runtime`), after the transaction committed.

Replies: a new user's ``/start`` gets the welcome with the onboarding keyboard (inline buttons
``onb:<choice>``); their press is a ``click`` event, kept as the ``telegram_onboarding``
trait, and answered with thanks. ``/start`` from a known user gets ``welcome_back``; ``/stop``
gets the confirmation; ``/menu`` a reply keyboard of their menu; a menu command with a
``reply`` that text. Nothing is sent to a customer who blocked the bot.

Menus: the customer's menu (:class:`~rfmflow.automation.telegram_menus.BotConfig.menu_for`
their live segment and tags) is compared after every update with the ``telegram_menu``
trait (the name of the menu last set for the chat); :func:`stale_menus` does the same for
every Telegram customer (segments moved by scoring runs, tags changed by rules or the API).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from rfmflow.automation.consent import set_consent
from rfmflow.automation.telegram_menus import ONBOARDING_PREFIX, BotConfig, Menu
from rfmflow.channels.outbound import OutboundMessage
from rfmflow.channels.telegram_updates import MappedUpdate, map_update
from rfmflow.service.db.engine import run_write
from rfmflow.service.db.tables import consents, customer_profiles, customer_scores, customer_tags, customers
from rfmflow.service.ingest import ItemResult, ingest, validate_item
from rfmflow.service.profiles import read_traits, upsert_profile
from rfmflow.service.settings import Settings

log = logging.getLogger("rfmflow.automation.telegram")

ACTOR = "telegram"
MENU_TRAIT = "telegram_menu"
ONBOARDING_TRAIT = "telegram_onboarding"


@dataclass(frozen=True)
class SetMenu:
    """Set ``menu`` as the commands of ``chat_id`` (``BotCommandScopeChat``)."""

    customer_id: str
    chat_id: int
    menu: Menu


@dataclass
class BotActions:
    """What one update did and what the bot does about it."""

    update_id: int
    customer_id: str | None = None
    results: list[ItemResult] = field(default_factory=list)
    messages: list[OutboundMessage] = field(default_factory=list)
    answer_callback: str | None = None
    set_menu: SetMenu | None = None
    consent_changes: list[str] = field(default_factory=list)
    ignored: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "update_id": self.update_id,
            "customer_id": self.customer_id,
            "events": [r.as_dict() for r in self.results],
            "replies": len(self.messages),
            "consent": self.consent_changes,
            "menu": self.set_menu.menu.name if self.set_menu else None,
            "ignored": self.ignored,
        }


def bot_id_of(token: str) -> int:
    """The bot's user id: the number before the token's colon."""
    head = token.split(":", 1)[0]
    if not head.isdigit():
        raise ValueError("the bot token does not start with the bot's id")
    return int(head)


def handle_update(
    engine: Engine,
    settings: Settings,
    config: BotConfig,
    update: Mapping[str, Any] | Any,
    *,
    bot_id: int,
    now: datetime | None = None,
) -> BotActions:
    """Record one update and decide the answers (see the module docstring).

    Raises :class:`~rfmflow.channels.telegram_updates.TelegramUpdateError` (naming the field)
    for a malformed update, before anything is written.
    """
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    mapped = map_update(update, bot_id=bot_id, received_at=moment)
    return run_write(engine, lambda conn: _record(conn, settings, config, mapped, moment))


def _customer_of(mapped: MappedUpdate) -> str | None:
    if mapped.profile is not None:
        return str(mapped.profile["customer_id"])
    if mapped.events:
        return str(mapped.events[0]["customer_id"])
    if mapped.signals:
        return mapped.signals[0].customer_id
    return None


def _consent_row(conn: Connection, customer: str) -> tuple[str | None, str | None]:
    c = consents.c
    row = conn.execute(
        sa.select(c.status, c.reason).where(c.customer_id == customer, c.channel == "telegram")
    ).first()
    return (row.status, row.reason) if row is not None else (None, None)


def _known(conn: Connection, customer: str) -> bool:
    for table in (customers, customer_profiles):
        found = conn.execute(sa.select(table.c.customer_id).where(table.c.customer_id == customer)).first()
        if found is not None:
            return True
    return False


def _traits(conn: Connection, customer: str) -> dict[str, Any]:
    p = customer_profiles.c
    row = conn.execute(sa.select(p.traits).where(p.customer_id == customer)).first()
    return dict(row.traits or {}) if row is not None else {}


def segment_and_tags(conn: Connection, customer: str) -> tuple[str | None, list[str]]:
    """The customer's live segment (``None`` before their first score) and their tags."""
    s = customer_scores.c
    segment = conn.execute(sa.select(s.segment).where(s.customer_id == customer)).scalar_one_or_none()
    t = customer_tags.c
    tags = list(conn.execute(sa.select(t.tag).where(t.customer_id == customer)).scalars())
    return segment, tags


def _record(
    conn: Connection, settings: Settings, config: BotConfig, mapped: MappedUpdate, now: datetime
) -> BotActions:
    actions = BotActions(mapped.update_id, ignored=mapped.ignored)
    customer = _customer_of(mapped)
    if customer is None:
        return actions
    actions.customer_id = customer
    known = _known(conn, customer)
    if mapped.events:
        items = [validate_item(e) for e in mapped.events]
        actions.results = ingest(conn, items, settings, source="telegram", now=now)
        for result in actions.results:
            if result.status == "rejected":
                log.warning(
                    "telegram event rejected",
                    extra={"event_id": result.event_id, "errors": [e.as_dict() for e in result.errors]},
                )
    fresh = any(r.status == "accepted" for r in actions.results)
    traits: dict[str, Any] = {}
    if mapped.profile is not None:
        traits = dict(mapped.profile["traits"])
    chat_id = traits.get("telegram_chat_id")
    profile_chat = _traits(conn, customer).get("telegram_chat_id")
    if chat_id is None and isinstance(profile_chat, int):
        chat_id = profile_chat

    for signal in mapped.signals:
        status, reason = _consent_row(conn, customer)
        if signal.kind == "stopped":
            change = ("opted_out", "stop")
        elif signal.kind == "blocked":
            change = ("opted_out", "blocked")
        elif signal.kind == "unblocked" and status == "opted_out" and reason == "blocked":
            change = ("opted_in", "unblocked")
        elif signal.kind == "started" and status == "opted_out":
            change = ("opted_in", "requested")
        else:
            continue
        if set_consent(conn, customer, "telegram", change[0], change[1], actor=ACTOR, at=now):
            actions.consent_changes.append(f"{change[0]}:{change[1]}")

    event = mapped.events[0] if mapped.events else None
    properties: dict[str, Any] = dict(event.get("properties") or {}) if event else {}
    if fresh and event is not None and event["type"] == "click":
        actions.answer_callback = properties.get("callback_query_id")
        data = properties.get("data")
        if isinstance(data, str) and data.startswith(ONBOARDING_PREFIX):
            traits[ONBOARDING_TRAIT] = data[len(ONBOARDING_PREFIX) :]
    if traits:
        upsert_profile(conn, customer, read_traits(traits), at=now, source="telegram")

    status, reason = _consent_row(conn, customer)
    blocked = status == "opted_out" and reason == "blocked"
    if blocked or not isinstance(chat_id, int):
        return actions
    segment, tags = segment_and_tags(conn, customer)
    menu = config.menu_for(segment, tags)
    if _traits(conn, customer).get(MENU_TRAIT) != menu.name:
        actions.set_menu = SetMenu(customer, chat_id, menu)
    if fresh and event is not None:
        _replies(actions, config, menu, event, properties, chat_id, known=known)
    return actions


def _replies(
    actions: BotActions,
    config: BotConfig,
    menu: Menu,
    event: Mapping[str, Any],
    properties: Mapping[str, Any],
    chat_id: int,
    *,
    known: bool,
) -> None:
    base = f"reply:{event['event_id']}"

    def say(text: str, markup: Mapping[str, Any] | None = None) -> None:
        actions.messages.append(OutboundMessage(base, chat_id, text, reply_markup=markup))

    if event["type"] == "click":
        if properties.get("data", "").startswith(ONBOARDING_PREFIX):
            say(config.onboarding_thanks)
        return
    if event["type"] != "command" or properties.get("chat_type") != "private":
        return
    name = properties.get("command")
    if name == "start":
        if known:
            say(config.welcome_back, menu.reply_keyboard())
        else:
            say(config.welcome, config.onboarding_keyboard())
    elif name == "stop":
        say(config.stopped, {"remove_keyboard": True})
    elif name == "menu":
        say(f"Menu: {menu.name}", menu.reply_keyboard())
    elif isinstance(name, str):
        command = config.command(menu, name)
        if command is not None and command.reply:
            say(command.reply)


def remember_menu(engine: Engine, customer_id: str, menu: str, *, now: datetime | None = None) -> None:
    """Note that ``menu`` is now the chat's command menu (the ``telegram_menu`` trait)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    update = read_traits({MENU_TRAIT: menu})
    run_write(engine, lambda conn: upsert_profile(conn, customer_id, update, at=moment, source="telegram"))


def record_blocked(engine: Engine, chat_id: int, *, now: datetime | None = None) -> bool:
    """A send was answered 403 (the user blocked the bot): opt the chat's customer out."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    p = customer_profiles.c

    def work(conn: Connection) -> bool:
        customers_of_chat = conn.execute(
            sa.select(p.customer_id).where(p.telegram_chat_id == chat_id)
        ).scalars()
        changed = False
        for customer in list(customers_of_chat):
            changed |= set_consent(conn, customer, "telegram", "opted_out", "blocked", actor=ACTOR, at=moment)
        return changed

    return run_write(engine, work)


def stale_menus(engine: Engine, config: BotConfig, *, limit: int = 10_000, page: int = 1000) -> list[SetMenu]:
    """Telegram customers whose menu is not the one last set for their chat (blocked ones left
    out), at most ``limit``; every Telegram customer is looked at, ``page`` at a time."""
    p, s, c = customer_profiles.c, customer_scores.c, consents.c
    blocked = (
        sa.select(c.customer_id)
        .where(c.channel == "telegram", c.status == "opted_out", c.reason == "blocked")
        .scalar_subquery()
    )
    out: list[SetMenu] = []
    after = ""
    with engine.connect() as conn:
        while len(out) < limit:
            query = (
                sa.select(p.customer_id, p.telegram_chat_id, p.traits, s.segment)
                .select_from(customer_profiles.outerjoin(customer_scores, s.customer_id == p.customer_id))
                .where(p.telegram_chat_id.is_not(None), p.customer_id > after, p.customer_id.not_in(blocked))
                .order_by(p.customer_id)
                .limit(page)
            )
            rows = conn.execute(query).all()
            if not rows:
                break
            after = rows[-1].customer_id
            t = customer_tags.c
            tags: dict[str, list[str]] = {}
            ids = [r.customer_id for r in rows]
            for customer, tag in conn.execute(sa.select(t.customer_id, t.tag).where(t.customer_id.in_(ids))):
                tags.setdefault(customer, []).append(tag)
            for row in rows:
                menu = config.menu_for(row.segment, tags.get(row.customer_id, []))
                if (row.traits or {}).get(MENU_TRAIT) != menu.name:
                    out.append(SetMenu(row.customer_id, int(row.telegram_chat_id), menu))
    return out[:limit]


__all__ = [
    "BotActions",
    "SetMenu",
    "bot_id_of",
    "handle_update",
    "record_blocked",
    "remember_menu",
    "segment_and_tags",
    "stale_menus",
]

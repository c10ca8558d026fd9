"""Telegram updates, fetched by python-telegram-bot from the fake, mapped to rfmflow events.

Every event produced is checked against the service's own ``EventIn`` model: what the bot
records must be accepted by ``POST /v1/events`` as is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import telegram
from telegram_helpers import run

from rfmflow.channels.telegram_currencies import amount_from_smallest_units, currency_exponent
from rfmflow.channels.telegram_sender import telegram_bot
from rfmflow.channels.telegram_updates import MappedUpdate, TelegramUpdateError, customer_id_for, map_update
from rfmflow.fake_telegram import FakeTelegram, FakeUser
from rfmflow.service.events import EventIn

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ANN = FakeUser(
    5001, first_name="Ann", last_name="Lee", username="annlee", language_code="de", is_premium=True
)


def fetched(fake: FakeTelegram) -> list[telegram.Update]:
    """What the bot receives: ``getUpdates`` through python-telegram-bot, confirmed."""

    async def go() -> list[telegram.Update]:
        async with telegram_bot(fake.token, base_url=fake.base_url) as bot:
            updates = list(await bot.get_updates(timeout=0))
            if updates:
                await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0)
            return updates

    return run(go())


def mapped(fake: FakeTelegram) -> list[MappedUpdate]:
    out = [map_update(update, bot_id=fake.bot_id, received_at=NOW) for update in fetched(fake)]
    for result in out:
        for event in result.events:
            EventIn.model_validate(event)  # the shape POST /v1/events takes
    return out


def only_event(result: MappedUpdate) -> dict[str, Any]:
    (event,) = result.events
    return event


def test_messages_and_commands(fake: FakeTelegram) -> None:
    fake.user_sends(ANN, "hello there")
    fake.user_sends(ANN, "/start promo-42")
    fake.user_sends(ANN, "/help@rfmflow_test_bot")
    fake.user_sends(ANN, "/stop")
    text, start, help_, stop = mapped(fake)

    event = only_event(text)
    assert event["type"] == "message" and event["customer_id"] == "tg:5001"
    assert event["properties"]["kind"] == "text" and "text" not in event["properties"]
    assert event["properties"]["chat_type"] == "private" and event["properties"]["chat_id"] == 5001
    assert event["event_id"] == f"tg:{fake.bot_id}:5001:{event['properties']['message_id']}"
    assert event["occurred_at"].endswith("Z")
    assert text.profile == {
        "customer_id": "tg:5001",
        "traits": {
            "telegram_user_id": 5001,
            "first_name": "Ann",
            "last_name": "Lee",
            "telegram_username": "annlee",
            "language": "de",
            "telegram_is_premium": True,
            "telegram_chat_id": 5001,
        },
    }
    assert only_event(start)["type"] == "command"
    assert only_event(start)["properties"]["command"] == "start"
    assert only_event(start)["properties"]["args"] == "promo-42"
    assert [(s.kind, s.detail) for s in start.signals] == [("started", "promo-42")]
    assert only_event(help_)["properties"]["command"] == "help"
    assert [s.kind for s in stop.signals] == ["stopped"] and stop.signals[0].customer_id == "tg:5001"


def test_button_presses_are_clicks_stamped_when_received(fake: FakeTelegram) -> None:
    fake.user_presses(ANN, "offer:vip-10")
    (click,) = mapped(fake)
    event = only_event(click)
    assert event["type"] == "click" and event["properties"]["data"] == "offer:vip-10"
    assert event["occurred_at"] == "2026-11-22T12:00:00Z"
    assert event["event_id"].startswith(f"tg:{fake.bot_id}:cb:")


@pytest.mark.parametrize(
    ("currency", "total", "amount"),
    [
        ("USD", 145, "1.45"),
        ("JPY", 1500, "1500"),
        ("KWD", 12345, "12.345"),
        ("EUR", 5, "0.05"),
        ("XTR", 50, "50"),
    ],
)
def test_payments_are_purchases_in_currency_units(
    fake: FakeTelegram, currency: str, total: int, amount: str
) -> None:
    fake.user_pays(ANN, currency=currency, total_amount=total, payload="order-7", charge_id="tg_charge_abc")
    (paid,) = mapped(fake)
    event = only_event(paid)
    assert event["type"] == "purchase" and event["currency"] == currency
    assert event["amount"] == amount and Decimal(event["amount"]) == Decimal(amount)
    assert event["order_id"] == "tg_charge_abc"
    assert event["properties"]["invoice_payload"] == "order-7"
    assert event["properties"]["total_amount"] == total
    assert EventIn.model_validate(event).amount == Decimal(amount)


def test_refunds_are_negative(fake: FakeTelegram) -> None:
    update = {
        "update_id": 9,
        "message": {
            "message_id": 3,
            "date": 1_790_000_000,
            "chat": {"id": 5001, "type": "private"},
            "from": ANN.as_user(),
            "refunded_payment": {
                "currency": "JPY",
                "total_amount": 700,
                "invoice_payload": "order-7",
                "telegram_payment_charge_id": "tg_charge_abc",
            },
        },
    }
    event = only_event(map_update(update, bot_id=1, received_at=NOW))
    assert event["type"] == "refund" and event["amount"] == "-700" and event["order_id"] == "tg_charge_abc"
    EventIn.model_validate(event)


def test_blocks_and_unblocks_are_signals_not_events(fake: FakeTelegram) -> None:
    fake.user_blocks(ANN)
    fake.user_unblocks(ANN)
    blocked, unblocked = mapped(fake)
    assert blocked.events == [] and [s.kind for s in blocked.signals] == ["blocked"]
    assert blocked.signals[0].chat_id == 5001 and blocked.signals[0].customer_id == customer_id_for(5001)
    assert [s.kind for s in unblocked.signals] == ["unblocked"]


def test_redelivered_updates_map_to_the_same_event_ids(fake: FakeTelegram) -> None:
    fake.user_sends(ANN, "hi")
    fake.user_presses(ANN, "yes")
    fake.user_pays(ANN, currency="USD", total_amount=999)

    async def twice() -> tuple[list[telegram.Update], list[telegram.Update]]:
        async with telegram_bot(fake.token, base_url=fake.base_url) as bot:
            return list(await bot.get_updates()), list(await bot.get_updates())  # not confirmed: again

    first, again = run(twice())
    ids = [map_update(u, bot_id=fake.bot_id, received_at=NOW).events[0]["event_id"] for u in first]
    same = [map_update(u.to_dict(), bot_id=fake.bot_id, received_at=NOW).events[0]["event_id"] for u in again]
    assert ids == same and len(set(ids)) == 3


def test_what_is_not_an_interaction_is_ignored_with_a_reason(fake: FakeTelegram) -> None:
    group = {"id": -100777, "type": "supergroup", "title": "Fans"}
    bot_user = fake.state.bot_user
    member = {"chat": group, "from": ANN.as_user(), "date": 1_790_000_000}
    joined = {"message_id": 2, "date": 1_790_000_000, "chat": group, "from": ANN.as_user()}
    cases = [
        {"update_id": 1, "edited_message": {"message_id": 1, "date": 1, "chat": group, "text": "x"}},
        {"update_id": 2, "message": {**joined, "new_chat_members": [ANN.as_user()]}},
        {
            "update_id": 3,
            "message": {**joined, "from": {"id": 9, "is_bot": True, "first_name": "b"}, "text": "b"},
        },
        {
            "update_id": 4,
            "my_chat_member": {
                **member,
                "old_chat_member": {"user": bot_user, "status": "left"},
                "new_chat_member": {"user": bot_user, "status": "member"},
            },
        },
        {
            "update_id": 5,
            "pre_checkout_query": {
                "id": "q",
                "from": ANN.as_user(),
                "currency": "USD",
                "total_amount": 100,
                "invoice_payload": "p",
            },
        },
    ]
    results = [map_update(case, bot_id=1, received_at=NOW) for case in cases]
    assert all(r.events == [] and r.signals == [] for r in results)
    assert [r.ignored for r in results] == [
        "an edit is not a new interaction",
        "a service message, not an interaction",
        "sent by a bot",
        "the bot's own membership in a group or channel",
        "the purchase is recorded when successful_payment arrives",
    ]


def test_group_messages_count_for_the_user_without_the_group_as_their_chat(fake: FakeTelegram) -> None:
    group = {"id": -100555, "type": "supergroup", "title": "Shop fans"}
    fake.user_sends(ANN, "nice shop", chat=group)
    (result,) = mapped(fake)
    event = only_event(result)
    assert event["customer_id"] == "tg:5001" and event["properties"]["chat_id"] == -100555
    assert result.profile is not None and "telegram_chat_id" not in result.profile["traits"]


def test_malformed_updates_name_the_field() -> None:
    with pytest.raises(TelegramUpdateError, match="update_id: missing or not an integer"):
        map_update({"message": {}}, bot_id=1, received_at=NOW)
    payment = {
        "update_id": 1,
        "message": {
            "message_id": 1,
            "date": 1_790_000_000,
            "chat": {"id": 5, "type": "private"},
            "from": {"id": 5, "is_bot": False, "first_name": "A"},
            "successful_payment": {"currency": "ABC", "total_amount": 100, "telegram_payment_charge_id": "c"},
        },
    }
    with pytest.raises(TelegramUpdateError) as err:
        map_update(payment, bot_id=1, received_at=NOW)
    assert (
        err.value.field == "message.successful_payment.currency"
        and "unknown currency 'ABC'" in err.value.reason
    )
    assert (
        only_event(map_update(payment, bot_id=1, received_at=NOW, currency_exponents={"ABC": 1}))["amount"]
        == "10.0"
    )
    payment["message"]["successful_payment"]["total_amount"] = "100"
    with pytest.raises(
        TelegramUpdateError, match=r"message.successful_payment.total_amount: missing or not an int"
    ):
        map_update(payment, bot_id=1, received_at=NOW)
    with pytest.raises(TelegramUpdateError, match=r"message\.chat: missing"):
        map_update(
            {"update_id": 2, "message": {"message_id": 1, "from": {"id": 5, "is_bot": False}}},
            bot_id=1,
            received_at=NOW,
        )


def test_currency_table() -> None:
    assert [currency_exponent(c) for c in ("usd", "JPY", "KRW", "BHD", "XTR", "EUR")] == [2, 0, 0, 3, 0, 2]
    assert amount_from_smallest_units(100, "USD") == Decimal("1.00")
    with pytest.raises(KeyError):
        currency_exponent("ZZZ")

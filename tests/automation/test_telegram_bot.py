"""The business's bot end to end: the real app under uvicorn, python-telegram-bot, the fake Bot API,
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from telegram_bot_helpers import (
    SECRET,
    WEBHOOK_PATH,
    BotApp,
    chat_commands,
    consent_row,
    event_rows,
    profile_row,
    service_fixtures,
    start_bot_app,
    wait_for,
)

from rfmflow.automation import telegram_runtime
from rfmflow.fake_telegram import FakeTelegram, FakeUser
from rfmflow.service.db.engine import run_write
from rfmflow.service.settings import Settings
from rfmflow.service.tags import TagOp, change_tags

_service = service_fixtures()
database = _service.database
settings = _service.settings
bare_engine = _service.bare_engine
engine = _service.engine
server = _service.server


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as running:
        yield running


@pytest.fixture
def bot(engine: Engine, settings: Settings, fake: FakeTelegram) -> Iterator[BotApp]:
    app = start_bot_app(engine, settings, fake, "webhook")
    try:
        yield app
    finally:
        app.stop()


def texts_to(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [m.text or "" for m in fake.messages_to(chat_id)]


def post_update(bot: BotApp, body: Any, secret: str | None = SECRET) -> httpx.Response:
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    return httpx.post(bot.url + WEBHOOK_PATH, json=body, headers=headers, timeout=30)


def test_webhook_checks_the_secret_token(bot: BotApp, fake: FakeTelegram) -> None:
    user = FakeUser(5001, first_name="Ann")
    with fake.state.lock:
        fake.state.webhook = None  # the test posts the updates itself
    body = {
        "update_id": 10,
        "message": {
            "message_id": 1,
            "date": int(datetime.now(UTC).timestamp()),
            "chat": user.as_private_chat(),
            "from": user.as_user(),
            "text": "hello",
        },
    }
    missing = post_update(bot, body, secret=None)
    assert missing.status_code == 401 and "X-Telegram-Bot-Api-Secret-Token" in missing.json()["detail"]
    wrong = post_update(bot, body, secret="not-the-secret")
    assert wrong.status_code == 403
    assert event_rows(bot.engine, "tg:5001") == []  # nothing written for a refused update

    good = post_update(bot, body)
    assert good.status_code == 200, good.text
    assert good.json()["events"][0]["status"] == "accepted"
    again = post_update(bot, {**body, "update_id": 11})  # the same message delivered twice
    assert again.json()["events"][0]["status"] == "duplicate"
    rows = event_rows(bot.engine, "tg:5001")
    assert [(r.event_type, r.source) for r in rows] == [("message", "telegram")]

    undated = {"message_id": 2, "chat": user.as_private_chat(), "from": user.as_user(), "text": "x"}
    malformed = post_update(bot, {"update_id": 12, "message": undated})
    assert malformed.status_code == 422
    assert malformed.json()["detail"][0]["loc"] == ["body", "message", "date"]
    not_object = post_update(bot, [1, 2])
    assert not_object.status_code == 400


def test_webhook_is_404_when_the_bot_is_off(server: Any) -> None:
    answer = httpx.post(server.url + WEBHOOK_PATH, json={"update_id": 1}, timeout=30)
    assert answer.status_code == 404


def test_start_onboarding_profile_and_duplicate_deliveries(bot: BotApp, fake: FakeTelegram) -> None:
    with fake.state.lock:
        assert fake.state.webhook is not None and fake.state.webhook.url == bot.url + WEBHOOK_PATH
        assert fake.state.webhook.secret_token == SECRET  # setWebhook by the bot on start
    user = FakeUser(4242, first_name="Mia", last_name="Lee", language_code="de")
    start = fake.user_sends(user, "/start")
    welcome = wait_for(lambda: fake.messages_to(user.id))[0]
    assert welcome.text == "Welcome! What brings you here?"
    buttons = [row[0]["callback_data"] for row in welcome.reply_markup["inline_keyboard"]]
    assert buttons == ["onb:offers", "onb:news", "onb:browsing"]

    profile = wait_for(lambda: profile_row(bot.engine, "tg:4242"))
    assert (profile.telegram_chat_id, profile.language, profile.name) == (4242, "de", "Mia Lee")

    fake.inject({k: v for k, v in start.items() if k != "update_id"})  # Telegram delivers it again
    wait_for(lambda: bot.runtime.handled >= 2)
    assert [r.event_type for r in event_rows(bot.engine, "tg:4242")] == ["command"]

    fake.user_presses(user, "onb:news", message=welcome)
    wait_for(lambda: len(fake.messages_to(user.id)) >= 2)
    assert texts_to(fake, user.id)[1] == "Thanks! Send /menu to see what we have for you."
    kinds = [(r.event_type, (r.properties or {}).get("data")) for r in event_rows(bot.engine, "tg:4242")]
    assert ("click", "onb:news") in kinds
    assert profile_row(bot.engine, "tg:4242").traits["telegram_onboarding"] == "news"
    assert len(fake.messages_to(user.id)) == 2  # the repeated /start was not answered again


def test_payment_is_a_purchase_in_minor_units(bot: BotApp, fake: FakeTelegram) -> None:
    user = FakeUser(777)
    fake.user_pays(user, currency="USD", total_amount=1999, charge_id="charge-1")
    rows = wait_for(lambda: event_rows(bot.engine, "tg:777"))
    purchase = rows[0]
    assert (purchase.event_type, purchase.amount_minor, purchase.currency, purchase.order_id) == (
        "purchase",
        1999,
        "USD",
        "charge-1",
    )


def test_stop_start_block_unblock_change_consent(bot: BotApp, fake: FakeTelegram) -> None:
    user = FakeUser(9001)
    fake.user_sends(user, "/start")
    wait_for(lambda: fake.messages_to(user.id))
    fake.user_sends(user, "/stop")
    wait_for(lambda: consent_row(bot.engine, "tg:9001") == ("opted_out", "stop"))
    wait_for(lambda: len(fake.messages_to(user.id)) >= 2)
    assert texts_to(fake, user.id)[1].startswith("You will get no more messages")

    fake.user_sends(user, "/start")
    wait_for(lambda: consent_row(bot.engine, "tg:9001") == ("opted_in", "requested"))
    fake.user_blocks(user)
    wait_for(lambda: consent_row(bot.engine, "tg:9001") == ("opted_out", "blocked"))
    fake.user_unblocks(user)
    wait_for(lambda: consent_row(bot.engine, "tg:9001") == ("opted_in", "unblocked"))


def _tag(engine: Engine, customer: str, tag: str) -> None:
    def work(conn: Any) -> None:
        change_tags(
            conn,
            [TagOp(customer, tag)],
            actor="test",
            at=datetime.now(UTC),
            create_missing=True,
            audit_action=None,
        )

    run_write(engine, work)


def test_menus_follow_segment_and_tags(bot: BotApp, fake: FakeTelegram) -> None:
    regular, vip = FakeUser(31), FakeUser(32)
    for user in (regular, vip):
        fake.user_sends(user, "/start")
    wait_for(lambda: chat_commands(fake, 31) and chat_commands(fake, 32))
    assert chat_commands(fake, 31) == ["events", "offers", "menu", "stop"]  # setMyCommands, chat scope

    _tag(bot.engine, "tg:32", "vip")
    fake.user_sends(vip, "/menu")  # the next interaction brings the new menu
    wait_for(lambda: chat_commands(fake, 32)[:1] == ["vip"])
    keyboard = wait_for(lambda: [m for m in fake.messages_to(32) if m.text == "Menu: vip"])[0].reply_markup
    assert keyboard["keyboard"][0] == [{"text": "/vip"}, {"text": "/offers"}]
    wait_for(lambda: profile_row(bot.engine, "tg:32").traits.get("telegram_menu") == "vip")  # after the call

    _tag(bot.engine, "tg:31", "vip")  # changed elsewhere (API, rules): the refresh picks it up
    assert bot.runtime.refresh_menus() == 1
    assert chat_commands(fake, 31)[:1] == ["vip"]
    assert bot.runtime.refresh_menus() == 0

    fake.user_sends(vip, "/vip")
    wait_for(lambda: "Welcome to the VIP Zone." in texts_to(fake, 32))


def test_polling_records_each_update_once(
    engine: Engine, settings: Settings, fake: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telegram_runtime, "POLL_TIMEOUT", 1)  # the fake holds a long poll open at its stop
    app = start_bot_app(engine, settings, fake, "polling")
    try:
        user = FakeUser(6060, first_name="Poll")
        fake.user_sends(user, "/start")
        fake.user_sends(user, "hello")
        fake.user_pays(user, currency="USD", total_amount=500)
        rows = wait_for(lambda: len(event_rows(engine, "tg:6060")) == 3 and event_rows(engine, "tg:6060"))
        assert sorted(r.event_type for r in rows) == ["command", "message", "purchase"]
        wait_for(lambda: fake.messages_to(user.id))
        assert fake.messages_to(user.id)[0].text == "Welcome! What brings you here?"
        wait_for(lambda: not fake.state.updates)  # confirmed by the next getUpdates offset
    finally:
        app.stop()
    assert len(event_rows(engine, "tg:6060")) == 3


def test_bot_settings_and_menu_configuration_are_checked(tmp_path: Any) -> None:
    from rfmflow.automation.telegram_menus import load_config
    from rfmflow.service.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="RFMFLOW_TELEGRAM_MODE"):
        load_settings({"RFMFLOW_TELEGRAM_MODE": "push"}, cwd=tmp_path)
    with pytest.raises(SettingsError, match="RFMFLOW_TELEGRAM_BOT_TOKEN"):
        load_settings({"RFMFLOW_TELEGRAM_MODE": "polling"}, cwd=tmp_path)
    with pytest.raises(SettingsError, match="RFMFLOW_TELEGRAM_WEBHOOK_SECRET"):
        load_settings(
            {"RFMFLOW_TELEGRAM_MODE": "webhook", "RFMFLOW_TELEGRAM_BOT_TOKEN": "1:abc"}, cwd=tmp_path
        )
    loaded = load_settings(
        {"RFMFLOW_TELEGRAM_MODE": "Polling", "RFMFLOW_TELEGRAM_BOT_TOKEN": "1:abc"}, cwd=tmp_path
    )
    assert loaded.telegram_mode == "polling" and "1:abc" not in repr(loaded)

    with pytest.raises(SettingsError, match=r"menus\[0\]\.commands\[0\]\.command"):
        load_config('{"menus": [{"name": "all", "commands": [{"command": "Bad Name", "description": "x"}]}]}')
    with pytest.raises(SettingsError, match=r"menus\[1\]: the last menu is the fallback"):
        load_config(
            '{"menus": [{"name": "a", "tags": ["x"], "commands": [{"command": "a", "description": "A"}]},'
            ' {"name": "b", "tags": ["y"], "commands": [{"command": "b", "description": "B"}]}]}'
        )
    with pytest.raises(SettingsError, match="not valid JSON"):
        load_config("{nope")
    path = tmp_path / "menus.yaml"
    path.write_text(
        "welcome: Hi\nmenus:\n  - name: gold\n    segments: [Champions]\n    commands:\n"
        "      - {command: gold, description: Gold}\n  - name: rest\n    commands:\n"
        "      - {command: news, description: News}\n",
        encoding="utf-8",
    )
    config = load_config(str(path))
    assert config.welcome == "Hi"
    assert config.menu_for("Champions", []).name == "gold"
    assert config.menu_for("At Risk", ["vip"]).name == "rest"
    assert [c["command"] for c in config.menu_for(None, []).bot_commands()] == ["news", "menu", "stop"]

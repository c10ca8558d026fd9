"""The fake Bot API answers python-telegram-bot the way Telegram does."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import telegram
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from telegram import BotCommand, BotCommandScopeChat
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, RetryAfter
from telegram_helpers import Receiver, run

from rfmflow.channels.telegram_sender import Transport, telegram_bot
from rfmflow.fake_telegram import FakeLimits, FakeTelegram, FakeTelegramProcess, FakeUser


def bot_for(fake: FakeTelegram) -> telegram.Bot:
    return telegram_bot(fake.token, base_url=fake.base_url)


def test_get_me_and_token_checks(fake: FakeTelegram) -> None:
    async def go() -> telegram.User:
        async with bot_for(fake) as bot:
            return await bot.get_me()

    me = run(go())
    assert me.id == fake.bot_id and me.is_bot and me.username == "rfmflow_test_bot"
    wrong = httpx.post(f"{fake.base_url}{fake.bot_id}:wrong/getMe")
    assert wrong.status_code == 401 and wrong.json() == {
        "ok": False,
        "error_code": 401,
        "description": "Unauthorized",
    }
    assert httpx.post(f"{fake.base_url}not-a-token/getMe").status_code == 404
    unknown = httpx.post(f"{fake.base_url}{fake.token}/sendTelepathy")
    assert unknown.status_code == 404 and unknown.json()["description"] == "Not Found: method not found"

    async def refused() -> None:
        async with telegram_bot(f"{fake.bot_id}:wrong", base_url=fake.base_url):
            pass

    with pytest.raises(InvalidToken):
        run(refused())


def test_limits_answer_429_with_retry_after_and_403_for_blocked(fake: FakeTelegram) -> None:
    fake.set_limits(FakeLimits(global_per_second=None, group_messages=2, group_window=60.0))
    fake.state.block(9)

    async def go() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with bot_for(fake) as bot:
            await bot.send_message(5, "one")
            with pytest.raises(RetryAfter) as private:
                await bot.send_message(5, "two")  # second message within a second
            seen["private"] = private.value.retry_after
            await bot.send_message(-1001, "g1")
            await bot.send_message(-1001, "g2")
            with pytest.raises(RetryAfter) as group:
                await bot.send_message(-1001, "g3")  # third within the group's minute
            seen["group"] = group.value.retry_after
            with pytest.raises(Forbidden) as blocked:
                await bot.send_message(9, "hi")
            seen["blocked"] = str(blocked.value)
        return seen

    seen = run(go())
    assert seen["private"].total_seconds() == 1
    assert 59 <= seen["group"].total_seconds() <= 60
    assert seen["blocked"] == "Forbidden: bot was blocked by the user"
    body = httpx.post(f"{fake.base_url}{fake.token}/sendMessage", data={"chat_id": "5", "text": "x"}).json()
    assert body == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 1",
        "parameters": {"retry_after": 1},
    }
    assert fake.stats()["too_many_requests"] == 3 and fake.stats()["refused"]["403"] == 1


def test_overall_limit_is_a_bucket_of_one_seconds_worth(fake: FakeTelegram) -> None:
    fake.set_limits(FakeLimits(global_per_second=10))
    with httpx.Client() as client:
        url = f"{fake.base_url}{fake.token}/sendMessage"
        codes = [client.post(url, json={"chat_id": 100 + i, "text": "x"}).status_code for i in range(15)]
    assert codes[:10] == [200] * 10 and 429 in codes[10:]


def test_bad_requests_name_the_problem() -> None:
    with FakeTelegram(strict_chats=True) as fake:
        fake.add_user(FakeUser(1))

        async def go() -> list[str]:
            errors = []
            async with bot_for(fake) as bot:
                for call in (
                    bot.send_message(2, "hello"),
                    bot.send_message(1, "x" * 4097),
                    bot.edit_message_reply_markup(1, 999),
                    bot.answer_callback_query("nope"),
                ):
                    with pytest.raises(BadRequest) as err:
                        await call
                    errors.append(str(err.value))
            return errors

        assert run(go()) == [
            "Chat not found",
            "Message is too long",
            "Message to edit not found",
            "Query is too old and response timeout expired or query id is invalid",
        ]


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_uploads_reach_the_fake_as_multipart_and_are_refused(
    fake: FakeTelegram, transport: Transport
) -> None:
    async def go() -> str:
        async with telegram_bot(fake.token, base_url=fake.base_url, transport=transport) as bot:
            with pytest.raises(BadRequest) as err:
                await bot.send_photo(5, photo=b"\x89PNG\r\n\x1a\n fake image", caption="a photo")
            return str(err.value)

    assert run(go()) == "File uploads are not supported by the fake bot api; send a file id or url"


def test_command_menus_per_chat_scope(fake: FakeTelegram) -> None:
    async def go() -> tuple[Any, ...]:
        async with bot_for(fake) as bot:
            await bot.set_my_commands([BotCommand("start", "Start"), BotCommand("help", "Help")])
            vip = [BotCommand("offers", "VIP offers"), BotCommand("stop", "Unsubscribe")]
            await bot.set_my_commands(vip, scope=BotCommandScopeChat(42))
            await bot.set_my_commands(
                [BotCommand("angebote", "Angebote")], scope=BotCommandScopeChat(42), language_code="de"
            )
            default = await bot.get_my_commands()
            chat = await bot.get_my_commands(scope=BotCommandScopeChat(42))
            german = await bot.get_my_commands(scope=BotCommandScopeChat(42), language_code="de")
            other = await bot.get_my_commands(scope=BotCommandScopeChat(43))
            await bot.delete_my_commands(scope=BotCommandScopeChat(42))
            after = await bot.get_my_commands(scope=BotCommandScopeChat(42))
            with pytest.raises(BadRequest):
                await bot.set_my_commands([BotCommand("Bad Command", "x")])
            return default, chat, german, other, after

    default, chat, german, other, after = run(go())
    assert [c.command for c in default] == ["start", "help"]
    assert [c.command for c in chat] == ["offers", "stop"]
    assert [c.command for c in german] == ["angebote"]
    assert other == () and after == ()


def test_long_polling_delivers_injected_updates_and_confirms_by_offset(fake: FakeTelegram) -> None:
    user = FakeUser(7, first_name="Ann", language_code="en")

    async def go() -> tuple[Any, ...]:
        async with bot_for(fake) as bot:
            started = time.monotonic()
            loop = asyncio.get_running_loop()
            loop.call_later(0.3, fake.user_sends, user, "hello")
            first = await bot.get_updates(timeout=5)
            waited = time.monotonic() - started
            fake.user_sends(user, "/start promo")
            both = await bot.get_updates(timeout=1)  # not confirmed yet: both again
            rest = await bot.get_updates(offset=both[-1].update_id + 1, timeout=0)
            return first, waited, both, rest

    first, waited, both, rest = run(go())
    assert [u.message.text for u in first] == ["hello"]
    assert 0.25 <= waited < 3
    assert [u.message.text for u in both] == ["hello", "/start promo"]
    assert both[1].message.entities[0].type == "bot_command"
    assert rest == ()
    assert fake.stats()["queued_updates"] == 0


def test_webhook_gets_updates_with_the_secret_token(fake: FakeTelegram) -> None:
    received: list[tuple[str | None, dict[str, Any]]] = []

    async def hook(request: Request) -> JSONResponse:
        secret = request.headers.get("X-Telegram-Bot-Api-Secret-Token")
        received.append((secret, await request.json()))
        if secret != "s3cret_Token-1":
            return JSONResponse({"detail": "wrong secret"}, status_code=403)
        return JSONResponse({})

    receiver = Receiver(Starlette(routes=[Route("/tg", hook, methods=["POST"])]))
    url = receiver.start() + "/tg"
    user = FakeUser(11)
    try:

        async def go() -> tuple[Any, ...]:
            async with bot_for(fake) as bot:
                with pytest.raises(BadRequest, match="Secret token contains unallowed characters"):
                    await bot.set_webhook(url, secret_token="bad secret!")
                assert await bot.set_webhook(url, secret_token="s3cret_Token-1")
                with pytest.raises(Conflict):
                    await bot.get_updates()
                fake.user_sends(user, "via webhook")
                fake.user_presses(user, "offer:10")
                await asyncio.to_thread(fake.wait_until, lambda: len(received) >= 2)
                good = await bot.get_webhook_info()
                await bot.set_webhook(url, secret_token="another-secret")  # the receiver refuses it
                fake.user_sends(user, "refused")
                await asyncio.to_thread(fake.wait_until, lambda: len(received) >= 4)
                bad = await bot.get_webhook_info()
                await bot.delete_webhook()
                return good, bad, await bot.get_updates()

        good, bad, polled = run(go())
    finally:
        receiver.stop()
    assert [body.get("message", {}).get("text") for _s, body in received[:2]] == ["via webhook", None]
    assert received[1][1]["callback_query"]["data"] == "offer:10"
    assert {secret for secret, _b in received[:2]} == {"s3cret_Token-1"}
    assert good.url == url and good.pending_update_count == 0
    assert all(secret == "another-secret" for secret, _b in received[2:])  # retried, never skipped
    assert bad.pending_update_count == 1 and "403" in (bad.last_error_message or "")
    assert [u.message.text for u in polled] == ["refused"]  # still queued after the webhook went


def test_callback_answers_and_keyboard_edits(fake: FakeTelegram) -> None:
    user = FakeUser(21)
    keyboard = telegram.InlineKeyboardMarkup([[telegram.InlineKeyboardButton("Yes", callback_data="yes")]])

    async def go() -> tuple[Any, ...]:
        async with bot_for(fake) as bot:
            sent = await bot.send_message(user.id, "Interested?", reply_markup=keyboard)
            fake.user_presses(user, "yes", message=fake.messages[-1])
            (update,) = await bot.get_updates()
            answered = await bot.answer_callback_query(update.callback_query.id, text="Noted")
            edited = await bot.edit_message_reply_markup(user.id, sent.message_id, reply_markup=None)
            return sent, update, answered, edited

    sent, update, answered, edited = run(go())
    assert sent.reply_markup == keyboard
    assert update.callback_query.data == "yes" and update.callback_query.message.message_id == sent.message_id
    assert answered is True and fake.state.callback_answers[0]["text"] == "Noted"
    assert edited.message_id == sent.message_id and fake.state.edits[0]["reply_markup"] is None


def test_the_fake_in_its_own_process_is_driven_over_its_control_api() -> None:
    with FakeTelegramProcess("--global-per-second", "5") as fake:
        fake.set_limits(FakeLimits(global_per_second=2))
        fake.block([77])
        url = f"{fake.base_url}{fake.token}/sendMessage"
        codes = [httpx.post(url, json={"chat_id": chat, "text": "x"}).status_code for chat in (1, 2, 3, 77)]
        stats = fake.stats()
        sent = fake.messages()
        fake.reset()
        after = fake.stats()
    assert codes == [200, 200, 429, 403]
    assert stats["accepted"] == 2 and stats["refused"] == {"403": 1, "429": 1}
    assert [m["chat_id"] for m in sent] == [1, 2]
    assert after["accepted"] == 0

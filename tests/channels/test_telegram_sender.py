"""The Telegram sender through python-telegram-bot against the fake Bot API on loopback.

Times are the fake server's: when each send request reached it (``send_log``), refused or not.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import telegram
from telegram_helpers import broadcast, most_in_window, request_times, run, send_all, sender_for

from rfmflow.channels.outbound import OutboundMessage, SendOutcome
from rfmflow.channels.telegram_limits import TelegramLimits
from rfmflow.channels.telegram_sender import TelegramSender, Transport, telegram_bot
from rfmflow.fake_telegram import FakeLimits, FakeTelegram


def messages(chats: range | list[int], prefix: str = "m") -> list[OutboundMessage]:
    return [OutboundMessage(f"{prefix}{chat}", chat, f"hello {chat}") for chat in chats]


def statuses(outcomes: dict[str, SendOutcome]) -> Counter[str]:
    return Counter(o.status for o in outcomes.values())


def test_overall_rate_is_held_without_a_single_429(fake: FakeTelegram) -> None:
    fake.set_limits(FakeLimits(global_per_second=20))
    outcomes = broadcast(fake, messages(range(1000, 1060)), messages_per_second=20)

    assert statuses(outcomes) == {"delivered": 60}
    assert fake.stats()["too_many_requests"] == 0
    times = request_times(fake)
    assert len(times) == 60
    assert most_in_window(times, 1.0) <= 22  # the rate, the one-message burst, one of arrival jitter
    assert times[-1] - times[0] >= (60 - 2) / 20  # never faster than the limit
    assert len({m.text for m in fake.messages}) == 60  # each once


def test_chats_and_groups_are_spaced_and_do_not_hold_up_others(fake: FakeTelegram) -> None:
    fake.set_limits(FakeLimits(global_per_second=None, group_messages=3, group_window=2.0))
    batch = [OutboundMessage(f"p{i}", 77, f"private {i}") for i in range(4)]
    batch += [OutboundMessage(f"g{i}", -100123, f"group {i}") for i in range(5)]
    batch += messages(range(2000, 2010))
    outcomes = broadcast(fake, batch, messages_per_second=100, group_messages=3, group_window=2.0)

    assert statuses(outcomes) == {"delivered": 19}
    assert fake.stats()["too_many_requests"] == 0
    private = request_times(fake, 77)
    assert min(b - a for a, b in itertools.pairwise(private)) >= 1.0
    group = request_times(fake, -100123)
    assert most_in_window(group, 2.0) <= 3
    others = [at for chat in range(2000, 2010) for at in request_times(fake, chat)]
    assert max(others) < private[1]  # nobody waited behind the busy chat
    assert [m.text for m in fake.messages_to(77)] == [f"private {i}" for i in range(4)]  # in order


def test_a_429_pauses_everything_for_retry_after_and_no_burst_follows(fake: FakeTelegram) -> None:
    fake.set_limits(FakeLimits(global_per_second=None))
    fake.force_error(429, retry_after=2, count=1)

    async def go() -> tuple[dict[str, SendOutcome], TelegramSender]:
        async with sender_for(fake, messages_per_second=40, max_in_flight=4) as sender:
            return await send_all(sender, messages(range(3000, 3040))), sender

    outcomes, sender = run(go())
    assert statuses(outcomes) == {"delivered": 40}, [o for o in outcomes.values() if o.status != "delivered"]
    assert sender.stats.rate_limited == 1 and sender.stats.global_pauses == 1
    (refused,) = request_times(fake, status=429)
    accepted = request_times(fake, status=200)
    during = [at for at in accepted if refused < at < refused + 1.95]
    assert len(during) <= 3  # only requests already in flight when the 429 came back
    after = [at for at in accepted if at >= refused + 1.95]
    assert after and after[0] >= refused + 1.95
    assert most_in_window(after, 0.5) <= 40 * 0.5 + 2  # the bucket restarted empty: no burst
    assert len(fake.messages) == 40 and fake.stats()["duplicates"] == 0  # the 429'd one sent once


def test_a_429_explained_by_one_chat_pauses_only_that_chat(fake: FakeTelegram) -> None:
    # the fake is stricter with the group than the sender was told: 2 messages per 3 s
    fake.set_limits(FakeLimits(global_per_second=None, group_messages=2, group_window=3.0))
    batch = [OutboundMessage(f"g{i}", -555, f"group {i}") for i in range(3)]
    batch += [OutboundMessage(f"p{chat}-{i}", chat, f"p {i}") for chat in range(10, 14) for i in range(4)]

    async def go() -> tuple[dict[str, SendOutcome], TelegramSender]:
        async with sender_for(fake, messages_per_second=50) as sender:
            return await send_all(sender, batch), sender

    outcomes, sender = run(go())
    assert statuses(outcomes) == {"delivered": 19}
    assert sender.stats.chat_pauses >= 1 and sender.stats.global_pauses == 0
    refused = request_times(fake, -555, status=429)[0]
    others = [at for chat in range(10, 14) for at in request_times(fake, chat)]
    assert any(refused < at < refused + 1.0 for at in others)  # the others kept going meanwhile


def test_blocked_users_are_reported_once_and_never_retried(fake: FakeTelegram) -> None:
    fake.state.block(3)
    fake.state.block(7)
    batch = messages([1, 2, 3, 4, 5, 6, 7, 8]) + [
        OutboundMessage(f"again{i}", 3, f"again {i}") for i in range(2)
    ]

    async def go() -> tuple[dict[str, SendOutcome], SendOutcome]:
        async with sender_for(fake) as sender:
            outcomes = await send_all(sender, batch)
            later = await sender.send(OutboundMessage("later", 7, "later"))
            return outcomes, later

    outcomes, later = run(go())
    assert statuses(outcomes) == {"delivered": 6, "blocked": 4}
    for key in ("m3", "m7", "again0", "again1"):
        assert outcomes[key].reason == "Forbidden: bot was blocked by the user"
    assert later.status == "blocked" and later.attempts == 0
    assert fake.stats()["refused"] == {"403": 2}  # one request per blocked chat, none repeated
    assert len(request_times(fake, 3)) == 1 and len(request_times(fake, 7)) == 1


def test_no_message_id_is_sent_twice(fake: FakeTelegram) -> None:
    batch = [
        OutboundMessage("a", 1, "to one"),
        OutboundMessage("b", 2, "to two"),
        OutboundMessage("a", 1, "to one"),
        OutboundMessage("c", 3, "to three"),
    ]

    async def go() -> tuple[list[SendOutcome], list[SendOutcome]]:
        async with sender_for(fake) as sender:
            first = [o async for o in sender.send_many(batch)]
            again = [o async for o in sender.send_many(batch)]  # the same batch handed over twice
            return first, again

    first, again = run(go())
    assert Counter(o.status for o in first) == {"delivered": 3, "duplicate": 1}
    assert {o.status for o in again} == {"duplicate"}
    assert len(fake.messages) == 3 and fake.stats()["duplicates"] == 0


def test_keyboards_reach_telegram_and_bad_ones_fail_before_sending(fake: FakeTelegram) -> None:
    keyboard = {"inline_keyboard": [[{"text": "10% off", "callback_data": "offer:10"}]]}
    batch = [
        OutboundMessage("k", 5, "An offer", reply_markup=keyboard),
        OutboundMessage("bad", 6, "broken", reply_markup={"rows": []}),
        OutboundMessage("empty", 7, ""),
        OutboundMessage("photo", 8, "caption", photo="AgACAgIAAxkBAAIB"),
    ]
    outcomes = broadcast(fake, batch)
    assert outcomes["k"].status == "delivered" and outcomes["photo"].status == "delivered"
    assert outcomes["bad"].status == "failed" and "reply_markup" in (outcomes["bad"].reason or "")
    assert outcomes["empty"].status == "failed" and outcomes["empty"].reason == "text: must not be empty"
    (sent,) = fake.messages_to(5)
    assert sent.reply_markup == keyboard
    (photo,) = fake.messages_to(8)
    assert photo.method == "sendPhoto" and photo.text == "caption"
    assert request_times(fake, 6) == [] and request_times(fake, 7) == []


def test_unknown_chats_fail_and_their_queue_with_them() -> None:
    with FakeTelegram(strict_chats=True) as fake:
        outcomes = broadcast(fake, [OutboundMessage(f"x{i}", 404, f"x {i}") for i in range(3)])
    assert {o.status for o in outcomes.values()} == {"failed"}
    assert {o.reason for o in outcomes.values()} == {"Chat not found"}
    assert fake.stats()["refused"] == {"400": 1}


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_a_lost_answer_is_unknown_and_not_resent(fake: FakeTelegram, transport: Transport) -> None:
    fake.force_delay(1.5)  # the message is taken, the answer comes after the client gave up
    fake.force_error(500, description="Internal Server Error")

    async def go() -> dict[str, SendOutcome]:
        bot = telegram_bot(fake.token, base_url=fake.base_url, timeout=0.5, transport=transport)
        async with TelegramSender(bot, TelegramLimits(max_in_flight=1)) as sender:
            return await send_all(sender, messages([1, 2, 3]))

    outcomes = run(go())
    assert statuses(outcomes) == {"unknown": 2, "delivered": 1}
    assert len(request_times(fake)) == 3  # nothing resent
    assert all(
        "may have been delivered" in (o.reason or "") for o in outcomes.values() if o.status == "unknown"
    )


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_requests_that_never_left_are_retried_then_deferred(fake: FakeTelegram, transport: Transport) -> None:
    async def go() -> tuple[SendOutcome, TelegramSender]:
        limits = TelegramLimits(transport_attempts=2)
        sender = TelegramSender.for_token(fake.token, limits, base_url=fake.base_url, transport=transport)
        async with sender:
            fake.stop()  # Telegram unreachable: connection refused
            return await sender.send(OutboundMessage("m", 1, "hello")), sender

    outcome, sender = run(go())
    assert outcome.status == "deferred" and outcome.retry_at is not None
    assert outcome.attempts == 2 and sender.stats.transport_retries == 1
    assert "could not reach Telegram" in (outcome.reason or "")


def test_the_kill_switch_stops_what_has_not_left(fake: FakeTelegram) -> None:
    fake.set_limits(FakeLimits(global_per_second=None))

    async def go() -> list[SendOutcome]:
        async with sender_for(fake, messages_per_second=10) as sender:
            outcomes: list[SendOutcome] = []
            async for outcome in sender.send_many(messages(range(100, 130))):
                outcomes.append(outcome)
                if len(outcomes) == 3:
                    sender.stop("broadcast cancelled")
            return outcomes

    outcomes = run(go())
    assert len(outcomes) == 30
    deferred = [o for o in outcomes if o.status == "deferred"]
    assert len(deferred) >= 25 and {o.reason for o in deferred} == {"broadcast cancelled"}
    assert len(fake.messages) == 30 - len(deferred)


def test_paid_broadcasts_use_the_paid_limit(fake: FakeTelegram) -> None:
    fake.set_limits(FakeLimits(global_per_second=5, paid_per_second=1000))
    outcomes = broadcast(fake, messages(range(500, 560)), messages_per_second=200, paid_broadcast=True)
    assert statuses(outcomes) == {"delivered": 60}
    assert fake.stats()["too_many_requests"] == 0
    assert {m.params.get("allow_paid_broadcast") for m in fake.messages} == {"true"}


def test_a_stream_is_read_lazily_within_the_window(fake: FakeTelegram) -> None:
    fake.set_limits(FakeLimits(global_per_second=None))
    produced = 0

    async def source() -> AsyncIterator[OutboundMessage]:
        nonlocal produced
        for chat in range(700, 740):
            produced += 1
            yield OutboundMessage(f"s{chat}", chat, "streamed")

    async def go() -> int:
        ahead = 0
        async with sender_for(fake, messages_per_second=200) as sender:
            received = 0
            async for _outcome in sender.send_many(source(), window=5):
                received += 1
                ahead = max(ahead, produced - received)
        return ahead

    assert run(go()) <= 5
    assert len(fake.messages) == 40


def test_a_refused_token_fails_at_start(fake: FakeTelegram) -> None:
    async def go() -> None:
        async with TelegramSender.for_token("42:wrong-token", base_url=fake.base_url):
            pass

    with pytest.raises(telegram.error.InvalidToken):
        run(go())


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="messages_per_second: must be greater than 0"):
        TelegramLimits(messages_per_second=0)
    with pytest.raises(ValueError, match="max_in_flight: must be at least 1"):
        TelegramLimits(max_in_flight=0)
    assert TelegramLimits(messages_per_second=1000).concurrency == 25
    assert TelegramLimits().concurrency == 4


def test_concurrent_callers_share_the_limits(fake: FakeTelegram) -> None:
    fake.set_limits(FakeLimits(global_per_second=20))

    async def go() -> list[SendOutcome]:
        async with sender_for(fake, messages_per_second=20) as sender:
            one = sender.send_many(messages(range(800, 820), "a"))
            two = sender.send_many(messages(range(900, 920), "b"))

            async def drain(stream: AsyncIterator[SendOutcome]) -> list[SendOutcome]:
                return [o async for o in stream]

            first, second = await asyncio.gather(drain(one), drain(two))
            return first + second

    outcomes = run(go())
    assert Counter(o.status for o in outcomes) == {"delivered": 40}
    assert fake.stats()["too_many_requests"] == 0
    assert most_in_window(request_times(fake), 1.0) <= 22

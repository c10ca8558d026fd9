"""The outbox dispatcher's checks and outcomes on SQLite and PostgreSQL: consent, addresses and
fallbacks, quiet hours, frequency caps, broadcasts paused or stopped, rows left ``sending`` by a
dead worker, and what each channel answer does. The channel is faked at the sender port here
(the end-to-end test uses the real Telegram and SMTP senders)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from engine_helpers import rows, service_fixtures
from sqlalchemy.engine import Engine

from rfmflow.automation.consent import consent_of, set_consent
from rfmflow.automation.outbox import dispatch_all
from rfmflow.automation.policies import quiet_until
from rfmflow.automation.senders import ChannelSenders
from rfmflow.automation.settings import (
    AutomationSettings,
    AutomationSettingsError,
    parse_caps,
    parse_quiet_hours,
)
from rfmflow.channels.outbound import SendOutcome
from rfmflow.service.db.engine import run_write
from rfmflow.service.db.tables import broadcasts, customer_profiles, outbox

_service = service_fixtures()
database = _service.database
settings = _service.settings
bare_engine = _service.bare_engine
engine = _service.engine

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class FakePort:
    """Answers each send with a chosen outcome and counts what it was asked to send."""

    def __init__(self, answers: Mapping[str, str] | None = None) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.answers = dict(answers or {})

    def fn(self, channel: str) -> Any:
        async def send(mid: str, recipient: str, message: Mapping[str, Any]) -> SendOutcome:
            self.sent.append((channel, recipient, str(message.get("text"))))
            status = self.answers.get(recipient, "delivered")
            if status == "deferred":
                return SendOutcome(mid, "deferred", reason="flood", retry_at=NOON + timedelta(minutes=5))
            if status == "bounced":
                return SendOutcome(mid, "failed", reason="550 no such user", details={"bounced": True})
            return SendOutcome(mid, status, reason=None if status == "delivered" else status)  # type: ignore[arg-type]

        return send


def _profile(engine: Engine, cid: str, **fields: Any) -> None:
    run_write(
        engine,
        lambda c: c.execute(
            sa.insert(customer_profiles).values(customer_id=cid, updated_at=NOON, source="api", **fields)
        ),
    )


def _row(engine: Engine, key: str, cid: str, channel: str = "telegram", **fields: Any) -> None:
    message = {"text": key, "cap_policy": "defer", **fields.pop("message", {})}
    values = {
        "dedupe_key": key,
        "customer_id": cid,
        "channel": channel,
        "message": message,
        "status": "pending",
        "attempts": 0,
        "not_before": NOON - timedelta(minutes=1),
        "created_at": NOON - timedelta(minutes=1),
        **fields,
    }
    run_write(engine, lambda c: c.execute(sa.insert(outbox).values(**values)))


def _dispatch(
    engine: Engine, port: FakePort, auto: AutomationSettings, now: datetime = NOON
) -> dict[str, int]:
    async def go() -> dict[str, int]:
        custom = {ch: port.fn(ch) for ch in ("telegram", "email", "webhook")}
        async with ChannelSenders(auto, custom=custom) as senders:
            stats = await dispatch_all(engine, senders, auto, now=now)
        return dict(stats.outcomes)

    return asyncio.run(go())


def _status(engine: Engine) -> dict[str, tuple[str, str | None]]:
    return {
        r.dedupe_key: (r.status, r.reason)
        for r in rows(engine, "SELECT dedupe_key, status, reason FROM outbox")
    }


def test_consent_addresses_fallback_and_outcomes(engine: Engine) -> None:
    _profile(engine, "a", telegram_chat_id=1, email="a@example.com")
    _profile(engine, "b", telegram_chat_id=2, email="b@example.com")
    _profile(engine, "c", email="c@example.com")  # no chat id: the e-mail fallback
    _profile(engine, "d")  # no address at all
    _profile(engine, "e", telegram_chat_id=5)
    _profile(engine, "f", email="gone@example.com")
    _profile(engine, "g", telegram_chat_id=7)
    run_write(engine, lambda c: set_consent(c, "b", "telegram", "opted_out", "stop", actor="t", at=NOON))
    _row(engine, "to-a", "a")
    _row(engine, "to-b", "b")
    _row(engine, "to-c", "c", message={"fallback": "email", "subject": "s"})
    _row(engine, "to-d", "d")
    _row(engine, "to-e", "e")
    _row(engine, "to-f", "f", channel="email")
    _row(engine, "to-g", "g")
    port = FakePort({"5": "blocked", "gone@example.com": "bounced", "7": "deferred"})
    outcomes = _dispatch(engine, port, AutomationSettings())
    assert outcomes == {"delivered": 2, "blocked": 1, "failed": 1, "pending": 1}
    status = _status(engine)
    assert status["to-a"] == ("delivered", None)
    assert status["to-b"] == ("skipped", "the customer opted out of telegram")
    assert status["to-c"][0] == "delivered"
    assert status["to-d"] == (
        "skipped",
        "no telegram address for the customer (no telegram_chat_id in the profile)",
    )
    assert status["to-e"][0] == "blocked" and status["to-f"][0] == "failed"
    assert status["to-g"][0] == "pending"
    assert sorted(port.sent) == sorted(
        [("telegram", "1", "to-a"), ("email", "c@example.com", "to-c"), ("telegram", "5", "to-e"),
         ("email", "gone@example.com", "to-f"), ("telegram", "7", "to-g")]
    )  # fmt: skip
    with engine.connect() as conn:
        (blocked,) = consent_of(conn, "e", ["telegram"])
        (bounced,) = consent_of(conn, "f", ["email"])
    assert (blocked.status, blocked.reason) == ("opted_out", "blocked")
    assert (bounced.status, bounced.reason) == ("opted_out", "bounced")
    (g,) = rows(engine, "SELECT not_before, attempts FROM outbox WHERE dedupe_key = 'to-g'")
    assert g.attempts == 1
    # a second pass sends nothing again; the deferred row waits for its retry time
    assert _dispatch(engine, port, AutomationSettings()) == {}
    assert _dispatch(engine, port, AutomationSettings(), NOON + timedelta(minutes=6)) == {"pending": 1}
    assert len(port.sent) == 6


def test_a_dead_workers_sending_rows_become_unknown_and_are_never_resent(engine: Engine) -> None:
    _profile(engine, "a", telegram_chat_id=1)
    _row(engine, "left", "a", status="sending", locked_by="dead:1", locked_until=NOON - timedelta(seconds=1))
    _row(engine, "held", "a", status="sending", locked_by="alive:2", locked_until=NOON + timedelta(minutes=4))
    port = FakePort()
    assert _dispatch(engine, port, AutomationSettings()) == {}
    status = _status(engine)
    assert status["left"][0] == "unknown" and "may have been sent" in (status["left"][1] or "")
    assert status["held"][0] == "sending"
    assert port.sent == []


def test_quiet_hours_caps_and_broadcasts(engine: Engine) -> None:
    _profile(engine, "tokyo", telegram_chat_id=1, timezone="Asia/Tokyo")  # 21:00 there at NOON UTC
    _profile(engine, "london", telegram_chat_id=2, timezone="Europe/London")  # 13:00
    _profile(engine, "capped", telegram_chat_id=3)
    _profile(engine, "skipper", telegram_chat_id=4)
    _row(engine, "quiet", "tokyo")
    _row(engine, "awake", "london")
    for n in range(3):
        _row(engine, f"cap-{n}", "capped")
    _row(engine, "skip-0", "skipper", message={"cap_policy": "skip"})
    _row(engine, "skip-1", "skipper", message={"cap_policy": "skip"})
    bids = {}
    for status in ("paused", "stopped", "running"):
        bids[status] = run_write(
            engine,
            lambda c, s=status: c.execute(
                sa.insert(broadcasts)
                .values(
                    name=s, channel="telegram", message={}, audience={}, status=s, cap_policy="skip",
                    created_at=NOON, created_by="t",
                )
                .returning(broadcasts.c.id)
            ).scalar_one(),
        )  # fmt: skip
        _row(engine, f"b-{status}", "london", broadcast_id=bids[status])
    auto = AutomationSettings(quiet_hours=parse_quiet_hours("21:00-09:00"), caps=parse_caps("telegram:2/30d"))
    port = FakePort()
    outcomes = _dispatch(engine, port, auto)
    status = _status(engine)
    assert status["quiet"] == ("pending", "quiet hours (21:00-09:00) in the customer's zone")
    with engine.connect() as conn:
        quiet = conn.execute(
            sa.select(outbox.c.not_before).where(outbox.c.dedupe_key == "quiet")
        ).scalar_one()
    assert quiet == datetime(2026, 6, 2, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo
    assert status["awake"][0] == "delivered"
    assert [status[f"cap-{n}"][0] for n in range(3)] == ["delivered", "delivered", "pending"]
    assert status["cap-2"][1] == "frequency cap reached: deferred"
    assert status["skip-0"][0] == "delivered" and status["skip-1"][0] == "delivered"  # 2 allowed
    assert status["b-paused"][0] == "pending" and status["b-stopped"] == (
        "cancelled",
        "the broadcast was stopped",
    )
    assert status["b-running"][0] == "delivered"
    assert outcomes == {"delivered": 6}
    # the cap holds on the next pass too, and a skip-policy row over the cap is skipped
    _row(engine, "skip-2", "skipper", message={"cap_policy": "skip"})
    assert _dispatch(engine, port, auto, NOON + timedelta(hours=1)) == {}
    assert _status(engine)["skip-2"] == ("skipped", "frequency cap reached")
    # London's customer got 2 (awake and the running broadcast): capped; the paused one waits
    assert len(port.sent) == 6


def test_settings_are_checked() -> None:
    assert str(parse_quiet_hours("21:00-09:00")) == "21:00-09:00"
    assert parse_quiet_hours("off") is None
    (cap,) = parse_caps("At Risk/telegram:1/7d")
    assert (cap.segment, cap.channel, cap.limit, cap.window) == ("At Risk", "telegram", 1, timedelta(days=7))
    for bad, needle in [("25:00-09:00", "not a time"), ("9-10", "HH:MM-HH:MM")]:
        try:
            parse_quiet_hours(bad)
        except AutomationSettingsError as err:
            assert "RFMFLOW_QUIET_HOURS" in str(err) and needle in str(err)
        else:
            raise AssertionError(bad)
    try:
        parse_caps("sms:1/1d")
    except AutomationSettingsError as err:
        assert "RFMFLOW_FREQUENCY_CAPS" in str(err) and "unknown channel 'sms'" in str(err)
    else:
        raise AssertionError("sms")
    quiet = parse_quiet_hours("21:00-09:00")
    assert quiet_until(quiet, NOON, "Europe/London", "UTC") is None
    assert quiet_until(quiet, NOON, None, "Asia/Tokyo") == datetime(2026, 6, 2, 0, 0, tzinfo=UTC)

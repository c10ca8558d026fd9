"""Consent per customer and channel, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from rfmflow.automation.consent import ConsentError, consent_of, history, opted_out, set_consent

T = datetime(2026, 5, 1, 12, tzinfo=UTC)


def test_opt_out_and_back_in_with_history(engine: Engine) -> None:
    with engine.begin() as conn:
        assert [c.status for c in consent_of(conn, "c1")] == ["default", "default", "default"]
        assert set_consent(conn, "c1", "telegram", "opted_out", "stop", actor="bot", at=T)
        assert not set_consent(conn, "c1", "telegram", "opted_out", "blocked", actor="bot", at=T)  # no change
        assert set_consent(conn, "c2", "email", "opted_out", "bounced", actor="smtp", at=T)
    with engine.begin() as conn:
        telegram, email, _ = consent_of(conn, "c1")
        assert (telegram.status, telegram.reason, telegram.may_send, email.may_send) == (
            "opted_out",
            "stop",
            False,
            True,
        )
        assert opted_out(conn, ["c1", "c2", "c3"], "telegram") == {"c1"}
        assert (
            opted_out(conn, ["c1", "c2", "c3"], "email") == {"c2"} and opted_out(conn, [], "email") == set()
        )
        assert set_consent(
            conn, "c1", "telegram", "opted_in", "requested", actor="bot", at=T + timedelta(days=1)
        )
    with engine.connect() as conn:
        assert consent_of(conn, "c1", ["telegram"])[0].may_send
        assert [(h["status"], h["reason"]) for h in history(conn, "c1")] == [
            ("opted_in", "requested"),
            ("opted_out", "stop"),
        ]


@pytest.mark.parametrize(
    ("channel", "status", "reason", "message"),
    [
        ("sms", "opted_out", "stop", "channel: expected one of telegram, email, webhook"),
        ("email", "maybe", "manual", "status: expected one of opted_in, opted_out"),
        ("email", "opted_out", "whim", "reason: expected one of"),
        ("email", "opted_in", "bounced", "'bounced' does not go with opted_in"),
    ],
)
def test_impossible_changes_are_refused(
    engine: Engine, channel: str, status: str, reason: str, message: str
) -> None:
    with engine.begin() as conn, pytest.raises(ConsentError, match=message):
        set_consent(conn, "c1", channel, status, reason, actor="x", at=T)

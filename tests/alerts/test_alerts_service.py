"""Alert rules over the API and their delivery, on SQLite and PostgreSQL: validation naming the
field, each kind firing on the right data (and not on other data), each occurrence delivered once
(a webhook to a loopback receiver, Telegram through python-telegram-bot to the fake Bot API, e-mail
to aiosmtpd), a send cut off mid-way left ``unknown`` and never repeated, a refused send retried,
and the loop running in ``serve``."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alerts_helpers import SECRET, Receiver, add_broadcast, add_run, alert_settings, rows, run_tick
from service_helpers import Server, ThreadedServer, post_events

from rfmflow.alerts.delivery import alert_senders, deliver_pending
from rfmflow.alerts.loop import evaluate
from rfmflow.alerts.store import claim
from rfmflow.cli.app import build_app
from rfmflow.service.db.engine import run_write


def _rule(server: Server, **body: Any) -> dict[str, Any]:
    with server.client("admin") as admin:
        answer = admin.post("/v1/alerts/rules", json=body)
    assert answer.status_code == 201, answer.text
    rule: dict[str, Any] = answer.json()["rule"]
    return rule


def test_rules_api_checks_fields_and_roles(server: Server) -> None:
    good = {
        "name": "at-risk growth",
        "kind": "segment_growth",
        "params": {"segment": "At Risk", "pct": 20, "days": 7},
        "channel": "webhook",
        "target": "https://ops.example/hook",
    }
    with server.client("admin") as admin, server.client("analyst") as analyst:
        for change, loc in (
            ({"params": {"segment": "At Risk", "pct": "a lot", "days": 7}}, ["body", "params", "pct"]),
            ({"params": {"segment": "At Risk", "pct": 20}}, ["body", "params", "days"]),
            ({"kind": "weather"}, ["body", "kind"]),
            ({"channel": "telegram", "target": "not a chat"}, ["body", "target"]),
            ({"name": ""}, ["body", "name"]),
        ):
            answer = admin.post("/v1/alerts/rules", json={**good, **change})
            assert answer.status_code == 422, answer.text
            assert answer.json()["detail"][0]["loc"] == loc
        assert analyst.post("/v1/alerts/rules", json=good).status_code == 403
        created = admin.post("/v1/alerts/rules", json=good)
        assert created.status_code == 201
        rule = created.json()["rule"]
        assert rule["description"] == "At Risk grew more than 20% in 7 days" and rule["enabled"] is True
        again = admin.post("/v1/alerts/rules", json=good)
        assert again.status_code == 409 and again.json()["detail"][0]["loc"] == ["body", "name"]
        assert [r["name"] for r in analyst.get("/v1/alerts/rules").json()["rules"]] == ["at-risk growth"]
        off = admin.patch(f"/v1/alerts/rules/{rule['id']}", json={"enabled": False})
        assert off.status_code == 200 and off.json()["rule"]["enabled"] is False
        bad = admin.patch(
            f"/v1/alerts/rules/{rule['id']}", json={"params": {"segment": "X", "pct": -1, "days": 7}}
        )
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "params", "pct"]
        assert admin.patch(f"/v1/alerts/rules/{rule['id']}", json={"colour": 1}).status_code == 422
        assert admin.delete(f"/v1/alerts/rules/{rule['id']}").status_code == 204
        assert admin.get(f"/v1/alerts/rules/{rule['id']}").status_code == 404
        assert admin.get("/v1/alerts/events?status=lost").status_code == 422


def test_each_kind_fires_on_its_data_and_is_delivered_once(
    server: Server, receiver: Receiver, fake: Any, inbox: tuple[Any, int]
) -> None:
    handler, smtp_port = inbox
    now = datetime.now(UTC)
    _rule(
        server,
        name="growth",
        kind="segment_growth",
        params={"segment": "At Risk", "pct": 20, "days": 7},
        channel="webhook",
        target=receiver.url,
    )
    _rule(
        server,
        name="loyal boom",
        kind="segment_growth",
        params={"segment": "Loyal", "pct": 200, "days": 7},
        channel="webhook",
        target=receiver.url,
    )
    _rule(
        server,
        name="champions slower",
        kind="segment_metric_drop",
        params={"segment": "Champions", "metric": "mean_frequency", "pct": 10, "days": 7},
        channel="telegram",
        target="4242",
    )
    _rule(
        server,
        name="quiet",
        kind="no_events",
        params={"hours": 1},
        channel="email",
        target="ops@shop.example",
    )
    _rule(
        server,
        name="weak broadcast",
        kind="broadcast_conversion_below",
        params={"min_rate": 0.1, "min_sent": 10},
        channel="webhook",
        target=receiver.url,
    )
    # a week ago and now: At Risk +30% (fires), Loyal +150% (under its 200%), Champions' frequency -25%
    add_run(server.engine, server.settings, 8, {"At Risk": 100, "Loyal": 80, "Champions": 50})
    add_run(
        server.engine,
        server.settings,
        0,
        {"At Risk": 130, "Loyal": 200, "Champions": 50},
        frequency={"Champions": 1.5},
    )
    sent = now - timedelta(days=2)
    add_broadcast(server.engine, sent, [f"b{i:02d}" for i in range(20)])
    post_events(
        server,
        [
            {
                "event_id": "buy-1",
                "customer_id": "b00",
                "type": "purchase",
                "amount": "20.00",
                "occurred_at": (sent + timedelta(hours=3)).isoformat(),
                "order_id": "o1",
            }
        ],
    )
    alerts = alert_settings(fake.url, smtp_port)
    later = now + timedelta(hours=2)  # an hour and more after the last event

    first = run_tick(server.engine, server.settings, alerts, now=later)
    assert sorted(f["rule"] for f in first["fired"]) == [
        "champions slower",
        "growth",
        "quiet",
        "weak broadcast",
    ]
    assert first["delivery"]["outcomes"] == {"sent": 4}
    second = run_tick(server.engine, server.settings, alerts, now=later + timedelta(minutes=1))
    assert second["new"] == 0 and second["delivery"]["claimed"] == 0

    hooks = [r["body"] for r in receiver.received]
    assert len(hooks) == 2 and all(r["signed"] for r in receiver.received)
    assert {h["rule"] for h in hooks} == {"growth", "weak broadcast"}
    growth = next(h for h in hooks if h["rule"] == "growth")
    assert growth["details"]["before"] == 100 and growth["details"]["now"] == 130
    weak = next(h for h in hooks if h["rule"] == "weak broadcast")
    assert weak["details"]["delivered"] == 20 and weak["details"]["converted"] == 1
    telegram = fake.messages_to(4242)
    assert len(telegram) == 1 and "Champions" in telegram[0].text and "mean_frequency" in telegram[0].text
    assert len(handler.messages) == 1
    envelope, mail = handler.messages[0]
    assert envelope.rcpt_tos == ["ops@shop.example"] and "No events" in mail["Subject"]

    with server.client("analyst") as analyst:
        history = analyst.get("/v1/alerts/events").json()
    assert history["counts"] == {"sent": 4}
    assert {e["rule"] for e in history["events"]} == {"growth", "champions slower", "quiet", "weak broadcast"}
    assert all(e["status"] == "sent" and e["attempts"] == 1 and e["delivered_at"] for e in history["events"])


def test_a_send_cut_off_becomes_unknown_and_is_not_resent(server: Server, receiver: Receiver) -> None:
    _rule(
        server,
        name="growth",
        kind="segment_growth",
        params={"segment": "At Risk", "pct": 20, "days": 7},
        channel="webhook",
        target=receiver.url,
    )
    add_run(server.engine, server.settings, 8, {"At Risk": 100})
    add_run(server.engine, server.settings, 0, {"At Risk": 150})
    now = datetime.now(UTC)
    assert [f["new"] for f in evaluate(server.engine, now)] == [True]
    # a process claims it (sending, committed) and dies before sending
    claimed = run_write(server.engine, lambda c: claim(c, now, {"webhook"}))
    assert len(claimed) == 1
    alerts = alert_settings()

    async def deliver(at: datetime) -> dict[str, Any]:
        async with alert_senders(alerts) as senders:
            return await deliver_pending(server.engine, senders, alerts, now=at)

    within = asyncio.run(deliver(now + timedelta(minutes=1)))
    assert within["claimed"] == 0 and within["unknown_recovered"] == 0
    after = asyncio.run(deliver(now + alerts.automation.send_lease + timedelta(minutes=1)))
    assert after["unknown_recovered"] == 1 and after["claimed"] == 0
    run_tick(server.engine, server.settings, alerts, now=now + timedelta(hours=1))
    assert receiver.received == []
    [(status, attempts, error)] = rows(server.engine, "SELECT status, attempts, error FROM alert_events")
    assert status == "unknown" and attempts == 1 and "not sent again" in error


def test_a_refused_send_is_retried_after_a_backoff(server: Server, receiver: Receiver) -> None:
    _rule(server, name="quiet", kind="no_events", params={"hours": 1}, channel="webhook", target=receiver.url)
    post_events(
        server,
        [
            {
                "event_id": "e1",
                "customer_id": "c1",
                "type": "purchase",
                "amount": "5.00",
                "occurred_at": datetime.now(UTC).isoformat(),
            }
        ],
    )
    alerts = alert_settings()
    at = datetime.now(UTC) + timedelta(hours=2)
    receiver.status = 503
    first = run_tick(server.engine, server.settings, alerts, now=at)
    assert first["delivery"]["outcomes"] == {"pending": 1}
    [(status, attempts)] = rows(server.engine, "SELECT status, attempts FROM alert_events")
    assert (status, attempts) == ("pending", 1)
    tries = len(receiver.received)
    run_tick(server.engine, server.settings, alerts, now=at + timedelta(seconds=20))  # backoff not over
    assert len(receiver.received) == tries
    receiver.status = 200
    run_tick(server.engine, server.settings, alerts, now=at + timedelta(minutes=2))
    [(status, attempts)] = rows(server.engine, "SELECT status, attempts FROM alert_events")
    assert (status, attempts) == ("sent", 2) and len(receiver.delivered) == 1


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
@pytest.mark.parametrize("marked", [True, False], ids=["serve", "bare-app"])
def test_serve_runs_the_loop_after_a_scoring_run(
    monkeypatch: pytest.MonkeyPatch, server: Server, receiver: Receiver, marked: bool
) -> None:
    """The app ``rfmflow serve`` marks runs the loop (a new run wakes it); an app built alone
    (tests, embedding) runs no background work."""
    monkeypatch.setenv("RFMFLOW_ALERTS_INTERVAL", "1h")  # only a new run wakes it within the test
    monkeypatch.setenv("RFMFLOW_ALERTS_WEBHOOK_SECRET", SECRET)
    app = build_app(server.settings, engine=server.engine)
    assert app.state.alerts.interval == 3600
    app.state.run_automation = marked  # as `rfmflow serve` marks its app; the loop polls for runs every 10 s
    _rule(
        server,
        name="growth",
        kind="segment_growth",
        params={"segment": "At Risk", "pct": 20, "days": 7},
        channel="webhook",
        target=receiver.url,
    )
    add_run(server.engine, server.settings, 8, {"At Risk": 100})
    running = ThreadedServer(app)
    running.start()
    try:
        add_run(server.engine, server.settings, 0, {"At Risk": 150})
        deadline = time.monotonic() + (30 if marked else 12)  # 12 s: longer than the poll for new runs
        while not receiver.delivered and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        running.stop()
    if marked:
        assert len(receiver.delivered) == 1 and receiver.delivered[0]["body"]["rule"] == "growth"
    else:
        assert receiver.delivered == [] and rows(server.engine, "SELECT id FROM alert_events") == []

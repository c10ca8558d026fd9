"""The automation engine over the database: workflows stored and versioned through the API,
enrolment from a scoring run's segment moves, the runner writing outbox rows, tags, tasks and
steps in one transaction, and the dispatcher sending through python-telegram-bot to the fake Bot
API and over SMTP to aiosmtpd — on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from engine_helpers import (
    Inbox,
    automation_settings,
    decide_now,
    dispatch,
    rows,
    service_fixtures,
    set_profile,
    shop,
    smtp_inbox,
)
from service_helpers import Server, post_events

from rfmflow.fake_telegram import FakeTelegram

_service = service_fixtures()
database = _service.database
settings = _service.settings
bare_engine = _service.bare_engine
engine = _service.engine
server = _service.server

WIN_BACK = """\
name: win-back
description: At Risk customers get an offer on Telegram and by e-mail.
trigger: {entered_segment: At Risk}
vars: {coupon: COMEBACK30}
goal: {event: purchase, within: 7d}
steps:
  - id: mark
    add_tag: churn-risk
  - id: offer
    send: {channel: telegram, text: "Hi {{ first_name }}, 30% off today: {{ coupon }}"}
  - id: mail
    send: {channel: email, subject: "We miss you, {{ first_name }}", text: "Use {{ coupon }} for 30% off."}
  - id: listen
    wait: {event: reply, timeout: 1d}
    on_event: unmark
    on_timeout: done
  - id: unmark
    remove_tag: churn-risk
  - id: handoff
    handoff: {queue: support, note: "{{ name }} replied to the win-back offer", priority: from_segment}
    next: done
  - id: done
    exit: {}
"""


def _now() -> str:
    return datetime.now(UTC).isoformat()


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as running:
        yield running


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    with smtp_inbox() as running:
        yield running


def test_workflows_are_stored_versioned_and_audited(server: Server) -> None:
    with server.client("admin") as admin, server.client("analyst") as analyst:
        created = admin.post("/v1/workflows", json={"yaml": WIN_BACK})
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["result"] == "created"
        assert body["workflow"]["version"] == 1 and body["workflow"]["status"] == "draft"
        assert body["workflow"]["channels"] == ["email", "telegram"]

        again = admin.put("/v1/workflows/win-back", json={"yaml": WIN_BACK})
        assert again.status_code == 200 and again.json()["result"] == "unchanged"
        changed = admin.put(
            "/v1/workflows/win-back", json={"yaml": WIN_BACK.replace("COMEBACK30", "COMEBACK40")}
        )
        assert changed.json()["result"] == "updated" and changed.json()["workflow"]["version"] == 2

        bad = admin.post("/v1/workflows", json={"yaml": WIN_BACK.replace("channel: email", "channel: sms")})
        assert bad.status_code == 422
        (detail,) = bad.json()["detail"]
        assert "steps[2] (mail).send.channel: unknown channel 'sms'" in detail["msg"]
        mismatch = admin.put("/v1/workflows/other", json={"yaml": WIN_BACK})
        assert mismatch.status_code == 422 and "the URL names 'other'" in mismatch.json()["detail"][0]["msg"]
        as_json = admin.post(
            "/v1/workflows", json={"name": "j", "trigger": {"tag_added": "vip"}, "steps": [{"exit": {}}]}
        )
        assert as_json.status_code == 201, as_json.text

        assert analyst.post("/v1/workflows", json={"yaml": WIN_BACK}).status_code == 403
        listed = analyst.get("/v1/workflows").json()["workflows"]
        assert [w["name"] for w in listed] == ["j", "win-back"]
        assert analyst.get("/v1/workflows/nope").status_code == 404

        assert admin.post("/v1/workflows/win-back/pause").status_code == 409  # a draft is not running
        assert admin.post("/v1/workflows/win-back/activate").json()["status"] == "active"
        assert admin.post("/v1/workflows/win-back/pause").json()["status"] == "paused"
        stopped = admin.post("/v1/workflows/win-back/stop").json()
        assert stopped["status"] == "stopped" and stopped["journeys_stopped"] == 0
        assert admin.post("/v1/workflows/nope/activate").status_code == 404

        template = admin.post("/v1/workflows/from-template/at-risk-win-back")
        assert template.status_code == 201 and template.json()["workflow"]["name"] == "at-risk-win-back"
        assert admin.post("/v1/workflows/from-template/nope").status_code == 404
        names = [t["name"] for t in analyst.get("/v1/workflows/templates").json()["templates"]]
        assert "we-miss-you" in names

    audit = rows(
        server.engine, "SELECT actor, action FROM audit_log WHERE action LIKE 'workflow.%' ORDER BY id"
    )
    actions = [a for _, a in audit]
    assert actions[:3] == ["workflow.create", "workflow.update", "workflow.create"]
    assert {"workflow.activate", "workflow.pause", "workflow.stop"} <= set(actions)
    assert all(actor.startswith("key:") for actor, _ in audit)
    versions = rows(server.engine, "SELECT version FROM workflow_versions ORDER BY workflow_id, version")
    assert [v for (v,) in versions][:2] == [1, 2]


def test_at_risk_end_to_end(server: Server, fake: FakeTelegram, inbox: tuple[Inbox, int]) -> None:
    handler, port = inbox
    with server.client("admin") as admin:
        assert admin.post("/v1/workflows", json={"yaml": WIN_BACK}).status_code == 201
        assert admin.post("/v1/workflows/win-back/activate").status_code == 200
    post_events(server, shop())
    with server.client("analyst") as analyst:
        assert analyst.post("/v1/runs").status_code == 201
        at_risk = analyst.get("/v1/segments/At Risk/customers", params={"limit": 500}).json()["items"]
    members = sorted(c["customer_id"] for c in at_risk)
    assert members, "the data must put someone in At Risk"
    for n, cid in enumerate(members):
        set_profile(server, cid, name=f"Ada {cid}", email=f"{cid}@example.com", telegram_chat_id=1000 + n)
    auto = automation_settings(fake.base_url, fake.token, port)

    first = decide_now(server.engine, server.settings, auto)
    assert first["transitions"] == len(members)
    assert first["runner"]["messages"] == 2 * len(members)
    enrolled = rows(server.engine, "SELECT customer_id, segment, status, step, waiting_for FROM enrolments")
    assert {r.customer_id for r in enrolled} == set(members)
    assert all(r.segment == "At Risk" and r.step == "listen" and r.waiting_for == "reply" for r in enrolled)
    tagged = rows(server.engine, "SELECT customer_id FROM customer_tags WHERE tag = 'churn-risk'")
    assert {r.customer_id for r in tagged} == set(members)
    # reading the feeds again enrols no one twice and writes no message twice
    again = decide_now(server.engine, server.settings, auto)
    assert again["transitions"] == 0 and again["runner"]["journeys"] == 0

    stats = dispatch(server.engine, auto)
    assert stats.outcomes == {"delivered": 2 * len(members)}
    sent = fake.messages
    assert len(sent) == len(members)
    assert (
        sent[0].text is not None and "30% off today: COMEBACK30" in sent[0].text and "Hi Ada" in sent[0].text
    )
    assert len(handler.messages) == len(members)
    assert handler.messages[0][1]["Subject"] == "We miss you, Ada"
    assert dispatch(server.engine, auto).claimed == 0  # nothing sent twice
    statuses = rows(server.engine, "SELECT status, count(*) AS n FROM outbox GROUP BY status")
    assert {(r.status, r.n) for r in statuses} == {("delivered", 2 * len(members))}

    replier = members[0]
    post_events(
        server,
        [{"event_id": "reply-1", "customer_id": replier, "type": "reply", "occurred_at": _now()}],
    )
    after = decide_now(server.engine, server.settings, auto)
    assert after["events"]["moved"] == 1 and after["runner"]["tasks"] == 1
    (task,) = rows(server.engine, "SELECT customer_id, queue, priority, note, segment FROM tasks")
    assert task.customer_id == replier and task.queue == "support" and task.priority == "high"
    assert task.note == f"Ada {replier} replied to the win-back offer"
    tagged = rows(server.engine, "SELECT customer_id FROM customer_tags WHERE tag = 'churn-risk'")
    assert replier not in {r.customer_id for r in tagged} and len(tagged) == len(members) - 1
    changes = rows(
        server.engine,
        "SELECT change, actor FROM tag_changes WHERE customer_id = :c AND tag = 'churn-risk' ORDER BY id",
        c=replier,
    )
    assert [(c.change, c.actor) for c in changes] == [("added", "automation"), ("removed", "automation")]
    (journey,) = rows(server.engine, "SELECT status FROM enrolments WHERE customer_id = :c", c=replier)
    assert journey.status == "exited"
    replied = rows(server.engine, "SELECT channel FROM outbox WHERE replied_at IS NOT NULL")
    assert len(replied) == 1
    steps = rows(
        server.engine,
        "SELECT step, kind, outcome FROM journey_steps"
        " WHERE enrolment_id = (SELECT id FROM enrolments WHERE customer_id = :c) ORDER BY id",
        c=replier,
    )
    assert [(s.step, s.kind, s.outcome) for s in steps] == [
        ("mark", "add_tag", ""),
        ("offer", "send", ""),
        ("mail", "send", ""),
        ("listen", "wait", "event"),
        ("unmark", "remove_tag", ""),
        ("handoff", "handoff", ""),
        ("done", "exit", ""),
    ]

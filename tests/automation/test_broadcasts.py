"""Broadcasts through real HTTP on SQLite and PostgreSQL: the audience preview equals the
customer list's count, confirmation above a size, idempotent start, pause/resume, the kill switch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from broadcast_helpers import OPTED_OUT_EMAIL, TELEGRAM, seed_shop, service_fixtures
from service_helpers import Database, Server
from sqlalchemy.engine import Engine

from rfmflow.automation.broadcasts import start
from rfmflow.service.db.tables import audit_log, broadcasts, outbox
from rfmflow.service.settings import Settings

_service = service_fixtures()
database = _service.database
bare_engine = _service.bare_engine
engine = _service.engine
server = _service.server


@pytest.fixture
def settings(database: Database, tmp_path: Path) -> Settings:
    """Confirmation above 10 customers, with a 10% tolerance."""
    return database.settings(tmp_path, broadcast_confirm_above=10, broadcast_confirm_tolerance=0.1)


FILTERS: list[dict[str, Any]] = [
    {},
    {"segment": ["Champions", "Hibernating"]},
    {"tag": ["vip"]},
    {"tag_any": ["vip", "newsletter"], "tag_none": ["churn-risk"]},
    {"r_score_min": 3, "f_score_max": 2},
    {"monetary_min": "20.00", "recency_max": 100},
    {"q": "anna"},
]
EMAIL_MESSAGE = {
    "subject": "Hello {{ first_name }}",
    "text": "Dear {{ name }}, use {{ coupon }} ({{ segment }})",
}


def _rows(engine: Engine, broadcast_id: int) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(sa.select(outbox).where(outbox.c.broadcast_id == broadcast_id).order_by(outbox.c.id))
        )


def _create(admin: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {
        "name": "spring sale",
        "channel": "email",
        "message": EMAIL_MESSAGE,
        "vars": {"coupon": "SPRING10"},
        "audience": {"tag": ["newsletter"]},
        **fields,
    }
    answer = admin.post("/v1/broadcasts", json=body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def test_preview_counts_equal_the_customer_list_for_the_same_filters(server: Server) -> None:
    seed_shop(server)
    with server.client("admin") as admin:
        for params in FILTERS:
            listed = admin.get("/v1/customers", params={**params, "limit": 1000})
            assert listed.status_code == 200, listed.text
            items = listed.json()["items"]
            assert listed.json()["total"] == len(items)
            ids = {item["customer_id"] for item in items}
            emails = {item["customer_id"] for item in items if item["email"]}
            for channel in ("email", "telegram"):
                by_query = admin.get("/v1/broadcasts/preview", params={**params, "channel": channel})
                by_body = admin.post("/v1/broadcasts/preview", json={"channel": channel, "audience": params})
                assert by_query.status_code == 200, by_query.text
                assert by_body.status_code == 200, by_body.text
                assert by_query.json() == by_body.json()
                shown = by_query.json()
                if channel == "email":
                    opted = ids & set(OPTED_OUT_EMAIL)
                    reachable = (emails & ids) - opted
                else:
                    opted = ids & {"c08"}
                    reachable = (ids & set(TELEGRAM)) - opted
                assert shown["audience"] == len(ids), params
                assert shown["opted_out"] == len(opted), (params, channel)
                assert shown["reachable"] == len(reachable), (params, channel)
                assert shown["no_address"] == len(ids) - len(opted) - len(reachable)
                assert shown["needs_confirmation"] is (len(ids) > 10)


def test_bad_broadcasts_are_refused_naming_the_field(server: Server) -> None:
    seed_shop(server)
    cases: list[tuple[dict[str, Any], list[Any]]] = [
        ({"message": {"subject": "Hi", "text": "Hi {{ frist_name }}"}}, ["body", "message", "text"]),
        ({"message": {"text": "no subject"}}, ["body", "message", "subject"]),
        ({"channel": "sms"}, ["body", "channel"]),
        ({"audience": {"segment": ["Nope"]}}, ["body", "audience", "segment"]),
        ({"audience": {"r_score_min": 4, "r_score_max": 2}}, ["body", "audience", "r_score_min"]),
        ({"audience": {"colour": "red"}}, ["body", "audience", "colour"]),
        ({"vars": {"segment": "x"}}, ["body", "vars", "segment"]),
        ({"cap_policy": "sometimes"}, ["body", "cap_policy"]),
        ({"scheduled_at": "2026-12-01T09:00:00"}, ["body", "scheduled_at"]),
    ]
    base = {"name": "n", "channel": "email", "message": EMAIL_MESSAGE, "vars": {"coupon": "X"}}
    with server.client("admin") as admin:
        for change, loc in cases:
            answer = admin.post("/v1/broadcasts", json={**base, **change})
            assert answer.status_code == 422, (change, answer.text)
            assert answer.json()["detail"][0]["loc"] == loc, (change, answer.json())
        bad_preview = admin.get("/v1/broadcasts/preview", params={"channel": "email", "segment": "Nope"})
        assert bad_preview.status_code == 422 and bad_preview.json()["detail"][0]["loc"] == [
            "query",
            "segment",
        ]
        assert admin.post("/v1/broadcasts/99/start").status_code == 404
    with server.client("analyst") as analyst:
        assert analyst.post("/v1/broadcasts", json=base).status_code == 403
        assert analyst.get("/v1/broadcasts/preview", params={"channel": "email"}).status_code == 403
    with server.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(broadcasts)).scalar_one() == 0


def test_a_large_audience_needs_its_count_confirmed(server: Server) -> None:
    seed_shop(server)
    with server.client("admin") as admin:
        created = _create(admin, audience={})
        shown = admin.get(f"/v1/broadcasts/{created['id']}/preview").json()
        count = shown["audience"]
        assert count > 10 and shown["needs_confirmation"] is True

        missing = admin.post(f"/v1/broadcasts/{created['id']}/start")
        assert missing.status_code == 409, missing.text
        assert missing.json()["audience"] == count and "confirm_count" in missing.json()["detail"]
        moved = admin.post(f"/v1/broadcasts/{created['id']}/start", json={"confirm_count": count * 2})
        assert moved.status_code == 409 and moved.json()["audience"] == count
        assert _rows(server.engine, created["id"]) == []
        assert admin.get(f"/v1/broadcasts/{created['id']}").json()["status"] == "draft"

        within = admin.post(f"/v1/broadcasts/{created['id']}/start", json={"confirm_count": count + 1})
        assert within.status_code == 200, within.text
        assert within.json()["broadcast"]["audience_count"] == count
        assert sum(within.json()["outbox"].values()) == count

        small = _create(admin, audience={"tag": ["vip"]})  # 8 customers: no confirmation
        started = admin.post(f"/v1/broadcasts/{small['id']}/start")
        assert started.status_code == 200, started.text
        assert sum(started.json()["outbox"].values()) == 8


def test_start_writes_one_row_per_customer_once_even_when_retried(server: Server) -> None:
    seed_shop(server)
    with server.client("admin") as admin:
        created = _create(admin)  # newsletter: c00, c03, ..., c39 (14 customers)
        shown = admin.get(f"/v1/broadcasts/{created['id']}/preview").json()
        bid = created["id"]
    now = datetime.now(UTC)
    # batches of 3 straight from the module, then the start again over HTTP and after an
    # interrupted start (rows lost, started_at unset): every customer exactly once
    start(
        server.engine, server.settings, bid, confirm_count=shown["audience"], actor="test", now=now, batch=3
    )
    rows = _rows(server.engine, bid)
    assert len(rows) == shown["audience"] == 14
    with server.client("admin") as admin:
        again = admin.post(f"/v1/broadcasts/{bid}/start", json={"confirm_count": 14})
        assert again.status_code == 200, again.text
    assert [r.id for r in _rows(server.engine, bid)] == [r.id for r in rows]
    with server.engine.begin() as conn:
        conn.execute(sa.delete(outbox).where(outbox.c.id.in_([rows[0].id, rows[5].id])))
        conn.execute(sa.update(broadcasts).where(broadcasts.c.id == bid).values(started_at=None))
    start(server.engine, server.settings, bid, confirm_count=None, actor="test", now=now, batch=4)
    rows = _rows(server.engine, bid)
    assert len(rows) == 14 and len({r.customer_id for r in rows}) == 14
    assert {r.dedupe_key for r in rows} == {f"bc:{bid}:{r.customer_id}" for r in rows}

    by_id = {r.customer_id: r for r in rows}
    pending = {cid for cid, r in by_id.items() if r.status == "pending"}
    assert pending == {cid for cid in by_id if int(cid[1:]) % 2 == 0 and cid not in OPTED_OUT_EMAIL}
    assert by_id["c00"].status == "skipped" and by_id["c00"].reason == "opted out of email"
    assert by_id["c03"].status == "skipped" and by_id["c03"].reason == "no email address"
    six = by_id["c06"]
    assert six.recipient == "anna.6@Example.com"
    assert six.message["subject"] == "Hello anna"  # the profile's name is "anna Schmidt"
    assert six.message["text"] == f"Dear anna Schmidt, use SPRING10 ({six.segment})"
    assert six.message["cap_policy"] == "skip" and six.channel == "email"
    with server.client("admin") as admin:
        shown_after = admin.get(f"/v1/broadcasts/{bid}").json()
        assert shown_after["status"] == "running"
        assert shown_after["outbox"] == {"pending": len(pending), "skipped": 14 - len(pending)}


def test_stop_cancels_every_pending_row_at_once(server: Server) -> None:
    seed_shop(server)
    with server.client("admin") as admin:
        bid = _create(admin, audience={"tag": ["vip"]}, cap_policy="defer")["id"]
        assert admin.post(f"/v1/broadcasts/{bid}/pause").status_code == 409  # a draft is not running
        assert admin.post(f"/v1/broadcasts/{bid}/start").status_code == 200
        paused = admin.post(f"/v1/broadcasts/{bid}/pause")
        assert paused.status_code == 200 and paused.json()["status"] == "paused"
        resumed = admin.post(f"/v1/broadcasts/{bid}/resume")
        assert resumed.status_code == 200 and resumed.json()["status"] == "running"

        rows = [r for r in _rows(server.engine, bid) if r.status == "pending"]
        assert len(rows) >= 3
        with server.engine.begin() as conn:  # the dispatcher's work, by hand
            conn.execute(sa.update(outbox).where(outbox.c.id == rows[0].id).values(status="sending"))
            conn.execute(
                sa.update(outbox)
                .where(outbox.c.id == rows[1].id)
                .values(status="delivered", sent_at=datetime.now(UTC))
            )
        stopped = admin.post(f"/v1/broadcasts/{bid}/stop")
        assert stopped.status_code == 200, stopped.text
        assert stopped.json()["status"] == "stopped" and stopped.json()["cancelled"] == len(rows) - 2
        after = {r.id: r.status for r in _rows(server.engine, bid)}
        assert after[rows[0].id] == "sending" and after[rows[1].id] == "delivered"
        assert [after[r.id] for r in rows[2:]] == ["cancelled"] * (len(rows) - 2)
        assert all(r.message["cap_policy"] == "defer" for r in rows)

        twice = admin.post(f"/v1/broadcasts/{bid}/stop")
        assert twice.status_code == 200 and twice.json()["cancelled"] == 0
        assert admin.post(f"/v1/broadcasts/{bid}/start").json()["broadcast"]["status"] == "stopped"
        assert admin.post(f"/v1/broadcasts/{bid}/resume").status_code == 409
    with server.engine.connect() as conn:
        actions = list(
            conn.execute(
                sa.select(audit_log.c.action)
                .where(audit_log.c.target == f"broadcast:{bid}")
                .order_by(audit_log.c.id)
            ).scalars()
        )
    assert actions == [
        "broadcast.create", "broadcast.start", "broadcast.pause", "broadcast.resume", "broadcast.stop",
    ]  # fmt: skip


def test_a_scheduled_broadcast_waits_for_its_time(server: Server) -> None:
    seed_shop(server)
    at = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    with server.client("admin") as admin:
        bid = _create(admin, audience={"tag": ["vip"]}, scheduled_at=at.isoformat())["id"]
        started = admin.post(f"/v1/broadcasts/{bid}/start")
        assert started.status_code == 200 and started.json()["broadcast"]["status"] == "scheduled"
        listed = admin.get("/v1/broadcasts").json()["items"]
        assert [b["id"] for b in listed] == [bid]
    rows = _rows(server.engine, bid)
    assert rows and all(r.not_before == at for r in rows)

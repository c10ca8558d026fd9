"""Customer profiles: Segment identify traits merged, the profile API, bad traits."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import sqlalchemy as sa
from service_helpers import Server

from rfmflow.service.db.tables import audit_log


def identify(server: Server, message_id: str, timestamp: str, traits: dict[str, Any], **extra: Any) -> Any:
    auth = base64.b64encode(f"{server.keys['ingest']}:".encode()).decode()
    body = {"userId": "u1", "messageId": message_id, "timestamp": timestamp, "traits": traits, **extra}
    response = httpx.post(
        f"{server.url}/v1/identify", json=body, headers={"Authorization": f"Basic {auth}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def profile(server: Server, customer_id: str = "u1", role: str = "agent") -> httpx.Response:
    with server.client(role) as client:
        return client.get(f"/v1/customers/{customer_id}/profile")


def test_identify_traits_merge_newest_wins(server: Server) -> None:
    assert profile(server).status_code == 404
    first = identify(
        server,
        "i1",
        "2024-05-02T10:00:00Z",
        {"email": "ada@example.com", "plan": "free", "firstName": "Ada", "lastName": "Lovelace"},
        context={"timezone": "Europe/London", "locale": "en-GB"},
    )
    assert (first["status"], first["event_id"], first["warnings"]) == ("profile", "seg:i1", [])
    got = profile(server).json()
    assert (got["email"], got["name"], got["timezone"], got["language"]) == (
        "ada@example.com",
        "Ada Lovelace",
        "Europe/London",
        "en-GB",
    )
    # newer: overwrites what it names, keeps the rest; null removes a trait
    identify(
        server,
        "i2",
        "2024-05-03T10:00:00Z",
        {"email": "ada@newmail.example", "plan": "pro", "firstName": None},
    )
    # older, arriving late: only fills what is missing
    identify(
        server, "i0", "2024-05-01T10:00:00Z", {"email": "old@example.com", "plan": "trial", "company": "AE"}
    )
    got = profile(server).json()
    assert got["email"] == "ada@newmail.example"
    assert got["traits"] == {
        "email": "ada@newmail.example",
        "plan": "pro",
        "lastName": "Lovelace",
        "company": "AE",
    }
    assert got["updated_at"].startswith("2024-05-03T10:00:00")
    # the same message again changes nothing
    identify(
        server,
        "i2",
        "2024-05-03T10:00:00Z",
        {"email": "ada@newmail.example", "plan": "pro", "firstName": None},
    )
    assert profile(server).json() == got
    with server.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one() == 0


def test_identify_with_unusable_traits_answers_warnings(server: Server) -> None:
    answer = identify(
        server,
        "w1",
        "2024-05-02T10:00:00Z",
        {
            "email": "not-an-address",
            "timezone": "Mars/Olympus",
            "telegram_chat_id": "12ab",
            "phone": "+44 20 7946 0958",
        },
    )
    assert answer["status"] == "profile"
    assert [w.split(":")[0] for w in answer["warnings"]] == ["email", "timezone", "telegram_chat_id"]
    got = profile(server).json()
    assert (got["email"], got["timezone"], got["telegram_chat_id"], got["phone"]) == (
        None,
        None,
        None,
        "+44 20 7946 0958",
    )
    assert got["traits"]["email"] == "not-an-address"  # kept as sent, not used


def test_patch_profile(server: Server) -> None:
    with server.client("admin") as admin:
        done = admin.patch(
            "/v1/customers/c-9/profile",
            json={"traits": {"email": "c9@example.com", "timezone": "Asia/Tokyo", "telegram_chat_id": 4455}},
        )
        assert done.status_code == 200, done.text
        assert (done.json()["telegram_chat_id"], done.json()["source"]) == (4455, "api")
        cleared = admin.patch("/v1/customers/c-9/profile", json={"traits": {"timezone": None}})
        assert cleared.json()["timezone"] is None and "timezone" not in cleared.json()["traits"]
        bad = admin.patch("/v1/customers/c-9/profile", json={"traits": {"email": "nope", "timezone": "X/Y"}})
        assert bad.status_code == 422
        assert [e["loc"] for e in bad.json()["detail"]] == [
            ["body", "traits", "email"],
            ["body", "traits", "timezone"],
        ]
        assert admin.patch("/v1/customers/c-9/profile", json={"email": "x@y.z"}).status_code == 422
        assert (
            admin.patch(
                "/v1/customers/c-9/profile", content=b"{", headers={"content-type": "application/json"}
            ).status_code
            == 422
        )
        assert admin.patch("/v1/customers/c-9/profile", json={"traits": {}}).status_code == 422
    assert profile(server, "c-9").json()["email"] == "c9@example.com"
    for role, status in (("agent", 403), ("analyst", 403), ("ingest", 403), (None, 401)):
        with server.client(role) as client:
            assert client.patch("/v1/customers/c-9/profile", json={"traits": {"a": 1}}).status_code == status
    assert profile(server, "c-9", role="ingest").status_code == 403
    with server.engine.connect() as conn:
        rows = (
            conn.execute(sa.select(audit_log).where(audit_log.c.action == "profile.update")).mappings().all()
        )
    assert [(r["target"], r["details"]["traits"]) for r in rows] == [
        ("customer:c-9", ["email", "telegram_chat_id", "timezone"]),
        ("customer:c-9", ["timezone"]),
    ]
    assert all(r["actor"].startswith("key:") for r in rows)

"""The Segment-compatible endpoints through real HTTP, on SQLite and PostgreSQL.

Includes the real ``segment-analytics-python`` client pointed at the running server: it sends
from its consumer thread, gzip-compressed, with the write key as the basic-auth user.
"""

from __future__ import annotations

import atexit
import base64
import gzip
import itertools
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from segment.analytics import Client
from segment.analytics import request as segment_request
from segment.analytics.consumer import Consumer
from service_helpers import Database, Server, ThreadedServer, count_rows

from rfmflow.cli.app import build_app
from rfmflow.service.auth import list_keys, revoke_key
from rfmflow.service.db.tables import events
from rfmflow.service.settings import Settings

WRITE_KEY = "wk_segment_source_7f3a91c2"  # a configured (non-rfmflow) write key


@pytest.fixture
def settings(database: Database, tmp_path: Path) -> Settings:
    return database.settings(tmp_path, segment_write_keys=(WRITE_KEY,))


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def send(
    server: Server,
    path: str,
    body: Any = None,
    *,
    key: str | None = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST to ``path``; by default with the ingest key as basic-auth user."""
    all_headers = basic(server.keys["ingest"] if key is None else key) if key != "" else {}
    all_headers.update(headers or {})
    with httpx.Client(base_url=server.url, timeout=30) as client:
        if content is not None:
            return client.post(path, content=content, headers=all_headers)
        return client.post(path, json=body, headers=all_headers)


def metric(server: Server, name: str, **labels: str) -> float:
    """A sample's value from ``/metrics`` (0 when absent)."""
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def stored(server: Server) -> list[dict[str, Any]]:
    with server.engine.connect() as conn:
        rows = conn.execute(sa.select(events).order_by(events.c.event_id)).mappings().all()
    return [dict(r) for r in rows]


def order_completed(message_id: str = "m-oc-1", **props: Any) -> dict[str, Any]:
    properties = {"order_id": "ord-1", "total": 30.5, "revenue": 25, "currency": "USD", **props}
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "u1",
        "messageId": message_id,
        "timestamp": "2024-05-01T12:00:00+02:00",
        "properties": properties,
    }


# --- single calls ---------------------------------------------------------------------------
def test_track_purchase_then_its_duplicate(server: Server) -> None:
    first = send(server, "/v1/track", order_completed())
    again = send(server, "/v1/track", order_completed())
    assert (first.status_code, first.json()) == (
        200,
        {"success": True, "status": "accepted", "event_id": "seg:m-oc-1"},
    )
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    (row,) = stored(server)
    assert (row["customer_id"], row["event_type"], row["amount_minor"], row["order_id"], row["source"]) == (
        "u1",
        "purchase",
        3050,
        "ord-1",
        "segment",
    )
    assert row["occurred_at"] == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert row["properties"]["call"] == "track" and row["properties"]["name"] == "Order Completed"
    with server.client("agent") as client:
        customer = client.get("/v1/customers/u1").json()
    assert customer["purchases"] == 1 and customer["monetary"] == "30.50"
    assert metric(server, "rfmflow_events_ingested_total", source="segment") == 1
    assert metric(server, "rfmflow_events_duplicate_total", source="segment") == 1


def test_each_call_and_its_short_path(server: Server) -> None:
    identify = {"userId": "u2", "traits": {"email": "u2@example.com", "plan": "pro"}, "messageId": "i1"}
    page = {"userId": "u2", "name": "Pricing", "messageId": "p1", "timestamp": "2024-05-02T08:00:00Z"}
    screen = {"anonymousId": "anon-9", "name": "Home", "messageId": "s1", "timestamp": "2024-05-02T08:00:00Z"}
    refund = {**order_completed("r1", total=10), "event": "Order Refunded"}
    answers = {
        "/v1/identify": send(server, "/v1/identify", identify),
        "/v1/p": send(server, "/v1/p", page),
        "/v1/screen": send(server, "/v1/screen", screen),
        "/v1/t": send(server, "/v1/t", refund),
        "/v1/group": send(server, "/v1/group", {"userId": "u2", "groupId": "g1"}),
        "/v1/a": send(server, "/v1/a", {"userId": "u2", "previousId": "anon-9"}),
        "/v1/track (unmapped)": send(server, "/v1/track", {"userId": "u2", "event": "Cart Viewed"}),
    }
    statuses = {path: (r.status_code, r.json()["status"]) for path, r in answers.items()}
    assert statuses == {
        "/v1/identify": (200, "profile"),
        "/v1/p": (200, "accepted"),
        "/v1/screen": (200, "accepted"),
        "/v1/t": (200, "accepted"),
        "/v1/group": (200, "ignored"),
        "/v1/a": (200, "ignored"),
        "/v1/track (unmapped)": (200, "ignored"),
    }
    assert all(r.json()["success"] is True for r in answers.values())
    assert answers["/v1/identify"].json()["warnings"] == []
    assert "Cart Viewed" in answers["/v1/track (unmapped)"].json()["reason"]
    rows = {r["event_id"]: r for r in stored(server)}
    assert set(rows) == {"seg:p1", "seg:s1", "seg:r1"}
    assert rows["seg:r1"]["event_type"] == "refund" and rows["seg:r1"]["amount_minor"] == -1000
    assert rows["seg:s1"]["customer_id"] == "anon-9" and rows["seg:p1"]["event_type"] == "visit"
    assert metric(server, "rfmflow_segment_identify_total") == 1
    assert metric(server, "rfmflow_segment_identify_traits_total") == 2
    assert metric(server, "rfmflow_events_ignored_total", source="segment") == 3


def test_unreadable_and_rejected_messages_are_422(server: Server) -> None:
    no_total = send(server, "/v1/track", order_completed("bad-1", total=None, revenue=None))
    wrong_call = send(server, "/v1/track", {**order_completed("bad-2"), "type": "identify"})
    euro = send(server, "/v1/track", order_completed("bad-3", currency="EUR"))
    for response in (no_total, wrong_call, euro):
        assert response.status_code == 422, response.text
        assert response.json()["success"] is False
    assert no_total.json()["errors"][0]["loc"] == ["properties", "total"]
    assert "/v1/track" in wrong_call.json()["message"]
    assert euro.json()["errors"][0]["loc"] == ["currency"] and "EUR" in euro.json()["message"]
    assert count_rows(server.engine, "events") == 0
    assert metric(server, "rfmflow_events_rejected_total", source="segment", reason="properties.total") == 1


# --- batches --------------------------------------------------------------------------------
def test_batch_answers_per_message(server: Server) -> None:
    messages = [
        order_completed("b1"),
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "messageId": "b2"},
        {"type": "page", "userId": "u1", "messageId": "b3", "timestamp": "2024-05-02T08:00:00Z"},
        {"type": "track", "event": "Cart Viewed", "userId": "u1", "messageId": "b4"},
        {"type": "track", "event": "Order Completed", "messageId": "b5", "properties": {"total": 1}},
        {**order_completed("b6"), "properties": {"total": 1, "note": "x" * 33_000}},
        order_completed("b1"),
    ]
    response = send(server, "/v1/batch", {"batch": messages, "sentAt": "2024-05-02T09:00:00Z"})
    assert response.status_code == 200, response.text
    body = response.json()
    counts = ("success", "accepted", "duplicates", "ignored", "profiles", "rejected")
    assert tuple(body[k] for k in counts) == (False, 2, 1, 1, 1, 2)
    assert [(i["index"], i["event_id"], i["status"]) for i in body["items"]] == [
        (0, "seg:b1", "accepted"),
        (1, "seg:b2", "profile"),
        (2, "seg:b3", "accepted"),
        (3, None, "ignored"),
        (4, None, "rejected"),
        (5, None, "rejected"),
        (6, "seg:b1", "duplicate"),
    ]
    assert body["items"][4]["errors"][0]["loc"] == ["userId"]
    assert body["items"][5]["errors"][0]["type"] == "payload_too_large"
    assert count_rows(server.engine, "events") == 2
    assert metric(server, "rfmflow_events_rejected_total", source="segment", reason="size") == 1
    assert metric(server, "rfmflow_events_rejected_total", source="segment", reason="userId") == 1


def test_gzip_bodies_and_bad_encodings(server: Server) -> None:
    body = json.dumps({"batch": [order_completed("gz-1")]}).encode()
    zipped = send(server, "/v1/b", content=gzip.compress(body), headers={"Content-Encoding": "gzip"})
    assert zipped.status_code == 200 and zipped.json()["accepted"] == 1
    broken = send(server, "/v1/batch", content=gzip.compress(body)[:-9], headers={"Content-Encoding": "gzip"})
    not_gzip = send(server, "/v1/batch", content=body, headers={"Content-Encoding": "gzip"})
    brotli = send(server, "/v1/batch", content=body, headers={"Content-Encoding": "br"})
    bad_json = send(server, "/v1/batch", content=b'{"batch": [')
    assert (broken.status_code, broken.json()["code"]) == (400, "invalid_gzip")
    assert (not_gzip.status_code, not_gzip.json()["code"]) == (400, "invalid_gzip")
    assert (brotli.status_code, brotli.json()["code"]) == (415, "unsupported_encoding")
    assert (bad_json.status_code, bad_json.json()["code"]) == (400, "invalid_json")
    assert bad_json.json()["success"] is False
    # a small body that inflates past 500 KB is refused without inflating it all
    bomb = gzip.compress(b'{"batch": [' + b" " * 2_000_000 + b"]}")
    assert len(bomb) < 10_000
    inflated = send(server, "/v1/batch", content=bomb, headers={"Content-Encoding": "gzip"})
    assert inflated.status_code == 413 and "500 KB" in inflated.json()["message"]
    assert count_rows(server.engine, "events") == 1


def test_size_limits_are_413(server: Server) -> None:
    big_message = order_completed("big", note="x" * 33_000)
    assert send(server, "/v1/track", big_message).status_code == 413
    big_batch = {"batch": [order_completed(f"m{i}", note="y" * 20_000) for i in range(30)]}
    too_big = send(server, "/v1/batch", big_batch)
    assert too_big.status_code == 413 and too_big.json()["code"] == "payload_too_large"
    many = send(server, "/v1/batch", {"batch": [{"type": "page"}] * 1001})
    assert many.status_code == 413 and "1000" in many.json()["message"]
    assert count_rows(server.engine, "events") == 0


# --- write keys -----------------------------------------------------------------------------
def test_write_keys(server: Server) -> None:
    message = order_completed("wk-0")
    ids = itertools.count(1)

    def status(**kwargs: Any) -> tuple[int, str]:
        response = send(server, "/v1/track", {**message, "messageId": f"wk-{next(ids)}"}, **kwargs)
        return response.status_code, response.json().get("code", response.json().get("status"))

    assert status() == (200, "accepted")  # the ingest key as the basic-auth user
    assert status(key=WRITE_KEY) == (200, "accepted")  # a configured write key
    assert status(key="", headers={"Authorization": f"Bearer {server.keys['ingest']}"}) == (200, "accepted")
    assert status(key="") == (401, "invalid_write_key")
    assert status(key="wk_not_a_known_key_at_all") == (401, "invalid_write_key")
    assert status(key="rfm_00000000_" + "a" * 43) == (401, "invalid_write_key")
    assert status(key="", headers={"Authorization": "Basic %%%"}) == (401, "invalid_write_key")
    assert status(key=server.keys["admin"]) == (403, "forbidden")
    assert status(key=server.keys["analyst"]) == (403, "forbidden")
    # the key in the body, as analytics.js sends it
    in_body = send(server, "/v1/track", {**order_completed("wk-body"), "writeKey": WRITE_KEY}, key="")
    assert in_body.status_code == 200 and in_body.json()["status"] == "accepted"
    differ = send(server, "/v1/track", {**order_completed("wk-differ"), "writeKey": WRITE_KEY})
    assert differ.status_code == 401 and "differ" in differ.json()["message"]
    refused = send(server, "/v1/track", order_completed("wk-none"), key="")
    assert refused.headers["www-authenticate"].startswith("Basic")
    assert "admin" in send(server, "/v1/track", message, key=server.keys["admin"]).json()["message"]
    # a revoked key stops working at once
    ingest_key = next(k for k in list_keys(server.engine) if k.role == "ingest")
    revoke_key(server.engine, ingest_key.id, actor="test")
    assert status() == (401, "invalid_write_key")
    assert count_rows(server.engine, "events") == 4


# --- idempotency under concurrency and restarts ---------------------------------------------
def test_concurrent_and_restarted_deliveries_count_once(server: Server, settings: Settings) -> None:
    batch = {"batch": [order_completed(f"cc-{i}", order_id=f"o{i}") for i in range(20)]}
    barrier = threading.Barrier(5)
    bodies: list[dict[str, Any]] = []

    def deliver() -> None:
        with httpx.Client(base_url=server.url, timeout=30, headers=basic(WRITE_KEY)) as client:
            barrier.wait()
            bodies.append(client.post("/v1/batch", json=batch).json())

    threads = [threading.Thread(target=deliver) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(b["accepted"] for b in bodies) == 20 and sum(b["duplicates"] for b in bodies) == 80

    restarted = ThreadedServer(build_app(settings, engine=server.engine))
    url = restarted.start()
    try:
        again = httpx.post(f"{url}/v1/batch", json=batch, headers=basic(WRITE_KEY), timeout=30).json()
    finally:
        restarted.stop()
    assert (again["accepted"], again["duplicates"]) == (0, 20)
    assert count_rows(server.engine, "events") == 20
    with server.client("agent") as client:
        assert client.get("/v1/customers/u1").json()["purchases"] == 20


# --- the real Segment client ------------------------------------------------------------------
@pytest.fixture
def segment_clients() -> Iterator[list[Client]]:
    """Segment clients made by a test, shut down (queue flushed, consumer thread joined) after it."""
    made: list[Client] = []
    try:
        yield made
    finally:
        for client in made:
            client.shutdown()
            atexit.unregister(client.join)
        segment_request._session.close()  # the library's shared keep-alive connections
        assert not [t for t in threading.enumerate() if isinstance(t, Consumer) and t.is_alive()]


def make_client(made: list[Client], server: Server, key: str, errors: list[Any]) -> Client:
    client = Client(
        key,
        host=server.url,
        gzip=True,
        max_retries=0,
        upload_interval=0.05,
        on_error=lambda err, batch: errors.append((err, batch)),
    )
    made.append(client)
    return client


def test_the_real_segment_client(server: Server, segment_clients: list[Client]) -> None:
    errors: list[Any] = []
    client = make_client(segment_clients, server, server.keys["ingest"], errors)
    paid = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    client.track(
        "u1",
        "Order Completed",
        {"order_id": "ord-7", "total": 42.5, "revenue": 40, "currency": "USD"},
        timestamp=paid,
        message_id="sdk-order-7",
    )
    client.track("u1", "Order Refunded", {"order_id": "ord-7", "total": 12.5}, message_id="sdk-refund-7")
    client.identify("u1", {"email": "u1@example.com", "plan": "pro", "name": "Ada"})
    client.page("u1", "Docs", "Getting started", {"url": "https://example.com/docs"})
    client.flush()
    assert errors == []
    rows = {r["event_type"]: r for r in stored(server)}
    assert set(rows) == {"purchase", "refund", "visit"}
    assert rows["purchase"]["event_id"] == "seg:sdk-order-7" and rows["purchase"]["occurred_at"] == paid
    assert rows["purchase"]["amount_minor"] == 4250 and rows["refund"]["amount_minor"] == -1250
    with server.client("agent") as reader:
        assert reader.get("/v1/customers/u1").json()["monetary"] == "30.00"
    assert metric(server, "rfmflow_segment_identify_total") == 1
    assert metric(server, "rfmflow_segment_identify_traits_total") == 3
    with server.client("agent") as reader:
        profile = reader.get("/v1/customers/u1/profile").json()
    assert (profile["email"], profile["name"], profile["traits"]["plan"]) == ("u1@example.com", "Ada", "pro")

    # the SDK resends the same message (same messageId): a duplicate, stored once
    client.track("u1", "Order Completed", {"order_id": "ord-7", "total": 42.5}, message_id="sdk-order-7")
    client.flush()
    assert errors == [] and count_rows(server.engine, "events") == 3
    assert metric(server, "rfmflow_events_duplicate_total", source="segment") == 1

    # a wrong write key: the server answers 401 and the client reports it through on_error
    refused: list[Any] = []
    wrong = make_client(segment_clients, server, "wk_this_key_is_not_known", refused)
    wrong.track("u9", "Order Completed", {"total": 1}, message_id="sdk-wrong")
    wrong.flush()
    ((error, batch),) = refused
    assert getattr(error, "status", None) == 401 and getattr(error, "code", None) == "invalid_write_key"
    assert batch[0]["messageId"] == "sdk-wrong"
    assert count_rows(server.engine, "events") == 3

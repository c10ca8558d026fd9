"""The HTTP API through real HTTP (uvicorn on loopback), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest
from service_helpers import Server, ThreadedServer, count_rows, event

from rfmflow.cli.app import build_app
from rfmflow.service.auth import revoke_key
from rfmflow.service.db import create_db_engine
from rfmflow.service.events import MAX_BATCH_EVENTS


def post(server: Server, payload: Any, role: str = "ingest", **kwargs: Any) -> httpx.Response:
    with server.client(role) as client:
        return client.post("/v1/events", json=payload, **kwargs)


def test_one_event_then_its_duplicate(server: Server) -> None:
    item = event(event_id="one", order_id="o1")
    first = post(server, item)
    again = post(server, item)
    assert (first.status_code, first.json()) == (200, {"event_id": "one", "status": "accepted"})
    assert (again.status_code, again.json()) == (200, {"event_id": "one", "status": "duplicate"})
    assert count_rows(server.engine, "events") == 1


@pytest.mark.parametrize("shape", ["object", "array"])
def test_batch_answers_per_item(server: Server, shape: str) -> None:
    items = [
        event(event_id="b1", customer_id="a"),
        event(event_id="b2", customer_id="a", amount="not a number"),
        event(event_id="b3", customer_id="b", type="message", amount=None),
        event(event_id="b1", customer_id="a"),
    ]
    response = post(server, {"batch": items} if shape == "object" else items)
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 1, 1)
    assert [(i["event_id"], i["status"]) for i in body["items"]] == [
        ("b1", "accepted"),
        ("b2", "rejected"),
        ("b3", "accepted"),
        ("b1", "duplicate"),
    ]
    (error,) = body["items"][1]["errors"]
    assert error["loc"] == ["amount"] and "valid decimal" in error["msg"] and "not a number" in error["msg"]
    assert count_rows(server.engine, "events") == 2


def test_atomic_batch_writes_nothing_when_an_item_is_bad(server: Server) -> None:
    items = [event(event_id="a1"), event(event_id="a2", currency="EUR")]
    response = post(server, {"batch": items}, params={"atomic": "true"})
    assert response.status_code == 422
    body = response.json()
    assert body["detail"][0]["loc"] == ["body", "batch", 1, "currency"]
    assert [i["status"] for i in body["items"]] == ["skipped", "rejected"]
    assert count_rows(server.engine, "events") == 0


@pytest.mark.parametrize(
    ("fields", "loc", "words"),
    [
        ({"type": "teleport"}, ["body", "type"], "unknown event type"),
        ({"occurred_at": "yesterday"}, ["body", "occurred_at"], "valid datetime"),
        ({"occurred_at": "2024-05-01T10:00:00"}, ["body", "occurred_at"], "needs a time zone"),
        ({"amount": "12,50"}, ["body", "amount"], "valid decimal"),
        ({"amount": "1.999"}, ["body", "amount"], "more than 2 decimals"),
        ({"currency": "EUR"}, ["body", "currency"], "differs from this installation's USD"),
        ({"type": "click", "amount": "3"}, ["body", "amount"], "carries no amount"),
        ({"event_id": ""}, ["body", "event_id"], "at least 1 character"),
        ({"colour": "red"}, ["body", "colour"], "unknown field"),
    ],
)
def test_malformed_event_is_a_field_level_422(
    server: Server, fields: dict[str, Any], loc: list[Any], words: str
) -> None:
    response = post(server, event(**fields))
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(d["loc"] == loc and words in d["msg"] for d in detail), detail
    assert count_rows(server.engine, "events") == 0


def test_invalid_json_is_422(server: Server) -> None:
    with server.client("ingest") as client:
        response = client.post(
            "/v1/events", content=b'{"event_id": ', headers={"content-type": "application/json"}
        )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_oversized_event_and_batch_are_413(server: Server) -> None:
    big = event(properties={"note": "x" * 33_000})
    response = post(server, big)
    assert response.status_code == 413
    assert "32 KB" in response.json()["detail"]
    # a batch over 500 KB
    items = [event(properties={"note": "y" * 20_000}) for _ in range(30)]
    response = post(server, {"batch": items})
    assert response.status_code == 413 and "500 KB" in response.json()["detail"]
    # more than 1,000 events
    response = post(server, [{"e": i} for i in range(MAX_BATCH_EVENTS + 1)])
    assert response.status_code == 413 and "1000" in response.json()["detail"]
    # one oversized item in an otherwise fine batch is rejected alone
    response = post(server, {"batch": [event(event_id="fine"), {**big, "event_id": "huge"}]})
    assert response.status_code == 200
    items_out = response.json()["items"]
    assert [i["status"] for i in items_out] == ["accepted", "rejected"]
    assert "32 KB" in items_out[1]["errors"][0]["msg"]
    assert count_rows(server.engine, "events") == 1


def test_keys_and_roles(server: Server) -> None:
    item = event()
    with server.client(None) as anonymous:
        missing = anonymous.post("/v1/events", json=item)
        unknown = anonymous.post(
            "/v1/events", json=item, headers={"Authorization": "Bearer rfm_00000000_" + "a" * 43}
        )
        garbage = anonymous.post("/v1/events", json=item, headers={"X-API-Key": "hello"})
    assert missing.status_code == unknown.status_code == garbage.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "missing API key" in missing.json()["detail"]
    for role in ("agent", "analyst"):
        denied = post(server, item, role=role)
        assert denied.status_code == 403 and f"role {role!r} may not write events" in denied.json()["detail"]
    assert post(server, event(), role="admin").status_code == 200
    # X-API-Key works as well as a bearer token
    with server.client(None) as client:
        ok = client.post("/v1/events", json=event(), headers={"X-API-Key": server.keys["ingest"]})
    assert ok.status_code == 200
    # reading customers: agent, analyst and admin may; ingest may not
    with server.client("ingest") as client:
        assert client.get("/v1/customers/c1").status_code == 403
    for role in ("agent", "analyst", "admin"):
        with server.client(role) as client:
            assert client.get("/v1/customers/c1").status_code == 200
    assert count_rows(server.engine, "events") == 2


def test_revoked_key_stops_working_at_once(server: Server) -> None:
    from rfmflow.service.auth import list_keys

    assert post(server, event()).status_code == 200
    ingest_key = next(k for k in list_keys(server.engine) if k.role == "ingest")
    revoke_key(server.engine, ingest_key.id, actor="test")
    response = post(server, event())
    assert response.status_code == 401 and "revoked" in response.json()["detail"]


def test_customer_endpoint(server: Server) -> None:
    post(
        server,
        [
            event(customer_id="z", amount="12.34", order_id="o1"),
            event(customer_id="z", type="visit", amount=None),
        ],
    )
    with server.client("agent") as client:
        found = client.get("/v1/customers/z")
        missing = client.get("/v1/customers/nobody")
    assert found.status_code == 200
    body = found.json()
    assert body["monetary"] == "12.34" and body["currency"] == "USD" and body["purchases"] == 1
    assert body["last_purchase_date"] == "2024-05-01" and body["event_counts"]["visit"] == 1
    assert missing.status_code == 404


def test_concurrent_duplicate_requests_accept_once(server: Server) -> None:
    """Several clients send the same events at the same moment: one acceptance each."""
    items = [event(event_id=f"same-{i}", customer_id=f"c{i % 4}") for i in range(50)]
    barrier = threading.Barrier(6)
    bodies: list[dict[str, Any]] = []

    def send() -> None:
        with server.client("ingest") as client:
            barrier.wait()
            bodies.append(client.post("/v1/events", json={"batch": items}).json())

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(bodies) == 6
    assert sum(b["accepted"] for b in bodies) == 50
    assert sum(b["duplicates"] for b in bodies) == 5 * 50
    assert count_rows(server.engine, "events") == 50


def test_duplicates_after_a_restart(server: Server) -> None:
    items = [event(event_id=f"keep-{i}") for i in range(5)]
    assert post(server, items).json()["accepted"] == 5
    engine = create_db_engine(server.settings.database_url)
    second = ThreadedServer(build_app(server.settings, engine=engine))
    url = second.start()
    try:
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {server.keys['ingest']}"}
        ) as client:
            body = client.post("/v1/events", json=items).json()
    finally:
        second.stop()
        engine.dispose()
    assert (body["accepted"], body["duplicates"]) == (0, 5)


def test_operations_endpoints(server: Server) -> None:
    post(server, [event(event_id="m1"), event(event_id="m1"), event(event_id="m2", occurred_at="soon")])
    with server.client(None) as client:
        health = client.get("/healthz")
        ready = client.get("/readyz")
        metrics = client.get("/metrics")
        schema = client.get("/openapi.json")
        docs = client.get("/docs")
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    text = metrics.text
    assert 'rfmflow_events_ingested_total{source="api"} 1.0' in text
    assert 'rfmflow_events_duplicate_total{source="api"} 1.0' in text
    assert 'rfmflow_events_rejected_total{reason="occurred_at",source="api"} 1.0' in text
    assert (
        'rfmflow_http_request_duration_seconds_count{method="POST",route="/v1/events",status="200"}' in text
    )
    paths = schema.json()["paths"]
    assert "/v1/events" in paths and "EventIn" in schema.json()["components"]["schemas"]
    assert docs.status_code == 200 and "/v1/events" in docs.text
    assert "http://" not in docs.text and "https://" not in docs.text  # nothing fetched from elsewhere


def test_readyz_is_503_before_migration(database: Any, tmp_path: Any) -> None:
    settings = database.settings(tmp_path)
    engine = create_db_engine(settings.database_url)
    running = ThreadedServer(build_app(settings, engine=engine))
    url = running.start()
    try:
        response = httpx.get(f"{url}/readyz")
    finally:
        running.stop()
        engine.dispose()
    assert response.status_code == 503 and "rfmflow db upgrade" in response.json()["reason"]


def test_request_log_lines_are_json(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    from rfmflow.service.logs import JsonFormatter

    with caplog.at_level("INFO", logger="rfmflow.service.http"):
        post(server, [event(), event()])
        deadline = time.monotonic() + 5  # the line is written just after the answer is sent
        while not (records := [r for r in caplog.records if r.name == "rfmflow.service.http"]):
            assert time.monotonic() < deadline, "no request log line"
            time.sleep(0.01)
    line = json.loads(JsonFormatter().format(records[-1]))
    assert line["msg"] == "request" and line["status"] == 200 and line["route"] == "/v1/events"
    assert line["accepted"] == 2 and isinstance(line["key_id"], int) and line["duration_ms"] >= 0


def test_unreachable_database_is_503(tmp_path: Any) -> None:
    from rfmflow.service.settings import Settings

    settings = Settings(
        data_dir=tmp_path, database_url="postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
    )
    engine = create_db_engine(settings.database_url)
    running = ThreadedServer(build_app(settings, engine=engine))
    url = running.start()
    try:
        ready = httpx.get(f"{url}/readyz", timeout=10)
        sent = httpx.post(
            f"{url}/v1/events",
            json=event(),
            headers={"Authorization": "Bearer rfm_0123abcd_" + "x" * 43},
            timeout=10,
        )
        health = httpx.get(f"{url}/healthz", timeout=10)
    finally:
        running.stop()
        engine.dispose()
    assert ready.status_code == 503 and ready.json()["reason"] == "database unreachable"
    assert sent.status_code == 503 and sent.headers["retry-after"] == "1" and "retry" in sent.json()["detail"]
    assert health.status_code == 200

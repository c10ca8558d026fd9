"""The real segment-analytics-python client, pointed at a loopback server, read by ``from_segment``.

The library posts ``{"batch": [...], "sentAt": ..., "writeKey": ...}`` to ``<host>/v1/batch``
with ``Authorization: Basic base64("<writeKey>:")``, gzip-compressed when ``gzip`` is set
(``Content-Encoding: gzip``), from a consumer thread. The server here captures each request;
the test then feeds the captured messages through the adapter.
"""

from __future__ import annotations

import atexit
import gzip
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from segment import analytics
from segment.analytics.consumer import Consumer

from rfmflow.service.adapters import CredentialsError, from_segment_batch, parse_basic_auth, request_write_key

WRITE_KEY = "wk_rfmflow_test_3c9a"


@dataclass
class Captured:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class CaptureServer:
    url: str
    requests: list[Captured] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        body = json.loads(raw)
        self.server.captured.append(Captured(self.path, dict(self.headers.items()), body))
        try:
            ok = request_write_key(self.headers.get("Authorization"), body) == WRITE_KEY
        except CredentialsError:
            ok = False
        status, answer = (
            (200, {"success": True}) if ok else (401, {"code": "invalid_write_key", "message": "no"})
        )
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


class _Server(HTTPServer):
    captured: list[Captured]


@pytest.fixture
def capture_server() -> Iterator[CaptureServer]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.captured = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield CaptureServer(f"http://127.0.0.1:{server.server_address[1]}", server.captured)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        assert not thread.is_alive()


@pytest.fixture
def segment_client(capture_server: CaptureServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The library's module-level client configured for the capture server; yields on_error calls."""
    errors: list[Any] = []
    monkeypatch.setattr(analytics, "write_key", WRITE_KEY)
    monkeypatch.setattr(analytics, "host", capture_server.url)
    monkeypatch.setattr(analytics, "on_error", lambda err, batch: errors.append((err, batch)))
    monkeypatch.setattr(analytics, "max_retries", 0)
    monkeypatch.setattr(analytics, "default_client", None)
    try:
        yield errors
    finally:
        client = analytics.default_client
        if client is not None:
            analytics.shutdown()  # flush, then stop and join the consumer thread
            atexit.unregister(client.join)
        assert not [t for t in threading.enumerate() if isinstance(t, Consumer) and t.is_alive()]


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_the_real_client_feeds_the_adapter(
    compress: bool,
    capture_server: CaptureServer,
    segment_client: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(analytics, "gzip", compress)
    paris = timezone(timedelta(hours=2))
    analytics.track(
        "u1",
        "Order Completed",
        {"order_id": "ord-1001", "total": 30.5, "revenue": 25.0, "currency": "EUR"},
        timestamp=datetime(2024, 5, 1, 12, 0, tzinfo=paris),
    )
    analytics.identify("u1", {"email": "u1@example.com", "plan": "pro"})
    analytics.track("u1", "Email Opened", {"campaign": "spring"})
    analytics.track("u1", "Cart Viewed", {"cart_id": "c1"})
    analytics.page("u1", "Docs", "Getting started", {"url": "https://example.com/docs"})
    analytics.flush()

    assert segment_client == []
    assert capture_server.requests, "the client sent nothing"
    first = capture_server.requests[0]
    assert first.path == "/v1/batch"
    assert (first.headers.get("Content-Encoding") == "gzip") is compress
    assert parse_basic_auth(first.headers["Authorization"]) == WRITE_KEY
    assert first.body["writeKey"] == WRITE_KEY

    messages = [m for request in capture_server.requests for m in request.body["batch"]]
    assert len(messages) == 5
    items = [item for request in capture_server.requests for item in from_segment_batch(request.body)]
    assert [i.error for i in items] == [None] * 5
    results = [i.result for i in items if i.result is not None]

    purchase = results[0].events[0]
    assert purchase.event_id == f"seg:{messages[0]['messageId']}"
    assert purchase.customer_id == "u1"
    assert purchase.type == "purchase"
    assert purchase.amount == Decimal("30.5") and purchase.currency == "EUR"
    assert purchase.order_id == "ord-1001"
    assert purchase.occurred_at == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)

    identify = results[1].identify
    assert identify is not None and results[1].events == []
    assert identify["customer_id"] == "u1" and identify["traits"] == {
        "email": "u1@example.com",
        "plan": "pro",
    }
    assert identify["occurred_at"].tzinfo is not None

    assert results[2].events[0].type == "open"
    assert results[3].events == [] and results[3].ignored is not None
    visit = results[4].events[0]
    assert (
        visit.type == "visit"
        and visit.properties is not None
        and visit.properties["name"] == "Getting started"
    )

    # the same messages delivered again (the SDK retries) map to the same event ids
    again = [item for request in capture_server.requests for item in from_segment_batch(request.body)]
    assert [i.result.events[0].event_id for i in again if i.result and i.result.events] == [
        r.events[0].event_id for r in results if r.events
    ]


def test_a_wrong_write_key_is_refused_and_reported_to_the_client(
    capture_server: CaptureServer, segment_client: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(analytics, "write_key", "wk_wrong")
    analytics.track("u1", "Order Completed", {"total": 1})
    analytics.flush()
    assert capture_server.requests
    assert parse_basic_auth(capture_server.requests[0].headers["Authorization"]) == "wk_wrong"
    (error, batch), *_ = segment_client
    assert getattr(error, "status", None) == 401 and batch[0]["event"] == "Order Completed"

"""Signed webhooks against a real HTTP receiver on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rfmflow.channels.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    WebhookMessage,
    WebhookSender,
    sign,
    verify_signature,
)

SECRET = "whsec_test_9f2c"


class Receiver:
    """A real HTTP server: answers each path from a script of status codes, records requests."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: dict[str, list[int]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body, "at": time.monotonic()}
                )
                codes = receiver.script.get(self.path, [200])
                code = codes.pop(0) if len(codes) > 1 else codes[0]
                if code == 0:  # hang up without an answer
                    self.close_connection = True
                    self.wfile.close()
                    return
                self.send_response(code)
                if code == 429:
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


def message(receiver: Receiver, path: str, message_id: str = "m1") -> WebhookMessage:
    return WebhookMessage(
        id=message_id,
        url=receiver.url + path,
        payload={"customer_id": "c1", "segment": "At Risk"},
        secret=SECRET,
    )


def test_signed_delivery(receiver: Receiver) -> None:
    outcome = asyncio.run(WebhookSender().send(message(receiver, "/hook")))
    assert (outcome.status, outcome.attempts) == ("delivered", 1)
    (request,) = receiver.requests
    assert json.loads(request["body"]) == {"customer_id": "c1", "segment": "At Risk"}
    assert request["headers"][DELIVERY_HEADER] == "m1"
    assert verify_signature(request["body"], request["headers"][SIGNATURE_HEADER], SECRET)
    assert not verify_signature(request["body"] + b" ", request["headers"][SIGNATURE_HEADER], SECRET)
    assert not verify_signature(request["body"], request["headers"][SIGNATURE_HEADER], "other-secret")
    old = sign(request["body"], SECRET, int(time.time()) - 3600)
    assert not verify_signature(request["body"], old, SECRET)  # a replay from an hour ago
    assert not verify_signature(request["body"], None, SECRET) and not verify_signature(
        request["body"], "v1=ab", SECRET
    )


def test_retries_with_backoff_then_delivers(receiver: Receiver) -> None:
    receiver.script["/flaky"] = [503, 0, 429, 200]
    sender = WebhookSender(attempts=5, first_delay=0.05)
    outcome = asyncio.run(sender.send(message(receiver, "/flaky")))
    assert (outcome.status, outcome.attempts) == ("delivered", 4)
    assert {r["headers"][DELIVERY_HEADER] for r in receiver.requests} == {
        "m1"
    }  # one delivery id on every attempt
    gaps = [b["at"] - a["at"] for a, b in zip(receiver.requests, receiver.requests[1:], strict=False)]
    assert gaps[0] >= 0.04 and gaps[1] >= 0.09 and gaps[2] >= 0.9  # 0.05, 0.1, then Retry-After: 1


def test_refused_and_exhausted_and_duplicate(receiver: Receiver) -> None:
    receiver.script["/bad"] = [400]
    receiver.script["/down"] = [500]
    sender = WebhookSender(attempts=3, first_delay=0.01)
    refused = asyncio.run(sender.send(message(receiver, "/bad", "a")))
    assert refused.status == "failed" and "HTTP 400" in (refused.reason or "") and refused.attempts == 1
    down = asyncio.run(sender.send(message(receiver, "/down", "b")))
    assert down.status == "deferred" and down.attempts == 3 and down.retry_at is not None
    again = asyncio.run(sender.send(message(receiver, "/down", "b")))
    assert again.status == "duplicate"
    assert [r["path"] for r in receiver.requests] == ["/bad", "/down", "/down", "/down"]

"""Signed webhooks: a JSON POST per message, retried with backoff until the receiver takes it.

Each request carries:

- ``X-Rfmflow-Delivery``: the message id, the same on every attempt, so the receiver can
  recognise a retry (deliveries are *at least once*: a receiver that timed out may have acted);
- ``X-Rfmflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` with the
  shared secret (as Stripe signs), so the receiver can check who sent it and refuse replays
  older than a few minutes (:func:`verify_signature` does both);
- ``Content-Type: application/json`` and ``User-Agent: rfmflow``.

A 2xx answer is ``delivered``. 408, 425, 429 and 5xx answers, time-outs and connection errors
are retried after 1, 2, 4, ... seconds (``Retry-After`` is honoured) up to ``attempts``; then
the message is ``deferred`` with a ``retry_at``. Other 4xx answers are ``failed`` at once (the
receiver refused this message; sending it again would not change that).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from rfmflow.channels.outbound import SendOutcome, one_by_one

SIGNATURE_HEADER = "X-Rfmflow-Signature"
DELIVERY_HEADER = "X-Rfmflow-Delivery"
RETRYABLE = frozenset({408, 425, 429})
DEFAULT_TOLERANCE = 300


@dataclass(frozen=True)
class WebhookMessage:
    """One delivery: where, what (a JSON object) and with which secret it is signed."""

    id: str
    url: str
    payload: Mapping[str, Any]
    secret: str
    headers: Mapping[str, str] = field(default_factory=dict)


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The ``X-Rfmflow-Signature`` value for ``body`` at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(
    body: bytes,
    header: str | None,
    secret: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` and is no older than ``tolerance`` s."""
    if not header:
        return False
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    stamp, given = parts.get("t", ""), parts.get("v1", "")
    if not stamp.isdigit() or not given:
        return False
    if abs((time.time() if now is None else now) - int(stamp)) > tolerance:
        return False
    expected = sign(body, secret, int(stamp)).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


class WebhookSender:
    """Posts :class:`WebhookMessage` values, retrying transient failures with backoff."""

    channel = "webhook"

    def __init__(
        self,
        *,
        attempts: int = 5,
        first_delay: float = 1.0,
        max_delay: float = 60.0,
        timeout: float = 10.0,
        defer_for: timedelta = timedelta(minutes=10),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.attempts = attempts
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.timeout = timeout
        self.defer_for = defer_for
        self._transport = transport
        self._taken: set[str] = set()
        self._tls: ssl.SSLContext | None = None  # built once: loading the CA bundle costs ~40 ms

    def _verify(self) -> ssl.SSLContext:
        if self._tls is None:
            import certifi

            self._tls = ssl.create_default_context(cafile=certifi.where())
        return self._tls

    async def send(self, message: WebhookMessage) -> SendOutcome:
        if message.id in self._taken:
            return SendOutcome(message.id, "duplicate", reason="this message id was already taken")
        self._taken.add(message.id)
        client = httpx.AsyncClient(timeout=self.timeout, transport=self._transport, verify=self._verify())
        async with client:
            return await self._deliver(client, message)

    def send_many(
        self, messages: Iterable[WebhookMessage] | AsyncIterable[WebhookMessage]
    ) -> AsyncIterator[SendOutcome]:
        return one_by_one(self.send, messages)

    async def _deliver(self, client: httpx.AsyncClient, message: WebhookMessage) -> SendOutcome:
        body = json.dumps(message.payload, separators=(",", ":"), sort_keys=True, default=str).encode()
        last = ""
        for attempt in range(1, self.attempts + 1):
            stamp = int(time.time())
            headers = {
                **message.headers,
                "Content-Type": "application/json",
                "User-Agent": "rfmflow",
                DELIVERY_HEADER: message.id,
                SIGNATURE_HEADER: sign(body, message.secret, stamp),
            }
            wait = self._delay(attempt)
            try:
                response = await client.post(message.url, content=body, headers=headers)
            except httpx.HTTPError as err:
                last = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            else:
                if 200 <= response.status_code < 300:
                    return SendOutcome(
                        message.id,
                        "delivered",
                        sent_at=datetime.now(UTC),
                        attempts=attempt,
                        details={"status_code": response.status_code},
                    )
                last = f"HTTP {response.status_code}: {response.text[:200]}".rstrip(": ")
                if response.status_code not in RETRYABLE and response.status_code < 500:
                    return SendOutcome(
                        message.id,
                        "failed",
                        reason=f"the receiver refused it: {last}",
                        attempts=attempt,
                        details={"status_code": response.status_code},
                    )
                wait = max(wait, _retry_after(response))
            if attempt < self.attempts:
                await asyncio.sleep(min(wait, self.max_delay))
        return SendOutcome(
            message.id,
            "deferred",
            reason=f"not taken after {self.attempts} attempts; last: {last}",
            retry_at=datetime.now(UTC) + self.defer_for,
            attempts=self.attempts,
        )

    def _delay(self, attempt: int) -> float:
        return float(min(self.first_delay * 2 ** (attempt - 1), self.max_delay))


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else 0.0


__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "WebhookMessage",
    "WebhookSender",
    "sign",
    "verify_signature",
]

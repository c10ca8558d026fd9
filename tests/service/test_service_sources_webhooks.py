"""The Stripe, Shopify and WooCommerce webhooks through real HTTP, on SQLite and PostgreSQL.

Deliveries are signed as each vendor signs them (over the raw body bytes); a redelivery is a
duplicate, a bad signature is 400 with nothing written, an unused topic is 200 ``ignored``.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from service_helpers import Database, Server, ThreadedServer, count_rows

from rfmflow.cli.app import build_app
from rfmflow.service.adapters.shopify import sign_shopify_payload
from rfmflow.service.adapters.stripe import sign_stripe_payload
from rfmflow.service.adapters.woocommerce import sign_woocommerce_payload
from rfmflow.service.db.tables import events
from rfmflow.service.settings import Settings

STRIPE_SECRET = "whsec_test_5f1c0d2e9a8b7c6d"
STRIPE_OLD_SECRET = "whsec_test_rolled_0a1b2c3d"
SHOPIFY_SECRET = "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"
WOO_SECRET = "wc-secret, with a comma; Zq7!x"
T = 1714557600  # 2024-05-01T10:00:00Z
ORDER_ID = 820982911946154508
SHOPIFY_CUSTOMER = 115310627314723954


@pytest.fixture
def settings(database: Database, tmp_path: Path) -> Settings:
    return database.settings(
        tmp_path,
        stripe_webhook_secrets=(STRIPE_SECRET, STRIPE_OLD_SECRET),
        shopify_webhook_secrets=(SHOPIFY_SECRET,),
        woocommerce_webhook_secret=WOO_SECRET,
    )


def post(server: Server, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return client.post(path, content=body, headers={"Content-Type": "application/json", **headers})


def metric(server: Server, name: str, **labels: str) -> float:
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


def profile_of(server: Server, customer_id: str) -> dict[str, Any]:
    with server.client("agent") as client:
        answer = client.get(f"/v1/customers/{customer_id}/profile")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def customer(server: Server, customer_id: str) -> dict[str, Any]:
    with server.client("agent") as client:
        body: dict[str, Any] = client.get(f"/v1/customers/{customer_id}").json()
    return body


# --- Stripe ---------------------------------------------------------------------------------
def stripe_event(kind: str, obj: dict[str, Any], *, event_id: str = "evt_1", **extra: Any) -> bytes:
    event = {
        "id": event_id,
        "object": "event",
        "api_version": "2024-04-10",
        "created": T,
        "livemode": False,
        "type": kind,
        "data": {"object": obj, **extra},
    }
    return json.dumps(event).encode()


def payment_intent(**changes: Any) -> dict[str, Any]:
    return {
        "id": "pi_3PBk1c",
        "object": "payment_intent",
        "amount": 2000,
        "amount_received": 2000,
        "currency": "usd",
        "customer": "cus_Q1pX",
        "metadata": {},
        "status": "succeeded",
        "created": T - 12,
        **changes,
    }


def stripe(
    server: Server, body: bytes, *, secret: str = STRIPE_SECRET, at: float | None = None
) -> httpx.Response:
    stamp = int(time.time() if at is None else at)
    return post(
        server, "/v1/webhooks/stripe", body, {"Stripe-Signature": sign_stripe_payload(body, secret, stamp)}
    )


def test_stripe_payment_stored_once(server: Server) -> None:
    body = stripe_event(
        "payment_intent.succeeded",
        payment_intent(receipt_email="ada@example.com", shipping={"name": "Ada L", "phone": "+1 555 0100"}),
    )
    first = stripe(server, body)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "status": "accepted",
        "events": [{"event_id": "stripe:pi_3PBk1c", "status": "accepted"}],
    }
    # Stripe redelivers (new signature, same body) and sends the intent again as another event
    assert stripe(server, body).json()["status"] == "duplicate"
    other = stripe_event("payment_intent.succeeded", payment_intent(), event_id="evt_2")
    assert stripe(server, other, secret=STRIPE_OLD_SECRET).json()["status"] == "duplicate"
    (row,) = stored(server)
    assert (row["customer_id"], row["event_type"], row["amount_minor"], row["order_id"], row["source"]) == (
        "cus_Q1pX",
        "purchase",
        2000,
        "pi_3PBk1c",
        "stripe",
    )
    assert row["occurred_at"] == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    # a refund of the same payment
    charge = {
        "id": "ch_1",
        "object": "charge",
        "amount": 2000,
        "amount_refunded": 500,
        "currency": "usd",
        "customer": "cus_Q1pX",
        "payment_intent": "pi_3PBk1c",
        "metadata": {},
        "created": T,
    }
    refund = stripe_event(
        "charge.refunded", charge, event_id="evt_3", previous_attributes={"amount_refunded": 0}
    )
    assert stripe(server, refund).json()["status"] == "accepted"
    assert stripe(server, refund).json()["status"] == "duplicate"
    profile = customer(server, "cus_Q1pX")
    assert (profile["purchases"], profile["monetary"]) == (1, "15.00")
    assert metric(server, "rfmflow_events_ingested_total", source="stripe") == 2
    traits = profile_of(server, "cus_Q1pX")
    assert (traits["email"], traits["name"], traits["phone"], traits["source"]) == (
        "ada@example.com",
        "Ada L",
        "+1 555 0100",
        "stripe",
    )
    assert metric(server, "rfmflow_events_duplicate_total", source="stripe") == 3


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("tampered", "signature_mismatch"),
        ("wrong secret", "signature_mismatch"),
        ("stale", "timestamp_out_of_tolerance"),
        ("missing", "missing_signature"),
        ("malformed", "malformed_signature"),
    ],
)
def test_stripe_bad_signatures_are_400(server: Server, case: str, code: str) -> None:
    body = stripe_event("payment_intent.succeeded", payment_intent())
    now = int(time.time())
    headers = {
        "tampered": {"Stripe-Signature": sign_stripe_payload(body, STRIPE_SECRET, now)},
        "wrong secret": {"Stripe-Signature": sign_stripe_payload(body, "whsec_somebody_else", now)},
        "stale": {"Stripe-Signature": sign_stripe_payload(body, STRIPE_SECRET, now - 600)},
        "missing": {},
        "malformed": {"Stripe-Signature": "v1=abc"},
    }[case]
    sent = body.replace(b"2000", b"9000") if case == "tampered" else body
    response = post(server, "/v1/webhooks/stripe", sent, headers)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code and "Stripe-Signature" in response.json()["detail"]
    assert count_rows(server.engine, "events") == 0
    assert metric(server, "rfmflow_webhook_signature_failures_total", source="stripe", code=code) == 1


def test_stripe_ignored_unreadable_and_rejected(server: Server) -> None:
    ignored = stripe(server, stripe_event("customer.created", {"id": "cus_1", "object": "customer"}))
    assert ignored.status_code == 200 and ignored.json()["status"] == "ignored"
    assert "customer.created" in ignored.json()["reason"] and ignored.json()["events"] == []
    unreadable = stripe(
        server, stripe_event("payment_intent.succeeded", payment_intent(amount_received="20"))
    )
    assert unreadable.status_code == 422
    assert unreadable.json()["detail"][0]["loc"] == ["body", "data", "object", "amount_received"]
    euro = stripe(server, stripe_event("payment_intent.succeeded", payment_intent(currency="eur")))
    assert euro.status_code == 422 and euro.json()["status"] == "rejected"
    (error,) = euro.json()["detail"]
    assert error["loc"] == ["event", 0, "currency"] and "EUR" in error["msg"]
    not_json = stripe(server, b"{not json")
    assert not_json.status_code == 400 and not_json.json()["code"] == "invalid_json"
    assert count_rows(server.engine, "events") == 0
    assert metric(server, "rfmflow_events_ignored_total", source="stripe") == 1


def test_concurrent_redeliveries_store_once(server: Server) -> None:
    body = stripe_event("payment_intent.succeeded", payment_intent())
    barrier = threading.Barrier(6)
    statuses: list[str] = []

    def deliver() -> None:
        barrier.wait()
        statuses.append(stripe(server, body).json()["status"])

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == ["accepted"] + ["duplicate"] * 5
    assert count_rows(server.engine, "events") == 1
    assert customer(server, "cus_Q1pX")["purchases"] == 1


# --- Shopify --------------------------------------------------------------------------------
def shopify_order(**changes: Any) -> dict[str, Any]:
    return {
        "id": ORDER_ID,
        "name": "#9999",
        "created_at": "2024-05-01T09:30:12-04:00",
        "currency": "USD",
        "email": "jon@example.com",
        "financial_status": "paid",
        "total_price": "403.00",
        "test": False,
        "customer": {"id": SHOPIFY_CUSTOMER, "email": "jon@example.com"},
        **changes,
    }


def shopify_refund(order_id: int = ORDER_ID, refund_id: int = 509562969) -> dict[str, Any]:
    return {
        "id": refund_id,
        "order_id": order_id,
        "created_at": "2024-05-03T10:00:00-04:00",
        "processed_at": "2024-05-03T10:00:00-04:00",
        "transactions": [
            {"id": 1, "kind": "refund", "status": "success", "amount": "41.94", "currency": "USD"},
            {"id": 2, "kind": "refund", "status": "failure", "amount": "99.00", "currency": "USD"},
        ],
    }


def shopify(
    server: Server, topic: str | None, payload: Any, *, secret: str = SHOPIFY_SECRET, tamper: bool = False
) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {
        "X-Shopify-Hmac-Sha256": sign_shopify_payload(body, secret),
        "X-Shopify-Shop-Domain": "s.myshopify.com",
    }
    if topic is not None:
        headers["X-Shopify-Topic"] = topic
    if tamper:
        body = body.replace(b"403.00", b"4.00")
    return post(server, "/v1/webhooks/shopify", body, headers)


def test_shopify_order_and_refund(server: Server) -> None:
    # a refund of an order rfmflow has not seen is ignored: Shopify's refund names no customer
    early = shopify(server, "refunds/create", shopify_refund(order_id=1))
    assert early.status_code == 200 and early.json()["status"] == "ignored"
    assert "customer is unknown" in early.json()["reason"]

    first = shopify(server, "orders/create", shopify_order())
    assert first.status_code == 200 and first.json()["status"] == "accepted"
    assert shopify(server, "orders/create", shopify_order()).json()["status"] == "duplicate"
    refund = shopify(server, "refunds/create", shopify_refund())
    assert refund.json() == {
        "status": "accepted",
        "events": [{"event_id": "shopify:refund:509562969", "status": "accepted"}],
    }
    assert shopify(server, "refunds/create", shopify_refund()).json()["status"] == "duplicate"
    rows = {r["event_type"]: r for r in stored(server)}
    assert rows["refund"]["customer_id"] == str(SHOPIFY_CUSTOMER) == rows["purchase"]["customer_id"]
    assert rows["refund"]["amount_minor"] == -4194 and rows["refund"]["order_id"] == str(ORDER_ID)
    profile = customer(server, str(SHOPIFY_CUSTOMER))
    assert (profile["purchases"], profile["monetary"]) == (1, "361.06")
    assert profile_of(server, str(SHOPIFY_CUSTOMER))["email"] == "jon@example.com"
    assert all(r["source"] == "shopify" for r in rows.values())


def test_shopify_refusals(server: Server) -> None:
    tampered = shopify(server, "orders/create", shopify_order(), tamper=True)
    wrong = shopify(server, "orders/create", shopify_order(), secret="shpss_not_the_secret")
    unsigned = post(server, "/v1/webhooks/shopify", b"{}", {"X-Shopify-Topic": "orders/create"})
    assert [r.status_code for r in (tampered, wrong, unsigned)] == [400, 400, 400]
    assert [r.json()["code"] for r in (tampered, wrong, unsigned)] == [
        "signature_mismatch",
        "signature_mismatch",
        "missing_signature",
    ]
    unused = shopify(server, "customers/create", {"id": 1, "email": "a@example.com"})
    assert unused.status_code == 200 and unused.json()["status"] == "ignored"
    no_topic = shopify(server, None, shopify_order())
    assert no_topic.status_code == 422 and no_topic.json()["detail"][0]["loc"] == [
        "header",
        "X-Shopify-Topic",
    ]
    assert count_rows(server.engine, "events") == 0


# --- WooCommerce ----------------------------------------------------------------------------
def woo_order(**changes: Any) -> dict[str, Any]:
    return {
        "id": 727,
        "number": "727",
        "status": "processing",
        "currency": "USD",
        "date_created_gmt": "2024-05-01T15:30:12",
        "date_modified_gmt": "2024-05-01T15:30:14",
        "total": "29.35",
        "customer_id": 26,
        "billing": {"email": "john.doe@example.com", "first_name": "John", "last_name": "Doe"},
        "refunds": [],
        **changes,
    }


def woo(server: Server, topic: str, payload: Any, *, tamper: bool = False) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {
        "X-WC-Webhook-Signature": sign_woocommerce_payload(body, WOO_SECRET),
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Source": "https://shop.example.com/",
    }
    if tamper:
        body = body.replace(b"29.35", b"2.35")
    return post(server, "/v1/webhooks/woocommerce", body, headers)


def test_woocommerce_orders(server: Server) -> None:
    ping = post(
        server,
        "/v1/webhooks/woocommerce",
        b"webhook_id=12",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert ping.status_code == 200 and ping.json()["status"] == "ignored"
    pending = woo(server, "order.created", woo_order(status="pending"))
    assert pending.status_code == 200 and pending.json()["status"] == "ignored"
    paid = woo(server, "order.updated", woo_order())
    assert paid.json() == {
        "status": "accepted",
        "events": [{"event_id": "woo:order:727", "status": "accepted"}],
    }
    assert woo(server, "order.updated", woo_order()).json()["status"] == "duplicate"
    refunded = woo(
        server, "order.updated", woo_order(status="refunded", refunds=[{"id": 730, "total": "-9.35"}])
    )
    assert refunded.json()["events"] == [
        {"event_id": "woo:order:727", "status": "duplicate"},
        {"event_id": "woo:refund:730", "status": "accepted"},
    ]
    assert refunded.json()["status"] == "accepted"
    assert (customer(server, "26")["purchases"], customer(server, "26")["monetary"]) == (1, "20.00")
    assert (profile_of(server, "26")["email"], profile_of(server, "26")["name"]) == (
        "john.doe@example.com",
        "John Doe",
    )
    tampered = woo(server, "order.created", woo_order(id=728), tamper=True)
    assert tampered.status_code == 400 and tampered.json()["code"] == "signature_mismatch"
    product = woo(server, "product.created", {"id": 5, "name": "Mug"})
    assert product.status_code == 200 and product.json()["status"] == "ignored"
    assert count_rows(server.engine, "events") == 2
    assert metric(server, "rfmflow_events_ignored_total", source="woocommerce") == 3


# --- configuration --------------------------------------------------------------------------
def test_unconfigured_webhooks_are_404(server: Server, database: Database, tmp_path: Path) -> None:
    bare = ThreadedServer(build_app(database.settings(tmp_path), engine=server.engine))
    url = bare.start()
    try:
        answers = {
            name: httpx.post(f"{url}/v1/webhooks/{name}", content=b"{}", timeout=30)
            for name in ("stripe", "shopify", "woocommerce")
        }
    finally:
        bare.stop()
    for name, response in answers.items():
        assert response.status_code == 404, name
        assert response.json()["code"] == "not_configured"
        assert f"RFMFLOW_{name.upper()}_WEBHOOK_SECRET" in response.json()["detail"]


def test_webhook_body_limit(server: Server) -> None:
    response = post(server, "/v1/webhooks/shopify", b"{" + b" " * (1024 * 1024 + 10) + b"}", {})
    assert response.status_code == 413
    assert count_rows(server.engine, "events") == 0

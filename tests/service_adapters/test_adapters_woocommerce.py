"""WooCommerce: X-WC-Webhook-Signature and order webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from rfmflow.service.adapters import (
    AdapterError,
    MalformedSignatureError,
    MissingSignatureError,
    SignatureMismatchError,
    from_woocommerce,
    is_woocommerce_ping,
    verify_woocommerce_signature,
)
from rfmflow.service.adapters.woocommerce import sign_woocommerce_payload

SECRET = "wc-webhook-secret-Zq7!x"


def _signature(payload: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), payload, hashlib.sha256).digest()).decode()


def order(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": 727,
        "parent_id": 0,
        "number": "727",
        "order_key": "wc_order_58d2d042d1d",
        "created_via": "checkout",
        "version": "8.8.2",
        "status": "processing",
        "currency": "EUR",
        "date_created": "2024-05-01T17:30:12",
        "date_created_gmt": "2024-05-01T15:30:12",
        "date_modified": "2024-05-01T17:30:14",
        "date_modified_gmt": "2024-05-01T15:30:14",
        "discount_total": "0.00",
        "discount_tax": "0.00",
        "shipping_total": "10.00",
        "shipping_tax": "0.00",
        "cart_tax": "1.35",
        "total": "29.35",
        "total_tax": "1.35",
        "prices_include_tax": False,
        "customer_id": 26,
        "customer_ip_address": "",
        "customer_user_agent": "",
        "customer_note": "",
        "billing": {
            "first_name": "John",
            "last_name": "Doe",
            "address_1": "969 Market",
            "city": "San Francisco",
            "state": "CA",
            "postcode": "94103",
            "country": "US",
            "email": "John.Doe@Example.com",
            "phone": "(555) 555-5555",
        },
        "shipping": {"first_name": "John", "last_name": "Doe", "country": "US"},
        "payment_method": "bacs",
        "payment_method_title": "Direct Bank Transfer",
        "transaction_id": "",
        "date_paid": "2024-05-01T17:30:14",
        "date_paid_gmt": "2024-05-01T15:30:14",
        "date_completed": None,
        "date_completed_gmt": None,
        "cart_hash": "",
        "meta_data": [],
        "line_items": [
            {
                "id": 315,
                "name": "Woo Single #1",
                "product_id": 93,
                "quantity": 2,
                "subtotal": "6.00",
                "total": "6.00",
            },
            {
                "id": 316,
                "name": "Ship Your Idea",
                "product_id": 22,
                "quantity": 1,
                "subtotal": "12.00",
                "total": "12.00",
            },
        ],
        "shipping_lines": [
            {"id": 317, "method_title": "Flat Rate", "method_id": "flat_rate", "total": "10.00"}
        ],
        "refunds": [],
    }
    body.update(changes)
    return body


# --- signature -------------------------------------------------------------------------------


def test_a_valid_signature_passes() -> None:
    payload = json.dumps(order()).encode()
    verify_woocommerce_signature(payload, _signature(payload), SECRET)
    assert sign_woocommerce_payload(payload, SECRET) == _signature(payload)


def test_tampered_body_wrong_secret_missing_and_malformed() -> None:
    payload = json.dumps(order()).encode()
    header = _signature(payload)
    with pytest.raises(SignatureMismatchError, match="X-WC-Webhook-Signature"):
        verify_woocommerce_signature(payload.replace(b"29.35", b"2.35"), header, SECRET)
    with pytest.raises(SignatureMismatchError):
        verify_woocommerce_signature(payload, _signature(payload, "other"), SECRET)
    with pytest.raises(MissingSignatureError):
        verify_woocommerce_signature(payload, None, SECRET)
    with pytest.raises(MalformedSignatureError):
        verify_woocommerce_signature(payload, "%%%", SECRET)


def test_the_ping_sent_when_a_webhook_is_saved() -> None:
    assert is_woocommerce_ping(b"webhook_id=15")
    assert not is_woocommerce_ping(json.dumps(order()).encode())


# --- orders ----------------------------------------------------------------------------------------


def test_order_created_is_a_purchase() -> None:
    (event,) = from_woocommerce("order.created", order()).events
    assert event.event_id == "woo:order:727"
    assert event.customer_id == "26"
    assert event.type == "purchase"
    assert event.amount == Decimal("29.35") and event.currency == "EUR"
    assert event.occurred_at == datetime(2024, 5, 1, 15, 30, 12, tzinfo=UTC)  # *_gmt is UTC
    assert event.order_id == "727"
    assert event.properties == {
        "source": "woocommerce",
        "topic": "order.created",
        "status": "processing",
        "number": "727",
    }


def test_a_guest_is_the_billing_email() -> None:
    (event,) = from_woocommerce("order.created", order(customer_id=0)).events
    assert event.customer_id == "john.doe@example.com"


def test_a_guest_without_an_email_is_ignored() -> None:
    result = from_woocommerce("order.created", order(customer_id=0, billing={"email": ""}))
    assert result.events == [] and result.ignored == "order 727 is a guest order without billing.email"


def test_an_unpaid_order_is_counted_when_an_update_marks_it_paid() -> None:
    created = from_woocommerce("order.created", order(status="pending", date_paid_gmt=None))
    assert created.events == [] and created.ignored is not None and "'pending'" in created.ignored
    paid = from_woocommerce("order.updated", order(status="processing"))
    completed = from_woocommerce("order.updated", order(status="completed"))
    assert paid.events[0].event_id == completed.events[0].event_id == "woo:order:727"


@pytest.mark.parametrize("status", ["pending", "on-hold", "failed", "cancelled", "checkout-draft", "trash"])
def test_unpaid_statuses_are_ignored(status: str) -> None:
    result = from_woocommerce("order.created", order(status=status))
    assert result.events == [] and result.ignored is not None


def test_the_paid_statuses_can_be_configured() -> None:
    (event,) = from_woocommerce("order.created", order(status="on-hold"), paid_statuses=("on-hold",)).events
    assert event.type == "purchase"


def test_refunds_listed_on_an_order_become_refund_events() -> None:
    updated = order(
        status="completed",
        date_modified_gmt="2024-05-04T08:00:00",
        refunds=[
            {"id": 733, "reason": "damaged", "total": "-10.00"},
            {"id": 734, "reason": "", "total": "-5.5"},
        ],
    )
    purchase, first, second = from_woocommerce("order.updated", updated).events
    assert purchase.event_id == "woo:order:727"
    assert (first.event_id, first.type, first.amount) == ("woo:refund:733", "refund", Decimal("-10.00"))
    assert second.amount == Decimal("-5.5") and second.currency == "EUR"
    assert first.occurred_at == datetime(2024, 5, 4, 8, tzinfo=UTC)
    assert first.order_id == "727" and first.customer_id == "26"


def test_a_fully_refunded_order_is_a_purchase_and_its_refund() -> None:
    refunded = order(status="refunded", refunds=[{"id": 740, "reason": "", "total": "-29.35"}])
    events = from_woocommerce("order.updated", refunded).events
    assert sum(e.amount or 0 for e in events) == 0


def test_the_gmt_date_may_carry_a_zone() -> None:
    (event,) = from_woocommerce("order.created", order(date_created_gmt="2024-05-01T17:30:12+02:00")).events
    assert event.occurred_at == datetime(2024, 5, 1, 15, 30, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"total": "29,35"}, r"^total: not a number: '29,35'"),
        ({"currency": "EURO"}, r"^currency: not a three-letter currency code"),
        ({"date_created_gmt": None}, r"^date_created_gmt: missing"),
        ({"date_created_gmt": "01/05/2024"}, r"^date_created_gmt: not an ISO 8601 timestamp"),
        ({"customer_id": {"id": 1}}, r"^customer_id: not an identifier"),
        ({"refunds": [{"id": 1, "total": "x"}]}, r"^refunds\[0\]\.total: not a number: 'x'"),
        ({"refunds": "none"}, r"^refunds: not an array"),
        ({"billing": "x", "customer_id": 0}, r"^billing: not a JSON object"),
    ],
)
def test_bad_order_fields_are_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(AdapterError, match=message):
        from_woocommerce("order.created", order(**changes))


@pytest.mark.parametrize(
    "topic", ["order.deleted", "product.created", "customer.created", "action.woocommerce_x"]
)
def test_other_topics_are_ignored(topic: str) -> None:
    result = from_woocommerce(topic, order())
    assert result.events == [] and result.ignored is not None and topic in result.ignored


def test_topic_is_required() -> None:
    with pytest.raises(AdapterError, match=r"^X-WC-Webhook-Topic: missing"):
        from_woocommerce("", order())

"""Stripe: the Stripe-Signature scheme and payment / refund events."""

from __future__ import annotations

import copy
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
    SignatureError,
    SignatureMismatchError,
    TimestampToleranceError,
    from_stripe,
    verify_stripe_signature,
)
from rfmflow.service.adapters.stripe import sign_stripe_payload

SECRET = "whsec_test_5f1c0d2e9a8b7c6d"
T = 1714557600  # 2024-05-01T10:00:00Z


def _v1(payload: bytes, secret: str = SECRET, t: int = T) -> str:
    """Stripe's v1 signature, computed here independently of the module under test."""
    return hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()


def payment_intent_succeeded(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": "evt_3PBk1cLkdIwHu7ix0qLmWfXa",
        "object": "event",
        "api_version": "2024-04-10",
        "created": T,
        "data": {
            "object": {
                "id": "pi_3PBk1cLkdIwHu7ix1nJvQ0Qb",
                "object": "payment_intent",
                "amount": 2000,
                "amount_capturable": 0,
                "amount_received": 2000,
                "capture_method": "automatic",
                "created": T - 12,
                "currency": "usd",
                "customer": "cus_Q1pXzTq9mH2kLd",
                "description": None,
                "latest_charge": "ch_3PBk1cLkdIwHu7ix1Xk2r9Zy",
                "livemode": False,
                "metadata": {},
                "payment_method": "pm_1PBk1bLkdIwHu7ixo4Y5yH2f",
                "payment_method_types": ["card"],
                "receipt_email": None,
                "status": "succeeded",
            }
        },
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": "req_a1B2c3D4e5F6g7", "idempotency_key": "7c9d1f0e-1111-4a2b-9c3d-5e6f7a8b9c0d"},
        "type": "payment_intent.succeeded",
    }
    event["data"]["object"].update(changes)
    return event


def charge_refunded(amount_refunded: int, previous: int | None, **changes: Any) -> dict[str, Any]:
    """A charge.refunded event as API versions since 2022-11-15 send it (no refunds list)."""
    event: dict[str, Any] = {
        "id": f"evt_3PBk1cLkdIwHu7ix1refund{amount_refunded}",
        "object": "event",
        "api_version": "2024-04-10",
        "created": T + 86400,
        "data": {
            "object": {
                "id": "ch_3PBk1cLkdIwHu7ix1Xk2r9Zy",
                "object": "charge",
                "amount": 2000,
                "amount_captured": 2000,
                "amount_refunded": amount_refunded,
                "billing_details": {"email": "Buyer@Example.com", "name": "Jenny Rosen"},
                "captured": True,
                "created": T - 10,
                "currency": "usd",
                "customer": "cus_Q1pXzTq9mH2kLd",
                "livemode": False,
                "metadata": {},
                "paid": True,
                "payment_intent": "pi_3PBk1cLkdIwHu7ix1nJvQ0Qb",
                "receipt_email": None,
                "refunded": amount_refunded == 2000,
                "status": "succeeded",
            }
        },
        "livemode": False,
        "type": "charge.refunded",
    }
    if previous is not None:
        event["data"]["previous_attributes"] = {"amount_refunded": previous, "refunded": False}
    event["data"]["object"].update(changes)
    return event


# --- signatures ------------------------------------------------------------------------------


def test_a_valid_signature_returns_its_timestamp() -> None:
    payload = json.dumps(payment_intent_succeeded()).encode()
    header = f"t={T},v1={_v1(payload)},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
    assert verify_stripe_signature(payload, header, SECRET, now=T + 5) == T
    assert sign_stripe_payload(payload, SECRET, T) == f"t={T},v1={_v1(payload)}"


def test_any_of_several_v1_signatures_may_match() -> None:
    payload = b'{"id": "evt_1"}'
    header = f"t={T},v1={_v1(payload, 'whsec_old')},v1={_v1(payload)}"
    assert verify_stripe_signature(payload, header, SECRET, now=T) == T


def test_secret_rotation_accepts_either_secret() -> None:
    payload = b'{"id": "evt_1"}'
    header = f"t={T},v1={_v1(payload, 'whsec_old')}"
    assert verify_stripe_signature(payload, header, ["whsec_new", "whsec_old"], now=T) == T


def test_a_tampered_body_fails() -> None:
    payload = b'{"amount_received": 2000}'
    header = f"t={T},v1={_v1(payload)}"
    with pytest.raises(SignatureMismatchError, match="no v1 signature"):
        verify_stripe_signature(b'{"amount_received": 9000}', header, SECRET, now=T)


def test_the_wrong_secret_fails() -> None:
    payload = b"{}"
    with pytest.raises(SignatureMismatchError):
        verify_stripe_signature(payload, f"t={T},v1={_v1(payload, 'whsec_other')}", SECRET, now=T)


def test_a_changed_timestamp_fails_the_signature() -> None:
    payload = b"{}"
    with pytest.raises(SignatureMismatchError):
        verify_stripe_signature(payload, f"t={T + 1},v1={_v1(payload)}", SECRET, now=T)


def test_stale_and_future_timestamps_beyond_the_tolerance() -> None:
    payload = b"{}"
    header = f"t={T},v1={_v1(payload)}"
    assert verify_stripe_signature(payload, header, SECRET, now=T + 300) == T  # the edge is inside
    assert verify_stripe_signature(payload, header, SECRET, now=T - 300) == T
    with pytest.raises(TimestampToleranceError, match="301 s old") as stale:
        verify_stripe_signature(payload, header, SECRET, now=T + 301)
    assert stale.value.stale and stale.value.code == "timestamp_out_of_tolerance"
    with pytest.raises(TimestampToleranceError, match="in the future") as future:
        verify_stripe_signature(payload, header, SECRET, now=datetime.fromtimestamp(T - 301, tz=UTC))
    assert not future.value.stale
    assert verify_stripe_signature(payload, header, SECRET, tolerance_s=None, now=T + 10**6) == T
    assert verify_stripe_signature(payload, header, SECRET, tolerance_s=3600, now=T + 3000) == T


def test_a_stale_timestamp_is_distinct_from_a_bad_signature() -> None:
    payload = b"{}"
    with pytest.raises(SignatureMismatchError):  # a forged, old header is reported as forged
        verify_stripe_signature(payload, f"t={T},v1={'0' * 64}", SECRET, now=T + 10**6)


@pytest.mark.parametrize("header", [None, "", "   "])
def test_a_missing_header(header: str | None) -> None:
    with pytest.raises(MissingSignatureError, match="Stripe-Signature header is missing"):
        verify_stripe_signature(b"{}", header, SECRET, now=T)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("garbage", "key=value"),
        (f"v1={'a' * 64}", "exactly one numeric timestamp"),
        (f"t=abc,v1={'a' * 64}", "exactly one numeric timestamp"),
        (f"t={T},t={T},v1={'a' * 64}", "exactly one numeric timestamp"),
        (f"t={T}", "no v1 signature"),
        (f"t={T},v0={'a' * 64}", "no v1 signature"),
        (f"t={T},v1=ä", "non-ASCII"),
        (f"t=-{T},v1={'a' * 64}", "exactly one numeric timestamp"),
    ],
)
def test_malformed_headers(header: str, message: str) -> None:
    with pytest.raises(MalformedSignatureError, match=message) as caught:
        verify_stripe_signature(b"{}", header, SECRET, now=T)
    assert isinstance(caught.value, SignatureError)


def test_the_body_must_be_the_raw_bytes() -> None:
    with pytest.raises(TypeError, match="raw request body"):
        verify_stripe_signature("{}", f"t={T},v1={'a' * 64}", SECRET, now=T)  # type: ignore[arg-type]


# --- payment_intent.succeeded ------------------------------------------------------------------


def test_payment_intent_succeeded_is_a_purchase() -> None:
    result = from_stripe(payment_intent_succeeded())
    assert result.ignored is None and result.identify is None
    (event,) = result.events
    assert event.event_id == "stripe:pi_3PBk1cLkdIwHu7ix1nJvQ0Qb"
    assert event.customer_id == "cus_Q1pXzTq9mH2kLd"
    assert event.type == "purchase"
    assert event.amount == Decimal("20.00") and event.currency == "USD"
    assert event.occurred_at == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert event.order_id == "pi_3PBk1cLkdIwHu7ix1nJvQ0Qb"
    assert event.properties == {
        "source": "stripe",
        "stripe_event": "evt_3PBk1cLkdIwHu7ix0qLmWfXa",
        "payment_intent": "pi_3PBk1cLkdIwHu7ix1nJvQ0Qb",
        "livemode": False,
    }


def test_a_redelivery_as_a_new_stripe_event_is_the_same_event() -> None:
    first = payment_intent_succeeded()
    again = copy.deepcopy(first)
    again["id"] = "evt_3PBk1cLkdIwHu7ix0DIFFERENT"
    again["created"] = T + 3600
    assert from_stripe(first).events[0].event_id == from_stripe(again).events[0].event_id


@pytest.mark.parametrize(
    ("code", "minor", "expected"),
    [("jpy", 5000, Decimal(5000)), ("krw", 12000, Decimal(12000)), ("kwd", 12340, Decimal("12.340"))],
)
def test_zero_and_three_decimal_currencies(code: str, minor: int, expected: Decimal) -> None:
    (event,) = from_stripe(
        payment_intent_succeeded(currency=code, amount=minor, amount_received=minor)
    ).events
    assert event.amount == expected and event.currency == code.upper()


def test_amount_received_wins_over_amount() -> None:
    (event,) = from_stripe(payment_intent_succeeded(amount=2500, amount_received=2000)).events
    assert event.amount == Decimal("20.00")
    (event,) = from_stripe(payment_intent_succeeded(amount=2500, amount_received=None)).events
    assert event.amount == Decimal("25.00")


def test_customer_resolution_order() -> None:
    meta = payment_intent_succeeded(metadata={"customer_id": "shop-42", "order_id": "A-1001"})
    (event,) = from_stripe(meta).events
    assert (event.customer_id, event.order_id) == ("shop-42", "A-1001")
    (event,) = from_stripe(meta, metadata_customer_key="user").events
    assert event.customer_id == "cus_Q1pXzTq9mH2kLd"
    (event,) = from_stripe(
        payment_intent_succeeded(customer={"id": "cus_expanded", "object": "customer"})
    ).events
    assert event.customer_id == "cus_expanded"
    guest = payment_intent_succeeded(customer=None, receipt_email="  Guest@Example.COM")
    assert from_stripe(guest).events[0].customer_id == "guest@example.com"


def test_a_payment_without_any_customer_is_ignored_not_rejected() -> None:
    result = from_stripe(payment_intent_succeeded(customer=None, receipt_email=None))
    assert result.events == []
    assert result.ignored is not None and "pi_3PBk1cLkdIwHu7ix1nJvQ0Qb has no customer" in result.ignored


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"amount_received": "20.00"}, r"^data\.object\.amount_received: not an integer amount"),
        ({"amount_received": None, "amount": None}, r"^data\.object\.amount: missing"),
        ({"currency": None}, r"^data\.object\.currency: missing"),
        ({"currency": "dollars"}, r"^data\.object\.currency: not a three-letter"),
        ({"id": None}, r"^data\.object\.id: missing"),
    ],
)
def test_bad_payment_fields_are_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(AdapterError, match=message):
        from_stripe(payment_intent_succeeded(**changes))


def test_envelope_errors() -> None:
    with pytest.raises(AdapterError, match=r"^body: not a JSON object"):
        from_stripe([])
    with pytest.raises(AdapterError, match=r"^type: missing"):
        from_stripe({"data": {}})
    with pytest.raises(AdapterError, match=r"^data\.object: not a JSON object"):
        from_stripe({"type": "payment_intent.succeeded", "data": {"object": None}})
    bad_time = payment_intent_succeeded()
    bad_time["created"] = "yesterday"
    with pytest.raises(AdapterError, match=r"^created: not a Unix timestamp"):
        from_stripe(bad_time)


@pytest.mark.parametrize(
    "kind",
    ["payment_intent.created", "customer.created", "invoice.paid", "refund.created", "charge.succeeded"],
)
def test_other_event_types_are_ignored(kind: str) -> None:
    result = from_stripe({"id": "evt_1", "type": kind, "data": {"object": {}}})
    assert result.events == [] and result.ignored is not None and kind in result.ignored


# --- charge.refunded -----------------------------------------------------------------------------


def test_partial_refunds_without_a_refund_list_count_each_increase_once() -> None:
    (first,) = from_stripe(charge_refunded(500, previous=0)).events
    assert first.type == "refund" and first.amount == Decimal("-5.00") and first.currency == "USD"
    assert first.event_id == "stripe:ch_3PBk1cLkdIwHu7ix1Xk2r9Zy:refunded:500"
    assert first.customer_id == "cus_Q1pXzTq9mH2kLd"
    assert first.order_id == "pi_3PBk1cLkdIwHu7ix1nJvQ0Qb"  # the purchase's order
    assert first.occurred_at == datetime(2024, 5, 2, 10, tzinfo=UTC)
    (second,) = from_stripe(charge_refunded(2000, previous=500)).events
    assert second.amount == Decimal("-15.00")
    assert second.event_id == "stripe:ch_3PBk1cLkdIwHu7ix1Xk2r9Zy:refunded:2000"
    redelivered = charge_refunded(500, previous=0)
    redelivered["id"] = "evt_another_delivery"
    assert from_stripe(redelivered).events[0].event_id == first.event_id


def test_a_refund_without_previous_attributes_takes_the_whole_refunded_amount() -> None:
    (event,) = from_stripe(charge_refunded(2000, previous=None)).events
    assert event.amount == Decimal("-20.00")


def test_no_increase_is_ignored() -> None:
    result = from_stripe(charge_refunded(500, previous=500))
    assert result.events == [] and result.ignored is not None and "did not increase" in result.ignored


def test_listed_refunds_become_one_event_each() -> None:
    event = charge_refunded(1500, previous=500)
    event["data"]["object"]["refunds"] = {
        "object": "list",
        "data": [
            {
                "id": "re_2",
                "object": "refund",
                "amount": 1000,
                "currency": "usd",
                "created": T + 7200,
                "status": "succeeded",
            },
            {
                "id": "re_x",
                "object": "refund",
                "amount": 700,
                "currency": "usd",
                "created": T + 5000,
                "status": "failed",
            },
            {
                "id": "re_1",
                "object": "refund",
                "amount": 500,
                "currency": "usd",
                "created": T + 3600,
                "status": "succeeded",
            },
        ],
        "has_more": False,
        "total_count": 3,
        "url": "/v1/charges/ch_3PBk1cLkdIwHu7ix1Xk2r9Zy/refunds",
    }
    events = from_stripe(event).events
    assert [(e.event_id, e.amount) for e in events] == [
        ("stripe:re_2", Decimal("-10.00")),
        ("stripe:re_1", Decimal("-5.00")),
    ]
    assert events[1].occurred_at == datetime(2024, 5, 1, 11, tzinfo=UTC)
    assert events[0].properties is not None and events[0].properties["refund"] == "re_2"


def test_a_refund_list_with_only_failed_refunds_is_ignored() -> None:
    event = charge_refunded(500, previous=0)
    event["data"]["object"]["refunds"] = {
        "data": [{"id": "re_x", "amount": 500, "currency": "usd", "created": T, "status": "failed"}]
    }
    result = from_stripe(event)
    assert result.events == [] and result.ignored is not None


def test_refund_customer_falls_back_to_billing_email_and_order_to_metadata() -> None:
    event = charge_refunded(500, previous=0, customer=None, metadata={"order_id": "A-1001"})
    (refund,) = from_stripe(event).events
    assert refund.customer_id == "buyer@example.com" and refund.order_id == "A-1001"
    nobody = charge_refunded(500, previous=0, customer=None, billing_details={"email": None})
    assert from_stripe(nobody).ignored is not None


def test_bad_refund_amounts_are_named() -> None:
    with pytest.raises(AdapterError, match=r"^data\.object\.amount_refunded: not an integer amount"):
        from_stripe(charge_refunded("5.00", previous=0))  # type: ignore[arg-type]

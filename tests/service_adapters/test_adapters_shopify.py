"""Shopify: X-Shopify-Hmac-Sha256 and the orders/create and refunds/create topics."""

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
    from_shopify,
    verify_shopify_hmac,
)
from rfmflow.service.adapters.shopify import sign_shopify_payload

SECRET = "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"
ORDER_ID = 820982911946154508
CUSTOMER_ID = 115310627314723954


def _hmac_b64(payload: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), payload, hashlib.sha256).digest()).decode()


def order(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": ORDER_ID,
        "admin_graphql_api_id": f"gid://shopify/Order/{ORDER_ID}",
        "app_id": None,
        "browser_ip": None,
        "buyer_accepts_marketing": True,
        "cancel_reason": None,
        "cancelled_at": None,
        "confirmed": True,
        "contact_email": "jon@example.com",
        "created_at": "2024-05-01T09:30:12-04:00",
        "currency": "USD",
        "current_total_price": "398.00",
        "email": "jon@example.com",
        "financial_status": "paid",
        "name": "#9999",
        "order_number": 1234,
        "presentment_currency": "USD",
        "processed_at": "2024-05-01T09:30:12-04:00",
        "subtotal_price": "388.00",
        "tags": "",
        "test": False,
        "total_discounts": "20.00",
        "total_price": "403.00",
        "total_price_set": {
            "shop_money": {"amount": "403.00", "currency_code": "USD"},
            "presentment_money": {"amount": "403.00", "currency_code": "USD"},
        },
        "total_tax": "0.00",
        "updated_at": "2024-05-01T09:30:12-04:00",
        "customer": {
            "id": CUSTOMER_ID,
            "email": "john@example.com",
            "created_at": None,
            "first_name": "John",
            "last_name": "Smith",
            "state": "disabled",
            "verified_email": True,
            "currency": "USD",
        },
        "line_items": [
            {
                "id": 866550311766439020,
                "name": "Aviator sunglasses",
                "price": "199.00",
                "product_id": 788032119674292922,
                "quantity": 1,
                "sku": "SKU2006-001",
                "variant_id": None,
            }
        ],
        "shipping_lines": [{"id": 271878346596884015, "price": "10.00", "title": "Generic Shipping"}],
    }
    body.update(changes)
    return body


def refund(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": 890088186047892319,
        "admin_graphql_api_id": "gid://shopify/Refund/890088186047892319",
        "created_at": "2024-05-03T10:15:00-04:00",
        "note": "Things were damaged",
        "order_id": ORDER_ID,
        "processed_at": "2024-05-03T10:15:01-04:00",
        "restock": False,
        "total_duties_set": {
            "shop_money": {"amount": "0.00", "currency_code": "USD"},
            "presentment_money": {"amount": "0.00", "currency_code": "USD"},
        },
        "user_id": 548380009,
        "order_adjustments": [],
        "transactions": [
            {
                "id": 245135969042358161,
                "order_id": ORDER_ID,
                "kind": "refund",
                "gateway": "bogus",
                "status": "success",
                "message": "Bogus Gateway: Forced success",
                "created_at": "2024-05-03T10:15:01-04:00",
                "test": True,
                "parent_id": 389404469,
                "processed_at": "2024-05-03T10:15:01-04:00",
                "amount": "41.94",
                "currency": "USD",
            }
        ],
        "refund_line_items": [
            {
                "id": 487817672276298554,
                "line_item_id": 866550311766439020,
                "quantity": 1,
                "restock_type": "no_restock",
                "subtotal": 199.0,
                "total_tax": 0.0,
            }
        ],
        "duties": [],
    }
    body.update(changes)
    return body


def known_orders(order_id: str) -> str | None:
    return {str(ORDER_ID): str(CUSTOMER_ID)}.get(order_id)


# --- HMAC --------------------------------------------------------------------------------------


def test_a_valid_hmac_passes() -> None:
    payload = json.dumps(order()).encode()
    verify_shopify_hmac(payload, _hmac_b64(payload), SECRET)
    assert sign_shopify_payload(payload, SECRET) == _hmac_b64(payload)
    verify_shopify_hmac(payload, _hmac_b64(payload, "old"), ["new", "old"])


def test_tampered_body_and_wrong_secret_fail() -> None:
    payload = json.dumps(order()).encode()
    header = _hmac_b64(payload)
    with pytest.raises(SignatureMismatchError, match="X-Shopify-Hmac-Sha256 signature does not match"):
        verify_shopify_hmac(payload.replace(b"403.00", b"4.00"), header, SECRET)
    with pytest.raises(SignatureMismatchError):
        verify_shopify_hmac(payload, _hmac_b64(payload, "another-secret"), SECRET)


@pytest.mark.parametrize("header", [None, "", "  "])
def test_a_missing_header(header: str | None) -> None:
    with pytest.raises(MissingSignatureError, match="X-Shopify-Hmac-Sha256 header is missing"):
        verify_shopify_hmac(b"{}", header, SECRET)


@pytest.mark.parametrize(
    ("header", "message"),
    [("not base64!", "not base64"), (base64.b64encode(b"short").decode(), "not a base64 HMAC-SHA256 digest")],
)
def test_malformed_headers(header: str, message: str) -> None:
    with pytest.raises(MalformedSignatureError, match=message):
        verify_shopify_hmac(b"{}", header, SECRET)


def test_a_hex_digest_is_not_accepted_for_a_base64_one() -> None:
    payload = b"{}"
    hex_digest = hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()
    with pytest.raises((MalformedSignatureError, SignatureMismatchError)):
        verify_shopify_hmac(payload, hex_digest, SECRET)


# --- orders/create -------------------------------------------------------------------------------


def test_orders_create_is_a_purchase() -> None:
    result = from_shopify("orders/create", order())
    (event,) = result.events
    assert event.event_id == f"shopify:order:{ORDER_ID}"
    assert event.customer_id == str(CUSTOMER_ID)
    assert event.type == "purchase"
    assert event.amount == Decimal("403.00") and event.currency == "USD"
    assert event.occurred_at == datetime(2024, 5, 1, 13, 30, 12, tzinfo=UTC)
    assert event.order_id == str(ORDER_ID)
    assert event.properties == {
        "source": "shopify",
        "topic": "orders/create",
        "name": "#9999",
        "financial_status": "paid",
        "test": False,
    }


def test_a_duplicate_delivery_maps_to_the_same_event_id() -> None:
    first = from_shopify("orders/create", order()).events[0]
    again = from_shopify(" Orders/Create ", order(updated_at="2024-05-01T09:31:00-04:00")).events[0]
    assert first.event_id == again.event_id


def test_a_guest_checkout_is_the_order_email() -> None:
    (event,) = from_shopify("orders/create", order(customer=None, email="Guest.Buyer@Example.com")).events
    assert event.customer_id == "guest.buyer@example.com"
    (event,) = from_shopify(
        "orders/create", order(customer=None, email="", contact_email="c@example.com")
    ).events
    assert event.customer_id == "c@example.com"


def test_an_order_without_customer_or_email_is_ignored() -> None:
    result = from_shopify("orders/create", order(customer=None, email=None, contact_email=None))
    assert result.events == []
    assert result.ignored == f"order {ORDER_ID} has no customer id and no e-mail address"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"total_price": "four hundred"}, r"^total_price: not a number: 'four hundred'"),
        ({"total_price": None}, r"^total_price: missing"),
        ({"currency": None}, r"^currency: missing"),
        ({"created_at": "2024-05-01 09:30"}, r"^created_at: needs a time zone"),
        ({"id": None}, r"^id: missing"),
    ],
)
def test_bad_order_fields_are_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(AdapterError, match=message):
        from_shopify("orders/create", order(**changes))


def test_numbers_as_amounts_are_read_too() -> None:
    (event,) = from_shopify("orders/create", order(total_price=12.5)).events
    assert event.amount == Decimal("12.5")


# --- refunds/create ------------------------------------------------------------------------------


def test_refunds_create_is_a_refund_of_the_transactions() -> None:
    (event,) = from_shopify("refunds/create", refund(), customer_for_order=known_orders).events
    assert event.event_id == "shopify:refund:890088186047892319"
    assert event.type == "refund"
    assert event.amount == Decimal("-41.94") and event.currency == "USD"
    assert event.customer_id == str(CUSTOMER_ID) and event.order_id == str(ORDER_ID)
    assert event.occurred_at == datetime(2024, 5, 3, 14, 15, 1, tzinfo=UTC)


def test_only_successful_refund_transactions_count() -> None:
    txns = [
        {"id": 1, "kind": "refund", "status": "success", "amount": "10.00", "currency": "USD"},
        {"id": 2, "kind": "refund", "status": "failure", "amount": "99.00", "currency": "USD"},
        {"id": 3, "kind": "sale", "status": "success", "amount": "50.00", "currency": "USD"},
        {
            "id": 4,
            "kind": "refund",
            "status": "success",
            "amount": "2.50",
            "currency": "EUR",
            "amount_set": {"shop_money": {"amount": "2.75", "currency_code": "USD"}},
        },
    ]
    (event,) = from_shopify(
        "refunds/create", refund(transactions=txns), customer_for_order=known_orders
    ).events
    assert event.amount == Decimal("-12.75") and event.currency == "USD"


def test_a_refund_that_moves_no_money_is_ignored() -> None:
    result = from_shopify("refunds/create", refund(transactions=[]), customer_for_order=known_orders)
    assert result.events == [] and result.ignored is not None and "moved no money" in result.ignored


def test_a_refund_of_an_unknown_order_is_ignored() -> None:
    result = from_shopify("refunds/create", refund(order_id=1))
    assert result.events == [] and result.ignored is not None and "customer is unknown" in result.ignored
    result = from_shopify("refunds/create", refund(order_id=1), customer_for_order=known_orders)
    assert result.ignored is not None and "order 1" in result.ignored


def test_bad_refund_fields_are_named() -> None:
    bad_amount = [{"kind": "refund", "status": "success", "amount": "lots", "currency": "USD"}]
    with pytest.raises(AdapterError, match=r"^transactions\[0\]\.amount: not a number: 'lots'"):
        from_shopify("refunds/create", refund(transactions=bad_amount), customer_for_order=known_orders)
    mixed = [
        {"kind": "refund", "status": "success", "amount": "1.00", "currency": "USD"},
        {"kind": "refund", "status": "success", "amount": "1.00", "currency": "CAD"},
    ]
    with pytest.raises(
        AdapterError, match=r"^transactions: refund transactions in several currencies: CAD, USD"
    ):
        from_shopify("refunds/create", refund(transactions=mixed), customer_for_order=known_orders)
    with pytest.raises(AdapterError, match=r"^transactions: not an array"):
        from_shopify("refunds/create", refund(transactions={}), customer_for_order=known_orders)


# --- topics ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["orders/updated", "orders/paid", "customers/create", "app/uninstalled"])
def test_other_topics_are_ignored(topic: str) -> None:
    result = from_shopify(topic, {"id": 1})
    assert result.events == [] and result.ignored is not None and topic in result.ignored


def test_topic_and_body_are_required() -> None:
    with pytest.raises(AdapterError, match=r"^X-Shopify-Topic: missing"):
        from_shopify(None, order())
    with pytest.raises(AdapterError, match=r"^body: not a JSON object"):
        from_shopify("orders/create", [order()])

"""Shopify webhooks as rfmflow events, and Shopify's HMAC check.

Signature: ``X-Shopify-Hmac-Sha256`` is the base64 HMAC-SHA256 of the raw request body keyed
with the app's client secret (or the secret shown with a store-admin webhook). Verify the
bytes as received, before parsing them. The topic comes in ``X-Shopify-Topic``.

Events (``from_shopify``):

- ``orders/create`` is a purchase of ``total_price`` (a decimal string in the shop currency,
  shipping and taxes included, discounts taken off) in ``currency``, at ``created_at``. The
  customer is ``customer.id``, else the order's ``email`` / ``contact_email`` /
  ``customer.email`` lower-cased; an order with none of these is ignored with a reason.
  ``event_id`` is ``shopify:order:<id>`` and ``order_id`` the order id, so a redelivered
  webhook (or a second subscription to the topic) is a duplicate.
- ``refunds/create`` is a refund of the money actually returned: the sum of the refund's
  ``transactions`` of kind ``refund`` whose status is ``success`` (``amount_set.shop_money``
  when present, else ``amount``/``currency``), at ``processed_at`` (else ``created_at``).
  ``refund_line_items`` are not used: items returned without a refund transaction (an
  exchange, a restock) return no money, and their subtotals leave out refunded shipping and
  taxes. A refund that moved no money is ignored. The refund payload names no customer, only
  ``order_id``: pass ``customer_for_order`` (order id -> customer id, from the stored
  purchase) or the refund is ignored with a reason. ``event_id`` is ``shopify:refund:<id>``.
- Every other topic is ignored with a reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from .common import (
    AdapterError,
    AdapterResult,
    amount,
    as_object,
    base64_hmac,
    build_event,
    contact_traits,
    currency,
    email,
    identifier,
    optional_object,
    required_currency,
    source_event_id,
    timestamp,
    verify_base64_hmac,
)

PREFIX = "shopify"
HEADER = "X-Shopify-Hmac-Sha256"
TOPIC_HEADER = "X-Shopify-Topic"
USED_TOPICS = ("orders/create", "refunds/create")

#: Finds the customer of an order rfmflow has seen (by the purchase's ``order_id``), or ``None``.
CustomerLookup = Callable[[str], str | None]


def verify_shopify_hmac(payload: bytes, header_b64: str | None, secret: str | Sequence[str]) -> None:
    """Check ``X-Shopify-Hmac-Sha256`` against the raw body (constant-time).

    Raises :class:`~.common.MissingSignatureError`, :class:`~.common.MalformedSignatureError`
    or :class:`~.common.SignatureMismatchError`.
    """
    verify_base64_hmac(payload, header_b64, secret, HEADER)


def sign_shopify_payload(payload: bytes, secret: str) -> str:
    """The ``X-Shopify-Hmac-Sha256`` value Shopify would send for ``payload`` (for tests and fakes)."""
    return base64_hmac(payload, secret)


def from_shopify(
    topic: str | None, body: Any, *, customer_for_order: CustomerLookup | None = None
) -> AdapterResult:
    """A Shopify webhook (its ``X-Shopify-Topic`` and parsed body) as rfmflow events."""
    if topic is None or not topic.strip():
        raise AdapterError(TOPIC_HEADER, "missing")
    name = topic.strip().lower()
    if name not in USED_TOPICS:
        return AdapterResult.skip(
            f"Shopify topic {topic!r} is not used (rfmflow reads {', '.join(USED_TOPICS)})"
        )
    payload = as_object(body, "body")
    if name == "orders/create":
        return _order(payload)
    return _refund(payload, customer_for_order)


def _order(order: dict[str, Any]) -> AdapterResult:
    order_id = identifier(order.get("id"), "id")
    value = amount(order.get("total_price"), "total_price")
    code = required_currency(order.get("currency"), "currency")
    who = _customer(order)
    if who is None:
        return AdapterResult.skip(f"order {order_id} has no customer id and no e-mail address")
    customer_id, customer_field = who
    time_field = "created_at" if order.get("created_at") is not None else "processed_at"
    occurred_at = timestamp(order.get(time_field), time_field)
    props: dict[str, Any] = {"source": "shopify", "topic": "orders/create"}
    for key in ("name", "financial_status", "test"):
        if order.get(key) is not None:
            props[key] = order[key]
    event = build_event(
        {"customer_id": customer_field, "occurred_at": time_field, "amount": "total_price", "order_id": "id"},
        event_id=source_event_id(PREFIX, f"order:{order_id}"),
        customer_id=customer_id,
        type="purchase",
        occurred_at=occurred_at,
        amount=value,
        currency=code,
        order_id=order_id,
        properties=props,
    )
    customer = order.get("customer")
    customer = customer if isinstance(customer, dict) else {}
    traits = contact_traits(
        email=order.get("email") or order.get("contact_email") or customer.get("email"),
        firstName=customer.get("first_name"),
        lastName=customer.get("last_name"),
        phone=order.get("phone") or customer.get("phone"),
        locale=order.get("customer_locale"),
    )
    return AdapterResult(events=[event], traits=traits)


def _refund(refund: dict[str, Any], lookup: CustomerLookup | None) -> AdapterResult:
    refund_id = identifier(refund.get("id"), "id")
    order_id = identifier(refund.get("order_id"), "order_id")
    transactions = refund.get("transactions")
    if transactions is None:
        transactions = []
    if not isinstance(transactions, list):
        raise AdapterError("transactions", "not an array")
    total = Decimal(0)
    codes: set[str] = set()
    counted = 0
    for i, item in enumerate(transactions):
        where = f"transactions[{i}]"
        txn = as_object(item, where)
        if txn.get("kind") != "refund" or txn.get("status", "success") != "success":
            continue
        value, code = _transaction_money(txn, where)
        total += value
        if code:
            codes.add(code)
        counted += 1
    if counted == 0 or total == 0:
        return AdapterResult.skip(f"refund {refund_id} moved no money (no successful refund transaction)")
    if len(codes) > 1:
        raise AdapterError(
            "transactions", f"refund transactions in several currencies: {', '.join(sorted(codes))}"
        )
    customer_id = lookup(order_id) if lookup is not None else None
    if not customer_id:
        return AdapterResult.skip(
            f"refund {refund_id} of order {order_id}: the order's customer is unknown "
            "(Shopify refunds name no customer; the order's purchase was not received)"
        )
    time_field = "processed_at" if refund.get("processed_at") is not None else "created_at"
    event = build_event(
        {"occurred_at": time_field, "amount": "transactions", "order_id": "order_id"},
        event_id=source_event_id(PREFIX, f"refund:{refund_id}"),
        customer_id=customer_id,
        type="refund",
        occurred_at=timestamp(refund.get(time_field), time_field),
        amount=total,
        currency=codes.pop() if codes else None,
        order_id=order_id,
        properties={"source": "shopify", "topic": "refunds/create", "refund": refund_id},
    )
    return AdapterResult(events=[event])


def _transaction_money(txn: dict[str, Any], where: str) -> tuple[Decimal, str | None]:
    amount_set = optional_object(txn.get("amount_set"), f"{where}.amount_set")
    shop = optional_object(amount_set.get("shop_money"), f"{where}.amount_set.shop_money")
    if shop.get("amount") is not None:
        base = f"{where}.amount_set.shop_money"
        code = currency(shop.get("currency_code"), f"{base}.currency_code")
        return amount(shop["amount"], f"{base}.amount"), code
    return amount(txn.get("amount"), f"{where}.amount"), currency(txn.get("currency"), f"{where}.currency")


def _customer(order: dict[str, Any]) -> tuple[str, str] | None:
    customer = order.get("customer")
    if isinstance(customer, dict) and customer.get("id") is not None:
        return identifier(customer["id"], "customer.id"), "customer.id"
    candidates = [("email", order.get("email")), ("contact_email", order.get("contact_email"))]
    if isinstance(customer, dict):
        candidates.append(("customer.email", customer.get("email")))
    for where, value in candidates:
        address = email(value)
        if address:
            return address, where
    return None

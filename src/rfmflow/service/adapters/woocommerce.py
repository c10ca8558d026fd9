"""WooCommerce webhooks as rfmflow events, and WooCommerce's signature check.

Signature: ``X-WC-Webhook-Signature`` is the base64 HMAC-SHA256 of the raw request body keyed
with the webhook's secret. The topic comes in ``X-WC-Webhook-Topic`` (``order.created``). When
a webhook is saved, WooCommerce sends a ping whose body is ``webhook_id=<n>`` (form-encoded,
not JSON): :func:`is_woocommerce_ping` recognises it so the endpoint can answer 200.

Events (``from_woocommerce``), from the order resource of the REST API (v3):

- ``order.created`` and ``order.updated`` are a purchase of ``total`` (a decimal string,
  shipping and taxes included) in ``currency`` once the order's ``status`` is ``processing``,
  ``completed`` or ``refunded`` (it was paid). ``event_id`` is ``woo:order:<id>`` for both
  topics, so an order created unpaid (``pending``, ``on-hold``) is counted when the
  ``order.updated`` that marks it paid arrives, and only once however many updates follow:
  subscribe to both topics. Unpaid, failed, cancelled and draft orders are ignored with a
  reason. ``occurred_at`` is ``date_created_gmt``, which WooCommerce writes in UTC without a
  zone (``date_created`` is in the site's zone, which the payload does not name).
- Each entry of the order's ``refunds`` (``{"id", "total": "-5.00"}``) is a refund with
  ``event_id`` ``woo:refund:<id>``, at ``date_modified_gmt``.
- The customer is ``customer_id``; ``0`` is a guest, who is ``billing.email`` lower-cased. A
  guest order without an e-mail address is ignored with a reason.
- Every other topic is ignored with a reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rfmflow.service.events import EventIn

from .common import (
    AdapterError,
    AdapterResult,
    amount,
    as_object,
    base64_hmac,
    build_event,
    contact_traits,
    email,
    identifier,
    optional_object,
    required_currency,
    source_event_id,
    timestamp,
    verify_base64_hmac,
)

PREFIX = "woo"
HEADER = "X-WC-Webhook-Signature"
TOPIC_HEADER = "X-WC-Webhook-Topic"
ORDER_TOPICS = ("order.created", "order.updated")
#: Order statuses that mean the order was paid.
PAID_STATUSES = ("processing", "completed", "refunded")


def verify_woocommerce_signature(payload: bytes, header_b64: str | None, secret: str | Sequence[str]) -> None:
    """Check ``X-WC-Webhook-Signature`` against the raw body (constant-time).

    Raises :class:`~.common.MissingSignatureError`, :class:`~.common.MalformedSignatureError`
    or :class:`~.common.SignatureMismatchError`.
    """
    verify_base64_hmac(payload, header_b64, secret, HEADER)


def sign_woocommerce_payload(payload: bytes, secret: str) -> str:
    """The ``X-WC-Webhook-Signature`` value WooCommerce would send (for tests and fakes)."""
    return base64_hmac(payload, secret)


def is_woocommerce_ping(payload: bytes) -> bool:
    """Whether ``payload`` is the ``webhook_id=<n>`` ping WooCommerce sends when a webhook is saved."""
    return re.fullmatch(rb"webhook_id=\d+", payload.strip()) is not None


def from_woocommerce(
    topic: str | None, body: Any, *, paid_statuses: Sequence[str] = PAID_STATUSES
) -> AdapterResult:
    """A WooCommerce webhook (its ``X-WC-Webhook-Topic`` and parsed body) as rfmflow events."""
    if topic is None or not topic.strip():
        raise AdapterError(TOPIC_HEADER, "missing")
    name = topic.strip().lower()
    if name not in ORDER_TOPICS:
        return AdapterResult.skip(
            f"WooCommerce topic {topic!r} is not used (rfmflow reads {', '.join(ORDER_TOPICS)})"
        )
    order = as_object(body, "body")
    order_id = identifier(order.get("id"), "id")
    status = order.get("status")
    paid = isinstance(status, str) and status.strip().lower() in paid_statuses
    refunds = order.get("refunds")
    if refunds is None:
        refunds = []
    if not isinstance(refunds, list):
        raise AdapterError("refunds", "not an array")
    if not paid and not refunds:
        return AdapterResult.skip(
            f"order {order_id} has status {status!r}, not paid: it is counted when an order.updated "
            f"with status {' or '.join(paid_statuses)} arrives"
        )
    who = _customer(order)
    if who is None:
        return AdapterResult.skip(f"order {order_id} is a guest order without billing.email")
    customer_id, customer_field = who
    code = required_currency(order.get("currency"), "currency")
    base = {"customer_id": customer_field, "order_id": "id"}
    props = {"source": "woocommerce", "topic": name, "status": status, "number": order.get("number")}
    props = {k: v for k, v in props.items() if v is not None}
    events: list[EventIn] = []
    if paid:
        events.append(
            build_event(
                {**base, "occurred_at": "date_created_gmt", "amount": "total"},
                event_id=source_event_id(PREFIX, f"order:{order_id}"),
                customer_id=customer_id,
                type="purchase",
                occurred_at=timestamp(order.get("date_created_gmt"), "date_created_gmt", naive_is_utc=True),
                amount=amount(order.get("total"), "total"),
                currency=code,
                order_id=order_id,
                properties=props,
            )
        )
    if refunds:
        time_field = "date_modified_gmt" if order.get("date_modified_gmt") is not None else "date_created_gmt"
        refunded_at = timestamp(order.get(time_field), time_field, naive_is_utc=True)
        for i, item in enumerate(refunds):
            where = f"refunds[{i}]"
            refund = as_object(item, where)
            refund_id = identifier(refund.get("id"), f"{where}.id")
            value = abs(amount(refund.get("total"), f"{where}.total", allow_negative=True))
            if value == 0:
                continue
            events.append(
                build_event(
                    {**base, "occurred_at": time_field, "amount": f"{where}.total"},
                    event_id=source_event_id(PREFIX, f"refund:{refund_id}"),
                    customer_id=customer_id,
                    type="refund",
                    occurred_at=refunded_at,
                    amount=value,
                    currency=code,
                    order_id=order_id,
                    properties={**props, "refund": refund_id},
                )
            )
    if not events:
        return AdapterResult.skip(f"order {order_id}: nothing paid or refunded")
    billing = optional_object(order.get("billing"), "billing")
    traits = contact_traits(
        email=billing.get("email"),
        firstName=billing.get("first_name"),
        lastName=billing.get("last_name"),
        phone=billing.get("phone"),
    )
    return AdapterResult(events=events, traits=traits)


def _customer(order: dict[str, Any]) -> tuple[str, str] | None:
    raw = order.get("customer_id")
    if raw not in (None, "", 0, "0"):
        return identifier(raw, "customer_id"), "customer_id"
    billing = optional_object(order.get("billing"), "billing")
    address = email(billing.get("email"))
    return (address, "billing.email") if address else None

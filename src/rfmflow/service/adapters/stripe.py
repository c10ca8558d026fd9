"""Stripe webhooks as rfmflow events, and Stripe's signature scheme.

Signature (``Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=...]``): each
``v1`` is the hex HMAC-SHA256 of ``"<t>.<raw body>"`` keyed with the endpoint's signing secret
(the whole ``whsec_...`` string). Any one ``v1`` matching any configured secret is enough
(Stripe sends several while a secret is being rolled); ``v0`` and unknown elements are ignored.
A valid signature whose ``t`` is more than ``tolerance_s`` (300 s, Stripe's default) in the past
is a replay and raises :class:`~.common.TimestampToleranceError`; so does one that far in the
future (a wrong clock).

Events (``from_stripe``):

- ``payment_intent.succeeded`` is a purchase of ``amount_received`` (``amount`` if absent) in
  the minor unit of ``currency``: cents for most currencies, whole units for zero-decimal ones
  (JPY, KRW, ...), thousandths for BHD, JOD, KWD, OMR, TND. Its ``event_id`` is
  ``stripe:<payment intent id>``, not the Stripe event id: a payment intent succeeds once, so
  a redelivery, a manual resend or a second endpoint's copy of the event is a duplicate even
  if it came as a different Stripe event. ``occurred_at`` is the event's ``created``;
  ``order_id`` is ``metadata.order_id``, else the payment intent id.
- ``charge.refunded`` (sent for every refund, partial ones included; the charge's
  ``amount_refunded`` is the running total) gives one refund per refund object when the charge
  lists them (``refunds.data``, API versions before 2022-11-15 or expanded): ``event_id``
  ``stripe:<refund id>``, amount and time of that refund, failed and cancelled refunds
  skipped. Newer API versions list no refunds; then the refund is the increase of
  ``amount_refunded`` over ``data.previous_attributes.amount_refunded`` (0 when absent) with
  ``event_id`` ``stripe:<charge id>:refunded:<amount_refunded>``, so each new partial refund
  is new and a redelivery is a duplicate. ``order_id`` is ``metadata.order_id``, else the
  charge's payment intent, else the charge id, the same order as the purchase's.
- The customer is ``metadata.customer_id`` (the key is a parameter), else ``customer`` (the
  ``cus_...`` id), else ``receipt_email`` (then, for a charge, ``billing_details.email``),
  lower-cased. ``metadata`` comes first because a shop that puts its own customer id there
  wants Stripe payments joined with that id's other events. A payment with none of these is
  ignored with a reason (answering with an error would only make Stripe retry for days).
- Every other event type is ignored with a reason.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .common import (
    AdapterError,
    AdapterResult,
    MalformedSignatureError,
    MissingSignatureError,
    SignatureMismatchError,
    TimestampToleranceError,
    as_object,
    build_event,
    contact_traits,
    currency,
    email,
    from_minor_units,
    identifier,
    minor_units,
    optional_identifier,
    optional_object,
    required_currency,
    secret_keys,
    source_event_id,
    unix_time,
)

PREFIX = "stripe"
HEADER = "Stripe-Signature"
DEFAULT_TOLERANCE_S = 300
USED_TYPES = ("payment_intent.succeeded", "charge.refunded")


def verify_stripe_signature(
    payload: bytes,
    header: str | None,
    secret: str | Sequence[str],
    tolerance_s: float | None = DEFAULT_TOLERANCE_S,
    now: float | datetime | None = None,
) -> int:
    """Check a ``Stripe-Signature`` header against the raw body; return its timestamp.

    ``secret`` may be a list while a signing secret is being rolled. ``tolerance_s=None``
    skips the timestamp check (for replaying stored events). ``now`` (Unix seconds or an aware
    datetime) is for tests. Raises :class:`MissingSignatureError`,
    :class:`MalformedSignatureError`, :class:`SignatureMismatchError` or
    :class:`TimestampToleranceError`.
    """
    keys = secret_keys(secret)
    if not isinstance(payload, bytes | bytearray):
        raise TypeError("verify the raw request body (bytes), not parsed JSON")
    if header is None or not header.strip():
        raise MissingSignatureError(f"the {HEADER} header is missing")
    stamp_text, signatures = _parse_header(header)
    signed = stamp_text.encode() + b"." + bytes(payload)
    expected = [hmac.new(key, signed, hashlib.sha256).hexdigest() for key in keys]
    if not any(hmac.compare_digest(e, s) for e in expected for s in signatures):
        raise SignatureMismatchError(f"no v1 signature in the {HEADER} header matches the body")
    stamp = int(stamp_text)
    if tolerance_s is not None:
        current = time.time() if now is None else now.timestamp() if isinstance(now, datetime) else float(now)
        age = current - stamp
        if age > tolerance_s:
            raise TimestampToleranceError(
                f"the {HEADER} timestamp is {age:.0f} s old, beyond the {tolerance_s:g} s tolerance "
                "(a replayed or long-delayed delivery)",
                timestamp=stamp,
                now=current,
                tolerance_s=tolerance_s,
            )
        if -age > tolerance_s:
            raise TimestampToleranceError(
                f"the {HEADER} timestamp is {-age:.0f} s in the future, beyond the {tolerance_s:g} s "
                "tolerance (check the server's clock)",
                timestamp=stamp,
                now=current,
                tolerance_s=tolerance_s,
            )
    return stamp


def sign_stripe_payload(payload: bytes, secret: str, timestamp: int) -> str:
    """A ``Stripe-Signature`` header for ``payload``, as Stripe would send it (for tests and fakes)."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def from_stripe(event: Any, *, metadata_customer_key: str = "customer_id") -> AdapterResult:
    """A Stripe event object (the parsed webhook body) as rfmflow events; see the module notes."""
    evt = as_object(event, "body")
    kind = evt.get("type")
    if not isinstance(kind, str) or not kind.strip():
        raise AdapterError("type", "missing" if kind in (None, "") else f"not a string: {kind!r}")
    if kind not in USED_TYPES:
        return AdapterResult.skip(
            f"Stripe event type {kind!r} is not used (rfmflow reads {', '.join(USED_TYPES)})"
        )
    data = as_object(evt.get("data"), "data")
    obj = as_object(data.get("object"), "data.object")
    if kind == "payment_intent.succeeded":
        return _payment_intent(evt, obj, metadata_customer_key)
    return _charge_refunded(evt, data, obj, metadata_customer_key)


# ---------------------------------------------------------------------------------------------


def _parse_header(header: str) -> tuple[str, list[str]]:
    stamps: list[str] = []
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not key:
            raise MalformedSignatureError(f"the {HEADER} header is not a list of key=value pairs")
        if key == "t":
            stamps.append(value.strip())
        elif key == "v1":
            if not value.strip().isascii():
                raise MalformedSignatureError(f"the {HEADER} header has a non-ASCII v1 signature")
            signatures.append(value.strip().lower())
    if len(stamps) != 1 or not stamps[0].isascii() or not stamps[0].isdigit():
        raise MalformedSignatureError(f"the {HEADER} header needs exactly one numeric timestamp t=")
    if not signatures:
        raise MalformedSignatureError(f"the {HEADER} header has no v1 signature")
    return stamps[0], signatures


def _payment_intent(evt: dict[str, Any], obj: dict[str, Any], customer_key: str) -> AdapterResult:
    intent = identifier(obj.get("id"), "data.object.id")
    code = required_currency(obj.get("currency"), "data.object.currency")
    where = "data.object.amount_received" if obj.get("amount_received") is not None else "data.object.amount"
    value = from_minor_units(obj.get(where.rsplit(".", 1)[1]), code, where)
    who = _customer(obj, customer_key)
    if who is None:
        return AdapterResult.skip(
            f"payment intent {intent} has no customer: set customer, metadata.{customer_key} or receipt_email"
        )
    customer_id, customer_field = who
    occurred_at, time_field = _created(evt, obj)
    metadata = optional_object(obj.get("metadata"), "data.object.metadata")
    order_id = optional_identifier(metadata.get("order_id"), "data.object.metadata.order_id") or intent
    origin = {"customer_id": customer_field, "occurred_at": time_field, "amount": where}
    event = build_event(
        origin,
        event_id=source_event_id(PREFIX, intent),
        customer_id=customer_id,
        type="purchase",
        occurred_at=occurred_at,
        amount=value,
        currency=code,
        order_id=order_id,
        properties=_provenance(evt, payment_intent=intent),
    )
    return AdapterResult(events=[event], traits=_traits(obj))


def _charge_refunded(
    evt: dict[str, Any], data: dict[str, Any], obj: dict[str, Any], customer_key: str
) -> AdapterResult:
    charge = identifier(obj.get("id"), "data.object.id")
    code = required_currency(obj.get("currency"), "data.object.currency")
    who = _customer(obj, customer_key)
    if who is None:
        return AdapterResult.skip(
            f"charge {charge} has no customer: set customer, metadata.{customer_key}, receipt_email "
            "or billing_details.email"
        )
    customer_id, customer_field = who
    intent = _intent_id(obj.get("payment_intent"))
    metadata = optional_object(obj.get("metadata"), "data.object.metadata")
    order_id = (
        optional_identifier(metadata.get("order_id"), "data.object.metadata.order_id") or intent or charge
    )
    props = _provenance(evt, charge=charge, payment_intent=intent)

    refunds = obj.get("refunds")
    listed = refunds.get("data") if isinstance(refunds, dict) else None
    if isinstance(listed, list) and listed:
        events = []
        for i, item in enumerate(listed):
            where = f"data.object.refunds.data[{i}]"
            refund = as_object(item, where)
            if refund.get("status") in ("failed", "canceled"):
                continue
            refund_id = identifier(refund.get("id"), f"{where}.id")
            refund_code = currency(refund.get("currency"), f"{where}.currency") or code
            value = from_minor_units(refund.get("amount"), refund_code, f"{where}.amount")
            if refund.get("created") is not None:
                occurred_at, time_field = unix_time(refund["created"], f"{where}.created"), f"{where}.created"
            else:
                occurred_at, time_field = _created(evt, obj)
            origin = {"customer_id": customer_field, "occurred_at": time_field, "amount": f"{where}.amount"}
            events.append(
                build_event(
                    origin,
                    event_id=source_event_id(PREFIX, refund_id),
                    customer_id=customer_id,
                    type="refund",
                    occurred_at=occurred_at,
                    amount=value,
                    currency=refund_code,
                    order_id=order_id,
                    properties={**props, "refund": refund_id},
                )
            )
        if not events:
            return AdapterResult.skip(f"charge {charge} lists no successful or pending refund")
        return AdapterResult(events=events)

    total = minor_units(obj.get("amount_refunded"), "data.object.amount_refunded")
    previous = optional_object(data.get("previous_attributes"), "data.previous_attributes")
    before = minor_units(previous.get("amount_refunded", 0), "data.previous_attributes.amount_refunded")
    delta = total - before
    if delta <= 0:
        return AdapterResult.skip(f"charge {charge}: amount_refunded did not increase ({before} -> {total})")
    occurred_at, time_field = _created(evt, obj)
    origin = {
        "customer_id": customer_field,
        "occurred_at": time_field,
        "amount": "data.object.amount_refunded",
    }
    event = build_event(
        origin,
        event_id=source_event_id(PREFIX, f"{charge}:refunded:{total}"),
        customer_id=customer_id,
        type="refund",
        occurred_at=occurred_at,
        amount=from_minor_units(delta, code, "data.object.amount_refunded"),
        currency=code,
        order_id=order_id,
        properties=props,
    )
    return AdapterResult(events=[event])


def _traits(obj: dict[str, Any]) -> dict[str, Any]:
    """What a payment says about its payer: receipt e-mail, else the billing details."""
    billing = obj.get("billing_details")
    billing = billing if isinstance(billing, dict) else {}
    shipping = obj.get("shipping")
    shipping = shipping if isinstance(shipping, dict) else {}
    return contact_traits(
        email=obj.get("receipt_email") or billing.get("email"),
        name=billing.get("name") or shipping.get("name"),
        phone=billing.get("phone") or shipping.get("phone"),
    )


def _customer(obj: dict[str, Any], customer_key: str) -> tuple[str, str] | None:
    metadata = optional_object(obj.get("metadata"), "data.object.metadata")
    where = f"data.object.metadata.{customer_key}"
    found = optional_identifier(metadata.get(customer_key), where)
    if found:
        return found, where
    customer = obj.get("customer")
    if isinstance(customer, dict):  # expanded
        return identifier(customer.get("id"), "data.object.customer.id"), "data.object.customer.id"
    found = optional_identifier(customer, "data.object.customer")
    if found:
        return found, "data.object.customer"
    address = email(obj.get("receipt_email"))
    if address:
        return address, "data.object.receipt_email"
    billing = obj.get("billing_details")
    address = email(billing.get("email")) if isinstance(billing, dict) else None
    if address:
        return address, "data.object.billing_details.email"
    return None


def _intent_id(value: Any) -> str | None:
    if isinstance(value, dict):
        return identifier(value.get("id"), "data.object.payment_intent.id")
    return optional_identifier(value, "data.object.payment_intent")


def _created(evt: dict[str, Any], obj: dict[str, Any]) -> tuple[datetime, str]:
    if evt.get("created") is not None:
        return unix_time(evt["created"], "created"), "created"
    return unix_time(obj.get("created"), "data.object.created"), "data.object.created"


def _provenance(evt: dict[str, Any], **ids: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"source": "stripe"}
    if isinstance(evt.get("id"), str):
        out["stripe_event"] = evt["id"]
    out.update({k: v for k, v in ids.items() if v})
    if isinstance(evt.get("livemode"), bool):
        out["livemode"] = evt["livemode"]
    return out

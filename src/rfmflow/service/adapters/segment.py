"""Segment (and RudderStack) messages as rfmflow events.

What the Segment-compatible endpoints (``/v1/identify``, ``/v1/track``, ``/v1/page``,
``/v1/screen``, ``/v1/batch``) receive is read here, message by message:

- ``event_id`` is ``seg:<messageId>``. A message without a ``messageId`` (the SDKs always send
  one; hand-written HTTP calls may not) gets ``seg:content:<sha256>`` of its content without
  ``sentAt``/``receivedAt``/``writeKey``, so a resent copy is still recognised as a duplicate.
- ``customer_id`` is ``userId``, else ``anonymousId``. Anonymous and identified activity of the
  same person stay two customers: ``alias`` is not applied.
- ``occurred_at`` is ``timestamp``, else ``originalTimestamp``, else ``sentAt`` (the message's,
  then the batch's), else the ``received_at`` the endpoint passes. It needs a time zone. No
  clock-skew correction is applied.
- ``track`` maps the event name to a type through :data:`DEFAULT_TRACK_EVENTS`, extended or
  overridden by ``event_map``; names are matched ignoring case, ``_``/``-`` and repeated
  spaces. An unmapped name is *ignored with a reason*, not an error: Segment sources send
  many events rfmflow has no use for.
- A purchase (``Order Completed``, ecommerce spec v2) takes its amount from
  ``properties.total``, else ``properties.revenue``. The spec defines ``revenue`` as excluding
  shipping and tax and ``total`` as what the customer paid (shipping and tax included,
  discounts taken off). ``total`` comes first because it is the figure the payment and shop
  webhooks report (Stripe ``amount_received``, Shopify ``total_price``, WooCommerce ``total``),
  so a customer's monetary value does not depend on which way a purchase arrived. A purchase
  with neither is an error. ``properties.currency`` and ``properties.order_id`` (v1's
  ``orderId`` too) are carried over.
- A refund (``Order Refunded``) takes ``total``, else ``revenue``; with neither, its amount is
  left empty (``None``: the amount is unknown, ``order_id`` says which order was refunded).
- ``page``, ``screen`` (and the ``Application Opened`` track event) are visits;
  ``identify`` gives :attr:`AdapterResult.identify` (ids, traits, context, time) and no event;
  ``group`` and ``alias`` are ignored with a reason.

Each event's ``properties`` keep where it came from: ``{"source": "segment", "call": "track",
"name": <event or page name>, "properties": <the message's properties>}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from rfmflow.service.events import EVENT_TYPES, MAX_BATCH_EVENTS, MONEY_TYPES

from .common import (
    AdapterError,
    AdapterResult,
    CredentialsError,
    amount,
    as_object,
    build_event,
    currency,
    identifier,
    optional_identifier,
    optional_object,
    source_event_id,
    timestamp,
)

PREFIX = "seg"

#: Segment track event names and the rfmflow event type each one is. Names from Segment's
#: ecommerce v2, email and mobile lifecycle specs, plus a few common custom ones.
DEFAULT_TRACK_EVENTS: Mapping[str, str] = MappingProxyType(
    {
        "Order Completed": "purchase",
        "Order Refunded": "refund",
        "Email Opened": "open",
        "Push Notification Opened": "open",
        "Email Link Clicked": "click",
        "Product Clicked": "click",
        "Promotion Clicked": "click",
        "Push Notification Tapped": "click",
        "Support Ticket Created": "support_ticket",
        "Ticket Created": "support_ticket",
        "Signed Up": "signup",
        "Application Opened": "visit",
    }
)

CALLS = ("identify", "track", "page", "screen", "group", "alias")
#: Fields left out of the content hash that stands in for a missing ``messageId``: they change
#: between two deliveries of the same message.
_VOLATILE = frozenset({"sentAt", "receivedAt", "writeKey"})


def event_key(name: str) -> str:
    """How track event names are compared: case-folded, ``_``/``-`` as spaces, spaces collapsed."""
    return " ".join(name.replace("_", " ").replace("-", " ").split()).casefold()


_DEFAULT_TABLE: dict[str, str | None] = {event_key(k): v for k, v in DEFAULT_TRACK_EVENTS.items()}


def track_event_table(event_map: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
    """The name -> type table: the defaults, then ``event_map`` (a ``None`` type ignores the name).

    Raises ``ValueError`` for a type rfmflow does not know (a configuration error, not input).
    """
    table = dict(_DEFAULT_TABLE)
    for name, kind in (event_map or {}).items():
        if kind is not None and kind.strip().lower() not in EVENT_TYPES:
            raise ValueError(
                f"event map: {name!r} -> {kind!r}: unknown type; known: {', '.join(EVENT_TYPES)}"
            )
        table[event_key(name)] = kind.strip().lower() if kind is not None else None
    return table


def from_segment(
    message: Any,
    *,
    call: str | None = None,
    sent_at: str | datetime | None = None,
    received_at: datetime | None = None,
    event_map: Mapping[str, str | None] | None = None,
) -> AdapterResult:
    """One Segment message (``identify``, ``track``, ``page``, ``screen``, ``group``, ``alias``).

    ``call`` is the call the endpoint stands for (``"track"`` for ``/v1/track``): it is used
    when the message has no ``type`` and must agree when it has one. ``sent_at`` is the batch's
    ``sentAt`` and ``received_at`` the time the request arrived, both used only when the message
    carries no time of its own. Raises :class:`AdapterError` naming the field.
    """
    return _translate(message, call, sent_at, received_at, track_event_table(event_map))


def _translate(
    message: Any,
    call: str | None,
    sent_at: str | datetime | None,
    received_at: datetime | None,
    table: Mapping[str, str | None],
) -> AdapterResult:
    msg = as_object(message, "message")
    kind = _call(msg, call)
    if kind in ("group", "alias"):
        return AdapterResult.skip(f"Segment {kind} calls are not used by rfmflow")
    event_id = _event_id(msg)
    customer_id, customer_field = _customer(msg)
    occurred_at, time_field = _occurred_at(msg, sent_at, received_at)

    if kind == "identify":
        traits = optional_object(msg.get("traits"), "traits")
        return AdapterResult(
            identify={
                "event_id": event_id,
                "customer_id": customer_id,
                "user_id": optional_identifier(msg.get("userId"), "userId"),
                "anonymous_id": optional_identifier(msg.get("anonymousId"), "anonymousId"),
                "traits": traits,
                "context": {
                    k: v
                    for k, v in optional_object(msg.get("context"), "context").items()
                    if k in ("timezone", "locale")
                },
                "occurred_at": occurred_at,
            }
        )

    props = optional_object(msg.get("properties"), "properties")
    origin = {
        "event_id": "messageId",
        "customer_id": customer_field,
        "occurred_at": time_field,
        "properties": "properties",
    }
    fields: dict[str, Any] = {"event_id": event_id, "customer_id": customer_id, "occurred_at": occurred_at}
    if kind in ("page", "screen"):
        name = msg.get("name")
        fields["type"] = "visit"
        fields["properties"] = _provenance(kind, name if isinstance(name, str) else None, props)
        return AdapterResult(events=[build_event(origin, **fields)])

    name = msg.get("event")
    if not isinstance(name, str) or not name.strip():
        raise AdapterError(
            "event", "missing" if name is None or isinstance(name, str) else f"not a string: {name!r}"
        )
    key = event_key(name)
    if key not in table:
        return AdapterResult.skip(f"track event {name!r} is not mapped to an rfmflow event type")
    event_type = table[key]
    if event_type is None:
        return AdapterResult.skip(f"track event {name!r} is ignored by the event map")
    fields["type"] = event_type
    fields["properties"] = _provenance(kind, name, props)
    if event_type in MONEY_TYPES:
        value, value_field = _money(props, required=event_type == "purchase")
        fields["amount"] = value
        origin["amount"] = value_field
        fields["currency"] = currency(props.get("currency"), "properties.currency")
        origin["currency"] = "properties.currency"
        order_field = "properties.order_id" if "order_id" in props else "properties.orderId"
        fields["order_id"] = optional_identifier(props.get("order_id", props.get("orderId")), order_field)
        origin["order_id"] = order_field
    return AdapterResult(events=[build_event(origin, **fields)])


@dataclass(frozen=True)
class BatchItem:
    """The outcome of one message of a batch: a result or an error (field paths ``batch[i]....``)."""

    index: int
    result: AdapterResult | None = None
    error: AdapterError | None = None


def from_segment_batch(
    body: Any,
    *,
    received_at: datetime | None = None,
    event_map: Mapping[str, str | None] | None = None,
) -> list[BatchItem]:
    """Every message of a ``/v1/batch`` body (``{"batch": [...], "sentAt": ...}``), in order.

    Returns one :class:`BatchItem` per message, so the caller chooses between all-or-nothing
    and per-item answers. The envelope itself (no ``batch`` array, more than
    ``MAX_BATCH_EVENTS`` messages) raises :class:`AdapterError`. Batch-level ``context`` and
    ``integrations`` are not merged into the messages.
    """
    envelope = as_object(body, "body")
    batch = envelope.get("batch")
    if not isinstance(batch, list):
        raise AdapterError("batch", "missing" if batch is None else "not an array")
    if len(batch) > MAX_BATCH_EVENTS:
        raise AdapterError("batch", f"has {len(batch)} messages; at most {MAX_BATCH_EVENTS} per request")
    table = track_event_table(event_map)
    sent_at = envelope.get("sentAt")
    items: list[BatchItem] = []
    for index, message in enumerate(batch):
        try:
            result = _translate(message, None, sent_at, received_at, table)
        except AdapterError as err:
            items.append(BatchItem(index, error=err.within(f"batch[{index}]")))
        else:
            items.append(BatchItem(index, result=result))
    return items


def parse_basic_auth(header: str | None) -> str:
    """The write key from an ``Authorization: Basic base64(<writeKey>:)`` header.

    Segment's SDKs send the write key as the user name and an empty password; the password is
    ignored. Raises :class:`CredentialsError` for a missing header, another scheme, bad base64
    or an empty user name.
    """
    if header is None or not header.strip():
        raise CredentialsError("missing Authorization header: send the write key as the basic-auth user name")
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise CredentialsError(
            "the Authorization header must use the Basic scheme with the write key as user"
        )
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise CredentialsError("the Authorization header is not valid base64 of 'writeKey:'") from None
    key = decoded.partition(":")[0].strip()
    if not key:
        raise CredentialsError("the Authorization header carries an empty write key")
    return key


def request_write_key(authorization: str | None, body: Any = None) -> str:
    """The request's write key: the basic-auth user, else the body's ``writeKey``.

    The Python SDK sends both; some clients send only one. Both present and different is an
    error, as is neither.
    """
    in_body = body.get("writeKey") if isinstance(body, dict) else None
    if in_body is not None and (not isinstance(in_body, str) or not in_body.strip()):
        raise CredentialsError("writeKey in the body must be a non-empty string")
    if authorization is None or not authorization.strip():
        if in_body is None:
            raise CredentialsError(
                "missing write key: send it as the basic-auth user name (or as writeKey in the body)"
            )
        return str(in_body).strip()
    key = parse_basic_auth(authorization)
    if in_body is not None and in_body.strip() != key:
        raise CredentialsError("the write key in the Authorization header and writeKey in the body differ")
    return key


# ---------------------------------------------------------------------------------------------


def _call(msg: dict[str, Any], call: str | None) -> str:
    raw = msg.get("type")
    if raw is None:
        if call is None:
            raise AdapterError("type", f"missing; one of {', '.join(CALLS)}")
        raw = call
    if not isinstance(raw, str):
        raise AdapterError("type", f"not a string: {raw!r}")
    kind = raw.strip().lower()
    if kind not in CALLS:
        raise AdapterError("type", f"unknown Segment call {raw!r}; expected one of {', '.join(CALLS)}")
    if call is not None and kind != call:
        raise AdapterError("type", f"a {kind} message sent to the /v1/{call} endpoint")
    return kind


def _event_id(msg: dict[str, Any]) -> str:
    message_id = msg.get("messageId")
    if message_id is not None and not (isinstance(message_id, str) and not message_id.strip()):
        return source_event_id(PREFIX, identifier(message_id, "messageId"))
    stable = {k: v for k, v in msg.items() if k not in _VOLATILE}
    canonical = json.dumps(stable, sort_keys=True, separators=(",", ":"), default=str)
    return f"{PREFIX}:content:{hashlib.sha256(canonical.encode()).hexdigest()}"


def _customer(msg: dict[str, Any]) -> tuple[str, str]:
    for name in ("userId", "anonymousId"):
        value = optional_identifier(msg.get(name), name)
        if value is not None:
            return value, name
    raise AdapterError("userId", "missing; a Segment message needs a userId or an anonymousId")


def _occurred_at(
    msg: dict[str, Any], sent_at: str | datetime | None, received_at: datetime | None
) -> tuple[datetime, str]:
    for name in ("timestamp", "originalTimestamp", "sentAt"):
        if msg.get(name) not in (None, ""):
            return timestamp(msg[name], name), name
    if sent_at not in (None, ""):
        return timestamp(sent_at, "sentAt"), "sentAt"
    if received_at is not None:
        return timestamp(received_at, "receivedAt"), "receivedAt"
    raise AdapterError("timestamp", "missing (and no originalTimestamp or sentAt to fall back on)")


def _money(props: dict[str, Any], *, required: bool) -> tuple[Decimal | None, str]:
    for name in ("total", "revenue"):
        if props.get(name) is not None:
            where = f"properties.{name}"
            return amount(props[name], where, allow_negative=not required), where
    if required:
        raise AdapterError(
            "properties.total", "missing; a purchase needs properties.total or properties.revenue"
        )
    return None, "properties.total"


def _provenance(call: str, name: str | None, props: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"source": "segment", "call": call}
    if name:
        out["name"] = name
    if props:
        out["properties"] = props
    return out

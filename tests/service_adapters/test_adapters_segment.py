"""Segment messages: track / identify / page / screen / batch, and the write key."""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from rfmflow.service.adapters import (
    AdapterError,
    CredentialsError,
    from_segment,
    from_segment_batch,
    parse_basic_auth,
    request_write_key,
)
from rfmflow.service.adapters.segment import DEFAULT_TRACK_EVENTS, track_event_table
from rfmflow.service.events import MAX_BATCH_EVENTS

#: The properties of an ``Order Completed`` as in Segment's ecommerce v2 spec example.
ORDER_COMPLETED: dict[str, Any] = {
    "checkout_id": "fksdjfsdjfisjf9sdfjsd9f",
    "order_id": "50314b8e9bcf000000000000",
    "affiliation": "Google Store",
    "total": 27.5,
    "subtotal": 22.5,
    "revenue": 25.0,
    "shipping": 3,
    "tax": 2,
    "discount": 2.5,
    "coupon": "hasbros",
    "currency": "USD",
    "products": [
        {
            "product_id": "507f1f77bcf86cd799439011",
            "sku": "45790-32",
            "name": "Monopoly",
            "price": 19,
            "quantity": 1,
        }
    ],
}


def track(
    event: str = "Order Completed", properties: dict[str, Any] | None = None, **changes: Any
) -> dict[str, Any]:
    """A track message shaped like the ones analytics.js / the server libraries send."""
    message: dict[str, Any] = {
        "anonymousId": "507f191e810c19729de860ea",
        "context": {
            "library": {"name": "analytics.js", "version": "2.11.1"},
            "ip": "108.0.78.21",
            "page": {"path": "/checkout/done", "url": "https://shop.example.com/checkout/done"},
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)",
        },
        "event": event,
        "integrations": {},
        "messageId": "ajs-next-1714557600123-8b1e5c1d-6f0a-4c7e-9e1b-2d3f4a5b6c7d",
        "originalTimestamp": "2024-05-01T09:59:59.812Z",
        "properties": copy.deepcopy(ORDER_COMPLETED) if properties is None else properties,
        "receivedAt": "2024-05-01T10:00:00.416Z",
        "sentAt": "2024-05-01T10:00:00.195Z",
        "timestamp": "2024-05-01T12:00:00.033+02:00",
        "type": "track",
        "userId": "user-97980cfea0067",
    }
    message.update(changes)
    return message


# --- track: purchases and refunds ------------------------------------------------------------


def test_order_completed_is_a_purchase_of_the_total() -> None:
    result = from_segment(track())
    assert result.ignored is None and result.identify is None
    (event,) = result.events
    assert event.event_id == "seg:ajs-next-1714557600123-8b1e5c1d-6f0a-4c7e-9e1b-2d3f4a5b6c7d"
    assert event.customer_id == "user-97980cfea0067"
    assert event.type == "purchase"
    assert event.amount == Decimal("27.5")  # total (shipping and tax included), not revenue (25.0)
    assert event.currency == "USD"
    assert event.order_id == "50314b8e9bcf000000000000"
    assert event.occurred_at == datetime(2024, 5, 1, 10, 0, 0, 33000, tzinfo=UTC)
    assert event.properties is not None
    assert event.properties["source"] == "segment" and event.properties["name"] == "Order Completed"
    assert event.properties["properties"]["coupon"] == "hasbros"


def test_revenue_is_the_fallback_when_there_is_no_total() -> None:
    (event,) = from_segment(track(properties={"order_id": 7, "revenue": "25.00", "currency": "eur"})).events
    assert event.amount == Decimal("25.00") and event.currency == "EUR" and event.order_id == "7"


def test_a_purchase_needs_an_amount() -> None:
    with pytest.raises(AdapterError, match=r"^properties\.total: missing; a purchase needs"):
        from_segment(track(properties={"order_id": "o1"}))


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"total": "27,50"}, r"^properties\.total: not a number: '27,50'"),
        ({"revenue": "lots"}, r"^properties\.revenue: not a number: 'lots'"),
        ({"total": True}, r"^properties\.total: not a number \(got a boolean\)"),
        ({"total": -3}, r"^properties\.total: must not be negative"),
        ({"total": 10**14}, r"^properties\.total: is too large"),
        ({"total": 5, "currency": "dollars"}, r"^properties\.currency: not a three-letter currency code"),
        ({"total": 5, "order_id": {"id": 1}}, r"^properties\.order_id: not an identifier"),
    ],
)
def test_bad_money_fields_are_named(properties: dict[str, Any], message: str) -> None:
    with pytest.raises(AdapterError, match=message):
        from_segment(track(properties=properties))


def test_v1_order_id_spelling_is_read() -> None:
    (event,) = from_segment(track(properties={"orderId": "A-1", "total": 3})).events
    assert event.order_id == "A-1"


def test_order_refunded_is_a_refund() -> None:
    refund = track(
        "Order Refunded", properties={"order_id": "50314b8e9bcf000000000000", "total": 30, "currency": "USD"}
    )
    (event,) = from_segment(refund).events
    assert (
        event.type == "refund"
        and event.amount == Decimal(-30)
        and event.order_id == "50314b8e9bcf000000000000"
    )
    (event,) = from_segment(track("Order Refunded", properties={"order_id": "o1"})).events
    assert event.type == "refund" and event.amount is None  # amount unknown; order_id says which order


# --- track: other events ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("Email Opened", "open"),
        ("Email Link Clicked", "click"),
        ("Product Clicked", "click"),
        ("Support Ticket Created", "support_ticket"),
        ("Signed Up", "signup"),
        ("Application Opened", "visit"),
        ("order_completed", "purchase"),
        ("ORDER  COMPLETED", "purchase"),
        ("email-opened", "open"),
    ],
)
def test_the_event_table(name: str, kind: str) -> None:
    (event,) = from_segment(track(name)).events
    assert event.type == kind
    if kind not in ("purchase", "refund"):
        assert event.amount is None and event.order_id is None  # a click's revenue is not money in


def test_every_default_maps_to_a_known_type() -> None:
    assert set(track_event_table().values()) <= {
        "purchase",
        "refund",
        "open",
        "click",
        "support_ticket",
        "signup",
        "visit",
    }
    assert DEFAULT_TRACK_EVENTS["Order Completed"] == "purchase"


def test_unmapped_events_are_ignored_with_a_reason() -> None:
    result = from_segment(track("Cart Viewed"))
    assert result.events == []
    assert result.ignored == "track event 'Cart Viewed' is not mapped to an rfmflow event type"


def test_the_event_map_extends_and_overrides() -> None:
    event_map = {"Message Sent": "message", "Product Clicked": None, "Purchase": "purchase"}
    assert from_segment(track("message_sent"), event_map=event_map).events[0].type == "message"
    result = from_segment(track("Product Clicked"), event_map=event_map)
    assert result.events == [] and result.ignored is not None and "ignored by the event map" in result.ignored
    (event,) = from_segment(track("Purchase", properties={"total": "9.90"}), event_map=event_map).events
    assert event.type == "purchase" and event.amount == Decimal("9.90")
    with pytest.raises(ValueError, match="unknown type"):
        from_segment(track(), event_map={"Order Completed": "sale"})


def test_track_needs_an_event_name() -> None:
    with pytest.raises(AdapterError, match=r"^event: missing"):
        from_segment(track(event=""))
    with pytest.raises(AdapterError, match=r"^properties: not a JSON object"):
        from_segment(track(properties=[]))  # type: ignore[arg-type]


# --- ids and times ---------------------------------------------------------------------------


def test_user_id_falls_back_to_the_anonymous_id() -> None:
    assert from_segment(track(userId=None)).events[0].customer_id == "507f191e810c19729de860ea"
    assert from_segment(track(userId="")).events[0].customer_id == "507f191e810c19729de860ea"
    assert from_segment(track(userId=42)).events[0].customer_id == "42"
    with pytest.raises(
        AdapterError, match=r"^userId: missing; a Segment message needs a userId or an anonymousId"
    ):
        from_segment(track(userId=None, anonymousId=None))
    with pytest.raises(AdapterError, match=r"^userId: not an identifier"):
        from_segment(track(userId=["u"]))


def test_a_duplicate_delivery_maps_to_the_same_event_id() -> None:
    first = track()
    retried = copy.deepcopy(first)
    retried["sentAt"] = "2024-05-01T10:05:00.000Z"
    retried["receivedAt"] = "2024-05-01T10:05:00.300Z"
    assert from_segment(first).events[0].event_id == from_segment(retried).events[0].event_id


def test_without_a_message_id_the_content_is_the_id() -> None:
    first = track(messageId=None)
    retried = dict(first, sentAt="2024-05-01T10:05:00.000Z", writeKey="wk")
    other = track(messageId=None, timestamp="2024-05-01T12:00:01.000+02:00")
    made = from_segment(first).events[0].event_id
    assert made.startswith("seg:content:") and len(made) <= 128
    assert made == from_segment(retried).events[0].event_id
    assert made != from_segment(other).events[0].event_id


def test_a_long_message_id_is_hashed_to_fit() -> None:
    made = from_segment(track(messageId="m" * 200)).events[0].event_id
    assert len(made) <= 128 and made.startswith("seg:sha256:")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, datetime(2024, 5, 1, 10, 0, 0, 33000, tzinfo=UTC)),
        ({"timestamp": None}, datetime(2024, 5, 1, 9, 59, 59, 812000, tzinfo=UTC)),
        ({"timestamp": None, "originalTimestamp": None}, datetime(2024, 5, 1, 10, 0, 0, 195000, tzinfo=UTC)),
        ({"timestamp": "2024-05-01T05:00:00-05:00"}, datetime(2024, 5, 1, 10, tzinfo=UTC)),
    ],
)
def test_time_fallbacks(changes: dict[str, Any], expected: datetime) -> None:
    assert from_segment(track(**changes)).events[0].occurred_at == expected


def test_received_at_is_the_last_resort() -> None:
    bare = track(timestamp=None, originalTimestamp=None, sentAt=None)
    with pytest.raises(AdapterError, match=r"^timestamp: missing"):
        from_segment(bare)
    now = datetime(2024, 5, 2, 8, tzinfo=UTC)
    assert from_segment(bare, received_at=now).events[0].occurred_at == now
    assert from_segment(bare, sent_at="2024-05-02T07:00:00Z").events[0].occurred_at == datetime(
        2024, 5, 2, 7, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2024-05-01T12:00:00", "needs a time zone"),
        ("May 1st", "not an ISO 8601 timestamp"),
        (1714557600, "not a timestamp"),
    ],
)
def test_bad_timestamps_are_named(value: object, message: str) -> None:
    with pytest.raises(AdapterError, match=rf"^timestamp: {message}"):
        from_segment(track(timestamp=value))


# --- other calls -----------------------------------------------------------------------------


def test_identify_returns_traits_not_events() -> None:
    message = {
        "type": "identify",
        "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
        "anonymousId": "507f191e810c19729de860ea",
        "userId": "97980cfea0067",
        "timestamp": "2024-05-01T10:00:00.000Z",
        "traits": {"name": "Peter Gibbons", "email": "peter@example.com", "plan": "premium", "logins": 5},
        "context": {"ip": "8.8.8.8", "timezone": "Europe/Paris"},
    }
    result = from_segment(message)
    assert result.events == [] and result.ignored is None
    assert result.identify == {
        "event_id": "seg:022bb90c-bbac-11e4-8dfc-aa07a5b093db",
        "customer_id": "97980cfea0067",
        "user_id": "97980cfea0067",
        "anonymous_id": "507f191e810c19729de860ea",
        "traits": {"name": "Peter Gibbons", "email": "peter@example.com", "plan": "premium", "logins": 5},
        "context": {"timezone": "Europe/Paris"},
        "occurred_at": datetime(2024, 5, 1, 10, tzinfo=UTC),
    }
    with pytest.raises(AdapterError, match=r"^traits: not a JSON object"):
        from_segment(dict(message, traits="premium"))


@pytest.mark.parametrize("call", ["page", "screen"])
def test_page_and_screen_are_visits(call: str) -> None:
    message = {
        "type": call,
        "name": "Home",
        "userId": "u1",
        "messageId": f"{call}-1",
        "timestamp": "2024-05-01T10:00:00Z",
        "properties": {"title": "Welcome | Initech", "url": "https://example.com/"},
    }
    (event,) = from_segment(message).events
    assert event.type == "visit" and event.event_id == f"seg:{call}-1" and event.amount is None
    assert event.properties == {
        "source": "segment",
        "call": call,
        "name": "Home",
        "properties": message["properties"],
    }


@pytest.mark.parametrize("call", ["group", "alias"])
def test_group_and_alias_are_ignored(call: str) -> None:
    result = from_segment({"type": call, "userId": "u1", "groupId": "g", "previousId": "a"})
    assert result.events == [] and result.ignored == f"Segment {call} calls are not used by rfmflow"


def test_the_endpoint_call_fills_in_or_checks_the_type() -> None:
    message = track()
    del message["type"]
    assert from_segment(message, call="track").events[0].type == "purchase"
    with pytest.raises(AdapterError, match=r"^type: missing"):
        from_segment(message)
    with pytest.raises(AdapterError, match=r"^type: a track message sent to the /v1/identify endpoint"):
        from_segment(track(), call="identify")
    with pytest.raises(AdapterError, match=r"^type: unknown Segment call 'trak'"):
        from_segment(track(type="trak"))
    with pytest.raises(AdapterError, match=r"^message: not a JSON object"):
        from_segment("track")


def test_oversized_properties_are_named() -> None:
    with pytest.raises(AdapterError, match=r"^properties: are larger than 32 KB"):
        from_segment(track(properties={"total": 1, "blob": "x" * 40_000}))


# --- batch -------------------------------------------------------------------------------------


def test_a_batch_gives_one_outcome_per_message() -> None:
    body = {
        "batch": [
            track(),
            track(messageId="m2", properties={"total": "n/a"}),
            {"type": "identify", "userId": "u9", "messageId": "m3", "traits": {"plan": "pro"}},
            track("Cart Viewed", messageId="m4"),
            "not a message",
        ],
        "sentAt": "2024-05-01T10:00:01.000Z",
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
        "writeKey": "wk",
    }
    items = from_segment_batch(body)
    assert [i.index for i in items] == [0, 1, 2, 3, 4]
    assert items[0].result is not None and items[0].result.events[0].type == "purchase"
    assert (
        items[1].error is not None and str(items[1].error) == "batch[1].properties.total: not a number: 'n/a'"
    )
    identify = items[2].result
    assert identify is not None and identify.identify is not None
    batch_sent_at = datetime(2024, 5, 1, 10, 0, 1, tzinfo=UTC)
    assert identify.identify["occurred_at"] == batch_sent_at  # the message has no time of its own
    assert items[3].result is not None and items[3].result.ignored is not None
    assert items[4].error is not None and str(items[4].error).startswith(
        "batch[4].message: not a JSON object"
    )


def test_batch_envelope_errors() -> None:
    with pytest.raises(AdapterError, match=r"^batch: missing"):
        from_segment_batch({"sentAt": "2024-05-01T10:00:00Z"})
    with pytest.raises(AdapterError, match=r"^batch: not an array"):
        from_segment_batch({"batch": {}})
    with pytest.raises(AdapterError, match=r"^body: not a JSON object"):
        from_segment_batch([track()])
    with pytest.raises(AdapterError, match=rf"^batch: has {MAX_BATCH_EVENTS + 1} messages; at most"):
        from_segment_batch({"batch": [track()] * (MAX_BATCH_EVENTS + 1)})
    assert from_segment_batch({"batch": []}) == []


def test_a_batch_uses_the_event_map() -> None:
    items = from_segment_batch({"batch": [track("Message Sent")]}, event_map={"Message Sent": "message"})
    assert items[0].result is not None and items[0].result.events[0].type == "message"


# --- write key -------------------------------------------------------------------------------------


def _basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_the_write_key_is_the_basic_auth_user() -> None:
    assert parse_basic_auth(_basic("wk_9f8e7d")) == "wk_9f8e7d"
    assert parse_basic_auth("basic " + base64.b64encode(b"wk_9f8e7d:ignored").decode()) == "wk_9f8e7d"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing Authorization header"),
        ("", "missing Authorization header"),
        ("Bearer abc.def", "Basic scheme"),
        ("Basic", "Basic scheme"),
        ("Basic ***", "not valid base64"),
        ("Basic " + base64.b64encode(b"\xff\xfe:").decode(), "not valid base64"),
        (_basic(""), "empty write key"),
    ],
)
def test_bad_authorization_headers(header: str | None, message: str) -> None:
    with pytest.raises(CredentialsError, match=message):
        parse_basic_auth(header)


def test_the_write_key_from_header_or_body() -> None:
    assert request_write_key(_basic("wk"), {"writeKey": "wk", "batch": []}) == "wk"
    assert request_write_key(None, {"writeKey": "wk"}) == "wk"
    assert request_write_key(_basic("wk"), None) == "wk"
    with pytest.raises(CredentialsError, match="differ"):
        request_write_key(_basic("wk"), {"writeKey": "other"})
    with pytest.raises(CredentialsError, match="missing write key"):
        request_write_key(None, {"batch": []})
    with pytest.raises(CredentialsError, match="non-empty string"):
        request_write_key(None, {"writeKey": 5})

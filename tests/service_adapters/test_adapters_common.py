"""The shared parsers of the third-party adapters: money, currencies, times, ids, errors."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from rfmflow.core.errors import InputError, RfmflowError
from rfmflow.service.adapters import (
    AdapterError,
    AdapterResult,
    CredentialsError,
    MalformedSignatureError,
    MissingSignatureError,
    SignatureError,
    SignatureMismatchError,
    TimestampToleranceError,
)
from rfmflow.service.adapters.common import (
    amount,
    build_event,
    currency,
    email,
    from_minor_units,
    identifier,
    secret_keys,
    source_event_id,
    timestamp,
    unix_time,
)


def test_error_classes_tell_input_signature_and_credentials_apart() -> None:
    err = AdapterError("properties.revenue", "not a number")
    assert isinstance(err, InputError)
    assert str(err) == "properties.revenue: not a number"
    assert (err.field, err.reason) == ("properties.revenue", "not a number")
    assert str(err.within("batch[3]")) == "batch[3].properties.revenue: not a number"
    for cls in (MissingSignatureError, MalformedSignatureError, SignatureMismatchError):
        assert issubclass(cls, SignatureError) and not issubclass(cls, InputError)
    assert issubclass(TimestampToleranceError, SignatureError)
    assert (
        len({c.code for c in (MissingSignatureError, MalformedSignatureError, SignatureMismatchError)}) == 3
    )
    assert issubclass(CredentialsError, RfmflowError) and not issubclass(CredentialsError, InputError)


def test_skip_result_carries_only_the_reason() -> None:
    result = AdapterResult.skip("not used")
    assert result.events == [] and result.ignored == "not used" and result.identify is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (30, Decimal(30)),
        (30.5, Decimal("30.5")),
        (0.1, Decimal("0.1")),  # the shortest text form, not 0.1000000000000000055511151231257827
        ("19.99", Decimal("19.99")),
        (" 403.00 ", Decimal("403.00")),
        (Decimal("7.25"), Decimal("7.25")),
        (0, Decimal(0)),
    ],
)
def test_amount_reads_numbers_and_numeric_strings(raw: object, expected: Decimal) -> None:
    value = amount(raw, "total")
    assert value == expected and str(value) == str(expected)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "total: missing"),
        (True, "total: not a number (got a boolean)"),
        ("abc", "total: not a number: 'abc'"),
        ("1,234.50", "total: not a number: '1,234.50'"),
        ("$30", "total: not a number: '$30'"),
        ("NaN", "total: not a finite number: 'NaN'"),
        (float("inf"), "total: not a finite number"),
        ([30], "total: not a number (got an array)"),
        ({"amount": 1}, "total: not a number (got an object)"),
        (-5, "total: must not be negative (got -5)"),
    ],
)
def test_amount_errors_name_the_field(raw: object, message: str) -> None:
    with pytest.raises(AdapterError) as caught:
        amount(raw, "total")
    assert str(caught.value) == message


def test_negative_amounts_only_where_allowed() -> None:
    assert amount("-10.00", "refunds[0].total", allow_negative=True) == Decimal("-10.00")


@pytest.mark.parametrize(
    ("code", "minor", "expected"),
    [
        ("USD", 2000, Decimal("20.00")),
        ("EUR", 1, Decimal("0.01")),
        ("JPY", 5000, Decimal(5000)),
        ("KRW", 15000, Decimal(15000)),
        ("KWD", 12340, Decimal("12.340")),
        ("ISK", 50000, Decimal("500.00")),  # two-decimal in Stripe's API
        ("HUF", 1000, Decimal("10.00")),
    ],
)
def test_minor_units_follow_the_currency(code: str, minor: int, expected: Decimal) -> None:
    value = from_minor_units(minor, code, "amount")
    assert value == expected and str(value) == str(expected)


@pytest.mark.parametrize(
    ("raw", "message"), [("20.00", "not an integer amount"), (True, "not an integer"), (-1, "negative")]
)
def test_minor_units_must_be_non_negative_integers(raw: object, message: str) -> None:
    with pytest.raises(AdapterError, match=message):
        from_minor_units(raw, "USD", "data.object.amount")


def test_currency_codes() -> None:
    assert currency("usd", "currency") == "USD"
    assert currency(None, "currency") is None
    assert currency("", "currency") is None
    for bad in ("EURO", "E1R", 978, "€€€"):
        with pytest.raises(AdapterError, match="currency: not a three-letter currency code"):
            currency(bad, "currency")


def test_timestamps_need_a_zone_and_come_out_in_utc() -> None:
    assert timestamp("2024-05-01T12:00:00+02:00", "t") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert timestamp("2024-05-01T10:00:00.123Z", "t") == datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)
    assert timestamp("2024-05-01T10:00:00", "t", naive_is_utc=True) == datetime(2024, 5, 1, 10, tzinfo=UTC)
    with pytest.raises(AdapterError, match="t: needs a time zone"):
        timestamp("2024-05-01T10:00:00", "t")
    with pytest.raises(AdapterError, match="t: not an ISO 8601 timestamp: 'yesterday'"):
        timestamp("yesterday", "t")
    with pytest.raises(AdapterError, match="t: missing"):
        timestamp(None, "t")
    with pytest.raises(AdapterError, match="t: not a timestamp: 1714557600"):
        timestamp(1714557600, "t")
    assert unix_time(1714557600, "created") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    with pytest.raises(AdapterError, match="created: not a Unix timestamp"):
        unix_time("1714557600", "created")
    with pytest.raises(AdapterError, match="created: out of range"):
        unix_time(10**20, "created")


def test_identifiers_and_emails() -> None:
    assert identifier(820982911946154508, "id") == "820982911946154508"
    assert identifier(12.0, "id") == "12"
    assert identifier(" cus_1 ", "id") == "cus_1"
    with pytest.raises(AdapterError, match="id: missing"):
        identifier("  ", "id")
    with pytest.raises(AdapterError, match="id: not an identifier"):
        identifier({"id": 1}, "id")
    with pytest.raises(AdapterError, match="id: invalid identifier"):
        identifier("a\nb", "id")
    assert email("  Jane.Doe@Example.COM ") == "jane.doe@example.com"
    assert email("not an address") is None
    assert email(None) is None


def test_source_event_ids_are_prefixed_and_bounded() -> None:
    assert source_event_id("seg", "abc") == "seg:abc"
    long_key = "x" * 300
    made = source_event_id("seg", long_key)
    assert len(made) <= 128 and made.startswith("seg:sha256:")
    assert made == source_event_id("seg", long_key)
    assert made != source_event_id("seg", long_key + "y")


def test_build_event_names_the_vendor_field() -> None:
    base = {"event_id": "x:1", "customer_id": "c", "occurred_at": datetime(2024, 1, 1, tzinfo=UTC)}
    with pytest.raises(AdapterError, match=r"^total_price: is too large"):
        build_event({"amount": "total_price"}, **base, type="purchase", amount=Decimal(10) ** 14)
    with pytest.raises(AdapterError, match=r"^properties\.total: a click event carries no amount"):
        build_event({"amount": "properties.total"}, **base, type="click", amount=Decimal(3))


def test_secrets_must_be_non_empty() -> None:
    assert secret_keys("s") == [b"s"]
    assert secret_keys(["old", "new"]) == [b"old", b"new"]
    for bad in ("", [], ["ok", ""]):
        with pytest.raises(ValueError, match="non-empty"):
            secret_keys(bad)

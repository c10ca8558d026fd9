"""What every third-party adapter shares: the result type, the errors and the field parsers.

An adapter is a pure function from a vendor's payload (already parsed from JSON) to an
:class:`AdapterResult`: the :class:`~rfmflow.service.events.EventIn` objects it means, or the
reason it means none ("ignored", answered 200 so the vendor does not retry), or, for a Segment
``identify``, the traits to store. A payload that cannot be read raises :class:`AdapterError`,
whose message names the field path in the vendor's payload (``properties.total: not a number``).

Signature checks raise a :class:`SignatureError` subclass that tells a missing header, a
malformed one, a signature that does not match and a timestamp outside the tolerance apart; a
missing or unreadable Segment write key raises :class:`CredentialsError`. Neither is an
``InputError``: an endpoint answers them with 400 and 401, not 422.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from pydantic import ValidationError

from rfmflow.core.errors import InputError, RfmflowError
from rfmflow.service.events import EventIn, clean_id

#: Longest ``event_id`` :class:`EventIn` accepts.
MAX_EVENT_ID = 128

#: ISO 4217 currencies whose Stripe amounts carry no minor unit (Stripe's "zero-decimal" list).
ZERO_DECIMAL_CURRENCIES = frozenset({
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF",
    "XPF",
})  # fmt: skip
#: Currencies whose Stripe amounts are in thousandths. ISK, HUF and TWD stay two-decimal in the
#: API (whole units are enforced by making amounts multiples of 100), so they need no entry.
THREE_DECIMAL_CURRENCIES = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


@dataclass(frozen=True)
class AdapterResult:
    """What one third-party message means to rfmflow.

    ``events`` are the events to ingest (often one, none when ignored, several for a Stripe
    charge with several refunds); ``ignored`` says why a well-formed message carries nothing
    rfmflow counts (unknown event name, unpaid order, no customer to attribute it to); and
    ``identify`` carries a Segment ``identify`` call (customer id, traits, time), which is not
    an RFM event but a profile update; ``traits`` are what a shop's webhook says about the
    customer of its events (email, name, phone, locale), merged into their profile.
    """

    events: list[EventIn] = field(default_factory=list)
    ignored: str | None = None
    identify: dict[str, Any] | None = None
    traits: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def skip(cls, reason: str) -> AdapterResult:
        """A result that ingests nothing, with the reason."""
        return cls(ignored=reason)


class AdapterError(InputError):
    """A third-party payload cannot be read. ``field`` is the path in the vendor's payload."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)

    def within(self, prefix: str) -> AdapterError:
        """The same error located inside ``prefix`` (``batch[3]`` gives ``batch[3].userId``)."""
        return AdapterError(f"{prefix}.{self.field}" if self.field else prefix, self.reason)


class CredentialsError(RfmflowError):
    """The Segment write key is missing or unreadable (answer 401)."""


class SignatureError(RfmflowError):
    """A webhook's signature cannot be trusted (answer 400). ``code`` names the kind."""

    code: ClassVar[str] = "invalid_signature"


class MissingSignatureError(SignatureError):
    """The signature header is absent or empty."""

    code: ClassVar[str] = "missing_signature"


class MalformedSignatureError(SignatureError):
    """The signature header is present but cannot be parsed."""

    code: ClassVar[str] = "malformed_signature"


class SignatureMismatchError(SignatureError):
    """No signature in the header matches the body under the configured secret(s)."""

    code: ClassVar[str] = "signature_mismatch"


class TimestampToleranceError(SignatureError):
    """The signature is valid but its timestamp is too old (a replay) or too far in the future."""

    code: ClassVar[str] = "timestamp_out_of_tolerance"

    def __init__(self, message: str, *, timestamp: int, now: float, tolerance_s: float) -> None:
        self.timestamp = timestamp
        self.now = now
        self.tolerance_s = tolerance_s
        super().__init__(message)

    @property
    def stale(self) -> bool:
        """True when the timestamp is in the past (a replay), False when in the future."""
        return self.timestamp < self.now


# ---------------------------------------------------------------------------------------------
# payload access


def as_object(value: Any, where: str) -> dict[str, Any]:
    """``value`` as a JSON object, or an error naming ``where``."""
    if not isinstance(value, dict):
        raise AdapterError(where, f"not a JSON object (got {_kind(value)})")
    return value


def optional_object(value: Any, where: str) -> dict[str, Any]:
    """A JSON object that may be absent (``None`` gives an empty dict)."""
    return {} if value is None else as_object(value, where)


def contact_traits(**values: Any) -> dict[str, Any]:
    """The non-empty string values among ``values`` (trait name -> value), stripped."""
    return {k: v.strip() for k, v in values.items() if isinstance(v, str) and v.strip()}


def identifier(value: Any, where: str) -> str:
    """A required identifier as text (``12`` and ``12.0`` both give ``"12"``)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise AdapterError(where, "missing")
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise AdapterError(where, f"not an identifier (got {_kind(value)})")
    try:
        return clean_id(value)
    except ValueError as err:
        raise AdapterError(where, str(err)) from None


def optional_identifier(value: Any, where: str) -> str | None:
    """An identifier that may be absent: ``None`` and ``""`` give ``None``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return identifier(value, where)


def email(value: Any) -> str | None:
    """An e-mail address used as a customer id: stripped and lower-cased; junk gives ``None``."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if "@" not in text or len(text) > 256 or any(ch.isspace() or ord(ch) < 32 for ch in text):
        return None
    return text


def source_event_id(prefix: str, key: str) -> str:
    """``<prefix>:<key>``, the event id of a third-party message.

    The prefix keeps ids from different sources apart (a Segment ``messageId`` can never equal
    a Shopify order's id). A key too long for ``event_id`` is replaced by its SHA-256, so the
    same key still always gives the same id.
    """
    text = f"{prefix}:{key}"
    if len(text) <= MAX_EVENT_ID:
        return text
    return f"{prefix}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


# ---------------------------------------------------------------------------------------------
# money


def amount(value: Any, where: str, *, allow_negative: bool = False) -> Decimal:
    """A money amount in currency units from a number or a numeric string (``"30.50"``).

    Floats go through their shortest text form, so ``30.1`` is ``Decimal("30.1")``, not the
    binary approximation. Booleans, NaN, infinities, thousands separators and currency symbols
    are errors; so are negative amounts unless ``allow_negative``.
    """
    if isinstance(value, bool) or value is None:
        raise AdapterError(where, "missing" if value is None else "not a number (got a boolean)")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise AdapterError(where, "not a finite number")
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise AdapterError(where, f"not a number: {value!r}") from None
    else:
        raise AdapterError(where, f"not a number (got {_kind(value)})")
    if not number.is_finite():
        raise AdapterError(where, f"not a finite number: {value!r}")
    if number < 0 and not allow_negative:
        raise AdapterError(where, f"must not be negative (got {value!r})")
    return number


def currency(value: Any, where: str) -> str | None:
    """A three-letter ISO 4217 code, upper-cased (Stripe sends ``"usd"``); absent gives ``None``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or len(value.strip()) != 3 or not value.strip().isascii():
        raise AdapterError(where, f"not a three-letter currency code: {value!r}")
    code = value.strip().upper()
    if not code.isalpha():
        raise AdapterError(where, f"not a three-letter currency code: {value!r}")
    return code


def required_currency(value: Any, where: str) -> str:
    """A three-letter currency code that must be present."""
    code = currency(value, where)
    if code is None:
        raise AdapterError(where, "missing")
    return code


def minor_unit_exponent(code: str) -> int:
    """Decimal places of ``code``'s minor unit as Stripe counts them (0, 2 or 3)."""
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def minor_units(value: Any, where: str) -> int:
    """A non-negative integer amount in a currency's smallest unit, as Stripe sends them."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise AdapterError(where, "missing" if value is None else f"not an integer amount: {value!r}")
    if value < 0:
        raise AdapterError(where, f"must not be negative (got {value})")
    return value


def from_minor_units(value: Any, code: str, where: str) -> Decimal:
    """An integer amount in ``code``'s smallest unit (cents; yen) as a decimal in currency units."""
    return Decimal(minor_units(value, where)).scaleb(-minor_unit_exponent(code))


# ---------------------------------------------------------------------------------------------
# time


def timestamp(value: Any, where: str, *, naive_is_utc: bool = False) -> datetime:
    """An ISO 8601 timestamp (``Z`` or an offset) as an aware UTC datetime.

    A timestamp without a zone is an error, unless ``naive_is_utc`` (WooCommerce's ``*_gmt``
    fields are UTC written without one).
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise AdapterError(where, f"not an ISO 8601 timestamp: {value!r}") from None
    else:
        raise AdapterError(where, "missing" if value in (None, "") else f"not a timestamp: {value!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        if not naive_is_utc:
            raise AdapterError(where, f"needs a time zone (Z or an offset such as +02:00): {value!r}")
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def unix_time(value: Any, where: str) -> datetime:
    """Whole seconds since the epoch (Stripe's ``created``) as an aware UTC datetime."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise AdapterError(where, "missing" if value is None else f"not a Unix timestamp: {value!r}")
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise AdapterError(where, f"out of range: {value}") from None


# ---------------------------------------------------------------------------------------------
# building the event


def build_event(origin: Mapping[str, str], **fields: Any) -> EventIn:
    """An :class:`EventIn` from ``fields``; a validation error names the vendor's field.

    ``origin`` maps EventIn field names to the paths they came from in the vendor's payload.
    """
    try:
        return EventIn(**fields)
    except ValidationError as err:
        first = err.errors()[0]
        loc = first.get("loc") or ()
        name = str(loc[0]) if loc else ""
        reason = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        if not name and ": " in reason:  # a model-level check names its own field first
            name, reason = reason.split(": ", 1)
        raise AdapterError(origin.get(name, name), reason) from None


# ---------------------------------------------------------------------------------------------
# signatures


def secret_keys(secret: str | Sequence[str]) -> list[bytes]:
    """The signing secret(s) as keys. Several are allowed while a secret is being rotated."""
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets or any(not isinstance(s, str) or not s for s in secrets):
        raise ValueError("a webhook signing secret must be a non-empty string")
    return [s.encode() for s in secrets]


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """The raw HMAC-SHA256 digest of ``message``."""
    return hmac.new(key, message, hashlib.sha256).digest()


def verify_base64_hmac(
    payload: bytes, header: str | None, secret: str | Sequence[str], header_name: str
) -> None:
    """Check a header holding the base64 HMAC-SHA256 of the raw body (Shopify, WooCommerce).

    The comparison is constant-time. Raises :class:`MissingSignatureError`,
    :class:`MalformedSignatureError` or :class:`SignatureMismatchError`.
    """
    keys = secret_keys(secret)
    if not isinstance(payload, bytes | bytearray):
        raise TypeError("verify the raw request body (bytes), not parsed JSON")
    if header is None or not header.strip():
        raise MissingSignatureError(f"the {header_name} header is missing")
    try:
        given = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedSignatureError(f"the {header_name} header is not base64") from None
    if len(given) != hashlib.sha256().digest_size:
        raise MalformedSignatureError(f"the {header_name} header is not a base64 HMAC-SHA256 digest")
    if not any(hmac.compare_digest(hmac_sha256(key, bytes(payload)), given) for key in keys):
        raise SignatureMismatchError(f"the {header_name} signature does not match the body")


def base64_hmac(payload: bytes, secret: str) -> str:
    """The base64 HMAC-SHA256 of ``payload``: what Shopify and WooCommerce put in their header."""
    return base64.b64encode(hmac_sha256(secret.encode(), payload)).decode("ascii")


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)

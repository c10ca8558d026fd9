"""The event the service ingests, validated at the boundary.

Every way in (``POST /v1/events``, the Segment-compatible endpoints, the Stripe, Shopify and
WooCommerce webhooks, file imports) produces :class:`EventIn` objects; everything after
that sees one shape. Validation errors name the field and the reason.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Event types the service knows; purchases and refunds carry money.
EVENT_TYPES = (
    "purchase",
    "refund",
    "message",
    "command",
    "click",
    "open",
    "visit",
    "support_ticket",
    "signup",
    "reply",
)
MONEY_TYPES = ("purchase", "refund")
MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 1000
MAX_ABS_AMOUNT = Decimal(10) ** 13


class EventIn(BaseModel):
    """One customer event.

    ``occurred_at`` must carry a time zone (``Z`` or an offset) and is stored in UTC;
    ``amount`` is a decimal in currency units (refunds may be given positive or negative:
    they are stored negative); ``order_id`` groups the lines of one order.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    event_id: Annotated[str, Field(min_length=1, max_length=128)]
    customer_id: Annotated[str, Field(min_length=1, max_length=256)]
    type: str
    occurred_at: datetime
    amount: Decimal | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Za-z]{3}$")] | None = None
    order_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    properties: dict[str, Any] | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        kind = value.strip().lower()
        if kind not in EVENT_TYPES:
            raise ValueError(f"unknown event type {value!r}; known: {', '.join(EVENT_TYPES)}")
        return kind

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("needs a time zone (for example 2024-05-01T12:00:00Z or +02:00)")
        return value.astimezone(UTC)

    @field_validator("amount")
    @classmethod
    def _finite(cls, value: Decimal | None) -> Decimal | None:
        if value is None:
            return None
        if not value.is_finite():
            raise ValueError("must be a finite number")
        if abs(value) >= MAX_ABS_AMOUNT:
            raise ValueError("is too large (|amount| must be below 10^13)")
        return value

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return value.upper() if value else None

    @field_validator("properties")
    @classmethod
    def _small(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value, default=str)) > MAX_EVENT_BYTES:
            raise ValueError(f"are larger than {MAX_EVENT_BYTES // 1024} KB")
        return value

    @model_validator(mode="after")
    def _money(self) -> EventIn:
        if self.type == "refund" and self.amount is not None and self.amount > 0:
            self.amount = -self.amount
        if self.type not in MONEY_TYPES and self.amount is not None and self.amount != 0:
            raise ValueError(f"amount: a {self.type} event carries no amount")
        return self

    def amount_minor(self, scale: int) -> int | None:
        """The amount in minor units (cents for ``scale`` 2); more decimals are an error."""
        if self.amount is None:
            return None
        minor = self.amount.scaleb(scale)
        if minor != minor.to_integral_value():
            raise ValueError(f"amount: {self.amount} has more than {scale} decimals")
        return int(minor)


def clean_id(value: Any) -> str:
    """An identifier from a third-party payload as text (numbers without a trailing .0)."""
    if isinstance(value, bool) or value is None:
        raise ValueError("missing identifier")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if not text or not re.fullmatch(r"[^\x00-\x1f]{1,256}", text):
        raise ValueError(f"invalid identifier {value!r}")
    return text

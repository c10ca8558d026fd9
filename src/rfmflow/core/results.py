"""What a scoring run returns besides the per-customer rows: summaries, bands and warnings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal


@dataclass(frozen=True)
class SegmentSummary:
    """One row of the segment summary table."""

    segment: str  # "(no segment)" for customers no rule matched
    customers: int
    share: float  # of all customers, 0..1
    mean_recency_days: float | None
    mean_frequency: float
    mean_monetary: float
    revenue: Decimal  # sum of monetary (currency units when M is money)
    revenue_share: float  # of total positive revenue, 0..1


@dataclass(frozen=True)
class ScoreBand:
    """The values that got one score: ``low <= value <= high`` (observed or fixed); with
    ``low_open`` the lower bound is excluded (``low < value``), as for fixed money edges."""

    score: int
    low: float | None
    high: float | None
    customers: int
    low_open: bool = False


@dataclass(frozen=True)
class Warning:
    """A health warning: a stable ``code`` for machines and a ``message`` for people."""

    code: str
    message: str


@dataclass(frozen=True)
class InputStats:
    source: str
    rows_read: int
    rows_rejected: int
    rejects_path: str | None
    first_day: date | None
    last_day: date | None
    columns: dict[str, str] = field(default_factory=dict)  # role -> source column


NO_SEGMENT = "(no segment)"

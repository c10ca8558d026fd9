"""Number formatting shared by the tables and the charts."""

from __future__ import annotations

import math
from decimal import Decimal

DASH = "\u2014"


def count(value: int) -> str:
    """``1234567`` -> ``'1,234,567'``."""
    return f"{value:,}"


def percent(share: float | None, digits: int = 1) -> str:
    """A 0..1 share as a percentage: ``0.1234`` -> ``'12.3%'``."""
    if share is None or not math.isfinite(share):
        return DASH
    return f"{share * 100:.{digits}f}%"


def number(value: float | Decimal | None, digits: int = 1) -> str:
    """A rounded number with thousands separators; a dash for ``None``/NaN."""
    if value is None:
        return DASH
    if isinstance(value, Decimal):
        return f"{value:,.{digits}f}" if value.is_finite() else DASH
    if not math.isfinite(value):
        return DASH
    return f"{value:,.{digits}f}"


def bound(value: float | None) -> str:
    """A band boundary: whole numbers without decimals, others with up to two."""
    if value is None or not math.isfinite(value):
        return DASH
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def compact(value: float) -> str:
    """Short form for chart labels: ``950`` -> ``'950'``, ``12345`` -> ``'12.3k'``, ``2.5e6`` -> ``'2.5M'``.

    Values under 10,000 keep all their digits (with separators)."""
    if not math.isfinite(value):
        return ""
    size = abs(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e4, "k")):
        if size >= limit:
            scaled = value / (limit if suffix != "k" else 1e3)
            return f"{scaled:,.1f}".rstrip("0").rstrip(".") + suffix
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}" if size >= 10 else f"{value:,.2f}"


def estimate(value: float | None) -> str:
    """A fitted parameter or statistic with four significant digits: ``0.2425``, ``4.414``,
    ``79.25``, ``1,234.6``; scientific notation below 0.001; a dash for ``None``/NaN."""
    if value is None or not math.isfinite(value):
        return DASH
    size = abs(value)
    if size >= 1000:
        return f"{value:,.1f}"
    if size != 0 and size < 1e-3:
        return f"{value:.3e}"
    return f"{value:.4g}"

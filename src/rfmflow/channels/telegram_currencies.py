"""How many decimals each currency has in Telegram payments (``exp`` of its currencies.json).

Telegram gives ``total_amount`` "in the smallest units of the currency": 145 for US$ 1.45,
and the number of digits after the decimal point is the ``exp`` of Telegram's
``currencies.json`` (2 for most currencies). The table is bundled here (nothing is fetched at
run time) and follows ISO 4217's minor units, which Telegram's ``exp`` matches for the
currencies it supports: 0 for the yen, the won, the dong and the others below, 3 for the
Gulf and North African dinars, 2 otherwise. ``XTR`` (Telegram Stars, digital goods) counts
whole stars: ``exp`` 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

ZERO_DECIMALS = frozenset({
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV",
    "XAF", "XOF", "XPF", "XTR",
})  # fmt: skip
THREE_DECIMALS = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})
TWO_DECIMALS = frozenset({
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN",
    "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CNY", "COP",
    "CRC", "CUP", "CVE", "CZK", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP",
    "GEL", "GHS", "GIP", "GMD", "GTQ", "GYD", "HKD", "HNL", "HRK", "HTG", "HUF", "IDR", "ILS", "INR",
    "IRR", "JMD", "KES", "KGS", "KHR", "KPW", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "MAD",
    "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD",
    "NGN", "NIO", "NOK", "NPR", "NZD", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "QAR", "RON", "RSD",
    "RUB", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC",
    "SYP", "SZL", "THB", "TJS", "TMT", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "USD", "UYU", "UZS",
    "VES", "WST", "XCD", "YER", "ZAR", "ZMW", "ZWG",
})  # fmt: skip


def currency_exponent(currency: str, extra: Mapping[str, int] | None = None) -> int:
    """Digits after the decimal point of ``currency``; ``KeyError`` for a code not in the table.

    ``extra`` adds or overrides entries (a currency Telegram added after this table).
    """
    code = currency.strip().upper()
    if extra and code in extra:
        return int(extra[code])
    if code in ZERO_DECIMALS:
        return 0
    if code in THREE_DECIMALS:
        return 3
    if code in TWO_DECIMALS:
        return 2
    raise KeyError(code)


def amount_from_smallest_units(total: int, currency: str, extra: Mapping[str, int] | None = None) -> Decimal:
    """``total`` smallest units as a decimal: ``(145, "USD")`` → ``1.45``, ``(500, "JPY")`` → ``500``."""
    return Decimal(total).scaleb(-currency_exponent(currency, extra))

"""Finding the customer, date, amount and other columns of an event file by their names."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rfmflow.core.errors import InputError

#: Role -> accepted names, normalised (lower case, letters and digits only), best first.
CANDIDATES: dict[str, tuple[str, ...]] = {
    "customer": ("customerid", "userid", "clientid", "customer", "user", "custid", "customerno",
                 "memberid", "buyerid", "accountid", "chatid", "contactid", "shopperid", "email"),
    "date": ("orderdate", "invoicedate", "timestamp", "createdat", "occurredat", "eventtime",
             "eventdate", "purchasedate", "transactiondate", "datetime", "date", "time", "ts",
             "orderedat", "paidat"),
    "amount": ("amount", "revenue", "total", "totalamount", "ordertotal", "sales", "netamount",
               "dollarvalue", "value", "spend", "monetary", "totalprice", "grandtotal", "price_total"),
    "price": ("price", "unitprice", "itemprice"),
    "quantity": ("quantity", "qty", "units", "numberofitems", "count"),
    "type": ("eventtype", "type", "event", "action", "kind"),
    "order": ("orderid", "invoiceno", "invoice", "invoiceid", "transactionid", "ordernumber", "orderno"),
    "currency": ("currency", "currencycode"),
}  # fmt: skip
ROLES = tuple(CANDIDATES)


def normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True)
class ColumnMap:
    """Which source column plays which role. ``amount`` or ``price``+``quantity`` may be absent
    (an interactions file without money)."""

    customer: str
    date: str
    amount: str | None = None
    price: str | None = None
    quantity: str | None = None
    type: str | None = None
    order: str | None = None
    currency: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def detect_columns(names: Sequence[str], overrides: Mapping[str, str | None] | None = None) -> ColumnMap:
    """Map roles to columns: explicit ``overrides`` first, then the common names above.

    Raises :class:`InputError` naming the columns found when customer or date is missing,
    or when an override names a column that does not exist.
    """
    given: dict[str, str] = {k: v for k, v in (overrides or {}).items() if v}
    by_norm: dict[str, str] = {}
    for name in names:
        by_norm.setdefault(normalise(name), name)
    found: dict[str, str] = {}
    for role, column in given.items():
        if role not in CANDIDATES:
            raise InputError(f"unknown column role {role!r}; known: {', '.join(ROLES)}")
        if column not in names:
            raise InputError(f"--{role}-col {column!r}: no such column; the file has: {', '.join(names)}")
        found[role] = column
    taken = set(found.values())
    for role, candidates in CANDIDATES.items():
        if role in found:
            continue
        for cand in candidates:
            col = by_norm.get(normalise(cand))
            if col is not None and col not in taken:
                found[role] = col
                taken.add(col)
                break
    missing = [r for r in ("customer", "date") if r not in found]
    if missing:
        hints = {
            "customer": "customer_id, user_id, CustomerID",
            "date": "order_date, InvoiceDate, timestamp, created_at",
        }
        what = " and ".join(f"{r} (looked for {hints[r]})" for r in missing)
        raise InputError(
            f"no recognisable {what} column; the file has: {', '.join(names) or '(no columns)'}; "
            f"map them with " + ", ".join(f"--{r}-col NAME" for r in missing)
        )
    if "amount" in found and ("price" in found or "quantity" in found) and "amount" not in given:
        # A total column wins over price x quantity; keep price/quantity unused.
        found.pop("price", None)
        found.pop("quantity", None)
    if "amount" not in found and not ("price" in found and "quantity" in found):
        if "price" in found and "quantity" not in found:
            found["amount"] = found.pop("price")
        else:
            found.pop("price", None)
            found.pop("quantity", None)
    return ColumnMap(**found)

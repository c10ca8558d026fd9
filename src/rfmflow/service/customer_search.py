"""Customer search: filters, sorting and keyset (cursor) pagination over the scored customers.

The list holds every customer with a row in ``customer_scores`` (everyone a run or a live
re-score has scored), with their aggregates (``customers``), their profile's name and email
(``customer_profiles``) and their tags (``customer_tags``, rule and manual).

Filters combine with AND: segments (any of), lifecycles (any of), predicted churn risks (any
of; from ``customer_predictions``), tags (all of ``tags_all``, at
least one of ``tags_any``, none of ``tags_none``), closed ranges on the R/F/M scores, recency
days, frequency and monetary, and ``q``: a prefix of the customer id (case-sensitive), of the
profile's email or of its name (both case-insensitive; on SQLite only ASCII letters fold).

Pages are cut by **keyset**, never by OFFSET: the order is the sort value then the customer id
(the same direction for both, so ties are stable), and a cursor carries the last row's value
and id. Customers whose sort value is empty (no purchase yet: no recency; a scheme without M:
no M score) come after all the others in both directions.

Which sorts an index serves: the customer id (the primary key), and a segment filter (the
``(segment, customer_id)`` index). The other sorts read every row that passes the filters and
keep the top of them (a top-N sort): ``customer_scores`` is rewritten by every full run, and an
index per sort column made that rewrite several times slower (measured; see migration 0004),
so the list pays a scan instead. The total is a count over the same filters; the API runs it
beside the page (:func:`page_and_total`).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from rfmflow.core.errors import RfmflowError
from rfmflow.service.db.tables import (
    NO_SEGMENT,
    customer_predictions,
    customer_profiles,
    customer_scores,
    customer_tags,
    customers,
)
from rfmflow.service.scoring_live import day_date
from rfmflow.service.scoring_schemes import active_scheme
from rfmflow.service.settings import Settings

SORTS = (
    "customer_id",
    "recency",
    "frequency",
    "monetary",
    "r_score",
    "f_score",
    "m_score",
    "last_activity",
)
"""What the list can be sorted by (``last_activity``: the day of the customer's latest event)."""
Sort = Literal[
    "customer_id", "recency", "frequency", "monetary", "r_score", "f_score", "m_score", "last_activity"
]
Order = Literal["asc", "desc"]
MAX_LIMIT = 1000
LAST_CHAR = "\U0010ffff"
"""Appended to a prefix it bounds a range that holds exactly the strings starting with it
(binary collation)."""

CUSTOMER_COLUMNS = (
    "customer_id",
    "name",
    "email",
    "segment",
    "rfm",
    "r_score",
    "f_score",
    "m_score",
    "recency_days",
    "frequency",
    "monetary",
    "lifecycle",
    "tags",
    "last_activity",
    "last_purchase_date",
    "purchases",
    "revenue",
    "as_of",
    "scheme_version",
)
"""The fields of a listed customer, in order (also the export's columns)."""

CHURN_RISKS = ("low", "medium", "high")


class SearchError(RfmflowError):
    """Query parameters that cannot be used: each problem names its parameter."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{param}: {msg}" for param, msg in self.problems))

    def details(self) -> list[dict[str, Any]]:
        """FastAPI-style 422 details."""
        return [{"loc": ["query", p], "msg": m, "type": "value_error"} for p, m in self.problems]


@dataclass(frozen=True)
class Bounds:
    """A closed range; either end may be open (None)."""

    low: Any = None
    high: Any = None


@dataclass(frozen=True)
class CustomerFilter:
    """What to list. Empty tuples and open bounds filter nothing."""

    segments: tuple[str, ...] = ()
    lifecycles: tuple[str, ...] = ()
    churn_risks: tuple[str, ...] = ()
    """Predicted churn risk (``low``, ``medium``, ``high``; customers without a prediction never match)."""
    tags_all: tuple[str, ...] = ()
    tags_any: tuple[str, ...] = ()
    tags_none: tuple[str, ...] = ()
    r_score: Bounds = field(default_factory=Bounds)
    f_score: Bounds = field(default_factory=Bounds)
    m_score: Bounds = field(default_factory=Bounds)
    recency: Bounds = field(default_factory=Bounds)
    frequency: Bounds = field(default_factory=Bounds)
    monetary: Bounds = field(default_factory=Bounds)
    """In currency units (decimals) when M is money, else in the scheme's unit."""
    q: str | None = None

    def problems(self) -> list[tuple[str, str]]:
        """Ranges whose low end is above their high end, named by query parameter."""
        out = []
        for name in ("r_score", "f_score", "m_score", "recency", "frequency", "monetary"):
            bounds: Bounds = getattr(self, name)
            if bounds.low is not None and bounds.high is not None and bounds.low > bounds.high:
                out.append(
                    (f"{name}_min", f"must not be greater than {name}_max ({bounds.low} > {bounds.high})")
                )
        unknown = [r for r in self.churn_risks if r not in CHURN_RISKS]
        if unknown:
            out.append(("churn_risk", f"{unknown[0]!r} is not one of {', '.join(CHURN_RISKS)}"))
        if self.q is not None and not self.q.strip():
            out.append(("q", "must not be blank"))
        return out


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last row's sort value (None in the empty-value tail) and id."""

    sort: str
    order: str
    tail: bool
    value: int | float | None
    customer_id: str

    def encode(self) -> str:
        raw = json.dumps(
            [self.sort, self.order, int(self.tail), self.value, self.customer_id], separators=(",", ":")
        )
        return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")

    @staticmethod
    def decode(text: str, *, sort: str, order: str) -> Cursor:
        bad = SearchError([("cursor", "not a cursor this API returned")])
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
            data = json.loads(raw.decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise bad from None
        if not isinstance(data, list) or len(data) != 5:
            raise bad
        c_sort, c_order, tail, value, customer_id = data
        if c_sort not in SORTS or c_order not in ("asc", "desc") or tail not in (0, 1):
            raise bad
        if not isinstance(customer_id, str) or not customer_id:
            raise bad
        if isinstance(value, bool) or not (value is None or isinstance(value, int | float)):
            raise bad
        if isinstance(value, float) and not math.isfinite(value):
            raise bad
        if (value is None) != (bool(tail) or c_sort == "customer_id"):
            raise bad
        if (c_sort, c_order) != (sort, order):
            raise SearchError(
                [("cursor", f"this cursor pages sort={c_sort}&order={c_order}; ask again without a cursor")]
            )
        return Cursor(c_sort, c_order, bool(tail), value, customer_id)


@dataclass(frozen=True)
class SortKey:
    """The column a sort reads, the id column that breaks ties, and whether it can be empty."""

    column: sa.ColumnElement[Any]
    id_column: sa.ColumnElement[str]
    nullable: bool
    joins_customers: bool


def money_scheme(conn: Connection) -> bool:
    """Whether the active scheme's M is money (``monetary_minor``) rather than a count."""
    return active_scheme(conn).scheme.metrics.monetary.measure == "amount"


def check_segments(conn: Connection, segments: Sequence[str], *, param: str = "segment") -> None:
    """Raise :class:`SearchError` naming ``param`` for a segment the active scheme does not have."""
    if not segments:
        return
    version = active_scheme(conn)
    known = [s.name for s in version.scheme.segments] + [NO_SEGMENT]
    unknown = [s for s in segments if s not in known]
    if unknown:
        raise SearchError(
            [(param, f"no segment {unknown[0]!r} in scheme {version.name!r} (segments: {', '.join(known)})")]
        )


def sort_key(sort: str, *, money: bool) -> SortKey:
    cs, c = customer_scores.c, customers.c
    columns: dict[str, tuple[sa.ColumnElement[Any], bool]] = {
        "recency": (cs.recency_days, True),
        "frequency": (cs.frequency, False),
        "monetary": (cs.monetary_minor if money else cs.monetary, True),
        "r_score": (cs.r_score, False),
        "f_score": (cs.f_score, False),
        "m_score": (cs.m_score, True),
    }
    if sort == "customer_id":
        return SortKey(cs.customer_id, cs.customer_id, False, False)
    if sort == "last_activity":
        return SortKey(c.last_day, c.customer_id, False, True)
    column, nullable = columns[sort]
    return SortKey(column, cs.customer_id, nullable, False)


def _c_ordered(conn: Connection) -> bool:
    """Whether the database orders text by code point, so that the strings with a prefix are
    one range of the primary key: SQLite (binary), or PostgreSQL with a C-like collation."""
    if conn.dialect.name != "postgresql":
        return True
    known = conn.info.get("rfmflow_c_ordered")
    if known is None:
        collation = conn.exec_driver_sql(
            "SELECT datcollate FROM pg_database WHERE datname = current_database()"
        ).scalar_one()
        known = str(collation).lower() in ("c", "posix", "c.utf-8", "c.utf8")
        conn.info["rfmflow_c_ordered"] = known
    return bool(known)


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _prefix(conn: Connection, expr: sa.ColumnElement[str], prefix: str) -> sa.ColumnElement[bool]:
    """``expr`` (indexed: ``lower(email)`` or ``lower(name)``) starts with ``prefix``, in a form
    the database answers from its index: PostgreSQL ``LIKE 'p%'`` (``text_pattern_ops``),
    SQLite a binary range."""
    if conn.dialect.name == "postgresql":
        return expr.like(_like_prefix(prefix), escape="\\")
    return sa.and_(expr >= prefix, expr < prefix + LAST_CHAR)


def _id_prefix(conn: Connection, prefix: str) -> sa.ColumnElement[bool]:
    """The customer id starts with ``prefix`` (case-sensitive): a range of the primary key
    where the database orders text by code point, else ``LIKE`` (a scan)."""
    column = customer_scores.c.customer_id
    if conn.dialect.name != "postgresql":
        return sa.and_(column >= prefix, column < prefix + LAST_CHAR)
    like = column.like(_like_prefix(prefix), escape="\\")
    if not _c_ordered(conn):
        return like
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1) if ord(prefix[-1]) < 0xD7FF else prefix + LAST_CHAR
    return sa.and_(column >= prefix, column < upper, like)


def _fold(conn: Connection, text: str) -> str:
    """``text`` lower-cased as the database's ``lower()`` does (SQLite: ASCII letters only)."""
    if conn.dialect.name == "postgresql":
        return text.lower()
    return "".join(ch.lower() if ch.isascii() else ch for ch in text)


def _q_ids(conn: Connection, q: str) -> sa.CompoundSelect[Any]:
    p = customer_profiles.c
    folded = _fold(conn, q)
    return sa.union(
        sa.select(customer_scores.c.customer_id).where(_id_prefix(conn, q)),
        sa.select(p.customer_id).where(_prefix(conn, sa.func.lower(p.email), folded)),
        sa.select(p.customer_id).where(_prefix(conn, sa.func.lower(p.name), folded)),
    )


def _range(column: sa.ColumnElement[Any], bounds: Bounds) -> list[sa.ColumnElement[bool]]:
    out = []
    if bounds.low is not None:
        out.append(column >= bounds.low)
    if bounds.high is not None:
        out.append(column <= bounds.high)
    return out


def _money_bounds(bounds: Bounds, decimals: int) -> Bounds:
    """Currency-unit bounds as minor units, exactly: ``>= 12.345`` is ``>= 1235`` cents."""
    low = None if bounds.low is None else math.ceil(Decimal(bounds.low).scaleb(decimals))
    high = None if bounds.high is None else math.floor(Decimal(bounds.high).scaleb(decimals))
    return Bounds(low, high)


def conditions(
    conn: Connection, f: CustomerFilter, *, money: bool, settings: Settings
) -> list[sa.ColumnElement[bool]]:
    """The WHERE clauses of ``f`` over ``customer_scores`` (plus ``customers`` when joined)."""
    cs, ct = customer_scores.c, customer_tags.c
    out: list[sa.ColumnElement[bool]] = []
    if f.segments:
        out.append(cs.segment.in_(f.segments))
    if f.lifecycles:
        out.append(cs.lifecycle.in_(f.lifecycles))
    if f.churn_risks:
        cp = customer_predictions.c
        out.append(cs.customer_id.in_(sa.select(cp.customer_id).where(cp.churn_risk.in_(f.churn_risks))))
    for tag in f.tags_all:
        out.append(cs.customer_id.in_(sa.select(ct.customer_id).where(ct.tag == tag)))
    if f.tags_any:
        out.append(cs.customer_id.in_(sa.select(ct.customer_id).where(ct.tag.in_(f.tags_any))))
    if f.tags_none:
        out.append(cs.customer_id.not_in(sa.select(ct.customer_id).where(ct.tag.in_(f.tags_none))))
    out += _range(cs.r_score, f.r_score)
    out += _range(cs.f_score, f.f_score)
    out += _range(cs.m_score, f.m_score)
    out += _range(cs.recency_days, f.recency)
    out += _range(cs.frequency, f.frequency)
    if money:
        out += _range(cs.monetary_minor, _money_bounds(f.monetary, settings.money_decimals))
    else:
        out += _range(cs.monetary, f.monetary)
    if f.q is not None:
        out.append(cs.customer_id.in_(_q_ids(conn, f.q.strip())))
    return out


def _relation(key: SortKey) -> sa.FromClause:
    if key.joins_customers:
        return customers.join(customer_scores, customer_scores.c.customer_id == customers.c.customer_id)
    return customer_scores


def _ordered(
    query: sa.Select[Any], key: SortKey, order: str, *, tail: bool, after: Cursor | None
) -> sa.Select[Any]:
    """``query`` restricted to one part of the order (values, or the empty-value tail) after
    ``after``, and ordered."""
    desc = order == "desc"
    if tail:
        query = query.where(key.column.is_(None))
        if after is not None and after.tail:
            query = query.where(
                key.id_column < after.customer_id if desc else key.id_column > after.customer_id
            )
        return query.order_by(key.id_column.desc() if desc else key.id_column)
    if key.nullable:
        query = query.where(key.column.is_not(None))
    if after is not None:
        if key.column is key.id_column:
            query = query.where(
                key.id_column < after.customer_id if desc else key.id_column > after.customer_id
            )
        else:
            here = sa.tuple_(key.column, key.id_column)
            there = sa.tuple_(sa.literal(after.value, key.column.type), sa.literal(after.customer_id))
            query = query.where(here < there if desc else here > there)
    if key.column is key.id_column:
        return query.order_by(key.id_column.desc() if desc else key.id_column)
    if desc:
        return query.order_by(key.column.desc(), key.id_column.desc())
    return query.order_by(key.column, key.id_column)


def _parts(key: SortKey, after: Cursor | None) -> list[bool]:
    """The parts of the order still to read: values (False) then the tail (True)."""
    if after is not None and after.tail:
        return [True]
    return [False, True] if key.nullable else [False]


@dataclass
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None
    total: int | None


def _check(f: CustomerFilter, sort: str, order: str, limit: int | None) -> None:
    problems = f.problems()
    if sort not in SORTS:
        problems.append(("sort", f"unknown sort {sort!r}; one of: {', '.join(SORTS)}"))
    if order not in ("asc", "desc"):
        problems.append(("order", "must be asc or desc"))
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        problems.append(("limit", f"must be between 1 and {MAX_LIMIT}"))
    if problems:
        raise SearchError(problems)


def _read_settings(conn: Connection) -> None:
    """PostgreSQL: no JIT compilation for the list's queries (it cost 40-160 ms a query at 1M
    customers, more than it saved). Lasts until the connection's transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL jit = off")


def search(
    conn: Connection,
    settings: Settings,
    f: CustomerFilter,
    *,
    sort: str = "customer_id",
    order: str = "asc",
    limit: int = 50,
    cursor: str | None = None,
    count: bool = True,
) -> Page:
    """One page of the customers ``f`` selects, in ``sort``/``order``, after ``cursor``.

    Raises :class:`SearchError` for a bad range, sort, cursor or limit. ``count``: also count
    every match (one more query, in the same snapshot only on PostgreSQL)."""
    _check(f, sort, order, limit)
    after = Cursor.decode(cursor, sort=sort, order=order) if cursor else None
    _read_settings(conn)
    money = money_scheme(conn)
    key = sort_key(sort, money=money)
    where = conditions(conn, f, money=money, settings=settings)
    relation = _relation(key)

    found: list[tuple[str, Any]] = []
    for tail in _parts(key, after):
        query = sa.select(key.id_column, key.column).select_from(relation).where(*where)
        query = _ordered(query, key, order, tail=tail, after=after).limit(limit + 1 - len(found))
        found += [(str(r[0]), r[1]) for r in conn.execute(query)]
        if len(found) > limit:
            break
    more = len(found) > limit
    found = found[:limit]
    items = _details(conn, settings, [cid for cid, _ in found], money=money)
    next_cursor = None
    if more:
        cid, value = found[-1]
        is_tail = key.nullable and value is None
        value = None if sort == "customer_id" or is_tail else _plain(value)
        next_cursor = Cursor(sort, order, is_tail, value, cid).encode()
    total = count_matches(conn, settings, f) if count else None
    return Page(items, next_cursor, total)


def count_matches(conn: Connection, settings: Settings, f: CustomerFilter) -> int:
    """How many customers ``f`` selects (a scan unless a segment or ``q`` narrows it)."""
    _read_settings(conn)
    where = conditions(conn, f, money=money_scheme(conn), settings=settings)
    return int(
        conn.execute(sa.select(sa.func.count()).select_from(customer_scores).where(*where)).scalar_one()
    )


def page_and_total(
    engine: Engine,
    settings: Settings,
    f: CustomerFilter,
    *,
    sort: str = "customer_id",
    order: str = "asc",
    limit: int = 50,
    cursor: str | None = None,
    count: bool = True,
) -> Page:
    """:func:`search`, with the count (when asked) on a second connection at the same time as
    the page: both can be a scan of every customer, and the answer waits for the slower one
    rather than for both. (They may see a write between them; the total is a count, not a
    promise about the pages.)"""
    _check(f, sort, order, limit)
    if cursor:
        Cursor.decode(cursor, sort=sort, order=order)
    if not count:
        with engine.connect() as conn:
            return search(conn, settings, f, sort=sort, order=order, limit=limit, cursor=cursor, count=False)

    def total() -> int:
        with engine.connect() as conn:
            return count_matches(conn, settings, f)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rfmflow-count") as pool:
        counting = pool.submit(total)
        with engine.connect() as conn:
            page = search(conn, settings, f, sort=sort, order=order, limit=limit, cursor=cursor, count=False)
        page.total = counting.result()
    return page


def _plain(value: Any) -> int | float:
    if isinstance(value, int):
        return value
    number = float(value)
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def _tags_subquery(conn: Connection) -> sa.ScalarSelect[Any]:
    """The customer's tag names as a JSON array (NULL or ``[]`` when none)."""
    ct = customer_tags.c
    agg = sa.func.json_agg(ct.tag) if conn.dialect.name == "postgresql" else sa.func.json_group_array(ct.tag)
    return sa.select(agg).where(ct.customer_id == customer_scores.c.customer_id).scalar_subquery()


def detail_select(conn: Connection) -> sa.Select[Any]:
    """Every field of a listed customer, one row per ``customer_scores`` row."""
    cs, c, p = customer_scores.c, customers.c, customer_profiles.c
    return sa.select(
        cs.customer_id,
        p.name,
        p.email,
        cs.segment,
        cs.rfm,
        cs.r_score,
        cs.f_score,
        cs.m_score,
        cs.recency_days,
        cs.frequency,
        cs.monetary_minor,
        cs.monetary,
        cs.lifecycle,
        _tags_subquery(conn).label("tags"),
        c.last_day,
        c.last_purchase_day,
        c.purchases,
        c.monetary_minor.label("revenue_minor"),
        cs.as_of_day,
        cs.scheme_version,
    ).select_from(
        customer_scores.outerjoin(customers, c.customer_id == cs.customer_id).outerjoin(
            customer_profiles, p.customer_id == cs.customer_id
        )
    )


def _money(minor: int | None, decimals: int) -> Decimal | None:
    return None if minor is None else Decimal(int(minor)).scaleb(-decimals)


def customer_row(row: Mapping[Any, Any], settings: Settings, *, money: bool) -> dict[str, Any]:
    """A listed customer with typed values (``Decimal`` money, ``date`` days, a tag list); the
    API formats it with :func:`customer_json`, the exports write it as it is."""
    tags = row["tags"]
    if isinstance(tags, str):
        tags = json.loads(tags)
    monetary = _money(row["monetary_minor"], settings.money_decimals) if money else row["monetary"]
    return {
        "customer_id": row["customer_id"],
        "name": row["name"],
        "email": row["email"],
        "segment": row["segment"],
        "rfm": row["rfm"],
        "r_score": row["r_score"],
        "f_score": row["f_score"],
        "m_score": row["m_score"],
        "recency_days": row["recency_days"],
        "frequency": row["frequency"],
        "monetary": monetary,
        "lifecycle": row["lifecycle"],
        "tags": sorted(tags or []),
        "last_activity": None if row["last_day"] is None else day_date(row["last_day"]),
        "last_purchase_date": None
        if row["last_purchase_day"] is None
        else day_date(row["last_purchase_day"]),
        "purchases": row["purchases"],
        "revenue": _money(row["revenue_minor"], settings.money_decimals),
        "as_of": day_date(row["as_of_day"]),
        "scheme_version": row["scheme_version"],
    }


def customer_json(item: Mapping[str, Any]) -> dict[str, Any]:
    """A :func:`customer_row` for JSON: decimals as strings, dates as ISO text."""
    out = dict(item)
    for name in ("monetary", "revenue"):
        if isinstance(out[name], Decimal):
            out[name] = format(out[name], "f")
    for name in ("last_activity", "last_purchase_date", "as_of"):
        if out[name] is not None:
            out[name] = out[name].isoformat()
    return out


def _details(conn: Connection, settings: Settings, ids: list[str], *, money: bool) -> list[dict[str, Any]]:
    if not ids:
        return []
    column = customer_scores.c.customer_id
    if conn.dialect.name == "postgresql":  # one array parameter: psycopg parses no 1,000-placeholder query
        listed = sa.bindparam("ids", ids, type_=postgresql.ARRAY(sa.String()))
        query = detail_select(conn).where(column == sa.any_(listed))
    else:
        query = detail_select(conn).where(column.in_(ids))
    rows = {r["customer_id"]: r for r in conn.execute(query).mappings()}
    return [customer_row(rows[cid], settings, money=money) for cid in ids if cid in rows]


def iter_customers(
    conn: Connection,
    settings: Settings,
    f: CustomerFilter,
    *,
    sort: str = "customer_id",
    order: str = "asc",
    batch: int = 1000,
) -> Iterator[dict[str, Any]]:
    """Every customer ``f`` selects, as :func:`customer_row`, in the list's order, never all in
    memory: the ordered ids stream from the database (a server-side cursor on PostgreSQL) and
    each ``batch`` of them is completed as a page is. (Sorting the complete rows instead made
    the database build every row's tags and joins before sorting: 7x slower.)"""
    _check(f, sort, order, None)
    _read_settings(conn)
    money = money_scheme(conn)
    key = sort_key(sort, money=money)
    where = conditions(conn, f, money=money, settings=settings)
    relation = _relation(key)
    for tail in _parts(key, None):
        query = _ordered(
            sa.select(key.id_column).select_from(relation).where(*where), key, order, tail=tail, after=None
        )
        result = conn.execute(query.execution_options(stream_results=True, yield_per=batch))
        for part in result.partitions(batch):
            yield from _details(conn, settings, [str(r[0]) for r in part], money=money)


__all__ = [
    "CUSTOMER_COLUMNS",
    "MAX_LIMIT",
    "SORTS",
    "Bounds",
    "Cursor",
    "CustomerFilter",
    "Page",
    "SearchError",
    "check_segments",
    "count_matches",
    "customer_json",
    "customer_row",
    "detail_select",
    "iter_customers",
    "money_scheme",
    "page_and_total",
    "search",
]

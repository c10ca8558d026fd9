"""The one definition of the RFM computation, as SQL for every engine.

:func:`build_query` turns a scheme and an as-of day into a single ``SELECT`` over an events
relation, built once and transpiled by SQLGlot to DuckDB, SQLite, PostgreSQL (and Spark).
The events relation has these columns (an engine adapter provides them):

============== ========= =============================================================
column         type      meaning
============== ========= =============================================================
customer_id    text      the customer
day            integer   the event's calendar day in the business time zone, as days
                         since 1970-01-01
event_type     text      purchase, refund, message, click, ... (lower case)
amount_minor   integer   amount in minor currency units (cents); refunds negative;
                         NULL for events without an amount
order_id       text      optional; needed by ``frequency.count: orders``
<field>        double    optional; any field named by ``monetary.measure: field:<name>``
============== ========= =============================================================

Every number the query computes is exact (integers, or IEEE divisions of integers), so all
engines give identical results; only the time-decayed values are floating point sums.

Definitions (see ``docs/definitions.md``):

- ``recency_days = as_of_day - max(day of a qualifying recency event)``; NULL if none.
- ``frequency`` counts qualifying events with ``as_of_day - day <= window_days``.
- ``monetary`` sums ``amount_minor`` of qualifying events in the window (net of refunds).
- quantile score ``= 1 + floor(bins * (rank - 1) / n)`` where ``rank`` is the SQL ``RANK()``
  of the value (equal values share a rank, so equal values always get equal scores) and
  ``n`` the number of customers (in the customer's lifecycle cohort when the scheme has
  lifecycle-aware thresholds).
- ``*_pct = (rank - 1) / n``: the share of customers with a strictly worse value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import cast

import sqlglot
from sqlglot import exp

from rfmflow.core.errors import SchemeError
from rfmflow.core.expressions import Expr, NameResolver
from rfmflow.core.prediction_results import PREDICTION_OUTPUT
from rfmflow.core.scheme import PCT_COLUMN, SCORE_COLUMN, SCORE_KEYS, Scheme, ScoreKey, ScoreSpec
from rfmflow.core.sql_text import quote_ident as _q
from rfmflow.core.sql_text import quote_literal as _lit

DIALECTS = ("duckdb", "sqlite", "postgres", "spark")


@dataclass(frozen=True)
class QueryPlan:
    """The compiled query and what its output means."""

    sql: str
    dialect: str
    columns: tuple[str, ...]
    money_scale: int | None
    """When M is money, ``monetary_minor`` holds minor units and ``money_scale`` its decimals."""


def _type_filter(events: Sequence[str] | str) -> str:
    if events == "any":
        return "TRUE"
    return "event_type IN (" + ", ".join(_lit(e.lower()) for e in events) + ")"


def _window(days: int | None) -> str:
    return "TRUE" if days is None else f"({{as_of}} - day) <= {int(days)}"


def _decay(half_life: float) -> str:
    rate = math.log(2) / half_life
    return f"EXP(-CAST({rate!r} AS DOUBLE) * ({{as_of}} - day))"


def _stable(float_sum: str) -> str:
    """Round a floating-point sum to 6 decimals: summation order (rows, threads, engines)
    changes the last bits, and equal customers must keep equal values, hence equal scores."""
    return f"CAST(ROUND(CAST({float_sum} AS DOUBLE), 6) AS DOUBLE)"


def _dec(value: Decimal) -> str:
    return format(value.normalize(), "f")


class _Builder:
    def __init__(self, scheme: Scheme, *, money_scale: int, has_order_id: bool) -> None:
        self.s = scheme
        self.money_scale = money_scale
        self.has_order_id = has_order_id
        self.m = scheme.metrics
        self.is_money = self.m.monetary.measure == "amount"

    # --- aggregate -------------------------------------------------------------------
    def aggregate(self) -> str:
        rec = _type_filter(self.m.recency.events)
        fq = self.m.frequency
        fcond = f"{_type_filter(fq.events)} AND {_window(fq.window_days)}"
        count = fq.count
        if count == "auto":
            count = "orders" if self.has_order_id else "events"
        if count == "events":
            freq = f"COUNT(CASE WHEN {fcond} THEN 1 END)"
        elif count == "days":
            freq = f"COUNT(DISTINCT CASE WHEN {fcond} THEN day END)"
        else:
            # Lines of one order count once; an event without an order id counts on its own.
            freq = (
                f"(COUNT(DISTINCT CASE WHEN {fcond} THEN order_id END)"
                f" + COUNT(CASE WHEN {fcond} AND order_id IS NULL THEN 1 END))"
            )
        mo = self.m.monetary
        mcond = f"{_type_filter(mo.events)} AND {_window(mo.window_days)}"
        if mo.measure == "amount":
            mon = (
                f"CAST(COALESCE(SUM(CASE WHEN {mcond} THEN amount_minor END), 0) AS BIGINT) AS monetary_minor"
            )
        elif mo.measure == "count":
            mon = f"COUNT(CASE WHEN {mcond} THEN 1 END) AS monetary"
        else:
            field_value = f"CAST({_q(mo.field_name or '')} AS DOUBLE)"
            mon = f"{_stable(f'COALESCE(SUM(CASE WHEN {mcond} THEN {field_value} END), 0)')} AS monetary"
        cols = [
            "customer_id",
            f"MAX(CASE WHEN {rec} THEN day END) AS last_day",
            "MIN(day) AS first_day",
            f"{freq} AS frequency",
            mon,
        ]
        if fq.half_life_days:
            decayed = f"COALESCE(SUM(CASE WHEN {fcond} THEN {_decay(fq.half_life_days)} END), 0)"
            cols.append(f"{_stable(decayed)} AS frequency_decayed")
        if mo.half_life_days:
            value = (
                "CAST(amount_minor AS DOUBLE)"
                if self.is_money
                else ("1" if mo.measure == "count" else f"CAST({_q(mo.field_name or '')} AS DOUBLE)")
            )
            scale = f" / {10**self.money_scale}" if self.is_money else ""
            decayed = (
                f"COALESCE(SUM(CASE WHEN {mcond} THEN {value} * {_decay(mo.half_life_days)} END), 0){scale}"
            )
            cols.append(f"{_stable(decayed)} AS monetary_decayed")
        return "SELECT " + ", ".join(cols) + " FROM {events} WHERE day <= {as_of} GROUP BY customer_id"

    # --- names -----------------------------------------------------------------------
    def monetary_value(self) -> str:
        """``monetary`` as a number in currency units (for rules)."""
        if self.is_money:
            return f"(CAST(monetary_minor AS DOUBLE) / {10**self.money_scale})"
        return "monetary"

    def scored_value(self, key: ScoreKey) -> str:
        if key == "recency":
            return "recency_days"
        if key == "frequency":
            return "frequency_decayed" if self.m.frequency.half_life_days else "frequency"
        if self.m.monetary.half_life_days:
            return "monetary_decayed"
        return "monetary_minor" if self.is_money else "monetary"

    def order(self, key: ScoreKey) -> str:
        value = self.scored_value(key)
        # Rank 1 is the worst customer: the oldest recency (no event at all first), the lowest F/M.
        return f"{value} DESC NULLS FIRST" if key == "recency" else f"{value} ASC"

    # --- scores ----------------------------------------------------------------------
    def needs_rank(self, key: ScoreKey) -> bool:
        specs = [self.s.score_spec(key), self.s.score_spec(key, new=True)]
        return any(s is not None and s.quantiles is not None for s in specs)

    def fixed_score(self, key: ScoreKey, spec: ScoreSpec) -> str:
        value = self.scored_value(key)
        edges = list(spec.edges or [])
        bins = spec.bins
        if key == "monetary" and value == "monetary_minor":
            edges = [e * (10**self.money_scale) for e in edges]
        parts = []
        if key == "recency":
            parts.append(f"WHEN {value} IS NULL THEN 1")
            for i, edge in enumerate(edges):
                parts.append(f"WHEN {value} <= {_dec(edge)} THEN {bins - i}")
            parts.append("ELSE 1")
        else:
            for i, edge in enumerate(edges):
                parts.append(f"WHEN {value} <= {_dec(edge)} THEN {i + 1}")
            parts.append(f"ELSE {bins}")
        return "CASE " + " ".join(parts) + " END"

    def best(self, key: ScoreKey) -> str:
        """The best value of ``key`` (lowest recency, highest F/M)."""
        value = self.scored_value(key)
        return f"MIN({value})" if key == "recency" else f"MAX({value})"

    def quantile_score(self, key: ScoreKey, spec: ScoreSpec, rank_col: str, n_col: str) -> str:
        # Equal values share the rank of the first of them. The best value always gets the
        # top score (unless every value is equal): a tie at the top must not push the best
        # customers down a bin.
        value, best = self.scored_value(key), f"{key}_best" + ("_c" if rank_col.endswith("crank") else "")
        return (
            f"CASE WHEN {value} = {best} AND {rank_col} > 1 THEN {spec.quantiles} "
            f"ELSE 1 + ({spec.quantiles} * ({rank_col} - 1)) // {n_col} END"
        )

    def score(self, key: ScoreKey) -> str:
        base = self.s.score_spec(key)
        if base is None:
            return "CAST(NULL AS INTEGER)"
        partitioned = self.s.lifecycle is not None
        rank_col, n_col = (f"{key}_crank", "n_cohort") if partitioned else (f"{key}_rank", "n_all")

        def one(spec: ScoreSpec) -> str:
            if spec.quantiles is not None:
                return self.quantile_score(key, spec, rank_col, n_col)
            return self.fixed_score(key, spec)

        new = self.s.score_spec(key, new=True)
        if self.s.lifecycle is not None and new is not base and new is not None:
            return f"CASE WHEN lifecycle = 'new' THEN {one(new)} ELSE {one(base)} END"
        return one(base)


def _parse(sql: str) -> exp.Expression:
    return cast(exp.Expression, sqlglot.parse_one(sql, read="duckdb"))


def _resolver(builder: _Builder, extras: dict[str, Expr], dialect_sql: dict[str, str]) -> NameResolver:
    def resolve(name: str) -> exp.Expression:
        if name == "monetary":
            return _parse(builder.monetary_value())
        if name in extras:
            if name not in dialect_sql:
                dialect_sql[name] = extras[name].to_sql(resolve).sql(dialect="duckdb")
            return _parse(dialect_sql[name])
        return exp.column(name, quoted=True)

    return resolve


def build_aggregate(
    scheme: Scheme,
    *,
    as_of_day: int,
    events: str = "events",
    dialect: str = "duckdb",
    money_scale: int = 2,
    has_order_id: bool = False,
) -> str:
    """The first step of :func:`build_query` alone, in ``dialect``: one row per customer with
    an event on or before ``as_of_day`` and the columns ``customer_id, last_day, first_day,
    frequency``, ``monetary_minor`` (money) or ``monetary``, and the decayed values."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; known: {', '.join(DIALECTS)}")
    b = _Builder(scheme, money_scale=money_scale, has_order_id=has_order_id)
    sql = b.aggregate().replace("{as_of}", str(int(as_of_day))).replace("{events}", events)
    return sqlglot.parse_one(sql, read="duckdb").sql(dialect=dialect)


def build_query(
    scheme: Scheme,
    *,
    as_of_day: int,
    events: str = "events",
    dialect: str = "duckdb",
    money_scale: int = 2,
    has_order_id: bool = False,
    order_by_customer: bool = False,
    predictions: str | None = None,
    aggregates: str | None = None,
) -> QueryPlan:
    """Compile ``scheme`` at ``as_of_day`` into one SELECT in ``dialect``.

    ``events`` is the relation (a table name or a parenthesised subquery) holding the
    columns described in this module's docstring. ``predictions``, when given, is a relation
    with ``customer_id`` and the columns of
    :data:`~rfmflow.core.prediction_results.PREDICTION_OUTPUT`: they are joined to every
    customer (NULL for customers without a prediction), output after ``tenure_days`` and
    readable by the scheme's rules.

    ``aggregates``, when given, replaces the first step (the per-customer aggregate of
    ``events``, :func:`build_aggregate`): a relation with one row per customer and the same
    columns (``customer_id, last_day, first_day, frequency``, ``monetary_minor`` or
    ``monetary``, and ``frequency_decayed``/``monetary_decayed`` for decayed metrics) that
    an engine keeps up to date itself. Everything after it (scores, ranks, segments, tags)
    is the same definition.
    """
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; known: {', '.join(DIALECTS)}")
    if predictions is None and scheme.uses_predictions:
        raise SchemeError(
            f"scheme {scheme.name!r} reads model predictions (p_alive, clv, churn_risk, ...): score it with "
            "predictions (rfmflow score --predict)"
        )
    b = _Builder(scheme, money_scale=money_scale, has_order_id=has_order_id)
    cached: dict[str, str] = {}
    resolve = _resolver(b, scheme.columns, cached)

    def rule_sql(rule: Expr) -> str:
        return rule.to_sql(resolve).sql(dialect="duckdb")

    used: set[str] = set()
    for rule in [
        *scheme.columns.values(),
        *(s.when for s in scheme.segments),
        *(t.when for t in scheme.tags),
    ]:
        used |= rule.names

    lifecycle = scheme.lifecycle
    metric_cols = [
        "agg.customer_id AS customer_id",
        "{as_of} - last_day AS recency_days",
        "frequency",
        "monetary_minor" if b.is_money else "monetary",
        "{as_of} - first_day AS tenure_days",
    ]
    if predictions is not None:
        metric_cols += [f"pred.{_q(c)}" for c in PREDICTION_OUTPUT]
    metric_cols += [f"{m}_decayed" for m in scheme.decayed]
    if lifecycle is not None:
        metric_cols.append(
            f"CASE WHEN {{as_of}} - first_day < {lifecycle.new_within_days} THEN 'new' "
            "ELSE 'established' END AS lifecycle"
        )

    windows = []
    for key in SCORE_KEYS:
        need_global = PCT_COLUMN[key] in used or (b.needs_rank(key) and lifecycle is None)
        if need_global and not (
            key == "monetary" and scheme.scores.monetary is None and PCT_COLUMN[key] not in used
        ):
            windows.append(f"RANK() OVER (ORDER BY {b.order(key)}) AS {key}_rank")
            if b.needs_rank(key):
                windows.append(f"{b.best(key)} OVER () AS {key}_best")
        if lifecycle is not None and b.needs_rank(key):
            windows.append(f"RANK() OVER (PARTITION BY lifecycle ORDER BY {b.order(key)}) AS {key}_crank")
            windows.append(f"{b.best(key)} OVER (PARTITION BY lifecycle) AS {key}_best_c")
    if windows:
        windows.append("COUNT(*) OVER () AS n_all")
        if lifecycle is not None:
            windows.append("COUNT(*) OVER (PARTITION BY lifecycle) AS n_cohort")

    score_cols = ["*"]
    for key in SCORE_KEYS:
        score_cols.append(f"CAST({b.score(key)} AS INTEGER) AS {SCORE_COLUMN[key]}")
        if PCT_COLUMN[key] in used:
            score_cols.append(f"CAST({key}_rank - 1 AS DOUBLE) / n_all AS {PCT_COLUMN[key]}")

    rfm_parts = ["CAST(r_score AS VARCHAR)", "CAST(f_score AS VARCHAR)"]
    if scheme.has_monetary_score:
        rfm_parts.append("CAST(m_score AS VARCHAR)")
    combined_cols = ["*", " || ".join(rfm_parts) + " AS rfm"]
    if scheme.composite is not None:
        w = scheme.composite
        terms = [f"CAST({w.recency!r} AS DOUBLE) * r_score", f"CAST({w.frequency!r} AS DOUBLE) * f_score"]
        if scheme.has_monetary_score:
            terms.append(f"CAST({w.monetary!r} AS DOUBLE) * m_score")
        combined_cols.append("(" + " + ".join(terms) + ") AS rfm_composite")
    label_cols = ["*"]

    # Extra columns and segments are computed on top of the scored relation.
    seg_cases = " ".join(f"WHEN {rule_sql(s.when)} THEN {_lit(s.name)}" for s in scheme.segments)
    seg_sql = f"CASE {seg_cases} END AS segment"
    final_extra = [f"{rule_sql(e)} AS {_q(n)}" for n, e in scheme.columns.items()]

    out_cols = ["customer_id", "recency_days", "frequency", "monetary_minor" if b.is_money else "monetary",
                "r_score", "f_score", "m_score", "rfm", "segment", "tenure_days"]  # fmt: skip
    if predictions is not None:
        out_cols += PREDICTION_OUTPUT
    for col in scheme.extra_columns:
        if col == "tags":
            continue
        out_cols.append(col)
    tag_sql = ""
    if scheme.tags:
        pieces = " || ".join(
            f"CASE WHEN {rule_sql(t.when)} THEN {_lit(t.name + ';')} ELSE '' END" for t in scheme.tags
        )
        tag_sql = f", RTRIM({pieces}, ';') AS tags"
        out_cols.append("tags")

    select_out = ", ".join(_q(c) for c in out_cols if c != "tags") + (", tags" if scheme.tags else "")
    sql = (
        "WITH agg AS ("
        + (b.aggregate() if aggregates is None else f"SELECT * FROM {aggregates} AS aggregates")
        + "), "
        "metrics AS (SELECT "
        + ", ".join(metric_cols)
        + " FROM agg"
        + (f" LEFT JOIN {predictions} AS pred ON pred.customer_id = agg.customer_id" if predictions else "")
        + "), "
        "ranked AS (SELECT *" + ("".join(", " + w for w in windows)) + " FROM metrics), "
        "scored AS (SELECT " + ", ".join(score_cols) + " FROM ranked), "
        "combined AS (SELECT " + ", ".join(combined_cols) + " FROM scored), "
        # Every name a rule reads exists in the relation it selects from (SQLite would
        # otherwise read an unknown double-quoted name as a string literal).
        "labelled AS (SELECT "
        + ", ".join(label_cols)
        + ", "
        + seg_sql
        + "".join(", " + c for c in final_extra)
        + " FROM combined), "
        "tagged AS (SELECT *" + tag_sql + " FROM labelled) "
        "SELECT " + select_out + " FROM tagged" + (" ORDER BY customer_id" if order_by_customer else "")
    )
    sql = sql.replace("{as_of}", str(int(as_of_day))).replace("{events}", events)
    tree = sqlglot.parse_one(sql, read="duckdb")
    return QueryPlan(
        sql=tree.sql(dialect=dialect),
        dialect=dialect,
        columns=tuple(out_cols),
        money_scale=money_scale if b.is_money else None,
    )

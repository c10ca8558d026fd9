"""Live re-scoring: a customer's scores and segment follow each purchase at once.

When ingest stores events, :func:`rescore_after_events` re-scores their customers in the
same transaction, so the new segment is readable as soon as the events are acknowledged:

1. The customers' metrics come from the one RFM definition (:func:`rfmflow.core.query.build_query`)
   run inside the database over a subquery of ``events`` restricted to those customers
   (an index lookup on ``events (customer_id, day)``; nothing but their result rows reach Python).
2. Fixed-threshold scores (``edges``) are taken from that query: they depend on the customer alone.
   Quantile scores depend on everyone, so they come from the **bands of the latest run**: per
   score the lowest and highest value that got it (per lifecycle cohort when the scheme has
   one). A value gets the best score whose band's worst value it reaches (a value between two
   bands gets the lower one); no value: the lowest score. Percentiles (``r_pct``, ...) are
   interpolated between up to 1,001 points of the latest run's distribution.
3. Columns, the segment (first matching rule) and the rule tags are evaluated in Python with
   the rules' own evaluator (SQL semantics: unknown stays unknown).
4. ``customer_scores`` is upserted and, when the segment changed, a ``segment_transitions``
   row (cause ``event``) is written.

A scheme with quantile scores is not scored live before its first run (there are no bands
yet); the scheduler runs one at once on a fresh installation. The next full run replaces
every live score by the exact one, and moves the bands.

Which events re-score: those whose type the scheme's metrics read (``purchase`` and
``refund`` for ``rfm11``; every type for a scheme whose recency or frequency reads ``any``),
and the first event of a customer not scored yet.
"""

from __future__ import annotations

import bisect
import contextvars
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rfmflow.core.expressions import Value
from rfmflow.core.query import QueryPlan, build_query
from rfmflow.core.scheme import PCT_COLUMN, SCORE_COLUMN, SCORE_KEYS, Scheme, ScoreKey
from rfmflow.service.db.store import _bulk_insert
from rfmflow.service.db.tables import NO_SEGMENT, customer_scores, scoring_runs, segment_transitions
from rfmflow.service.scoring_schemes import SchemeVersion, active_scheme, ensure_active_scheme
from rfmflow.service.settings import Settings
from rfmflow.service.tags import sync_rule_tags

EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
DIALECTS = {"sqlite": "sqlite", "postgresql": "postgres"}
PCT_POINTS = 1000
"""A run keeps the value at every ``n / PCT_POINTS``-th rank (and the best) for live percentiles."""
_SUBSET = "rfmflow_events_subset"
VALUE_COLUMNS = {"recency": "r_value", "frequency": "f_value", "monetary": "m_value"}
SCORE_FIELDS = (
    "customer_id", "as_of_day", "recency_days", "frequency", "monetary_minor", "monetary",
    "r_value", "f_value", "m_value", "tenure_days", "lifecycle", "r_score", "f_score", "m_score",
    "rfm", "segment", "tags",
)  # fmt: skip
"""The ``customer_scores`` columns a scoring computes (the rest say when, why and with what)."""


def business_day(moment: datetime, settings: Settings) -> int:
    """``moment``'s calendar day in the business time zone, as days since 1970-01-01."""
    return moment.astimezone(settings.zone).date().toordinal() - EPOCH_ORDINAL


def day_date(day: int) -> date:
    return date.fromordinal(day + EPOCH_ORDINAL)


def dialect_of(conn: Connection) -> str:
    try:
        return DIALECTS[conn.dialect.name]
    except KeyError:
        raise ValueError(f"unsupported database {conn.dialect.name!r}") from None


def score_plan(scheme: Scheme, *, as_of_day: int, dialect: str, settings: Settings, events: str) -> QueryPlan:
    """The RFM query of ``scheme`` over the relation ``events`` (the service's columns)."""
    return build_query(
        scheme,
        as_of_day=as_of_day,
        events=events,
        dialect=dialect,
        money_scale=settings.money_decimals,
        has_order_id=True,
    )


def scored_value_column(scheme: Scheme, key: ScoreKey) -> str:
    """The query output column a score of ``key`` is computed from (as the query ranks it)."""
    if key == "recency":
        return "recency_days"
    if key == "frequency":
        return "frequency_decayed" if scheme.metrics.frequency.half_life_days else "frequency"
    if scheme.metrics.monetary.half_life_days:
        return "monetary_decayed"
    return "monetary_minor" if scheme.metrics.monetary.measure == "amount" else "monetary"


def relevant_types(scheme: Scheme) -> frozenset[str] | None:
    """Event types the scheme's metrics read; None when one of them reads any type."""
    out: set[str] = set()
    for spec_events in (
        scheme.metrics.recency.events,
        scheme.metrics.frequency.events,
        scheme.metrics.monetary.events,
    ):
        if spec_events == "any":
            return None
        out.update(e.lower() for e in spec_events)
    return frozenset(out)


def pct_keys(scheme: Scheme) -> list[ScoreKey]:
    """Score keys whose percentile (``r_pct`` ...) some rule or column reads."""
    used: set[str] = set()
    for rule in [
        *scheme.columns.values(),
        *(s.when for s in scheme.segments),
        *(t.when for t in scheme.tags),
    ]:
        used |= rule.names
    return [k for k in SCORE_KEYS if PCT_COLUMN[k] in used]


def needs_bands(scheme: Scheme) -> bool:
    """Whether live scoring needs a run of this scheme first (quantile scores or percentiles)."""
    specs = [scheme.score_spec(k, new=new) for k in SCORE_KEYS for new in (False, True)]
    return any(s is not None and s.quantiles is not None for s in specs) or bool(pct_keys(scheme))


# --- bands of a run --------------------------------------------------------------------------
@dataclass(frozen=True)
class Band:
    score: int
    low: float | None
    high: float | None
    customers: int


@dataclass(frozen=True)
class RunBands:
    """What a run leaves for live scoring: bands per key and cohort, percentile points."""

    run_id: int
    scheme_version: int
    customers: int
    bands: dict[str, dict[str, list[Band]]]
    points: dict[str, list[tuple[float | None, int]]]

    @staticmethod
    def from_json(run_id: int, scheme_version: int, data: Mapping[str, Any]) -> RunBands:
        bands = {
            key: {
                cohort: sorted(
                    (Band(int(b["score"]), b["low"], b["high"], int(b["customers"])) for b in items),
                    key=lambda b: b.score,
                )
                for cohort, items in cohorts.items()
            }
            for key, cohorts in (data.get("scores") or {}).items()
        }
        points = {
            key: [(p[0], int(p[1])) for p in pts] for key, pts in (data.get("pct_points") or {}).items()
        }
        return RunBands(run_id, scheme_version, int(data.get("customers") or 0), bands, points)

    def score(self, key: ScoreKey, cohort: str, value: float | None) -> int:
        """The score of ``value``: the best band whose worst value it reaches, else the lowest."""
        cohorts = self.bands.get(key) or {}
        bands = cohorts.get(cohort) or next((b for b in cohorts.values() if b), [])
        if not bands:
            return 1
        if value is None:
            return bands[0].score
        for band in reversed(bands):
            worst = band.high if key == "recency" else band.low
            if worst is None:
                continue
            if (value <= worst) if key == "recency" else (value >= worst):
                return band.score
        return bands[0].score

    def pct(self, key: ScoreKey, value: float | None) -> float | None:
        """Share of the run's customers with a strictly worse value (interpolated)."""
        points = self.points.get(key)
        n = self.customers
        if not points or n <= 0:
            return None

        def goodness(v: float | None) -> float:
            if v is None:
                return -math.inf
            return -float(v) if key == "recency" else float(v)

        gs = [goodness(v) for v, _ in points]
        g = goodness(value)
        i = bisect.bisect_left(gs, g)
        if i < len(gs) and gs[i] == g:
            worse = float(points[i][1])
        elif i == 0:
            worse = 0.0
        elif i == len(gs):
            worse = float(n - 1)  # better than every point: as good as the best
        else:
            (ga, wa), (gb, wb) = (gs[i - 1], points[i - 1][1]), (gs[i], points[i][1])
            low = wa + 1
            worse = float(low) if math.isinf(ga) else low + (wb - low) * (g - ga) / (gb - ga)
        return min(worse, n - 1) / n


_RUN_CACHE: OrderedDict[tuple[str, int, str], RunBands] = OrderedDict()
_SQL_CACHE: OrderedDict[tuple[str, str, int, int], tuple[str, tuple[str, ...]]] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def latest_bands(conn: Connection, scheme_version: int) -> RunBands | None:
    """The bands of the newest finished run, if it scored ``scheme_version``."""
    row = conn.execute(
        sa.select(scoring_runs.c.id, scoring_runs.c.scheme_version, scoring_runs.c.started_at)
        .where(scoring_runs.c.finished_at.is_not(None))
        .order_by(scoring_runs.c.id.desc())
        .limit(1)
    ).first()
    if row is None or row.scheme_version != scheme_version:
        return None
    key = (str(conn.engine.url), int(row.id), row.started_at.isoformat())
    with _CACHE_LOCK:
        cached = _RUN_CACHE.get(key)
    if cached is not None:
        return cached
    data = conn.execute(sa.select(scoring_runs.c.bands).where(scoring_runs.c.id == row.id)).scalar_one()
    if isinstance(data, str):
        data = json.loads(data)
    bands = RunBands.from_json(int(row.id), int(row.scheme_version), data or {})
    with _CACHE_LOCK:
        _RUN_CACHE[key] = bands
        while len(_RUN_CACHE) > 16:
            _RUN_CACHE.popitem(last=False)
    return bands


# --- scoring customers -----------------------------------------------------------------------
def _subset_sql(
    conn: Connection, version: SchemeVersion, as_of_day: int, settings: Settings
) -> tuple[str, tuple[str, ...]]:
    """The RFM query restricted to a set of customers given as one parameter, and its output
    columns (cached: building the query costs milliseconds)."""
    dialect = dialect_of(conn)
    key = (dialect, version.yaml, as_of_day, settings.money_decimals)
    with _CACHE_LOCK:
        cached = _SQL_CACHE.get(key)
    if cached is not None:
        return cached
    plan = score_plan(version.scheme, as_of_day=as_of_day, dialect=dialect, settings=settings, events=_SUBSET)
    columns = "customer_id, day, event_type, amount_minor, order_id"
    if dialect == "postgres":
        subset = f"(SELECT {columns} FROM events WHERE customer_id = ANY(%(ids)s)) AS {_SUBSET}"
        sql = plan.sql.replace("%", "%%")
    else:
        chosen = "customer_id IN (SELECT value FROM json_each(?))"
        subset = f"(SELECT {columns} FROM events WHERE {chosen}) AS {_SUBSET}"
        sql = plan.sql
    if _SUBSET not in sql:  # pragma: no cover - build_query names the relation as given
        raise AssertionError("the RFM query does not read the events relation it was given")
    out = (sql.replace(_SUBSET, subset), plan.columns)
    with _CACHE_LOCK:
        _SQL_CACHE[key] = out
        while len(_SQL_CACHE) > 64:
            _SQL_CACHE.popitem(last=False)
    return out


def _query_customers(
    conn: Connection, version: SchemeVersion, ids: Sequence[str], as_of_day: int, settings: Settings
) -> list[dict[str, Any]]:
    sql, plan_columns = _subset_sql(conn, version, as_of_day, settings)
    if conn.dialect.name == "postgresql":
        result = conn.exec_driver_sql(sql, {"ids": list(ids)})
    else:
        result = conn.exec_driver_sql(sql, (json.dumps(list(ids)),))
    return [dict(zip(plan_columns, row, strict=True)) for row in result]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


SCORE_ONLY_NAMES = frozenset({"r_score", "f_score", "m_score", "rfm", "lifecycle", "segment"})


def rules_read_scores_only(scheme: Scheme) -> bool:
    """Whether every column, segment and tag rule reads scores only (then the outcome is a
    function of the scores and can be memoised per combination)."""
    rules = [*scheme.columns.values(), *(s.when for s in scheme.segments), *(t.when for t in scheme.tags)]
    names: set[str] = set()
    for rule in rules:
        names |= rule.names
    return names <= (SCORE_ONLY_NAMES | set(scheme.columns))


Memo = dict[tuple[Any, ...], tuple[str, str | None]]


def score_row(
    row: Mapping[str, Any],
    scheme: Scheme,
    bands: RunBands | None,
    settings: Settings,
    memo: Memo | None = None,
) -> dict[str, Any]:
    """A customer's ``customer_scores`` values from the RFM query's row (see the module doc).

    ``memo`` (only when :func:`rules_read_scores_only`) keeps the segment and tags of each
    score combination already seen."""
    is_money = scheme.metrics.monetary.measure == "amount"
    lifecycle = row.get("lifecycle") if scheme.lifecycle is not None else None
    cohort = lifecycle if isinstance(lifecycle, str) else "all"
    scored = {k: _float(row.get(scored_value_column(scheme, k))) for k in SCORE_KEYS}
    scores: dict[str, int | None] = {}
    for key in SCORE_KEYS:
        spec = scheme.score_spec(key, new=lifecycle == "new")
        column = SCORE_COLUMN[key]
        if spec is None:
            scores[column] = None
        elif spec.quantiles is not None:
            scores[column] = bands.score(key, cohort, scored[key]) if bands is not None else 1
        else:
            scores[column] = int(row[column])
    values: dict[str, Value] = {
        "recency_days": row["recency_days"],
        "frequency": row["frequency"],
        "monetary": (
            row["monetary_minor"] / 10**settings.money_decimals
            if is_money and row["monetary_minor"] is not None
            else row.get("monetary")
        ),
        "tenure_days": row["tenure_days"],
        **scores,
    }
    if scheme.lifecycle is not None:
        values["lifecycle"] = lifecycle
    for name in scheme.decayed:
        values[f"{name}_decayed"] = row.get(f"{name}_decayed")
    for key in SCORE_KEYS:
        values[PCT_COLUMN[key]] = bands.pct(key, scored[key]) if bands is not None else None
    parts = [str(scores["r_score"]), str(scores["f_score"])]
    if scheme.has_monetary_score:
        parts.append(str(scores["m_score"]))
    values["rfm"] = "".join(parts)
    combo = (scores["r_score"], scores["f_score"], scores["m_score"], lifecycle)
    known = memo.get(combo) if memo is not None else None
    if known is not None:
        segment, tags = known
    else:
        segment, tags = _labels(scheme, values, scores)
        if memo is not None:
            memo[combo] = (segment, tags)
    return {
        "customer_id": row["customer_id"],
        "recency_days": row["recency_days"],
        "frequency": int(row["frequency"]),
        "monetary_minor": row["monetary_minor"] if is_money else None,
        "monetary": None if is_money else _float(row.get("monetary")),
        "r_value": scored["recency"],
        "f_value": scored["frequency"],
        "m_value": scored["monetary"],
        "tenure_days": row["tenure_days"],
        "lifecycle": lifecycle,
        "r_score": scores["r_score"],
        "f_score": scores["f_score"],
        "m_score": scores["m_score"],
        "rfm": values["rfm"],
        "segment": segment,
        "tags": tags,
    }


def _labels(
    scheme: Scheme, values: dict[str, Value], scores: Mapping[str, int | None]
) -> tuple[str, str | None]:
    """The segment (first matching rule) and the rule tags, evaluated like the query does."""
    if scheme.composite is not None:
        w = scheme.composite
        total = float(w.recency) * float(scores["r_score"] or 0) + float(w.frequency) * float(
            scores["f_score"] or 0
        )
        if scheme.has_monetary_score:
            total += float(w.monetary) * float(scores["m_score"] or 0)
        values["rfm_composite"] = total
    for name, expr in scheme.columns.items():
        values[name] = expr.evaluate(values)
    segment = next((s.name for s in scheme.segments if s.when.matches(values) is True), NO_SEGMENT)
    values["segment"] = segment
    tags = ";".join(t.name for t in scheme.tags if t.when.matches(values) is True) if scheme.tags else None
    return segment, tags


@dataclass(frozen=True)
class LiveContext:
    """The active scheme and the bands live scoring uses (None: not scorable live yet)."""

    version: SchemeVersion
    bands: RunBands | None

    @property
    def scorable(self) -> bool:
        return self.bands is not None or not needs_bands(self.version.scheme)


def load_context(conn: Connection) -> LiveContext:
    version = active_scheme(conn)
    bands = latest_bands(conn, version.version) if version.stored else None
    return LiveContext(version, bands)


_KINDS = {sa.Integer: "int", sa.BigInteger: "bigint", sa.Float: "float8", sa.String: "text", sa.Text: "text"}
SCORE_COLUMNS = tuple(
    (c.name, next((k for t, k in _KINDS.items() if isinstance(c.type, t)), "timestamptz"))
    for c in customer_scores.columns
)
"""``customer_scores`` columns and their types for the bulk statements of :mod:`~rfmflow.service.db.store`."""
_UPSERT_TAIL = "ON CONFLICT (customer_id) DO UPDATE SET " + ", ".join(
    f"{name} = excluded.{name}" for name, _ in SCORE_COLUMNS if name != "customer_id"
)


def _upsert_scores(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or replace scores in as few statements as the driver allows (PostgreSQL: one
    ``unnest`` of per-column arrays; SQLite: multi-row VALUES), ordered by customer id."""
    ordered = sorted(rows, key=lambda r: r["customer_id"])
    _bulk_insert(conn, "customer_scores", SCORE_COLUMNS, ordered, _UPSERT_TAIL)


def rescore_customers(
    conn: Connection,
    settings: Settings,
    customer_ids: Iterable[str],
    *,
    now: datetime | None = None,
    cause: str = "event",
    run_id: int | None = None,
    at: Mapping[str, datetime] | datetime | None = None,
    context: LiveContext | None = None,
) -> int:
    """Re-score ``customer_ids`` now (in the caller's write transaction); return the number of
    segment moves written. Does nothing when the active scheme is not scorable live yet."""
    ids = sorted(set(customer_ids))
    if not ids:
        return 0
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    if conn.dialect.name == "postgresql":
        # Wait for a run's swap (SHARE ROW EXCLUSIVE) to commit before reading or writing
        # anything else, so these scores and moves follow the run's (and nothing this
        # transaction locked can block the swap); live re-scores do not block each other.
        conn.exec_driver_sql("LOCK TABLE customer_scores IN ROW EXCLUSIVE MODE")
    ctx = context or load_context(conn)
    if not ctx.scorable:
        return 0
    version = ctx.version if ctx.version.stored else ensure_active_scheme(conn, now=moment)
    as_of_day = business_day(moment, settings)
    memo: Memo | None = {} if rules_read_scores_only(version.scheme) else None
    moves = 0
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        rows = _query_customers(conn, version, chunk, as_of_day, settings)
        if not rows:
            continue
        old = dict(
            conn.execute(
                sa.select(customer_scores.c.customer_id, customer_scores.c.segment).where(
                    customer_scores.c.customer_id.in_([r["customer_id"] for r in rows])
                )
            ).all()
        )
        new_rows = []
        moved = []
        for row in rows:
            values = score_row(row, version.scheme, ctx.bands, settings, memo)
            values.update(
                as_of_day=as_of_day,
                scheme_version=version.version,
                scored_at=moment,
                cause=cause,
                run_id=run_id,
            )
            new_rows.append(values)
            cid = values["customer_id"]
            before = old.get(cid)
            if before != values["segment"]:
                when = at.get(cid, moment) if isinstance(at, Mapping) else (at or moment)
                moved.append(
                    {
                        "customer_id": cid,
                        "from_segment": before,
                        "to_segment": values["segment"],
                        "day": as_of_day,
                        "at": when,
                        "cause": cause,
                        "run_id": run_id,
                        "scheme_version": version.version,
                    }
                )
        _upsert_scores(conn, new_rows)
        if moved:
            conn.execute(sa.insert(segment_transitions), moved)
        moves += len(moved)
    if cause == "event":  # a run syncs everyone's rule tags itself, after its late customers
        sync_rule_tags(conn, version.scheme, at=moment, actor="event", customer_ids=ids)
    return moves


_PAUSED: contextvars.ContextVar[bool] = contextvars.ContextVar("rfmflow_live_rescoring_paused", default=False)


@contextmanager
def live_rescoring_paused() -> Iterator[None]:
    """Within this block (this thread or task) ingest does not re-score customers live.

    For bulk history imports: re-scoring each batch's customers costs more than one full run
    at the end (``rfmflow.service.scoring_jobs.run_now``), which the importer should start.
    """
    token = _PAUSED.set(True)
    try:
        yield
    finally:
        _PAUSED.reset(token)


def rescore_after_events(
    conn: Connection, settings: Settings, stored: Sequence[Mapping[str, Any]], *, now: datetime | None = None
) -> int:
    """The ingest hook: re-score the customers of newly stored ``events`` rows whose type the
    active scheme reads (and customers not scored yet), in the ingest's transaction."""
    if not stored or _PAUSED.get():
        return 0
    ctx = load_context(conn)
    if not ctx.scorable:
        return 0
    types = relevant_types(ctx.version.scheme)
    chosen = {r["customer_id"] for r in stored if types is None or r["event_type"] in types}
    others = {r["customer_id"] for r in stored} - chosen
    if others:
        known = set(
            conn.execute(
                sa.select(customer_scores.c.customer_id).where(
                    customer_scores.c.customer_id.in_(sorted(others))
                )
            ).scalars()
        )
        chosen |= others - known
    if not chosen:
        return 0
    at: dict[str, datetime] = {}
    for r in stored:
        cid = r["customer_id"]
        if cid in chosen and (cid not in at or r["occurred_at"] > at[cid]):
            at[cid] = r["occurred_at"]
    # On PostgreSQL the context is read again once the table lock is held (a run may have
    # committed new bands meanwhile); SQLite's write lock already excludes runs.
    again = None if conn.dialect.name == "postgresql" else ctx
    return rescore_customers(conn, settings, chosen, now=now, cause="event", at=at, context=again)

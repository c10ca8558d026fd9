"""Full scoring runs inside the database, and what they leave: scores, runs, transitions.

A run scores every customer with the active scheme at ``as_of`` = today in the business time
zone, by running :func:`rfmflow.core.query.build_query` *inside* the database (SQLite or
PostgreSQL); no event passes through Python. It goes in two steps on one connection:

1. **Stage** (a read, no write lock): ``INSERT INTO <temporary table> SELECT ... FROM (the RFM
   query over events)``; for schemes whose metrics the customers' aggregates hold, the query
   reads those instead of every event (:mod:`rfmflow.service.scoring_stage`). Ingest goes on
   meanwhile (SQLite's WAL lets readers and the writer work at once; the temporary table is
   the connection's own).
2. **Swap** (one write transaction): record the run; keep its bands (per score the lowest and
   highest value, per lifecycle cohort) and percentile points for live re-scoring; write a
   ``segment_transitions`` row for every customer whose segment differs from the stored one
   (computed in SQL, by joining the staged and the stored scores); replace ``customer_scores``
   by the staged rows; re-score live the customers who received events since step 1 began
   (their staged rows may miss those events); record counts and score distributions.
   PostgreSQL takes ``customer_scores`` in SHARE ROW EXCLUSIVE mode for the swap (readers go
   on, live re-scores wait for the few seconds it takes); SQLite's write lock does the same.

Runs hold the scoring lease (:mod:`rfmflow.service.scoring_jobs`): one run at a time across
processes. A scheme change (``PUT /v1/scheme``) is a run whose swap also stores the new
version, so the new scheme and the scores it gives appear together.

:func:`segment_on` answers "which segment was this customer in on that day" from the
transitions alone.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from rfmflow.core.scheme import SCORE_COLUMN, SCORE_KEYS, Scheme
from rfmflow.service import run_summary
from rfmflow.service.db.engine import _WRITE_LOCKS, _WRITE_OPTION
from rfmflow.service.db.tables import (
    NO_SEGMENT,
    audit_log,
    customer_scores,
    customers,
    scoring_runs,
    segment_transitions,
)
from rfmflow.service.scoring_live import (
    PCT_POINTS,
    SCORE_FIELDS,
    VALUE_COLUMNS,
    LiveContext,
    RunBands,
    business_day,
    day_date,
    dialect_of,
    pct_keys,
    rescore_customers,
    score_plan,
    scored_value_column,
)
from rfmflow.service.scoring_schemes import (
    SchemeVersion,
    active_scheme,
    ensure_active_scheme,
    store_version,
)
from rfmflow.service.scoring_stage import aggregates_query, settings_sql
from rfmflow.service.settings import Settings
from rfmflow.service.tags import sync_rule_tags

log = logging.getLogger("rfmflow.service.scoring")
_T = TypeVar("_T")

CATCH_UP = timedelta(minutes=2)
"""At the swap, customers whose event count changed since the stage's snapshot are re-scored
live; only customers whose latest event was received at most this long before the stage
began are checked (an event is stamped when its request arrives and committed at once)."""
STAGE = {"sqlite": "temp.rfmflow_scoring_stage", "postgres": "pg_temp.rfmflow_scoring_stage"}
STAGE_DDL = (
    "CREATE TEMPORARY TABLE rfmflow_scoring_stage (customer_id VARCHAR(256) NOT NULL, "
    "as_of_day INTEGER NOT NULL, recency_days INTEGER, frequency INTEGER NOT NULL, monetary_minor BIGINT, "
    "monetary DOUBLE PRECISION, r_value DOUBLE PRECISION, f_value DOUBLE PRECISION, "
    "m_value DOUBLE PRECISION, tenure_days INTEGER, lifecycle VARCHAR(16), r_score INTEGER NOT NULL, "
    "f_score INTEGER NOT NULL, m_score INTEGER, rfm VARCHAR(8) NOT NULL, segment VARCHAR(64) NOT NULL, "
    "tags TEXT)"
)
SEEN = {"sqlite": "temp.rfmflow_scoring_seen", "postgres": "pg_temp.rfmflow_scoring_seen"}
SEEN_DDL = "CREATE TEMPORARY TABLE rfmflow_scoring_seen (customer_id VARCHAR(256) NOT NULL, n_events INTEGER)"
LATE = {"sqlite": "temp.rfmflow_scoring_late", "postgres": "pg_temp.rfmflow_scoring_late"}
LATE_DDL = "CREATE TEMPORARY TABLE rfmflow_scoring_late (customer_id VARCHAR(256) PRIMARY KEY)"
KEEP = {"sqlite": "temp.rfmflow_scoring_keep", "postgres": "pg_temp.rfmflow_scoring_keep"}
TRIGGERS = ("schedule", "api", "cli", "scheme")


class ScoringConflict(Exception):
    """Another run or scheme change got in the way; nothing was written."""


@dataclass(frozen=True)
class RunResult:
    """A finished run, as ``GET /v1/runs`` shows it."""

    id: int
    as_of: date
    scheme_version: int
    trigger: str
    actor: str | None
    started_at: datetime
    finished_at: datetime
    duration_ms: float
    customers: int
    moves: int
    segment_counts: dict[str, int]
    score_counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "as_of": self.as_of.isoformat(),
            "scheme_version": self.scheme_version,
            "trigger": self.trigger,
            "actor": self.actor,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "duration_ms": round(self.duration_ms, 1),
            "customers": self.customers,
            "moves": self.moves,
            "segment_counts": self.segment_counts,
            "score_counts": self.score_counts,
        }


# --- the stage ---------------------------------------------------------------------------------
def _stage_select(scheme: Scheme, sql: str, as_of_day: int) -> str:
    is_money = scheme.metrics.monetary.measure == "amount"
    values = {key: scored_value_column(scheme, key) for key in SCORE_KEYS}
    cols = [
        "q.customer_id",
        str(int(as_of_day)),
        "q.recency_days",
        "q.frequency",
        "q.monetary_minor" if is_money else "NULL",
        "NULL" if is_money else "q.monetary",
        *(f"q.{values[k]}" for k in SCORE_KEYS),
        "q.tenure_days",
        "q.lifecycle" if scheme.lifecycle is not None else "NULL",
        "q.r_score",
        "q.f_score",
        "q.m_score",
        "q.rfm",
        f"COALESCE(q.segment, '{NO_SEGMENT}')",
        "q.tags" if scheme.tags else "NULL",
    ]
    return f"SELECT {', '.join(cols)} FROM ({sql}) AS q"


_ALL_EVENTS = "rfmflow_all_events"


def full_query(conn: Connection, scheme: Scheme, as_of_day: int, settings: Settings) -> str:
    """The RFM query over every event, for this database. SQLite reads ``events`` with a table
    scan and one sort (``NOT INDEXED``): walking the ``(customer_id, day)`` index with a row
    lookup per event took 2.3x as long (7.1 s against 3.0 s at 2M events); PostgreSQL gets
    the same plan from the stage's settings."""
    dialect = dialect_of(conn)
    plan = score_plan(scheme, as_of_day=as_of_day, dialect=dialect, settings=settings, events=_ALL_EVENTS)
    relation = "events"
    if dialect == "sqlite":
        relation = "(SELECT customer_id, day, event_type, amount_minor, order_id FROM events NOT INDEXED)"
    if _ALL_EVENTS not in plan.sql:  # pragma: no cover - build_query names the relation as given
        raise AssertionError("the RFM query does not read the events relation it was given")
    return plan.sql.replace(_ALL_EVENTS, f"{relation} AS {_ALL_EVENTS}")


def _stage(conn: Connection, scheme: Scheme, as_of_day: int, settings: Settings, since: datetime) -> str:
    """Fill the connection's temporary stage with the scheme's scores, and note the event
    counts of the customers updated since ``since`` (to find, at the swap, who got events
    the stage did not see). The caller's transaction is one snapshot. The scores are
    computed from the customers' aggregates when the scheme allows it, else from a scan of
    every event (:mod:`rfmflow.service.scoring_stage`); returns which (``customers`` or
    ``events``)."""
    dialect = dialect_of(conn)
    fast = aggregates_query(conn, scheme, as_of_day, settings)
    for statement in settings_sql(conn.dialect.name, scan=fast is None):
        conn.exec_driver_sql(statement)
    sql = fast if fast is not None else full_query(conn, scheme, as_of_day, settings)
    for table in (STAGE[dialect], SEEN[dialect], LATE[dialect]):
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    conn.exec_driver_sql(STAGE_DDL)
    conn.exec_driver_sql(SEEN_DDL)
    conn.exec_driver_sql(LATE_DDL)
    select = _stage_select(scheme, sql, as_of_day)
    if dialect == "postgres":
        select = select.replace("%", "%%")
    conn.exec_driver_sql(f"INSERT INTO {STAGE[dialect]} ({', '.join(SCORE_FIELDS)}) {select}")
    seen = _temp_table(conn, SEEN, "customer_id", "n_events")
    recent = sa.select(customers.c.customer_id, customers.c.n_events).where(customers.c.updated_at >= since)
    conn.execute(sa.insert(seen).from_select(["customer_id", "n_events"], recent))
    return "events" if fast is None else "customers"


def _drop_stage(conn: Connection) -> None:
    dialect = dialect_of(conn)
    try:
        with conn.begin():
            for table in (STAGE[dialect], SEEN[dialect], LATE[dialect], KEEP[dialect]):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    except sa.exc.SQLAlchemyError:  # pragma: no cover - the connection is going anyway
        conn.invalidate()


def _replace_scores(conn: Connection, fill: sa.Select[Any], *, keep_late: bool) -> None:
    """Replace every ``customer_scores`` row by ``fill`` (the staged rows, by customer id),
    except the late customers' (kept as they are: they are re-scored live next). One
    unqualified DELETE: SQLite then frees the table's and its indexes' pages at once instead
    of removing a million rows from each index one by one; the late customers' rows wait in a
    temporary table meanwhile."""
    dialect = dialect_of(conn)
    if keep_late:
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE rfmflow_scoring_keep AS SELECT * FROM customer_scores "
            f"WHERE customer_id IN (SELECT customer_id FROM {LATE[dialect]})"
        )
    conn.execute(sa.delete(customer_scores))
    names = [*SCORE_FIELDS, "scheme_version", "scored_at", "cause", "run_id"]
    conn.execute(sa.insert(customer_scores).from_select(names, fill))
    if keep_late:
        conn.exec_driver_sql(f"INSERT INTO customer_scores SELECT * FROM {KEEP[dialect]}")
        conn.exec_driver_sql(f"DROP TABLE {KEEP[dialect]}")


def _bands(conn: Connection, stage: str, scheme: Scheme) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """Bands (per key and cohort) and percentile points of the staged run; score counts."""
    cohort = "lifecycle" if scheme.lifecycle is not None else "'all'"
    group = "lifecycle, " if scheme.lifecycle is not None else ""
    bands: dict[str, dict[str, list[dict[str, Any]]]] = {}
    counts: dict[str, dict[str, int]] = {}
    for key in SCORE_KEYS:
        if scheme.score_spec(key) is None:
            continue
        score, value = SCORE_COLUMN[key], VALUE_COLUMNS[key]
        rows = conn.exec_driver_sql(
            f"SELECT {cohort} AS cohort, {score}, MIN({value}), MAX({value}), COUNT(*) FROM {stage} "
            f"GROUP BY {group}{score} ORDER BY 1, 2"
        ).all()
        per_cohort: dict[str, list[dict[str, Any]]] = {}
        tally: dict[str, int] = {}
        for c, s, low, high, n in rows:
            per_cohort.setdefault(str(c), []).append(
                {"score": int(s), "low": _num(low), "high": _num(high), "customers": int(n)}
            )
            tally[str(s)] = tally.get(str(s), 0) + int(n)
        bands[key] = per_cohort
        counts[score] = dict(sorted(tally.items(), key=lambda kv: int(kv[0])))
    total = int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {stage}").scalar_one())
    points: dict[str, list[list[Any]]] = {}
    step = max(1, math.ceil(total / PCT_POINTS))
    for key in pct_keys(scheme):
        value = VALUE_COLUMNS[key]
        order = f"{value} DESC NULLS FIRST" if key == "recency" else f"{value} ASC"
        rows = conn.exec_driver_sql(
            f"SELECT v, worse FROM (SELECT {value} AS v, RANK() OVER (ORDER BY {order}) - 1 AS worse, "
            f"ROW_NUMBER() OVER (ORDER BY {order}) AS rn FROM {stage}) AS t "
            f"WHERE (rn - 1) % {step} = 0 OR rn = {total} ORDER BY rn".replace(
                "%", "%%" if conn.dialect.name == "postgresql" else "%"
            )
        ).all()
        points[key] = [[_num(v), int(w)] for v, w in rows]
    return {"customers": total, "scores": bands, "pct_points": points}, counts


def _num(value: Any) -> float | int | None:
    if value is None:
        return None
    f = float(value)
    return int(f) if f.is_integer() and abs(f) < 2**53 else f


# --- a run ---------------------------------------------------------------------------------------
def _temp_table(conn: Connection, names: Mapping[str, str], *columns: str) -> sa.TableClause:
    schema, name = names[dialect_of(conn)].split(".")
    return sa.table(name, *(sa.column(c) for c in columns), schema=schema)


@contextmanager
def _write_on(conn: Connection, engine: Engine) -> Iterator[None]:
    """A write transaction on ``conn`` itself (the stage is the connection's own), queued
    like :func:`rfmflow.service.db.engine.write_transaction`'s."""
    lock = _WRITE_LOCKS.get(engine)
    with lock if lock is not None else nullcontext():
        conn.execution_options(**{_WRITE_OPTION: True})
        try:
            with conn.begin():
                yield
        finally:
            conn.execution_options(**{_WRITE_OPTION: False})


def _segment_counts(conn: Connection, scheme: Scheme) -> dict[str, int]:
    rows = conn.execute(
        sa.select(customer_scores.c.segment, sa.func.count()).group_by(customer_scores.c.segment)
    ).all()
    return _scheme_order(scheme, {str(seg): int(n) for seg, n in rows})


def _scheme_order(scheme: Scheme, found: dict[str, _T]) -> dict[str, _T]:
    """``found`` keyed by segment in the scheme's order, then segments of an older scheme."""
    order = [s.name for s in scheme.segments] + [NO_SEGMENT]
    out = {name: found.pop(name) for name in order if name in found}
    out.update(sorted(found.items()))
    return out


def _segment_rows(conn: Connection) -> dict[str, tuple[int, int, float | None, float | None]]:
    """Per segment of the stored scores: customers, revenue (net purchases, all time, minor
    units), mean recency and mean frequency."""
    cs = customer_scores.c
    rows = conn.execute(
        sa.select(
            cs.segment,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(customers.c.monetary_minor), 0),
            sa.func.avg(cs.recency_days),
            sa.func.avg(cs.frequency),
        )
        .select_from(customer_scores.outerjoin(customers, customers.c.customer_id == cs.customer_id))
        .group_by(cs.segment)
    ).all()
    return {
        str(r[0]): (
            int(r[1]),
            int(r[2]),
            None if r[3] is None else float(r[3]),
            None if r[4] is None else float(r[4]),
        )
        for r in rows
    }


def _segment_stats(conn: Connection, scheme: Scheme) -> dict[str, dict[str, Any]]:
    """:func:`_segment_rows` in the scheme's order, as a run keeps them (its snapshot)."""
    found = {
        name: {
            "customers": n,
            "revenue_minor": revenue,
            "mean_recency_days": None if recency is None else round(recency, 3),
            "mean_frequency": None if frequency is None else round(frequency, 3),
        }
        for name, (n, revenue, recency, frequency) in _segment_rows(conn).items()
    }
    return _scheme_order(scheme, found)


Finish = Callable[[Connection, int], None]


def run_scoring(
    engine: Engine,
    settings: Settings,
    *,
    trigger: str,
    actor: str | None = None,
    now: datetime | None = None,
    scheme_text: str | None = None,
    scheme: Scheme | None = None,
    finish: Finish | None = None,
) -> RunResult:
    """Score every customer (see the module doc) and return the recorded run.

    With ``scheme_text`` (and its parsed ``scheme``) the run stores it as the next scheme
    version in the same transaction (cause ``scheme``) and writes the audit log.
    ``finish(conn, run_id)`` runs last inside the swap transaction (the scheduler checks and
    releases its lease there); raising in it rolls the whole run back. The caller should hold
    the scoring lease (:func:`rfmflow.service.scoring_jobs.run_now` does it).
    """
    if trigger not in TRIGGERS:
        raise ValueError(f"unknown trigger {trigger!r}")
    if (scheme_text is None) != (scheme is None):
        raise ValueError("give both scheme_text and scheme, or neither")
    started = (now or datetime.now(UTC)).astimezone(UTC)
    clock = time.perf_counter()
    as_of_day = business_day(started, settings)
    with engine.connect() as conn:
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    # One snapshot for the stage and the counts (the stage sets the rest).
                    conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                current = active_scheme(conn)
                target = scheme if scheme is not None else current.scheme
                source = _stage(conn, target, as_of_day, settings, started - CATCH_UP)
            staged = time.perf_counter()
            with _write_on(conn, engine):
                result = _swap(
                    conn,
                    settings,
                    current,
                    target,
                    started,
                    as_of_day,
                    trigger,
                    actor,
                    scheme_text,
                    finish,
                    clock,
                )
            log.info(
                "scoring run",
                extra={
                    "run_id": result.id,
                    "as_of": result.as_of.isoformat(),
                    "scheme_version": result.scheme_version,
                    "trigger": trigger,
                    "customers": result.customers,
                    "moves": result.moves,
                    "source": source,
                    "stage_ms": round((staged - clock) * 1000, 1),
                    "duration_ms": round(result.duration_ms, 1),
                },
            )
            return result
        finally:
            _drop_stage(conn)


def _swap(
    conn: Connection,
    settings: Settings,
    current: SchemeVersion,
    target: Scheme,
    started: datetime,
    as_of_day: int,
    trigger: str,
    actor: str | None,
    scheme_text: str | None,
    finish: Finish | None,
    clock: float,
) -> RunResult:
    for statement in settings_sql(conn.dialect.name, scan=False):
        conn.exec_driver_sql(statement)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE customer_scores IN SHARE ROW EXCLUSIVE MODE")
    now_active = active_scheme(conn)
    if (now_active.version, now_active.stored) != (current.version, current.stored):
        raise ScoringConflict("the scheme changed while the run was being computed; nothing was written")
    if scheme_text is not None:
        version_no = store_version(conn, scheme_text, target, actor=actor or "unknown", now=started)
        cause = "scheme"
    else:
        version_no = ensure_active_scheme(conn, now=started).version
        cause = "run"
    version = active_scheme(conn)
    assert version.version == version_no
    run_id = int(
        conn.execute(
            sa.insert(scoring_runs)
            .values(
                as_of_day=as_of_day,
                scheme_version=version_no,
                trigger=trigger,
                actor=actor,
                started_at=started,
            )
            .returning(scoring_runs.c.id)
        ).scalar_one()
    )
    stage = STAGE[dialect_of(conn)]
    bands, score_counts = _bands(conn, stage, target)
    s = _temp_table(conn, STAGE, *SCORE_FIELDS)
    # Customers with events the stage did not see: re-scored live below, with the new bands.
    seen = _temp_table(conn, SEEN, "customer_id", "n_events")
    late_table = _temp_table(conn, LATE, "customer_id")
    c = customers.c
    stale = (
        sa.select(c.customer_id)
        .select_from(customers.outerjoin(seen, seen.c.customer_id == c.customer_id))
        .where(c.updated_at >= started - CATCH_UP)
        .where(sa.or_(seen.c.customer_id.is_(None), seen.c.n_events != c.n_events))
    )
    conn.execute(sa.insert(late_table).from_select(["customer_id"], stale))
    recent = sa.select(late_table.c.customer_id)
    conn.execute(sa.delete(s).where(s.c.customer_id.in_(recent)))

    cs = customer_scores.c
    moved = sa.select(
        s.c.customer_id,
        cs.segment,
        s.c.segment,
        sa.literal(as_of_day, sa.Integer()),
        sa.literal(started, segment_transitions.c.at.type),
        sa.literal(cause, sa.String()),
        sa.literal(run_id, sa.Integer()),
        sa.literal(version_no, sa.Integer()),
    ).select_from(s.outerjoin(customer_scores, cs.customer_id == s.c.customer_id))
    moved = moved.where(sa.or_(cs.customer_id.is_(None), cs.segment != s.c.segment))
    names = ["customer_id", "from_segment", "to_segment", "day", "at", "cause", "run_id", "scheme_version"]
    conn.execute(sa.insert(segment_transitions).from_select(names, moved))
    moves = int(
        conn.execute(
            sa.select(sa.func.count())
            .select_from(segment_transitions)
            .where(segment_transitions.c.run_id == run_id)
        ).scalar_one()
    )

    late = list(conn.execute(recent).scalars())
    fill = sa.select(
        *(s.c[name] for name in SCORE_FIELDS),
        sa.literal(version_no, sa.Integer()),
        sa.literal(started, customer_scores.c.scored_at.type),
        sa.literal(cause, sa.String()),
        sa.literal(run_id, sa.Integer()),
    ).order_by(s.c.customer_id)
    _replace_scores(conn, fill, keep_late=bool(late))
    if late:
        context = LiveContext(version, RunBands.from_json(run_id, version_no, bands))
        moves += rescore_customers(
            conn, settings, late, now=started, cause=cause, run_id=run_id, at=started, context=context
        )
    sync_rule_tags(conn, target, at=started, actor=f"run:{run_id}", run_id=run_id)  # everyone's rule tags

    stats = _segment_stats(conn, target)
    summary = run_summary.compute(conn, run_summary.previous_through(conn, run_id))  # for the overview
    segment_counts = {name: int(row["customers"]) for name, row in stats.items()}
    total = sum(segment_counts.values())
    finished = datetime.now(UTC)
    duration_ms = (time.perf_counter() - clock) * 1000
    conn.execute(
        sa.update(scoring_runs)
        .where(scoring_runs.c.id == run_id)
        .values(
            finished_at=finished,
            duration_ms=duration_ms,
            customers=total,
            moves=moves,
            segment_counts=[[name, n] for name, n in segment_counts.items()],  # JSONB would reorder a dict
            score_counts=score_counts,
            bands=run_summary.with_summary(bands, summary),
            segment_stats=[[name, row] for name, row in stats.items()],
        )
    )
    if scheme_text is not None:
        conn.execute(
            sa.insert(audit_log).values(
                at=started,
                actor=actor or "unknown",
                action="scheme.update",
                target=f"scheme:{version_no}",
                details={"name": target.name, "version": version_no, "run_id": run_id, "moves": moves},
            )
        )
    if finish is not None:
        finish(conn, run_id)
    return RunResult(
        id=run_id,
        as_of=day_date(as_of_day),
        scheme_version=version_no,
        trigger=trigger,
        actor=actor,
        started_at=started,
        finished_at=finished,
        duration_ms=duration_ms,
        customers=total,
        moves=moves,
        segment_counts=segment_counts,
        score_counts=score_counts,
    )


def preview_scheme(
    engine: Engine, settings: Settings, scheme: Scheme, *, now: datetime | None = None
) -> dict[str, Any]:
    """The segment counts ``scheme`` would give today, next to the current ones (nothing stored)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    as_of_day = business_day(moment, settings)
    with engine.connect() as conn, conn.begin():
        current = active_scheme(conn)
        fast = aggregates_query(conn, scheme, as_of_day, settings)  # as the stage reads
        for statement in settings_sql(conn.dialect.name, scan=fast is None):
            conn.exec_driver_sql(statement)
        query = fast if fast is not None else full_query(conn, scheme, as_of_day, settings)
        sql = f"SELECT COALESCE(q.segment, '{NO_SEGMENT}'), COUNT(*) FROM ({query}) AS q GROUP BY 1"
        if conn.dialect.name == "postgresql":
            sql = sql.replace("%", "%%")
        found = {str(seg): int(n) for seg, n in conn.exec_driver_sql(sql).all()}
        now_counts = _segment_counts(conn, current.scheme)
    order = [s.name for s in scheme.segments] + [NO_SEGMENT]
    proposed = {name: found.pop(name) for name in order if name in found}
    proposed.update(sorted(found.items()))
    return {
        "dry_run": True,
        "as_of": day_date(as_of_day).isoformat(),
        "current": {
            "version": current.version,
            "name": current.name,
            "customers": sum(now_counts.values()),
            "segment_counts": now_counts,
        },
        "proposed": {
            "name": scheme.name,
            "customers": sum(proposed.values()),
            "segment_counts": proposed,
        },
    }


# --- reads ---------------------------------------------------------------------------------------
def segment_on(conn: Connection, customer_id: str, day: int | date) -> str | None:
    """The customer's segment on ``day`` (a date or a business day number), from the
    transitions: the destination of their last move seen on or before that day; None when
    they had not been scored by then."""
    if isinstance(day, date):
        day = day.toordinal() - date(1970, 1, 1).toordinal()
    t = segment_transitions.c
    row = conn.execute(
        sa.select(t.to_segment)
        .where(t.customer_id == customer_id, t.day <= day)
        .order_by(t.day.desc(), t.id.desc())
        .limit(1)
    ).first()
    return None if row is None else str(row[0])


def segment_history(conn: Connection, customer_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
    """The customer's segment moves, newest first."""
    t = segment_transitions.c
    rows = conn.execute(
        sa.select(t.from_segment, t.to_segment, t.day, t.at, t.cause, t.run_id, t.scheme_version)
        .where(t.customer_id == customer_id)
        .order_by(t.day.desc(), t.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "from": r.from_segment,
            "to": r.to_segment,
            "date": day_date(r.day).isoformat(),
            "at": r.at.isoformat(),
            "cause": r.cause,
            "run_id": r.run_id,
            "scheme_version": r.scheme_version,
        }
        for r in rows
    ]


def _money(minor: int, settings: Settings) -> str:
    return format(Decimal(int(minor)).scaleb(-settings.money_decimals), "f")


def segment_summary(conn: Connection, settings: Settings) -> dict[str, Any]:
    """Customers, shares and revenue (net purchases, all time) per segment of the stored scores."""
    version = active_scheme(conn)
    found = _segment_rows(conn)
    total = sum(n for n, _, _, _ in found.values())
    revenue_total = sum(max(revenue, 0) for _, revenue, _, _ in found.values())
    names = [s.name for s in version.scheme.segments]
    names += [n for n in sorted(found) if n not in names]
    meta = {s.name: s for s in version.scheme.segments}
    out = []
    for name in names:
        n, revenue, recency, frequency = found.get(name, (0, 0, None, None))
        rule = meta.get(name)
        out.append(
            {
                "name": name,
                "customers": n,
                "share": n / total if total else 0.0,
                "revenue": _money(revenue, settings),
                "revenue_minor": revenue,
                "revenue_share": max(revenue, 0) / revenue_total if revenue_total else 0.0,
                "mean_recency_days": recency,
                "mean_frequency": frequency,
                "top": bool(rule and rule.top),
                "description": rule.description if rule else "",
                "action": rule.action if rule else "",
            }
        )
    return {
        "scheme_version": version.version,
        "scheme": version.name,
        "customers": total,
        "currency": settings.currency,
        "segments": out,
    }


def score_out(row: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """A ``customer_scores`` row for the API."""
    monetary: Any = row["monetary"]
    if row["monetary_minor"] is not None:
        monetary = _money(row["monetary_minor"], settings)
    return {
        "customer_id": row["customer_id"],
        "segment": row["segment"],
        "rfm": row["rfm"],
        "r_score": row["r_score"],
        "f_score": row["f_score"],
        "m_score": row["m_score"],
        "recency_days": row["recency_days"],
        "frequency": row["frequency"],
        "monetary": monetary,
        "tenure_days": row["tenure_days"],
        "lifecycle": row["lifecycle"],
        "tags": [t for t in (row["tags"] or "").split(";") if t],
        "as_of": day_date(row["as_of_day"]).isoformat(),
        "scored_at": row["scored_at"].isoformat(),
        "cause": row["cause"],
        "scheme_version": row["scheme_version"],
    }


def segment_customers(
    conn: Connection, segment: str, *, after: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Customers of ``segment`` ordered by id, after the cursor ``after``; and the next cursor."""
    cs = customer_scores.c
    query = sa.select(customer_scores).where(cs.segment == segment)
    if after is not None:
        query = query.where(cs.customer_id > after)
    rows = [dict(r) for r in conn.execute(query.order_by(cs.customer_id).limit(limit + 1)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["customer_id"] if more and rows else None)


def transition_matrix(conn: Connection, from_day: int, to_day: int) -> dict[str, Any]:
    """How customers moved between two days: the segment each was in on ``from_day``
    (``(none)``: not scored yet) against the one on ``to_day``, counted; plus the moves
    recorded in between."""
    t = segment_transitions.c

    def on(day: int) -> sa.Subquery:
        ranked = (
            sa.select(
                t.customer_id,
                t.to_segment,
                sa.func.row_number()
                .over(partition_by=t.customer_id, order_by=(t.day.desc(), t.id.desc()))
                .label("rn"),
            )
            .where(t.day <= day)
            .subquery()
        )
        return (
            sa.select(ranked.c.customer_id, ranked.c.to_segment.label("segment"))
            .where(ranked.c.rn == 1)
            .subquery()
        )

    a, b = on(from_day), on(to_day)
    start = sa.func.coalesce(a.c.segment, "(none)")
    rows = conn.execute(
        sa.select(start, b.c.segment, sa.func.count())
        .select_from(b.outerjoin(a, a.c.customer_id == b.c.customer_id))
        .group_by(start, b.c.segment)
    ).all()
    matrix: dict[str, dict[str, int]] = {}
    for src, dst, n in rows:
        matrix.setdefault(str(src), {})[str(dst)] = int(n)
    moves = conn.execute(
        sa.select(t.cause, sa.func.count()).where(t.day > from_day, t.day <= to_day).group_by(t.cause)
    ).all()
    changed = sum(n for src, row in matrix.items() for dst, n in row.items() if src != dst)
    return {
        "from": day_date(from_day).isoformat(),
        "to": day_date(to_day).isoformat(),
        "customers": sum(n for row in matrix.values() for n in row.values()),
        "changed": changed,
        "moves_recorded": {str(c): int(n) for c, n in moves},
        "matrix": {k: dict(sorted(v.items())) for k, v in sorted(matrix.items())},
    }


def run_out(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "as_of": day_date(row["as_of_day"]).isoformat(),
        "scheme_version": row["scheme_version"],
        "trigger": row["trigger"],
        "actor": row["actor"],
        "started_at": row["started_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
        "duration_ms": round(row["duration_ms"], 1) if row["duration_ms"] is not None else None,
        "customers": row["customers"],
        "moves": row["moves"],
        "segment_counts": {str(name): int(n) for name, n in row["segment_counts"] or []},
        "score_counts": row["score_counts"],
        "segment_stats": {str(name): stats for name, stats in row.get("segment_stats") or []},
    }


def list_runs(conn: Connection, *, limit: int = 20, before: int | None = None) -> list[dict[str, Any]]:
    """Finished runs, newest first (without their bands)."""
    r = scoring_runs.c
    cols = [c for c in scoring_runs.columns if c.name != "bands"]
    query = sa.select(*cols).where(r.finished_at.is_not(None))
    if before is not None:
        query = query.where(r.id < before)
    rows = conn.execute(query.order_by(r.id.desc()).limit(limit)).mappings()
    return [run_out(dict(row)) for row in rows]


def get_run(conn: Connection, run_id: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(scoring_runs).where(scoring_runs.c.id == run_id)).mappings().first()
    if row is None:
        return None
    return {**run_out(dict(row)), "bands": row["bands"]}


__all__ = [
    "RunResult",
    "ScoringConflict",
    "get_run",
    "list_runs",
    "preview_scheme",
    "run_scoring",
    "segment_customers",
    "segment_history",
    "segment_on",
    "segment_summary",
    "transition_matrix",
]

"""Benchmark full scoring runs (re-scoring every customer) inside the service's database.

    python bench/bench_rescore.py --customers 1m --events 10m --db both --repeat 3 --keep
    python bench/bench_rescore.py --customers 1m --events 10m --db postgres --reuse --explain
    python bench/bench_rescore.py --customers 100k --check        # exit 1 when the target is missed

Issue 4's target: a full re-score of 1M customers from 10M stored events in under 30 s, on
PostgreSQL and on SQLite, inside the database (no event passes through Python).

For each database:

1. **Load** (skipped with ``--reuse`` when the database of that size is there): ``--events``
   purchases generated *inside* the database (``generate_series`` / a recursive CTE). Event
   ``g`` (1-based) of the first ``--customers`` belongs to customer ``g - 1``, so every
   customer has at least one event; the others go to customer ``floor(N * h^1.5)`` with ``h``
   a hash of ``g`` in [0, 1) (customer ``k`` gets a share proportional to ``k^(-1/3)``: a few
   heavy buyers, many one-time ones). Days spread over two years; one order per event. Then
   the customers' aggregates are rebuilt from the events (:func:`rebuild_customers`).
2. **Baseline**, measured in the same run next to each full run: a plain aggregate
   ``CREATE TEMPORARY TABLE ... AS SELECT customer_id, max(day), count(*), sum(amount_minor)
   FROM events GROUP BY customer_id`` on the same database (one scan of every event, the
   floor for anything that reads them all).
3. **Full runs**: :func:`rfmflow.service.scoring.run_scoring` with ``rfm11`` (quantiles),
   ``--repeat`` times, each one day later than the one before (so scores move as they do
   from one daily run to the next). Every SQL statement is timed (a SQLAlchemy cursor hook),
   and the best run's statements are printed grouped by phase: stage, bands, transitions,
   delete/insert of ``customer_scores``, stats; "commit + Python" is the rest. On PostgreSQL
   ``VACUUM ANALYZE`` runs before each run (not timed), as autovacuum would between two daily
   runs: each run leaves a million dead rows behind.
   ``--scan`` forces the scan of every event (the path schemes with windows or decay take)
   instead of the customers' aggregates, to compare; ``--no-tuning`` drops the run's
   PostgreSQL ``work_mem`` (:mod:`rfmflow.service.scoring_stage`).

``--keep`` keeps the database (``bench/data/rescore-<customers>-<events>.db``, PostgreSQL
schema ``bench_rescore_<customers>_<events>``) for the next ``--reuse``; ``--reset`` clears
scores, transitions and runs first, so the first run scores everybody from nothing.
``--explain`` prints the stage query's plan (PostgreSQL: ``EXPLAIN (ANALYZE, BUFFERS)``).
The load average is printed with each figure: the machine has 2 cores, and a load above ~2
means other work competed and the wall times are inflated. CPU seconds are printed too (this
process's, plus on PostgreSQL the server processes' that ran the statements, read from
``/proc``): less sensitive to competing work than wall time.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event

from rfmflow.service import scoring, scoring_stage
from rfmflow.service.db import create_db_engine, downgrade, upgrade
from rfmflow.service.ingest import rebuild_customers
from rfmflow.service.scoring import run_scoring
from rfmflow.service.scoring_live import business_day
from rfmflow.service.settings import Settings

POSTGRES_URL = os.environ.get("RFMFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DATA = Path(__file__).resolve().parent / "data"
TARGET_S = 30.0
META = "rfmflow_bench_meta"


def parse_count(text: str) -> int:
    text = text.strip().lower().replace("_", "")
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


def size_label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


# --- the data ----------------------------------------------------------------------------------
def load_sql(dialect: str, customers: int, events: int, today: int) -> str:
    """The INSERT that generates the purchases inside the database (see the module doc)."""
    if events < customers:
        raise ValueError("--events must be at least --customers (every customer gets an event)")
    if dialect == "postgresql":
        return f"""
        INSERT INTO events (event_id, customer_id, event_type, occurred_at, received_at, day, amount_minor,
                            currency, order_id, properties, source)
        SELECT 'b' || g,
               'c' || CASE WHEN g <= {customers} THEN g - 1
                           ELSE CAST(FLOOR({customers} * POWER(h, 1.5)) AS BIGINT) END,
               'purchase',
               TIMESTAMPTZ '1970-01-01 12:00:00+00' + ({today} - (g * 7) % 730) * INTERVAL '1 day',
               TIMESTAMPTZ '2000-01-01 00:00:00+00', {today} - (g * 7) % 730,
               100 + (g::bigint * 7919) % 50000,
               'USD', 'o' || g, NULL, 'import'
        FROM (SELECT g, ((g::bigint * 2654435761) % 1000000007) / 1000000007.0 AS h
              FROM generate_series(1, {events}) AS g) AS s"""
    return f"""
        WITH RECURSIVE seq(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM seq WHERE g < {events}),
        s AS (SELECT g, ((g * 2654435761) % 1000000007) / 1000000007.0 AS h FROM seq)
        INSERT INTO events (event_id, customer_id, event_type, occurred_at, received_at, day, amount_minor,
                            currency, order_id, properties, source)
        SELECT 'b' || g,
               'c' || CASE WHEN g <= {customers} THEN g - 1
                           ELSE CAST({customers} * (h * sqrt(h)) AS INTEGER) END,
               'purchase',
               strftime('%Y-%m-%d 12:00:00.000000', ({today} - (g * 7) % 730) * 86400, 'unixepoch'),
               '2000-01-01 00:00:00.000000', {today} - (g * 7) % 730, 100 + (g * 7919) % 50000,
               'USD', 'o' || g, NULL, 'import'
        FROM s"""


def load(
    engine: sa.Engine, customers: int, events: int, today: int, *, order_index: bool = True
) -> dict[str, float]:
    """Generate the events, rebuild the aggregates; the seconds each step took."""
    sql = load_sql(engine.dialect.name, customers, events, today)
    if engine.dialect.name == "postgresql":
        sql = sql.replace("%", "%%")
    out: dict[str, float] = {}
    with engine.begin() as conn:
        if not order_index:
            conn.exec_driver_sql("DROP INDEX ix_events_order_id")
        start = time.perf_counter()
        conn.exec_driver_sql(sql)
        out["insert_s"] = time.perf_counter() - start
        if not order_index:
            start = time.perf_counter()
            conn.exec_driver_sql("CREATE INDEX ix_events_order_id ON events (order_id)")
            out["index_s"] = time.perf_counter() - start
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE events")
    start = time.perf_counter()
    rebuild_customers(engine)
    out["aggregates_s"] = time.perf_counter() - start
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE customers")
        else:
            conn.exec_driver_sql("ANALYZE")
    return out


# --- databases ---------------------------------------------------------------------------------
@dataclass
class Target:
    kind: str
    url: str
    fresh: bool
    drop: Any = None


@contextmanager
def database(kind: str, customers: int, events: int, *, keep: bool, reuse: bool) -> Iterator[Target]:
    tag = f"{size_label(customers)}_{size_label(events)}"
    if kind == "sqlite":
        DATA.mkdir(parents=True, exist_ok=True)
        path = DATA / f"rescore-{tag.replace('_', '-')}.db"
        if path.exists() and not reuse:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        try:
            yield Target(kind, f"sqlite:///{path}", not path.exists())
        finally:
            if not keep:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    import psycopg

    schema = f"bench_rescore_{tag}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
        if exists and not reuse:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
            exists = None
        if not exists:
            admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield Target(kind, f"{POSTGRES_URL}?options={quote(f'-csearch_path={schema}', safe='')}", not exists)
    finally:
        if not keep:
            with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")


def loaded(engine: sa.Engine, customers: int, events: int) -> bool:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(META):
            return False
        row = conn.exec_driver_sql(f"SELECT customers, events FROM {META}").first()
    return row is not None and (int(row[0]), int(row[1])) == (customers, events)


def mark_loaded(engine: sa.Engine, customers: int, events: int) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {META} (customers BIGINT, events BIGINT)")
        conn.exec_driver_sql(f"INSERT INTO {META} VALUES ({customers}, {events})")


def reset_scores(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for table in ("segment_transitions", "customer_scores", "scoring_runs"):
            conn.exec_driver_sql(f"DELETE FROM {table}")


# --- timing ------------------------------------------------------------------------------------
PHASES = (
    ("stage: scores of every customer", r"INSERT INTO (temp|pg_temp)\.rfmflow_scoring_stage"),
    ("stage: recent customers", r"INSERT INTO (temp|pg_temp)\.rfmflow_scoring_seen"),
    ("bands and score counts", r"FROM (temp|pg_temp)\.rfmflow_scoring_stage GROUP BY"),
    ("percentile points", r"RANK\(\) OVER"),
    ("count staged", r"SELECT COUNT\(\*\) FROM (temp|pg_temp)\.rfmflow_scoring_stage"),
    ("delete customer_scores", r"DELETE FROM customer_scores"),
    ("late customers", r"rfmflow_scoring_late|rfmflow_scoring_stage.*WHERE.*customer_id IN"),
    ("transitions", r"INSERT INTO segment_transitions"),
    ("count transitions", r"FROM segment_transitions"),
    ("insert customer_scores", r"INSERT INTO customer_scores"),
    ("update customer_scores", r"UPDATE customer_scores"),
    ("segment stats", r"FROM customer_scores LEFT OUTER JOIN customers"),
    ("temporary tables", r"(CREATE|DROP) (TEMPORARY )?TABLE"),
)


def phase_of(statement: str) -> str:
    flat = " ".join(statement.split())
    for name, pattern in PHASES:
        if re.search(pattern, flat, flags=re.IGNORECASE):
            return name
    return "other statements"


@dataclass
class Timer:
    """Seconds per phase of the SQL statements an engine runs."""

    phases: dict[str, float] = field(default_factory=dict)
    _starts: list[float] = field(default_factory=list)
    backends: dict[int, float] = field(default_factory=dict)
    """PostgreSQL server processes used, with their CPU seconds when first seen."""

    def attach(self, engine: sa.Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def detach(self, engine: sa.Engine) -> None:
        event.remove(engine, "before_cursor_execute", self._before)
        event.remove(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, *_args: Any) -> None:
        if conn.dialect.name == "postgresql":
            pid = int(conn.connection.dbapi_connection.info.backend_pid)
            if pid not in self.backends:
                self.backends[pid] = backend_cpu(pid)
        self._starts.append(time.perf_counter())

    def server_cpu(self) -> float:
        return sum(backend_cpu(pid) - start for pid, start in self.backends.items())

    def _after(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        took = time.perf_counter() - self._starts.pop()
        name = phase_of(statement)
        self.phases[name] = self.phases.get(name, 0.0) + took


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a PostgreSQL server process on this machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class RunFigures:
    seconds: float
    cpu_s: float
    baseline_s: float
    baseline_cpu_s: float
    load: float
    moves: int
    customers: int
    phases: dict[str, float]


def vacuum(engine: sa.Engine) -> None:
    """PostgreSQL: what autovacuum does between two daily runs (a run leaves a million dead
    rows in ``customer_scores``); back-to-back runs would otherwise pile them up."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("customer_scores", "segment_transitions", "customers"):
            conn.exec_driver_sql(f"VACUUM ANALYZE {table}")


def baseline(engine: sa.Engine) -> tuple[float, float]:
    """The plain aggregate of every event into a temporary table (see the module doc): wall
    and CPU seconds (the server process's on PostgreSQL, this process's on SQLite)."""
    with engine.connect() as conn, conn.begin():
        pid = conn.connection.dbapi_connection.info.backend_pid if engine.dialect.name == "postgresql" else 0
        cpu = backend_cpu(pid) if pid else time.process_time()
        start = time.perf_counter()
        conn.exec_driver_sql(
            "CREATE TEMPORARY TABLE rfmflow_bench_base AS SELECT customer_id, max(day) AS last_day, "
            "count(*) AS n, sum(amount_minor) AS amount FROM events GROUP BY customer_id"
        )
        took = time.perf_counter() - start
        cpu = (backend_cpu(pid) if pid else time.process_time()) - cpu
        conn.exec_driver_sql("DROP TABLE rfmflow_bench_base")
    return took, cpu


def explain(engine: sa.Engine, settings: Settings, today: int) -> None:
    from rfmflow.service.scoring import full_query
    from rfmflow.service.scoring_schemes import active_scheme

    for label in ("aggregates", "event scan"):
        with engine.connect() as conn, conn.begin():
            scheme = active_scheme(conn).scheme
            if label == "aggregates":
                sql = scoring_stage.aggregates_query(conn, scheme, today, settings)
            else:
                sql = full_query(conn, scheme, today, settings)
            if sql is None:
                print(f"  ({label}: not applicable to {scheme.name})")
                continue
            for statement in scoring_stage.settings_sql(engine.dialect.name, scan=label == "event scan"):
                conn.exec_driver_sql(statement)
            if engine.dialect.name == "postgresql":
                rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql.replace("%", "%%")).all()
            else:
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql).all()
            print(f"--- {label} ({engine.dialect.name}) ---")
            for row in rows:
                print("  " + " | ".join(str(v) for v in row))


def bench(kind: str, args: argparse.Namespace) -> list[RunFigures]:
    figures: list[RunFigures] = []
    with database(kind, args.customers, args.events, keep=args.keep, reuse=args.reuse) as target:
        settings = Settings(data_dir=DATA, database_url=target.url)
        engine = create_db_engine(settings.database_url)
        try:
            upgrade(engine)
            if args.revision:
                downgrade(engine, args.revision)
            now = datetime.now(UTC)
            today = business_day(now, settings)
            if not loaded(engine, args.customers, args.events):
                if not target.fresh:
                    raise SystemExit(f"[{kind}] the kept database holds other data; run without --reuse")
                took = load(engine, args.customers, args.events, today, order_index=not args.no_order_index)
                mark_loaded(engine, args.customers, args.events)
                print(
                    f"[{kind}] loaded {args.events:,} events: "
                    + ", ".join(f"{k} {v:.1f}" for k, v in took.items())
                    + f"; load average {os.getloadavg()[0]:.1f}",
                    file=sys.stderr,
                )
            elif args.reset:
                reset_scores(engine)
            if args.explain:
                explain(engine, settings, today)
            original = scoring.aggregates_query
            tuning = scoring_stage.POSTGRES_STAGE_SETTINGS
            if args.scan:
                scoring.aggregates_query = lambda *_a, **_k: None
            if args.no_tuning:
                scoring_stage.POSTGRES_STAGE_SETTINGS = ()
            try:
                for i in range(args.repeat):
                    vacuum(engine)
                    base, base_cpu = baseline(engine)
                    timer = Timer()
                    timer.attach(engine)
                    cpu = time.process_time()
                    start = time.perf_counter()
                    run = run_scoring(engine, settings, trigger="cli", now=now + timedelta(days=i))
                    took = time.perf_counter() - start
                    cpu = time.process_time() - cpu + timer.server_cpu()
                    timer.detach(engine)
                    load_now = os.getloadavg()[0]
                    figures.append(
                        RunFigures(
                            took, cpu, base, base_cpu, load_now, run.moves, run.customers, timer.phases
                        )
                    )
                    print(
                        f"[{kind}] run {i + 1}: {run.customers:,} customers in {took:.2f} s, CPU {cpu:.2f} s "
                        f"({run.moves:,} moves); baseline {base:.2f} s, CPU {base_cpu:.2f} s; "
                        f"load average {load_now:.1f}",
                        file=sys.stderr,
                    )
            finally:
                scoring.aggregates_query = original
                scoring_stage.POSTGRES_STAGE_SETTINGS = tuning
        finally:
            engine.dispose()
    return figures


def report(kind: str, runs: list[RunFigures]) -> bool:
    best = min(runs, key=lambda r: r.seconds)
    base = min(r.baseline_s for r in runs)
    base_cpu = min(r.baseline_cpu_s for r in runs)
    cpu = min(r.cpu_s for r in runs)

    def listed(values: list[float]) -> str:
        return ", ".join(f"{v:.2f}" for v in values)

    print(
        f"{kind:<10} full run best {best.seconds:6.2f} s (runs {listed([r.seconds for r in runs])}; median "
        f"{statistics.median(r.seconds for r in runs):.2f}); baseline best {base:.2f} s "
        f"(runs {listed([r.baseline_s for r in runs])}); ratio {best.seconds / base:.2f}x"
    )
    print(
        f"{'':<10} CPU best {cpu:6.2f} s (runs {listed([r.cpu_s for r in runs])}); baseline CPU best "
        f"{base_cpu:.2f} s (runs {listed([r.baseline_cpu_s for r in runs])}); ratio {cpu / base_cpu:.2f}x"
    )
    print(f"  best run: {best.customers:,} customers, {best.moves:,} moves, load average {best.load:.1f}")
    for name, seconds in sorted(best.phases.items(), key=lambda kv: -kv[1]):
        print(f"    {name:<34} {seconds:7.2f} s")
    print(f"    {'commit + Python':<34} {best.seconds - sum(best.phases.values()):7.2f} s")
    return best.seconds < TARGET_S


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=parse_count, default=parse_count("100k"))
    parser.add_argument("--events", type=parse_count, default=None, help="default: 10 per customer")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the loaded database for --reuse")
    parser.add_argument("--reuse", action="store_true", help="use the kept database when it is there")
    parser.add_argument("--reset", action="store_true", help="clear scores, transitions and runs first")
    parser.add_argument("--scan", action="store_true", help="force the scan of every event")
    parser.add_argument("--explain", action="store_true", help="print the stage query's plan")
    parser.add_argument("--no-tuning", action="store_true", help="without the run's PostgreSQL work_mem")
    parser.add_argument(
        "--no-order-index", action="store_true", help="load without ix_events_order_id (created after)"
    )
    parser.add_argument(
        "--revision", help="measure at this older schema revision (downgraded; the next run upgrades)"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args(argv)
    args.events = args.events or args.customers * 10
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    results = {kind: bench(kind, args) for kind in kinds}
    forced = " (event scan forced)" if args.scan else ""
    print(f"\n{args.customers:,} customers, {args.events:,} events, rfm11{forced}")
    ok = all([report(kind, runs) for kind, runs in results.items()])
    if args.customers >= 1_000_000 and args.events >= 10_000_000:
        verdict = "PASS" if ok else "FAIL"
        print(f"{verdict}: full re-score under {TARGET_S:.0f} s at 1M customers / 10M events")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())

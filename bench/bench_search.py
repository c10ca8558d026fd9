"""Benchmark the customer list (search, filters, keyset pages), snapshots and exports at scale.

    python bench/bench_search.py                                  # 1M customers, both databases
    python bench/bench_search.py --customers 200k --db sqlite
    python bench/bench_search.py --keep                           # print the database URL, keep it
    python bench/bench_search.py --url URL                        # reuse a kept database (no load)
    python bench/bench_search.py --write-cost                     # what the sort indexes cost a run

For each database, on a freshly migrated schema, ``--customers`` customers are generated
*inside* the database with set-based SQL (``generate_series`` / a recursive CTE): aggregates
(``customers``), current scores and segments (``customer_scores``, rfm11's eleven segments),
profiles with names and emails for 70%, four tags (``customer_tags``: 30%, 10%, 2% and 40%), a
year of daily scoring runs with their per-segment snapshot, and segment moves over the year.

Then each case (typical dashboard requests) is timed as the server runs it — the use case
(:func:`rfmflow.service.customer_search.search` and friends) plus encoding the JSON answer,
without HTTP — best and median of ``--repeat`` tries, next to a same-run baseline: a plain
``SELECT * FROM customer_scores LIMIT 50`` and ``SELECT count(*) FROM customer_scores``.
The dashboard's target (issue 6): the overview and a filtered customer list under 300 ms of
server time with 1M customers and a year of daily runs.

``--write-cost`` times what a full run pays for the list's indexes: deleting and refilling
``customer_scores`` (as a run's swap does) with and without the 0004 sort indexes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from rfmflow.service.customer_search import (
    Bounds,
    Cursor,
    CustomerFilter,
    customer_json,
    iter_customers,
    page_and_total,
)
from rfmflow.service.db import create_db_engine, upgrade
from rfmflow.service.db.tables import EVENT_COUNT_COLUMNS
from rfmflow.service.history import list_snapshots
from rfmflow.service.scoring import segment_summary
from rfmflow.service.scoring_live import EPOCH_ORDINAL
from rfmflow.service.settings import Settings

POSTGRES_URL = os.environ.get("RFMFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TARGET_MS = 300.0
SEGMENTS = [
    "Champions",
    "Loyal",
    "Can't Lose Them",
    "At Risk",
    "Potential Loyalists",
    "New",
    "Promising",
    "Need Attention",
    "About to Sleep",
    "Lost",
    "Hibernating",
]
FIRST = ["Anna", "Ben", "Carla", "David", "Eva", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Luca"]
LAST = ["Smith", "Meyer", "Rossi", "Novak", "Garcia", "Kim", "Olsen", "Dubois", "Silva", "Kowalski"]
SORT_INDEXES = {  # what an index per sort of the list would be (not in the schema: see write_cost)
    f"bench_scores_{column}": f"({column}, customer_id)"
    for column in ("recency_days", "frequency", "monetary_minor", "monetary", "r_score", "f_score", "m_score")
}


def parse_count(text: str) -> int:
    text = text.strip().lower().replace("_", "")
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


@contextmanager
def database(kind: str, workdir: Path, keep: bool) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir / f'search-{uuid.uuid4().hex[:6]}.db'}"
        return
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_URL}?options={quote(f'-csearch_path={schema}', safe='')}"
    finally:
        if not keep:
            with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")


def _series(engine: sa.Engine, n: int) -> str:
    """A relation ``s(g)`` of 1..n, and ``h1``..``h3`` in [0, 1): hashes of g."""
    hashes = (
        "((g * 2654435761) % 1000003) / 1000003.0 AS h1, ((g * 40503) % 999983) / 999983.0 AS h2, "
        "((g * 97) % 1009) / 1009.0 AS h3"
    )
    if engine.dialect.name == "postgresql":
        series = f"SELECT CAST(i AS BIGINT) AS g FROM generate_series(1, {n}) AS i"
        return f"(SELECT g, {hashes} FROM ({series}) AS t) AS s"
    series = f"WITH RECURSIVE q(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM q WHERE g < {n})"
    return f"({series} SELECT g, {hashes} FROM q) AS s"


def load(engine: sa.Engine, n: int, today: int) -> None:
    """Generate the customers, scores, profiles, tags, runs and moves inside the database."""
    pg = engine.dialect.name == "postgresql"

    def run(conn: sa.Connection, sql: str) -> None:
        conn.exec_driver_sql(sql.replace("%", "%%") if pg else sql)

    now = "TIMESTAMPTZ '2026-11-01 00:00:00+00'" if pg else "'2026-11-01 00:00:00.000000'"
    counts = ", ".join(EVENT_COUNT_COLUMNS.values())
    zeros = ", ".join("purchases" if c == "n_purchase" else "0" for c in EVENT_COUNT_COLUMNS.values())
    # Per customer: no purchase for 3% (h3 < 0.03), else recency skewed to recent days,
    # frequency 1..20 skewed low, spend per order 5..205.
    base = f"""
        SELECT 'c' || g AS customer_id,
               CASE WHEN h3 < 0.03 THEN NULL ELSE CAST(730 * h1 * h1 AS INTEGER) END AS recency,
               CASE WHEN h3 < 0.03 THEN 0 ELSE 1 + CAST(20 * h2 * h2 * h2 AS INTEGER) END AS purchases,
               g, h1, h2, h3
        FROM {_series(engine, n)}"""
    segment = "CASE " + " ".join(
        f"WHEN ((x.r * 7 + x.f * 3 + x.mm) % 11) = {i} THEN '{name.replace(chr(39), chr(39) * 2)}'"
        for i, name in enumerate(SEGMENTS)
    )
    segment += " END"
    with engine.begin() as conn:
        run(conn, f"CREATE TABLE bench_base AS {base}")
        run(
            conn,
            f"""
            INSERT INTO customers (customer_id, first_day, last_day, last_purchase_day, purchases,
                                   monetary_minor, n_events, {counts}, created_at, updated_at)
            SELECT customer_id, {today} - 800, {today} - COALESCE(recency, CAST(h2 * 700 AS INTEGER)),
                   CASE WHEN recency IS NULL THEN NULL ELSE {today} - recency END, purchases,
                   purchases * (500 + (g * 7919) % 20000), purchases + 1, {zeros}, {now}, {now}
            FROM bench_base""",
        )
        run(
            conn,
            f"""
            INSERT INTO customer_scores (customer_id, as_of_day, scheme_version, recency_days, frequency,
                monetary_minor, monetary, r_value, f_value, m_value, tenure_days, lifecycle, r_score, f_score,
                m_score, rfm, segment, tags, scored_at, cause, run_id)
            SELECT customer_id, {today}, 1, recency, purchases, m, NULL, recency, purchases, m, 800, NULL,
                   r, f, mm, CAST(r AS TEXT) || CAST(f AS TEXT) || CAST(mm AS TEXT), {segment}, NULL,
                   {now}, 'run', 365
            FROM (SELECT customer_id, recency, purchases, purchases * (500 + (g * 7919) % 20000) AS m,
                         CASE WHEN recency IS NULL THEN 1 ELSE 5 - CAST(recency / 146.01 AS INTEGER) END AS r,
                         CASE WHEN purchases >= 5 THEN 5 WHEN purchases < 1 THEN 1 ELSE purchases END AS f,
                         1 + CAST(h2 * 4.999 AS INTEGER) AS mm
                  FROM bench_base) AS x""",
        )
        run(conn, "CREATE TABLE bench_names (i INTEGER PRIMARY KEY, first VARCHAR(20), last VARCHAR(20))")
        rows = [(i, FIRST[i % len(FIRST)], LAST[i // len(FIRST)]) for i in range(len(FIRST) * len(LAST))]
        conn.execute(
            sa.text("INSERT INTO bench_names VALUES (:i, :f, :l)"),
            [{"i": i, "f": f, "l": last} for i, f, last in rows],
        )
        run(
            conn,
            f"""
            INSERT INTO customer_profiles (customer_id, traits, email, phone, name, timezone, language,
                                           telegram_chat_id, updated_at, source)
            SELECT customer_id, NULL, lower(first) || '.' || lower(last) || CAST(g AS TEXT) || '@example.com',
                   NULL, first || ' ' || last, NULL, NULL, NULL, {now}, 'bench'
            FROM bench_base JOIN bench_names ON bench_names.i = g % {len(rows)}
            WHERE h3 < 0.7""",
        )
        for tag, cond in (
            ("newsletter", "g % 10 < 3"),
            ("churn-risk", "g % 10 = 5"),
            ("vip", "g % 50 = 0"),
            ("telegram", "g % 5 < 2"),
        ):
            run(
                conn,
                f"""
                INSERT INTO customer_tags (customer_id, tag, kind, added_at, added_by)
                SELECT customer_id, '{tag}', 'manual', {now}, 'bench' FROM bench_base WHERE {cond}""",
            )
        # moves over the year: everyone first scored a year ago, then a move for half of them
        run(
            conn,
            f"""
            INSERT INTO segment_transitions (customer_id, from_segment, to_segment, day, at, cause, run_id,
                                             scheme_version)
            SELECT customer_id, NULL, 'New', {today} - 365, {now}, 'run', 1, 1 FROM bench_base""",
        )
        run(
            conn,
            f"""
            INSERT INTO segment_transitions (customer_id, from_segment, to_segment, day, at, cause, run_id,
                                             scheme_version)
            SELECT s.customer_id, 'New', s.segment, {today} - 364 + (b.g % 365), {now}, 'run',
                   2 + (b.g % 364), 1
            FROM customer_scores AS s JOIN bench_base AS b ON b.customer_id = s.customer_id
            WHERE b.g % 2 = 0""",
        )
        run(conn, "DROP TABLE bench_base")
        run(conn, "DROP TABLE bench_names")
    _runs(engine, n, today)
    with engine.begin() as conn:
        run(conn, "ANALYZE")


def _runs(engine: sa.Engine, n: int, today: int) -> None:
    """A year of daily runs, each with its per-segment snapshot."""
    from rfmflow.service.db.tables import scoring_runs

    rows = []
    for k in range(365):
        day = today - 364 + k
        stats = []
        for i, name in enumerate(SEGMENTS):
            share = (i + 1 + (k % 7)) / sum(j + 1 + (k % 7) for j in range(len(SEGMENTS)))
            customers = int(n * share)
            stats.append(
                [
                    name,
                    {
                        "customers": customers,
                        "revenue_minor": customers * (4000 + 100 * i),
                        "mean_recency_days": 30.0 + 20 * i,
                        "mean_frequency": 1.5 + 0.1 * i,
                    },
                ]
            )
        at = datetime(1970, 1, 1, 3, tzinfo=UTC) + timedelta(days=day)
        rows.append(
            {
                "as_of_day": day,
                "scheme_version": 1,
                "trigger": "schedule",
                "actor": None,
                "started_at": at,
                "finished_at": at + timedelta(seconds=30),
                "duration_ms": 30000.0,
                "customers": n,
                "moves": n // 100,
                "segment_counts": [[name, s["customers"]] for name, s in stats],
                "score_counts": {},
                "bands": {
                    "customers": n,
                    "scores": {},
                    "pct_points": {"recency": [[i, i] for i in range(1001)]},
                },
                "segment_stats": stats,
            }
        )
    with engine.begin() as conn:
        conn.execute(sa.insert(scoring_runs), rows)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    times = []
    out = None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - start) * 1000)
    return min(times), statistics.median(times), out


def cases(engine: sa.Engine, settings: Settings, n: int) -> list[tuple[str, Callable[[], Any]]]:
    def page(f: CustomerFilter | None = None, **kw: Any) -> Callable[[], Any]:
        def run() -> Any:
            found = page_and_total(engine, settings, f or CustomerFilter(), **kw)
            body = {"items": [customer_json(i) for i in found.items], "next_cursor": found.next_cursor}
            return json.dumps({**body, "total": found.total}, default=str), found

        return run

    middle = Cursor("customer_id", "asc", False, None, f"c{n // 2}").encode()
    mid_money = Cursor("monetary", "desc", False, 200_000, f"c{n // 2}").encode()

    def overview() -> Any:
        with engine.connect() as conn:
            return json.dumps(segment_summary(conn, settings))

    def snapshots() -> Any:
        with engine.connect() as conn:
            return json.dumps(list_snapshots(conn, settings, per="day"), default=str)

    def export_10k() -> Any:
        with engine.connect() as conn:
            rows = iter_customers(
                conn, settings, CustomerFilter(segments=("Champions",)), sort="monetary", order="desc"
            )
            for i, _ in enumerate(rows):
                if i == 9_999:
                    break

    return [
        ("all, by id, first page + total", page()),
        ("all, by id, page at 50% (cursor), no total", page(cursor=middle, count=False)),
        ("all, by monetary desc, first page + total", page(sort="monetary", order="desc")),
        (
            "all, by monetary desc, page deep (cursor)",
            page(sort="monetary", order="desc", cursor=mid_money, count=False),
        ),
        ("all, by last activity desc + total", page(sort="last_activity", order="desc")),
        ("all, by m_score desc + total", page(sort="m_score", order="desc")),
        (
            "segment Champions, by monetary desc + total",
            page(CustomerFilter(segments=("Champions",)), sort="monetary", order="desc"),
        ),
        (
            "2 segments + tag vip, by recency + total",
            page(CustomerFilter(segments=("At Risk", "Can't Lose Them"), tags_all=("vip",)), sort="recency"),
        ),
        (
            "r 4-5, f 1-2, by last activity desc + total",
            page(
                CustomerFilter(r_score=Bounds(4, 5), f_score=Bounds(1, 2)), sort="last_activity", order="desc"
            ),
        ),
        (
            "recency 0-30, monetary >= 100, by monetary desc + total",
            page(
                CustomerFilter(recency=Bounds(0, 30), monetary=Bounds(100, None)),
                sort="monetary",
                order="desc",
            ),
        ),
        (
            "tag newsletter, not churn-risk, by frequency desc + total",
            page(
                CustomerFilter(tags_all=("newsletter",), tags_none=("churn-risk",)),
                sort="frequency",
                order="desc",
            ),
        ),
        ("q email prefix 'anna.smith1', + total", page(CustomerFilter(q="anna.smith1"))),
        ("q id prefix 'c12345' + total", page(CustomerFilter(q="c12345"))),
        ("q name prefix 'Greta Ko' + total", page(CustomerFilter(q="Greta Ko"))),
        ("overview: GET /v1/segments (existing)", overview),
        ("snapshots: a year of daily runs", snapshots),
        ("export: first 10k rows of a segment by monetary", export_10k),
    ]


def baseline(engine: sa.Engine, repeat: int) -> tuple[float, float]:
    def first50() -> Any:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT * FROM customer_scores LIMIT 50").all()

    def count() -> Any:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT count(*) FROM customer_scores").scalar()

    return timed(first50, repeat)[0], timed(count, repeat)[0]


def _indexes(engine: sa.Engine, table: str, specs: dict[str, str], *, create: bool) -> None:
    with engine.begin() as conn:
        for name, columns in specs.items():
            if create:
                conn.exec_driver_sql(f"CREATE INDEX {name} ON {table} {columns}")
            else:
                conn.exec_driver_sql(f"DROP INDEX {name}")


def write_cost(engine: sa.Engine) -> None:
    """Refill customer_scores as a run's swap does, as the schema is and with an index per
    sort of the list (the alternative migration 0004 did not take)."""
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE bench_copy AS SELECT * FROM customer_scores")

    def refill() -> float:
        start = time.perf_counter()
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM customer_scores")
            conn.exec_driver_sql("INSERT INTO customer_scores SELECT * FROM bench_copy")
        return time.perf_counter() - start

    without = min(refill() for _ in range(2))
    _indexes(engine, "customer_scores", SORT_INDEXES, create=True)
    try:
        with_indexes = min(refill() for _ in range(2))
    finally:
        _indexes(engine, "customer_scores", SORT_INDEXES, create=False)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE bench_copy")
    print(
        f"  refill customer_scores (delete + insert, as a run's swap): {without:.2f} s as is, "
        f"{with_indexes:.2f} s with an index per sort ({len(SORT_INDEXES)}; +{with_indexes - without:.2f} s)"
    )


CUSTOMER_INDEXES = {  # what the last-activity sort and an id-prefix LIKE would need
    "bench_customers_last_day": "(last_day, customer_id)",
    "bench_customers_id_pattern": "(customer_id varchar_pattern_ops)",
}


def ingest_cost(engine: sa.Engine, settings: Settings, n: int, batches: int) -> None:
    """Ingest purchases by existing customers (live re-scoring paused) as the schema is and
    with the indexes on ``customers`` that an indexed last-activity sort (and, on PostgreSQL,
    an indexed id-prefix ``LIKE``) would need: what they would cost every event."""
    import random

    from rfmflow.service.events import EventIn
    from rfmflow.service.ingest import ingest
    from rfmflow.service.scoring_live import live_rescoring_paused

    pg = engine.dialect.name == "postgresql"
    names = [k for k in CUSTOMER_INDEXES if pg or "pattern" not in k]
    now = datetime.now(UTC)

    def rate(tag: str) -> float:
        rng = random.Random(tag)
        prepared = [
            [
                EventIn.model_validate(
                    {
                        "event_id": f"{tag}-{b}-{i}",
                        "customer_id": f"c{rng.randrange(1, n + 1)}",
                        "type": "purchase",
                        "occurred_at": (now - timedelta(seconds=i)).isoformat(),
                        "amount": "12.50",
                    }
                )
                for i in range(500)
            ]
            for b in range(batches)
        ]
        start = time.perf_counter()
        with live_rescoring_paused():
            for batch in prepared:
                ingest(engine, batch, settings)
        return batches * 500 / (time.perf_counter() - start)

    run_tag = uuid.uuid4().hex[:6]
    specs = {name: CUSTOMER_INDEXES[name] for name in names}
    without, with_indexes = 0.0, 0.0
    for turn in range(2):  # interleaved, best of two each: the first pass warms the cache
        without = max(without, rate(f"without-{run_tag}-{turn}"))
        _indexes(engine, "customers", specs, create=True)
        try:
            with_indexes = max(with_indexes, rate(f"with-{run_tag}-{turn}"))
        finally:
            _indexes(engine, "customers", specs, create=False)
    print(
        f"  ingest, batches of 500 purchases by existing customers (live re-score paused): "
        f"{without:,.0f} events/s as is, {with_indexes:,.0f} with {len(specs)} more index(es) on customers "
        f"({(with_indexes - without) / without:+.0%})"
    )


def bench(kind: str, args: argparse.Namespace, workdir: Path) -> list[float]:
    today = date.today().toordinal() - EPOCH_ORDINAL
    url_given = args.url if args.url and (args.url.startswith("sqlite") == (kind == "sqlite")) else None
    with (
        contextmanager(lambda: iter([url_given]))() if url_given else database(kind, workdir, args.keep)
    ) as url:
        settings = Settings(data_dir=workdir, database_url=url)
        engine = create_db_engine(settings.database_url)
        try:
            if url_given is None:
                upgrade(engine)
                start = time.perf_counter()
                load(engine, args.customers, today)
                print(f"{kind}: loaded {args.customers:,} customers in {time.perf_counter() - start:.1f} s")
            if args.keep:
                print(f"  kept: --url '{url}'")
            with engine.connect() as conn:
                n = int(conn.exec_driver_sql("SELECT count(*) FROM customer_scores").scalar_one())
            first50, count = baseline(engine, args.repeat)
            print(
                f"{kind}, {n:,} customers: baseline SELECT * LIMIT 50 {first50:.2f} ms, "
                f"count(*) {count:.1f} ms"
            )
            print(f"  {'case':<58} {'best ms':>8} {'median':>8} {'x LIMIT 50':>10} {'x count':>8}")
            medians = []
            for name, fn in cases(engine, settings, n) if not args.no_cases else []:
                best, median, _ = timed(fn, args.repeat)
                medians.append(median)
                flag = "" if median < TARGET_MS else "  over target"
                print(
                    f"  {name:<58} {best:8.1f} {median:8.1f} {median / first50:10.0f} "
                    f"{median / count:8.2f}{flag}"
                )
            if args.write_cost:
                write_cost(engine)
            if args.ingest_cost:
                ingest_cost(engine, settings, n, args.ingest_cost)
            return medians
        finally:
            engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=parse_count, default=parse_count("1m"))
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the database and print its URL")
    parser.add_argument("--url", help="reuse a database kept with --keep (no load)")
    parser.add_argument(
        "--write-cost", action="store_true", help="time a customer_scores refill with/without indexes"
    )
    parser.add_argument(
        "--ingest-cost",
        type=int,
        default=0,
        metavar="BATCHES",
        help="time BATCHES x 500 purchases with/without",
    )
    parser.add_argument("--no-cases", action="store_true", help="only the --write-cost/--ingest-cost figures")
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 when a median is over {TARGET_MS:.0f} ms"
    )
    args = parser.parse_args(argv)
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    workdir = (
        Path(tempfile.mkdtemp(prefix="rfmflow-search-")) if not args.keep else Path(tempfile.gettempdir())
    )
    missed = False
    for kind in kinds:
        medians = bench(kind, args, workdir)
        missed |= any(m >= TARGET_MS for m in medians)
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())

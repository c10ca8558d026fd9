"""Ablation of rfmflow's Parquet path: what each part of the pipeline costs in DuckDB.

    python bench/diagnose_scans.py bench/data/tx_10m.parquet [--repeat 2]

Captures the exact views and statements ``rfmflow.score`` issues (through a timing
connection proxy, see ``profile_rfmflow.py``), then re-runs each statement on a fresh
connection, and re-runs the main RFM query over leaner versions of the events view, to
attribute the time to: the three full scans, the per-row ``_reason`` validation, the
``file_row_number`` line numbers, the DECIMAL(38,6) amount conversion, the customer-id
TRIM and the final ``ORDER BY customer_id``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))

import profile_rfmflow as P
from bench_score import BASELINE_SQL
from rfmflow.engines import duckdb_engine
from rfmflow.engines.duckdb_engine import ScoreOptions
from rfmflow.schemes import load_scheme


def capture(path: str) -> tuple[dict[str, str], dict[str, str]]:
    P.LOG.clear()
    P.SETUP.clear()
    duckdb_engine.score_with_duckdb(
        path, load_scheme("rfm11"), ScoreOptions(), connect=lambda: P.TimedConnection(duckdb.connect())
    )
    views = {}
    for stmt in P.SETUP:
        m = re.match(r"\s*CREATE (?:OR REPLACE )?TEMP (VIEW|TABLE) (\w+) AS (.*)", stmt, re.S)
        if m:
            views[m.group(2)] = m.group(3)
    queries = {
        "rejects": next(s for _, _, s in P.LOG if "WHERE _reason IS NOT NULL" in s),
        "stats": next(s for _, _, s in P.LOG if s.startswith("SELECT min(day), max(day), count(*)")),
    }
    return views, queries


def timed(setup: list[str], sql: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        con = duckdb.connect()
        for s in setup:
            con.execute(s)
        t0 = time.perf_counter()
        con.execute(sql).fetchall()
        best = min(best, time.perf_counter() - t0)
        con.close()
    return best


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("path")
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()
    path = args.path.replace("'", "''")

    t0 = time.perf_counter()
    views, queries = capture(args.path)
    total = time.perf_counter() - t0
    main_sql = views.pop("scored")
    main_unsorted = re.sub(r"\s+ORDER BY customer_id\s*$", "", main_sql)
    assert main_unsorted != main_sql, "expected the main query to end with ORDER BY customer_id"
    raw, events, valid = views["raw"], views["events"], views["valid"]
    rfm_setup = [
        f"CREATE TEMP VIEW raw AS {raw}",
        f"CREATE TEMP VIEW events AS {events}",
        f"CREATE TEMP VIEW valid AS {valid}",
    ]

    raw_no_line = f"SELECT *, CAST(NULL AS BIGINT) AS _line FROM read_parquet('{path}')"
    # the same events view, but the validation is what a typed Parquet column needs
    rfm_id = "NULLIF(TRIM(CAST(customer_id AS VARCHAR)), '')"
    rfm_amount = "CAST(ROUND(TRY_CAST(amount AS DECIMAL(38, 6)) * 100) AS BIGINT)"

    def lean(customer: str = "customer_id", amount: str = "CAST(amount * 100 AS BIGINT)") -> str:
        return (
            "SELECT _line, CASE WHEN customer_id IS NULL THEN 'missing customer id' "
            "WHEN order_date IS NULL THEN 'missing date' "
            "WHEN amount IS NULL THEN 'missing amount' END AS _reason, "
            f"{customer} AS customer_id, "
            "CAST(CAST(order_date AS DATE) - DATE '1970-01-01' AS INTEGER) AS day, "
            "CASE WHEN amount < 0 THEN 'refund' ELSE 'purchase' END AS event_type, "
            f"{amount} AS amount_minor FROM raw"
        )

    lean_events = lean()

    def run(label: str, setup: list[str], sql: str) -> float:
        secs = timed(setup, sql, args.repeat)
        print(f"  {secs:7.2f}s  {label}")
        return secs

    print(
        f"{Path(args.path).name}: one rfmflow.score() call took {total:.2f}s (with the proxy); "
        "statements over 10 ms, in order:"
    )
    for kind, secs, sql in P.LOG:
        if secs >= 0.01:
            print(f"  {secs:7.2f}s  {kind:<9} {P._short(sql, 110)}")
    print(f"  {total - sum(s for _, s, _ in P.LOG):7.2f}s  (not in a DuckDB call)\n")
    print(f"A. rfmflow's statements, each on a fresh connection (best of {args.repeat}):")
    a_rej = run(
        "rejects query  (scan 1: SELECT ... FROM events WHERE _reason IS NOT NULL ORDER BY _line)",
        rfm_setup,
        queries["rejects"],
    )
    a_stats = run(
        "stats query    (scan 2: SELECT min(day), max(day), count(*) FROM valid)", rfm_setup, queries["stats"]
    )
    a_main = run(
        "main query     (scan 3: CREATE TEMP TABLE scored AS ... ORDER BY customer_id)",
        rfm_setup,
        f"CREATE TEMP TABLE scored AS {main_sql}",
    )
    print(f"  {a_rej + a_stats + a_main:7.2f}s  sum of the three scans")
    base = run(
        "hand-written baseline query (bench_score.py), for reference",
        [],
        "CREATE TEMP TABLE b AS " + BASELINE_SQL.format(path=path),
    )

    print("\nB. the main query alone over variants of the events relation:")
    v0 = run(
        "rfmflow valid view, unsorted (no ORDER BY customer_id)",
        rfm_setup,
        f"CREATE TEMP TABLE scored AS {main_unsorted}",
    )
    v1 = run(
        "  ... events view without the `_reason IS NULL` filter (no per-row validation)",
        [f"CREATE TEMP VIEW raw AS {raw}", f"CREATE TEMP VIEW valid AS {events}"],
        f"CREATE TEMP TABLE scored AS {main_unsorted}",
    )
    v2 = run(
        "  ... and without file_row_number (no _line)",
        [f"CREATE TEMP VIEW raw AS {raw_no_line}", f"CREATE TEMP VIEW valid AS {events}"],
        f"CREATE TEMP TABLE scored AS {main_unsorted}",
    )
    v3 = run(
        "  ... lean typed view: no TRIM/NULLIF on the id, amount_minor = CAST(amount*100 AS BIGINT)",
        [f"CREATE TEMP VIEW raw AS {raw_no_line}", f"CREATE TEMP VIEW valid AS {lean_events}"],
        f"CREATE TEMP TABLE scored AS {main_unsorted}",
    )
    v4 = run(
        "  ... lean typed view + a cheap typed _reason filter (IS NULL checks only)",
        [
            f"CREATE TEMP VIEW raw AS {raw_no_line}",
            f"CREATE TEMP VIEW events AS {lean_events}",
            "CREATE TEMP VIEW valid AS SELECT * FROM events WHERE _reason IS NULL",
        ],
        f"CREATE TEMP TABLE scored AS {main_unsorted}",
    )
    v5 = run(
        "  ... v4 + file_row_number kept (as rfmflow's raw view)",
        [
            f"CREATE TEMP VIEW raw AS {raw}",
            f"CREATE TEMP VIEW events AS {lean_events}",
            "CREATE TEMP VIEW valid AS SELECT * FROM events WHERE _reason IS NULL",
        ],
        f"CREATE TEMP TABLE scored AS {main_unsorted}",
    )
    v6 = run(
        "  ... lean typed view but rfmflow's customer_id NULLIF(TRIM(CAST(... AS VARCHAR)), '')",
        [f"CREATE TEMP VIEW raw AS {raw_no_line}", f"CREATE TEMP VIEW valid AS {lean(customer=rfm_id)}"],
        f"CREATE TEMP TABLE scored AS {main_unsorted}",
    )
    v7 = run(
        "  ... lean typed view but rfmflow's amount "
        "CAST(ROUND(TRY_CAST(amount AS DECIMAL(38,6)) * 100) AS BIGINT)",
        [f"CREATE TEMP VIEW raw AS {raw_no_line}", f"CREATE TEMP VIEW valid AS {lean(amount=rfm_amount)}"],
        f"CREATE TEMP TABLE scored AS {main_unsorted}",
    )
    print("\nC. attribution (main query):")
    print(f"  ORDER BY customer_id           {a_main - v0:+6.2f}s")
    print(f"  per-row _reason validation     {v0 - v1:+6.2f}s")
    print(f"  file_row_number (_line)        {v1 - v2:+6.2f}s   (with the cheap filter: {v5 - v4:+.2f}s)")
    print(
        f"  id TRIM + DECIMAL(38,6) amount {v2 - v3:+6.2f}s   (id TRIM alone {v6 - v3:+.2f}s, "
        f"DECIMAL(38,6) amount alone {v7 - v3:+.2f}s)"
    )
    print(f"  cheap typed _reason filter     {v4 - v3:+6.2f}s")
    print(f"  lean main query vs baseline    {v3 / base:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

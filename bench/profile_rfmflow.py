"""Where does ``rfmflow.score`` spend its time? Times every DuckDB statement it issues.

    python bench/profile_rfmflow.py bench/data/tx_10m.parquet [--explain]

Runs ``score_with_duckdb`` with a connection proxy that times each ``execute`` / ``sql``
(relations are timed when they are materialised) and prints the statements sorted by
time, plus the Python time between them. ``--explain`` also prints DuckDB's
EXPLAIN ANALYZE of the expensive statements on a fresh connection.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

import duckdb

from rfmflow.api import _check_timezone
from rfmflow.engines import duckdb_engine
from rfmflow.engines.duckdb_engine import ScoreOptions
from rfmflow.schemes import load_scheme

LOG: list[tuple[str, float, str]] = []  # (kind, seconds, sql)
SETUP: list[str] = []  # statements creating views/tables, to replay for EXPLAIN


def _short(sql: str, width: int = 150) -> str:
    s = re.sub(r"\s+", " ", sql).strip()
    return s if len(s) <= width else s[: width - 3] + "..."


class TimedRelation:
    def __init__(self, rel: Any, sql: str) -> None:
        self._rel, self._sql = rel, sql

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._rel, name)
        if not callable(attr):
            return attr

        def call(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            out = attr(*a, **k)
            LOG.append((f"sql().{name}", time.perf_counter() - t0, self._sql))
            return out

        return call


class TimedConnection:
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._last = time.perf_counter()

    def _gap(self) -> None:
        gap = time.perf_counter() - self._last
        if gap > 0.001:
            LOG.append(("python", gap, "(Python between statements)"))

    def execute(self, sql: str, *a: Any, **k: Any) -> Any:
        self._gap()
        t0 = time.perf_counter()
        res = self._con.execute(sql, *a, **k)
        # fetch inside the timing: execute() runs the query, fetch is cheap for small results
        wrapped = _Fetched(res)
        LOG.append(("execute", time.perf_counter() - t0, sql))
        if re.match(r"\s*CREATE", sql, re.I):
            SETUP.append(sql)
        self._last = time.perf_counter()
        return wrapped

    def sql(self, sql: str, *a: Any, **k: Any) -> Any:
        self._gap()
        t0 = time.perf_counter()
        rel = self._con.sql(sql, *a, **k)
        LOG.append(("sql()", time.perf_counter() - t0, sql))
        self._last = time.perf_counter()
        return TimedRelation(rel, sql)

    def executemany(self, sql: str, *a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        res = self._con.executemany(sql, *a, **k)
        LOG.append(("executemany", time.perf_counter() - t0, sql))
        return res

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


class _Fetched:
    def __init__(self, cursor: Any) -> None:
        self._c = cursor

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._c, name)
        if name.startswith("fetch"):

            def call(*a: Any, **k: Any) -> Any:
                t0 = time.perf_counter()
                out = attr(*a, **k)
                LOG.append((f"  .{name}", time.perf_counter() - t0, ""))
                return out

            return call
        return attr


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("path")
    p.add_argument("--explain", action="store_true")
    p.add_argument("--top", type=int, default=12)
    args = p.parse_args()

    scheme = load_scheme("rfm11")
    options = ScoreOptions(timezone=_check_timezone("UTC"))
    t0 = time.perf_counter()
    duckdb_engine.score_with_duckdb(
        args.path, scheme, options, connect=lambda: TimedConnection(duckdb.connect())
    )
    total = time.perf_counter() - t0

    print(f"rfmflow.score({Path(args.path).name}): {total:.2f}s total, {len(LOG)} timed calls\n")
    print("in order:")
    for kind, secs, sql in LOG:
        if secs >= 0.005:
            print(f"  {secs:7.3f}s  {kind:<14} {_short(sql)}")
    accounted = sum(s for k, s, _ in LOG)
    print(f"\n  accounted {accounted:.2f}s of {total:.2f}s")
    if args.explain:
        con = duckdb.connect()
        for stmt in SETUP:
            if "TEMP TABLE scored" in stmt:
                continue
            con.execute(stmt)
        con.execute("PRAGMA enable_profiling = 'query_tree'")
        for kind, secs, sql in sorted(LOG, key=lambda r: -r[1])[:4]:
            if not sql or kind == "python":
                continue
            body = re.sub(r"^\s*CREATE TEMP TABLE \w+ AS ", "", sql)
            print(f"\n==== EXPLAIN ANALYZE ({secs:.2f}s in the run): {_short(body, 200)}")
            for row in con.execute("EXPLAIN ANALYZE " + body).fetchall():
                print(row[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark ``rfmflow score`` on Parquet against a hand-written DuckDB query, pandas and a
lifetimes-style summary.

    python bench/bench_score.py                      # 1m and 10m rows
    python bench/bench_score.py --rows 1m,10m,50m    # 50m too (generated on first use)
    python bench/bench_score.py --rows 50m --skip pandas,lifetimes --check

Every approach runs in its own fresh subprocess (``--worker``), so the peak RSS printed is
that approach's alone (``ru_maxrss`` of the worker, which includes the Python interpreter and
its imports; the "idle" column is the RSS right after the imports). Times are measured
inside the worker around the work only (imports excluded), except ``rfmflow CLI``, which
is the wall clock of the whole ``rfmflow score FILE -o out.parquet`` command.

Approaches:

``duckdb baseline``       one hand-written DuckDB query (fresh connection, ``read_parquet``,
                          per-customer R/F/M, three tie-safe quintile scores, the rfm11
                          11-segment CASE) fetched to an Arrow table. The reference.
``duckdb baseline+sort``  the same query with ``ORDER BY customer_id`` (rfmflow sorts its output).
``rfmflow API``           ``rfmflow.score(path, scheme="rfm11")``.
``rfmflow CLI``           ``rfmflow score FILE -o out.parquet`` in a subprocess (wall clock).
``pandas``                pyarrow read + groupby aggregation + ``rank(method="min")`` scores + segments.
``lifetimes summary``     pandas port of lifetimes' ``summary_data_from_transaction_data``
                          (frequency = repeat purchase days, recency, T, mean monetary value).

Targets (issue): rfmflow API <= 1.2x the baseline at 10M and 50M rows; rfmflow peak RSS
< 1.5 GB at 50M rows. The script prints PASS/FAIL and exits 0 unless ``--check`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from generate import default_path, generate, parse_rows, size_label  # noqa: E402

RATIO_TARGET = 1.2
RSS_TARGET_MB = 1536  # 1.5 GiB
TARGET_SIZES = (10_000_000, 50_000_000)  # where the ratio target applies
RSS_TARGET_SIZE = 50_000_000

# --------------------------------------------------------------------------------------
# The hand-written query: what an analyst would write for rfm11 directly on the file.
# Same definitions as rfmflow: a purchase is a row with amount >= 0 (negative = refund);
# as_of = the day after the last event; recency = as_of - last purchase day (NULL if the
# customer only has refunds); frequency = purchases; monetary = net sum (refunds included);
# score = 1 + 5 * (RANK() - 1) // n with rank 1 the worst (oldest recency, NULLs first).
# One scan: as_of comes from a window over the per-customer maxima, not a second pass.
# --------------------------------------------------------------------------------------
BASELINE_SQL = """
WITH agg AS (
    SELECT customer_id,
           max(CASE WHEN amount >= 0 THEN CAST(order_date AS DATE) END) AS last_purchase,
           max(CAST(order_date AS DATE)) AS last_event,
           min(CAST(order_date AS DATE)) AS first_event,
           count(CASE WHEN amount >= 0 THEN 1 END) AS frequency,
           sum(amount) AS monetary
    FROM read_parquet('{path}')
    GROUP BY customer_id
),
metrics AS (
    SELECT customer_id, frequency, monetary,
           (max(last_event) OVER () + 1) - last_purchase AS recency_days,
           (max(last_event) OVER () + 1) - first_event AS tenure_days
    FROM agg
),
ranked AS (
    SELECT *,
           1 + (5 * (rank() OVER (ORDER BY recency_days DESC NULLS FIRST) - 1)) // count(*) OVER ()
               AS r_score,
           1 + (5 * (rank() OVER (ORDER BY frequency) - 1)) // count(*) OVER () AS f_score,
           1 + (5 * (rank() OVER (ORDER BY monetary) - 1)) // count(*) OVER () AS m_score
    FROM metrics
)
SELECT customer_id, recency_days, frequency, monetary,
       CAST(r_score AS INTEGER) AS r_score, CAST(f_score AS INTEGER) AS f_score,
       CAST(m_score AS INTEGER) AS m_score,
       r_score::VARCHAR || f_score::VARCHAR || m_score::VARCHAR AS rfm,
       CASE
           WHEN r_score = 5 AND f_score >= 4 THEN 'Champions'
           WHEN r_score >= 3 AND f_score >= 4 THEN 'Loyal'
           WHEN r_score <= 2 AND f_score = 5 THEN 'Can''t Lose Them'
           WHEN r_score <= 2 AND f_score >= 3 THEN 'At Risk'
           WHEN r_score >= 4 AND f_score IN (2, 3) THEN 'Potential Loyalists'
           WHEN r_score = 5 AND f_score = 1 THEN 'New'
           WHEN r_score = 4 AND f_score = 1 THEN 'Promising'
           WHEN r_score = 3 AND f_score = 3 THEN 'Need Attention'
           WHEN r_score = 3 AND f_score <= 2 THEN 'About to Sleep'
           WHEN r_score = 1 AND f_score = 1 THEN 'Lost'
           WHEN r_score <= 2 THEN 'Hibernating'
       END AS segment,
       tenure_days
FROM ranked
"""

SEGMENT_RULES = [  # rfm11, in order (for pandas)
    ("Champions", lambda r, f: (r == 5) & (f >= 4)),
    ("Loyal", lambda r, f: (r >= 3) & (f >= 4)),
    ("Can't Lose Them", lambda r, f: (r <= 2) & (f == 5)),
    ("At Risk", lambda r, f: (r <= 2) & (f >= 3)),
    ("Potential Loyalists", lambda r, f: (r >= 4) & ((f == 2) | (f == 3))),
    ("New", lambda r, f: (r == 5) & (f == 1)),
    ("Promising", lambda r, f: (r == 4) & (f == 1)),
    ("Need Attention", lambda r, f: (r == 3) & (f == 3)),
    ("About to Sleep", lambda r, f: (r == 3) & (f <= 2)),
    ("Lost", lambda r, f: (r == 1) & (f == 1)),
    ("Hibernating", lambda r, f: r <= 2),
]


def _sql_path(path: str) -> str:
    return path.replace("'", "''")


# --------------------------------------------------------------------------------------
# Workers: each returns (seconds, result-or-None); the result is dumped for the sanity check.
# --------------------------------------------------------------------------------------
def work_baseline(path: str, *, sort: bool = False):
    import duckdb

    sql = BASELINE_SQL.format(path=_sql_path(path)) + (" ORDER BY customer_id" if sort else "")
    t0 = time.perf_counter()
    con = duckdb.connect()
    table = con.sql(sql).to_arrow_table()
    con.close()
    return time.perf_counter() - t0, table


def work_rfmflow(path: str):
    import rfmflow

    t0 = time.perf_counter()
    result = rfmflow.score(path, scheme="rfm11")
    return time.perf_counter() - t0, result.customers


def _read_frame(path: str):
    """The file as pandas, amount as float64 (a decimal column would become Python objects)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["customer_id", "order_date", "amount"])
    i = table.schema.get_field_index("amount")
    if not pa.types.is_floating(table.schema.field(i).type):
        table = table.set_column(i, "amount", table.column(i).cast(pa.float64()))
    return table.to_pandas()


def work_pandas(path: str):
    import numpy as np
    import pandas as pd

    t0 = time.perf_counter()
    df = _read_frame(path)
    df["day"] = df["order_date"].dt.floor("D")
    purchase = df["amount"] >= 0
    df["purchase_day"] = df["day"].where(purchase)
    df["is_purchase"] = purchase
    df["cents"] = (df["amount"] * 100).round().astype("int64")  # exact money sums
    as_of = df["day"].max() + pd.Timedelta(days=1)
    agg = df.groupby("customer_id", sort=False).agg(
        last_purchase=("purchase_day", "max"),
        first_event=("day", "min"),
        frequency=("is_purchase", "sum"),
        monetary_cents=("cents", "sum"),
    )
    del df
    n = len(agg)
    out = pd.DataFrame(index=agg.index)
    out["recency_days"] = (as_of - agg["last_purchase"]).dt.days
    out["frequency"] = agg["frequency"].astype("int64")
    out["monetary"] = agg["monetary_cents"] / 100
    out["tenure_days"] = (as_of - agg["first_event"]).dt.days

    def score(rank: pd.Series) -> np.ndarray:
        return (1 + (5 * (rank.to_numpy(dtype="int64") - 1)) // n).astype("int32")

    out["r_score"] = score(out["recency_days"].rank(method="min", ascending=False, na_option="top"))
    out["f_score"] = score(out["frequency"].rank(method="min"))
    out["m_score"] = score(agg["monetary_cents"].rank(method="min"))
    r, f = out["r_score"].to_numpy(), out["f_score"].to_numpy()
    out["segment"] = np.select(
        [rule(r, f) for _, rule in SEGMENT_RULES], [name for name, _ in SEGMENT_RULES], None
    )
    out["rfm"] = out["r_score"].astype(str) + out["f_score"].astype(str) + out["m_score"].astype(str)
    out = out.reset_index()
    return time.perf_counter() - t0, out


def work_lifetimes(path: str):
    """lifetimes.utils.summary_data_from_transaction_data(tx, "customer_id", "order_date",
    monetary_value_col="amount", freq="D") re-implemented step by step (lifetimes 0.11)."""
    import numpy as np
    import pandas as pd

    t0 = time.perf_counter()
    tx = _read_frame(path)
    customer_id_col, datetime_col, monetary_value_col, freq = "customer_id", "order_date", "amount", "D"
    observation_period_end = tx[datetime_col].max().to_period(freq).to_timestamp()
    # _find_first_transactions
    select_columns = [customer_id_col, datetime_col, monetary_value_col]
    tx = tx[select_columns].sort_values(select_columns).copy()
    tx = tx.set_index(datetime_col).to_period(freq).to_timestamp()
    tx = tx.loc[(tx.index <= observation_period_end)].reset_index()
    period_groupby = tx.groupby([datetime_col, customer_id_col], sort=False, as_index=False)
    period_transactions = period_groupby.sum()
    del tx, period_groupby
    period_transactions["first"] = False
    first_transactions = period_transactions.groupby(customer_id_col, sort=True, as_index=False).head(1).index
    period_transactions.loc[first_transactions, "first"] = True
    period_transactions[datetime_col] = pd.Index(period_transactions[datetime_col]).to_period(freq)
    repeated = period_transactions[[*select_columns, "first"]]
    # summary_data_from_transaction_data
    repeated[datetime_col] = pd.Index(repeated[datetime_col]).to_timestamp()
    customers = repeated.groupby(customer_id_col, sort=False)[datetime_col].agg(["min", "max", "count"])
    customers["frequency"] = customers["count"] - 1
    customers["T"] = (observation_period_end - customers["min"]) / np.timedelta64(1, freq)
    customers["recency"] = (customers["max"] - customers["min"]) / np.timedelta64(1, freq)
    first_purchases = repeated[repeated["first"]].index
    repeated.loc[first_purchases, monetary_value_col] = np.nan
    customers["monetary_value"] = repeated.groupby(customer_id_col)[monetary_value_col].mean().fillna(0)
    summary = customers[["frequency", "recency", "T", "monetary_value"]].astype(float)
    return time.perf_counter() - t0, summary.reset_index()


WORKERS = {
    "baseline": lambda p: work_baseline(p),
    "baseline_sorted": lambda p: work_baseline(p, sort=True),
    "rfmflow": work_rfmflow,
    "pandas": work_pandas,
    "lifetimes": work_lifetimes,
}
LABELS = {
    "baseline": "duckdb baseline",
    "baseline_sorted": "duckdb baseline+sort",
    "rfmflow": "rfmflow API",
    "cli": "rfmflow CLI (-o .parquet)",
    "pandas": "pandas",
    "lifetimes": "lifetimes summary",
}
FAST = ("baseline", "baseline_sorted", "rfmflow", "cli")
ALL = ("baseline", "baseline_sorted", "rfmflow", "cli", "pandas", "lifetimes")


def _load() -> str:
    with open("/proc/loadavg") as fh:
        return fh.read().split()[0]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_worker(name: str, path: str, dump: str | None) -> None:
    # import the heavy modules first so "idle" is the interpreter + libraries
    if name in ("baseline", "baseline_sorted"):
        import duckdb  # noqa: F401
        import pyarrow
    elif name == "rfmflow":
        import rfmflow  # noqa: F401
    else:
        import pandas  # noqa: F401
        import pyarrow.parquet
    idle = _current_rss_mb()
    before = resource.getrusage(resource.RUSAGE_SELF)
    seconds, result = WORKERS[name](path)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    peak = _rss_mb()  # before the (untimed) dump below
    rows = len(result) if result is not None else 0
    if dump and result is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = result if isinstance(result, pa.Table) else pa.Table.from_pandas(result, preserve_index=False)
        pq.write_table(table, dump)
    print(json.dumps({"seconds": seconds, "peak_mb": peak, "idle_mb": idle, "customers": rows, "cpu": cpu}))


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------
def _spawn(cmd: list[str]) -> tuple[int, str, str, float, float, float]:
    """Run ``cmd``; return (exit code, stdout, stderr, wall s, peak RSS MiB, CPU s) of that child."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=HERE.parent)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        cpu = usage.ru_utime + usage.ru_stime
        return proc.returncode, out.read().decode(), err.read().decode(), wall, usage.ru_maxrss / 1024, cpu


def measure(name: str, path: Path, dump: Path | None) -> dict:
    if name == "cli":
        exe = Path(sys.executable).with_name("rfmflow")
        target = dump or Path(tempfile.gettempdir()) / "rfmflow_bench_cli.parquet"
        code, out, err, wall, peak, cpu = _spawn([str(exe), "score", str(path), "-o", str(target)])
        if code != 0:
            raise RuntimeError(f"rfmflow CLI failed ({code}): {err[-2000:]}")
        if dump is None:
            target.unlink(missing_ok=True)
        return {"seconds": wall, "peak_mb": peak, "idle_mb": None, "customers": None, "cpu": cpu}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--path", str(path)]
    if dump is not None:
        cmd += ["--dump", str(dump)]
    code, out, err, _, peak, _ = _spawn(cmd)
    if code != 0:
        raise RuntimeError(f"worker {name} failed ({code}): {err[-3000:]}")
    data = json.loads(out.strip().splitlines()[-1])
    data["peak_mb"] = max(data["peak_mb"], peak)
    return data


def sanity_check(dumps: dict[str, Path]) -> list[str]:
    """Compare per-customer outputs with the baseline; return report lines."""
    import duckdb

    lines: list[str] = []
    base = dumps.get("baseline")
    if base is None:
        return ["sanity check skipped (no baseline output)"]
    con = duckdb.connect()
    n_base = con.execute(f"SELECT count(*) FROM read_parquet('{_sql_path(str(base))}')").fetchone()[0]
    for name in ("rfmflow", "cli", "pandas", "baseline_sorted"):
        other = dumps.get(name)
        if other is None or not other.exists():
            continue
        n_other, missing, rfm_diff, score_diff, seg_diff = con.execute(
            f"""
            WITH b AS (SELECT * FROM read_parquet('{_sql_path(str(base))}')),
                 o AS (SELECT * FROM read_parquet('{_sql_path(str(other))}'))
            SELECT (SELECT count(*) FROM o),
                   count(*) FILTER (WHERE o.customer_id IS NULL),
                   count(*) FILTER (WHERE o.recency_days IS DISTINCT FROM b.recency_days
                                       OR o.frequency IS DISTINCT FROM b.frequency
                                       OR round(CAST(o.monetary AS DOUBLE), 2) IS DISTINCT FROM
                                          round(CAST(b.monetary AS DOUBLE), 2)
                                       OR o.tenure_days IS DISTINCT FROM b.tenure_days),
                   count(*) FILTER (WHERE o.r_score IS DISTINCT FROM b.r_score
                                       OR o.f_score IS DISTINCT FROM b.f_score
                                       OR o.m_score IS DISTINCT FROM b.m_score
                                       OR o.rfm IS DISTINCT FROM b.rfm),
                   count(*) FILTER (WHERE o.segment IS DISTINCT FROM b.segment)
            FROM b LEFT JOIN o USING (customer_id)
            """
        ).fetchone()
        ok = n_other == n_base and missing == rfm_diff == score_diff == seg_diff == 0
        lines.append(
            f"  {'OK  ' if ok else 'DIFF'} {LABELS[name]:<26} vs baseline: {n_other:,}/{n_base:,} customers, "
            f"{missing} missing, R/F/M/tenure differ: {rfm_diff}, scores differ: {score_diff}, "
            f"segment differs: {seg_diff}"
        )
        if not ok:
            sample = con.execute(
                f"""SELECT b.customer_id, b.recency_days, o.recency_days, b.frequency, o.frequency,
                           b.monetary, o.monetary, b.rfm, o.rfm
                    FROM read_parquet('{_sql_path(str(base))}') b
                    JOIN read_parquet('{_sql_path(str(other))}') o USING (customer_id)
                    WHERE o.rfm IS DISTINCT FROM b.rfm OR o.frequency IS DISTINCT FROM b.frequency
                       OR o.recency_days IS DISTINCT FROM b.recency_days LIMIT 5"""
            ).fetchall()
            for row in sample:
                lines.append(f"       e.g. {row}")
    # a printed sample: five customers side by side (baseline | rfmflow)
    if "rfmflow" in dumps:
        rows = con.execute(
            f"""SELECT b.customer_id, b.recency_days, o.recency_days, b.frequency, o.frequency,
                       b.monetary, o.monetary, b.rfm, o.rfm, b.segment, o.segment
                FROM read_parquet('{_sql_path(str(base))}') b
                JOIN read_parquet('{_sql_path(str(dumps["rfmflow"]))}') o USING (customer_id)
                USING SAMPLE 5 ROWS (reservoir, 7)"""
        ).fetchall()
        lines.append("  sample (customer: recency b/r, frequency b/r, monetary b/r, rfm b/r, segment b/r):")
        for r in rows:
            lines.append(
                f"    {r[0]}: {r[1]}/{r[2]}, {r[3]}/{r[4]}, {r[5]}/{r[6]}, {r[7]}/{r[8]}, {r[9]}/{r[10]}"
            )
    con.close()
    return lines


def bench_size(rows: int, approaches: list[str], repeat: int | None, out: list[str]) -> dict:
    path = default_path(rows)
    if not path.exists():
        print(f"generating {path} ...", file=sys.stderr)
        generate(rows, path)
    reps = repeat if repeat is not None else (3 if rows <= 10_000_000 else 1)
    tmp = Path(tempfile.mkdtemp(prefix=f"rfmbench_{size_label(rows)}_"))
    results: dict[str, dict] = {}
    dumps: dict[str, Path] = {}
    try:
        # fast approaches interleaved (b, r, c, b, r, c, ...) so drift hits all alike
        fast = [a for a in approaches if a in FAST]
        slow = [a for a in approaches if a not in FAST]
        for i in range(reps):
            for name in fast:
                dump = tmp / f"{name}.parquet" if i == 0 else None
                res = measure(name, path, dump)
                print(
                    f"  {size_label(rows)} {LABELS[name]:<26} run {i + 1}: {res['seconds']:.2f}s "
                    f"(cpu {res['cpu']:.2f}s) peak {res['peak_mb']:.0f} MB, load {_load()}",
                    file=sys.stderr,
                )
                prev = results.setdefault(
                    name, {"runs": [], "cpus": [], "peak_mb": 0.0, "idle_mb": res["idle_mb"]}
                )
                prev["runs"].append(res["seconds"])
                prev["cpus"].append(res["cpu"])
                prev["peak_mb"] = max(prev["peak_mb"], res["peak_mb"])
                if dump is not None:
                    dumps[name] = dump
        for name in slow:
            dump = tmp / f"{name}.parquet"
            res = measure(name, path, dump)
            print(
                f"  {size_label(rows)} {LABELS[name]:<26} run 1: {res['seconds']:.2f}s "
                f"(cpu {res['cpu']:.2f}s) peak {res['peak_mb']:.0f} MB, load {_load()}",
                file=sys.stderr,
            )
            results[name] = {
                "runs": [res["seconds"]],
                "cpus": [res["cpu"]],
                "peak_mb": res["peak_mb"],
                "idle_mb": res["idle_mb"],
            }
            dumps[name] = dump
        check_lines = sanity_check(dumps)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    base = min(results["baseline"]["runs"]) if "baseline" in results else None
    title = f"{rows:,} rows ({path.name}, {path.stat().st_size / 2**20:,.0f} MiB)"
    out.append(title)
    out.append(
        f"  {'approach':<26} {'seconds':>8} {'x baseline':>11} {'CPU s':>7} {'peak RSS MB':>12} "
        f"{'idle MB':>8}  runs (s)"
    )
    for name in approaches:
        if name not in results:
            continue
        r = results[name]
        best = min(r["runs"])
        ratio = f"{best / base:.2f}x" if base else "-"
        idle = f"{r['idle_mb']:.0f}" if r["idle_mb"] is not None else "-"
        runs = ", ".join(f"{s:.2f}" for s in r["runs"])
        cpu = r["cpus"][r["runs"].index(best)]
        out.append(
            f"  {LABELS[name]:<26} {best:8.2f} {ratio:>11} {cpu:7.2f} {r['peak_mb']:12.0f} {idle:>8}  {runs}"
        )
    out.append("  sanity check (per customer, full join on customer_id):")
    out.extend(check_lines)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="rfmflow vs DuckDB / pandas / lifetimes-style benchmark")
    p.add_argument("--rows", default="1m,10m", help="comma-separated sizes: 1m,10m,50m (default 1m,10m)")
    p.add_argument("--only", help=f"comma-separated approaches (default all): {','.join(ALL)}")
    p.add_argument("--skip", default="", help="comma-separated approaches to skip, e.g. pandas,lifetimes")
    p.add_argument(
        "--skip-slow-at",
        type=parse_rows,
        default=None,
        help="skip pandas and lifetimes from this size up (e.g. 50m)",
    )
    p.add_argument(
        "--repeat", type=int, help="runs of the fast approaches (default 3 up to 10M rows, else 1)"
    )
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--dump", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        run_worker(args.worker, args.path, args.dump)
        return 0

    sizes = [parse_rows(s) for s in args.rows.split(",") if s.strip()]
    chosen = [a.strip() for a in args.only.split(",")] if args.only else list(ALL)
    skip = {a.strip() for a in args.skip.split(",") if a.strip()}
    unknown = (set(chosen) | skip) - set(ALL)
    if unknown:
        p.error(f"unknown approach(es): {', '.join(sorted(unknown))}")
    if "baseline" not in chosen:
        chosen.insert(0, "baseline")
    out: list[str] = []
    verdicts: list[tuple[bool, str]] = []
    import duckdb

    t_all = time.perf_counter()
    for rows in sizes:
        approaches = [a for a in chosen if a not in skip]
        if args.skip_slow_at and rows >= args.skip_slow_at:
            approaches = [a for a in approaches if a not in ("pandas", "lifetimes")]
        results = bench_size(rows, approaches, args.repeat, out)
        base = min(results["baseline"]["runs"])
        if "rfmflow" in results:
            best = min(results["rfmflow"]["runs"])
            ratio = best / base
            if rows in TARGET_SIZES:
                verdicts.append(
                    (
                        ratio <= RATIO_TARGET,
                        f"{size_label(rows)}: rfmflow API {best:.2f}s = {ratio:.2f}x "
                        f"baseline {base:.2f}s (target <= {RATIO_TARGET}x)",
                    )
                )
                if "baseline_sorted" in results:
                    sb = min(results["baseline_sorted"]["runs"])
                    out.append(f"  (info) rfmflow vs baseline+sort: {best / sb:.2f}x")
            if rows == RSS_TARGET_SIZE:
                peak = results["rfmflow"]["peak_mb"]
                verdicts.append(
                    (
                        peak < RSS_TARGET_MB,
                        f"{size_label(rows)}: rfmflow API peak RSS {peak:,.0f} MB "
                        f"(target < {RSS_TARGET_MB} MB)",
                    )
                )
        out.append("")
    print()
    print(
        f"rfmflow benchmark (duckdb {duckdb.__version__}, python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs); best-of-N seconds; ratio vs 'duckdb baseline' of the same run"
    )
    print()
    print("\n".join(out))
    if not verdicts:
        print("targets: not evaluated (they apply at 10m and 50m rows)")
    for ok, text in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    print(f"(total {time.perf_counter() - t_all:.0f}s)")
    failed = any(not ok for ok, _ in verdicts)
    return 1 if (failed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())

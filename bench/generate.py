"""Generate realistic synthetic transactions for the rfmflow benchmarks.

    python bench/generate.py --rows 10_000_000 --out bench/data/tx_10m.parquet

Columns: ``customer_id`` (string), ``order_date`` (timestamp, second resolution),
``amount`` (decimal(18,2) by default, ``--amount-type double`` for a float column).

Shape (deterministic for a given ``--seed`` and ``--rows``):

- ``rows / 20`` customers (``--rows-per-customer``), so 50M rows -> 2.5M customers;
- about half the customers buy exactly once; the other half have ``2 + lognormal`` purchases
  scaled so the total is exactly ``--rows`` (a long tail: the biggest buyers have thousands);
- each customer has an acquisition day over the ~2 years 2023-01-01..2024-12-31 (more
  acquisitions later, like a growing shop) and an active span after it (many churn), and
  their purchases fall inside that span at random times of day;
- amounts are lognormal around a per-customer mean (median ~30), rounded to cents;
  about 2% of repeat customers' rows are refunds (negative amounts);
- rows are in random order (customers interleaved, like an export of an order table).

Memory: one int32 per row (the shuffled customer index, 200 MB at 50M) plus a chunk of
``--chunk-rows`` rows being built; 50M rows stay well under 1 GB.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "data"
START = np.datetime64("2023-01-01T00:00:00", "s")
SPAN_DAYS = 731  # 2023-01-01 .. 2024-12-31 inclusive


def parse_rows(text: str) -> int:
    """``10_000_000``, ``10000000``, ``10m``, ``1.5M``, ``500k`` -> int."""
    t = text.strip().lower().replace("_", "").replace(",", "")
    mult = 1
    if t.endswith("m"):
        mult, t = 1_000_000, t[:-1]
    elif t.endswith("k"):
        mult, t = 1_000, t[:-1]
    value = float(t) * mult
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"bad row count {text!r}")
    return int(value)


def size_label(rows: int) -> str:
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}m"
    if rows % 1_000 == 0:
        return f"{rows // 1_000}k"
    return str(rows)


def default_path(rows: int, amount_type: str = "decimal") -> Path:
    suffix = "" if amount_type == "decimal" else f"_{amount_type}"
    return DATA_DIR / f"tx_{size_label(rows)}{suffix}.parquet"


def purchase_counts(
    rng: np.random.Generator, rows: int, customers: int, one_timer_share: float
) -> np.ndarray:
    """Per-customer row counts summing exactly to ``rows``."""
    counts = np.ones(customers, dtype=np.int64)
    repeaters = rng.random(customers) >= one_timer_share
    n_rep = int(repeaters.sum())
    extra_total = rows - customers - n_rep  # rows beyond 1 per customer and 1 more per repeater
    if n_rep == 0 or extra_total < 0:
        # tiny or very dense data sets: spread evenly
        counts[:] = rows // customers
        counts[: rows % customers] += 1
        return counts
    counts[repeaters] = 2
    weights = rng.lognormal(mean=0.0, sigma=1.1, size=n_rep)
    extra = np.floor(weights / weights.sum() * extra_total).astype(np.int64)
    left = extra_total - int(extra.sum())
    # hand the rounding remainder to random repeaters (one each)
    extra[rng.choice(n_rep, size=left, replace=False)] += 1
    counts[repeaters] += extra
    assert int(counts.sum()) == rows
    return counts


def customer_ids(rng: np.random.Generator, customers: int) -> pa.Array:
    """Ids like ``C004821937``, unique, in an order unrelated to purchase counts."""
    numbers = rng.choice(max(10 * customers, 1000), size=customers, replace=False)
    text = pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width=9, padding="0")
    return pc.binary_join_element_wise(pa.scalar("C"), text, "")


def decimal_array(cents: np.ndarray) -> pa.Array:
    """int64 minor units -> decimal128(18, 2) without going through Python objects."""
    cents = np.ascontiguousarray(cents, dtype=np.int64)
    words = np.empty((cents.size, 2), dtype=np.int64)
    words[:, 0] = cents  # little-endian int128: low word, then the sign extension
    words[:, 1] = cents >> 63
    return pa.Array.from_buffers(pa.decimal128(18, 2), cents.size, [None, pa.py_buffer(words)])


def generate(
    rows: int,
    out: Path,
    *,
    seed: int = 42,
    rows_per_customer: float = 20.0,
    one_timer_share: float = 0.5,
    refund_rate: float = 0.02,
    amount_type: str = "decimal",
    chunk_rows: int = 2_000_000,
    row_group_size: int = 1_000_000,
    quiet: bool = False,
) -> Path:
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    customers = max(1, round(rows / rows_per_customer))
    counts = purchase_counts(rng, rows, customers, one_timer_share)

    # Per-customer attributes (a few arrays of `customers` elements).
    ids = customer_ids(rng, customers)
    # acquisition day: density growing ~3x over the period (sqrt of a uniform)
    first_day = np.floor(np.sqrt(rng.random(customers)) * SPAN_DAYS).astype(np.int64)
    first_day = np.minimum(first_day, SPAN_DAYS - 1)
    # active span: exponential (mean ~9 months), longer for frequent buyers, clipped to the period
    span = rng.exponential(270.0, customers) * (1.0 + np.log1p(counts - 1) / 3.0)
    span = np.where(counts == 1, 0.0, span)
    span = np.minimum(span, SPAN_DAYS - 1 - first_day)
    log_mean = rng.normal(3.4, 0.5, customers)  # per-customer basket size (median ~30)
    can_refund = counts > 1

    # Row -> customer: every customer repeated `count` times, shuffled in place (int32, 4 B/row).
    owner = np.repeat(np.arange(customers, dtype=np.int32), counts)
    del counts
    rng.shuffle(owner)

    schema = pa.schema(
        [
            ("customer_id", pa.string()),
            ("order_date", pa.timestamp("s")),
            ("amount", pa.decimal128(18, 2) if amount_type == "decimal" else pa.float64()),
        ]
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with pq.ParquetWriter(tmp, schema, compression="snappy") as writer:
        for start in range(0, rows, chunk_rows):
            c = owner[start : start + chunk_rows]
            n = c.size
            # the first row of a one-time buyer is its acquisition day; others fall in the span
            day = first_day[c] + np.floor(rng.random(n) * (span[c] + 1.0)).astype(np.int64)
            seconds = day * 86_400 + rng.integers(6 * 3600, 24 * 3600, n)
            dates = pa.array(START + seconds.astype("timedelta64[s]"), type=pa.timestamp("s"))
            value = np.exp(log_mean[c] + 0.6 * rng.standard_normal(n))
            cents = np.maximum(np.round(value * 100.0), 50).astype(np.int64)
            refund = can_refund[c] & (rng.random(n) < refund_rate)
            cents = np.where(refund, -cents, cents)
            amount = decimal_array(cents) if amount_type == "decimal" else pa.array(cents / 100.0)
            table = pa.table([ids.take(pa.array(c)), dates, amount], schema=schema)
            writer.write_table(table, row_group_size=row_group_size)
            if not quiet:
                print(f"\r  {start + n:,}/{rows:,} rows", end="", file=sys.stderr, flush=True)
    tmp.replace(out)
    if not quiet:
        size = out.stat().st_size / 2**20
        print(
            f"\rwrote {rows:,} rows, {customers:,} customers to {out} ({size:,.0f} MiB) "
            f"in {time.perf_counter() - t0:.1f}s",
            file=sys.stderr,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=parse_rows, required=True, help="rows to write, e.g. 10_000_000 or 10m")
    p.add_argument("--out", type=Path, help="output .parquet (default bench/data/tx_<size>.parquet)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--rows-per-customer", type=float, default=20.0, help="average rows per customer (default 20)"
    )
    p.add_argument(
        "--one-timer-share", type=float, default=0.5, help="share of customers buying once (default 0.5)"
    )
    p.add_argument(
        "--refund-rate", type=float, default=0.02, help="share of repeat buyers' rows that are refunds"
    )
    p.add_argument("--amount-type", choices=("decimal", "double"), default="decimal")
    p.add_argument("--chunk-rows", type=parse_rows, default=2_000_000)
    args = p.parse_args(argv)
    generate(
        args.rows,
        args.out or default_path(args.rows, args.amount_type),
        seed=args.seed,
        rows_per_customer=args.rows_per_customer,
        one_timer_share=args.one_timer_share,
        refund_rate=args.refund_rate,
        amount_type=args.amount_type,
        chunk_rows=args.chunk_rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What syncing rule tags costs a full scoring run, inside the service's database.

    python bench/bench_tags.py                                  # 200k customers, 1M events, both databases
    python bench/bench_tags.py --customers 1m --events 5m --db postgres

For each database, on a freshly migrated schema: load purchases as ``bench_live.py`` does
(generated inside the database), then time full runs (:func:`rfmflow.service.scoring.run_scoring`)
and, inside each, the call of :func:`rfmflow.service.tags.sync_rule_tags` (wrapped with a timer):

1. ``rfm11`` (no tags): the baseline, the sync has nothing to do.
2. ``crm`` applied (two rule tags, ``Top 20% Spend`` from ``m_pct`` and ``Repeat Buyer``): the
   first sync adds every holder (one ``customer_tags`` and one ``tag_changes`` row each).
3. ``crm`` again, nothing changed: the steady state of a nightly run.
4. ``crm`` after ``--changed`` customers bought again (live re-scoring paused, so the run
   finds the changes): a few tags move.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_live import database, load, parse_count
from rfmflow.schemes import builtin_text
from rfmflow.service import scoring
from rfmflow.service.db import create_db_engine, upgrade
from rfmflow.service.events import EventIn
from rfmflow.service.ingest import ingest
from rfmflow.service.scoring_jobs import run_now
from rfmflow.service.scoring_live import business_day, live_rescoring_paused
from rfmflow.service.scoring_schemes import parse_scheme
from rfmflow.service.settings import Settings
from rfmflow.service.tags import SyncResult

TIMINGS: list[tuple[float, SyncResult]] = []


def timed_sync() -> Callable[..., SyncResult]:
    original: Callable[..., SyncResult] = scoring.sync_rule_tags

    def wrapper(*args: Any, **kwargs: Any) -> SyncResult:
        start = time.perf_counter()
        result = original(*args, **kwargs)
        TIMINGS.append((time.perf_counter() - start, result))
        return result

    scoring.sync_rule_tags = wrapper  # type: ignore[assignment]
    return original


def one_run(engine: Any, settings: Settings, label: str, scheme: str | None = None) -> None:
    start = time.perf_counter()
    if scheme is None:
        run_now(engine, settings, trigger="cli", actor="bench")
    else:
        text = builtin_text(scheme)
        run_now(
            engine, settings, trigger="scheme", actor="bench", scheme_text=text, scheme=parse_scheme(text)
        )
    total = time.perf_counter() - start
    sync_s, result = TIMINGS[-1]
    print(
        f"  {label:<38} run {total:6.2f} s   sync {sync_s * 1000:8.1f} ms   "
        f"+{result.added:,} -{result.removed:,} tags",
        flush=True,
    )


def bench(kind: str, args: argparse.Namespace, workdir: Path) -> None:
    with database(kind, workdir) as url:
        settings = Settings(data_dir=workdir, database_url=url)
        engine = create_db_engine(settings.database_url)
        try:
            upgrade(engine)
            today = business_day(datetime.now(UTC), settings)
            start = time.perf_counter()
            load(engine, args.customers, args.events, today)
            print(f"{kind}: loaded {args.events:,} events in {time.perf_counter() - start:.1f} s", flush=True)
            one_run(engine, settings, "rfm11, no tags (baseline)")
            one_run(engine, settings, "crm applied: first sync", scheme="crm")
            one_run(engine, settings, "crm again: nothing changed")
            one_run(engine, settings, "crm again: nothing changed")
            now = datetime.now(UTC)
            events = [
                EventIn.model_validate(
                    {
                        "event_id": f"again-{i}",
                        "customer_id": f"c{(i * 7919) % args.customers}",
                        "type": "purchase",
                        "occurred_at": now.isoformat(),
                        "amount": "900.00",
                    }
                )
                for i in range(args.changed)
            ]
            with live_rescoring_paused():
                ingest(engine, events, settings)
            one_run(engine, settings, f"crm after {args.changed:,} customers bought")
        finally:
            engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=parse_count, default=parse_count("200k"))
    parser.add_argument("--events", type=parse_count, default=parse_count("1m"))
    parser.add_argument("--changed", type=parse_count, default=1000)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    timed_sync()
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            bench(kind, args, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())

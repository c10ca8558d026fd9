"""Benchmark the workflow engine: many journeys whose waits end at the same moment.

    python bench/bench_workflows.py                         # 100,000 journeys on SQLite and PostgreSQL
    python bench/bench_workflows.py --db sqlite --journeys 20000 --baseline 2000
    python bench/bench_workflows.py --check                 # exit 1 when a run misses the target
    python bench/bench_workflows.py --profile prof.out      # cProfile of the engine's pass

Target (issue 5): 100,000 enrolments with waits due at the same moment are all executed
within 60 s, channels faked at the port (this benchmark only).

Each database starts empty (a temporary SQLite file; a fresh schema in the PostgreSQL database
``--pg-url``) and is migrated. An active workflow ``wait 1d -> send (webhook) -> exit`` gets N
enrolments parked in the wait with ``due_at`` = one moment. The engine then does what the
worker's loop does: the runner decides every due journey (``run_due``, 500 per transaction:
an outbox row, the journey steps and the enrolment's new state), then the dispatcher claims,
"sends" (a fake at the sender port answering ``delivered`` at once) and records every message
(``dispatch_all``). Reported: wall time of each phase and the whole, journeys/s, and checks
that every journey exited and every message is delivered exactly once.

The baseline, measured in the same run, is the same engine driven naively one journey and one
message per transaction (``batch=1``, ``limit=1``) on ``--baseline`` journeys, extrapolated
linearly to N; the ratio says how much the batching buys. The target ratio is 60 s / wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from rfmflow.automation import workflows_store
from rfmflow.automation.outbox import dispatch_all
from rfmflow.automation.runner import run_due
from rfmflow.automation.senders import ChannelSenders
from rfmflow.automation.settings import AutomationSettings
from rfmflow.channels.outbound import SendOutcome
from rfmflow.service.db import create_db_engine, upgrade
from rfmflow.service.db.engine import run_write
from rfmflow.service.db.tables import enrolments

TARGET_SECONDS = 60.0
WORKFLOW = """\
name: bench-wait
trigger: {tag_added: bench}
steps:
  - id: pause
    wait: {for: 1d}
  - id: hello
    send: {channel: webhook, text: "Hello {{ customer_id }}, it has been a day."}
  - exit
"""


@dataclass
class Run:
    journeys: int
    decide_s: float
    dispatch_s: float
    delivered: int
    exited: int

    @property
    def total_s(self) -> float:
        return self.decide_s + self.dispatch_s


@contextmanager
def database(kind: str, pg_url: str) -> Iterator[Engine]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            engine = create_db_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
            try:
                upgrade(engine)
                yield engine
            finally:
                engine.dispose()
        return
    admin = sa.create_engine(
        pg_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    engine = create_db_engine(f"{pg_url}?options={quote(f'-csearch_path={schema}', safe='')}")
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def prepare(engine: Engine, n: int, moment: datetime) -> None:
    """The workflow, active, and ``n`` journeys parked in its wait, all due at ``moment``."""

    def setup(conn: Any) -> int:
        workflow, text = workflows_store.parse(WORKFLOW)
        stored, _ = workflows_store.save(conn, workflow, text, actor="bench", at=moment - timedelta(days=1))
        workflows_store.set_status(
            conn, workflow.name, "activate", actor="bench", at=moment - timedelta(days=1)
        )
        return stored.id

    wid = run_write(engine, setup)
    enrolled = moment - timedelta(days=1)
    for start in range(0, n, 5000):
        rows = [
            {
                "workflow_id": wid,
                "workflow_version": 1,
                "customer_id": f"c{i:07d}",
                "status": "active",
                "step": "pause",
                "due_at": moment,
                "waiting_for": None,
                "parked": True,
                "steps_taken": 0,
                "branch": None,
                "segment": "At Risk",
                "cause": f"bench:{i}",
                "enrolled_at": enrolled,
            }
            for i in range(start, min(n, start + 5000))
        ]
        run_write(engine, lambda c, rows=rows: c.execute(sa.insert(enrolments), rows))


async def _delivered(mid: str, recipient: str, message: Mapping[str, Any]) -> SendOutcome:
    return SendOutcome(mid, "delivered")


def execute(engine: Engine, moment: datetime, *, batch: int, limit: int) -> tuple[float, float]:
    """The worker's pass at ``moment``: decide every due journey, then dispatch; the two times."""
    auto = AutomationSettings(webhook_url="http://bench.invalid/hook")
    started = time.perf_counter()
    stats = run_due(engine, moment, batch=batch)
    decided = time.perf_counter()

    async def send() -> None:
        async with ChannelSenders(auto, custom={"webhook": _delivered}) as senders:
            await dispatch_all(engine, senders, auto, now=moment, limit=limit)

    asyncio.run(send())
    done = time.perf_counter()
    assert stats.journeys > 0
    return decided - started, done - decided


def count(engine: Engine, query: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(query)).scalar_one())


def measure(kind: str, pg_url: str, n: int, *, batch: int, limit: int, profile: str | None = None) -> Run:
    moment = datetime.now(UTC).replace(microsecond=0)
    with database(kind, pg_url) as engine:
        prepare(engine, n, moment)
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        decide_s, dispatch_s = execute(engine, moment, batch=batch, limit=limit)
        if profiler and profile:
            profiler.disable()
            profiler.dump_stats(f"{profile}.{kind}")
        delivered = count(engine, "SELECT count(*) FROM outbox WHERE status = 'delivered'")
        rows = count(engine, "SELECT count(*) FROM outbox")
        keys = count(engine, "SELECT count(DISTINCT dedupe_key) FROM outbox")
        exited = count(engine, "SELECT count(*) FROM enrolments WHERE status = 'exited'")
        assert rows == keys == delivered == n, (rows, keys, delivered, n)
        assert exited == n, (exited, n)
        return Run(n, decide_s, dispatch_s, delivered, exited)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--journeys", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=10_000, help="journeys for the one-by-one baseline")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("RFMFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a run misses the 60 s target")
    parser.add_argument("--profile", help="write cProfile stats of the batched pass to PATH.<db>")
    args = parser.parse_args(argv)
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores)")
    missed = False
    for kind in kinds:
        base = measure(kind, args.pg_url, args.baseline, batch=1, limit=1)
        run = measure(kind, args.pg_url, args.journeys, batch=500, limit=500, profile=args.profile)
        extrapolated = base.total_s * args.journeys / args.baseline
        print(
            f"{kind:8} {run.journeys:,} journeys due at once: decide {run.decide_s:.1f} s + dispatch "
            f"{run.dispatch_s:.1f} s = {run.total_s:.1f} s, {run.journeys / run.total_s:,.0f} journeys/s; "
            f"all exited, {run.delivered:,} delivered once"
        )
        print(
            f"{'':8} baseline one by one: {base.journeys:,} in {base.total_s:.1f} s "
            f"({base.journeys / base.total_s:,.0f}/s) -> {extrapolated:.0f} s for {run.journeys:,}; "
            f"batched is {extrapolated / run.total_s:.1f}x faster; "
            f"target {TARGET_SECONDS:.0f} s / wall = {TARGET_SECONDS / run.total_s:.2f} "
            f"({'met' if run.total_s <= TARGET_SECONDS else 'MISSED'})"
        )
        missed |= run.total_s > TARGET_SECONDS
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())

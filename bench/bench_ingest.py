"""Benchmark event ingest over HTTP against a direct bulk insert into the same database.

    python bench/bench_ingest.py                         # 50k events, SQLite and PostgreSQL
    python bench/bench_ingest.py --events 100k --clients 1,2,4
    python bench/bench_ingest.py --db sqlite --check     # exit 1 when a target is missed

The server is a real ``python -m rfmflow.service serve`` subprocess (JSON logs at WARNING,
synchronous commits: SQLite ``synchronous=FULL``, PostgreSQL's default), on loopback; the
load generator runs in this process with ``--clients`` threads, each sending its share of
the batches (``--batch``, default 500 events) one after another with httpx. The request
bodies are encoded before the clock starts. Each answer is checked (every event accepted).

Approaches, per database, each on a freshly migrated schema:

``direct executemany``   the baseline and the ceiling: the same events, already turned into
                         rows, inserted with the driver's ``executemany`` in one
                         transaction into ``events`` alone (no validation, no JSON, no HTTP,
                         no idempotency check, no aggregates).
``HTTP, N client(s)``    ``POST /v1/events`` with batches: JSON parsing, validation, API-key
                         check, idempotent insert and the customers' aggregates, each batch
                         one transaction.

Target (issue): at least 5,000 events/s over HTTP with batches of 500, on SQLite and on
PostgreSQL, on this 2-core machine with the server and the load generator both on it.
The script prints PASS/FAIL for the best HTTP figure per database and exits 0 unless
``--check`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
TARGET_EVENTS_PER_S = 5000
POSTGRES_URL = os.environ.get("RFMFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def parse_count(text: str) -> int:
    text = text.strip().lower().replace("_", "")
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


def make_events(n: int, seed: int = 42) -> list[dict[str, Any]]:
    """``n`` events from ``n // 5`` customers over two years: 70% purchases (half in multi-line
    orders), 5% refunds, the rest messages, clicks and visits; three time-zone offsets."""
    rng = random.Random(seed)
    customers = max(1, n // 5)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    kinds = ["purchase"] * 14 + ["refund"] + ["message"] * 2 + ["click", "visit"]
    out = []
    for i in range(n):
        kind = rng.choice(kinds)
        cid = f"C{rng.randrange(customers):08d}"
        moment = start + timedelta(seconds=rng.randrange(2 * 365 * 86400))
        tz = rng.choice([UTC, UTC, datetime.strptime("+0200", "%z").tzinfo])
        event: dict[str, Any] = {
            "event_id": f"bench-{seed}-{i}",
            "customer_id": cid,
            "type": kind,
            "occurred_at": moment.astimezone(tz).isoformat(),
        }
        if kind in ("purchase", "refund"):
            event["amount"] = f"{rng.randrange(100, 20000) / 100:.2f}"
            event["currency"] = "USD"
        if kind == "purchase" and rng.random() < 0.5:
            event["order_id"] = f"O{i // 3}"
        if kind == "message":
            event["properties"] = {"channel": "telegram", "chars": rng.randrange(1, 400)}
        out.append(event)
    return out


# --------------------------------------------------------------------------------------
# Databases
# --------------------------------------------------------------------------------------
class Database:
    """A fresh, migrated database (an SQLite file or a PostgreSQL schema) for one run."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.schema: str | None = None
        if kind == "sqlite":
            self.url = f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        else:
            import psycopg

            self.schema = f"bench_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {self.schema}")
            self.url = f"{POSTGRES_URL}?options={quote(f'-csearch_path={self.schema}', safe='')}"
        from rfmflow.service.db import create_db_engine, upgrade
        from rfmflow.service.settings import normalize_database_url

        self.engine = create_db_engine(normalize_database_url(self.url))
        upgrade(self.engine)

    def ingest_key(self) -> str:
        from rfmflow.service.auth import create_key

        create_key(self.engine, role="admin", name="bench admin", actor="bench")  # so serve makes none
        return create_key(self.engine, role="ingest", name="bench", actor="bench")[1]

    def count(self, table: str) -> int:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())

    def drop(self) -> None:
        self.engine.dispose()
        if self.schema:
            import psycopg

            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {self.schema} CASCADE")


def postgres_available() -> bool:
    try:
        import psycopg

        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
        return True
    except Exception:
        return False


# --------------------------------------------------------------------------------------
# Approaches
# --------------------------------------------------------------------------------------
def rows_for(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The ``events`` rows the service would store (validated exactly as it does)."""
    from rfmflow.service.events import EventIn
    from rfmflow.service.ingest import event_day

    received = datetime.now(UTC)
    zone = UTC
    rows = []
    for raw in events:
        e = EventIn.model_validate(raw)
        minor = e.amount_minor(2)
        rows.append(
            (
                e.event_id,
                e.customer_id,
                e.type,
                e.occurred_at,
                received,
                event_day(e.occurred_at, zone),
                minor,
                "USD" if minor is not None else None,
                e.order_id,
                json.dumps(e.properties) if e.properties is not None else None,
                "api",
            )
        )
    return rows


COLUMNS = (
    "event_id, customer_id, event_type, occurred_at, received_at, day, amount_minor, currency, "
    "order_id, properties, source"
)


def direct_executemany(db: Database, rows: list[tuple[Any, ...]]) -> float:
    """Seconds to insert ``rows`` into ``events`` with the driver's executemany, one transaction."""
    if db.kind == "sqlite":
        path = db.url.removeprefix("sqlite:///")
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        plain = [(*r[:3], r[3].replace(tzinfo=None), r[4].replace(tzinfo=None), *r[5:]) for r in rows]
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(f"INSERT INTO events ({COLUMNS}) VALUES ({', '.join('?' * 11)})", plain)
        conn.execute("COMMIT")
        seconds = time.perf_counter() - t0
        conn.close()
        return seconds
    import psycopg

    with psycopg.connect(POSTGRES_URL, options=f"-csearch_path={db.schema}") as pg:
        t0 = time.perf_counter()
        with pg.cursor() as cur:
            cur.executemany(
                f"INSERT INTO events ({COLUMNS}) VALUES ({', '.join(['%s'] * 11)})",
                rows,
            )
        pg.commit()
        return time.perf_counter() - t0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, db: Database, workdir: Path) -> None:
        self.port = free_port()
        self.log = workdir / f"serve-{self.port}.log"
        env = {
            **os.environ,
            "RFMFLOW_DATABASE_URL": db.url,
            "RFMFLOW_PORT": str(self.port),
            "RFMFLOW_LOG_LEVEL": "WARNING",
        }
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rfmflow.service", "serve"],
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=log,
            )
        self.url = f"http://127.0.0.1:{self.port}"
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("serve did not become ready")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def over_http(db: Database, bodies: list[bytes], clients: int, workdir: Path) -> tuple[float, float]:
    """(seconds, server CPU seconds) to POST every body, ``clients`` threads at a time."""
    import httpx

    key = db.ingest_key()
    server = Server(db, workdir)
    try:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        shares = [bodies[i::clients] for i in range(clients)]
        failures: list[str] = []
        barrier = threading.Barrier(clients + 1)

        def send(share: list[bytes]) -> None:
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
                client.get("/healthz")  # connect before the clock starts
                barrier.wait()
                for body in share:
                    response = client.post("/v1/events", content=body)
                    if response.status_code != 200 or response.json()["rejected"]:
                        failures.append(f"{response.status_code}: {response.text[:300]}")
                        return

        threads = [threading.Thread(target=send, args=(share,)) for share in shares]
        for t in threads:
            t.start()
        cpu0 = server.cpu_seconds()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
        cpu = server.cpu_seconds() - cpu0
        if failures:
            raise RuntimeError(f"ingest failed: {failures[0]}")
    finally:
        server.stop()
    return seconds, cpu


def _load() -> str:
    with open("/proc/loadavg") as fh:
        return fh.read().split()[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="rfmflow ingest over HTTP vs a direct bulk insert")
    p.add_argument("--events", type=parse_count, default=50_000, help="events per run (default 50k)")
    p.add_argument("--batch", type=int, default=500, help="events per request (default 500)")
    p.add_argument("--clients", default="1,2", help="comma-separated concurrent senders (default 1,2)")
    p.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both (default both)")
    p.add_argument("--repeat", type=int, default=2, help="runs of each approach; the best counts (default 2)")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args(argv)

    kinds = [k.strip() for k in args.db.split(",") if k.strip()]
    clients = [int(c) for c in args.clients.split(",") if c.strip()]
    if "postgres" in kinds and not postgres_available():
        print(f"PostgreSQL is not reachable at {POSTGRES_URL}; skipping it", file=sys.stderr)
        kinds.remove("postgres")
    events = make_events(args.events)
    batches = [events[i : i + args.batch] for i in range(0, len(events), args.batch)]
    bodies = [json.dumps(b).encode() for b in batches]
    rows = rows_for(events)
    workdir = Path(tempfile.mkdtemp(prefix="rfmbench_ingest_"))
    out: list[str] = []
    verdicts: list[tuple[bool, str]] = []
    t_all = time.perf_counter()
    try:
        for kind in kinds:
            results: dict[str, list[tuple[float, float | None]]] = {}
            for rep in range(args.repeat):
                db = Database(kind, workdir)
                try:
                    seconds = direct_executemany(db, rows)
                    assert db.count("events") == len(events)
                finally:
                    db.drop()
                results.setdefault("direct executemany", []).append((seconds, None))
                print(
                    f"  {kind} direct executemany run {rep + 1}: {seconds:.2f}s, load {_load()}",
                    file=sys.stderr,
                )
                for c in clients:
                    db = Database(kind, workdir)
                    try:
                        seconds, cpu = over_http(db, bodies, c, workdir)
                        assert db.count("events") == len(events), "not every event was stored"
                        assert db.count("customers") == len({e["customer_id"] for e in events})
                    finally:
                        db.drop()
                    label = f"HTTP, {c} client{'s' if c > 1 else ''}"
                    results.setdefault(label, []).append((seconds, cpu))
                    print(
                        f"  {kind} {label} run {rep + 1}: {seconds:.2f}s "
                        f"(server CPU {cpu:.2f}s), load {_load()}",
                        file=sys.stderr,
                    )
            base = min(s for s, _ in results["direct executemany"])
            out.append(f"{kind}: {len(events):,} events, batches of {args.batch}")
            out.append(
                f"  {'approach':<22} {'seconds':>8} {'events/s':>10} {'x baseline':>11} {'server CPU s':>13}"
            )
            best_http = 0.0
            for label, runs in results.items():
                seconds, cpu = min(runs, key=lambda r: r[0])
                rate = len(events) / seconds
                if label.startswith("HTTP"):
                    best_http = max(best_http, rate)
                cpu_text = f"{cpu:.2f}" if cpu is not None else "-"
                out.append(
                    f"  {label:<22} {seconds:8.2f} {rate:10,.0f} {seconds / base:10.1f}x {cpu_text:>13}"
                )
            out.append("")
            verdicts.append(
                (
                    best_http >= TARGET_EVENTS_PER_S,
                    f"{kind}: best HTTP ingest {best_http:,.0f} events/s (target >= {TARGET_EVENTS_PER_S:,})",
                )
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(
        f"rfmflow ingest benchmark (python {sys.version.split()[0]}, {os.cpu_count()} CPUs); best of "
        f"{args.repeat}; ratio = seconds / 'direct executemany' seconds of the same run"
    )
    print()
    print("\n".join(out))
    for ok, text in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    print(f"(total {time.perf_counter() - t_all:.0f}s)")
    failed = any(not ok for ok, _ in verdicts)
    return 1 if (failed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())

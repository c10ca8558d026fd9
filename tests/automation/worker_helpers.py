"""Helpers for the tests that run ``rfmflow worker`` / ``rfmflow serve`` as processes: a webhook
receiver on loopback that records every delivery (and can stall), a database with many due
journeys, starting and killing the processes, and waiting for a state of the database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from rfmflow.automation import workflows_store
from rfmflow.service.db.engine import run_write
from rfmflow.service.db.tables import enrolments

RFMFLOW = str(Path(sys.executable).parent / "rfmflow")

TWO_SENDS = """\
name: crash-test
trigger: {tag_added: crash-test}
steps:
  - id: hello
    send: {channel: webhook, text: "hello {{ customer_id }}"}
  - id: pause
    wait: {for: 1d}
  - id: again
    send: {channel: webhook, text: "again {{ customer_id }}"}
  - exit
"""


class Receiver:
    """A webhook receiver on loopback recording each delivery's outbox id (the payload's ``id``).

    After ``stall_after`` deliveries every further request is recorded, then held until
    :meth:`release` (a receiver that stops answering: the sends stay in flight)."""

    def __init__(self, stall_after: int | None = None) -> None:
        self.stall_after = stall_after
        self.ids: list[int] = []
        self.lock = threading.Lock()
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.lock:
                    receiver.ids.append(int(json.loads(body)["id"]))
                    stall = receiver.stall_after is not None and len(receiver.ids) > receiver.stall_after
                if stall:
                    receiver.released.wait(60)
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except OSError:  # the worker was killed while we held its request
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # the dispatcher opens a connection per message in flight

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def release(self) -> None:
        self.stall_after = None
        self.released.set()

    def count(self) -> int:
        with self.lock:
            return len(self.ids)

    def per_id(self) -> Counter[int]:
        with self.lock:
            return Counter(self.ids)


def add_workflow(engine: Engine, text: str = TWO_SENDS) -> int:
    """Store and activate the workflow; its id."""
    now = datetime.now(UTC)

    def work(conn: Any) -> int:
        workflow, stored_text = workflows_store.parse(text)
        stored, _ = workflows_store.save(conn, workflow, stored_text, actor="test", at=now)
        workflows_store.set_status(conn, workflow.name, "activate", actor="test", at=now)
        return stored.id

    return run_write(engine, work)


def add_due_journeys(engine: Engine, workflow_id: int, n: int, *, prefix: str = "c") -> None:
    """``n`` journeys due now: half new (at ``hello``), half whose one-day wait (``pause``) is over."""
    now = datetime.now(UTC) - timedelta(seconds=1)
    rows = []
    for i in range(n):
        waited = i % 2 == 1
        rows.append(
            {
                "workflow_id": workflow_id,
                "workflow_version": 1,
                "customer_id": f"{prefix}{i:06d}",
                "status": "active",
                "step": "pause" if waited else "hello",
                "due_at": now,
                "waiting_for": None,
                "parked": waited,
                "steps_taken": 1 if waited else 0,
                "branch": None,
                "segment": None,
                "cause": f"test:{prefix}{i}",
                "enrolled_at": now - timedelta(days=1) if waited else now,
            }
        )
    for start in range(0, n, 1000):
        chunk = rows[start : start + 1000]
        run_write(engine, lambda c, chunk=chunk: c.execute(sa.insert(enrolments), chunk))


def scalar(engine: Engine, query: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(query), params).scalar()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 120.0, every: float = 0.02) -> None:
    """Poll ``check`` until it holds (failing after ``timeout`` seconds: a hang, not a speed test)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def process_env(database_url: str, data_dir: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RFMFLOW_")}
    env.update(
        RFMFLOW_DATABASE_URL=database_url,
        RFMFLOW_DATA_DIR=str(data_dir),
        RFMFLOW_SCORE_CRON="off",
        RFMFLOW_AUTOMATION_INTERVAL="0.2",
        RFMFLOW_LOG_LEVEL="INFO",
    )
    env.update(values)
    return env


def start(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([RFMFLOW, *args], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL: no handler runs, nothing is flushed or rolled back by the process."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def stop(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """SIGTERM and wait; the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout)

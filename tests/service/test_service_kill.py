"""``serve`` in a real process: first start, kill -9 in the middle of a stream, restart, SIGTERM.

Every event acknowledged before the kill must be stored exactly once; resending everything
after the restart must answer those as duplicates; the aggregates must equal a rebuild from
the events.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from service_helpers import Database, event, free_port
from sqlalchemy.engine import Engine

from rfmflow.service.auth import create_key
from rfmflow.service.db.store import read_customers
from rfmflow.service.ingest import rebuild_customers

BATCHES, PER_BATCH = 60, 100


class ServeProcess:
    def __init__(self, database: Database, workdir: Path, name: str) -> None:
        self.port = free_port()
        self.out = workdir / f"{name}.out"
        self.err = workdir / f"{name}.err"
        env = {
            **os.environ,
            "RFMFLOW_DATABASE_URL": database.url,
            "RFMFLOW_PORT": str(self.port),
            "RFMFLOW_LOG_LEVEL": "WARNING",
        }
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rfmflow", "serve"],
                cwd=workdir,
                env=env,
                stdout=out,
                stderr=err,
            )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"serve exited with {self.proc.returncode}: {self.err.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"serve did not become ready: {self.err.read_text()[-3000:]}")

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


def batches() -> list[list[dict[str, Any]]]:
    out = []
    for b in range(BATCHES):
        items = []
        for i in range(PER_BATCH):
            n = b * PER_BATCH + i
            items.append(
                event(
                    event_id=f"k-{n}",
                    customer_id=f"c{n % 150}",
                    order_id=f"o{n // 3}" if n % 2 else None,
                    occurred_at=f"2024-0{1 + n % 9}-{1 + n % 28:02d}T12:00:00Z",
                    amount=f"{1 + n % 70}.{n % 100:02d}",
                )
            )
        out.append(items)
    return out


@pytest.mark.slow
def test_kill_9_loses_no_acknowledged_event(database: Database, engine: Engine, tmp_path: Path) -> None:
    _key, ingest_key = create_key(engine, role="ingest", name="stream", actor="test")
    headers = {"Authorization": f"Bearer {ingest_key}"}
    all_batches = batches()

    first = ServeProcess(database, tmp_path, "first")
    try:
        first.wait_ready()
        assert "rfm_" in first.out.read_text()  # the first admin key, printed once
        acked: set[str] = set()
        sent = threading.Event()

        def stream() -> None:
            with httpx.Client(base_url=first.url, headers=headers, timeout=10) as client:
                for n, items in enumerate(all_batches):
                    try:
                        response = client.post("/v1/events", json=items)
                    except httpx.TransportError:
                        return
                    assert response.status_code == 200
                    acked.update(i["event_id"] for i in response.json()["items"] if i["status"] == "accepted")
                    if n == 10:
                        sent.set()

        sender = threading.Thread(target=stream)
        sender.start()
        assert sent.wait(30), "the stream did not get going"
        time.sleep(0.05)
        first.stop(signal.SIGKILL)
        sender.join(30)
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
            first.proc.wait()
    assert 11 * PER_BATCH <= len(acked) < BATCHES * PER_BATCH, "the kill did not land mid-stream"

    with engine.connect() as conn:
        stored = {row[0] for row in conn.execute(sa.text("SELECT event_id FROM events"))}
    assert acked <= stored  # nothing acknowledged was lost (the batch in flight may or may not be there)

    second = ServeProcess(database, tmp_path, "second")
    try:
        second.wait_ready()
        assert "rfm_" not in second.out.read_text()  # an admin key exists now: none printed
        answers: dict[str, str] = {}
        with httpx.Client(base_url=second.url, headers=headers, timeout=10) as client:
            for items in all_batches:
                response = client.post("/v1/events", json=items)
                assert response.status_code == 200
                answers.update((i["event_id"], i["status"]) for i in response.json()["items"])
        assert second.stop(signal.SIGTERM) == 0  # graceful shutdown
    finally:
        if second.proc.poll() is None:
            second.proc.kill()
            second.proc.wait()

    assert all(answers[e] == "duplicate" for e in stored)
    assert sum(s == "accepted" for s in answers.values()) == BATCHES * PER_BATCH - len(stored)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one() == BATCHES * PER_BATCH
        live = read_customers(conn)
    expected_money = sum(int(e["amount"].replace(".", "")) for items in all_batches for e in items)
    assert sum(r["monetary_minor"] for r in live.values()) == expected_money
    assert sum(r["n_events"] for r in live.values()) == BATCHES * PER_BATCH
    rebuild_customers(engine)
    with engine.connect() as conn:
        assert read_customers(conn) == live

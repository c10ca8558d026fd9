"""Helpers for the service tests: databases, a threaded uvicorn server, event builders."""

from __future__ import annotations

import itertools
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn
from sqlalchemy.engine import Engine

from rfmflow.service.auth import create_key
from rfmflow.service.settings import Settings

ROLES = ("admin", "analyst", "agent", "ingest")


@dataclass
class Database:
    """A database for one test: its URL (schema included for PostgreSQL) and its kind."""

    kind: str
    url: str

    def settings(self, tmp_path: Path, **changes: Any) -> Settings:
        return Settings(data_dir=tmp_path / "data", database_url=self.url, **changes)


@dataclass
class Server:
    """A running app: its base URL and one key per role."""

    url: str
    keys: dict[str, str]
    settings: Settings
    engine: Engine

    def client(self, role: str | None = "admin", **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ThreadedServer:
    """uvicorn serving ``app`` in a background thread until :meth:`stop`."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, access_log=False, http="h11", ws="none"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def make_keys(engine: Engine) -> dict[str, str]:
    return {role: create_key(engine, role=role, name=f"test {role}", actor="test")[1] for role in ROLES}


_ids = itertools.count()


def event(**fields: Any) -> dict[str, Any]:
    """A valid purchase event as JSON, with a fresh event id unless given."""
    out: dict[str, Any] = {
        "event_id": f"ev-{next(_ids)}-{uuid.uuid4().hex[:8]}",
        "customer_id": "c1",
        "type": "purchase",
        "occurred_at": "2024-05-01T10:00:00Z",
        "amount": "10.00",
    }
    out.update(fields)
    return {k: v for k, v in out.items() if v is not None}


def count_rows(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def shop_purchases(now: datetime, n: int = 40) -> list[dict[str, Any]]:
    """Purchases of ``n`` customers spread over the 300 days before ``now`` (1 to 4 each):
    a first scoring run puts some of them in At Risk."""
    out = []
    for i in range(n):
        for j in range(1 + i % 4):
            out.append(
                {
                    "event_id": f"e{i}-{j}",
                    "customer_id": f"c{i:03d}",
                    "type": "purchase",
                    "occurred_at": (now - timedelta(days=(i * 7 + j) % 300)).isoformat(),
                    "amount": str(5 + (i * 13) % 200),
                    "order_id": f"o{i}-{j}",
                }
            )
    return out


def post_events(server: Server, items: list[dict[str, Any]]) -> None:
    """POST a batch with the ingest key; every item must be taken."""
    with server.client("ingest") as client:
        response = client.post("/v1/events", json={"batch": items})
    assert response.status_code == 200 and response.json()["rejected"] == 0, response.text

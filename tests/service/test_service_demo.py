"""Demo data: every segment populated relative to today, deterministic; ``serve --demo``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from click.testing import CliRunner
from service_helpers import Database, count_rows, free_port
from test_service_kill import ServeProcess

import rfmflow
from rfmflow.schemes import load_scheme
from rfmflow.service.cli import service_cli
from rfmflow.service.db import create_db_engine
from rfmflow.service.demo_data import HISTORY_DAYS, demo_profiles, demo_rows, demo_table
from rfmflow.service.profiles import read_traits


@pytest.mark.parametrize(
    ("today", "zone"), [(date(2026, 11, 22), "Europe/Berlin"), (date(2024, 2, 29), "UTC")]
)
def test_every_segment_is_populated(today: date, zone: str) -> None:
    table = demo_table(today, timezone=zone)
    for scheme in ("rfm11", "telegram-scrm"):
        result = rfmflow.score(table, scheme=scheme, as_of=today, timezone=zone)
        counts = {s.segment: s.customers for s in result.summaries}
        names = [s.name for s in load_scheme(scheme).segments]
        assert set(counts) == set(names), counts
        assert all(counts[name] > 0 for name in names), counts
        assert result.n_customers == 2000
        # Quintile scores use all five values (no bins lost to ties).
        if scheme == "rfm11":
            for col in ("r_score", "f_score", "m_score"):
                assert set(result.customers.column(col).to_pylist()) == {1, 2, 3, 4, 5}, col


def test_demo_is_deterministic_and_relative_to_today() -> None:
    today = date(2025, 6, 10)
    rows = demo_rows(today, timezone="Europe/Berlin")
    assert rows == demo_rows(today, timezone="Europe/Berlin")
    zone = ZoneInfo("Europe/Berlin")
    days = [(today - r["occurred_at"].astimezone(zone).date()).days for r in rows]
    assert min(days) >= 1 and max(days) < HISTORY_DAYS  # the last two years, nothing today or later
    later = demo_rows(today + timedelta(days=100), timezone="Europe/Berlin")
    assert [r["event_id"] for r in later] == [r["event_id"] for r in rows]
    later_days = [
        (today + timedelta(days=100) - r["occurred_at"].astimezone(zone).date()).days for r in later
    ]
    assert later_days == days  # the same history, moved with today
    kinds = Counter(r["type"] for r in rows)
    assert set(kinds) == {"signup", "purchase", "refund", "message", "command", "click"}
    assert 30_000 < len(rows) < 70_000 and kinds["refund"] > 100
    assert len({r["event_id"] for r in rows}) == len(rows)
    assert all(r["occurred_at"].tzinfo is UTC for r in rows)
    # The default today is today in the business time zone.
    now_there = datetime.now(ZoneInfo("Pacific/Kiritimati")).date()
    default = demo_rows(timezone="Pacific/Kiritimati", customers=20)
    assert default == demo_rows(now_there, timezone="Pacific/Kiritimati", customers=20)


def test_demo_profiles_are_valid_and_deterministic() -> None:
    rows = demo_rows(date(2025, 6, 10), customers=300)
    profiles = demo_profiles(rows)
    assert profiles == demo_profiles(rows)
    assert len(profiles) == len({r["customer_id"] for r in rows}) == 300
    updates = [read_traits(p["traits"]) for p in profiles]
    assert all(u.warnings == [] for u in updates)
    assert all({"email", "name", "timezone", "language"} <= set(u.fields) for u in updates)
    bot_users = {r["customer_id"] for r in rows if r["type"] == "command"}
    with_chat = {p["customer_id"] for p in profiles if "telegram_chat_id" in p["traits"]}
    assert with_chat == bot_users and 0 < len(bot_users) < 300
    assert len({p["traits"]["email"] for p in profiles}) == 300


class DemoServe(ServeProcess):
    """``rfmflow serve --demo`` in a real process."""

    def __init__(self, database: Database, workdir: Path) -> None:
        self.port = free_port()
        self.out, self.err = workdir / "demo.out", workdir / "demo.err"
        env = {
            **os.environ,
            "RFMFLOW_DATABASE_URL": database.url,
            "RFMFLOW_PORT": str(self.port),
            "RFMFLOW_LOG_LEVEL": "WARNING",
            "RFMFLOW_TIMEZONE": "UTC",
        }
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rfmflow", "serve", "--demo"],
                cwd=workdir,
                env=env,
                stdout=out,
                stderr=err,
            )
        self.url = f"http://127.0.0.1:{self.port}"


def test_serve_demo_loads_into_an_empty_database_only(database: Database, tmp_path: Path) -> None:
    server = DemoServe(database, tmp_path)
    try:
        server.wait_ready(timeout=90)
        key = re.search(r"rfm_[0-9a-f]{8}_\S+", server.out.read_text())
        assert key is not None
        answer = httpx.get(
            f"{server.url}/v1/customers/c00001",
            headers={"Authorization": f"Bearer {key.group(0)}"},
            timeout=10,
        )
        assert answer.status_code == 200 and answer.json()["events"] > 0
        # The demo is scored at once: every segment of the default scheme has customers.
        segments = httpx.get(
            f"{server.url}/v1/segments", headers={"Authorization": f"Bearer {key.group(0)}"}, timeout=10
        )
        assert segments.status_code == 200
        counts = {s["name"]: s["customers"] for s in segments.json()["segments"]}
        assert len(counts) == 11 and all(counts.values()), counts
        profile = httpx.get(
            f"{server.url}/v1/customers/c00001/profile",
            headers={"Authorization": f"Bearer {key.group(0)}"},
            timeout=10,
        ).json()
        assert profile["email"].endswith("@example.com") and profile["timezone"] and profile["name"]
    finally:
        assert server.stop(signal.SIGTERM) == 0
    assert re.search(r"loaded demo data: [\d,]+ events of 2,000 customers", server.err.read_text())
    assert "; 2,000 profiles" in server.err.read_text()
    assert re.search(r"scored 2,000 customers as of ", server.err.read_text())
    result = CliRunner().invoke(service_cli, ["import", "--demo", "--database-url", database.url])
    assert result.exit_code == 0, result.output
    assert "already holds events" in result.stderr
    engine = create_db_engine(database.settings(tmp_path).database_url)
    try:
        assert count_rows(engine, "customers") == 2000
        assert count_rows(engine, "events") == len(demo_rows(timezone="UTC"))
        assert count_rows(engine, "customer_profiles") == 2000
    finally:
        engine.dispose()

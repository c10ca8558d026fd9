"""Helpers for the alerts tests: scoring-run snapshots written as a run writes them, a webhook
receiver on loopback, and the alert settings pointed at the tests' servers."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from rfmflow.alerts.delivery import alert_senders
from rfmflow.alerts.loop import tick
from rfmflow.alerts.settings import AlertSettings, parse_report_schedule
from rfmflow.automation.settings import AutomationSettings
from rfmflow.channels.webhook import verify_signature
from rfmflow.fake_telegram import DEFAULT_TOKEN
from rfmflow.service.db.tables import scoring_runs
from rfmflow.service.scoring_live import business_day
from rfmflow.service.settings import Settings

SECRET = "alert-secret-0123456789"


def add_run(
    engine: Engine,
    settings: Settings,
    days_ago: int,
    segments: dict[str, int],
    *,
    frequency: dict[str, float] | None = None,
    now: datetime | None = None,
) -> int:
    """A finished run ``days_ago`` with these segment sizes (its snapshot as a run records it);
    mean frequency 2.0 unless ``frequency`` says otherwise."""
    at = (now or datetime.now(UTC)) - timedelta(days=days_ago)
    freq = frequency or {}
    stats = [
        [
            name,
            {
                "customers": n,
                "revenue_minor": n * 1000,
                "mean_recency_days": 30.0,
                "mean_frequency": freq.get(name, 2.0),
            },
        ]
        for name, n in segments.items()
    ]
    with engine.begin() as conn:
        return int(
            conn.execute(
                sa.insert(scoring_runs)
                .values(
                    as_of_day=business_day(at, settings),
                    scheme_version=1,
                    trigger="api",
                    started_at=at,
                    finished_at=at,
                    customers=sum(segments.values()),
                    moves=0,
                    segment_counts=[[k, v] for k, v in segments.items()],
                    segment_stats=stats,
                )
                .returning(scoring_runs.c.id)
            ).scalar_one()
        )


class Receiver:
    """A webhook receiver on loopback: keeps each POST (checked signature) and answers ``status``."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                signed = verify_signature(body, self.headers.get("X-Rfmflow-Signature"), SECRET)
                outer.received.append({"body": json.loads(body), "signed": signed, "answered": outer.status})
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def delivered(self) -> list[dict[str, Any]]:
        return [r for r in self.received if r["answered"] < 300]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def alert_settings(
    fake_url: str | None = None, smtp_port: int | None = None, *, chat: str = "", emails: tuple[str, ...] = ()
) -> AlertSettings:
    auto = AutomationSettings(
        telegram_token=DEFAULT_TOKEN if fake_url else "",
        telegram_api_url=f"{fake_url}/bot" if fake_url else None,
        smtp_host="127.0.0.1" if smtp_port else "",
        smtp_port=smtp_port or 25,
        smtp_from="rfmflow <alerts@shop.example>",
    )
    return AlertSettings(
        interval=None,
        webhook_secret=SECRET,
        report_schedule=parse_report_schedule("weekly mon 08:00"),
        report_telegram_chat=chat,
        report_emails=emails,
        dashboard_url="http://127.0.0.1:8000",
        automation=auto,
    )


def run_tick(
    engine: Engine, settings: Settings, alerts: AlertSettings, now: datetime | None = None
) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with alert_senders(alerts) as senders:
            return await tick(engine, settings, alerts, senders, now=now)

    return asyncio.run(go())


def add_broadcast(engine: Engine, started: datetime, recipients: list[str], *, name: str = "spring") -> int:
    """A finished broadcast whose messages to ``recipients`` were delivered at ``started``."""
    from rfmflow.service.db.tables import broadcasts, outbox

    with engine.begin() as conn:
        bid = int(
            conn.execute(
                sa.insert(broadcasts)
                .values(
                    name=name,
                    channel="telegram",
                    message={"text": "hi"},
                    audience={},
                    status="done",
                    audience_count=len(recipients),
                    cap_policy="skip",
                    created_at=started,
                    created_by="test",
                    started_at=started,
                    finished_at=started,
                )
                .returning(broadcasts.c.id)
            ).scalar_one()
        )
        for cid in recipients:
            conn.execute(
                sa.insert(outbox).values(
                    dedupe_key=f"b{bid}:{cid}",
                    customer_id=cid,
                    channel="telegram",
                    recipient="1",
                    message={"text": "hi"},
                    status="delivered",
                    attempts=1,
                    not_before=started,
                    created_at=started,
                    sent_at=started,
                    broadcast_id=bid,
                    segment="At Risk",
                )
            )
    return bid


def rows(engine: Engine, query: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(query), params))

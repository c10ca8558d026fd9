"""The weekly report on SQLite and PostgreSQL: its numbers equal the API's, its page is
self-contained, the scheduled one is made once per period and sent to Telegram (the fake Bot
API) and e-mail (aiosmtpd), and ``rfmflow reports weekly`` writes the page."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from alerts_helpers import alert_settings, rows, run_tick
from click.testing import CliRunner
from dashboard_helpers import seed
from markupsafe import escape
from service_helpers import Server

from rfmflow.cli.main import main

RESOURCE = re.compile(r"""(?:\bsrc\s*=|<link\b[^>]*\bhref\s*=|url\(|@import)\s*["']?\s*https?://""", re.I)


def test_report_numbers_equal_the_api_and_the_page_is_self_contained(server: Server) -> None:
    seed(server, customers=120)
    with server.client("admin") as admin:
        made = admin.post("/v1/reports/weekly")
        assert made.status_code == 201, made.text
        report = made.json()["report"]
        summary = report["summary"]
        to = date.fromisoformat(summary["to"])
        start = to - timedelta(days=7)
        assert summary["from"] == start.isoformat()
        now = admin.get("/v1/snapshots", params={"to": to.isoformat()}).json()["snapshots"][-1]
        before = admin.get("/v1/snapshots", params={"to": start.isoformat()}).json()["snapshots"][-1]
        matrix = admin.get("/v1/transitions", params={"from": start.isoformat(), "to": to.isoformat()}).json()
        listed = admin.get("/v1/reports").json()["reports"]
        page = admin.get(f"/v1/reports/{report['id']}.html")
        assert admin.get("/v1/reports/999999.html").status_code == 404
    by_segment = {s["segment"]: s for s in summary["segments"]}
    assert {k: v["customers_now"] for k, v in by_segment.items() if v["customers_now"]} == {
        s["segment"]: s["customers"] for s in now["segments"] if s["customers"]
    }
    assert {k: v["customers_before"] for k, v in by_segment.items() if v["customers_before"]} == {
        s["segment"]: s["customers"] for s in before["segments"] if s["customers"]
    }
    assert (
        summary["run_now"]["run_id"] == now["run_id"] and summary["run_before"]["run_id"] == before["run_id"]
    )
    assert summary["customers_now"] == now["customers"]
    assert summary["moves"]["changed"] == matrix["changed"] > 0
    top = summary["moves"]["top"][0]
    assert matrix["matrix"][top["from"]][top["to"]] == top["customers"]
    assert [r["id"] for r in listed] == [report["id"]]

    assert page.status_code == 200 and "attachment" in page.headers["content-disposition"]
    html = page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert RESOURCE.search(html) is None and "<script" not in html and "<link" not in html
    assert "<svg" in html and "<style>" in html
    for name, s in by_segment.items():
        assert f'data-segment="{escape(name)}"' in html
        assert f'<td class="now">{s["customers_now"]:,}</td>' in html


def test_scheduled_report_is_made_once_per_period_and_sent(
    engine: Any, settings: Any, fake: Any, inbox: Any
) -> None:
    handler, smtp_port = inbox
    alerts = alert_settings(fake.url, smtp_port, chat="777", emails=("boss@shop.example",))
    saturday = datetime(2030, 1, 5, 12, 0, tzinfo=UTC)
    first = run_tick(engine, settings, alerts, now=saturday)
    assert first["report"] is None  # a new installation waits for the first scheduled moment
    [(next_run,)] = rows(engine, "SELECT next_run_at FROM jobs WHERE name = 'weekly_report'")
    monday = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)
    assert str(next_run).startswith("2030-01-07 08:00")
    made = run_tick(engine, settings, alerts, now=monday + timedelta(minutes=3))
    assert made["report"] is not None
    again = run_tick(engine, settings, alerts, now=monday + timedelta(minutes=9))
    assert again["report"] is None
    assert len(rows(engine, "SELECT id FROM reports")) == 1
    [telegram] = fake.messages_to(777)
    assert "weekly report 2029-12-31" in telegram.text and f"/reports/{made['report']}.html" in telegram.text
    [(envelope, mail)] = handler.messages
    assert envelope.rcpt_tos == ["boss@shop.example"] and "weekly report" in mail["Subject"]
    body = mail.get_body(preferencelist=("html",))
    assert body is not None and "<h1>Weekly report</h1>" in body.get_content()
    [(deliveries,)] = rows(engine, "SELECT deliveries FROM reports")
    statuses = deliveries if isinstance(deliveries, list) else __import__("json").loads(deliveries)
    assert [d["status"] for d in statuses] == ["sent", "sent"]
    # the next week's report
    week = run_tick(engine, settings, alerts, now=monday + timedelta(days=7, minutes=1))
    assert week["report"] is not None and len(rows(engine, "SELECT id FROM reports")) == 2


def test_cli_writes_the_page(server: Server, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("RFMFLOW_DATABASE_URL", server.settings.database_url)
    monkeypatch.setenv("RFMFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "week.html"
    runner = CliRunner()
    result = runner.invoke(main, ["reports", "weekly", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")
    bad = runner.invoke(
        main,
        [
            "alerts",
            "add",
            "--name",
            "x",
            "--kind",
            "no_events",
            "--param",
            "hours=-3",
            "--channel",
            "email",
            "--target",
            "a@b.example",
        ],
    )
    assert bad.exit_code == 2 and "--param hours" in bad.output
    ok = runner.invoke(
        main,
        [
            "alerts",
            "add",
            "--name",
            "quiet",
            "--kind",
            "no_events",
            "--param",
            "hours=6",
            "--channel",
            "email",
            "--target",
            "a@b.example",
        ],
    )
    assert ok.exit_code == 0, ok.output
    listed = runner.invoke(main, ["alerts", "list"])
    assert "quiet: no events received for 6 hours" in listed.output
    assert runner.invoke(main, ["alerts", "disable", "1"]).exit_code == 0
    assert runner.invoke(main, ["alerts", "disable", "99"]).exit_code == 1

"""The dashboard's /alerts and /reports pages over HTTP, on SQLite and PostgreSQL: the add form
(errors naming the field), enable and disable, the history with delivery status, roles, and
reports listed, made now and downloaded."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from dashboard_helpers import Clients, elements, form_value, one

from rfmflow.alerts.rules import Occurrence
from rfmflow.alerts.store import get_rule, record_occurrence
from rfmflow.service.db.engine import run_write


@pytest.fixture(autouse=True)
def no_alerts_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFMFLOW_ALERTS_INTERVAL", "off")


def test_alerts_page_adds_switches_and_shows_history(clients: Clients) -> None:
    admin = clients.sign_in("admin")
    page = admin.get("/alerts")
    assert page.status_code == 200 and one(page.text, "p", id="no-rules")
    assert one(page.text, "a", href="/alerts")["aria-current"] == "page"
    token = form_value(page.text, "csrf_token")
    form = {
        "csrf_token": token,
        "action": "add",
        "name": "at risk up",
        "kind": "segment_growth",
        "channel": "webhook",
        "target": "https://ops.example/hook",
        "segment": "At Risk",
        "pct": "lots",
        "days": "7",
    }
    bad = admin.post("/alerts", data=form)
    assert bad.status_code == 422
    assert "must be a number" in one(bad.text, "span", id="pct-error")["text"]
    assert one(bad.text, "input", id="pct")["aria-invalid"] == "true"
    assert one(bad.text, "input", id="name")["value"] == "at risk up"  # what was typed stays
    added = admin.post("/alerts", data={**form, "pct": "20"})
    assert added.status_code == 303
    page = admin.get(added.headers["location"])
    row = one(page.text, "tr", data_rule="1")
    assert row["data-enabled"] == "true" and "At Risk grew more than 20% in 7 days" in row["text"]
    off = admin.post("/alerts", data={"csrf_token": token, "action": "disable", "rule_id": "1"})
    assert off.status_code == 303
    assert one(admin.get("/alerts").text, "tr", data_rule="1")["data-enabled"] == "false"

    engine = clients.server.engine
    with engine.connect() as conn:
        rule = get_rule(conn, 1)
    occurrence = Occurrence("run:7", "At Risk: customers grew +30.0% in 7 days", "100 → 130")
    run_write(engine, lambda c: record_occurrence(c, rule, occurrence, at=datetime.now(UTC)))
    history = admin.get("/alerts").text
    event = one(history, "tr", data_event="1")
    assert event["data-status"] == "pending" and "grew +30.0%" in event["text"]

    analyst = clients.sign_in("analyst")
    seen = analyst.get("/alerts")
    assert seen.status_code == 200 and not elements(seen.text, "form", id="add-rule")
    token = form_value(seen.text, "csrf_token")
    assert (
        analyst.post("/alerts", data={"csrf_token": token, "action": "enable", "rule_id": "1"}).status_code
        == 403
    )
    assert clients.sign_in("agent").get("/alerts").status_code == 403


def test_reports_page_makes_lists_and_downloads(clients: Clients) -> None:
    admin = clients.sign_in("admin")
    page = admin.get("/reports")
    assert page.status_code == 200 and one(page.text, "code", id="schedule")["text"] == "weekly mon 08:00"
    made = admin.post("/reports", data={"csrf_token": form_value(page.text, "csrf_token")})
    assert made.status_code == 303
    listed = admin.get(made.headers["location"]).text
    row = one(listed, "tr", data_report="1")
    assert "dashboard" in row["text"]
    download = admin.get("/reports/1.html")
    assert download.status_code == 200 and "attachment" in download.headers["content-disposition"]
    assert download.text.startswith("<!doctype html>")
    assert "attachment" not in admin.get("/reports/1.html?view=1").headers.get("content-disposition", "")
    assert admin.get("/reports/9.html").status_code == 404
    analyst = clients.sign_in("analyst")
    assert analyst.get("/reports/1.html").status_code == 200
    token = form_value(analyst.get("/reports").text, "csrf_token")
    assert analyst.post("/reports", data={"csrf_token": token}).status_code == 403

"""/alerts and /reports in the real headless Chromium (the session's browser, see
``browser_helpers``): add a rule through the form, make a report, screenshots at desktop width
in ``artifacts/screenshots/``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from browser_helpers import DESKTOP, no_overflow, shoot, signed_in_page
from dashboard_helpers import seed
from service_helpers import Server

from rfmflow.alerts.evaluation import evaluate_rules
from rfmflow.service.db.engine import run_write

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def test_alerts_and_reports_pages_in_the_browser(browser: Any, server: Server) -> None:
    seed(server, customers=120)
    page = signed_in_page(browser, server, "admin", DESKTOP)
    page.goto(server.url + "/alerts")
    page.fill("#name", "At Risk grows")
    page.select_option("#kind", "segment_growth")
    page.select_option("#channel", "email")
    page.fill("#target", "ops@shop.example")
    page.fill("#segment", "At Risk")
    page.fill("#pct", "1")
    page.fill("#days", "3")
    page.click("#add-button")
    page.wait_for_selector("#notice")
    assert page.locator("#rules tr[data-rule]").count() == 1
    fired = run_write(server.engine, lambda c: evaluate_rules(c, datetime.now(UTC)))
    page.goto(server.url + "/alerts")
    assert page.locator("#events tr[data-event]").count() == len(fired)
    no_overflow(page)
    shoot(page, "alerts-desktop")
    page.goto(server.url + "/reports")
    page.click("#make-report")
    page.wait_for_selector("#reports tr[data-report]")
    no_overflow(page)
    shoot(page, "reports-desktop")
    page.goto(server.url + "/reports/1.html?view=1")
    shoot(page, "report-page-desktop")
    assert page.errors == []
    page.context.close()

"""The automation pages in a real headless Chromium: sign in, open the workflows, pause one,
open a broadcast's results, at desktop and phone width (no sideways overflow), with
screenshots in ``artifacts/screenshots/``. SQLite only (the HTTP tests cover both databases)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from browser_helpers import DESKTOP, PHONE, no_overflow, shoot, signed_in_page
from dashboard_helpers import Clients
from service_helpers import Server
from test_dashboard_automation import WORKFLOW, seed_automation

from rfmflow.service.settings import Settings

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@pytest.fixture
def settings(database: Any, tmp_path: Path) -> Settings:
    made: Settings = database.settings(tmp_path, broadcast_confirm_above=5)
    return made


def test_pause_a_workflow_and_read_a_broadcast(browser: Any, server: Server, clients: Clients) -> None:
    seeded = seed_automation(server, clients)
    api = clients.api("admin")
    bid = seeded["broadcast"]
    results = api.get(f"/v1/broadcasts/{bid}/results").json()
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = signed_in_page(browser, server, "admin", viewport)
        for path, name in (
            ("/workflows", "workflows"),
            (f"/workflows/{WORKFLOW}", "workflow"),
            ("/workflows/new?template=at-risk-win-back", "workflow-new"),
            ("/broadcasts", "broadcasts"),
            (f"/broadcasts/{bid}", "broadcast"),
            ("/broadcasts/new", "broadcast-new"),
            (f"/customers/{seeded['buyer']}", "customer-automation"),
        ):
            page.goto(server.url + path)
            no_overflow(page)
            shoot(page, f"{name}-{label}")
        assert page.errors == []
        page.context.close()

    page = signed_in_page(browser, server, "admin", DESKTOP)
    page.click("nav a[href='/workflows']")
    page.click(f"#workflows a[href='/workflows/{WORKFLOW}']")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#pause-button")
    page.wait_for_url(f"**/workflows/{WORKFLOW}?done=pause")
    assert page.locator("#notice").inner_text() == "workflow paused"
    assert api.get(f"/v1/workflows/{WORKFLOW}").json()["status"] == "paused"
    assert page.locator("#resume-button").is_visible()
    shoot(page, "workflow-paused-desktop")

    page.click("nav a[href='/broadcasts']")
    page.click(f"#broadcasts a[href='/broadcasts/{bid}']")
    page.wait_for_url(f"**/broadcasts/{bid}")
    total = page.locator("#by-segment tfoot td[data-field=delivered]").inner_text()
    assert total == f"{results['totals']['delivered']:,}"
    assert page.locator("svg.bars g[data-measure=delivered]").count() == len(results["by_segment"])
    assert page.errors == []
    page.context.close()

"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright with
``executable_path``; no browser download): sign in, every page, a drill-down, the scheme
editor, numbers against the API, phone width, and screenshots in ``artifacts/screenshots/``.

The browser is started once for the session. Without Chromium these tests skip, except when
``RFMFLOW_REQUIRE_BROWSER=1`` (``scripts/test`` sets it), where that is a failure. They run on
SQLite only: the HTTP tests of the same pages run on both databases.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import Clients, seed
from service_helpers import Server

CHROMIUM = os.environ.get("RFMFLOW_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def _missing(reason: str) -> None:
    if os.environ.get("RFMFLOW_REQUIRE_BROWSER") == "1":
        pytest.fail(f"the browser tests are required (RFMFLOW_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def seeded(server: Server) -> Server:
    seed(server)
    return server


def _page(browser: Any, server: Server, role: str, viewport: dict[str, int], *, shot: str = "") -> Any:
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    # script errors only: a 4xx page (a form's validation answer) logs "Failed to load resource"
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.errors = errors
    page.goto(server.url + "/login")
    if shot:
        _shot(page, shot)
    page.fill("#api_key", server.keys[role])
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _no_overflow(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"{page.url}: the page is {width}px wide"


def test_pages_drill_down_and_phone_width(browser: Any, seeded: Server, clients: Clients) -> None:
    api = clients.api("analyst")
    segments = {s["name"]: s["customers"] for s in api.get("/v1/segments").json()["segments"]}
    customer = "c00007"
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = _page(browser, seeded, "admin", viewport, shot=f"login-{label}")
        assert page.url == seeded.url + "/"
        for path, name in (
            ("/", "overview"),
            ("/customers", "customers"),
            (f"/customers/{customer}", "customer"),
        ):
            page.goto(seeded.url + path)
            _no_overflow(page)
            _shot(page, f"{name}-{label}")
        page.goto(seeded.url + "/scheme")
        _no_overflow(page)
        _shot(page, f"scheme-{label}")
        assert page.errors == []
        page.context.close()

    page = _page(browser, seeded, "admin", DESKTOP)
    # a heat-map cell → the customers with that R and F score, as many as the cell says
    cell = page.locator("svg.heatmap a.cell").first
    expected = int(cell.get_attribute("data-customers"))
    r, f = cell.get_attribute("data-r"), cell.get_attribute("data-f")
    cell.click()
    page.wait_for_url(re.compile(r"/customers\?"))
    shown = int(page.locator("#result-count").get_attribute("data-total"))
    assert shown == expected
    listed = api.get("/v1/segments").json()["customers"]
    assert listed == sum(segments.values())
    assert page.locator("#customers tbody tr").count() == min(expected, 50)
    assert f"r_score_min={r}" in page.url and f"f_score_max={f}" in page.url

    # a segment's count → its list, with the count the API gives
    page.goto(seeded.url + "/")
    page.click("#segments tr[data-segment='At Risk'] a.count")
    page.wait_for_url(re.compile(r"segment=At"))
    assert int(page.locator("#result-count").get_attribute("data-total")) == segments["At Risk"]
    # then to a customer of it
    page.locator("#customers tbody tr a").first.click()
    page.wait_for_url(re.compile(r"/customers/c\d+"))
    assert page.locator("#segment").inner_text() == "At Risk"
    # a transition cell → the customers who moved
    page.goto(seeded.url + "/")
    move = page.locator("svg.matrix a.move").first
    moved = int(move.get_attribute("data-customers"))
    move.click()
    page.wait_for_url(re.compile(r"/moves\?"))
    assert int(page.locator("#moves-total").get_attribute("data-customers")) == moved
    assert page.locator("#movers li").count() == min(moved, 100)
    _shot(page, "moves-desktop")
    assert page.errors == []
    page.context.close()


def test_scheme_editor_in_the_browser(browser: Any, seeded: Server, clients: Clients) -> None:
    api = clients.api("admin")
    page = _page(browser, seeded, "admin", DESKTOP)
    page.goto(seeded.url + "/scheme")
    original = page.input_value("#yaml")
    page.fill("#yaml", original.replace("r_score == 5 and f_score >= 4", "r_score == 5 and fscore >= 4"))
    page.click("#preview-button")
    page.wait_for_selector("#problems")
    problem = page.locator("#problems li").first
    line = next(
        i for i, text in enumerate(original.splitlines(), start=1) if "r_score == 5 and f_score >= 4" in text
    )
    assert problem.get_attribute("data-line") == str(line)
    assert "unknown name 'fscore'" in problem.inner_text()
    # the editor selects the line at fault
    selected = page.evaluate(
        "(() => { const t = document.getElementById('yaml'); "
        "return t.value.substring(t.selectionStart, t.selectionEnd); })()"
    )
    assert "fscore >= 4" in selected
    _shot(page, "scheme-error-desktop")

    changed = original.replace("r_score == 5 and f_score >= 4", "r_score >= 4 and f_score >= 4")
    page.fill("#yaml", changed)
    page.click("#preview-button")
    page.wait_for_selector("#preview-counts")
    dry = api.put("/v1/scheme", params={"dry_run": "true"}, content=changed).json()
    proposed = {
        row.get_attribute("data-segment"): int(row.locator(".proposed").inner_text().replace(",", ""))
        for row in page.locator("#preview-counts tbody tr").all()
    }
    assert proposed == dry["proposed"]["segment_counts"]
    _shot(page, "scheme-preview-desktop")

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#apply-button")
    page.wait_for_selector("#notice")
    assert page.locator("#active-version").inner_text() == "2"
    assert api.get("/v1/scheme").json()["version"] == 2
    assert page.errors == []
    page.context.close()

    # phone width: the editor and its messages fit
    page = _page(browser, seeded, "admin", PHONE)
    page.goto(seeded.url + "/scheme")
    page.fill("#yaml", "name: x\nsegments: [\n")
    page.click("#preview-button")
    page.wait_for_selector("#problems")
    _no_overflow(page)
    _shot(page, "scheme-error-phone")
    page.context.close()

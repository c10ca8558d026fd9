"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright with
``executable_path``; no browser download): sign in, every page, a drill-down, the scheme
editor, numbers against the API, phone width, and screenshots in ``artifacts/screenshots/``.

The browser is started once per test module (conftest.py). Without Chromium these tests skip, except when
``RFMFLOW_REQUIRE_BROWSER=1`` (``scripts/test`` sets it), where that is a failure. They run on
SQLite only: the HTTP tests of the same pages run on both databases.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from browser_helpers import DESKTOP, PHONE, no_overflow, shoot, signed_in_page
from dashboard_helpers import Clients, seed
from service_helpers import Server

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@pytest.fixture
def seeded(server: Server) -> Server:
    seed(server)
    return server


def test_pages_drill_down_and_phone_width(browser: Any, seeded: Server, clients: Clients) -> None:
    api = clients.api("analyst")
    segments = {s["name"]: s["customers"] for s in api.get("/v1/segments").json()["segments"]}
    customer = "c00007"
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = signed_in_page(browser, seeded, "admin", viewport, shot=f"login-{label}")
        assert page.url == seeded.url + "/"
        for path, name in (
            ("/", "overview"),
            ("/customers", "customers"),
            (f"/customers/{customer}", "customer"),
        ):
            page.goto(seeded.url + path)
            no_overflow(page)
            shoot(page, f"{name}-{label}")
        page.goto(seeded.url + "/scheme")
        no_overflow(page)
        shoot(page, f"scheme-{label}")
        assert page.errors == []
        page.context.close()

    page = signed_in_page(browser, seeded, "admin", DESKTOP)
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
    shoot(page, "moves-desktop")
    assert page.errors == []
    page.context.close()


def test_scheme_editor_in_the_browser(browser: Any, seeded: Server, clients: Clients) -> None:
    api = clients.api("admin")
    page = signed_in_page(browser, seeded, "admin", DESKTOP)
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
    shoot(page, "scheme-error-desktop")

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
    shoot(page, "scheme-preview-desktop")

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#apply-button")
    page.wait_for_selector("#notice")
    assert page.locator("#active-version").inner_text() == "2"
    assert api.get("/v1/scheme").json()["version"] == 2
    assert page.errors == []
    page.context.close()

    # phone width: the editor and its messages fit
    page = signed_in_page(browser, seeded, "admin", PHONE)
    page.goto(seeded.url + "/scheme")
    page.fill("#yaml", "name: x\nsegments: [\n")
    page.click("#preview-button")
    page.wait_for_selector("#problems")
    no_overflow(page)
    shoot(page, "scheme-error-phone")
    page.context.close()


def test_a_user_signs_in_with_a_password_in_the_browser(browser: Any, server: Server) -> None:
    from datetime import UTC, datetime

    from rfmflow.service.db.engine import write_transaction
    from rfmflow.service.users import create_user

    with write_transaction(server.engine) as conn:
        create_user(conn, "ana", "correct horse battery", "agent", actor="test", now=datetime.now(UTC))
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.goto(server.url + "/login")
    shoot(page, "login-phone")
    no_overflow(page)
    page.fill("#username", "ana")
    page.fill("#password", "wrong password")
    page.click("#password-form button[type=submit]")
    assert "wrong user name or password" in page.locator("#login-error").inner_text()
    page.fill("#username", "ana")
    page.fill("#password", "correct horse battery")
    page.click("#password-form button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)
    assert page.url.endswith("/customers")  # an agent's start page
    assert "ana · agent" in page.content()  # (hidden in the header at phone width)
    context.close()

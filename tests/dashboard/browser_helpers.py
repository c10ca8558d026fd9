"""The dashboard's browser tests' helpers: Debian's Chromium driven by Playwright (no browser
download), a signed-in page, screenshots in ``artifacts/screenshots/`` and a check that a page
does not scroll sideways. The ``browser`` fixture (one per test module) is in ``conftest.py``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_helpers import Server

CHROMIUM = os.environ.get("RFMFLOW_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def missing(reason: str) -> None:
    """Skip, or fail under ``RFMFLOW_REQUIRE_BROWSER=1`` (``scripts/test`` sets it)."""
    if os.environ.get("RFMFLOW_REQUIRE_BROWSER") == "1":
        pytest.fail(f"the browser tests are required (RFMFLOW_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(reason)


def launch() -> Iterator[Any]:
    """Chromium for a test module (the ``browser`` fixture's body)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install -e '.[dev]')")
    if not os.access(CHROMIUM, os.X_OK):
        missing(f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def signed_in_page(
    browser: Any, server: Server, role: str, viewport: dict[str, int], *, shot: str = ""
) -> Any:
    """A new page signed in with ``role``'s API key; script errors are kept in ``page.errors``."""
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
        shoot(page, shot)
    page.click("details.key-signin summary")  # the key form sits under the user name form
    page.fill("#api_key", server.keys[role])
    page.click("#key-form button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)
    return page


def shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def no_overflow(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"{page.url}: the page is {width}px wide"

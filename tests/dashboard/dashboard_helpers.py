"""Helpers for the dashboard tests: seeded data, a signed-in client, reading pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import httpx
from service_helpers import Server

from rfmflow.service.demo_data import load_demo
from rfmflow.service.scoring_jobs import run_now

DEMO_CUSTOMERS = 240
RUN_DAYS_AGO = (20, 10, 5)


def seed(server: Server, *, customers: int = DEMO_CUSTOMERS) -> None:
    """Demo events (every segment populated), scoring runs some days ago and one now."""
    load_demo(server.engine, server.settings, customers=customers)
    now = datetime.now(UTC)
    for days in RUN_DAYS_AGO:
        run_now(server.engine, server.settings, trigger="api", actor="test", now=now - timedelta(days=days))
    run_now(server.engine, server.settings, trigger="api", actor="test")


class Clients:
    """Browser-like HTTP clients of one server (cookies, no API key header), closed at the end."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._open: list[httpx.Client] = []

    def anonymous(self) -> httpx.Client:
        client = httpx.Client(base_url=self.server.url, timeout=30)
        self._open.append(client)
        return client

    def sign_in(self, role: str = "admin") -> httpx.Client:
        return sign_in(self.server, role, self.anonymous())

    def api(self, role: str = "admin") -> httpx.Client:
        client = self.server.client(role)
        self._open.append(client)
        return client

    def close(self) -> None:
        for client in self._open:
            client.close()


def sign_in(server: Server, role: str, client: httpx.Client) -> httpx.Client:
    """``client`` signed in to the dashboard with ``role``'s key."""
    page = client.get("/login")
    token = form_value(page.text, "login_token")
    answer = client.post("/login", data={"api_key": server.keys[role], "login_token": token, "next": "/"})
    assert answer.status_code == 303, answer.text
    return client


def form_value(html: str, name: str) -> str:
    found = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', html)
    assert found is not None, f"no field {name!r} in the page"
    return found.group(1)


class _Finder(HTMLParser):
    """Collects the attributes and text of elements with an id or a data-* attribute."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[dict[str, Any]] = []
        self._open: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = {"tag": tag, **{k: (v or "") for k, v in attrs}, "text": ""}
        self.elements.append(element)
        if tag not in ("input", "br", "meta", "link", "rect", "line", "polygon"):
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i]["tag"] == tag:
                del self._open[i:]
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element["text"] += data


def elements(html: str, tag: str | None = None, **attrs: str) -> list[dict[str, Any]]:
    """Elements of ``html`` with these attributes (``class_`` for class; ``None`` value: present)."""
    finder = _Finder()
    finder.feed(html)
    wanted = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}
    return [
        e
        for e in finder.elements
        if (tag is None or e["tag"] == tag)
        and all(k in e and (v is None or e[k] == v) for k, v in wanted.items())
    ]


def one(html: str, tag: str | None = None, **attrs: str) -> dict[str, Any]:
    found = elements(html, tag, **attrs)
    assert len(found) == 1, f"expected one {tag} {attrs}, found {len(found)}"
    return found[0]

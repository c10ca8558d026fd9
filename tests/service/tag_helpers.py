"""Helpers for the tag tests: a scheme with tags, events, HTTP clients per role, reads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from service_helpers import Server
from sqlalchemy.engine import Engine

from rfmflow.schemes import builtin_text
from rfmflow.service.db.tables import customer_tags, tag_changes

NOW = datetime.now(UTC)


def tag_scheme(*, lapsed: bool = True, extra: str = "") -> str:
    """telegram-scrm (fixed thresholds: scored live at once) with tags of our own.

    ``Spender``: spent more than 50; ``50% Club``: more than 200 (a name LIKE would misread);
    ``Lapsed``: no interaction for over 30 days."""
    text = builtin_text("telegram-scrm")
    head = text[: text.index("tags:")]
    tail = text[text.index("health:") :]
    rules = [
        "  - {name: Spender, group: Value, when: m_score >= 3}",
        "  - {name: '50% Club', group: Value, when: m_score >= 4, description: spent over 200}",
    ]
    if lapsed:
        rules.append("  - {name: Lapsed, group: RFM Segmentation, when: r_score <= 2}")
    return head + "tags:\n" + "\n".join(rules) + "\n" + extra + tail


def buy(customer: str, amount: str, days_ago: float, event_id: str | None = None) -> dict[str, Any]:
    when = NOW - timedelta(days=days_ago)
    return {
        "event_id": event_id or f"{customer}-{amount}-{days_ago}",
        "customer_id": customer,
        "type": "purchase",
        "occurred_at": when.isoformat(),
        "amount": amount,
    }


def post_events(client: httpx.Client, items: list[dict[str, Any]]) -> None:
    answer = client.post("/v1/events", json={"batch": items})
    assert answer.status_code == 200, answer.text
    assert answer.json()["rejected"] == 0, answer.text


def put_scheme(client: httpx.Client, text: str) -> dict[str, Any]:
    answer = client.put("/v1/scheme", content=text, headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def run(client: httpx.Client) -> int:
    answer = client.post("/v1/runs")
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def held(engine: Engine) -> dict[tuple[str, str], tuple[str, str]]:
    """(customer, tag) -> (kind, added_by) of every customer_tags row."""
    ct = customer_tags.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ct.customer_id, ct.tag, ct.kind, ct.added_by)).all()
    return {(r.customer_id, r.tag): (r.kind, r.added_by) for r in rows}


def changes(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(tag_changes).order_by(tag_changes.c.id)).mappings().all()
    return [dict(r) for r in rows]


def customer_tags_of(client: httpx.Client, customer: str) -> dict[str, Any]:
    answer = client.get(f"/v1/customers/{customer}/tags")
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def names(body: dict[str, Any]) -> set[str]:
    return {t["tag"] for t in body["tags"]}


class Clients(dict[str, httpx.Client]):
    """One HTTP client per role, closed after the test."""

    def __init__(self, server: Server) -> None:
        super().__init__()
        self.server = server

    def __missing__(self, role: str) -> httpx.Client:
        client = self.server.client(role)
        self[role] = client
        return client


def open_clients(server: Server) -> Iterator[Clients]:
    """For a ``clients`` fixture: one client per role, all closed at the end."""
    made = Clients(server)
    try:
        yield made
    finally:
        for client in made.values():
            client.close()


def setup_shop(clients: Clients) -> httpx.Client:
    """Three customers: c1 spent 60 forty days ago (Spender, Lapsed), c2 spent 10 today
    (nothing), c3 spent 300 today (Spender, 50% Club)."""
    admin = clients["admin"]
    put_scheme(admin, tag_scheme())
    post_events(admin, [buy("c1", "60", 40), buy("c2", "10", 0.01), buy("c3", "300", 0.01)])
    return admin

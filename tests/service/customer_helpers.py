"""A small shop for the customer list, export and snapshot tests, and a plain-Python model of
the list's filters and order to compare the API with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import sqlalchemy as sa
from service_helpers import Server

from rfmflow.service.db.tables import customer_tags

NOW = datetime.now(UTC)
AMOUNTS = ("10.00", "20.00", "20.00", "55.50")  # few distinct values: many ties
NAMES = ("Anna Smith", "anna Schmidt", "Ben Okafor", "Émile Zola", "Carla Rossi")
N = 40


def shop_events() -> list[dict[str, Any]]:
    """Purchases by c00..c35 (ties in recency, frequency and spend); c36..c39 only visit."""
    out: list[dict[str, Any]] = []
    for i in range(N):
        cid = f"c{i:02d}"
        if i >= 36:
            out.append(
                {
                    "event_id": f"{cid}-visit",
                    "customer_id": cid,
                    "type": "visit",
                    "occurred_at": (NOW - timedelta(days=3 + i % 3)).isoformat(),
                }
            )
            continue
        for j in range(1 + i % 3):
            out.append(
                {
                    "event_id": f"{cid}-{j}",
                    "customer_id": cid,
                    "type": "purchase",
                    "occurred_at": (NOW - timedelta(days=(i % 5) * 40 + j * 7 + 1)).isoformat(),
                    "amount": AMOUNTS[(i + j) % len(AMOUNTS)],
                    "order_id": f"o-{cid}-{j}",
                }
            )
    return out


def tag_of(i: int) -> list[str]:
    tags = []
    if i % 5 == 0:
        tags.append("vip")
    if i % 3 == 0:
        tags.append("newsletter")
    if i % 4 == 1:
        tags.append("churn-risk")
    return tags


def seed(server: Server, *, run: bool = True) -> None:
    """Events over HTTP, profiles over HTTP, a scoring run; tags written straight to
    ``customer_tags`` (the tag operations are another module's)."""
    with server.client("ingest") as ingest:
        sent = ingest.post("/v1/events", json={"batch": shop_events()})
        assert sent.status_code == 200 and sent.json()["rejected"] == 0, sent.text
    with server.client("admin") as admin:
        for i in range(0, N, 2):
            name = NAMES[i % len(NAMES)]
            email = f"{name.split()[0].lower()}.{i}@Example.com"
            answer = admin.patch(
                f"/v1/customers/c{i:02d}/profile", json={"traits": {"name": name, "email": email}}
            )
            assert answer.status_code == 200, answer.text
        if run:
            assert admin.post("/v1/runs").status_code == 201
    rows = [
        {"customer_id": f"c{i:02d}", "tag": tag, "kind": "manual", "added_at": NOW, "added_by": "test"}
        for i in range(N)
        for tag in tag_of(i)
    ]
    with server.engine.begin() as conn:
        conn.execute(sa.insert(customer_tags), rows)


def pages(client: httpx.Client, path: str, params: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """Every item of a cursor-paged list, asserting no item comes twice."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        answer = client.get(path, params={**params, "limit": limit, **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert len(body["items"]) <= limit
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert len(body["items"]) == limit
    keys = [i["id"] if "id" in i else i["customer_id"] for i in items]
    assert len(keys) == len(set(keys)), "an item came twice"
    return items


RANGES = {
    "r_score": "r_score",
    "f_score": "f_score",
    "m_score": "m_score",
    "recency": "recency_days",
    "frequency": "frequency",
    "monetary": "monetary",
}


def _number(value: Any) -> Any:
    return None if value is None else Decimal(str(value))


def matches(item: dict[str, Any], params: dict[str, Any]) -> bool:
    """The list's filters, written plainly."""

    def listed(name: str) -> list[str]:
        value = params.get(name, [])
        return [value] if isinstance(value, str) else list(value)

    if listed("segment") and item["segment"] not in listed("segment"):
        return False
    if listed("lifecycle") and item["lifecycle"] not in listed("lifecycle"):
        return False
    tags = set(item["tags"])
    if not set(listed("tag")) <= tags:
        return False
    if listed("tag_any") and not tags & set(listed("tag_any")):
        return False
    if tags & set(listed("tag_none")):
        return False
    for name, field in RANGES.items():
        value = _number(item[field])
        for end, ok in (("min", lambda v, b: v >= b), ("max", lambda v, b: v <= b)):
            bound = params.get(f"{name}_{end}")
            if bound is not None and (value is None or not ok(value, Decimal(str(bound)))):
                return False
    q = params.get("q")
    if q is not None:
        folded = q.lower()
        found = item["customer_id"].startswith(q)
        found |= any((item[f] or "").lower().startswith(folded) for f in ("email", "name"))
        if not found:
            return False
    return True


SORT_FIELDS = {
    "customer_id": None,
    "recency": "recency_days",
    "frequency": "frequency",
    "monetary": "monetary",
    "r_score": "r_score",
    "f_score": "f_score",
    "m_score": "m_score",
    "last_activity": "last_activity",
}


def expected_order(items: list[dict[str, Any]], sort: str, order: str) -> list[str]:
    """Sort value then customer id, both in ``order``; empty values last either way."""
    field = SORT_FIELDS[sort]
    desc = order == "desc"
    if field is None:
        return sorted((i["customer_id"] for i in items), reverse=desc)

    def value(item: dict[str, Any]) -> Any:
        raw = item[field]
        return Decimal(raw) if field == "monetary" and raw is not None else raw

    valued = sorted((i for i in items if i[field] is not None), key=lambda i: (value(i), i["customer_id"]))
    empty = sorted(i["customer_id"] for i in items if i[field] is None)
    if desc:
        valued.reverse()
        empty.reverse()
    return [i["customer_id"] for i in valued] + empty

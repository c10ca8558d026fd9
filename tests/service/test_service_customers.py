"""The customer list (filters, sorting, keyset pages), one customer, and a customer's segment
on a day, through real HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from customer_helpers import NOW, N, expected_order, matches, pages, seed
from service_helpers import Server

from rfmflow.service.customer_search import SORTS, Cursor
from rfmflow.service.db.tables import customer_scores, customer_tags
from rfmflow.service.scoring import run_scoring

FILTERS: list[dict[str, Any]] = [
    {},
    {"segment": "Champions"},
    {"segment": ["At Risk", "Hibernating", "Lost"]},
    {"tag": "vip"},
    {"tag": ["vip", "newsletter"]},
    {"tag_any": ["vip", "churn-risk"]},
    {"tag_none": ["newsletter"]},
    {"tag": "newsletter", "tag_none": ["churn-risk", "vip"]},
    {"r_score_min": 3},
    {"r_score_min": 2, "r_score_max": 4, "f_score_max": 2},
    {"m_score_min": 4, "m_score_max": 4},
    {"recency_min": 0, "recency_max": 45},
    {"recency_min": 100},
    {"frequency_min": 2},
    {"frequency_max": 1, "monetary_min": "20"},
    {"monetary_min": "20.005", "monetary_max": "55.5"},
    {"monetary_max": "9.99"},
    {"q": "c1"},
    {"q": "ANNA"},
    {"q": "anna s"},
    {"q": "ben.1"},
    {"q": "Émile"},
    {"q": "zz"},
    {"segment": "Champions", "tag_any": "newsletter", "recency_max": 200, "q": "c"},
]


def universe(server: Server) -> list[dict[str, Any]]:
    with server.client("agent") as agent:
        return pages(agent, "/v1/customers", {}, 1000)


def test_every_scored_customer_is_listed_with_its_fields(server: Server) -> None:
    seed(server)
    everyone = universe(server)
    assert [c["customer_id"] for c in everyone] == [f"c{i:02d}" for i in range(N)]
    first = everyone[0]
    assert set(first) == {
        "customer_id", "name", "email", "segment", "rfm", "r_score", "f_score", "m_score", "recency_days",
        "frequency", "monetary", "lifecycle", "tags", "last_activity", "last_purchase_date", "purchases",
        "revenue", "as_of", "scheme_version",
    }  # fmt: skip
    assert first["name"] == "Anna Smith" and first["email"] == "anna.0@Example.com"
    assert (
        first["tags"] == ["newsletter", "vip"]
        and first["monetary"] == "10.00"
        and first["revenue"] == "10.00"
    )
    assert everyone[1]["name"] is None and everyone[1]["tags"] == ["churn-risk"]
    visitor = everyone[-1]
    assert (
        visitor["recency_days"] is None
        and visitor["purchases"] == 0
        and visitor["last_purchase_date"] is None
    )
    with server.engine.connect() as conn:
        stored = dict(conn.execute(sa.select(customer_scores.c.customer_id, customer_scores.c.segment)).all())
    assert {c["customer_id"]: c["segment"] for c in everyone} == stored


@pytest.mark.parametrize("limit", [3, 1000])
def test_filters_combine_as_a_plain_filter_does(server: Server, limit: int) -> None:
    seed(server)
    everyone = universe(server)
    with server.client("analyst") as client:
        for params in FILTERS:
            found = pages(client, "/v1/customers", params, limit)
            wanted = [c["customer_id"] for c in everyone if matches(c, params)]
            assert [c["customer_id"] for c in found] == wanted, params
            total = client.get("/v1/customers", params={**params, "limit": 1}).json()["total"]
            assert total == len(wanted), params
    assert any(matches(c, {"q": "Émile"}) for c in everyone)  # the cases are not all empty
    assert sum(bool([c for c in everyone if matches(c, p)]) for p in FILTERS) >= len(FILTERS) - 2


def test_every_sort_both_ways_visits_each_match_once(server: Server) -> None:
    seed(server)
    everyone = universe(server)
    filtered = {"tag_none": "churn-risk"}
    with server.client("agent") as client:
        for sort in SORTS:
            for order in ("asc", "desc"):
                for params, base in (
                    ({}, everyone),
                    (filtered, [c for c in everyone if matches(c, filtered)]),
                ):
                    found = pages(client, "/v1/customers", {**params, "sort": sort, "order": order}, 4)
                    assert [c["customer_id"] for c in found] == expected_order(base, sort, order), (
                        sort,
                        order,
                    )
    # the sort values really tie: several customers share each recency, frequency and spend
    for field in ("recency_days", "frequency", "monetary"):
        values = [c[field] for c in everyone if c[field] is not None]
        assert len(set(values)) < len(values) / 3


def test_pages_stay_consistent_when_customers_change_between_them(server: Server) -> None:
    """A keyset page starts after the last row seen: a new customer before it does not shift
    the pages (OFFSET would repeat a row)."""
    seed(server)
    with server.client("agent") as client:
        first = client.get("/v1/customers", params={"limit": 10}).json()
        with server.engine.begin() as conn:
            row = dict(
                conn.execute(sa.select(customer_scores).where(customer_scores.c.customer_id == "c05"))
                .one()
                ._mapping
            )
            conn.execute(sa.insert(customer_scores).values({**row, "customer_id": "c00a"}))
        second = client.get("/v1/customers", params={"limit": 10, "cursor": first["next_cursor"]}).json()
    assert [c["customer_id"] for c in second["items"]] == [f"c{i:02d}" for i in range(10, 20)]
    assert first["total"] == N and second["total"] is None


def test_total_on_the_first_page_always_or_never(server: Server) -> None:
    seed(server)
    with server.client("agent") as client:
        first = client.get("/v1/customers", params={"limit": 5, "tag": "vip"}).json()
        assert first["total"] == 8 and len(first["items"]) == 5
        later = client.get("/v1/customers", params={"limit": 5, "tag": "vip", "cursor": first["next_cursor"]})
        assert later.json()["total"] is None and len(later.json()["items"]) == 3
        assert later.json()["next_cursor"] is None
        exact = client.get(
            "/v1/customers",
            params={"limit": 5, "tag": "vip", "cursor": first["next_cursor"], "total": "exact"},
        )
        assert exact.json()["total"] == 8
        assert client.get("/v1/customers", params={"total": "none"}).json()["total"] is None


def test_search_prefixes_are_literal(server: Server) -> None:
    """``%`` and ``_`` in ``q`` are characters, not patterns; the id prefix is case-sensitive."""
    seed(server)
    with server.engine.begin() as conn:
        row = dict(
            conn.execute(sa.select(customer_scores).where(customer_scores.c.customer_id == "c01"))
            .one()
            ._mapping
        )
        for cid in ("x_b", "xyb", "x%c", "Xbc"):
            conn.execute(sa.insert(customer_scores).values({**row, "customer_id": cid}))
    with server.client("agent") as client:

        def ids(q: str) -> list[str]:
            return [c["customer_id"] for c in client.get("/v1/customers", params={"q": q}).json()["items"]]

        assert ids("x_") == ["x_b"]
        assert ids("x%") == ["x%c"]
        assert ids("x") == ["x%c", "x_b", "xyb"]
        assert ids("X") == ["Xbc"]


def test_bad_parameters_are_422_naming_the_parameter(server: Server) -> None:
    seed(server)
    with server.client("agent") as client:

        def problem(params: dict[str, Any]) -> tuple[str, str]:
            answer = client.get("/v1/customers", params=params)
            assert answer.status_code == 422, (params, answer.text)
            detail = answer.json()["detail"][0]
            return detail["loc"][-1], detail["msg"]

        assert problem({"sort": "age"})[0] == "sort"
        assert problem({"order": "up"})[0] == "order"
        assert problem({"limit": 0})[0] == "limit"
        assert problem({"limit": 1001})[0] == "limit"
        assert problem({"r_score_min": 4, "r_score_max": 2}) == (
            "r_score_min",
            "must not be greater than r_score_max (4 > 2)",
        )
        assert problem({"recency_min": 50, "recency_max": 10})[0] == "recency_min"
        assert problem({"monetary_min": "5", "monetary_max": "1.5"})[0] == "monetary_min"
        assert problem({"monetary_min": "lots"})[0] == "monetary_min"
        assert problem({"recency_max": -1})[0] == "recency_max"
        assert problem({"cursor": "%%%"}) == ("cursor", "not a cursor this API returned")
        assert problem({"cursor": "bm90IGpzb24"})[0] == "cursor"  # base64 of "not json"
        assert problem({"q": " "})[0] == "q"
        loc, msg = problem({"segment": ["Champions", "Nobody"]})
        assert loc == "segment" and "'Nobody'" in msg and "Champions" in msg
        by_money = client.get("/v1/customers", params={"sort": "monetary", "limit": 2}).json()["next_cursor"]
        loc, msg = problem({"sort": "recency", "cursor": by_money})
        assert loc == "cursor" and "sort=monetary" in msg
        forged = Cursor("monetary", "asc", False, None, "c01").encode()  # a value is missing
        assert problem({"sort": "monetary", "cursor": forged})[0] == "cursor"


def test_roles(server: Server) -> None:
    seed(server)
    for role in ("admin", "analyst", "agent"):
        with server.client(role) as client:
            assert client.get("/v1/customers").status_code == 200
            assert client.get("/v1/customers/c01").status_code == 200
            assert client.get("/v1/customers/c01/segment").status_code == 200
    with server.client("ingest") as client:
        for path in ("/v1/customers", "/v1/customers/c01", "/v1/customers/c01/segment"):
            denied = client.get(path)
            assert denied.status_code == 403 and "agent" in denied.json()["detail"]
    with server.client(None) as client:
        assert client.get("/v1/customers").status_code == 401


def test_one_customer_has_everything(server: Server) -> None:
    seed(server, run=False)
    with server.client("admin") as admin:
        assert admin.post("/v1/runs").status_code == 201
    with server.client("agent") as agent:
        body = agent.get("/v1/customers/c00").json()
        # the aggregates, as before
        assert body["customer_id"] == "c00" and body["purchases"] == 1 and body["monetary"] == "10.00"
        assert body["currency"] == "USD" and body["event_counts"]["purchase"] == 1
        # and everything else
        assert body["profile"]["name"] == "Anna Smith" and body["profile"]["email"] == "anna.0@Example.com"
        assert body["segment"] == body["scores"]["segment"] and body["scores"]["rfm"]
        assert [t["tag"] for t in body["tags"]] == ["newsletter", "vip"] and body["tags"][0][
            "kind"
        ] == "manual"
        assert body["segment_history"][0]["from"] is None and body["segment_history"][0]["cause"] == "run"
        assert [e["event_id"] for e in body["recent_events"]] == ["c00-0"]
        assert (
            body["recent_events"][0]["amount"] == "10.00" and body["recent_events"][0]["type"] == "purchase"
        )

        many = agent.get("/v1/customers/c02").json()["recent_events"]
        assert [e["event_id"] for e in many] == ["c02-0", "c02-1", "c02-2"]  # newest first
        assert [
            e["event_id"]
            for e in agent.get("/v1/customers/c02", params={"events": 1}).json()["recent_events"]
        ] == ["c02-0"]
        assert agent.get("/v1/customers/c02", params={"events": 201}).status_code == 422
        assert agent.get("/v1/customers/c01").json()["profile"] is None

        assert agent.get("/v1/customers/nobody").status_code == 404
    with server.client("admin") as admin:  # a profile without any event
        assert (
            admin.patch("/v1/customers/p-only/profile", json={"traits": {"name": "Zed"}}).status_code == 200
        )
        lonely = admin.get("/v1/customers/p-only").json()
    assert lonely["profile"]["name"] == "Zed" and lonely["scores"] is None and lonely["segment"] is None
    assert lonely["events"] == 0 and lonely["first_event_date"] is None and lonely["recent_events"] == []


def test_segment_on_a_day_after_runs_on_different_days(server: Server) -> None:
    engine, settings = server.engine, server.settings
    seed(server, run=False)
    day1, day2 = NOW - timedelta(days=150), NOW - timedelta(days=20)
    run_scoring(engine, settings, trigger="cli", now=day1)
    run_scoring(engine, settings, trigger="cli", now=day2)
    run_scoring(engine, settings, trigger="cli", now=NOW)
    with server.client("agent") as agent:
        histories = {
            f"c{i:02d}": agent.get(f"/v1/customers/c{i:02d}").json()["segment_history"] for i in range(N)
        }
        moved = [cid for cid, history in histories.items() if len({m["date"] for m in history}) >= 2]
        assert len(moved) >= 5
        for cid in moved:
            history = histories[cid]
            assert history[-1]["from"] is None  # first scored, then moved
            for move in history:
                on = agent.get(f"/v1/customers/{cid}/segment", params={"on": move["date"]}).json()
                assert on == {"customer_id": cid, "date": move["date"], "segment": move["to"]}
            before = (NOW - timedelta(days=400)).date().isoformat()
            assert agent.get(f"/v1/customers/{cid}/segment", params={"on": before}).json()["segment"] is None
            today = agent.get(f"/v1/customers/{cid}/segment").json()
            assert today["segment"] == agent.get(f"/v1/customers/{cid}").json()["segment"]
        assert agent.get("/v1/customers/nobody/segment").status_code == 404
        assert agent.get("/v1/customers/c00/segment", params={"on": "yesterday"}).status_code == 422


def test_a_scheme_whose_m_is_not_money(server: Server) -> None:
    """Under a scheme whose M counts messages, monetary is a number and its bounds are too."""
    from rfmflow.schemes import builtin_text

    seed(server)
    with server.client("admin") as admin:
        changed = admin.put("/v1/scheme", content=builtin_text("telegram-scrm-messages"))
        assert changed.status_code == 200, changed.text
    with server.client("agent") as agent:
        everyone = pages(agent, "/v1/customers", {}, 1000)
        assert all(not isinstance(c["monetary"], str) for c in everyone)
        for params in ({"monetary_min": 1}, {"sort": "monetary", "order": "desc"}):
            found = pages(agent, "/v1/customers", params, 3)
            wanted = [c for c in everyone if matches(c, params)]
            order = (
                expected_order(wanted, "monetary", "desc")
                if "sort" in params
                else [c["customer_id"] for c in wanted]
            )
            assert [c["customer_id"] for c in found] == order


def test_tags_filter_reads_customer_tags(server: Server) -> None:
    """A tag added or removed shows in the list at once (nothing is cached)."""
    seed(server)
    with server.client("agent") as agent:
        assert [
            c["customer_id"] for c in agent.get("/v1/customers", params={"tag": "new-tag"}).json()["items"]
        ] == []
        with server.engine.begin() as conn:
            conn.execute(
                sa.insert(customer_tags).values(
                    customer_id="c07", tag="new-tag", kind="manual", added_at=NOW, added_by="test"
                )
            )
        assert [
            c["customer_id"] for c in agent.get("/v1/customers", params={"tag": "new-tag"}).json()["items"]
        ] == ["c07"]

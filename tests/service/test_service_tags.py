"""Tags over real HTTP on SQLite and PostgreSQL: rule tags that follow runs and purchases,
manual tags, exclusive groups, rule-tag protection, bulk changes, the change feed, audit rows.

Import/export, roles, the CLI and the rebuild comparison are in ``test_service_tags_io.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from service_helpers import Server
from tag_helpers import (
    Clients,
    buy,
    changes,
    customer_tags_of,
    held,
    names,
    open_clients,
    post_events,
    put_scheme,
    run,
    setup_shop,
    tag_scheme,
)

from rfmflow.service.db.tables import audit_log, customer_tags
from rfmflow.service.ingest import ingest_raw
from rfmflow.service.scoring_live import live_rescoring_paused
from rfmflow.service.settings import Settings


@pytest.fixture
def clients(server: Server) -> Iterator[Clients]:
    yield from open_clients(server)


# --- rule tags ---------------------------------------------------------------------------------
def test_rule_tags_follow_runs_with_overwrite_semantics(
    server: Server, clients: Clients, settings: Settings
) -> None:
    admin = setup_shop(clients)
    first = run(admin)
    expected = {("c1", "Spender"), ("c1", "Lapsed"), ("c3", "Spender"), ("c3", "50% Club")}
    assert set(held(server.engine)) == expected
    assert all(kind == "rule" for kind, _ in held(server.engine).values())
    before = changes(server.engine)
    assert {(c["customer_id"], c["tag"]) for c in before if c["change"] == "added"} == expected

    second = run(admin)  # the rules still hold: nothing added twice, nothing recorded
    assert second > first
    assert set(held(server.engine)) == expected
    assert changes(server.engine) == before

    # c1 buys again without a live re-score (an import, say): the next run removes Lapsed
    # (recency 0) and adds 50% Club (spent 360), recording both with the run's id.
    with live_rescoring_paused():
        ingest_raw(server.engine, [buy("c1", "300", 0.01)], settings)
    third = run(admin)
    assert set(held(server.engine)) == expected - {("c1", "Lapsed")} | {("c1", "50% Club")}
    new = [c for c in changes(server.engine) if c["run_id"] == third]
    assert {(c["customer_id"], c["tag"], c["change"]) for c in new} == {
        ("c1", "Lapsed", "removed"),
        ("c1", "50% Club", "added"),
    }
    assert {c["actor"] for c in new} == {f"run:{third}"} and {c["kind"] for c in new} == {"rule"}

    history = customer_tags_of(admin, "c1")
    assert names(history) == {"Spender", "50% Club"}
    spender = next(t for t in history["tags"] if t["tag"] == "Spender")
    assert spender["kind"] == "rule" and spender["group"] == "Value"
    assert [(h["tag"], h["change"]) for h in history["history"][:2]] == [
        ("50% Club", "added"),
        ("Lapsed", "removed"),
    ]
    listed = {t["name"]: t for t in admin.get("/v1/tags").json()["tags"]}
    assert listed["Spender"]["customers"] == 2 and listed["Spender"]["kind"] == "rule"
    assert listed["50% Club"]["description"] == "spent over 200"
    groups = {g["name"]: g for g in admin.get("/v1/tag-groups").json()["groups"]}
    assert groups["Value"]["tags"] == ["50% Club", "Spender"] and not groups["Value"]["exclusive"]


def test_a_purchase_adds_and_removes_rule_tags_live(server: Server, clients: Clients) -> None:
    admin = setup_shop(clients)
    assert names(customer_tags_of(admin, "c2")) == set()  # scored live: no run needed
    assert names(customer_tags_of(admin, "c1")) == {"Spender", "Lapsed"}
    mark = max(c["id"] for c in changes(server.engine))
    post_events(admin, [buy("c1", "200", 0.001), buy("c2", "45", 0.001)])
    assert names(customer_tags_of(admin, "c1")) == {"Spender", "50% Club"}  # 260 spent, recent
    assert names(customer_tags_of(admin, "c2")) == {"Spender"}  # 55 spent
    live = [c for c in changes(server.engine) if c["id"] > mark]
    assert {(c["customer_id"], c["tag"], c["change"]) for c in live} == {
        ("c1", "Lapsed", "removed"),
        ("c1", "50% Club", "added"),
        ("c2", "Spender", "added"),
    }
    assert {c["actor"] for c in live} == {"event"} and {c["run_id"] for c in live} == {None}
    # A run afterwards agrees with the live state: it records nothing.
    run(admin)
    assert [c for c in changes(server.engine) if c["id"] > mark] == live


def test_a_scheme_that_drops_a_tag_removes_it_from_everyone(server: Server, clients: Clients) -> None:
    admin = setup_shop(clients)
    run(admin)
    assert ("c1", "Lapsed") in held(server.engine)
    result = put_scheme(admin, tag_scheme(lapsed=False))
    run_id = result["run"]["id"]
    assert not any(tag == "Lapsed" for _, tag in held(server.engine))
    assert "Lapsed" not in {t["name"] for t in admin.get("/v1/tags").json()["tags"]}
    gone = [c for c in changes(server.engine) if c["tag"] == "Lapsed" and c["change"] == "removed"]
    assert [(c["customer_id"], c["run_id"], c["actor"]) for c in gone] == [("c1", run_id, f"run:{run_id}")]


def test_a_scheme_taking_a_manual_tags_name_takes_it_over(server: Server, clients: Clients) -> None:
    admin = setup_shop(clients)
    assert admin.post("/v1/tags", json={"name": "Regular"}).status_code == 201
    assert admin.post("/v1/customers/c2/tags", json={"tags": ["Regular"]}).status_code == 200
    extra = "  - {name: Regular, group: Value, when: f_score >= 1 and m_score >= 3}\n"
    put_scheme(admin, tag_scheme(extra=extra))
    regular = {k: v for k, v in held(server.engine).items() if k[1] == "Regular"}
    assert set(regular) == {("c1", "Regular"), ("c3", "Regular")}  # the rule decides now; c2 lost it
    assert {kind for kind, _ in regular.values()} == {"rule"}
    takeover = admin.get("/v1/tags").json()["tags"]
    assert next(t for t in takeover if t["name"] == "Regular")["kind"] == "rule"
    with server.engine.connect() as conn:
        actions = list(conn.execute(sa.select(audit_log.c.action, audit_log.c.details)).all())
    assert ("tag.takeover", {"removed_from": 1}) in [(a, d) for a, d in actions]


# --- manual tags -------------------------------------------------------------------------------
def test_manual_tags_survive_runs_and_rule_tags_cannot_be_changed_by_hand(
    server: Server, clients: Clients
) -> None:
    admin = setup_shop(clients)
    agent = clients["agent"]
    run(admin)
    assert admin.post("/v1/tags", json={"name": "VIP", "description": "hand-picked"}).status_code == 201
    added = agent.post("/v1/customers/c2/tags", json={"tags": ["VIP"]})
    assert added.status_code == 200, added.text
    assert added.json()["results"] == [{"tag": "VIP", "status": "added", "replaced": []}]
    again = agent.post("/v1/customers/c2/tags", json={"tags": ["VIP", "VIP"]}).json()["results"]
    assert [r["status"] for r in again] == ["unchanged", "duplicate"]
    run(admin)
    run(admin)
    assert held(server.engine)[("c2", "VIP")][0] == "manual"
    assert sum(1 for c in changes(server.engine) if c["tag"] == "VIP") == 1

    rule_add = agent.post("/v1/customers/c2/tags", json={"tags": ["VIP", "Spender"]})
    assert rule_add.status_code == 409 and "rule tag" in rule_add.json()["detail"]
    rule_remove = agent.delete("/v1/customers/c1/tags/Spender")
    assert rule_remove.status_code == 409 and "rule tag" in rule_remove.json()["detail"]
    assert admin.delete("/v1/tags/Spender").status_code == 409
    clash = admin.post("/v1/tags", json={"name": "Spender"})
    assert clash.status_code == 409 and "rule tag" in clash.json()["detail"]
    bulk_rule = admin.post("/v1/tags/Spender/customers", json={"customer_ids": ["c2"]})
    assert bulk_rule.status_code == 409
    assert ("c1", "Spender") in held(server.engine) and ("c2", "Spender") not in held(server.engine)

    removed = agent.delete("/v1/customers/c2/tags/VIP")
    assert removed.status_code == 200 and removed.json()["status"] == "removed"
    assert agent.delete("/v1/customers/c2/tags/VIP").json()["status"] == "unchanged"
    assert ("c2", "VIP") not in held(server.engine)


def test_unknown_and_malformed(server: Server, clients: Clients) -> None:
    admin = setup_shop(clients)
    assert admin.get("/v1/customers/nobody/tags").status_code == 404
    assert admin.post("/v1/customers/nobody/tags", json={"tags": ["x"]}).status_code == 404
    assert admin.delete("/v1/customers/nobody/tags/x").status_code == 404
    assert admin.delete("/v1/customers/c1/tags/NoSuchTag").status_code == 404
    assert admin.delete("/v1/tags/NoSuchTag").status_code == 404
    unknown = admin.post("/v1/customers/c1/tags", json={"tags": ["NoSuchTag"]})
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "tags", 0]
    assert "no tag 'NoSuchTag'" in unknown.json()["detail"][0]["msg"]
    for bad in ["", " VIP", "VIP ", "a;b", "x" * 65, "50%", "-dash"]:
        answer = admin.post("/v1/tags", json={"name": bad})
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.json()["detail"][0]["loc"] == ["body", "name"], answer.text
    for good in ["VIP", "Клиент 2024", "crm:lead.hot", "a_b-c"]:
        assert admin.post("/v1/tags", json={"name": good}).status_code == 201, good
    same = admin.post("/v1/tags", json={"name": "vip"})
    assert same.status_code == 409 and "'VIP' already exists" in same.json()["detail"]
    no_group = admin.post("/v1/tags", json={"name": "Gold", "group": "Tiers"})
    assert no_group.status_code == 422 and no_group.json()["detail"][0]["loc"] == ["body", "group"]
    extra = admin.post("/v1/tags", json={"name": "Gold", "colour": "gold"})
    assert extra.status_code == 422
    empty = admin.post("/v1/customers/c1/tags", json={"tags": []})
    assert empty.status_code == 422
    # nothing half-written: a request with one bad tag adds none
    mixed = admin.post("/v1/customers/c1/tags", json={"tags": ["VIP", "NoSuchTag"]})
    assert mixed.status_code == 422 and ("c1", "VIP") not in held(server.engine)


def test_exclusive_groups(server: Server, clients: Clients) -> None:
    admin = setup_shop(clients)
    made = admin.post("/v1/tag-groups", json={"name": "Tier", "exclusive": True, "description": "plan"})
    assert made.status_code == 201 and made.json()["exclusive"] is True
    assert admin.post("/v1/tag-groups", json={"name": "tier"}).status_code == 409
    for name in ("Bronze", "Silver", "Gold"):
        assert admin.post("/v1/tags", json={"name": name, "group": "Tier"}).status_code == 201
    assert admin.post("/v1/tags", json={"name": "Newsletter"}).status_code == 201
    tier = admin.get("/v1/tags", params={"group": "Tier"}).json()["tags"]
    assert [t["name"] for t in tier] == ["Bronze", "Gold", "Silver"]
    manual = admin.get("/v1/tags", params={"kind": "manual"}).json()["tags"]
    assert {t["name"] for t in manual} == {"Bronze", "Gold", "Silver", "Newsletter"}
    admin.post("/v1/customers/c1/tags", json={"tags": ["Bronze", "Newsletter"]})
    upgraded = admin.post("/v1/customers/c1/tags", json={"tags": ["Gold"]})
    assert upgraded.json()["results"] == [{"tag": "Gold", "status": "added", "replaced": ["Bronze"]}]
    current = customer_tags_of(admin, "c1")
    assert names(current) == {"Gold", "Newsletter", "Spender", "Lapsed"}
    assert [(h["tag"], h["change"]) for h in current["history"][:2]] == [
        ("Gold", "added"),
        ("Bronze", "removed"),
    ]
    # one request with two tags of the group: the later one wins
    both = admin.post("/v1/customers/c2/tags", json={"tags": ["Silver", "Bronze"]}).json()["results"]
    assert [(r["tag"], r["status"], r["replaced"]) for r in both] == [
        ("Silver", "added", []),
        ("Bronze", "added", ["Silver"]),
    ]
    assert names(customer_tags_of(admin, "c2")) == {"Bronze"}
    assert not any(c["tag"] == "Silver" and c["customer_id"] == "c2" for c in changes(server.engine))

    # a non-exclusive group holding two tags of one customer cannot become exclusive
    admin.post("/v1/tag-groups", json={"name": "Channels"})
    for name in ("Email", "SMS"):
        admin.post("/v1/tags", json={"name": name, "group": "Channels"})
    admin.post("/v1/customers/c3/tags", json={"tags": ["Email", "SMS"]})
    refused = admin.patch("/v1/tag-groups/Channels", json={"exclusive": True})
    assert refused.status_code == 409 and "1 customers hold more than one tag" in refused.json()["detail"]
    admin.delete("/v1/customers/c3/tags/SMS")
    assert admin.patch("/v1/tag-groups/Channels", json={"exclusive": True}).json()["exclusive"] is True
    # a group of rule tags cannot be exclusive; groups with tags cannot be deleted
    rules = admin.patch("/v1/tag-groups/Value", json={"exclusive": True})
    assert rules.status_code == 409 and "rule tags" in rules.json()["detail"]
    assert admin.delete("/v1/tag-groups/Tier").status_code == 409
    assert admin.patch("/v1/tag-groups/Nope", json={"description": "x"}).status_code == 404
    for name in ("Bronze", "Silver", "Gold"):
        assert admin.delete(f"/v1/tags/{name}").status_code == 200
    assert admin.delete("/v1/tag-groups/Tier").json() == {"deleted": "Tier"}


def test_deleting_a_manual_tag_removes_it_from_everyone(server: Server, clients: Clients) -> None:
    admin = setup_shop(clients)
    admin.post("/v1/tags", json={"name": "Beta"})
    admin.post("/v1/tags/Beta/customers", json={"customer_ids": ["c1", "c2", "c3"]})
    answer = admin.delete("/v1/tags/Beta")
    assert answer.json() == {"deleted": "Beta", "removed_from": 3}
    assert not any(tag == "Beta" for _, tag in held(server.engine))
    removed = [c for c in changes(server.engine) if c["tag"] == "Beta" and c["change"] == "removed"]
    assert sorted(c["customer_id"] for c in removed) == ["c1", "c2", "c3"]


def test_bulk_per_item_results_and_atomic(server: Server, clients: Clients) -> None:
    admin = setup_shop(clients)
    admin.post("/v1/tags", json={"name": "Promo"})
    ids = ["c1", "c2", "ghost", "c1", "c3"]
    answer = admin.post("/v1/tags/Promo/customers", json={"customer_ids": ids})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [i["status"] for i in body["items"]] == ["added", "added", "rejected", "duplicate", "added"]
    assert body["items"][2]["reason"] == "no customer 'ghost'"
    assert (body["added"], body["rejected"], body["duplicate"]) == (3, 1, 1)
    removed = admin.post(
        "/v1/tags/Promo/customers", json={"customer_ids": ["c1", "c2"], "action": "remove"}
    ).json()
    assert [i["status"] for i in removed["items"]] == ["removed", "removed"]
    atomic = admin.post("/v1/tags/Promo/customers?atomic=true", json={"customer_ids": ["c1", "ghost"]})
    assert atomic.status_code == 422
    assert atomic.json()["detail"] == [
        {"loc": ["body", "customer_ids", 1], "msg": "no customer 'ghost'", "type": "value_error"}
    ]
    assert ("c1", "Promo") not in held(server.engine)
    assert admin.post("/v1/tags/Nope/customers", json={"customer_ids": ["c1"]}).status_code == 404
    too_many = admin.post("/v1/tags/Promo/customers", json={"customer_ids": ["c1"] * 10_001})
    assert too_many.status_code == 422


def test_audit_rows_per_key_and_request(server: Server, clients: Clients) -> None:
    admin = setup_shop(clients)
    agent = clients["agent"]
    admin.post("/v1/tag-groups", json={"name": "Tier", "exclusive": True})
    admin.post("/v1/tags", json={"name": "Gold", "group": "Tier"})
    agent.post("/v1/customers/c1/tags", json={"tags": ["Gold"]})
    admin.post("/v1/tags/Gold/customers", json={"customer_ids": ["c2", "c3", "ghost"]})
    agent.delete("/v1/customers/c1/tags/Gold")
    admin.patch("/v1/tag-groups/Tier", json={"description": "plans"})
    with server.engine.connect() as conn:
        keys: dict[str, int] = dict(conn.execute(sa.text("SELECT role, id FROM api_keys")).all())
        rows = conn.execute(
            sa.select(audit_log.c.actor, audit_log.c.action, audit_log.c.target, audit_log.c.details)
            .where(audit_log.c.action.like("tag%"))
            .order_by(audit_log.c.id)
        ).all()
    admin_actor, agent_actor = f"key:{keys['admin']}", f"key:{keys['agent']}"
    assert [(r.actor, r.action, r.target) for r in rows] == [
        (admin_actor, "tag_group.create", "tag_group:Tier"),
        (admin_actor, "tag.create", "tag:Gold"),
        (agent_actor, "tag.add", "customer:c1"),
        (admin_actor, "tag.add", "tag:Gold"),
        (agent_actor, "tag.remove", "customer:c1"),
        (admin_actor, "tag_group.update", "tag_group:Tier"),
    ]
    bulk = rows[3].details
    assert (bulk["customers"], bulk["added"], bulk["rejected"]) == (3, 2, 1)
    assert {c["actor"] for c in changes(server.engine) if c["tag"] == "Gold"} == {admin_actor, agent_actor}


# --- the feed ------------------------------------------------------------------------------------
def test_tag_changes_feed_follows_a_cursor(server: Server, clients: Clients) -> None:
    admin = setup_shop(clients)
    analyst = clients["analyst"]
    seen: list[dict[str, Any]] = []
    cursor = 0
    while True:
        page = analyst.get("/v1/tag-changes", params={"since_id": cursor, "limit": 2}).json()
        seen += page["items"]
        if not page["items"]:
            assert page["next_since_id"] == cursor
            break
        cursor = page["next_since_id"]
    assert [c["id"] for c in seen] == sorted(c["id"] for c in changes(server.engine))
    assert {(c["customer_id"], c["tag"]) for c in seen} == {
        ("c1", "Spender"),
        ("c1", "Lapsed"),
        ("c3", "Spender"),
        ("c3", "50% Club"),
    }
    admin.post("/v1/tags", json={"name": "VIP"})
    admin.post("/v1/customers/c2/tags", json={"tags": ["VIP"]})
    page = analyst.get("/v1/tag-changes", params={"since_id": cursor}).json()
    assert [(c["customer_id"], c["tag"], c["change"], c["kind"]) for c in page["items"]] == [
        ("c2", "VIP", "added", "manual")
    ]
    only = analyst.get("/v1/tag-changes", params={"tag": "Spender"}).json()["items"]
    assert {c["customer_id"] for c in only} == {"c1", "c3"}
    assert analyst.get("/v1/tag-changes", params={"since_id": -1}).status_code == 422
    assert analyst.get("/v1/tag-changes", params={"limit": 5000}).status_code == 422


@pytest.mark.parametrize("few", [10_000, 0], ids=["lookups", "joins"])
def test_a_run_repairs_rule_tags_that_disagree_with_the_scores(
    server: Server, clients: Clients, monkeypatch: pytest.MonkeyPatch, few: int
) -> None:
    """The full sync compares every customer, so rows written behind its back (or lost) are
    put right; one tag per comparison pass exercises schemes with more tags than a mask holds,
    and both ways of diffing the customers that differ are checked."""
    from rfmflow.service import tags_rules

    monkeypatch.setattr(tags_rules, "MASK_BITS", 1)
    monkeypatch.setattr(tags_rules, "FEW_CANDIDATES", few)
    admin = setup_shop(clients)
    run(admin)
    expected = set(held(server.engine))
    at = datetime.now(UTC)
    with server.engine.begin() as conn:
        conn.execute(
            sa.insert(customer_tags),
            [
                {"customer_id": "c2", "tag": "Spender", "kind": "rule", "added_at": at, "added_by": "x"},
                {"customer_id": "ghost", "tag": "Lapsed", "kind": "rule", "added_at": at, "added_by": "x"},
            ],
        )
        conn.execute(sa.delete(customer_tags).where(customer_tags.c.customer_id == "c3"))
    repair = run(admin)
    assert set(held(server.engine)) == expected
    fixed = {
        (c["customer_id"], c["tag"], c["change"]) for c in changes(server.engine) if c["run_id"] == repair
    }
    assert fixed == {
        ("c2", "Spender", "removed"),
        ("ghost", "Lapsed", "removed"),
        ("c3", "Spender", "added"),
        ("c3", "50% Club", "added"),
    }

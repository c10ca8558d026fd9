"""Tags, part two, on SQLite and PostgreSQL: CSV import and export over HTTP, roles, the
``rfmflow tags`` commands, rule tags rebuilt from events equal to the live ones, and the
change feed while a transaction is still open."""

from __future__ import annotations

import csv
import io
import json
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from service_helpers import Database, Server
from sqlalchemy.engine import Engine
from tag_helpers import (
    Clients,
    buy,
    changes,
    held,
    open_clients,
    post_events,
    put_scheme,
    run,
    setup_shop,
    tag_scheme,
)

from rfmflow.cli.main import main
from rfmflow.schemes import builtin_text
from rfmflow.service.db.engine import write_transaction
from rfmflow.service.db.tables import audit_log, customer_scores, customer_tags, tag_changes, tags
from rfmflow.service.ingest import ingest_raw, rebuild_customers
from rfmflow.service.scoring import run_scoring
from rfmflow.service.scoring_jobs import run_now
from rfmflow.service.scoring_schemes import parse_scheme
from rfmflow.service.settings import Settings
from rfmflow.service.tags import TagOp, change_tags


@pytest.fixture
def clients(server: Server) -> Iterator[Clients]:
    yield from open_clients(server)


def csv_post(client: Any, text: str, **params: Any) -> Any:
    return client.post(
        "/v1/tags/import", content=text.encode("utf-8"), params=params, headers={"Content-Type": "text/csv"}
    )


def manual_pairs(engine: Engine) -> set[tuple[str, str]]:
    return {k for k, (kind, _) in held(engine).items() if kind == "manual"}


# --- import ----------------------------------------------------------------------------------------
BAD_FILE = (
    "customer_id,tag,action\n"  # line 1
    "c1,VIP\n"  # 2
    "c2,VIP,add\n"  # 3
    "c2,VIP\n"  # 4: a duplicate, answered as one
    "ghost,VIP\n"  # 5: unknown customer
    "c3,Spender\n"  # 6: a rule tag
    "c3,NoSuch\n"  # 7: unknown tag
    "c1,VIP,delete\n"  # 8: bad action
    ",VIP\n"  # 9: empty customer
    '"c\n3",VIP\n'  # 10-11: a quoted id over two lines (no such customer)
    "c3,VIP\n"  # 12
)


def test_import_is_all_or_nothing_with_numbered_lines(
    server: Server, clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rfmflow.service import tags_csv

    monkeypatch.setattr(tags_csv, "CHUNK", 2)  # applied in chunks: a repeat in the next chunk is a duplicate
    admin = setup_shop(clients)
    admin.post("/v1/tags", json={"name": "VIP"})
    answer = csv_post(admin, BAD_FILE)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["applied"] is False
    assert [(r["line"], r["reason"]) for r in body["rejects"]] == [
        (5, "no customer 'ghost'"),
        (6, "'Spender' is a rule tag: the scheme's rule adds and removes it, not people"),
        (7, "no tag 'NoSuch' (create it first)"),
        (8, "action must be add or remove, not 'delete'"),
        (9, "customer_id is empty"),
        (10, "no customer 'c\\n3'"),
    ]
    assert body["rejects"][0]["raw"] == "ghost,VIP"
    assert body["detail"][0] == {
        "loc": ["body", "line", 5],
        "msg": "no customer 'ghost'",
        "type": "value_error",
    }
    assert manual_pairs(server.engine) == set()

    partial = csv_post(admin, BAD_FILE, partial="true")
    assert partial.status_code == 200, partial.text
    report = partial.json()
    assert report["applied"] is True and report["lines"] == 10  # the quoted id is one record
    assert (report["added"], report["duplicate"], report["rejected"]) == (3, 1, 6)
    assert manual_pairs(server.engine) == {("c1", "VIP"), ("c2", "VIP"), ("c3", "VIP")}

    again = csv_post(admin, "customer_id,tag\nc1,VIP\nc2,Newcomer\n", create="true").json()
    assert (again["unchanged"], again["added"], again["created_tags"]) == (1, 1, ["Newcomer"])
    listed = {t["name"]: t for t in admin.get("/v1/tags").json()["tags"]}
    assert listed["Newcomer"]["kind"] == "manual" and listed["Newcomer"]["customers"] == 1
    similar = csv_post(admin, "customer_id,tag\nc1,vip\n", create="true")
    assert similar.status_code == 422 and "did you mean 'VIP'" in similar.json()["rejects"][0]["reason"]

    removed = csv_post(admin, "tag,customer_id,action\nVIP,c1,remove\nVIP,c2,REMOVE\n").json()
    assert removed["removed"] == 2
    assert manual_pairs(server.engine) == {("c3", "VIP"), ("c2", "Newcomer")}
    with server.engine.connect() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.details).where(audit_log.c.action == "tags.import").order_by(audit_log.c.id)
        ).all()
    assert len(rows) == 3  # the failed import wrote nothing, not even its audit row
    assert rows[0].details["added"] == 3 and rows[1].details["created_tags"] == ["Newcomer"]


def test_import_refuses_files_it_cannot_read(server: Server, clients: Clients) -> None:
    admin = setup_shop(clients)
    for text, message in [
        ("", "the file is empty"),
        ("customer,label\nc1,VIP\n", "must name the columns customer_id and tag"),
    ]:
        answer = csv_post(admin, text)
        assert answer.status_code == 422 and message in answer.json()["detail"][0]["msg"], answer.text
    latin = admin.post("/v1/tags/import", content=b"customer_id,tag\nc1,Caf\xe9\n")
    assert latin.status_code == 422 and "not UTF-8" in latin.json()["detail"][0]["msg"]


# --- export ----------------------------------------------------------------------------------------
def test_export_round_trip(server: Server, clients: Clients) -> None:
    admin = setup_shop(clients)
    run(admin)
    admin.post("/v1/tag-groups", json={"name": "Tier", "exclusive": True})
    admin.post("/v1/tags", json={"name": "Gold", "group": "Tier"})
    admin.post("/v1/tags", json={"name": "Клиент 1"})
    admin.post("/v1/tags/Gold/customers", json={"customer_ids": ["c1", "c3"]})
    admin.post("/v1/customers/c2/tags", json={"tags": ["Клиент 1"]})
    before = held(server.engine)

    analyst = clients["analyst"]
    exported = analyst.get("/v1/tags/export")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert 'filename="tags.csv"' in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert list(rows[0]) == ["customer_id", "tag", "kind", "added_at", "added_by"]
    assert {(r["customer_id"], r["tag"]): r["kind"] for r in rows} == {k: v[0] for k, v in before.items()}
    gold = analyst.get("/v1/tags/export", params={"tag": "Gold"}).text
    assert sorted(r["customer_id"] for r in csv.DictReader(io.StringIO(gold))) == ["c1", "c3"]
    manual = analyst.get("/v1/tags/export", params={"kind": "manual"}).text
    assert {r["kind"] for r in csv.DictReader(io.StringIO(manual))} == {"manual"}
    assert analyst.get("/v1/tags/export", params={"tag": "Nope"}).status_code == 404

    # Take every manual tag away, then import the full export as it is: rule lines are
    # skipped, the manual ones come back.
    for cid, tag in manual_pairs(server.engine):
        assert admin.delete(f"/v1/customers/{cid}/tags/{tag}").json()["status"] == "removed"
    assert manual_pairs(server.engine) == set()
    back = csv_post(admin, exported.text)
    assert back.status_code == 200, back.text
    assert (back.json()["added"], back.json()["skipped"]) == (3, 4)
    after = held(server.engine)
    assert set(after) == set(before)
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}


# --- roles -----------------------------------------------------------------------------------------
def test_roles(server: Server, clients: Clients) -> None:
    admin = setup_shop(clients)
    admin.post("/v1/tags", json={"name": "VIP"})
    admin.post("/v1/tag-groups", json={"name": "G"})
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/v1/tags", {}),
        ("GET", "/v1/tag-groups", {}),
        ("GET", "/v1/customers/c1/tags", {}),
        ("POST", "/v1/customers/c1/tags", {"json": {"tags": ["VIP"]}}),
        ("DELETE", "/v1/customers/c1/tags/VIP", {}),
        ("GET", "/v1/tag-changes", {}),
        ("GET", "/v1/tags/export", {}),
        ("POST", "/v1/tags", {"json": {"name": "New"}}),
        ("POST", "/v1/tag-groups", {"json": {"name": "H"}}),
        ("PATCH", "/v1/tag-groups/G", {"json": {"description": "x"}}),
        ("POST", "/v1/tags/VIP/customers", {"json": {"customer_ids": ["c1"]}}),
        ("POST", "/v1/tags/import", {"content": b"customer_id,tag\nc1,VIP\n"}),
        ("DELETE", "/v1/tags/VIP", {}),
        ("DELETE", "/v1/tag-groups/G", {}),
    ]
    allowed = {
        "analyst": {0, 1, 2, 5, 6},
        "agent": {0, 1, 2, 3, 4},
        "ingest": set(),
    }
    with server.client(None) as anonymous:
        for method, path, kwargs in calls:
            assert anonymous.request(method, path, **kwargs).status_code == 401, path
    for role, ok in allowed.items():
        client = clients[role]
        for i, (method, path, kwargs) in enumerate(calls):
            status = client.request(method, path, **kwargs).status_code
            if i in ok:
                assert status == 200, (role, method, path, status)
            else:
                assert status == 403, (role, method, path, status)
    agent_denied = clients["agent"].post("/v1/tags", json={"name": "X"}).json()["detail"]
    assert "role 'agent'" in agent_denied and "admin" in agent_denied
    ingest_denied = clients["ingest"].post("/v1/customers/c1/tags", json={"tags": ["VIP"]}).json()["detail"]
    assert ingest_denied == (
        "a key with role 'ingest' may not add or remove customers' tags; roles that may: admin, agent"
    )
    for method, path, kwargs in calls:  # the admin may do everything
        assert admin.request(method, path, **kwargs).status_code in (200, 201), (method, path)


# --- the CLI ---------------------------------------------------------------------------------------
def test_tags_commands(server: Server, clients: Clients, database: Database, tmp_path: Path) -> None:
    admin = setup_shop(clients)
    admin.post("/v1/tags", json={"name": "VIP"})
    env = tmp_path / "cli.env"
    env.write_text(f"RFMFLOW_DATABASE_URL={database.url}\n")
    runner = CliRunner()

    def rfm(*args: str) -> Any:
        return runner.invoke(main, ["tags", *args, "--env-file", str(env)])

    added = rfm("add", "c1", "VIP")
    assert added.exit_code == 0, added.output
    assert "c1: VIP: added" in added.stderr
    assert ("c1", "VIP") in manual_pairs(server.engine)
    refused = rfm("add", "c1", "Spender")
    assert refused.exit_code == 1 and "rule tag" in refused.stderr and "nothing was changed" in refused.stderr
    unknown = rfm("remove", "nobody", "VIP")
    assert unknown.exit_code == 1 and "no customer 'nobody'" in unknown.stderr

    listed = json.loads(rfm("list", "--json").stdout)
    assert {t["name"]: t["customers"] for t in listed} == {"Spender": 2, "50% Club": 1, "Lapsed": 1, "VIP": 1}
    table = rfm("list").stdout
    assert "VIP" in table and "manual" in table and "Spender" in table

    out = tmp_path / "tags.csv"
    exported = rfm("export", "-o", str(out))
    assert exported.exit_code == 0 and "wrote 5 tag rows" in exported.stderr
    assert len(list(csv.DictReader(io.StringIO(out.read_text())))) == 5
    only = rfm("export", "--tag", "VIP")
    assert only.stdout.splitlines()[1].startswith("c1,VIP,manual,"), (only.stdout, only.stderr)
    assert rfm("export", "--tag", "Nope").exit_code == 1

    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,tag\nc2,VIP\nghost,VIP\n")
    rejects = tmp_path / "bad.rejects.csv"
    failed = rfm("import", str(bad), "--rejects", str(rejects))
    assert failed.exit_code == 1
    assert "line 3: no customer 'ghost'" in failed.stderr and "nothing was imported" in failed.stderr
    assert list(csv.reader(io.StringIO(rejects.read_text()))) == [
        ["line", "reason", "raw"],
        ["3", "no customer 'ghost'", "ghost,VIP"],
    ]
    assert ("c2", "VIP") not in manual_pairs(server.engine)
    done = rfm("import", str(bad), "--partial", "--rejects", str(rejects), "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["added"] == 1
    removed = rfm("remove", "c1", "VIP")
    assert removed.exit_code == 0 and "c1: VIP: removed" in removed.stderr
    assert manual_pairs(server.engine) == {("c2", "VIP")}
    with server.engine.connect() as conn:
        actors = set(
            conn.execute(
                sa.select(audit_log.c.actor).where(audit_log.c.action.in_(["tag.add", "tags.import"]))
            )
            .scalars()
            .all()
        )
    assert any(a.startswith("cli:") for a in actors)


# --- rebuild -----------------------------------------------------------------------------------------
def shop_events(n: int, seed: int, prefix: str = "c") -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        for j in range(rng.randint(1, 6)):
            out.append(
                buy(
                    f"{prefix}{i:03d}",
                    f"{rng.randint(1, 250)}.00",
                    rng.uniform(0, 90),
                    f"{prefix}{i}-{j}-{seed}",
                )
            )
    return out


def rule_state(engine: Engine) -> set[tuple[str, str]]:
    ct = customer_tags.c
    with engine.connect() as conn:
        return {
            (r[0], r[1]) for r in conn.execute(sa.select(ct.customer_id, ct.tag).where(ct.kind == "rule"))
        }


def rebuild(engine: Engine, settings: Settings) -> set[tuple[str, str]]:
    """Forget every derived row and score again from the events and the stored scheme."""
    with engine.begin() as conn:
        conn.execute(sa.delete(customer_scores))
        conn.execute(sa.delete(customer_tags))
        conn.execute(sa.delete(tags))
    rebuild_customers(engine)
    run_scoring(engine, settings, trigger="cli")
    return rule_state(engine)


def apply(engine: Engine, settings: Settings, text: str) -> None:
    run_now(engine, settings, trigger="scheme", actor="test", scheme_text=text, scheme=parse_scheme(text))


def test_live_rule_tags_equal_a_rebuild_fixed_thresholds(engine: Engine, settings: Settings) -> None:
    apply(engine, settings, tag_scheme())
    stream = shop_events(60, seed=4)
    random.Random(9).shuffle(stream)  # late and out-of-order events
    for start in range(0, len(stream), 17):
        ingest_raw(engine, stream[start : start + 17], settings)
    live = rule_state(engine)
    assert len(live) > 20 and {t for _, t in live} == {"Spender", "50% Club", "Lapsed"}
    with engine.connect() as conn:  # history replays to the live state
        replay: dict[tuple[str, str], bool] = {}
        for r in conn.execute(sa.select(tag_changes).order_by(tag_changes.c.id)):
            replay[(r.customer_id, r.tag)] = r.change == "added"
    assert {k for k, on in replay.items() if on} == live
    assert rebuild(engine, settings) == live


def test_rule_tags_equal_a_rebuild_with_percentile_rules(engine: Engine, settings: Settings) -> None:
    apply(engine, settings, builtin_text("crm"))  # Top 20% Spend reads m_pct (quantiles)
    ingest_raw(engine, shop_events(50, seed=5), settings)
    run_scoring(engine, settings, trigger="cli")
    ingest_raw(engine, shop_events(20, seed=6, prefix="d") + shop_events(10, seed=7), settings)
    run_scoring(engine, settings, trigger="cli")
    incremental = rule_state(engine)
    assert {t for _, t in incremental} == {"Top 20% Spend", "Repeat Buyer"}
    assert rebuild(engine, settings) == incremental


# --- the feed while a transaction is open ------------------------------------------------------------
def test_the_feed_never_skips_a_change_committed_late(
    server: Server, clients: Clients, database: Database
) -> None:
    """A slow transaction changing tags (a run's swap, say) makes other tag writers wait, so
    ids commit in order and a reader following the cursor sees each change once."""
    admin = setup_shop(clients)
    admin.post("/v1/tags", json={"name": "VIP"})
    admin.post("/v1/tags", json={"name": "Beta"})
    analyst = clients["analyst"]
    start = analyst.get("/v1/tag-changes", params={"limit": 1000}).json()["next_since_id"]
    answers: list[int] = []
    with write_transaction(server.engine) as slow:
        ops = [TagOp("c2", "Beta")]
        change_tags(slow, ops, actor="test", at=datetime.now(UTC), audit_action="tag.add", audit_target="c2")
        other = threading.Thread(
            target=lambda: answers.append(
                clients["agent"].post("/v1/customers/c1/tags", json={"tags": ["VIP"]}).status_code
            )
        )
        other.start()
        other.join(timeout=1.0)
        assert (
            other.is_alive()
        )  # it waits for the slow one (PostgreSQL: the tag lock; SQLite: the write lock)
        page = analyst.get("/v1/tag-changes", params={"since_id": start}).json()
        assert page["items"] == [] and page["next_since_id"] == start
    other.join(timeout=30)
    assert answers == [200]
    page = analyst.get("/v1/tag-changes", params={"since_id": start}).json()
    assert [(c["customer_id"], c["tag"]) for c in page["items"]] == [("c2", "Beta"), ("c1", "VIP")]
    assert page["next_since_id"] == page["items"][-1]["id"]
    assert [c["tag"] for c in changes(server.engine)[-2:]] == ["Beta", "VIP"]


def test_a_tagged_purchase_shows_on_the_customer_at_once(server: Server, clients: Clients) -> None:
    admin = clients["admin"]
    put_scheme(admin, tag_scheme())
    post_events(admin, [buy("z1", "500", 0.01)])
    body = admin.get("/v1/customers/z1/tags").json()
    assert {t["tag"]: t["added_by"] for t in body["tags"]} == {"Spender": "event", "50% Club": "event"}

"""GDPR: a customer's personal data exported, then erased — personal fields gone, counts and
segment counts unchanged, opted out everywhere, later identify calls storing nothing — over
HTTP and with ``rfmflow customers``, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from engine_helpers import rows, service_fixtures, set_profile
from service_helpers import Database, Server, post_events, shop_purchases

from rfmflow.cli.main import main

_service = service_fixtures()
database = _service.database
settings = _service.settings
bare_engine = _service.bare_engine
engine = _service.engine
server = _service.server


def _counts(server: Server, cid: str) -> tuple[Any, Any]:
    with server.client("analyst") as analyst:
        customer = analyst.get(f"/v1/customers/{cid}").json()
        segments = analyst.get("/v1/segments").json()
    kept = {k: customer[k] for k in ("purchases", "monetary", "events", "event_counts", "scores", "segment")}
    assert kept["purchases"] > 0 and kept["segment"]
    return kept, segments


def test_export_then_erase(server: Server, database: Database, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    post_events(server, shop_purchases(now, 12))
    cid, other = "c005", "c006"
    post_events(
        server,
        [
            {
                "event_id": "m-1",
                "customer_id": cid,
                "type": "message",
                "occurred_at": now.isoformat(),
                "properties": {"text": "my address is 1 Main St"},
            }
        ],
    )
    for who in (cid, other):
        set_profile(
            server, who, name=f"Grace {who}", email=f"{who}@example.com", telegram_chat_id=77, plan="pro"
        )
    with server.client("admin") as admin:
        assert admin.post("/v1/runs").status_code == 201
    before = _counts(server, cid)

    with server.client("admin") as admin, server.client("analyst") as analyst:
        assert analyst.get(f"/v1/customers/{cid}/personal-data").status_code == 403
        assert admin.get("/v1/customers/nobody/personal-data").status_code == 404
        exported = admin.get(f"/v1/customers/{cid}/personal-data")
        assert exported.status_code == 200
        data = exported.json()
        assert data["profile"]["email"] == f"{cid}@example.com" and data["profile"]["traits"]["plan"] == "pro"
        assert {e["event_id"] for e in data["events"]} >= {"m-1"}
        assert data["scores"]["segment"] and data["segment_history"] and data["aggregates"]["n_events"] >= 2

        wrong = admin.post(f"/v1/customers/{cid}/erase", json={"confirm": "someone-else"})
        assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"] == ["body", "confirm"]
        assert admin.post(f"/v1/customers/{cid}/erase", json={}).status_code == 422
        assert admin.post("/v1/customers/nobody/erase", json={"confirm": "nobody"}).status_code == 404
        erased = admin.post(f"/v1/customers/{cid}/erase", json={"confirm": cid})
        assert erased.status_code == 200, erased.text
        assert erased.json()["first_erasure"] is True
        assert erased.json()["removed"]["event_properties"] == 1

        after = admin.get(f"/v1/customers/{cid}/personal-data").json()
        dump = json.dumps(after)
        assert f"{cid}@example.com" not in dump and "Grace" not in dump and "Main St" not in dump
        assert after["profile"]["email"] is None and after["profile"]["traits"] == {}
        assert after["erasure"]["actor"].startswith("key:")
        assert {c["channel"]: (c["status"], c["reason"]) for c in after["consent"]} == {
            ch: ("opted_out", "erased") for ch in ("telegram", "email", "webhook")
        }
        assert len(after["events"]) == len(data["events"])  # the events stay, without properties

        # a later identify stores nothing personal
        again = admin.patch(f"/v1/customers/{cid}/profile", json={"traits": {"email": "new@example.com"}})
        assert again.status_code == 200 and again.json()["email"] is None
    assert _counts(server, cid) == before  # aggregates and segment counts unchanged
    # a later event keeps its type and amount, not its free-form properties
    post_events(
        server,
        [
            {
                "event_id": "after-erasure",
                "customer_id": cid,
                "type": "message",
                "occurred_at": now.isoformat(),
                "properties": {"text": "hi again"},
            }
        ],
    )
    (late,) = rows(server.engine, "SELECT properties FROM events WHERE event_id = 'after-erasure'")
    assert late.properties is None
    (profile,) = rows(
        server.engine, "SELECT email, name, source FROM customer_profiles WHERE customer_id = :c", c=cid
    )
    assert (profile.email, profile.name, profile.source) == (None, None, "erased")
    audit = rows(server.engine, "SELECT action, target FROM audit_log WHERE action = 'customer.erase'")
    assert [(a.action, a.target) for a in audit] == [("customer.erase", cid)]

    # the CLI: export and erase
    env = tmp_path / "cli.env"
    env.write_text(f"RFMFLOW_DATABASE_URL={database.url}\n")
    runner = CliRunner()
    shown = runner.invoke(main, ["customers", "personal-data", other, "--env-file", str(env)])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["profile"]["email"] == f"{other}@example.com"
    refused = runner.invoke(main, ["customers", "erase", other, "--env-file", str(env)])
    assert refused.exit_code == 2 and "--yes" in refused.output
    done = runner.invoke(main, ["customers", "erase", other, "--yes", "--env-file", str(env)])
    assert done.exit_code == 0, done.output
    assert "erased 'c006'" in done.stdout
    unknown = runner.invoke(main, ["customers", "erase", "nobody", "--yes", "--env-file", str(env)])
    assert unknown.exit_code == 1 and "no customer 'nobody'" in unknown.output
    shown = runner.invoke(main, ["customers", "personal-data", other, "--env-file", str(env)])
    assert f"{other}@example.com" not in shown.stdout
    assert _counts(server, cid)[1] == before[1]

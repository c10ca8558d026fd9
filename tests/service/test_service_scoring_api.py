"""Schemes, segments, transitions and runs through real HTTP; ``scheme apply`` and ``worker``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import httpx
from click.testing import CliRunner
from service_helpers import Database, Server, post_events, shop_purchases

from rfmflow.cli.worker_cmd import worker
from rfmflow.schemes import builtin_text
from rfmflow.service.cli_scoring import scheme_apply

NOW = datetime.now(UTC)
FIXED = builtin_text("telegram-scrm")


def shop(n: int = 40) -> list[dict[str, Any]]:
    """:func:`service_helpers.shop_purchases` before the module's ``NOW``."""
    return shop_purchases(NOW, n)


def test_runs_segments_and_customers(server: Server) -> None:
    post_events(server, shop())
    with server.client("analyst") as analyst:
        assert analyst.get("/v1/runs").json()["runs"] == []
        created = analyst.post("/v1/runs")
        assert created.status_code == 201, created.text
        run = created.json()
        assert run["customers"] == 40 and run["trigger"] == "api" and run["moves"] == 40
        listed = analyst.get("/v1/runs").json()
        assert [r["id"] for r in listed["runs"]] == [run["id"]]
        assert listed["runs"][0]["segment_counts"] == run["segment_counts"]
        one = analyst.get(f"/v1/runs/{run['id']}").json()
        assert set(one["bands"]["scores"]) == {"recency", "frequency", "monetary"}
        assert analyst.get("/v1/runs/999").status_code == 404

        summary = analyst.get("/v1/segments").json()
        assert summary["customers"] == 40 and summary["scheme"] == "rfm11" and summary["currency"] == "USD"
        assert abs(sum(s["share"] for s in summary["segments"]) - 1) < 1e-9
        assert [s["name"] for s in summary["segments"]][:2] == ["Champions", "Loyal"]  # scheme order
        biggest = max(summary["segments"], key=lambda s: s["customers"])

    with server.client("agent") as agent:
        assert agent.get("/v1/segments").status_code == 403  # agents read customers only
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = agent.get(f"/v1/segments/{biggest['name']}/customers", params=params).json()
            seen += [c["customer_id"] for c in page["items"]]
            assert all(c["segment"] == biggest["name"] for c in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(seen) and len(seen) == biggest["customers"]
        assert agent.get("/v1/segments/Nope/customers").status_code == 404
        assert agent.get("/v1/segments/Lost/customers", params={"cursor": "%%%"}).status_code == 422
        mine = agent.get("/v1/customers/c001/scores", params={"on": NOW.date().isoformat()}).json()
        assert mine["scores"]["segment"] == mine["on"]["segment"] == mine["history"][0]["to"]
        assert mine["history"][0]["cause"] == "run"
        assert agent.get("/v1/customers/ghost/scores").status_code == 404

    with server.client("ingest") as ingest:
        assert ingest.post("/v1/runs").status_code == 403
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "rfmflow_segment_customers{" in metrics and "rfmflow_scoring_runs 1.0" in metrics


def test_put_scheme(server: Server) -> None:
    post_events(server, shop())
    with server.client("admin") as admin:
        current = admin.get("/v1/scheme").json()
        assert (current["version"], current["name"], current["stored"]) == (1, "rfm11", False)
        assert current["warnings"] == []

        bad = admin.put("/v1/scheme", content="name: x\nsegments:\n  - {name: A, when: r_score >== 2}\n")
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["body", "yaml", "segments", 0, "when"]
        wrong_json = admin.put("/v1/scheme", json={"scheme": FIXED})
        assert wrong_json.status_code == 422 and wrong_json.json()["detail"][0]["loc"] == ["body", "yaml"]

        dry = admin.put("/v1/scheme", params={"dry_run": "true"}, json={"yaml": FIXED})
        assert dry.status_code == 200, dry.text
        body = dry.json()
        assert body["dry_run"] is True and body["proposed"]["name"] == "telegram-scrm"
        assert body["proposed"]["customers"] == 40 and body["current"]["customers"] == 0  # nothing scored yet
        assert admin.get("/v1/scheme").json()["version"] == 1  # nothing stored

        applied = admin.put("/v1/scheme", content=FIXED, headers={"Content-Type": "application/yaml"})
        assert applied.status_code == 200, applied.text
        out = applied.json()
        assert out["version"] == 2 and out["run"]["customers"] == 40
        assert out["run"]["segment_counts"] == body["proposed"]["segment_counts"]
        now = admin.get("/v1/scheme").json()
        assert (now["version"], now["name"], now["yaml"]) == (2, "telegram-scrm", FIXED)
        assert [h["version"] for h in now["history"]] == [2, 1]

        again = admin.put("/v1/scheme", params={"dry_run": "true"}, content=builtin_text("rfm11")).json()
        assert again["current"]["segment_counts"] == out["run"]["segment_counts"]

    with server.client("analyst") as analyst:
        assert analyst.put("/v1/scheme", content=FIXED).status_code == 403
        assert analyst.get("/v1/scheme").status_code == 200
        matrix = analyst.get("/v1/transitions", params={"from": (NOW - timedelta(days=1)).date().isoformat()})
        assert matrix.status_code == 200
        moved = matrix.json()
        assert moved["customers"] == 40 and set(moved["matrix"]) == {"(none)"}
        assert moved["moves_recorded"] == {"scheme": 40}
        wrong = analyst.get("/v1/transitions", params={"from": "2030-01-02", "to": "2030-01-01"})
        assert wrong.status_code == 422


def test_a_purchase_moves_the_segment_before_the_answer(server: Server) -> None:
    with server.client("admin") as admin:
        assert admin.put("/v1/scheme", content=FIXED).status_code == 200
    post_events(
        server, [{"event_id": "m", "customer_id": "z", "type": "message", "occurred_at": NOW.isoformat()}]
    )
    with server.client("agent") as agent:
        assert agent.get("/v1/customers/z/scores").json()["scores"]["segment"] == "Retain"
        post_events(
            server,
            [
                {"event_id": f"p{i}", "customer_id": "z", "type": "purchase", "occurred_at": NOW.isoformat(),
                 "amount": "300", "order_id": f"z{i}"}
                for i in range(12)
            ],
        )  # fmt: skip
        after = agent.get("/v1/customers/z/scores").json()
    assert after["scores"]["segment"] == "High-Value"
    assert [h["cause"] for h in after["history"]] == ["event", "event"]


# --- CLI -------------------------------------------------------------------------------------------
def _cli() -> click.Group:
    group = click.Group("rfmflow")
    scheme = click.Group("scheme")
    scheme.add_command(scheme_apply)
    group.add_command(scheme)
    group.add_command(worker)
    return group


def test_scheme_apply_and_worker_commands(database: Database, tmp_path: Path) -> None:
    env = tmp_path / "service.env"
    env.write_text(f"RFMFLOW_DATABASE_URL={database.url}\nRFMFLOW_SCORE_CRON=daily 03:00\n")
    scheme_file = tmp_path / "mine.yaml"
    scheme_file.write_text(FIXED)
    runner = CliRunner()
    cli = _cli()

    nothing = runner.invoke(cli, ["worker", "--once", "--env-file", str(env)])
    assert nothing.exit_code == 0, nothing.output  # a fresh database: the first run is due at once
    assert "run 1" in nothing.stderr

    dry = runner.invoke(cli, ["scheme", "apply", str(scheme_file), "--dry-run", "--env-file", str(env)])
    assert dry.exit_code == 0, dry.output
    assert "with telegram-scrm" in dry.stdout and "nothing was stored" in dry.stderr

    done = runner.invoke(cli, ["scheme", "apply", str(scheme_file), "--json", "--env-file", str(env)])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["version"] == 2

    scheme_file.write_text("name: broken\nsegments:\n  - {name: A, wen: true}\n")
    broken = runner.invoke(cli, ["scheme", "apply", str(scheme_file), "--env-file", str(env)])
    assert broken.exit_code == 1 and "segments[0].wen: unknown field" in broken.stderr

    once = runner.invoke(cli, ["worker", "--once", "--env-file", str(env)])
    assert once.exit_code == 0 and "no scoring run is due" in once.stderr
    now = runner.invoke(cli, ["worker", "--now", "--json", "--env-file", str(env)])
    assert now.exit_code == 0, now.output
    assert json.loads(now.stdout)["trigger"] == "cli"
    usage = runner.invoke(cli, ["worker", "--poll", "0"])
    assert usage.exit_code == 2

"""``rfmflow broadcasts``: preview, create, start, list, stop against the service database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from broadcast_helpers import seed_shop, service_fixtures
from click.testing import CliRunner
from service_helpers import Database, Server

from rfmflow.cli.main import main
from rfmflow.service.db.tables import audit_log, outbox

_service = service_fixtures()
database = _service.database
settings = _service.settings
bare_engine = _service.bare_engine
engine = _service.engine
server = _service.server


def test_broadcast_commands(server: Server, database: Database, tmp_path: Path) -> None:
    seed_shop(server)
    env = tmp_path / "cli.env"
    env.write_text(f"RFMFLOW_DATABASE_URL={database.url}\nRFMFLOW_BROADCAST_CONFIRM_ABOVE=5\n")
    runner = CliRunner()

    def rfm(*args: str) -> Any:
        return runner.invoke(main, ["broadcasts", *args, "--env-file", str(env)])

    shown = rfm("preview", "--channel", "email", "--tag", "vip", "--json")
    assert shown.exit_code == 0, shown.output
    counts = json.loads(shown.stdout)
    with server.client("admin") as admin:
        api = admin.get("/v1/broadcasts/preview", params={"channel": "email", "tag": "vip"}).json()
    assert {k: counts[k] for k in ("audience", "opted_out", "no_address", "reachable")} == {
        k: api[k] for k in ("audience", "opted_out", "no_address", "reachable")
    }
    assert counts["needs_confirmation"] is True  # 8 > 5

    spec = tmp_path / "vip.yaml"
    spec.write_text(
        "name: VIP night\nchannel: email\naudience: {tag: [vip]}\n"
        "message: {subject: 'VIP night', text: 'Hi {{ first_name }}'}\n"
    )
    created = rfm("create", str(spec))
    assert created.exit_code == 0, created.output
    bid = int(created.stdout.strip())

    refused = rfm("start", str(bid))
    assert refused.exit_code == 1 and "confirm_count" in refused.output
    started = rfm("start", str(bid), "--confirm-count", str(counts["audience"]))
    assert started.exit_code == 0, started.output
    assert "is running" in started.stdout

    listed = rfm("list", "--json")
    assert listed.exit_code == 0 and json.loads(listed.stdout)[0]["id"] == bid

    stopped = rfm("stop", str(bid))
    assert stopped.exit_code == 0 and f"{counts['reachable']:,} pending messages cancelled" in stopped.stdout
    with server.engine.connect() as conn:
        statuses = set(conn.execute(sa.select(outbox.c.status).where(outbox.c.broadcast_id == bid)).scalars())
        actors = set(
            conn.execute(
                sa.select(audit_log.c.actor).where(audit_log.c.target == f"broadcast:{bid}")
            ).scalars()
        )
    assert statuses <= {"cancelled", "skipped"}
    assert len(actors) == 1 and next(iter(actors)).startswith("cli")

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nchannel: sms\nmessage: {text: hi}\n")
    assert rfm("create", str(bad)).exit_code == 2
    assert rfm("start", "999").exit_code == 1
    assert rfm("preview").exit_code == 2

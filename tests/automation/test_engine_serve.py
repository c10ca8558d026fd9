"""``rfmflow serve`` runs the automation loop in its process: a purchase posted over HTTP enrols
the customer in a workflow and its e-mail reaches aiosmtpd with nobody calling ``tick``. With
``--no-automation`` nothing is decided or sent until ``rfmflow worker --once`` does the pass.
Bad loop settings are refused with the variable named. On SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from engine_helpers import Inbox, free_port, service_fixtures, smtp_inbox
from service_helpers import Database, make_keys
from sqlalchemy.engine import Engine
from worker_helpers import RFMFLOW, process_env, scalar, start, stop, wait_for

from rfmflow.automation.engine_config import load_engine_config
from rfmflow.automation.settings import AutomationSettingsError

_service = service_fixtures()
database = _service.database
settings = _service.settings
bare_engine = _service.bare_engine
engine = _service.engine

pytestmark = pytest.mark.slow

THANKS = """\
name: thanks
trigger: {event: purchase}
steps:
  - id: thanks
    send: {channel: email, subject: "Thanks, {{ first_name }}", text: "Your order is on its way."}
"""


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    with smtp_inbox() as running:
        yield running


def _serve(database: Database, tmp_path: Path, smtp_port: int, *flags: str) -> tuple[str, object, Path]:
    port = free_port()
    env = process_env(
        database.url,
        tmp_path / "data",
        RFMFLOW_SMTP_HOST="127.0.0.1",
        RFMFLOW_SMTP_PORT=str(smtp_port),
        RFMFLOW_SMTP_FROM="Shop <shop@example.com>",
    )
    log = tmp_path / "serve.log"
    proc = start(["serve", "--port", str(port), *flags], env, tmp_path, log)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for("serve ready", ready, timeout=60, every=0.1)
    return url, proc, log


def _workflow_and_purchase(url: str, keys: dict[str, str]) -> None:
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    with httpx.Client(base_url=url, headers=admin, timeout=30) as client:
        assert client.post("/v1/workflows", json={"yaml": THANKS}).status_code == 201
        assert client.post("/v1/workflows/thanks/activate").status_code == 200
        profile = client.patch(
            "/v1/customers/ada/profile", json={"traits": {"name": "Ada Lovelace", "email": "ada@example.com"}}
        )
        assert profile.status_code == 200, profile.text
        event = {
            "event_id": "order-1",
            "customer_id": "ada",
            "type": "purchase",
            "occurred_at": datetime.now(UTC).isoformat(),
            "amount": "42.00",
        }
        posted = client.post("/v1/events", json=event, headers={"Authorization": f"Bearer {keys['ingest']}"})
        assert posted.status_code == 200, posted.text


def test_serve_runs_the_loop(
    database: Database, engine: Engine, tmp_path: Path, inbox: tuple[Inbox, int]
) -> None:
    handler, smtp_port = inbox
    keys = make_keys(engine)
    url, proc, log = _serve(database, tmp_path, smtp_port)
    try:
        _workflow_and_purchase(url, keys)
        wait_for("the thank-you e-mail", lambda: len(handler.messages) == 1, timeout=60)
        wait_for(
            "the outbox row delivered",
            lambda: scalar(engine, "SELECT count(*) FROM outbox WHERE status = 'delivered'") == 1,
        )
    finally:
        code = stop(proc)  # type: ignore[arg-type]
    assert code == 0, log.read_text()
    envelope, message = handler.messages[0]
    assert envelope.rcpt_tos == ["ada@example.com"] and message["Subject"] == "Thanks, Ada"
    assert "automation loop started" in log.read_text()


def test_serve_without_the_loop_leaves_it_to_a_worker(
    database: Database, engine: Engine, tmp_path: Path, inbox: tuple[Inbox, int]
) -> None:
    handler, smtp_port = inbox
    keys = make_keys(engine)
    url, proc, log = _serve(database, tmp_path, smtp_port, "--no-automation")
    try:
        _workflow_and_purchase(url, keys)
        time.sleep(2)  # ten loop intervals: a loop would have enrolled and sent by now
        assert scalar(engine, "SELECT count(*) FROM enrolments") == 0
        assert scalar(engine, "SELECT count(*) FROM automation_cursors") == 0
        assert handler.messages == []
    finally:
        code = stop(proc)  # type: ignore[arg-type]
    assert code == 0, log.read_text()
    assert "automation loop started" not in log.read_text()

    env = process_env(
        database.url,
        tmp_path / "data",
        RFMFLOW_SMTP_HOST="127.0.0.1",
        RFMFLOW_SMTP_PORT=str(smtp_port),
    )
    once = start(["worker", "--once"], env, tmp_path, tmp_path / "worker.log")
    assert once.wait(120) == 0, (tmp_path / "worker.log").read_text()
    text = (tmp_path / "worker.log").read_text()
    assert "automation: 1 journeys advanced, 1 messages decided, 1 sent (1 delivered)" in text
    assert len(handler.messages) == 1


def test_bad_loop_settings_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(AutomationSettingsError, match="RFMFLOW_AUTOMATION: expected on or off; got 'maybe'"):
        load_engine_config({"RFMFLOW_AUTOMATION": "maybe"})
    with pytest.raises(AutomationSettingsError, match="RFMFLOW_AUTOMATION_INTERVAL: expected seconds"):
        load_engine_config({"RFMFLOW_AUTOMATION_INTERVAL": "soon"})
    with pytest.raises(AutomationSettingsError, match="RFMFLOW_AUTOMATION_BATCH: expected a whole number"):
        load_engine_config({"RFMFLOW_AUTOMATION_BATCH": "0"})
    config = load_engine_config({"RFMFLOW_AUTOMATION": "off", "RFMFLOW_AUTOMATION_INTERVAL": "0.5"})
    assert (config.enabled, config.interval) == (False, 0.5)
    env = {"PATH": "/usr/bin:/bin", "RFMFLOW_AUTOMATION": "maybe", "RFMFLOW_DATA_DIR": str(tmp_path)}
    bad = start(["worker", "--once"], env, tmp_path, tmp_path / "bad.log")
    assert bad.wait(60) == 1
    assert "error: RFMFLOW_AUTOMATION: expected on or off; got 'maybe'" in (tmp_path / "bad.log").read_text()
    assert RFMFLOW.endswith("rfmflow")


def test_worker_runs_the_alerts_loop(
    database: Database, engine: Engine, tmp_path: Path, inbox: tuple[Inbox, int]
) -> None:
    from datetime import timedelta

    from rfmflow.alerts.store import create_rule
    from rfmflow.service.db.engine import write_transaction
    from rfmflow.service.events import EventIn
    from rfmflow.service.ingest import ingest

    handler, smtp_port = inbox
    settings = database.settings(tmp_path)
    quiet_since = datetime.now(UTC) - timedelta(hours=3)
    ingest(
        engine,
        [
            EventIn.model_validate(
                {
                    "event_id": "e1",
                    "customer_id": "c1",
                    "type": "visit",
                    "occurred_at": quiet_since.isoformat(),
                }
            )
        ],
        settings,
        now=quiet_since,
    )
    with write_transaction(engine) as conn:
        create_rule(
            conn,
            {
                "name": "silence",
                "kind": "no_events",
                "params": {"hours": 1},
                "channel": "email",
                "target": "ops@shop.example",
            },
            actor="test",
            at=datetime.now(UTC),
        )
    env = process_env(
        database.url,
        tmp_path / "data",
        RFMFLOW_SMTP_HOST="127.0.0.1",
        RFMFLOW_SMTP_PORT=str(smtp_port),
        RFMFLOW_ALERTS_INTERVAL="1s",
    )
    log = tmp_path / "worker.log"
    proc = start(["worker", "--poll", "3600"], env, tmp_path, log)
    try:
        wait_for("the alert e-mail", lambda: len(handler.messages) >= 1, 60)
        time.sleep(3)  # three more passes of the loop: the same occurrence is not sent again
    finally:
        assert stop(proc) == 0, log.read_text()
    (envelope, message), *more = handler.messages
    assert envelope.rcpt_tos == ["ops@shop.example"] and not more  # once per occurrence
    assert message["Subject"].startswith("[rfmflow] No events for"), message["Subject"]
    assert scalar(engine, "SELECT count(*) FROM alert_events WHERE status = 'sent'") == 1

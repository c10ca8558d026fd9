"""The issue's guarantees, tested by killing processes: ``rfmflow worker`` is SIGKILLed while it
decides journeys and while sends are in flight (a webhook receiver that stops answering), then
restarted; no message recorded as sent is delivered twice, every decision has its outbox row,
and a message whose outcome is unknown is marked ``unknown`` and not resent — on a SQLite file
and on PostgreSQL. Then two workers at once on PostgreSQL never take the same step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from engine_helpers import rows, service_fixtures
from service_helpers import Database
from sqlalchemy.engine import Engine
from worker_helpers import (
    Receiver,
    add_due_journeys,
    add_workflow,
    kill,
    process_env,
    scalar,
    start,
    stop,
    wait_for,
)

_service = service_fixtures()
database = _service.database
settings = _service.settings
bare_engine = _service.bare_engine
engine = _service.engine

pytestmark = pytest.mark.slow

JOURNEYS = 400  # each webhook send costs ~45 ms of CPU today (a new TLS context per message)


def _finished(engine: Engine) -> bool:
    open_rows = scalar(
        engine,
        "SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')",
    )
    due = scalar(
        engine,
        "SELECT count(*) FROM enrolments WHERE status = 'active' AND step <> 'pause'",
    )
    decided = scalar(engine, "SELECT count(*) FROM outbox")
    return bool(open_rows == 0 and due == 0 and decided == JOURNEYS)


def _assert_guarantees(engine: Engine, receiver: Receiver) -> dict[str, int]:
    """No delivery twice; every decision has its row; unknown rows were not resent."""
    seen = receiver.per_id()
    assert max(seen.values()) == 1, "a message reached the receiver twice"
    outbox = {r.id: r for r in rows(engine, "SELECT id, status, enrolment_id, step FROM outbox")}
    assert set(seen) <= set(outbox)
    for row in outbox.values():
        if row.status == "delivered":
            assert seen[row.id] == 1, f"outbox row {row.id} is delivered but the receiver never got it"
        else:
            assert row.status == "unknown", row.status
            assert seen[row.id] <= 1
    steps = rows(engine, "SELECT enrolment_id, step FROM journey_steps WHERE kind = 'send'")
    decided = [(r.enrolment_id, r.step) for r in steps]
    assert len(decided) == len(set(decided)) == JOURNEYS, "a step was taken twice or not at all"
    assert set(decided) == {(r.enrolment_id, r.step) for r in outbox.values()}, "a decision lost its row"
    # every journey moved on exactly once: the new ones now wait a day, the others are done
    states = rows(engine, "SELECT status, step, count(*) AS n FROM enrolments GROUP BY status, step")
    assert {(s.status, s.step, s.n) for s in states} == {
        ("active", "pause", JOURNEYS // 2),
        ("exited", None, JOURNEYS // 2),
    }
    statuses: dict[str, int] = {}
    for row in outbox.values():
        statuses[row.status] = statuses.get(row.status, 0) + 1
    return statuses


def _env(database: Database, tmp_path: Path, receiver: Receiver, **values: str) -> dict[str, str]:
    chosen = {
        "RFMFLOW_AUTOMATION_WEBHOOK_URL": receiver.url,
        "RFMFLOW_AUTOMATION_BATCH": "50",
        "RFMFLOW_SEND_LEASE": "2s",
        **values,
    }
    return process_env(database.url, tmp_path / "data", **chosen)


def test_killed_while_deciding_then_restarted(database: Database, engine: Engine, tmp_path: Path) -> None:
    workflow = add_workflow(engine)
    with Receiver() as receiver:
        env = _env(database, tmp_path, receiver)
        log = tmp_path / "worker.log"
        add_due_journeys(engine, workflow, JOURNEYS)
        first = start(["worker", "--poll", "3600"], env, tmp_path, log)
        try:
            wait_for("a batch of journeys decided", lambda: scalar(engine, "SELECT count(*) FROM outbox") > 0)
        finally:
            kill(first)
        decided = scalar(engine, "SELECT count(*) FROM outbox")
        assert 0 < decided < JOURNEYS, "the kill should land while journeys are being decided"
        # what was committed is whole: each decided step has its row, nothing was sent yet
        assert receiver.count() == 0
        assert scalar(engine, "SELECT count(*) FROM journey_steps WHERE kind = 'send'") == decided

        second = start(["worker", "--poll", "3600"], env, tmp_path, log)
        try:
            wait_for("every journey decided and sent", lambda: _finished(engine))
        finally:
            assert stop(second) == 0, log.read_text()
        statuses = _assert_guarantees(engine, receiver)
    assert statuses == {"delivered": JOURNEYS}


def test_killed_while_sending_then_restarted(database: Database, engine: Engine, tmp_path: Path) -> None:
    workflow = add_workflow(engine)
    with Receiver(stall_after=250) as receiver:
        env = _env(database, tmp_path, receiver)
        log = tmp_path / "worker.log"
        add_due_journeys(engine, workflow, JOURNEYS)
        first = start(["worker", "--poll", "3600"], env, tmp_path, log)
        try:
            # 250 answered, then sends hang in flight at the receiver
            wait_for("sends in flight at a stalled receiver", lambda: receiver.count() >= 260)
            wait_for(
                "answered sends recorded",
                lambda: scalar(engine, "SELECT count(*) FROM outbox WHERE status = 'delivered'") > 0,
            )
        finally:
            kill(first)
        in_flight = scalar(engine, "SELECT count(*) FROM outbox WHERE status = 'sending'")
        assert in_flight > 0, "the kill should land while sends are in flight"
        receiver.release()

        second = start(["worker", "--poll", "3600"], env, tmp_path, log)
        try:
            wait_for("every journey decided and sent", lambda: _finished(engine))
        finally:
            assert stop(second) == 0, log.read_text()
        statuses = _assert_guarantees(engine, receiver)
    # the messages in flight at the kill are unknown (never resent); the rest were delivered
    assert statuses["unknown"] == in_flight
    assert statuses["delivered"] == JOURNEYS - in_flight
    reasons = rows(engine, "SELECT DISTINCT reason FROM outbox WHERE status = 'unknown'")
    assert [r.reason for r in reasons] == [
        "the worker stopped while sending it: it may have been sent, so it is not sent again"
    ]


@pytest.mark.parametrize("database", ["postgres"], indirect=True)  # SQLite has one writer
def test_two_workers_never_take_the_same_step(database: Database, engine: Engine, tmp_path: Path) -> None:
    n = 2000
    workflow = add_workflow(engine)
    with Receiver() as receiver:
        env = _env(database, tmp_path, receiver, RFMFLOW_SEND_LEASE="5m")
        logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
        workers = [start(["worker", "--poll", "3600"], env, tmp_path, log) for log in logs]
        try:
            for log in logs:  # both loops are running before the journeys become due
                wait_for(f"{log.name} started", lambda log=log: "automation loop started" in log.read_text())
            add_due_journeys(engine, workflow, n)
            wait_for(
                "every journey decided and sent",
                lambda: scalar(engine, "SELECT count(*) FROM outbox WHERE status = 'delivered'") == n,
            )
        finally:
            codes = [stop(w) for w in workers]
        assert codes == [0, 0], [log.read_text()[-2000:] for log in logs]
    seen = receiver.per_id()
    assert len(seen) == n and max(seen.values()) == 1
    steps = rows(engine, "SELECT enrolment_id, step FROM journey_steps WHERE kind = 'send'")
    assert len(steps) == len({(s.enrolment_id, s.step) for s in steps}) == n
    keys = rows(engine, "SELECT count(*) AS n, count(DISTINCT dedupe_key) AS k FROM outbox")
    assert (keys[0].n, keys[0].k) == (n, n)
    states = rows(engine, "SELECT status, count(*) AS n FROM enrolments GROUP BY status")
    assert {(s.status, s.n) for s in states} == {("active", n // 2), ("exited", n // 2)}
    # both workers took part: the journeys each advanced add up to all of them
    shares = [_journeys_advanced(log.read_text()) for log in logs]
    assert sum(shares) == n and all(shares), shares


def _journeys_advanced(log: str) -> int:
    return sum(int(m) for m in re.findall(r'"runner": \{"journeys": (\d+)', log))

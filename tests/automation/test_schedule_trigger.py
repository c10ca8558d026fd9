"""Schedule triggers: the audience enrolled once per occurrence (business time zone), racing
passes enrolling no one twice, no back-fill before activation, one catch-up after downtime —
on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from engine_helpers import automation_settings, decide_now, rows, service_fixtures, shop
from service_helpers import Server, post_events

from rfmflow.automation.schedule_trigger import enrol_from_schedules, latest_occurrence
from rfmflow.service.db.engine import run_write
from rfmflow.service.db.tables import automation_cursors, workflows

_service = service_fixtures()
database = _service.database
settings = _service.settings
bare_engine = _service.bare_engine
engine = _service.engine
server = _service.server

BERLIN = ZoneInfo("Europe/Berlin")


def test_latest_occurrence_in_the_business_zone() -> None:
    now = datetime(2026, 3, 18, 8, 30, tzinfo=UTC)  # a Wednesday, 09:30 in Berlin (CET)
    assert latest_occurrence("daily 09:00", now, BERLIN) == datetime(2026, 3, 18, 8, 0, tzinfo=UTC)
    assert latest_occurrence("daily 10:00", now, BERLIN) == datetime(2026, 3, 17, 9, 0, tzinfo=UTC)
    assert latest_occurrence("weekly 10:00", now, BERLIN) == datetime(2026, 3, 16, 9, 0, tzinfo=UTC)  # Monday
    assert latest_occurrence("monthly 10:00", now, BERLIN) == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert latest_occurrence("monthly 10:00", datetime(2026, 3, 1, 8, 0, tzinfo=UTC), BERLIN) == datetime(
        2026, 2, 1, 9, 0, tzinfo=UTC
    )
    # across the change to summer time (29 March 2026): 10:00 local is 08:00 UTC after it
    assert latest_occurrence("daily 10:00", datetime(2026, 3, 30, 12, 0, tzinfo=UTC), BERLIN) == datetime(
        2026, 3, 30, 8, 0, tzinfo=UTC
    )
    assert latest_occurrence("weekly 10:00", datetime(2026, 3, 16, 9, 0, tzinfo=UTC), BERLIN) == datetime(
        2026, 3, 16, 9, 0, tzinfo=UTC
    )  # the occurrence itself counts


def _activated(server: Server) -> datetime:
    with server.engine.connect() as conn:
        found: datetime = conn.execute(sa.select(workflows.c.activated_at)).scalar_one()
    return found


def _workflow(hour: int) -> str:
    return f"""\
name: daily-at-risk
trigger: {{schedule: "daily {hour:02d}:00", audience: {{segment: [At Risk]}}}}
reentry: always
steps:
  - add_tag: scheduled-touch
  - exit
"""


def test_schedule_enrols_the_audience_once_per_occurrence(server: Server) -> None:
    post_events(server, shop())
    with server.client("admin") as admin:
        assert admin.post("/v1/runs").status_code == 201
        # 12 hours away from now, so the occurrence just before activation is long past
        hour = (datetime.now(UTC).hour + 12) % 24
        assert admin.post("/v1/workflows", json={"yaml": _workflow(hour)}).status_code == 201
        assert admin.post("/v1/workflows/daily-at-risk/activate").status_code == 200
    at_risk = {
        r.customer_id
        for r in rows(server.engine, "SELECT customer_id FROM customer_scores WHERE segment = 'At Risk'")
    }
    assert at_risk, "the data must put someone in At Risk"
    activated = _activated(server)
    auto = automation_settings()

    # right after activation: the latest occurrence was before it, so nothing is back-filled
    soon = decide_now(server.engine, server.settings, auto, now=activated + timedelta(minutes=1))
    assert soon["schedules"]["enrolled"] == 0

    # the first occurrence after activation enrols the audience, and the runner takes them to the exit
    first_at = activated + timedelta(hours=13)
    first = decide_now(server.engine, server.settings, auto, now=first_at)
    assert first["schedules"]["enrolled"] == len(at_risk)
    enrolled = rows(server.engine, "SELECT customer_id, cause, status FROM enrolments")
    assert {r.customer_id for r in enrolled} == at_risk
    assert {(r.cause[:9], r.status) for r in enrolled} == {("schedule:", "exited")}

    # again in the same occurrence: nothing; and a racing pass that missed the cursor enrols no one twice
    assert (
        decide_now(server.engine, server.settings, auto, now=first_at + timedelta(minutes=5))["schedules"][
            "enrolled"
        ]
        == 0
    )
    run_write(server.engine, lambda c: c.execute(sa.delete(automation_cursors)))
    raced = run_write(server.engine, lambda c: enrol_from_schedules(c, first_at + timedelta(minutes=6)))
    assert raced["enrolled"] == 0
    assert len(rows(server.engine, "SELECT id FROM enrolments")) == len(at_risk)

    # the worker was down for five days: the latest missed occurrence fires once, not five times
    later = decide_now(server.engine, server.settings, auto, now=first_at + timedelta(days=5, minutes=30))
    assert later["schedules"]["enrolled"] == len(at_risk)
    occurrences = rows(server.engine, "SELECT DISTINCT substr(cause, 1, 24) AS o FROM enrolments")
    assert len(occurrences) == 2
    assert len(rows(server.engine, "SELECT id FROM enrolments")) == 2 * len(at_risk)


def test_schedule_respects_reentry_never(server: Server) -> None:
    post_events(server, shop())
    hour = (datetime.now(UTC).hour + 12) % 24
    with server.client("admin") as admin:
        assert admin.post("/v1/runs").status_code == 201
        text = _workflow(hour).replace("reentry: always\n", "")
        assert admin.post("/v1/workflows", json={"yaml": text}).status_code == 201
        assert admin.post("/v1/workflows/daily-at-risk/activate").status_code == 200
    activated = _activated(server)
    auto = automation_settings()
    first = decide_now(server.engine, server.settings, auto, now=activated + timedelta(hours=13))
    assert first["schedules"]["enrolled"] > 0
    second = decide_now(server.engine, server.settings, auto, now=activated + timedelta(hours=37))
    assert second["schedules"]["enrolled"] == 0  # reentry: never (the default) lets each in once

"""The scoring schedule, the lease, workers racing for a due run, the in-process scheduler."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from rfmflow.service.db import create_db_engine
from rfmflow.service.db.tables import jobs, scoring_runs
from rfmflow.service.ingest import ingest_raw
from rfmflow.service.scoring import RunResult
from rfmflow.service.scoring_jobs import (
    JOB,
    RunInProgress,
    claim,
    ensure_job,
    load_schedule,
    parse_schedule,
    run_due,
    run_now,
    start_scheduler,
    worker_id,
)
from rfmflow.service.settings import Settings, SettingsError

UTC_ZONE = ZoneInfo("UTC")


# --- schedules (no database) -------------------------------------------------------------------
def test_daily_schedule_in_the_business_time_zone() -> None:
    daily = parse_schedule("daily 03:00")
    assert daily.text == "daily 03:00"
    at = datetime(2026, 3, 1, 2, 59, tzinfo=UTC)
    assert daily.next_after(at, UTC_ZONE) == datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
    assert daily.next_after(datetime(2026, 3, 1, 3, 0, tzinfo=UTC), UTC_ZONE) == datetime(
        2026, 3, 2, 3, 0, tzinfo=UTC
    )
    berlin = ZoneInfo("Europe/Berlin")  # 03:00 in Berlin is 02:00 UTC in winter, 01:00 in summer
    assert daily.next_after(datetime(2026, 1, 10, 12, tzinfo=UTC), berlin) == datetime(
        2026, 1, 11, 2, tzinfo=UTC
    )
    assert daily.next_after(datetime(2026, 7, 10, 12, tzinfo=UTC), berlin) == datetime(
        2026, 7, 11, 1, tzinfo=UTC
    )


def test_cron_expressions() -> None:
    every_15 = parse_schedule("*/15 * * * *")
    assert every_15.next_after(datetime(2026, 1, 1, 10, 7, 30, tzinfo=UTC), UTC_ZONE) == datetime(
        2026, 1, 1, 10, 15, tzinfo=UTC
    )
    weekdays = parse_schedule("30 6 * * 1-5")  # 2026-01-03 is a Saturday
    assert weekdays.next_after(datetime(2026, 1, 3, 12, tzinfo=UTC), UTC_ZONE) == datetime(
        2026, 1, 5, 6, 30, tzinfo=UTC
    )
    sunday = parse_schedule("0 4 * * 7")
    assert sunday.next_after(datetime(2026, 1, 3, 12, tzinfo=UTC), UTC_ZONE) == datetime(
        2026, 1, 4, 4, tzinfo=UTC
    )
    either = parse_schedule("0 0 13 * 5")  # the 13th or any Friday (cron: either field)
    assert either.next_after(datetime(2026, 1, 3, tzinfo=UTC), UTC_ZONE) == datetime(2026, 1, 9, tzinfo=UTC)
    assert either.next_after(datetime(2026, 1, 10, tzinfo=UTC), UTC_ZONE) == datetime(2026, 1, 13, tzinfo=UTC)
    monthly = parse_schedule("0 2 1,15 */3 *")
    assert monthly.next_after(datetime(2026, 2, 1, tzinfo=UTC), UTC_ZONE) == datetime(
        2026, 4, 1, 2, tzinfo=UTC
    )
    assert parse_schedule("off").off and parse_schedule("off").next_after(datetime.now(UTC), UTC_ZONE) is None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("daily 25:00", "daily HH:MM"),
        ("daily 3", "daily HH:MM"),
        ("* * *", "5 fields"),
        ("61 * * * *", "minute: '61' is outside 0-59"),
        ("0 0 * * mon", "day of week: 'mon' is not a number"),
        ("*/0 * * * *", "outside"),
    ],
)
def test_bad_schedules_name_the_part(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("*", r"\*")):
        parse_schedule(text)


def test_schedule_setting(tmp_path: Path) -> None:
    assert load_schedule({}, cwd=tmp_path).text == "daily 03:00"
    assert load_schedule({"RFMFLOW_SCORE_CRON": "0 * * * *"}, cwd=tmp_path).text == "0 * * * *"
    (tmp_path / ".env").write_text("RFMFLOW_SCORE_CRON=daily 04:30\n")
    assert load_schedule({}, cwd=tmp_path).text == "daily 04:30"
    with pytest.raises(SettingsError, match="RFMFLOW_SCORE_CRON"):
        load_schedule({"RFMFLOW_SCORE_CRON": "sometimes"}, cwd=tmp_path)


# --- the job and its lease ---------------------------------------------------------------------
def _job(engine: Engine) -> dict[str, object]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(jobs).where(jobs.c.name == JOB)).mappings().one())


def _runs(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(scoring_runs)).scalar_one())


def _shop(engine: Engine, settings: Settings) -> None:
    now = datetime.now(UTC)
    items = [
        {"event_id": f"e{i}", "customer_id": f"c{i % 25}", "type": "purchase",
         "occurred_at": (now - timedelta(days=i)).isoformat(), "amount": str(10 + i)}
        for i in range(60)
    ]  # fmt: skip
    ingest_raw(engine, items, settings)


def test_first_run_is_due_at_once_then_on_schedule(engine: Engine, settings: Settings) -> None:
    schedule = parse_schedule("daily 03:00")
    now = datetime.now(UTC)
    ensure_job(engine, schedule, settings, now=now)
    assert _job(engine)["next_run_at"] == now  # nothing scored yet: due now
    result = run_due(engine, settings, schedule, "w1", now=now)
    assert result is not None and result.trigger == "schedule"
    job = _job(engine)
    assert job["next_run_at"] == schedule.next_after(now, settings.zone)
    assert job["locked_by"] is None and job["last_run_id"] == result.id
    assert run_due(engine, settings, schedule, "w1", now=now) is None  # not due again
    ensure_job(engine, parse_schedule("0 * * * *"), settings, now=now)  # a new schedule is followed
    assert _job(engine)["schedule"] == "0 * * * *"


def test_two_workers_racing_for_a_due_run_make_exactly_one(engine: Engine, settings: Settings) -> None:
    _shop(engine, settings)
    schedule = parse_schedule("daily 03:00")
    ensure_job(engine, schedule, settings)
    due = datetime.now(UTC) + timedelta(seconds=1)
    engines = [create_db_engine(settings.database_url) for _ in range(3)]
    results: list[RunResult | None] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(engines))

    def worker(own: Engine) -> None:
        try:
            barrier.wait()
            results.append(run_due(own, settings, schedule, worker_id(), now=due))
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for e in engines:
        e.dispose()
    assert not errors
    assert len(results) == 3 and sum(r is not None for r in results) == 1
    assert _runs(engine) == 1
    # The same due time again (a worker whose clock lags): already done.
    assert run_due(engine, settings, schedule, worker_id(), now=due) is None


def test_runs_never_overlap(engine: Engine, settings: Settings) -> None:
    assert claim(engine, "someone", due_only=False)
    with pytest.raises(RunInProgress):
        run_now(engine, settings, trigger="api", wait_seconds=0.3)
    # An expired lease (a worker died) is taken over.
    later = datetime.now(UTC) + timedelta(hours=1)
    result = run_now(engine, settings, trigger="api", now=later)
    assert result.trigger == "api" and _job(engine)["locked_by"] is None


def test_a_failed_run_releases_the_lease_and_writes_nothing(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rfmflow.service import scoring

    _shop(engine, settings)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(scoring, "_bands", broken)
    with pytest.raises(RuntimeError):
        run_now(engine, settings, trigger="api")
    job = _job(engine)
    assert job["locked_by"] is None and "disk on fire" in str(job["last_error"])
    assert _runs(engine) == 0
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM customer_scores")).scalar_one() == 0


def test_the_in_process_scheduler_runs_and_stops(engine: Engine, settings: Settings) -> None:
    _shop(engine, settings)
    stop = start_scheduler(settings, engine, schedule=parse_schedule("daily 03:00"), poll_seconds=0.05)
    try:
        deadline = time.monotonic() + 30
        while _runs(engine) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop()
    assert _runs(engine) == 1  # the first run, due at once; the next is tomorrow
    assert start_scheduler(settings, engine, schedule=parse_schedule("off"))() is None

"""The scoring schedule and its workers: one full run at a time, each due run exactly once.

The schedule is ``RFMFLOW_SCORE_CRON`` (default ``daily 03:00``): ``daily HH:MM``, a 5-field
cron expression (``minute hour day-of-month month day-of-week``; ``*``, numbers, ``a-b``,
lists and ``/step``; day of week 0-7 with 0 and 7 Sunday) or ``off`` (runs only on demand).
Times are in the business time zone (``RFMFLOW_TIMEZONE``).

The ``jobs`` row ``score`` holds the next due time and a lease. A worker claims the lease with
one conditional ``UPDATE ... RETURNING`` (due, and not leased or the lease expired): on
PostgreSQL the row lock makes every other claimer see the lease and give up; on SQLite the
write lock does the same. The run's swap transaction releases the lease and moves the due
time to the next one *in the same commit*, so a due run is recorded once even if a worker
dies at any point (its lease expires and another worker runs it). Runs on demand (``POST
/v1/runs``, scheme changes) take the same lease, so runs never overlap.

On a fresh installation (no run yet) the first run is due at once.

:func:`start_scheduler` runs the loop in a background thread of ``serve``; ``rfmflow worker``
runs it in the foreground (:func:`worker_loop`), as many processes as wanted.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from rfmflow.core.errors import RfmflowError
from rfmflow.core.scheme import Scheme
from rfmflow.service.db.engine import run_write
from rfmflow.service.db.store import insert_or_ignore
from rfmflow.service.db.tables import jobs, scoring_runs
from rfmflow.service.scoring import RunResult, run_scoring
from rfmflow.service.settings import PREFIX, Settings, SettingsError, read_env_file

log = logging.getLogger("rfmflow.service.scheduler")

JOB = "score"
LEASE = timedelta(minutes=30)
"""How long a claimed run may take before another worker may take it over."""
RETRY_AFTER = timedelta(minutes=5)
"""When a scheduled run fails, it is tried again this much later."""
DEFAULT_SCHEDULE = "daily 03:00"
POLL_SECONDS = 30.0


class RunInProgress(RfmflowError):
    """Another run (or scheme change) holds the scoring lease."""


class LeaseLost(RfmflowError):
    """The run outlived its lease and another worker took the job over; nothing was written."""


# --- schedules ---------------------------------------------------------------------------------
_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                start, stop = low, high
            elif "-" in base:
                a, b = base.split("-", 1)
                start, stop = int(a), int(b)
            else:
                start = stop = int(base)
                if step_text:
                    stop = high
        except ValueError:
            raise ValueError(f"{name}: {part!r} is not a number, a-b, * or a /step of one") from None
        if step < 1 or not low <= start <= stop <= high:
            raise ValueError(f"{name}: {part!r} is outside {low}-{high}")
        values.update(range(start, stop + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    """When scheduled runs are due (in the business time zone); ``off`` has none."""

    text: str
    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    days: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    weekdays: frozenset[int] = frozenset()  # cron numbering, 0 = Sunday
    any_day: bool = True
    any_weekday: bool = True

    @property
    def off(self) -> bool:
        return not self.minutes

    def _day_matches(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        in_days = d.day in self.days
        in_weekdays = (d.weekday() + 1) % 7 in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return in_weekdays
        if self.any_weekday:
            return in_days
        return in_days or in_weekdays  # cron: either restricted field matches

    def next_after(self, moment: datetime, zone: ZoneInfo) -> datetime | None:
        """The first due time strictly after ``moment`` (UTC), or None when off."""
        if self.off:
            return None
        local = moment.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0) + timedelta(minutes=1)
        day = local.date()
        for _ in range(366 * 8):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = datetime(day.year, day.month, day.day, hour, minute)
                        if candidate >= local:
                            return candidate.replace(tzinfo=zone).astimezone(UTC)
            day += timedelta(days=1)
        return None  # e.g. 31 February


def parse_schedule(text: str) -> Schedule:
    """``daily HH:MM``, a 5-field cron expression or ``off``; raise ValueError naming the part."""
    clean = " ".join(text.strip().split())
    lower = clean.lower()
    if lower in ("off", "never", "none"):
        return Schedule("off")
    if lower.startswith("daily"):
        rest = lower[len("daily") :].strip() or "00:00"
        hh, sep, mm = rest.partition(":")
        if not (sep and hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60 and len(mm) == 2):
            raise ValueError(f"{clean!r}: expected 'daily HH:MM' (24-hour clock, e.g. daily 03:00)")
        clean = f"{int(mm)} {int(hh)} * * *"
    parts = clean.split(" ")
    if len(parts) != 5:
        raise ValueError(
            f"{text.strip()!r}: expected 'daily HH:MM', 'off' or a cron expression of 5 fields "
            "(minute hour day-of-month month day-of-week)"
        )
    sets = [_field(p, name, low, high) for p, (name, low, high) in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(0 if d == 7 else d for d in sets[4])
    return Schedule(
        text=clean if not lower.startswith("daily") else " ".join(lower.split()),
        minutes=sets[0],
        hours=sets[1],
        days=sets[2],
        months=sets[3],
        weekdays=weekdays,
        any_day=parts[2] == "*",
        any_weekday=parts[4] == "*",
    )


def load_schedule(
    environ: Mapping[str, str] | None = None, *, env_file: Path | None = None, cwd: Path | None = None
) -> Schedule:
    """``RFMFLOW_SCORE_CRON`` from the environment (or the ``.env`` file), else the default."""
    env = dict(os.environ if environ is None else environ)
    name = f"{PREFIX}SCORE_CRON"
    value = env.get(name)
    if not value:
        path = env_file if env_file is not None else (cwd or Path.cwd()) / ".env"
        value = read_env_file(path).get(name)
    try:
        return parse_schedule(value or DEFAULT_SCHEDULE)
    except ValueError as err:
        raise SettingsError(f"{name}: {err}") from None


# --- the job row and its lease -----------------------------------------------------------------
def worker_id(kind: str = "worker") -> str:
    return f"{kind}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def ensure_job(
    engine: Engine, schedule: Schedule, settings: Settings, *, now: datetime | None = None
) -> None:
    """Create the job row (due at once when nothing was ever scored), or follow a changed
    schedule (the next due time is recomputed)."""
    moment = _now(now)

    def work(conn: Connection) -> None:
        row = conn.execute(sa.select(jobs).where(jobs.c.name == JOB)).first()
        if row is None:
            never = conn.execute(sa.select(scoring_runs.c.id).limit(1)).first() is None
            first = moment if never and not schedule.off else schedule.next_after(moment, settings.zone)
            insert_or_ignore(conn, jobs, {"name": JOB, "schedule": schedule.text, "next_run_at": first})
        elif row.schedule != schedule.text or (row.next_run_at is None and not schedule.off):
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.name == JOB)
                .values(schedule=schedule.text, next_run_at=schedule.next_after(moment, settings.zone))
            )

    run_write(engine, work)


def claim(engine: Engine, holder: str, *, now: datetime | None = None, due_only: bool = True) -> bool:
    """Take the scoring lease for ``holder``: True when taken (and, with ``due_only``, a
    scheduled run is due). One conditional UPDATE: concurrent claimers cannot both win."""
    moment = _now(now)

    def work(conn: Connection) -> bool:
        if not due_only:
            insert_or_ignore(conn, jobs, {"name": JOB, "schedule": "off", "next_run_at": None})
        free = sa.or_(jobs.c.locked_until.is_(None), jobs.c.locked_until < moment)
        query = sa.update(jobs).where(jobs.c.name == JOB, free)
        if due_only:
            query = query.where(jobs.c.next_run_at.is_not(None), jobs.c.next_run_at <= moment)
        taken = conn.execute(
            query.values(locked_by=holder, locked_until=moment + LEASE).returning(jobs.c.name)
        ).first()
        return taken is not None

    return run_write(engine, work)


_KEEP: Any = object()


def release(
    conn: Connection,
    holder: str,
    *,
    next_run_at: datetime | None = _KEEP,
    run_id: int | None = None,
    error: str | None = None,
) -> bool:
    """Give the lease back (in the caller's transaction); False when ``holder`` no longer has it."""
    values: dict[str, Any] = {"locked_by": None, "locked_until": None, "last_error": error}
    if next_run_at is not _KEEP:
        values["next_run_at"] = next_run_at
    if run_id is not None:
        values["last_run_id"] = run_id
    done = conn.execute(
        sa.update(jobs)
        .where(jobs.c.name == JOB, jobs.c.locked_by == holder)
        .values(**values)
        .returning(jobs.c.name)
    ).first()
    return done is not None


def job_state(engine: Engine) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(jobs).where(jobs.c.name == JOB)).mappings().first()
    if row is None:
        return None
    return {
        "schedule": row["schedule"],
        "next_run_at": row["next_run_at"].isoformat() if row["next_run_at"] else None,
        "running": row["locked_until"] is not None and row["locked_until"] > datetime.now(UTC),
        "last_run_id": row["last_run_id"],
        "last_error": row["last_error"],
    }


def _run_leased(
    engine: Engine,
    settings: Settings,
    holder: str,
    *,
    trigger: str,
    actor: str | None,
    started: datetime,
    next_run_at: datetime | None = _KEEP,
    scheme_text: str | None = None,
    scheme: Scheme | None = None,
) -> RunResult:
    """Run with the lease held by ``holder``; the lease goes back with the run's commit (or,
    when the run fails, in a transaction of its own)."""

    def finish(conn: Connection, run_id: int) -> None:
        if not release(conn, holder, next_run_at=next_run_at, run_id=run_id):
            raise LeaseLost("the run took longer than its lease and another worker took the job over")

    try:
        return run_scoring(
            engine,
            settings,
            trigger=trigger,
            actor=actor,
            now=started,
            scheme_text=scheme_text,
            scheme=scheme,
            finish=finish,
        )
    except BaseException as err:
        retry = started + RETRY_AFTER if trigger == "schedule" else _KEEP
        message = f"{type(err).__name__}: {err}".splitlines()[0][:500]
        try:
            run_write(engine, lambda conn: release(conn, holder, next_run_at=retry, error=message))
        except Exception:  # pragma: no cover - the database is gone; the lease will expire
            log.exception("could not release the scoring lease")
        raise


def run_now(
    engine: Engine,
    settings: Settings,
    *,
    trigger: str,
    actor: str | None = None,
    wait_seconds: float = 0.0,
    now: datetime | None = None,
    scheme_text: str | None = None,
    scheme: Scheme | None = None,
) -> RunResult:
    """A run on demand (``POST /v1/runs``, ``PUT /v1/scheme``, the CLI): waits up to
    ``wait_seconds`` for a run in progress to end, else raises :class:`RunInProgress`."""
    holder = worker_id(trigger)
    deadline = time.monotonic() + wait_seconds
    while not claim(engine, holder, now=now, due_only=False):
        if time.monotonic() >= deadline:
            raise RunInProgress("a scoring run is in progress; try again when it has finished")
        time.sleep(0.2)
    return _run_leased(
        engine,
        settings,
        holder,
        trigger=trigger,
        actor=actor,
        started=_now(now),
        scheme_text=scheme_text,
        scheme=scheme,
    )


def run_due(
    engine: Engine, settings: Settings, schedule: Schedule, holder: str, *, now: datetime | None = None
) -> RunResult | None:
    """Run the scheduled run if it is due and no other worker has it; None otherwise."""
    moment = _now(now)
    if not claim(engine, holder, now=moment, due_only=True):
        return None
    result = _run_leased(
        engine,
        settings,
        holder,
        trigger="schedule",
        actor=holder,
        started=moment,
        next_run_at=schedule.next_after(moment, settings.zone),
    )
    if settings.predictions:
        refit_predictions(engine, settings)
    return result


def refit_predictions(engine: Engine, settings: Settings) -> None:
    """Fit the churn and CLV models after a run; a failure is logged and recorded, never raised
    (the run itself has committed)."""
    from rfmflow.service.predictions import fit_predictions

    try:
        fit_predictions(engine, settings)
    except Exception:
        log.exception("fitting the predictions failed")


# --- loops ---------------------------------------------------------------------------------------
def worker_loop(
    engine: Engine,
    settings: Settings,
    stop: threading.Event,
    *,
    schedule: Schedule,
    holder: str | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> None:
    """Check for a due run every ``poll_seconds`` until ``stop`` is set (a run in progress
    finishes first)."""
    me = holder or worker_id()
    ready = False
    while not stop.is_set():
        try:
            if not ready:
                ensure_job(engine, schedule, settings)
                ready = True
            run_due(engine, settings, schedule, me)
        except Exception:
            log.exception("scheduled scoring run failed", extra={"worker": me})
        stop.wait(poll_seconds)


def start_scheduler(
    settings: Settings,
    engine: Engine,
    *,
    schedule: Schedule | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> Callable[[], None]:
    """Start the scheduler in a daemon thread of this process; return a function that stops it
    (it waits for a run in progress). With the schedule ``off`` nothing is started."""
    chosen = schedule or load_schedule()
    if chosen.off:
        log.info("scheduled scoring is off (RFMFLOW_SCORE_CRON=off)")
        return lambda: None
    stop = threading.Event()
    thread = threading.Thread(
        target=worker_loop,
        args=(engine, settings, stop),
        kwargs={"schedule": chosen, "holder": worker_id("serve"), "poll_seconds": poll_seconds},
        name="rfmflow-scheduler",
        daemon=True,
    )
    thread.start()
    log.info("scheduler started", extra={"schedule": chosen.text, "timezone": settings.timezone})

    def stopper() -> None:
        stop.set()
        thread.join(timeout=LEASE.total_seconds())

    return stopper

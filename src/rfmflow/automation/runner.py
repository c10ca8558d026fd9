"""The runner: takes due journeys and decides their next steps, writing each decision whole.

:func:`run_due` claims a batch of active enrolments that are due (``due_at <= now``) in
active workflows — on PostgreSQL with ``FOR UPDATE SKIP LOCKED``, so two workers never take
the same journey; on SQLite the one writer lock does the same — loads the customers' facts
in a few queries (scores, profile, tags, event types since enrolment), calls
:func:`~rfmflow.automation.journey.advance`, and in the SAME transaction writes:

- the outbox rows, each with the dedupe key ``enrolment:<id>:<steps taken>:<step>``, so a
  batch replayed after a crash writes each message once;
- tag changes through :func:`rfmflow.service.tags.change_tags` (``tag_changes`` and the audit
  row follow), hand-off ``tasks``, ``journey_steps``, and the enrolment's new state.

A crash before the commit loses nothing (the journeys are still due); after it, nothing is
done twice. Splits draw from a random generator seeded by the enrolment and its step count, so
a replay chooses the same branch.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from rfmflow.automation.definition import Workflow, workflow_from_yaml
from rfmflow.automation.enrol import insert_ignore
from rfmflow.automation.journey import ChangeTags, Facts, Handoff, Journey, SendMessage, StepTaken, advance
from rfmflow.service.db.engine import run_write
from rfmflow.service.db.tables import (
    customer_profiles,
    customer_scores,
    customer_tags,
    enrolments,
    events,
    journey_steps,
    outbox,
    tasks,
    workflow_versions,
    workflows,
)
from rfmflow.service.predictions import predictions_for
from rfmflow.service.tags import TagOp, change_tags

BATCH = 500


@dataclass
class RunStats:
    journeys: int = 0
    messages: int = 0
    tasks: int = 0
    tag_changes: int = 0
    finished: int = 0

    def add(self, other: RunStats) -> None:
        self.journeys += other.journeys
        self.messages += other.messages
        self.tasks += other.tasks
        self.tag_changes += other.tag_changes
        self.finished += other.finished

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class WorkflowCache:
    """Workflow versions parsed once per process."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int], Workflow] = {}

    def get(self, conn: Connection, workflow_id: int, version: int) -> Workflow:
        key = (workflow_id, version)
        if key not in self._cache:
            v = workflow_versions.c
            text = conn.execute(
                sa.select(v.yaml).where(v.workflow_id == workflow_id, v.version == version)
            ).scalar_one()
            self._cache[key] = workflow_from_yaml(str(text), source=f"workflow {workflow_id} v{version}")
        return self._cache[key]


def _chunks(ids: Sequence[str], size: int = 1000) -> list[list[str]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


def load_facts(conn: Connection, rows: Sequence[Any], money_decimals: int) -> dict[int, Facts]:
    """Facts for each enrolment row (``id``, ``customer_id``, ``enrolled_at``)."""
    ids = sorted({r.customer_id for r in rows})
    scores: dict[str, Any] = {}
    profiles: dict[str, Any] = {}
    held: dict[str, set[str]] = defaultdict(set)
    seen: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    earliest = min((r.enrolled_at for r in rows), default=None)
    for chunk in _chunks(ids):
        for srow in conn.execute(sa.select(customer_scores).where(customer_scores.c.customer_id.in_(chunk))):
            scores[srow.customer_id] = srow
        for prow in conn.execute(
            sa.select(customer_profiles).where(customer_profiles.c.customer_id.in_(chunk))
        ):
            profiles[prow.customer_id] = prow
        for cid, tag in conn.execute(
            sa.select(customer_tags.c.customer_id, customer_tags.c.tag).where(
                customer_tags.c.customer_id.in_(chunk)
            )
        ):
            held[cid].add(tag)
        if earliest is not None:
            ev = events.c
            query = (
                sa.select(ev.customer_id, ev.event_type, sa.func.max(ev.occurred_at))
                .where(ev.customer_id.in_(chunk), ev.occurred_at >= earliest)
                .group_by(ev.customer_id, ev.event_type)
            )
            for cid, etype, last in conn.execute(query):
                seen[cid].append((etype, last))
    predicted = predictions_for(conn, ids, money_decimals)  # churn risk, p_alive, clv, ...
    scale = Decimal(10) ** money_decimals
    out: dict[int, Facts] = {}
    for r in rows:
        s = scores.get(r.customer_id)
        p = profiles.get(r.customer_id)
        customer: dict[str, Any] = {"customer_id": r.customer_id}
        if s is not None:
            monetary: Any = s.monetary
            if s.monetary_minor is not None:
                monetary = float(Decimal(s.monetary_minor) / scale)
            customer.update(
                recency_days=s.recency_days,
                frequency=s.frequency,
                monetary=monetary,
                tenure_days=s.tenure_days,
                r_score=s.r_score,
                f_score=s.f_score,
                m_score=s.m_score,
                segment=s.segment,
                rfm=s.rfm,
                lifecycle=s.lifecycle,
            )
        customer.update(predicted.get(r.customer_id, {}))
        if p is not None:
            name = p.name or ""
            customer.update(
                name=p.name,
                first_name=name.split()[0] if name.strip() else None,
                email=p.email,
                phone=p.phone,
                language=p.language,
                timezone=p.timezone,
                traits=dict(p.traits or {}),
            )
        since = {etype for etype, last in seen.get(r.customer_id, []) if _aware(last) >= r.enrolled_at}
        out[r.id] = Facts(
            customer=customer,
            tags=frozenset(held.get(r.customer_id, set())),
            events_since_enrolment=frozenset(since),
            timezone=p.timezone if p is not None else None,
        )
    return out


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _journey(row: Any) -> Journey:
    return Journey(
        step=row.step,
        enrolled_at=row.enrolled_at,
        status=row.status,
        due_at=row.due_at,
        waiting_for=row.waiting_for,
        parked=row.parked,
        steps_taken=row.steps_taken,
        branch=row.branch,
    )


def message_json(action: SendMessage) -> dict[str, Any]:
    return {
        "text": action.text,
        "subject": action.subject,
        "html": action.html,
        "buttons": [list(b) for b in action.buttons],
        "payload": dict(action.payload),
        "fallback": action.fallback,
        "cap_policy": "defer",
    }


def claim_due(conn: Connection, now: datetime, limit: int) -> list[Any]:
    e = enrolments.c
    w = workflows.c
    query = (
        sa.select(enrolments)
        .where(
            e.status == "active",
            e.due_at <= now,
            e.workflow_id.in_(sa.select(w.id).where(w.status == "active").scalar_subquery()),
        )
        .order_by(e.due_at, e.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=enrolments)
    return list(conn.execute(query))


def run_batch(
    conn: Connection,
    now: datetime,
    *,
    cache: WorkflowCache,
    money_decimals: int = 2,
    business_zone: str = "UTC",
    limit: int = BATCH,
) -> RunStats:
    """Advance one batch of due journeys and write the outcome (the caller's transaction)."""
    stats = RunStats()
    rows = claim_due(conn, now, limit)
    if not rows:
        return stats
    facts = load_facts(conn, rows, money_decimals)
    messages: list[dict[str, Any]] = []
    task_rows: list[dict[str, Any]] = []
    step_rows: list[dict[str, Any]] = []
    tag_ops: list[TagOp] = []
    updates: list[dict[str, Any]] = []
    for row in rows:
        workflow = cache.get(conn, row.workflow_id, row.workflow_version)
        journey = _journey(row)
        rng = random.Random(f"{row.id}:{row.steps_taken}")
        fact = facts[row.id]
        new, actions = advance(workflow, journey, fact, now, rng=rng, business_zone=business_zone)
        stats.journeys += 1
        ordinal = 0
        for action in actions:
            if isinstance(action, SendMessage):
                ordinal += 1
                messages.append(
                    {
                        "dedupe_key": f"enrolment:{row.id}:{row.steps_taken}:{action.step}:{ordinal}",
                        "customer_id": row.customer_id,
                        "channel": action.channel,
                        "recipient": None,
                        "message": message_json(action),
                        "status": "pending",
                        "attempts": 0,
                        "not_before": now,
                        "created_at": now,
                        "workflow_id": row.workflow_id,
                        "enrolment_id": row.id,
                        "step": action.step,
                        "segment": fact.customer.get("segment"),
                    }
                )
            elif isinstance(action, ChangeTags):
                tag_ops.extend(TagOp(row.customer_id, t, "add") for t in action.add)
                tag_ops.extend(TagOp(row.customer_id, t, "remove") for t in action.remove)
            elif isinstance(action, Handoff):
                task_rows.append(
                    {
                        "customer_id": row.customer_id,
                        "queue": action.queue,
                        "priority": action.priority,
                        "note": action.note,
                        "status": "open",
                        "segment": fact.customer.get("segment"),
                        "workflow_id": row.workflow_id,
                        "enrolment_id": row.id,
                        "created_at": now,
                    }
                )
            elif isinstance(action, StepTaken):
                step_rows.append(
                    {
                        "enrolment_id": row.id,
                        "workflow_id": row.workflow_id,
                        "step": action.step,
                        "kind": action.kind,
                        "outcome": action.outcome,
                        "at": now,
                    }
                )
        if new.finished:
            stats.finished += 1
        updates.append(
            {
                "b_id": row.id,
                "b_status": new.status,
                "b_step": new.step,
                "b_due_at": new.due_at,
                "b_waiting_for": new.waiting_for,
                "b_parked": new.parked,
                "b_steps_taken": new.steps_taken,
                "b_branch": new.branch,
                "b_finished_at": now if new.finished else None,
            }
        )
    if messages:
        result = conn.execute(insert_ignore(conn, outbox).returning(outbox.c.id), messages)
        stats.messages = len(result.all())
    if task_rows:
        conn.execute(sa.insert(tasks), task_rows)
        stats.tasks = len(task_rows)
    if step_rows:
        conn.execute(sa.insert(journey_steps), step_rows)
    if tag_ops:
        report = change_tags(
            conn,
            tag_ops,
            actor="automation",
            at=now,
            atomic=False,
            create_missing=True,
            audit_action="automation.tags",
            audit_target="workflows",
        )
        stats.tag_changes = sum(1 for r in report.results if r.status in ("added", "removed"))
    e = enrolments.c
    conn.execute(
        sa.update(enrolments)
        .where(e.id == sa.bindparam("b_id"))
        .values(
            status=sa.bindparam("b_status"),
            step=sa.bindparam("b_step"),
            due_at=sa.bindparam("b_due_at"),
            waiting_for=sa.bindparam("b_waiting_for"),
            parked=sa.bindparam("b_parked"),
            steps_taken=sa.bindparam("b_steps_taken"),
            branch=sa.bindparam("b_branch"),
            finished_at=sa.bindparam("b_finished_at"),
        ),
        updates,
    )
    return stats


def run_due(
    engine: Engine,
    now: datetime,
    *,
    cache: WorkflowCache | None = None,
    money_decimals: int = 2,
    business_zone: str = "UTC",
    batch: int = BATCH,
    max_batches: int | None = None,
    stopping: Callable[[], bool] | None = None,
) -> RunStats:
    """Advance every due journey, one transaction per batch, until none is due (or ``stopping()``
    says so between two batches)."""
    cache = cache or WorkflowCache()
    total = RunStats()
    done = 0
    while (max_batches is None or done < max_batches) and not (stopping is not None and stopping()):
        stats = run_write(
            engine,
            lambda conn: run_batch(
                conn,
                now,
                cache=cache,
                money_decimals=money_decimals,
                business_zone=business_zone,
                limit=batch,
            ),
        )
        done += 1
        total.add(stats)
        if stats.journeys < batch:
            break
    return total


__all__ = [
    "BATCH",
    "RunStats",
    "WorkflowCache",
    "claim_due",
    "load_facts",
    "message_json",
    "run_batch",
    "run_due",
]

"""One customer's way through a workflow, decided step by step (pure: no I/O, no clock).

The engine keeps a :class:`Journey` per enrolment. :func:`advance` runs the steps that take no
time (send, branch, split, tags, handoff) one after another until the journey has to wait or
ends, and returns what was decided as :class:`Action` values; the caller stores the new
journey and the actions (the messages go to the outbox) in one transaction, so a decision is
never half-recorded. :func:`event_arrived` moves a journey waiting for an event on; a goal
event ends it as a conversion (:func:`goal_reached`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from rfmflow.automation.definition import TEMPLATE_FIELDS, Condition, Message, Step, Workflow, render_template
from rfmflow.automation.links import UNSUBSCRIBE_MARK

Status = Literal["active", "completed", "converted", "exited", "holdout"]
MAX_STEPS_AT_ONCE = 200
"""A journey runs at most this many instant steps in one go (loops must wait: a safety net)."""


@dataclass(frozen=True)
class Facts:
    """What the engine knows of the customer when it advances a journey."""

    customer: Mapping[str, Any]
    """Fields for conditions and templates (:data:`~rfmflow.automation.definition.TEMPLATE_FIELDS`)."""
    tags: frozenset[str] = frozenset()
    events_since_enrolment: frozenset[str] = frozenset()
    timezone: str | None = None
    """The customer's IANA zone (``None``: the business zone given to :func:`advance`)."""


@dataclass(frozen=True)
class Journey:
    """An enrolment's state: where it is, and when or on what it waits."""

    step: str | None
    enrolled_at: datetime
    status: Status = "active"
    due_at: datetime | None = None  # look at it again then (None: nothing scheduled)
    waiting_for: str | None = None  # the event type a parked wait waits for
    parked: bool = False  # sitting in a wait step that has begun
    steps_taken: int = 0
    branch: str | None = None  # the split branch (its first step), or "holdout"

    @property
    def finished(self) -> bool:
        return self.status != "active"


@dataclass(frozen=True)
class SendMessage:
    step: str
    channel: str
    text: str
    subject: str = ""
    html: str = ""
    buttons: tuple[tuple[str, str], ...] = ()
    payload: Mapping[str, str] = field(default_factory=dict)
    fallback: str | None = None


@dataclass(frozen=True)
class ChangeTags:
    step: str
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class Handoff:
    step: str
    queue: str
    note: str
    priority: str
    notify: bool


@dataclass(frozen=True)
class StepTaken:
    """A step the journey went through (for per-step results)."""

    step: str
    kind: str
    outcome: str = ""  # a branch's "then"/"else", a split's branch, a wait's "event"/"timeout"


Action = SendMessage | ChangeTags | Handoff | StepTaken

SEGMENT_PRIORITY = {
    "Champions": "high",
    "Loyal": "high",
    "Can't Lose Them": "urgent",
    "At Risk": "high",
    "Need Attention": "normal",
}
"""``priority: from_segment``: a hand-off for a customer in these segments gets this priority
(others ``normal``); a workflow can give its own segment -> priority mapping."""


def start(workflow: Workflow, now: datetime) -> Journey:
    """A new enrolment at the first step, due now."""
    return Journey(step=workflow.first, enrolled_at=now, due_at=now)


def holds(condition: Condition, facts: Facts) -> bool:
    """Whether ``condition`` holds for the customer (an unknown value does not hold)."""
    if condition.kind == "rule":
        assert condition.rule is not None
        return condition.rule.matches(dict(facts.customer)) is True
    if condition.kind == "segment":
        return facts.customer.get("segment") in condition.values
    if condition.kind == "tag":
        return all(t in facts.tags for t in condition.values)
    if condition.kind == "not_tag":
        return not any(t in facts.tags for t in condition.values)
    if condition.kind == "event_since_enrolment":
        return condition.values[0] in facts.events_since_enrolment
    results = (holds(part, facts) for part in condition.parts)
    return all(results) if condition.kind == "all" else any(results)


def _values(workflow: Workflow, step: Step, facts: Facts) -> dict[str, Any]:
    values: dict[str, Any] = dict.fromkeys(TEMPLATE_FIELDS)
    values.update(facts.customer)
    values.update(workflow.vars)
    values["tags"] = sorted(facts.tags)
    values["workflow"] = workflow.name
    values["step"] = step.id
    values["unsubscribe_url"] = UNSUBSCRIBE_MARK  # the sender puts the message's link there
    return values


def _message(workflow: Workflow, step: Step, message: Message, facts: Facts) -> SendMessage:
    values = _values(workflow, step, facts)
    return SendMessage(
        step=step.id,
        channel=message.channel,
        text=render_template(message.text, values) if message.text else "",
        subject=render_template(message.subject, values) if message.subject else "",
        html=render_template(message.html, values) if message.html else "",
        buttons=tuple(
            (render_template(label, values), render_template(target, values))
            for label, target in message.buttons
        ),
        payload={k: render_template(v, values) for k, v in message.payload.items()},
        fallback=message.fallback,
    )


def _priority(step: Step, facts: Facts) -> str:
    segment = facts.customer.get("segment")
    if isinstance(step.priority, Mapping):
        return str(step.priority.get(str(segment), "normal"))
    if step.priority == "from_segment":
        return SEGMENT_PRIORITY.get(str(segment), "normal")
    return str(step.priority)


def next_time_of_day(now: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The next moment after ``now`` when the clock in ``zone`` shows ``at`` (DST-safe)."""
    local = now.astimezone(zone)
    candidate = datetime.combine(local.date(), at, tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=zone)
    return candidate.astimezone(now.tzinfo)


def advance(
    workflow: Workflow,
    journey: Journey,
    facts: Facts,
    now: datetime,
    *,
    rng: random.Random,
    business_zone: str = "UTC",
) -> tuple[Journey, list[Action]]:
    """Run the journey's steps from where it is until it must wait or ends.

    A journey parked in a wait that is not yet due is returned as it is; one whose wait is
    over goes on (after a duration or a time of day: ``next``; a wait for an event that did
    not come: ``on_timeout``).
    """
    actions: list[Action] = []
    if journey.finished or journey.step is None or (journey.due_at is not None and journey.due_at > now):
        return journey, actions
    if workflow.exit_when is not None and holds(workflow.exit_when, facts):
        return _end(journey, "exited", journey.steps_taken, journey.branch), actions
    current: str | None = journey.step
    taken = journey.steps_taken
    branch = journey.branch
    if journey.parked:  # the wait it sits in is over
        step = workflow.step(journey.step)
        timed_out = step.wait_event is not None
        actions.append(StepTaken(step.id, "wait", "timeout" if timed_out else "done"))
        current = step.on_timeout if timed_out else step.next
        taken += 1
    for _ in range(MAX_STEPS_AT_ONCE):
        if current is None:
            return _end(journey, "completed", taken, branch), actions
        step = workflow.step(current)
        if step.kind == "wait":
            if step.wait_event is not None:
                assert step.timeout is not None
                due, waiting = now + step.timeout, step.wait_event
            elif step.wait_for is not None:
                due, waiting = now + step.wait_for, None
            else:
                assert step.wait_until is not None
                due, waiting = (
                    next_time_of_day(now, step.wait_until, ZoneInfo(facts.timezone or business_zone)),
                    None,
                )
            parked = Journey(
                step=step.id,
                enrolled_at=journey.enrolled_at,
                due_at=due,
                waiting_for=waiting,
                parked=True,
                steps_taken=taken,
                branch=branch,
            )
            return parked, actions
        taken += 1
        if step.kind == "send":
            assert step.message is not None
            actions.append(_message(workflow, step, step.message, facts))
            actions.append(StepTaken(step.id, "send"))
            current = step.next
        elif step.kind == "branch":
            assert step.condition is not None
            ok = holds(step.condition, facts)
            actions.append(StepTaken(step.id, "branch", "then" if ok else "else"))
            current = step.then if ok else step.otherwise
        elif step.kind == "split":
            assert step.split is not None
            chosen = step.split.choose(rng)
            branch = chosen if chosen is not None else "holdout"
            actions.append(StepTaken(step.id, "split", branch))
            if chosen is None:
                return _end(journey, "holdout", taken, branch), actions
            current = chosen
        elif step.kind in ("add_tag", "remove_tag"):
            add = step.kind == "add_tag"
            actions.append(ChangeTags(step.id, add=step.tags if add else (), remove=() if add else step.tags))
            actions.append(StepTaken(step.id, step.kind))
            current = step.next
        elif step.kind == "handoff":
            note = render_template(step.note, _values(workflow, step, facts)) if step.note else ""
            actions.append(Handoff(step.id, step.queue, note, _priority(step, facts), step.notify))
            actions.append(StepTaken(step.id, "handoff"))
            current = step.next
        else:  # exit
            actions.append(StepTaken(step.id, "exit"))
            return _end(journey, "exited", taken, branch), actions
    raise RuntimeError(f"workflow {workflow.name!r}: more than {MAX_STEPS_AT_ONCE} steps without a wait")


def _end(journey: Journey, status: Status, taken: int, branch: str | None) -> Journey:
    return Journey(
        step=None, enrolled_at=journey.enrolled_at, status=status, steps_taken=taken, branch=branch
    )


def event_arrived(workflow: Workflow, journey: Journey, event_type: str, now: datetime) -> Journey:
    """A journey parked waiting for ``event_type`` goes on to its ``on_event`` step, due now."""
    if journey.finished or not journey.parked or journey.waiting_for != event_type or journey.step is None:
        return journey
    target = workflow.step(journey.step).on_event
    taken = journey.steps_taken + 1
    if target is None:
        return _end(journey, "completed", taken, journey.branch)
    return Journey(
        step=target, enrolled_at=journey.enrolled_at, due_at=now, steps_taken=taken, branch=journey.branch
    )


def goal_reached(workflow: Workflow, journey: Journey, event_type: str, at: datetime) -> bool:
    """Whether an event of ``event_type`` at ``at`` converts this journey."""
    goal = workflow.goal
    return (
        goal is not None
        and not journey.finished
        and event_type == goal.event
        and journey.enrolled_at <= at <= journey.enrolled_at + goal.within
    )


def may_enter(
    workflow: Workflow, last_enrolled_at: datetime | None, still_active: bool, now: datetime
) -> bool:
    """The re-entry policy: may a customer enrol (again) now?"""
    if still_active:
        return False
    if last_enrolled_at is None:
        return True
    policy = workflow.reentry
    if policy.policy == "always":
        return True
    if policy.policy == "cooldown":
        assert policy.cooldown is not None
        return now >= last_enrolled_at + policy.cooldown
    return False


__all__ = [
    "Action",
    "ChangeTags",
    "Facts",
    "Handoff",
    "Journey",
    "SendMessage",
    "StepTaken",
    "advance",
    "event_arrived",
    "goal_reached",
    "holds",
    "may_enter",
    "next_time_of_day",
    "start",
]

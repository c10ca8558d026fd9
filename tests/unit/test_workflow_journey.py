"""Journeys through workflows, decided step by step (pure: fixed clock, seeded randomness)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from rfmflow.automation import builtin_workflows
from rfmflow.automation.definition import workflow_from_dict
from rfmflow.automation.journey import (
    ChangeTags,
    Facts,
    Handoff,
    Journey,
    SendMessage,
    StepTaken,
    advance,
    event_arrived,
    goal_reached,
    may_enter,
    next_time_of_day,
    start,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def facts(**customer: Any) -> Facts:
    extra = {k: customer.pop(k) for k in ("tags", "events_since_enrolment", "timezone") if k in customer}
    return Facts(
        customer={
            "customer_id": "c1",
            "segment": "At Risk",
            "first_name": "Ada",
            "name": "Ada L",
            **customer,
        },
        tags=frozenset(extra.get("tags", ())),
        events_since_enrolment=frozenset(extra.get("events_since_enrolment", ())),
        timezone=extra.get("timezone"),
    )


def run(workflow: Any, journey: Journey, f: Facts, at: datetime) -> tuple[Journey, list[Any]]:
    return advance(workflow, journey, f, at, rng=random.Random(1))


def test_the_four_step_journey_of_an_unopened_high_value_customer() -> None:
    wf = builtin_workflows()["at-risk-four-step"]
    customer = facts(m_score=5, phone="+44 1")
    j, actions = run(wf, start(wf, T0), customer, T0)
    (email,) = [a for a in actions if isinstance(a, SendMessage)]
    assert (email.channel, email.subject, email.fallback) == (
        "email",
        "Ada, 20% off your next order",
        "telegram",
    )
    assert "STAY20" in email.text and "https://example.com/survey" in email.text
    assert (j.step, j.due_at, j.parked) == ("until-day-3", T0 + 2 * DAY, True)
    assert run(wf, j, customer, T0 + DAY) == (j, [])  # not due yet
    j, actions = run(wf, j, customer, T0 + 2 * DAY)
    assert [a for a in actions if isinstance(a, StepTaken)][:2] == [
        StepTaken("until-day-3", "wait", "done"),
        StepTaken("opened", "branch", "else"),
    ]
    (sms,) = [a for a in actions if isinstance(a, SendMessage)]
    assert sms.channel == "telegram" and sms.text.startswith("20% off with code STAY20")
    j, actions = run(wf, j, customer, T0 + 4 * DAY)
    (call,) = [a for a in actions if isinstance(a, Handoff)]
    assert (call.queue, call.priority) == ("sales", "high") and "Ada L (+44 1)" in call.note
    assert j.step == "until-day-7" and j.due_at == T0 + 6 * DAY
    j, actions = run(wf, j, customer, T0 + 6 * DAY)
    assert ChangeTags("pause", add=("marketing-paused", "hibernating-reengagement")) in actions
    assert j.status == "exited" and j.finished and j.steps_taken == 10


def test_an_opened_email_skips_the_second_channel_and_low_value_skips_the_call() -> None:
    wf = builtin_workflows()["at-risk-four-step"]
    j, _ = run(wf, start(wf, T0), facts(m_score=2), T0)
    j, actions = run(wf, j, facts(m_score=2, events_since_enrolment={"open"}), T0 + 2 * DAY)
    assert StepTaken("opened", "branch", "then") in actions
    assert not [a for a in actions if isinstance(a, SendMessage)] and j.step == "until-day-5"
    j, actions = run(wf, j, facts(m_score=2), T0 + 4 * DAY)
    assert StepTaken("high-value", "branch", "else") in actions and not [
        a for a in actions if isinstance(a, Handoff)
    ]


def test_the_win_back_reply_and_timeout_paths() -> None:
    wf = builtin_workflows()["at-risk-win-back"]
    j, actions = run(wf, start(wf, T0), facts(first_name=None), T0)
    assert actions[0] == ChangeTags("mark", add=("churn-risk",))
    (offer,) = [a for a in actions if isinstance(a, SendMessage)]
    assert offer.text.startswith("Hi, we have missed you! Here is 30% off") and offer.buttons == (
        ("Use my discount", "coupon:COMEBACK30"),
    )
    assert (j.step, j.waiting_for, j.due_at) == ("listen", "reply", T0 + DAY)
    assert event_arrived(wf, j, "click", T0 + timedelta(hours=2)) == j  # not the awaited event
    replied = event_arrived(wf, j, "reply", T0 + timedelta(hours=2))
    assert (replied.step, replied.parked, replied.due_at) == ("unmark", False, T0 + timedelta(hours=2))
    done, actions = run(wf, replied, facts(), T0 + timedelta(hours=2))
    assert ChangeTags("unmark", remove=("churn-risk",)) in actions
    (handoff,) = [a for a in actions if isinstance(a, Handoff)]
    assert (handoff.queue, handoff.priority) == ("support", "high")  # from the At Risk segment
    assert done.status == "completed"
    silent, actions = run(wf, j, facts(), T0 + DAY)
    assert actions == [StepTaken("listen", "wait", "timeout")] and silent.status == "completed"


def test_goal_and_reentry() -> None:
    wf = builtin_workflows()["at-risk-win-back"]  # goal: purchase within 7 days; re-entry after 30 days
    j = start(wf, T0)
    assert goal_reached(wf, j, "purchase", T0 + 6 * DAY)
    assert not goal_reached(wf, j, "purchase", T0 + 8 * DAY) and not goal_reached(wf, j, "click", T0 + DAY)
    assert may_enter(wf, None, False, T0)
    assert not may_enter(wf, T0, True, T0 + 60 * DAY)  # still in the journey
    assert not may_enter(wf, T0, False, T0 + 29 * DAY) and may_enter(wf, T0, False, T0 + 30 * DAY)
    never = builtin_workflows()["vip-welcome"]
    assert not may_enter(never, T0, False, T0 + 400 * DAY)


def test_split_holdout_and_exit_when() -> None:
    wf = workflow_from_dict(
        {
            "name": "ab",
            "trigger": {"entered_segment": "Champions"},
            "exit_when": {"not_tag": "vip"},
            "steps": [
                {"split": {"branches": [{"next": "a", "weight": 1}], "holdout": 1}},
                {"id": "a", "send": {"channel": "telegram", "text": "A"}},
            ],
        }
    )
    rng = random.Random(3)
    ends = [advance(wf, start(wf, T0), facts(tags={"vip"}), T0, rng=rng) for _ in range(50)]
    assert {j.status for j, _ in ends} == {"completed", "holdout"}
    for j, actions in ends:  # the holdout group is sent nothing
        sent = [a for a in actions if isinstance(a, SendMessage)]
        assert (j.branch, len(sent)) in (("a", 1), ("holdout", 0))
    gone, actions = run(wf, start(wf, T0), facts(), T0)  # no vip tag: leaves before any step
    assert gone.status == "exited" and actions == []


def test_wait_until_a_time_of_day_in_the_customers_zone() -> None:
    wf = workflow_from_dict(
        {
            "name": "morning",
            "trigger": {"tag_added": "x"},
            "steps": [
                {"wait": {"until": "09:00"}},
                {"send": {"channel": "telegram", "text": "Good morning"}},
            ],
        }
    )
    j, _ = run(wf, start(wf, T0), facts(timezone="Asia/Tokyo"), T0)  # 08:00 UTC is 17:00 in Tokyo
    assert j.due_at == datetime(2026, 3, 3, 0, 0, tzinfo=UTC)  # 09:00 the next day in Tokyo
    j, _ = run(wf, start(wf, T0), facts(), T0)  # no zone: the business zone (UTC), 09:00 today
    assert j.due_at == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    # across the spring-forward night in Berlin, 09:00 local is 07:00 UTC
    berlin = ZoneInfo("Europe/Berlin")
    assert next_time_of_day(datetime(2026, 3, 28, 12, 0, tzinfo=UTC), time(9), berlin) == datetime(
        2026, 3, 29, 7, 0, tzinfo=UTC
    )

"""Workflow definitions: the built-in templates load, every mistake is named with its path."""

from __future__ import annotations

import random
from collections import Counter
from datetime import time, timedelta
from typing import Any

import pytest
import yaml
from jinja2.exceptions import SecurityError

from rfmflow.automation import builtin_workflow_text, builtin_workflows
from rfmflow.automation.definition import (
    EVENT_TYPES,
    WorkflowError,
    render_template,
    workflow_from_dict,
    workflow_from_yaml,
)
from rfmflow.service.events import EVENT_TYPES as SERVICE_EVENT_TYPES


def base(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "wf",
        "trigger": {"entered_segment": "At Risk"},
        "steps": [{"id": "hello", "send": {"channel": "telegram", "text": "Hi {{ first_name }}"}}],
    }
    data.update(changes)
    return data


def error(data: dict[str, Any]) -> str:
    with pytest.raises(WorkflowError) as info:
        workflow_from_dict(data)
    return str(info.value)


def test_event_types_are_the_services() -> None:
    assert EVENT_TYPES == SERVICE_EVENT_TYPES


def test_builtin_templates_from_the_guides() -> None:
    flows = builtin_workflows()
    assert set(flows) == {"at-risk-win-back", "at-risk-four-step", "vip-welcome", "we-miss-you"}
    win_back = flows["at-risk-win-back"]
    assert win_back.trigger.kind == "entered_segment" and win_back.trigger.segment == "At Risk"
    listen = win_back.step("listen")
    assert (listen.wait_event, listen.timeout, listen.on_event, listen.on_timeout) == (
        "reply",
        timedelta(days=1),
        "unmark",
        None,
    )
    assert win_back.step("unmark").tags == ("churn-risk",) and win_back.step("support").kind == "handoff"
    four = flows["at-risk-four-step"]
    assert [s.kind for s in four.steps] == [
        "send", "wait", "branch", "send", "wait", "branch", "handoff", "wait", "add_tag", "exit",
    ]  # fmt: skip
    assert (
        four.step("day-1-email").message is not None and four.step("day-1-email").message.channel == "email"
    )
    assert (
        four.step("opened").condition is not None
        and four.step("opened").condition.kind == "event_since_enrolment"
    )
    assert (
        four.goal is not None
        and four.goal.event == "purchase"
        and four.reentry.cooldown == timedelta(days=60)
    )
    assert flows["vip-welcome"].tags() == {"vip"}
    assert flows["we-miss-you"].channels() == {"email"}
    assert "name: we-miss-you" in builtin_workflow_text("we-miss-you")
    with pytest.raises(WorkflowError, match="no built-in workflow 'nope'"):
        builtin_workflow_text("nope")


def test_a_minimal_workflow_and_defaults() -> None:
    wf = workflow_from_dict(base())
    assert (wf.entry, wf.reentry.policy, wf.goal, wf.first) == ("new", "never", None, "hello")
    assert wf.step("hello").next is None  # the last step ends the journey
    steps = workflow_from_dict(
        base(steps=[{"wait": {"for": "90m"}}, {"wait": {"until": "9:30"}}, "exit"])
    ).steps
    assert [(s.id, s.next) for s in steps] == [("step-1", "step-2"), ("step-2", "step-3"), ("step-3", None)]
    assert steps[0].wait_for == timedelta(minutes=90) and steps[1].wait_until == time(9, 30)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"trigger": {"entered_segmnet": "X"}},
            "trigger.entered_segmnet: unknown field (did you mean 'entered_segment'?)",
        ),
        ({"trigger": {"event": "purchased"}}, "trigger.event: unknown event type 'purchased'"),
        ({"trigger": {"schedule": "daily 10:00"}}, "trigger.audience: a schedule trigger needs an audience"),
        ({"trigger": {"schedule": "hourly"}}, "trigger.schedule: expected 'daily HH:MM'"),
        ({"trigger": {"moved": {"from": "A", "to": "A"}}}, "trigger.moved: from and to are the same segment"),
        ({"entry": "existing", "trigger": {"event": "purchase"}}, "entry: 'existing' needs a state to match"),
        ({"reentry": {"cooldown": "soon"}}, "reentry.cooldown: expected a duration such as 30m"),
        ({"goal": {"event": "purchase", "within": "0d"}}, "goal.within: expected a duration"),
        ({"vars": {"segment": "x"}}, "vars.segment: a variable is lower_snake_case and not a customer field"),
        ({"name": "Has Spaces"}, "name: expected lower-case letters"),
        ({"stpes": []}, "workflow.stpes: unknown field (did you mean 'steps'?)"),
        ({"steps": []}, "steps: expected a list of at least one step"),
    ],
)
def test_top_level_mistakes(changes: dict[str, Any], message: str) -> None:
    assert message in error(base(**changes))


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            [{"send": {"channel": "sms", "text": "x"}}],
            "steps[0] (step-1).send.channel: unknown channel 'sms' (known: telegram, email, webhook)",
        ),
        ([{"send": {"channel": "email", "text": "x"}}], "send.subject: an e-mail needs a subject"),
        (
            [{"send": {"channel": "telegram", "text": "x", "fallback": "email"}}],
            "an e-mail needs a subject (also as a fallback)",
        ),
        (
            [{"send": {"channel": "telegram", "text": "Hi {{ frist_name }}"}}],
            "uses 'frist_name', which is not a customer field or a var (did you mean 'first_name'?)",
        ),
        ([{"send": {"channel": "telegram", "text": "Hi {{ name "}}], "template error on its line 1"),
        ([{"send": {"channel": "telegram", "text": "x" * 4097}}], "at most 4,096 characters"),
        (
            [{"send": {"channel": "telegram", "text": "x", "buttons": [{"label": "b", "data": "d" * 65}]}}],
            "callback data is at most 64 bytes",
        ),
        ([{"send": {"channel": "webhook"}}], "a webhook message needs a payload"),
        ([{"wait": {"for": "3 days"}}], "wait.for: expected a duration such as 30m, 2h, 3d or 1w"),
        ([{"wait": {"until": "25:00"}}], "wait.until: expected a time of day HH:MM"),
        ([{"wait": {"event": "reply"}}], "wait.timeout: a wait for an event needs a timeout"),
        ([{"wait": {"for": "1d", "timeout": "2d"}}], "wait.timeout: only a wait for an event has a timeout"),
        (
            [{"wait": {"for": "1d"}, "on_event": "x"}],
            "on_event: only a wait for an event has on_event and on_timeout",
        ),
        ([{"branch": {"then": "end"}}], "branch.if: missing"),
        ([{"branch": {"if": "r_score >> 2"}}], "branch.if: "),
        ([{"branch": {"if": "colour == 'red'"}}], "colour"),
        ([{"branch": {"if": {"tag": "vip", "segment": "X"}}}], "give exactly one of rule, segment, tag"),
        ([{"split": {"branches": [{"next": "a", "weight": 0}]}}], "weight: expected a positive whole number"),
        ([{"add_tag": ""}], "add_tag[0]: a tag name is 1 to 64 characters"),
        ([{"handoff": {"priority": "asap"}}], "handoff.priority: expected from_segment, one of urgent"),
        ([{"exit": {}, "next": "a"}], "exit ends the journey; it has no next step"),
        ([{"send": {"channel": "telegram", "text": "x"}, "add_tag": "y"}], "give exactly one action"),
        (
            [{"id": "a", "add_tag": "x"}, {"id": "a", "add_tag": "y"}],
            "steps[1].id: step 'a' is defined twice",
        ),
        (
            [{"id": "a", "add_tag": "x", "next": "bb"}, {"id": "b", "exit": {}}],
            "steps[0] (a): goes to step 'bb', which does not exist (did you mean 'b'?)",
        ),
        ([{"id": "a", "exit": {}}, {"id": "b", "add_tag": "x"}], "steps[1] (b): no step leads here"),
        (
            [{"id": "a", "add_tag": "x"}, {"id": "b", "remove_tag": "x", "next": "a"}],
            "the loop a -> b -> a has no wait step",
        ),
    ],
)
def test_step_mistakes(steps: list[Any], message: str) -> None:
    assert message in error(base(steps=steps))


def test_a_loop_that_waits_is_allowed() -> None:
    wf = workflow_from_dict(
        base(
            steps=[
                {"id": "nudge", "send": {"channel": "telegram", "text": "Still there?"}},
                {
                    "id": "listen",
                    "wait": {"event": "reply", "timeout": "3d"},
                    "on_event": "end",
                    "on_timeout": "check",
                },
                {
                    "id": "check",
                    "branch": {"if": {"segment": ["At Risk", "Hibernating"]}, "then": "nudge", "else": "end"},
                },
            ]
        )
    )
    assert wf.step("check").targets() == ["nudge", None]


def test_random_split_with_holdout() -> None:
    wf = workflow_from_dict(
        base(
            steps=[
                {
                    "split": {
                        "branches": [{"next": "a", "weight": 45}, {"next": "b", "weight": 45}],
                        "holdout": 10,
                    }
                },
                {"id": "a", "send": {"channel": "telegram", "text": "A"}, "next": "end"},
                {"id": "b", "send": {"channel": "telegram", "text": "B"}},
            ]
        )
    )
    split = wf.steps[0].split
    assert split is not None
    rng = random.Random(7)
    counts = Counter(split.choose(rng) for _ in range(20_000))
    assert abs(counts["a"] / 20_000 - 0.45) < 0.02 and abs(counts[None] / 20_000 - 0.10) < 0.01


def test_templates_render_in_a_sandbox() -> None:
    assert (
        render_template("Hi {{ first_name }}, {{ coupon }}", {"first_name": "Ada", "coupon": "X1"})
        == "Hi Ada, X1"
    )
    with pytest.raises(SecurityError):
        render_template("{{ customer_id.__class__.__mro__ }}", {"customer_id": "c1"})
    with pytest.raises(SecurityError):
        render_template("{{ tags.append('x') }}", {"tags": []})


def test_yaml_errors_name_the_line() -> None:
    with pytest.raises(WorkflowError, match=r"line 2, column 1: invalid YAML|line \d+.*: invalid YAML"):
        workflow_from_yaml("name: wf\n: : bad\n", source="mine.yaml")
    with pytest.raises(WorkflowError, match="the key 'name' is given twice"):
        workflow_from_yaml("name: wf\nname: other\n", source="mine.yaml")
    with pytest.raises(WorkflowError, match=r"mine\.yaml: the file is empty"):
        workflow_from_yaml("", source="mine.yaml")
    text = yaml.safe_dump(base())
    assert workflow_from_yaml(text).name == "wf"

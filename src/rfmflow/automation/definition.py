"""Workflow definitions: a trigger, then a graph of steps (read from YAML, checked whole).

A workflow that loads is a workflow that can run: every step reference resolves, every
template compiles in the sandbox and names only known fields, every loop waits, every
condition parses. Errors name the workflow, the path and the reason, for example
``workflow 'win-back': steps[1] (offer).send.channel: unknown channel 'sms' (known: email,
telegram, webhook)``. The format is documented in ``docs/automation.md``::

    name: at-risk-win-back
    trigger: {entered_segment: At Risk}         # or left_segment, moved {from, to}, tag_added,
                                                # tag_removed, event {type}, schedule "daily 10:00"
    entry: new                                  # new: only who triggers from now; existing: also
                                                # everyone already matching when activated
    reentry: {cooldown: 30d}                    # never | always | {cooldown: <duration>}
    goal: {event: purchase, within: 14d}        # ends the journey and counts a conversion
    vars: {coupon: COMEBACK30}
    steps:
      - id: offer
        send: {channel: telegram, text: "Hi {{ first_name }}, 30% off today: {{ coupon }}"}
      - id: listen
        wait: {event: reply, timeout: 2d}
        on_event: thank
        on_timeout: done
      - id: thank
        remove_tag: churn-risk
      - handoff: {queue: support, note: "{{ name }} replied to the win-back offer"}
        next: done
      - id: done
        exit: {}

A step without ``next`` goes on to the step below it; the last one ends the journey.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Any, Literal

import yaml
from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rfmflow.core.errors import ExpressionError, RfmflowError
from rfmflow.core.expressions import Expr, parse_expression


class WorkflowError(RfmflowError):
    """A workflow definition is invalid: the message names the workflow, the path and why
    (also as ``where`` and ``reason``, for callers that report them their own way)."""

    def __init__(self, message: str, *, where: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.where = where
        self.reason = reason or message


CHANNELS = ("telegram", "email", "webhook")
EVENT_TYPES = (
    "purchase", "refund", "message", "command", "click", "open", "visit", "support_ticket", "signup", "reply",
)  # fmt: skip
"""The service's event types (:data:`rfmflow.service.events.EVENT_TYPES`; a test keeps them equal)."""

CUSTOMER_NUMBERS = (
    "recency_days", "frequency", "monetary", "tenure_days", "r_score", "f_score", "m_score",
    "p_alive", "expected_purchases", "expected_spend", "clv", "days_to_next_purchase",
)  # fmt: skip
CUSTOMER_TEXTS = ("segment", "rfm", "lifecycle", "churn_risk", "customer_id")
"""What conditions may read about a customer (predictions are ``None`` until fitted)."""

TEMPLATE_FIELDS = (
    *CUSTOMER_NUMBERS, *CUSTOMER_TEXTS, "name", "first_name", "email", "phone", "language", "timezone",
    "tags", "traits", "unsubscribe_url", "workflow", "step",
)  # fmt: skip
"""What a message template may use besides the workflow's ``vars``."""

ENTRY = ("new", "existing")
PRIORITIES = ("urgent", "high", "normal", "low")

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_DURATION = re.compile(r"^\s*(\d+)\s*(m|min|h|d|w)\s*$")
_UNITS = {"m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SCHEDULE = re.compile(r"^\s*(daily|weekly|monthly)\s+(\d{1,2}):(\d{2})\s*$")


# --- the parts ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trigger:
    """What enrols a customer. ``kind`` is one of entered_segment, left_segment, moved,
    tag_added, tag_removed, event, schedule."""

    kind: str
    segment: str | None = None  # entered_segment, left_segment; moved: to
    from_segment: str | None = None  # moved
    tag: str | None = None
    event: str | None = None
    schedule: str | None = None  # "daily 10:00", "weekly 10:00", "monthly 10:00"
    audience: Condition | None = None  # schedule: who is enrolled

    def describe(self) -> str:
        if self.kind == "moved":
            return f"moved from {self.from_segment or 'any segment'} to {self.segment or 'any segment'}"
        detail = self.segment or self.tag or self.event or self.schedule
        return f"{self.kind.replace('_', ' ')} {detail}"


@dataclass(frozen=True)
class Condition:
    """A test on a customer at the moment a branch is reached.

    ``kind``: ``rule`` (an expression over :data:`CUSTOMER_NUMBERS`/:data:`CUSTOMER_TEXTS`),
    ``segment`` (one of ``values``), ``tag`` / ``not_tag``, ``event_since_enrolment`` (an event
    of type ``values[0]`` since the customer entered), ``all`` / ``any`` of ``parts``.
    """

    kind: str
    values: tuple[str, ...] = ()
    rule: Expr | None = None
    parts: tuple[Condition, ...] = ()

    def tags(self) -> set[str]:
        found = set(self.values) if self.kind in ("tag", "not_tag") else set()
        for part in self.parts:
            found |= part.tags()
        return found


@dataclass(frozen=True)
class Message:
    """What a send step sends: the channel and its templates (``text`` for Telegram, ``subject``
    and ``text`` (and optional ``html``) for e-mail, ``payload`` fields for a webhook)."""

    channel: str
    text: str = ""
    subject: str = ""
    html: str = ""
    buttons: tuple[tuple[str, str], ...] = ()  # (label, url or callback data)
    payload: Mapping[str, str] = field(default_factory=dict)
    fallback: str | None = None  # another channel when this one cannot reach the customer


@dataclass(frozen=True)
class Split:
    """A random split: each branch's weight, and the holdout share that gets nothing."""

    branches: tuple[tuple[str, int], ...]  # (next step id, weight)
    holdout: int = 0  # weight of the holdout group (exits, counted for lift)

    def choose(self, rng: random.Random) -> str | None:
        """The next step id, or ``None`` for the holdout group."""
        total = sum(w for _, w in self.branches) + self.holdout
        pick = rng.uniform(0, total)
        for target, weight in self.branches:
            if pick < weight:
                return target
            pick -= weight
        return None


@dataclass(frozen=True)
class Step:
    """One step. ``kind`` is send, wait, branch, split, add_tag, remove_tag, handoff or exit."""

    id: str
    kind: str
    next: str | None = None  # the step after it (None: the journey ends)
    message: Message | None = None
    wait_for: timedelta | None = None  # wait a duration
    wait_until: time | None = None  # wait until a time of day in the customer's zone
    wait_event: str | None = None  # wait until an event of this type ...
    timeout: timedelta | None = None  # ... for at most this long
    on_event: str | None = None  # next step when the event came
    on_timeout: str | None = None  # next step when it did not
    condition: Condition | None = None
    then: str | None = None
    otherwise: str | None = None
    split: Split | None = None
    tags: tuple[str, ...] = ()
    queue: str = ""
    note: str = ""
    priority: str | Mapping[str, str] = "from_segment"
    notify: bool = True

    def targets(self) -> list[str | None]:
        """Every step this one can go on to (``None``: the journey ends)."""
        if self.kind == "exit":
            return []
        if self.kind == "branch":
            return [self.then, self.otherwise]
        if self.kind == "split":
            assert self.split is not None
            return [t for t, _ in self.split.branches] + ([None] if self.split.holdout else [])
        if self.kind == "wait" and self.wait_event is not None:
            return [self.on_event, self.on_timeout]
        return [self.next]


@dataclass(frozen=True)
class Goal:
    """The event that ends a journey as a conversion, counted (with its revenue) within ``within``."""

    event: str = "purchase"
    within: timedelta = timedelta(days=14)


@dataclass(frozen=True)
class Reentry:
    """May a customer go through the workflow again? ``never``, ``always`` or after a cooldown."""

    policy: Literal["never", "always", "cooldown"] = "never"
    cooldown: timedelta | None = None


@dataclass(frozen=True)
class Workflow:
    name: str
    trigger: Trigger
    steps: tuple[Step, ...]
    description: str = ""
    entry: str = "new"
    reentry: Reentry = field(default_factory=Reentry)
    goal: Goal | None = None
    vars: Mapping[str, str] = field(default_factory=dict)
    exit_when: Condition | None = None  # leave the journey as soon as this holds (e.g. left the segment)

    @property
    def first(self) -> str:
        return self.steps[0].id

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def channels(self) -> set[str]:
        return {s.message.channel for s in self.steps if s.message is not None}

    def tags(self) -> set[str]:
        found = {self.trigger.tag} if self.trigger.tag else set()
        for s in self.steps:
            found |= set(s.tags)
            if s.condition is not None:
                found |= s.condition.tags()
        return found


# --- reading ------------------------------------------------------------------------------------
class _Reader:
    """Checks one workflow's raw data, collecting the path of each part for its errors."""

    def __init__(self, name: str) -> None:
        self.name = name

    def fail(self, where: str, reason: str) -> WorkflowError:
        return WorkflowError(f"workflow {self.name!r}: {where}: {reason}", where=where, reason=reason)

    def mapping(self, value: Any, where: str, allowed: Iterable[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping, got {_kind(value)}")
        known = list(allowed)
        for key in value:
            if key not in known:
                hint = _did_you_mean(str(key), known)
                raise self.fail(f"{where}.{key}", f"unknown field{hint} (known: {', '.join(known)})")
        return value

    def text(self, value: Any, where: str, *, empty: bool = False) -> str:
        if not isinstance(value, str) or (not empty and not value.strip()):
            raise self.fail(where, f"expected text, got {_kind(value)}")
        return value

    def duration(self, value: Any, where: str) -> timedelta:
        match = _DURATION.match(value) if isinstance(value, str) else None
        if match is None or int(match.group(1)) == 0:
            raise self.fail(where, f"expected a duration such as 30m, 2h, 3d or 1w, got {value!r}")
        return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])

    def time_of_day(self, value: Any, where: str) -> time:
        match = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip()) if isinstance(value, str) else None
        if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
            raise self.fail(where, f"expected a time of day HH:MM, got {value!r}")
        return time(int(match.group(1)), int(match.group(2)))

    def event(self, value: Any, where: str) -> str:
        if value not in EVENT_TYPES:
            raise self.fail(where, f"unknown event type {value!r} (known: {', '.join(EVENT_TYPES)})")
        return str(value)

    def tag_names(self, value: Any, where: str) -> tuple[str, ...]:
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names:
            raise self.fail(where, f"expected a tag name or a list of them, got {_kind(value)}")
        for i, name in enumerate(names):
            if not isinstance(name, str) or not name.strip() or len(name) > 64 or ";" in name:
                raise self.fail(
                    f"{where}[{i}]", f"a tag name is 1 to 64 characters without ';', got {name!r}"
                )
        return tuple(n.strip() for n in names)

    # conditions
    def condition(self, value: Any, where: str) -> Condition:
        if isinstance(value, str):
            return Condition("rule", rule=self.rule(value, where))
        data = self.mapping(
            value, where, ("rule", "segment", "tag", "not_tag", "event_since_enrolment", "all", "any")
        )
        if len(data) != 1:
            raise self.fail(
                where, "give exactly one of rule, segment, tag, not_tag, event_since_enrolment, all, any"
            )
        ((kind, inner),) = data.items()
        path = f"{where}.{kind}"
        if kind == "rule":
            return Condition("rule", rule=self.rule(inner, path))
        if kind == "segment":
            names = [inner] if isinstance(inner, str) else inner
            if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
                raise self.fail(path, "expected a segment name or a list of them")
            return Condition("segment", values=tuple(names))
        if kind in ("tag", "not_tag"):
            return Condition(kind, values=self.tag_names(inner, path))
        if kind == "event_since_enrolment":
            return Condition(kind, values=(self.event(inner, path),))
        if not isinstance(inner, list) or not inner:
            raise self.fail(path, "expected a list of conditions")
        return Condition(kind, parts=tuple(self.condition(c, f"{path}[{i}]") for i, c in enumerate(inner)))

    def rule(self, value: Any, where: str) -> Expr:
        if not isinstance(value, str):
            raise self.fail(where, f"expected a rule expression (text), got {_kind(value)}")
        kinds = {n: "num" for n in CUSTOMER_NUMBERS} | {n: "text" for n in CUSTOMER_TEXTS}
        try:
            return parse_expression(value, allowed=sorted(kinds), kinds=kinds, where="rule")
        except ExpressionError as err:
            raise self.fail(where, str(err).removeprefix("rule: ")) from None


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _did_you_mean(word: str, known: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


TOP_FIELDS = ("name", "description", "trigger", "entry", "reentry", "goal", "vars", "exit_when", "steps")
TRIGGER_KINDS = ("entered_segment", "left_segment", "moved", "tag_added", "tag_removed", "event", "schedule")
STEP_KINDS = ("send", "wait", "branch", "split", "add_tag", "remove_tag", "handoff", "exit")
STEP_FIELDS = ("id", "next", "on_event", "on_timeout", *STEP_KINDS)


def workflow_from_yaml(text: str, *, source: str = "") -> Workflow:
    """Parse and check a workflow from YAML text (``source`` names it in errors)."""
    from rfmflow.core.scheme import _UniqueKeyLoader

    label = source or "workflow"
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise WorkflowError(f"{label}:{where}: invalid YAML: {problem}") from None
    if data is None:
        raise WorkflowError(f"{label}: the file is empty")
    return workflow_from_dict(data, source=source)


def workflow_from_dict(data: Any, *, source: str = "") -> Workflow:
    """Check a workflow given as a dict (as read from YAML or JSON)."""
    if not isinstance(data, dict):
        raise WorkflowError(f"{source or 'workflow'}: expected a mapping with name, trigger and steps")
    name = data.get("name")
    if not isinstance(name, str) or not _ID.match(name):
        raise WorkflowError(
            f"{source or 'workflow'}: name: expected lower-case letters, digits, '-' or '_' "
            f"(1 to 64, starting with a letter or digit), got {name!r}"
        )
    r = _Reader(name)
    r.mapping(data, "workflow", TOP_FIELDS)
    for required in ("trigger", "steps"):
        if required not in data:
            raise r.fail(required, "missing")
    variables = _vars(r, data.get("vars"))
    steps = _steps(r, data["steps"], variables)
    entry = data.get("entry", "new")
    if entry not in ENTRY:
        raise r.fail("entry", f"expected one of {', '.join(ENTRY)}, got {entry!r}")
    trigger = _trigger(r, data["trigger"])
    if entry == "existing" and trigger.kind in ("event", "left_segment", "tag_removed", "moved"):
        raise r.fail(
            "entry", f"'existing' needs a state to match (a segment or a tag); {trigger.kind} is a moment"
        )
    return Workflow(
        name=name,
        description=r.text(data.get("description", ""), "description", empty=True),
        trigger=trigger,
        steps=steps,
        entry=entry,
        reentry=_reentry(r, data.get("reentry", "never")),
        goal=_goal(r, data["goal"]) if data.get("goal") is not None else None,
        vars=variables,
        exit_when=r.condition(data["exit_when"], "exit_when") if data.get("exit_when") is not None else None,
    )


def _vars(r: _Reader, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    data = r.mapping(value, "vars", [k for k in value] if isinstance(value, dict) else [])
    out = {}
    for key, item in data.items():
        if not isinstance(key, str) or not re.fullmatch(r"[a-z_][a-z0-9_]*", key) or key in TEMPLATE_FIELDS:
            raise r.fail(f"vars.{key}", "a variable is lower_snake_case and not a customer field")
        if not isinstance(item, str | int | float) or isinstance(item, bool):
            raise r.fail(f"vars.{key}", f"expected text or a number, got {_kind(item)}")
        out[key] = str(item)
    return out


def _trigger(r: _Reader, value: Any) -> Trigger:
    data = r.mapping(value, "trigger", (*TRIGGER_KINDS, "audience"))
    kinds = [k for k in data if k != "audience"]
    if len(kinds) != 1:
        raise r.fail("trigger", f"give exactly one of {', '.join(TRIGGER_KINDS)}")
    kind = kinds[0]
    inner = data[kind]
    where = f"trigger.{kind}"
    if "audience" in data and kind != "schedule":
        raise r.fail("trigger.audience", "only a schedule trigger takes an audience")
    if kind in ("entered_segment", "left_segment"):
        return Trigger(kind, segment=r.text(inner, where))
    if kind == "moved":
        moved = r.mapping(inner, where, ("from", "to"))
        if not moved:
            raise r.fail(where, "give from, to or both")
        src = r.text(moved["from"], f"{where}.from") if "from" in moved else None
        dst = r.text(moved["to"], f"{where}.to") if "to" in moved else None
        if src is not None and src == dst:
            raise r.fail(where, "from and to are the same segment")
        return Trigger(kind, segment=dst, from_segment=src)
    if kind in ("tag_added", "tag_removed"):
        return Trigger(kind, tag=r.tag_names(inner, where)[0])
    if kind == "event":
        event = inner.get("type") if isinstance(inner, dict) else inner
        if isinstance(inner, dict):
            r.mapping(inner, where, ("type",))
        return Trigger(kind, event=r.event(event, where))
    schedule = inner if isinstance(inner, str) else None
    if schedule is None or not _SCHEDULE.match(schedule):
        raise r.fail(where, f"expected 'daily HH:MM', 'weekly HH:MM' or 'monthly HH:MM', got {inner!r}")
    r.time_of_day(schedule.split()[1], where)
    audience = r.condition(data["audience"], "trigger.audience") if "audience" in data else None
    if audience is None:
        raise r.fail(
            "trigger.audience", "a schedule trigger needs an audience (for example {segment: Champions})"
        )
    return Trigger(kind, schedule=" ".join(schedule.split()), audience=audience)


def _reentry(r: _Reader, value: Any) -> Reentry:
    if value in ("never", "always"):
        return Reentry(value)
    if isinstance(value, dict):
        data = r.mapping(value, "reentry", ("cooldown",))
        if "cooldown" in data:
            return Reentry("cooldown", r.duration(data["cooldown"], "reentry.cooldown"))
    raise r.fail("reentry", f"expected never, always or {{cooldown: 30d}}, got {value!r}")


def _goal(r: _Reader, value: Any) -> Goal:
    data = r.mapping(value, "goal", ("event", "within"))
    event = r.event(data.get("event", "purchase"), "goal.event")
    within = r.duration(data["within"], "goal.within") if "within" in data else timedelta(days=14)
    return Goal(event, within)


def _sandbox() -> ImmutableSandboxedEnvironment:
    """Templates run here: no access to Python internals, no mutation, a missing value is
    empty text (not ``None``), a name the checks did not allow is an error."""
    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, finalize=lambda v: "" if v is None else v
    )


def check_template(r: _Reader, text: str, where: str, variables: Mapping[str, str]) -> None:
    """A template must compile in the sandbox and use only known fields and ``vars``."""
    env = _sandbox()
    try:
        parsed = env.parse(text)
    except TemplateSyntaxError as err:
        raise r.fail(where, f"template error on its line {err.lineno}: {err.message}") from None
    known = set(TEMPLATE_FIELDS) | set(variables)
    for name in sorted(meta.find_undeclared_variables(parsed)):
        if name not in known:
            hint = _did_you_mean(name, sorted(known))
            raise r.fail(where, f"the template uses {name!r}, which is not a customer field or a var{hint}")


def _message(r: _Reader, value: Any, where: str, variables: Mapping[str, str]) -> Message:
    data = r.mapping(value, where, ("channel", "text", "subject", "html", "buttons", "payload", "fallback"))
    channel = data.get("channel")
    if channel not in CHANNELS:
        raise r.fail(f"{where}.channel", f"unknown channel {channel!r} (known: {', '.join(CHANNELS)})")
    fallback = data.get("fallback")
    if fallback is not None and (fallback not in CHANNELS or fallback == channel):
        raise r.fail(
            f"{where}.fallback", f"expected another channel ({', '.join(CHANNELS)}), got {fallback!r}"
        )
    text = data.get("text", "")
    if channel in ("telegram", "email") and not (isinstance(text, str) and text.strip()):
        raise r.fail(f"{where}.text", f"a {channel} message needs a text")
    if "email" in (channel, fallback) and not (
        isinstance(data.get("subject"), str) and data["subject"].strip()
    ):
        raise r.fail(f"{where}.subject", "an e-mail needs a subject (also as a fallback)")
    if channel == "telegram" and len(text) > 4096:
        raise r.fail(
            f"{where}.text", f"a Telegram message holds at most 4,096 characters, this has {len(text):,}"
        )
    for part in ("text", "subject", "html"):
        if part in data:
            check_template(r, r.text(data[part], f"{where}.{part}", empty=True), f"{where}.{part}", variables)
    buttons: list[tuple[str, str]] = []
    for i, button in enumerate(data.get("buttons") or []):
        b = r.mapping(button, f"{where}.buttons[{i}]", ("label", "url", "data"))
        label = r.text(b.get("label"), f"{where}.buttons[{i}].label")
        target = b.get("url") or b.get("data")
        if not isinstance(target, str) or not target or ("url" in b) == ("data" in b):
            raise r.fail(f"{where}.buttons[{i}]", "give a url or callback data (one of them)")
        if "data" in b and len(target.encode()) > 64:
            raise r.fail(f"{where}.buttons[{i}].data", "Telegram callback data is at most 64 bytes")
        buttons.append((label, target))
    payload: dict[str, str] = {}
    if data.get("payload") is not None:
        raw = data["payload"]
        if not isinstance(raw, dict):
            raise r.fail(f"{where}.payload", "expected a mapping of field -> template")
        for key, item in raw.items():
            path = f"{where}.payload.{key}"
            check_template(r, r.text(item, path, empty=True), path, variables)
            payload[str(key)] = item
    if channel == "webhook" and not payload and not text:
        raise r.fail(where, "a webhook message needs a payload (or a text)")
    return Message(
        channel=channel,
        text=text,
        subject=data.get("subject", ""),
        html=data.get("html", ""),
        buttons=tuple(buttons),
        payload=payload,
        fallback=fallback,
    )


def _steps(r: _Reader, value: Any, variables: Mapping[str, str]) -> tuple[Step, ...]:
    if not isinstance(value, list) or not value:
        raise r.fail("steps", "expected a list of at least one step")
    raw: list[tuple[str, dict[str, Any], str]] = []
    ids: list[str] = []
    for i, item in enumerate(value):
        where = f"steps[{i}]"
        if item == "exit":
            item = {"exit": {}}
        data = r.mapping(item, where, STEP_FIELDS)
        kinds = [k for k in data if k in STEP_KINDS]
        if len(kinds) != 1:
            raise r.fail(
                where, f"give exactly one action: {', '.join(STEP_KINDS)} (got {', '.join(kinds) or 'none'})"
            )
        step_id = data.get("id", f"step-{i + 1}")
        if not isinstance(step_id, str) or not _ID.match(step_id):
            raise r.fail(f"{where}.id", f"expected lower-case letters, digits, '-' or '_', got {step_id!r}")
        if step_id in ids:
            raise r.fail(f"{where}.id", f"step {step_id!r} is defined twice")
        ids.append(step_id)
        raw.append((step_id, data, f"{where} ({step_id})"))
    steps = []
    for i, (step_id, data, where) in enumerate(raw):
        following = ids[i + 1] if i + 1 < len(ids) else None
        steps.append(_step(r, step_id, data, where, following, variables))
    out = tuple(steps)
    _check_graph(r, out, raw)
    return out


def _ref(r: _Reader, data: Mapping[str, Any], key: str, where: str, default: str | None) -> str | None:
    if key not in data:
        return default
    value = data[key]
    if value in (None, "end"):
        return None
    if not isinstance(value, str):
        raise r.fail(f"{where}.{key}", f"expected a step id or 'end', got {_kind(value)}")
    return value


def _step(
    r: _Reader,
    step_id: str,
    data: dict[str, Any],
    where: str,
    following: str | None,
    variables: Mapping[str, str],
) -> Step:
    kind = next(k for k in data if k in STEP_KINDS)
    inner = data[kind]
    path = f"{where}.{kind}"
    nxt = _ref(r, data, "next", where, following)
    for key in ("on_event", "on_timeout"):
        if key in data and not (kind == "wait" and isinstance(inner, dict) and "event" in inner):
            raise r.fail(f"{where}.{key}", "only a wait for an event has on_event and on_timeout")
    if kind == "send":
        return Step(step_id, kind, next=nxt, message=_message(r, inner, path, variables))
    if kind == "wait":
        w = r.mapping(inner, path, ("for", "until", "event", "timeout"))
        given = [k for k in ("for", "until", "event") if k in w]
        if len(given) != 1:
            raise r.fail(
                path, "give exactly one of for (a duration), until (HH:MM) or event (with a timeout)"
            )
        if "timeout" in w and "event" not in w:
            raise r.fail(f"{path}.timeout", "only a wait for an event has a timeout")
        if "for" in w:
            return Step(step_id, kind, next=nxt, wait_for=r.duration(w["for"], f"{path}.for"))
        if "until" in w:
            return Step(step_id, kind, next=nxt, wait_until=r.time_of_day(w["until"], f"{path}.until"))
        if "timeout" not in w:
            raise r.fail(f"{path}.timeout", "a wait for an event needs a timeout (for example 2d)")
        if "next" in data:
            raise r.fail(f"{where}.next", "a wait for an event goes on by on_event and on_timeout")
        return Step(
            step_id,
            kind,
            wait_event=r.event(w["event"], f"{path}.event"),
            timeout=r.duration(w["timeout"], f"{path}.timeout"),
            on_event=_ref(r, data, "on_event", where, following),
            on_timeout=_ref(r, data, "on_timeout", where, following),
        )
    if kind == "branch":
        b = r.mapping(inner, path, ("if", "then", "else"))
        if "if" not in b:
            raise r.fail(f"{path}.if", "missing")
        if "next" in data:
            raise r.fail(f"{where}.next", "a branch goes on by then and else")
        return Step(
            step_id,
            kind,
            condition=r.condition(b["if"], f"{path}.if"),
            then=_ref(r, b, "then", path, following),
            otherwise=_ref(r, b, "else", path, following),
        )
    if kind == "split":
        s = r.mapping(inner, path, ("branches", "holdout"))
        branches = s.get("branches")
        if not isinstance(branches, list) or not branches:
            raise r.fail(f"{path}.branches", "expected a list of {next, weight}")
        parts = []
        for i, item in enumerate(branches):
            b = r.mapping(item, f"{path}.branches[{i}]", ("next", "weight"))
            weight = b.get("weight")
            if not isinstance(weight, int) or isinstance(weight, bool) or weight <= 0:
                raise r.fail(
                    f"{path}.branches[{i}].weight", f"expected a positive whole number, got {weight!r}"
                )
            target = _ref(r, b, "next", f"{path}.branches[{i}]", None)
            if target is None:
                raise r.fail(f"{path}.branches[{i}].next", "a branch of a split names the step it goes to")
            parts.append((target, weight))
        holdout = s.get("holdout", 0)
        if not isinstance(holdout, int) or isinstance(holdout, bool) or holdout < 0:
            raise r.fail(f"{path}.holdout", f"expected a whole number >= 0 (a weight), got {holdout!r}")
        if "next" in data:
            raise r.fail(f"{where}.next", "a split goes on by its branches")
        return Step(step_id, kind, split=Split(tuple(parts), holdout))
    if kind in ("add_tag", "remove_tag"):
        return Step(step_id, kind, next=nxt, tags=r.tag_names(inner, path))
    if kind == "handoff":
        h = r.mapping(inner, path, ("queue", "note", "priority", "notify"))
        note = r.text(h.get("note", ""), f"{path}.note", empty=True)
        check_template(r, note, f"{path}.note", variables)
        priority = h.get("priority", "from_segment")
        if isinstance(priority, dict):
            for seg, level in priority.items():
                if level not in PRIORITIES:
                    raise r.fail(
                        f"{path}.priority.{seg}", f"expected one of {', '.join(PRIORITIES)}, got {level!r}"
                    )
        elif priority != "from_segment" and priority not in PRIORITIES:
            raise r.fail(
                f"{path}.priority",
                f"expected from_segment, one of {', '.join(PRIORITIES)} or a segment -> priority mapping",
            )
        notify = h.get("notify", True)
        if not isinstance(notify, bool):
            raise r.fail(f"{path}.notify", "expected true or false")
        return Step(
            step_id,
            kind,
            next=nxt,
            queue=r.text(h.get("queue", "support"), f"{path}.queue"),
            note=note,
            priority=priority,
            notify=notify,
        )
    if inner not in ({}, None, True):
        raise r.fail(path, "exit takes no settings (write `exit: {}` or just `- exit`)")
    if "next" in data:
        raise r.fail(f"{where}.next", "exit ends the journey; it has no next step")
    return Step(step_id, "exit")


def _check_graph(r: _Reader, steps: tuple[Step, ...], raw: list[tuple[str, dict[str, Any], str]]) -> None:
    by_id = {s.id: s for s in steps}
    where = {step_id: label for step_id, _, label in raw}
    for s in steps:
        for target in s.targets():
            if target is not None and target not in by_id:
                hint = _did_you_mean(target, list(by_id))
                raise r.fail(where[s.id], f"goes to step {target!r}, which does not exist{hint}")
    reached: set[str] = set()
    stack = [steps[0].id]
    while stack:
        current = stack.pop()
        if current in reached:
            continue
        reached.add(current)
        stack.extend(t for t in by_id[current].targets() if t is not None)
    for s in steps:
        if s.id not in reached:
            raise r.fail(where[s.id], "no step leads here: it can never run")
    # A loop must wait somewhere, or a journey could run forever in one go.
    instant = {s.id for s in steps if s.kind != "wait"}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for t in by_id[node].targets():
            if t is None or t not in instant:
                continue
            if state.get(t) == 1:
                loop = " -> ".join([*path[path.index(t) :], t])
                raise r.fail(where[t], f"the loop {loop} has no wait step: it would never stop")
            if t not in state:
                visit(t, [*path, t])
        state[node] = 2

    for s in steps:
        if s.id in instant and s.id not in state:
            visit(s.id, [s.id])


def read_message(
    channel: str, data: Mapping[str, Any], variables: Any, *, owner: str = "message"
) -> tuple[Message, dict[str, str]]:
    """A message and its ``vars`` checked as a workflow's send step (for broadcasts); raises
    :class:`WorkflowError` whose ``where`` is the field (``message.text``, ``vars.coupon``)."""
    r = _Reader(owner)
    checked_vars = _vars(r, variables)
    if not isinstance(data, Mapping):
        raise r.fail("message", "expected a mapping of templates (text, subject, html, ...)")
    if "channel" in data and data["channel"] != channel:
        raise r.fail("message.channel", f"differs from the {owner}'s channel {channel!r}")
    return _message(r, {**data, "channel": channel}, "message", checked_vars), checked_vars


def compile_template(text: str) -> Template:
    """A checked template compiled once in the sandbox, to render for many customers."""
    return _sandbox().from_string(text)


@functools.lru_cache(maxsize=1024)
def _compiled(text: str) -> Template:
    return compile_template(text)


def render_template(text: str, values: Mapping[str, Any]) -> str:
    """Render a checked template in the sandbox (``values``: customer fields and vars); each
    template text is compiled once per process (compiling was ~80% of the runner's time)."""
    return _compiled(text).render(**values)


__all__ = [
    "CHANNELS",
    "Condition",
    "Goal",
    "Message",
    "Reentry",
    "Split",
    "Step",
    "Trigger",
    "Workflow",
    "WorkflowError",
    "compile_template",
    "read_message",
    "render_template",
    "workflow_from_dict",
    "workflow_from_yaml",
]

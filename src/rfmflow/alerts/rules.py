"""Alert rules: their parameters, checked, and when each one fires (pure functions).

Four kinds (``alert_rules.kind``), each with its parameters (``alert_rules.params``):

``segment_growth`` ``{segment, pct, days}``
    the segment's customers at the latest scoring run grew by more than ``pct`` percent over
    the latest run at least ``days`` days earlier (by as-of day); from none to some counts as
    growth.
``segment_metric_drop`` ``{segment, metric, pct, days}``
    one of the segment's numbers a run records (``metric``: ``mean_frequency``,
    ``mean_recency`` (days), ``customers`` or ``revenue``) fell by more than ``pct`` percent
    over the same comparison.
``broadcast_conversion_below`` ``{min_rate, min_sent, wait_hours=24}``
    a running or finished broadcast that delivered at least ``min_sent`` messages, started at
    least ``wait_hours`` ago, converts fewer than ``min_rate`` (a fraction) of its recipients
    (the conversion of :func:`rfmflow.automation.results.broadcast_results`).
``no_events`` ``{hours}``
    no event was received for more than ``hours`` hours (an installation that never received
    one does not fire).

**Occurrences.** A rule fires once per *occurrence*, named by a key that stays the same for as
long as the condition lasts: for the segment rules the first run of the unbroken series of
runs where the condition held (``run:<id>``), for a broadcast its id (``broadcast:<id>``), for
``no_events`` the last event's receipt time (``silent-since:<time>``). Evaluating again, or
after the next run while the condition still holds, gives the same key, so the same condition
is delivered once; when it clears and comes back, the key is new.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rfmflow.core.errors import RfmflowError

KINDS = ("segment_growth", "segment_metric_drop", "broadcast_conversion_below", "no_events")
METRICS = {
    "mean_frequency": "mean_frequency",
    "mean_recency": "mean_recency_days",
    "customers": "customers",
    "revenue": "revenue_minor",
}
"""A metric's name in a rule → its key in a run's ``segment_stats``."""
CHANNELS = ("telegram", "email", "webhook")
MAX_EPISODE_RUNS = 400
"""How far back (in runs) the start of a segment condition is looked for."""

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")
_CHAT = re.compile(r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{3,})$")


class RuleError(RfmflowError):
    """A rule that cannot be stored: ``field`` (``params.pct``, ``channel``, ...) and the reason."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# --- validation -------------------------------------------------------------------------------
def _number(params: Mapping[str, Any], name: str, *, low: float, high: float, default: Any = None) -> float:
    value = params.get(name, default)
    if value is None:
        raise RuleError(f"params.{name}", "is required")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleError(f"params.{name}", f"must be a number, not {value!r}")
    if not math.isfinite(value) or not low <= value <= high:
        raise RuleError(f"params.{name}", f"must be between {low:g} and {high:g}, not {value!r}")
    return float(value)


def _integer(params: Mapping[str, Any], name: str, *, low: int, high: int, default: Any = None) -> int:
    value = params.get(name, default)
    if value is None:
        raise RuleError(f"params.{name}", "is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise RuleError(f"params.{name}", f"must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise RuleError(f"params.{name}", f"must be between {low} and {high}, not {value}")
    return int(value)


def _segment(params: Mapping[str, Any]) -> str:
    value = params.get("segment")
    if not isinstance(value, str) or not value.strip():
        raise RuleError("params.segment", "is required: the name of a segment of the scheme")
    if len(value) > 64:
        raise RuleError("params.segment", "is longer than 64 characters")
    return value.strip()


def check_params(kind: str, params: Any) -> dict[str, Any]:
    """The rule's parameters checked and normalised; :class:`RuleError` names the bad field."""
    if kind not in KINDS:
        raise RuleError("kind", f"unknown kind {kind!r}; one of: {', '.join(KINDS)}")
    if not isinstance(params, Mapping):
        raise RuleError("params", "must be an object")
    allowed = {
        "segment_growth": {"segment", "pct", "days"},
        "segment_metric_drop": {"segment", "metric", "pct", "days"},
        "broadcast_conversion_below": {"min_rate", "min_sent", "wait_hours"},
        "no_events": {"hours"},
    }[kind]
    extra = sorted(set(params) - allowed)
    if extra:
        raise RuleError(
            f"params.{extra[0]}", f"is not a parameter of {kind} (its: {', '.join(sorted(allowed))})"
        )
    if kind == "segment_growth":
        return {
            "segment": _segment(params),
            "pct": _number(params, "pct", low=0, high=100_000),
            "days": _integer(params, "days", low=1, high=366),
        }
    if kind == "segment_metric_drop":
        metric = params.get("metric")
        if metric not in METRICS:
            raise RuleError("params.metric", f"must be one of {', '.join(METRICS)}, not {metric!r}")
        return {
            "segment": _segment(params),
            "metric": metric,
            "pct": _number(params, "pct", low=0, high=100),
            "days": _integer(params, "days", low=1, high=366),
        }
    if kind == "broadcast_conversion_below":
        return {
            "min_rate": _number(params, "min_rate", low=0, high=1),
            "min_sent": _integer(params, "min_sent", low=1, high=100_000_000),
            "wait_hours": _number(params, "wait_hours", low=0, high=24 * 30, default=24),
        }
    return {"hours": _number(params, "hours", low=0.25, high=24 * 366)}


def check_target(channel: str, target: str) -> str:
    """The operator's address on ``channel``: a chat id (or ``@channel``), an e-mail address,
    or an http(s) URL."""
    if channel not in CHANNELS:
        raise RuleError("channel", f"must be one of {', '.join(CHANNELS)}, not {channel!r}")
    value = (target or "").strip()
    if not value:
        raise RuleError("target", f"is required: the {channel} address alerts go to")
    if len(value) > 500:
        raise RuleError("target", "is longer than 500 characters")
    if channel == "telegram" and not _CHAT.match(value):
        raise RuleError("target", f"{value!r} is not a Telegram chat id (a number) or @channel name")
    if channel == "email" and not _EMAIL.match(value):
        raise RuleError("target", f"{value!r} is not an e-mail address")
    if channel == "webhook" and not _URL.match(value):
        raise RuleError("target", f"{value!r} is not an http:// or https:// URL")
    return value


def describe(kind: str, params: Mapping[str, Any]) -> str:
    """The rule in words (for lists and messages)."""
    if kind == "segment_growth":
        return f"{params['segment']} grew more than {params['pct']:g}% in {params['days']} days"
    if kind == "segment_metric_drop":
        return (
            f"{params['segment']}'s {params['metric']} fell more than {params['pct']:g}% "
            f"in {params['days']} days"
        )
    if kind == "broadcast_conversion_below":
        return (
            f"a broadcast with {params['min_sent']}+ delivered converts below {params['min_rate'] * 100:g}%"
        )
    return f"no events received for {params['hours']:g} hours"


# --- evaluation -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunPoint:
    """One finished scoring run: its id, as-of day and per segment what it recorded
    (``customers``, ``revenue_minor``, ``mean_recency_days``, ``mean_frequency``)."""

    run_id: int
    as_of_day: int
    segments: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class BroadcastPoint:
    """A broadcast's state and results (delivered messages, recipients who converted)."""

    id: int
    name: str
    status: str
    started_at: datetime | None
    delivered: int
    converted: int


@dataclass(frozen=True)
class Occurrence:
    """One firing of a rule: its stable key, a title and message, and the numbers behind it."""

    key: str
    title: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def _baseline(runs: Sequence[RunPoint], i: int, days: int) -> RunPoint | None:
    cutoff = runs[i].as_of_day - days
    for j in range(i - 1, -1, -1):
        if runs[j].as_of_day <= cutoff:
            return runs[j]
    return None


def _value(run: RunPoint, segment: str, stat: str) -> float | None:
    found = run.segments.get(segment)
    if found is None:
        return 0.0 if stat in ("customers", "revenue_minor") else None
    value = found.get(stat)
    return None if value is None else float(value)


def _change(before: float, now: float) -> float:
    """Percent change; from 0 to more is +inf."""
    if before == 0:
        return math.inf if now > 0 else 0.0
    return (now - before) / abs(before) * 100


def _episode(runs: Sequence[RunPoint], holds: Any) -> int | None:
    """The index of the first run of the series ending at the latest run where ``holds(i)``."""
    i = len(runs) - 1
    if i < 0 or not holds(i):
        return None
    floor = max(0, i - MAX_EPISODE_RUNS)
    while i > floor and holds(i - 1):
        i -= 1
    return i


def _pct_text(value: float) -> str:
    return "from none" if math.isinf(value) else f"{value:+.1f}%"


def evaluate_segment(kind: str, params: Mapping[str, Any], runs: Sequence[RunPoint]) -> Occurrence | None:
    """``segment_growth`` or ``segment_metric_drop`` over ``runs`` (oldest first)."""
    segment, pct, days = params["segment"], float(params["pct"]), int(params["days"])
    stat = "customers" if kind == "segment_growth" else METRICS[params["metric"]]

    def compare(i: int) -> tuple[RunPoint, float, float, float] | None:
        base = _baseline(runs, i, days)
        if base is None:
            return None
        before, now = _value(base, segment, stat), _value(runs[i], segment, stat)
        if before is None or now is None:
            return None
        return base, before, now, _change(before, now)

    def holds(i: int) -> bool:
        found = compare(i)
        if found is None:
            return False
        change = found[3]
        return change > pct if kind == "segment_growth" else (-change > pct and found[1] != 0)

    start = _episode(runs, holds)
    if start is None:
        return None
    latest = runs[-1]
    compared = compare(len(runs) - 1)
    assert compared is not None
    base, before, now, change = compared
    name = "customers" if kind == "segment_growth" else str(params["metric"])
    verb = "grew" if kind == "segment_growth" else "fell"
    title = f"{segment}: {name} {verb} {_pct_text(change)} in {latest.as_of_day - base.as_of_day} days"
    message = (
        f"{segment} {name}: {_fmt(before, stat)} (run {base.run_id}) → "
        f"{_fmt(now, stat)} (run {latest.run_id}), {_pct_text(change)}; "
        f"the rule fires above {pct:g}% in {days} days."
    )
    details = {
        "segment": segment,
        "metric": name,
        "before": before,
        "now": now,
        "change_pct": None if math.isinf(change) else round(change, 3),
        "baseline_run_id": base.run_id,
        "run_id": latest.run_id,
        "since_run_id": runs[start].run_id,
    }
    return Occurrence(f"run:{runs[start].run_id}", title, message, details)


def _fmt(value: float, stat: str) -> str:
    if stat in ("customers",):
        return f"{int(value):,}"
    if stat == "revenue_minor":
        return f"{int(value):,} (minor units)"
    return f"{value:.2f}"


def evaluate_broadcasts(
    params: Mapping[str, Any], broadcasts: Sequence[BroadcastPoint], now: datetime
) -> list[Occurrence]:
    """``broadcast_conversion_below``: one occurrence per broadcast that converts too little."""
    wait = timedelta(hours=float(params.get("wait_hours", 24)))
    out = []
    for b in broadcasts:
        if b.status not in ("running", "done") or b.started_at is None or b.started_at + wait > now:
            continue
        if b.delivered < int(params["min_sent"]):
            continue
        rate = b.converted / b.delivered
        if rate >= float(params["min_rate"]):
            continue
        out.append(
            Occurrence(
                f"broadcast:{b.id}",
                f"Broadcast {b.name!r} converts {rate * 100:.1f}%",
                f"Broadcast {b.id} ({b.name}): {b.converted:,} of {b.delivered:,} recipients converted "
                f"({rate * 100:.1f}%), below {float(params['min_rate']) * 100:g}%.",
                {
                    "broadcast_id": b.id,
                    "delivered": b.delivered,
                    "converted": b.converted,
                    "conversion_rate": round(rate, 6),
                },
            )
        )
    return out


def evaluate_no_events(
    params: Mapping[str, Any], last_received: datetime | None, now: datetime
) -> Occurrence | None:
    """``no_events``: the silence since the last received event, once per silence."""
    if last_received is None:
        return None
    silent = now - last_received
    hours = float(params["hours"])
    if silent <= timedelta(hours=hours):
        return None
    since = last_received.isoformat(timespec="seconds")
    return Occurrence(
        f"silent-since:{since}",
        f"No events for {silent.total_seconds() / 3600:.1f} hours",
        f"The last event was received at {since}; the rule fires after {hours:g} hours without one.",
        {"last_received_at": since, "hours": round(silent.total_seconds() / 3600, 2)},
    )


__all__ = [
    "CHANNELS",
    "KINDS",
    "METRICS",
    "BroadcastPoint",
    "Occurrence",
    "RuleError",
    "RunPoint",
    "check_params",
    "check_target",
    "describe",
    "evaluate_broadcasts",
    "evaluate_no_events",
    "evaluate_segment",
]

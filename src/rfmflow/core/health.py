"""Health warnings the guides ask for, computed from a run's summary figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rfmflow.core.results import NO_SEGMENT, ScoreBand, SegmentSummary, Warning
from rfmflow.core.scheme import SCORE_COLUMN, Scheme


def health_warnings(
    scheme: Scheme,
    *,
    summaries: Sequence[SegmentSummary],
    bands: Mapping[str, Sequence[ScoreBand]],
    customers: int,
    without_qualifying_event: int,
    history_days: int | None,
    rows_rejected: int = 0,
    event_types_present: set[str] | None = None,
) -> list[Warning]:
    """Return the warnings for a finished run, most important first."""
    out: list[Warning] = []
    if customers == 0:
        return [Warning("no-customers", "no customer has a usable event; nothing was scored")]
    if event_types_present is not None:
        out += _unmatched_event_types(scheme, event_types_present)
    for s in summaries:
        if s.segment == NO_SEGMENT and s.customers:
            out.append(
                Warning(
                    "uncovered",
                    f"{s.customers} customers ({s.share:.1%}) match no segment rule of scheme "
                    f"{scheme.name!r}; their segment is empty. Add a rule for them or a final catch-all "
                    f"rule (when: true)",
                )
            )
    limit = scheme.health.top_segment_max_share
    for s in summaries:
        if s.segment in scheme.top_segments and s.share > limit:
            out.append(
                Warning(
                    "top-segment-too-large",
                    f"top segment {s.segment!r} holds {s.share:.1%} of customers (more than "
                    f"{limit:.0%}): thresholds may be too lenient; raise the M (or F) thresholds",
                )
            )
    if history_days is not None and history_days < scheme.health.min_history_days:
        out.append(
            Warning(
                "short-history",
                f"the data covers {history_days} day{'' if history_days == 1 else 's'}, "
                f"less than {scheme.health.min_history_days}: "
                f"scores are not yet statistically meaningful",
            )
        )
    for key, key_bands in bands.items():
        spec = scheme.score_spec(key)  # type: ignore[arg-type]
        if spec is None or spec.quantiles is None:
            continue
        used = sum(1 for b in key_bands if b.customers > 0)
        if used < spec.quantiles:
            missing = [b.score for b in key_bands if b.customers == 0]
            out.append(
                Warning(
                    "bins-collapsed",
                    f"{SCORE_COLUMN[key]}: ties leave {used} distinct scores of {spec.quantiles} "
                    f"(no customer scored {', '.join(map(str, missing))}); equal values always share a "
                    f"score, so many equal {key} values collapse bins",
                )
            )
    if without_qualifying_event:
        out.append(
            Warning(
                "no-qualifying-event",
                f"{without_qualifying_event} customers have no qualifying recency event "
                f"({', '.join(_events(scheme))}); their recency_days is empty and r_score is 1",
            )
        )
    if rows_rejected:
        out.append(
            Warning("rows-rejected", f"{rows_rejected} malformed rows were rejected (see the rejects file)")
        )
    return out


def _unmatched_event_types(scheme: Scheme, present: set[str]) -> list[Warning]:
    """A metric that counts only event types the data does not have measures nothing."""
    out = []
    have = ", ".join(sorted(present)) or "none"
    for metric in ("recency", "frequency", "monetary"):
        events = getattr(scheme.metrics, metric).events
        if events == "any" or present.intersection(e.lower() for e in events):
            continue
        out.append(Warning(
            "event-types-missing",
            f"metrics.{metric} uses events of type {', '.join(events)}, which the data does not have "
            f"(it has: {have}; without a type column every row is a purchase, or a refund when "
            f"negative): {metric} is empty or 0 for everyone",
        ))  # fmt: skip
    return out


def _events(scheme: Scheme) -> list[str]:
    events = scheme.metrics.recency.events
    return ["any event"] if events == "any" else list(events)

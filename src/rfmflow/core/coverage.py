"""Static checks of a scheme's segment rules over every score combination.

Segments are ordered rules, first match wins, and every customer must land in exactly one.
For each (r_score, f_score, m_score) combination the rules are evaluated with the scores
known and everything else (raw metrics, percentiles) unknown, in SQL's three-valued logic:

- *covered*: some rule is true whatever the unknown values are;
- *uncovered*: every rule is false, so a customer with these scores has no segment;
- *depends on data*: no rule is surely true but some could be (they read raw metrics).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from rfmflow.core.expressions import Value
from rfmflow.core.scheme import Scheme


@dataclass(frozen=True)
class Coverage:
    combinations: int
    uncovered: list[str] = field(default_factory=list)
    data_dependent: list[str] = field(default_factory=list)
    never_matching: list[str] = field(default_factory=list)
    by_segment: dict[str, list[str]] = field(default_factory=dict)
    maybe_by_segment: dict[str, list[str]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.uncovered and not self.data_dependent

    def messages(self) -> list[str]:
        out = []
        if self.uncovered:
            shown = ", ".join(self.uncovered[:12]) + (" ..." if len(self.uncovered) > 12 else "")
            out.append(
                f"{len(self.uncovered)} of {self.combinations} score combinations match no segment: "
                f"{shown}; add a rule for them or a final catch-all rule (when: true)"
            )
        if self.data_dependent:
            out.append(
                f"{len(self.data_dependent)} of {self.combinations} score combinations are covered only "
                f"depending on raw metrics or percentiles; end with a catch-all rule (when: true) so "
                f"that no customer is left without a segment"
            )
        for name in self.never_matching:
            out.append(
                f"segment {name!r} never matches: earlier rules take every score combination it covers"
            )
        return out


def _label(r: int, f: int, m: int | None) -> str:
    return f"{r}{f}{m}" if m is not None else f"{r}{f}"


def check_coverage(scheme: Scheme) -> Coverage:
    """Evaluate the scheme's segment rules on every score combination."""
    r_bins = scheme.bins("recency") or 1
    f_bins = scheme.bins("frequency") or 1
    m_bins = scheme.bins("monetary")
    m_values: list[int | None] = list(range(1, m_bins + 1)) if m_bins else [None]
    uncovered: list[str] = []
    dependent: list[str] = []
    by_segment: dict[str, list[str]] = {s.name: [] for s in scheme.segments}
    maybe: dict[str, list[str]] = {s.name: [] for s in scheme.segments}
    possible: set[str] = set()
    total = 0
    for r, f, m in itertools.product(range(1, r_bins + 1), range(1, f_bins + 1), m_values):
        total += 1
        label = _label(r, f, m)
        values: dict[str, Value] = {"r_score": r, "f_score": f, "rfm": label}
        if m is not None:
            values["m_score"] = m
        else:
            values["m_score"] = None
        decided = False
        undecided = False
        for seg in scheme.segments:
            outcome = seg.when.matches(values)
            if outcome is None:
                undecided = True
                possible.add(seg.name)
                maybe[seg.name].append(label)
                continue
            if outcome:
                by_segment[seg.name].append(label)
                possible.add(seg.name)
                decided = True
                break
        if not decided:
            (dependent if undecided else uncovered).append(label)
    never = [s.name for s in scheme.segments if s.name not in possible]
    return Coverage(total, uncovered, dependent, never, by_segment, maybe)

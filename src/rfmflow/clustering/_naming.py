"""Human names for clusters, read off their centroids.

A cluster is described by where it sits relative to all clustered customers, in standard
deviations (z) from their mean, with ``|z| < 0.5`` counting as "middle":

============== ================ ============== =============== ======================
feature        z <= -0.5        middle         z >= +0.5       z >= +1.5
============== ================ ============== =============== ======================
recency_days   Recent           Cooling        Lapsed          Lapsed
frequency      infrequent       occasional     frequent        very frequent
monetary       low spenders     mid spenders   high spenders   top spenders
p_alive        likely churned   (nothing)      likely active   likely active
============== ================ ============== =============== ======================

Frequency, monetary and the other features use the centroid in the clustering space
(log-scaled, standardised), where "twice as many orders" is the same step at every level.
Recency uses the cluster's mean recency in days against the mean and standard deviation of
all clustered customers' recency in days, which is how people read it: in log days, 3 against
30 days is as far apart as 50 against 500, so a few very recent customers stretch the scale,
and in a typical data set (most customers gone for over a year, as in CDNOW) the lapsed
majority's centroid ends up within half a standard deviation of the mean, "Cooling".

Three exceptions read from the cluster's own values: a cluster whose median frequency is 1
is "one-time" (0: "inactive"), one whose mean monetary is negative is "net refunders", and
p_alive only says "likely active" when the cluster's mean p_alive is also at least 0.5
("likely churned": below 0.5). The parts compose as ``"<Recency> <frequency> <monetary>"``
plus ``", <p_alive>"``: "Recent very frequent top spenders", "Lapsed one-time low spenders,
likely churned". A feature that was not clustered on (constant) is left out of the name;
without monetary the noun is "customers".

Names are unique. Clusters that get the same name are told apart, in this order of
preference, by

1. the first other feature (in feature order) whose levels tell all of them apart, in
   parentheses: ``(high CLV)`` / ``(low CLV)``, ``(many expected purchases)``, ``(high <name>)``;
2. the clustered feature on which they differ most (largest spread of z), relatively:
   ``(more recent)`` / ``(less recent)`` for two, ``(most recent)`` / ``(mid recency)`` /
   ``(least recent)`` for three (likewise ``frequent``, ``spend``, ``<name>``);
3. a number: the clusters after the first (in cluster order) get " (2)", " (3)", ...

The result depends only on the centroids, the cluster values and the cluster order, so it is
deterministic.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from rfmflow.clustering._features import FREQUENCY, MONETARY, RECENCY

BAND = 0.5  # standard deviations from the overall mean that count as "high" or "low"
TOP = 1.5  # standard deviations that count as "very frequent" / "top spenders"
UNCLUSTERED = "Unclustered"
P_ALIVE = "p_alive"

# relative words for telling apart clusters with the same name: (more, less) and (most, mid, least)
_RELATIVE = {
    RECENCY: (("less recent", "more recent"), ("least recent", "mid recency", "most recent")),
    FREQUENCY: (("more frequent", "less frequent"), ("most frequent", "mid frequency", "least frequent")),
    MONETARY: (("higher spend", "lower spend"), ("highest spend", "mid spend", "lowest spend")),
    P_ALIVE: (
        ("more likely active", "less likely active"),
        ("most likely active", "mid p_alive", "least likely active"),
    ),
}


def _level(z: float) -> int:
    return -1 if z <= -BAND else (1 if z >= BAND else 0)


def _extra_description(name: str, z: float) -> str:
    level = _level(z)
    if name == "clv":
        return ("low CLV", "mid CLV", "high CLV")[level + 1]
    if name == "expected_purchases":
        return ("few expected purchases", "some expected purchases", "many expected purchases")[level + 1]
    if name == P_ALIVE:
        return ("likely churned", "possibly active", "likely active")[level + 1]
    label = name.replace("_", " ")
    return f"{('low', 'mid', 'high')[level + 1]} {label}"


def _relative_descriptions(name: str, values: Sequence[float]) -> list[str]:
    """Words placing each value among the others: highest z first in the word tables
    (for recency, whose high z is worse, the tables are reversed)."""
    label = name.replace("_", " ")
    pair, triple = _RELATIVE.get(
        name, ((f"higher {label}", f"lower {label}"), (f"highest {label}", f"mid {label}", f"lowest {label}"))
    )
    ranked = sorted(range(len(values)), key=lambda i: -values[i])  # highest z first
    out = [""] * len(values)
    for position, i in enumerate(ranked):
        if len(values) == 2:
            out[i] = pair[position]
        else:
            out[i] = triple[0] if position == 0 else triple[2] if position == len(values) - 1 else triple[1]
    return out


def base_name(z: Mapping[str, float], mean: Mapping[str, float], median: Mapping[str, float]) -> str:
    """The name of one cluster from its centroid ``z`` (clustered features only, recency in
    z of days) and its members' mean and median values in original units (every feature)."""
    words: list[str] = []
    if RECENCY in z:
        words.append(("Recent", "Cooling", "Lapsed")[_level(z[RECENCY]) + 1])
    if FREQUENCY in z:
        if median.get(FREQUENCY, 2.0) <= 0:
            words.append("inactive")
        elif median.get(FREQUENCY, 2.0) <= 1:
            words.append("one-time")
        elif z[FREQUENCY] >= TOP:
            words.append("very frequent")
        else:
            words.append(("infrequent", "occasional", "frequent")[_level(z[FREQUENCY]) + 1])
    if MONETARY in z:
        if mean.get(MONETARY, 0.0) < 0:
            words.append("net refunders")
        elif z[MONETARY] >= TOP:
            words.append("top spenders")
        else:
            words.append(("low spenders", "mid spenders", "high spenders")[_level(z[MONETARY]) + 1])
    else:
        words.append("customers")
    text = " ".join(words)
    text = text[0].upper() + text[1:]
    if P_ALIVE in z:
        level = _level(z[P_ALIVE])
        p = mean.get(P_ALIVE, 0.5)
        if level > 0 and p >= 0.5:
            text += ", likely active"
        elif level < 0 and p < 0.5:
            text += ", likely churned"
    return text


def _tell_apart(
    name: str, members: list[int], centroids_z: Sequence[Mapping[str, float]], feature_order: Sequence[str]
) -> list[str] | None:
    """New names for clusters sharing ``name`` (steps 1 and 2 of the module docstring)."""
    shared = [f for f in feature_order if all(f in centroids_z[i] for i in members)]
    for feature in shared:  # 1. another feature's absolute level
        if feature in (RECENCY, FREQUENCY, MONETARY):
            continue
        descriptions = [_extra_description(feature, centroids_z[i][feature]) for i in members]
        if len(set(descriptions)) == len(members):
            return [f"{name} ({d})" for d in descriptions]
    spreads = [
        (max(v) - min(v), -k, f) for k, f in enumerate(shared) for v in [[centroids_z[i][f] for i in members]]
    ]
    if not spreads:
        return None
    spread, _, feature = max(spreads)
    if spread <= 0:
        return None
    descriptions = _relative_descriptions(feature, [centroids_z[i][feature] for i in members])
    return [f"{name} ({d})" for d in descriptions]


def cluster_names(
    centroids_z: Sequence[Mapping[str, float]],
    means: Sequence[Mapping[str, float]],
    medians: Sequence[Mapping[str, float]],
    feature_order: Sequence[str],
) -> list[str]:
    """Unique names for clusters given in cluster order; see the module docstring.

    ``centroids_z`` holds, per cluster, the z of each clustered feature (for recency: the z of
    the cluster's mean recency in days); ``means`` and ``medians`` every feature's values.
    """
    names = [base_name(z, mean, median) for z, mean, median in zip(centroids_z, means, medians, strict=True)]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, name in enumerate(names):
        groups[name].append(i)
    for name, members in groups.items():
        if len(members) < 2:
            continue
        renamed = _tell_apart(name, members, centroids_z, feature_order)
        if renamed is not None:
            for i, new in zip(members, renamed, strict=True):
                names[i] = new
    taken: set[str] = set()
    unique: list[str] = []
    for name in names:
        candidate, n = name, 1
        while candidate in taken or candidate == UNCLUSTERED:
            n += 1
            candidate = f"{name} ({n})"
        taken.add(candidate)
        unique.append(candidate)
    return unique

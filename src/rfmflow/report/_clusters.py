"""The page of a :class:`ClusterRun` (``rfmflow cluster FILE --html clusters.html``): how k was
chosen, what each cluster looks like, where its centre lies and how the clusters split over the
scheme's rule-based segments."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rfmflow.clustering import UNCLUSTERED_LABEL, ClusterProfile, ClusterResult
from rfmflow.core.results import NO_SEGMENT
from rfmflow.report import _format as fmt
from rfmflow.report._charts import CUSTOMERS_COLOR, Chart
from rfmflow.report._cluster_charts import (
    centroid_heatmap,
    cluster_label,
    silhouette_chart,
    size_revenue_chart,
)
from rfmflow.report._data import FloatArray, float_column
from rfmflow.report._html import _revenue_label
from rfmflow.report._page import Fact, environment

if TYPE_CHECKING:
    from rfmflow.core.scheme import Scheme
    from rfmflow.result import ClusterRun

TEMPLATE = "cluster.html.j2"
RECENCY = "recency_days"
MONEY_FEATURES = ("monetary", "clv")
DIGITS = {"recency_days": 1, "frequency": 2}
PROBABILITY_DIGITS = 3
DEFAULT_DIGITS = 2
TRANSFORM_WORDS = {"log1p": "log", "signed log1p": "signed log", "none": "as is"}
#: How the names call a feature above / below the mean (see rfmflow.clustering._naming).
LEVEL_WORDS = (
    ("recency_days", "Lapsed / Recent"),
    ("frequency", "frequent / infrequent"),
    ("monetary", "high / low spenders"),
    ("p_alive", "likely active / churned"),
    ("clv", "high / low CLV"),
)
DARK_SHADE = 0.55  # cross-tab cells darker than this get white text


@dataclass(frozen=True)
class FeatureColumn:
    """One feature of the profile table: its name and unit for the header."""

    name: str
    unit: str


@dataclass(frozen=True)
class ProfileRow:
    """One cluster (or the unclustered customers) of the profile table, formatted."""

    label: int
    cluster: str
    name: str
    customers: str
    share: str
    means: list[str]
    medians: list[str]
    revenue: str
    revenue_share: str
    unclustered: bool


@dataclass(frozen=True)
class CrossCell:
    """Customers of one cluster in one segment, with their share of the cluster and a shade."""

    segment: str
    count: str
    share: str
    background: str
    dark: bool
    zero: bool


@dataclass(frozen=True)
class CrossRow:
    """One cluster of the cluster x segment cross-tab."""

    label: int
    cluster: str
    name: str
    cells: list[CrossCell]
    total: str
    unclustered: bool


@dataclass(frozen=True)
class CrossTab:
    """Customers per cluster and segment: the rows, the segments (columns) and their totals."""

    segments: list[str]
    rows: list[CrossRow]
    totals: list[str]
    total: str


def render_cluster_html(run: ClusterRun) -> str:
    """Render ``run`` as one self-contained HTML page (inline CSS and SVG charts, no scripts)."""
    return environment().get_template(TEMPLATE).render(**_context(run))


def _context(run: ClusterRun) -> dict[str, Any]:
    """Everything the template shows, already formatted."""
    c = run.clusters
    score = run.score
    revenue_label = _revenue_label(score.scheme)
    currency = score.currency or ""
    features = list(c.profiles[0].mean) if c.profiles else list(c.feature_names)
    labels = [cluster_label(p.cluster, p.name) for p in c.profiles]
    source = os.path.basename(score.input.source) if score.input.source else ""
    return {
        "title": f"Clusters \u2014 {source or 'customers'} \u2014 {score.as_of.isoformat()}",
        "as_of": score.as_of.isoformat(),
        "k": c.k,
        "facts": _facts(run),
        "warnings": list(score.warnings),
        "notes": _unique([*c.notes, *run.notes, *score.notes]),
        "silhouette_chart": silhouette_chart(c.silhouette_curve, c.k)
        if len(c.silhouette_curve) > 1
        else None,
        "features": [FeatureColumn(f, _unit(f, currency)) for f in features],
        "profiles": [_profile_row(c, p, features) for p in c.profiles],
        "total_customers": fmt.count(c.n_customers),
        "total_revenue": fmt.number(sum(p.revenue for p in c.profiles), 2),
        "revenue_label": revenue_label,
        "currency": currency,
        "size_chart": size_revenue_chart(
            labels,
            [p.size for p in c.profiles],
            [p.share for p in c.profiles],
            [p.revenue_share for p in c.profiles],
            revenue_label=revenue_label,
        ),
        "centroid_chart": _centroid_chart(run),
        "crosstab": _crosstab(run),
        "scheme": score.scheme,
    }


def _unique(items: Sequence[str]) -> list[str]:
    """``items`` without repeats, in order."""
    return list(dict.fromkeys(items))


# --- header --------------------------------------------------------------------------------------


def _facts(run: ClusterRun) -> list[Fact]:
    """The header: what was clustered, on what, and how k was found."""
    c = run.clusters
    score = run.score
    unclustered = c.n_customers - c.n_clustered
    clustered_share = fmt.percent(c.n_clustered / c.n_customers if c.n_customers else None)
    clustered_note = (
        f"{fmt.count(unclustered)} not clustered (a feature missing)" if unclustered else "every customer"
    )
    facts = [
        Fact("Source", score.input.source or fmt.DASH),
        Fact(
            "As of",
            score.as_of.isoformat(),
            "(default: day after the last event)" if score.as_of_is_default else "",
        ),
        Fact("Scheme", f"{score.scheme.name} v{score.scheme.version}", "its segments are in the cross-tab"),
        Fact("Customers", fmt.count(c.n_customers)),
        Fact(
            "Clustered",
            f"{fmt.count(c.n_clustered)} ({clustered_share})",
            clustered_note,
        ),
        Fact("Features", ", ".join(c.feature_names), _transforms_note(c)),
        Fact("Clusters (k)", str(c.k), _k_note(c)),
        Fact(
            "Silhouette",
            _silhouette(c.silhouette),
            f"at k = {c.k}, on a sample of {fmt.count(c.silhouette_sample_size)} customers",
        ),
    ]
    if c.fit_sample_size < c.n_clustered:
        facts.append(
            Fact(
                "Fit sample",
                fmt.count(c.fit_sample_size),
                "customers k was chosen on; the final clusters are fitted on all",
            )
        )
    if score.currency:
        facts.append(Fact("Currency", score.currency))
    return facts


def _transforms_note(c: ClusterResult) -> str:
    """``log: recency_days, frequency; as is: p_alive``, plus the constant features left out."""
    groups: dict[str, list[str]] = {}
    for feature in c.feature_names:
        transform = str(c.transforms.get(feature, "none"))
        groups.setdefault(TRANSFORM_WORDS.get(transform, transform), []).append(feature)
    parts = [f"{word}: {', '.join(names)}" for word, names in groups.items()]
    if c.dropped_features:
        parts.append(f"left out (constant): {', '.join(c.dropped_features)}")
    return "; ".join(parts) + "; then standardised"


def _k_note(c: ClusterResult) -> str:
    """How k was found: chosen by the silhouette among the candidates, or given."""
    if not c.chosen_automatically:
        return "given"
    ks = [k for k, _ in c.silhouette_curve]
    if len(ks) > 1:
        return f"chosen by the silhouette among k = {min(ks)}\u2013{max(ks)}"
    return "chosen by the silhouette (one candidate)"


def _silhouette(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else fmt.DASH


# --- profile table -------------------------------------------------------------------------------


def _unit(feature: str, currency: str) -> str:
    """The unit shown next to a feature in the table header."""
    if feature == RECENCY:
        return "days"
    if feature in MONEY_FEATURES and currency:
        return currency
    return ""


def _digits(c: ClusterResult, feature: str) -> int:
    """Decimals for a feature's mean and median: probabilities get three."""
    if feature in DIGITS:
        return DIGITS[feature]
    if c.transforms.get(feature) == "none":
        return PROBABILITY_DIGITS
    return DEFAULT_DIGITS


def _profile_row(c: ClusterResult, profile: ClusterProfile, features: Sequence[str]) -> ProfileRow:
    unclustered = profile.cluster == UNCLUSTERED_LABEL
    return ProfileRow(
        label=profile.cluster,
        cluster=fmt.DASH if unclustered else str(profile.cluster),
        name=profile.name,
        customers=fmt.count(profile.size),
        share=fmt.percent(profile.share),
        means=[fmt.number(profile.mean.get(f), _digits(c, f)) for f in features],
        medians=[fmt.number(profile.median.get(f), _digits(c, f)) for f in features],
        revenue=fmt.number(profile.revenue, 2),
        revenue_share=fmt.percent(profile.revenue_share),
        unclustered=unclustered,
    )


# --- centroids -----------------------------------------------------------------------------------


def naming_z(run: ClusterRun) -> FloatArray:
    """The standardised centroids as the names read them: k x features, one standard deviation
    of all clustered customers per unit. Recency is named in days, not in log days (see
    :mod:`rfmflow.clustering._naming`), so its column is the z of each cluster's mean
    recency_days; every other column is the K-Means centre in the clustering space."""
    c = run.clusters
    z = np.array(c.scaled_centroids, dtype=np.float64, copy=True).reshape(c.k, len(c.feature_names))
    if RECENCY not in c.feature_names:
        return z
    days = float_column(run.customers, RECENCY)
    labels = float_column(run.customers, "cluster")
    if days is None or labels is None:
        return z
    clustered = days[(labels != UNCLUSTERED_LABEL) & np.isfinite(days)]
    spread = float(clustered.std()) if clustered.size else 0.0
    if spread <= 0:
        return z
    centre = float(clustered.mean())
    column = c.feature_names.index(RECENCY)
    means = {p.cluster: p.mean.get(RECENCY, math.nan) for p in c.profiles}
    for cluster in range(c.k):
        z[cluster, column] = (means.get(cluster, math.nan) - centre) / spread
    return z


def _centroid_chart(run: ClusterRun) -> Chart | None:
    c = run.clusters
    if c.k == 0 or not c.feature_names:
        return None
    columns = [_column_label(c, f) for f in c.feature_names]
    rows = [cluster_label(i, c.names[i]) for i in range(c.k)]
    return centroid_heatmap(naming_z(run), rows, columns, caption=_centroid_caption(c))


def _column_label(c: ClusterResult, feature: str) -> str:
    if feature == RECENCY:
        return f"{feature}\n(days)"
    word = TRANSFORM_WORDS.get(str(c.transforms.get(feature, "none")), "")
    return f"{feature}\n({word})" if word and word != "as is" else feature


def _centroid_caption(c: ClusterResult) -> str:
    """What the centroid heat map shows and how the names are read from it."""
    features = set(c.feature_names)
    parts = [
        "How far each cluster's centre lies from the mean of all clustered customers, in standard "
        "deviations (red: above, blue: below); the names are read from these values.",
    ]
    if any(c.transforms.get(f) in ("log1p", "signed log1p") for f in features - {RECENCY}):
        parts.append(
            "(log): compared after the logarithm, so twice as many orders is the same step at every level."
        )
    if RECENCY in features:
        parts.append("recency_days: the cluster's mean days since the last event, so high means long ago.")
    high = [words for feature, words in LEVEL_WORDS if feature in features]
    if high:
        parts.append(
            "From \u00b10.5 a feature counts as high or low ("
            + ", ".join(high)
            + "), from +1.5 as very high (very frequent, top spenders); a median frequency of 1 makes "
            "a cluster one-time."
        )
    return " ".join(parts)


# --- cluster x segment ---------------------------------------------------------------------------


def crosstab_counts(table: pa.Table) -> dict[tuple[int, str], int]:
    """Customers per (cluster, segment); a missing segment counts as the scheme's no-segment."""
    if "cluster" not in table.column_names or "segment" not in table.column_names or table.num_rows == 0:
        return {}
    clusters = pc.cast(table.column("cluster"), pa.int64())
    segments = pc.fill_null(pc.cast(table.column("segment"), pa.string()), NO_SEGMENT)
    grouped = (
        pa.table({"cluster": clusters, "segment": segments})
        .group_by(["cluster", "segment"])
        .aggregate([([], "count_all")])
    )
    return {
        (int(cluster), str(segment)): int(count)
        for cluster, segment, count in zip(
            grouped.column("cluster").to_pylist(),
            grouped.column("segment").to_pylist(),
            grouped.column("count_all").to_pylist(),
            strict=True,
        )
        if cluster is not None
    }


def segment_order(scheme: Scheme, present: Sequence[str]) -> list[str]:
    """The segments with customers: the scheme's in rule order, then the unmatched, then any other."""
    seen = set(present)
    ordered = [rule.name for rule in scheme.segments if rule.name in seen]
    rest = sorted(seen - set(ordered) - {NO_SEGMENT})
    return [*ordered, *([NO_SEGMENT] if NO_SEGMENT in seen else []), *rest]


def _crosstab(run: ClusterRun) -> CrossTab:
    counts = crosstab_counts(run.customers)
    segments = segment_order(run.score.scheme, [s for _, s in counts])
    rows: list[CrossRow] = []
    column_totals = dict.fromkeys(segments, 0)
    for profile in run.clusters.profiles:
        row_counts = [counts.get((profile.cluster, s), 0) for s in segments]
        size = sum(row_counts)
        for segment, n in zip(segments, row_counts, strict=True):
            column_totals[segment] += n
        unclustered = profile.cluster == UNCLUSTERED_LABEL
        rows.append(
            CrossRow(
                label=profile.cluster,
                cluster=fmt.DASH if unclustered else str(profile.cluster),
                name=profile.name,
                cells=[_cell(s, n, size) for s, n in zip(segments, row_counts, strict=True)],
                total=fmt.count(size),
                unclustered=unclustered,
            )
        )
    return CrossTab(
        segments=segments,
        rows=rows,
        totals=[fmt.count(column_totals[s]) for s in segments],
        total=fmt.count(sum(column_totals.values())),
    )


def _cell(segment: str, n: int, size: int) -> CrossCell:
    share = n / size if size else 0.0
    return CrossCell(
        segment=segment,
        count=fmt.count(n),
        share=("<1%" if share < 0.005 else fmt.percent(share, 0)) if n else "",
        background=_shade(share) if n else "",
        dark=share > DARK_SHADE,
        zero=n == 0,
    )


def _shade(share: float, color: str = CUSTOMERS_COLOR) -> str:
    """A colour between a very light tint and ``color`` for a share of 0..1 (``#rrggbb``)."""
    rgb = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    t = 0.08 + 0.92 * min(max(share, 0.0), 1.0)
    mixed = [round(255 + (channel - 255) * t) for channel in rgb]
    return "#" + "".join(f"{channel:02x}" for channel in mixed)

"""``cluster_customers``: choose k, fit K-Means, order, name and profile the clusters."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from sklearn.cluster import KMeans

from rfmflow.clustering._features import (
    MONETARY,
    RECENCY,
    FloatArray,
    PreparedFeatures,
    prepare,
    to_original_units,
)
from rfmflow.clustering._naming import UNCLUSTERED, cluster_names
from rfmflow.clustering._result import UNCLUSTERED_LABEL, ClusterProfile, ClusterResult
from rfmflow.clustering._silhouette import silhouette_scores
from rfmflow.core.errors import InputError

MIN_CUSTOMERS = 10  # below this, "segments" are individual customers
MAX_K = 50  # more clusters than anyone can name or act on
MIN_SAMPLE_SIZE = 100  # a silhouette on fewer customers is noise
SELECTION_N_INIT = 10  # k-means++ restarts per candidate k on the fit sample (scikit-learn's classic default)
SILHOUETTE_TIE = 1e-3  # silhouettes this close to the best count as a tie (they are sample estimates)


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(f"{name}: must be an integer, got {value!r}")
    number = int(value)
    if number < low or (high is not None and number > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InputError(f"{name}: must be {bounds}, got {number}")
    return number


def _check_parameters(
    k: int | None, k_range: tuple[int, int], sample_size: int, fit_sample_size: int, random_state: int
) -> tuple[int, int]:
    """Validate the scalar parameters; return the inclusive range of k to try."""
    _check_int("sample_size", sample_size, MIN_SAMPLE_SIZE)
    _check_int("fit_sample_size", fit_sample_size, MIN_SAMPLE_SIZE)
    _check_int("random_state", random_state, 0)
    if k is not None:
        chosen = _check_int("k", k, 2, MAX_K)
        return chosen, chosen
    if not isinstance(k_range, tuple | list) or len(k_range) != 2:
        raise InputError(f"k_range: must be a pair (smallest k, largest k), got {k_range!r}")
    low = _check_int("k_range[0]", k_range[0], 2, MAX_K)
    high = _check_int("k_range[1]", k_range[1], 2, MAX_K)
    if low > high:
        raise InputError(f"k_range: the smallest k ({low}) is larger than the largest ({high})")
    return low, high


def _revenue(revenue: object, prepared: PreparedFeatures) -> FloatArray:
    n = len(prepared.values[RECENCY])
    if revenue is None:
        return np.nan_to_num(prepared.values[MONETARY], nan=0.0)
    array = np.asarray(revenue)
    if array.ndim != 1 or len(array) != n:
        raise InputError(
            f"revenue: needs one value per customer ({n:,}), got shape {array.shape}; "
            "leave it out to use features['monetary']"
        )
    try:
        values = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"revenue: values must be numbers, got dtype {array.dtype} ({err})") from err
    infinite = np.isinf(values)
    if infinite.any():
        at = int(np.flatnonzero(infinite)[0])
        raise InputError(f"revenue: {int(infinite.sum()):,} infinite value(s), the first at index {at}")
    return np.nan_to_num(values, nan=0.0)


def _group_stats(
    values: FloatArray, order: npt.NDArray[np.intp], bounds: list[tuple[int, int]]
) -> tuple[list[float], list[float]]:
    """Mean and median of ``values`` over each group (a slice of ``order``), NaN values left out."""
    ordered = values[order]
    means: list[float] = []
    medians: list[float] = []
    for start, stop in bounds:
        part = ordered[start:stop]
        part = part[~np.isnan(part)]
        if part.size == 0:
            means.append(float("nan"))
            medians.append(float("nan"))
        else:
            means.append(float(part.mean()))
            medians.append(float(np.median(part)))
    return means, medians


def cluster_customers(
    features: Mapping[str, npt.ArrayLike],
    *,
    k: int | None = None,
    k_range: tuple[int, int] = (2, 8),
    sample_size: int = 10_000,
    random_state: int = 0,
    revenue: npt.ArrayLike | None = None,
    fit_sample_size: int = 50_000,
    transforms: Mapping[str, str] | None = None,
) -> ClusterResult:
    """Group customers with K-Means on log-scaled, standardised features; see the package docs.

    Args:
        features: one array per feature, one value per customer, all the same length.
            ``recency_days``, ``frequency`` and ``monetary`` are required; any other numeric
            feature (``p_alive``, ``clv``, ``expected_purchases``, ...) is clustered on too.
            NaN means missing: such customers are not clustered and get label -1.
        k: the number of clusters (2..50); None chooses it from ``k_range`` by silhouette.
        k_range: the inclusive range of k tried when ``k`` is None.
        sample_size: customers the silhouette is computed on (cost grows with its square).
        random_state: seed of every random choice; the same inputs and seed give the same result.
        revenue: per-customer revenue for the profiles' revenue and revenue share, and the
            cluster order (default: ``features["monetary"]``); NaN counts as 0.
        fit_sample_size: customers the candidate k are fitted on (at least ``sample_size`` are used).
        transforms: per-feature override of the transform: ``"log"`` (signed log1p) or ``"none"``.

    Raises:
        InputError: no features, a required one missing, arrays of different lengths or not
            numeric, infinite values, negative recency or frequency, a probability outside
            [0, 1], a feature missing for everyone, every feature constant, too few customers,
            fewer distinct customers than k, or a parameter out of range.
    """
    k_low, k_high = _check_parameters(k, k_range, sample_size, fit_sample_size, random_state)
    prepared = prepare(features, transforms)
    revenue_values = _revenue(revenue, prepared)
    notes = list(prepared.notes)
    n = len(revenue_values)
    n_fit = int(prepared.complete.sum())
    need = max(MIN_CUSTOMERS, k_high + 1)
    if n_fit < need:
        missing = f" ({n - n_fit:,} of the {n:,} have a missing (NaN) feature)" if n_fit < n else ""
        raise InputError(
            f"features: clustering needs at least {need} customers with every feature present "
            f"(at least {MIN_CUSTOMERS}, and more than the largest k={k_high} so that the silhouette "
            f"is defined); got {n_fit:,}{missing}"
        )
    matrix = prepared.matrix

    # --- choose k on a seeded sample -------------------------------------------------------
    rng = np.random.default_rng(random_state)
    m = min(n_fit, max(fit_sample_size, sample_size))
    sample_index = rng.permutation(n_fit)[:m]  # random order, so any prefix is a random subsample
    sample = matrix[sample_index]
    m_sil = min(sample_size, m)
    distinct = len(np.unique(sample, axis=0))
    where = "customers" if m == n_fit else f"customers in the fit sample of {m:,}"
    if k is not None and k > distinct:
        raise InputError(
            f"k: {k} clusters need at least {k} distinct customers, but the {where} have only "
            f"{distinct} distinct combinations of {', '.join(prepared.used)}"
        )
    if k_low > distinct:
        raise InputError(
            f"k_range: the smallest k ({k_low}) exceeds the {distinct} distinct combinations of "
            f"{', '.join(prepared.used)} among the {where}"
        )
    candidates = list(range(k_low, min(k_high, distinct) + 1))
    if k_high > distinct:
        notes.append(
            f"only {distinct} distinct customer profiles: k above {distinct} was not tried "
            f"(k_range {k_low}..{k_high})"
        )
    centers: dict[int, FloatArray] = {}
    labelings: list[npt.NDArray[np.int32]] = []
    for c in candidates:
        model = KMeans(n_clusters=c, n_init=SELECTION_N_INIT, random_state=random_state).fit(sample)
        centers[c] = np.asarray(model.cluster_centers_, dtype=np.float64)
        labelings.append(np.asarray(model.labels_[:m_sil], dtype=np.int32))
    scores = silhouette_scores(np.ascontiguousarray(sample[:m_sil]), labelings)
    curve = list(zip(candidates, scores, strict=True))
    defined = [(c, s) for c, s in curve if not np.isnan(s)]
    if defined:
        best = max(s for _, s in defined)
        chosen = min(c for c, s in defined if s >= best - SILHOUETTE_TIE)
    else:  # the subsample fell in one cluster for every k: take the smallest
        chosen = candidates[0]
        notes.append("the silhouette was undefined for every k tried; the smallest k was taken")

    # --- final fit on every clustered customer, started from the sample's centres --------------
    final = KMeans(n_clusters=chosen, init=centers[chosen], n_init=1, random_state=random_state).fit(matrix)
    fit_labels = np.asarray(final.labels_, dtype=np.intp)
    raw_centers = np.asarray(final.cluster_centers_, dtype=np.float64)

    # --- order clusters by value: mean revenue per customer, highest first ----------------------
    clustered_revenue = revenue_values[prepared.complete]
    sizes = np.bincount(fit_labels, minlength=chosen)
    revenue_sums = np.bincount(fit_labels, weights=clustered_revenue, minlength=chosen)
    recency_sums = np.bincount(
        fit_labels, weights=prepared.values[RECENCY][prepared.complete], minlength=chosen
    )
    safe = np.maximum(sizes, 1)
    mean_revenue = revenue_sums / safe
    mean_recency = recency_sums / safe
    order = sorted(range(chosen), key=lambda c: (-mean_revenue[c], mean_recency[c], c))
    new_of_old = np.empty(chosen, dtype=np.int64)
    new_of_old[order] = np.arange(chosen)
    labels = np.full(n, UNCLUSTERED_LABEL, dtype=np.int64)
    labels[prepared.complete] = new_of_old[fit_labels]
    scaled_centroids = raw_centers[order]

    # --- profiles -----------------------------------------------------------------------------
    groups = list(range(chosen)) + ([UNCLUSTERED_LABEL] if n_fit < n else [])
    by_label = np.argsort(labels, kind="stable")
    sorted_labels = labels[by_label]
    bounds = [
        (int(np.searchsorted(sorted_labels, g, "left")), int(np.searchsorted(sorted_labels, g, "right")))
        for g in groups
    ]
    group_means: list[dict[str, float]] = [{} for _ in groups]
    group_medians: list[dict[str, float]] = [{} for _ in groups]
    for feature in prepared.names:
        means, medians = _group_stats(prepared.values[feature], by_label, bounds)
        for i in range(len(groups)):
            group_means[i][feature] = means[i]
            group_medians[i][feature] = medians[i]
    naming_z = [dict(zip(prepared.used, row.tolist(), strict=True)) for row in scaled_centroids]
    if RECENCY in prepared.used:  # recency is named in days, not in log days (see _naming)
        days = prepared.values[RECENCY][prepared.complete]
        centre, spread = float(days.mean()), float(days.std())
        for i, z in enumerate(naming_z):
            z[RECENCY] = (group_means[i][RECENCY] - centre) / spread
    names = cluster_names(
        naming_z,
        group_means[:chosen],
        group_medians[:chosen],
        prepared.names,
    )
    total_revenue = float(revenue_values.sum())
    ordered_revenue = revenue_values[by_label]
    profiles = []
    for i, group in enumerate(groups):
        start, stop = bounds[i]
        group_revenue = float(ordered_revenue[start:stop].sum())
        profiles.append(
            ClusterProfile(
                cluster=group,
                name=names[group] if group != UNCLUSTERED_LABEL else UNCLUSTERED,
                size=stop - start,
                share=(stop - start) / n,
                mean=group_means[i],
                median=group_medians[i],
                revenue=group_revenue,
                revenue_share=group_revenue / total_revenue if total_revenue != 0 else float("nan"),
            )
        )

    return ClusterResult(
        labels=labels,
        names=names,
        k=chosen,
        chosen_automatically=k is None,
        silhouette_curve=curve,
        silhouette=dict(curve)[chosen],
        profiles=profiles,
        feature_names=list(prepared.used),
        centroids=to_original_units(prepared, scaled_centroids),
        scaled_centroids=scaled_centroids,
        inertia=float(final.inertia_),
        transforms=dict(prepared.transforms),
        dropped_features=list(prepared.dropped),
        n_customers=n,
        n_clustered=n_fit,
        fit_sample_size=m,
        silhouette_sample_size=m_sil,
        random_state=random_state,
        notes=notes,
    )

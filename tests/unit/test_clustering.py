"""Customer clustering: k choice, labels, names, profiles, missing values and bad input."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pytest
from sklearn.metrics import adjusted_rand_score, silhouette_score

from rfmflow.clustering import (
    UNCLUSTERED,
    ClusterProfile,
    ClusterResult,
    cluster_customers,
    silhouette_scores,
)
from rfmflow.clustering._naming import cluster_names
from rfmflow.core.errors import InputError

FloatArray = npt.NDArray[np.float64]

# Four groups of customers, far apart after the log transform: (recency days, frequency, monetary).
BLOBS = {
    "champions": (3.0, 25.0, 3000.0),  # recent, frequent, high spend
    "lost": (600.0, 1.0, 15.0),  # lapsed, one purchase, low spend
    "new": (5.0, 1.0, 20.0),  # recent, one purchase, low spend
    "slipping": (500.0, 20.0, 2500.0),  # lapsed, frequent, high spend
}


def make_blobs(
    per_blob: int = 250, seed: int = 1, noise: float = 0.15
) -> tuple[dict[str, FloatArray], npt.NDArray[np.str_]]:
    """R/F/M arrays of the four blobs (shuffled) and each customer's blob name."""
    rng = np.random.default_rng(seed)
    r_parts, f_parts, m_parts, who = [], [], [], []
    for name, (r, f, m) in BLOBS.items():
        r_parts.append(np.round(r * rng.lognormal(0, noise, per_blob)))
        f_parts.append(np.ones(per_blob) if f == 1 else np.round(f * rng.lognormal(0, noise, per_blob)))
        m_parts.append(np.round(m * rng.lognormal(0, noise, per_blob), 2))
        who += [name] * per_blob
    order = rng.permutation(per_blob * len(BLOBS))
    features = {
        "recency_days": np.concatenate(r_parts)[order],
        "frequency": np.concatenate(f_parts)[order],
        "monetary": np.concatenate(m_parts)[order],
    }
    return features, np.asarray(who)[order]


def blob_label(result: ClusterResult, who: npt.NDArray[np.str_], blob: str) -> int:
    labels = np.unique(result.labels[who == blob])
    assert len(labels) == 1, f"blob {blob} is split over clusters {labels}"
    return int(labels[0])


# --------------------------------------------------------------------------------------------
# Choosing k, labels, names, order
# --------------------------------------------------------------------------------------------
def test_separated_blobs_give_the_right_k_and_one_label_per_blob() -> None:
    features, who = make_blobs()
    result = cluster_customers(features)
    assert result.chosen_automatically
    assert result.k == 4
    assert [k for k, _ in result.silhouette_curve] == list(range(2, 9))
    assert result.silhouette == dict(result.silhouette_curve)[4]
    assert result.silhouette == max(s for _, s in result.silhouette_curve)
    labels = {blob: blob_label(result, who, blob) for blob in BLOBS}
    assert sorted(labels.values()) == [0, 1, 2, 3]
    assert result.labels.dtype == np.int64 and len(result.labels) == len(who)


def test_names_describe_the_centroids() -> None:
    features, who = make_blobs()
    result = cluster_customers(features)
    name = {blob: result.names[blob_label(result, who, blob)] for blob in BLOBS}
    assert name["champions"] == "Recent frequent high spenders"
    assert name["lost"] == "Lapsed one-time low spenders"
    assert name["new"] == "Recent one-time low spenders"
    assert name["slipping"] == "Lapsed frequent high spenders"
    assert len(set(result.names)) == result.k
    assert [p.name for p in result.profiles] == result.names
    assert result.name_of(blob_label(result, who, "lost")) == "Lapsed one-time low spenders"


def test_a_lapsed_majority_is_named_lapsed() -> None:
    """Most customers gone for over a year, the others recent, some very (like CDNOW). In log
    days the few 0..9-day customers stretch the scale and the majority's centroid is within half
    a standard deviation of the mean ("Cooling"); recency is named in days, where it is lapsed."""
    rng = np.random.default_rng(4)
    recency = np.r_[rng.integers(440, 546, 700), rng.integers(0, 10, 50), rng.integers(100, 300, 250)]
    features = {
        "recency_days": recency.astype(float),
        "frequency": np.r_[np.ones(700), rng.integers(3, 12, 300)].astype(float),
        "monetary": np.r_[np.round(rng.lognormal(3, 0.4, 700), 2), np.round(rng.lognormal(5, 0.4, 300), 2)],
    }
    result = cluster_customers(features, k=2)
    assert result.names == ["Recent frequent high spenders", "Lapsed one-time low spenders"]
    assert result.scaled_centroids[1][0] < 0.5  # in the log space: "middle"


def test_clusters_are_numbered_by_mean_revenue_per_customer_best_first() -> None:
    features, who = make_blobs()
    result = cluster_customers(features)
    means = [float(features["monetary"][result.labels == c].mean()) for c in range(result.k)]
    assert means == sorted(means, reverse=True)
    assert blob_label(result, who, "champions") == 0
    assert [p.cluster for p in result.profiles] == list(range(result.k))


def test_explicit_revenue_sets_the_order_and_the_revenue_shares() -> None:
    features, who = make_blobs()
    revenue = np.where(who == "new", 10_000.0, 1.0)  # the "new" blob brings the money here
    result = cluster_customers(features, revenue=revenue)
    assert blob_label(result, who, "new") == 0
    new = result.profiles[0]
    assert new.revenue == pytest.approx(10_000.0 * (who == "new").sum())
    assert new.revenue_share == pytest.approx(new.revenue / revenue.sum())


def test_a_given_k_is_used_and_still_scored() -> None:
    features, _ = make_blobs()
    result = cluster_customers(features, k=2)
    assert result.k == 2 and not result.chosen_automatically
    assert len(result.silhouette_curve) == 1 and result.silhouette_curve[0][0] == 2
    assert -1 <= result.silhouette <= 1
    assert set(np.unique(result.labels)) == {0, 1}
    assert len(result.names) == 2 and len(result.profiles) == 2


def test_k_range_limits_the_choice() -> None:
    features, _ = make_blobs()
    result = cluster_customers(features, k_range=(5, 6))
    assert [k for k, _ in result.silhouette_curve] == [5, 6]
    assert result.k in (5, 6)
    assert len(set(result.names)) == result.k


def test_same_random_state_same_result() -> None:
    features, _ = make_blobs(noise=0.6)  # overlapping groups: the seed matters
    one = cluster_customers(features, random_state=7, sample_size=300, fit_sample_size=500)
    two = cluster_customers(features, random_state=7, sample_size=300, fit_sample_size=500)
    assert np.array_equal(one.labels, two.labels)
    assert one.names == two.names
    assert one.silhouette_curve == two.silhouette_curve
    assert np.array_equal(one.centroids, two.centroids)
    assert one.to_arrow_profile().equals(two.to_arrow_profile())


def test_separated_blobs_do_not_depend_on_the_seed() -> None:
    features, _ = make_blobs()
    one = cluster_customers(features, random_state=0)
    two = cluster_customers(features, random_state=123)
    assert np.array_equal(one.labels, two.labels)  # same partition, and the same numbering
    assert one.names == two.names


def test_a_sample_smaller_than_the_data_finds_the_same_clusters() -> None:
    features, who = make_blobs(per_blob=1000)
    result = cluster_customers(features, sample_size=200, fit_sample_size=400)
    assert (result.fit_sample_size, result.silhouette_sample_size) == (400, 200)
    assert result.k == 4
    for blob in BLOBS:
        blob_label(result, who, blob)


# --------------------------------------------------------------------------------------------
# Profiles, centroids, tables
# --------------------------------------------------------------------------------------------
def test_profiles_add_up() -> None:
    features, _ = make_blobs()
    result = cluster_customers(features)
    n = len(result.labels)
    assert sum(p.size for p in result.profiles) == n == result.n_customers == result.n_clustered
    assert sum(p.share for p in result.profiles) == pytest.approx(1.0)
    assert sum(p.revenue_share for p in result.profiles) == pytest.approx(1.0)
    assert sum(p.revenue for p in result.profiles) == pytest.approx(features["monetary"].sum())
    for p in result.profiles:
        members = result.labels == p.cluster
        assert p.size == members.sum()
        for feature, values in features.items():
            assert p.mean[feature] == pytest.approx(values[members].mean())
            assert p.median[feature] == pytest.approx(np.median(values[members]))


def test_centroids_are_in_original_units() -> None:
    features, who = make_blobs()
    result = cluster_customers(features)
    assert result.feature_names == ["recency_days", "frequency", "monetary"]
    assert result.centroids.shape == result.scaled_centroids.shape == (4, 3)
    champions = result.centroids[blob_label(result, who, "champions")]
    assert champions[0] == pytest.approx(3.0, rel=0.3)  # log-space centre: ~ geometric mean
    assert champions[1] == pytest.approx(25.0, rel=0.1)
    assert champions[2] == pytest.approx(3000.0, rel=0.1)
    assert result.inertia > 0
    assert result.transforms == {"recency_days": "log1p", "frequency": "log1p", "monetary": "log1p"}


def test_arrow_profile_and_labels() -> None:
    features, _ = make_blobs()
    result = cluster_customers(features)
    table = result.to_arrow_profile()
    assert table.column_names == [
        "cluster", "name", "size", "share", "revenue", "revenue_share",
        "mean_recency_days", "mean_frequency", "mean_monetary",
        "median_recency_days", "median_frequency", "median_monetary",
    ]  # fmt: skip
    assert table.schema.field("cluster").type == pa.int32()
    assert table.num_rows == result.k
    assert table.column("name").to_pylist() == result.names
    assert table.column("size").to_pylist() == [p.size for p in result.profiles]
    labels = result.to_arrow_labels()
    assert labels.column("cluster").to_pylist() == result.labels.tolist()
    assert labels.column("cluster_name").to_pylist() == [result.names[c] for c in result.labels]


# --------------------------------------------------------------------------------------------
# Missing values, constant features, refunds, extra features
# --------------------------------------------------------------------------------------------
def test_customers_with_a_missing_feature_are_unclustered() -> None:
    features, who = make_blobs()
    missing = np.zeros(len(who), dtype=bool)
    missing[[3, 10, 500]] = True
    features["recency_days"] = np.where(missing, np.nan, features["recency_days"])
    result = cluster_customers(features)
    assert result.k == 4
    assert (result.labels == -1).tolist() == missing.tolist()
    assert result.n_clustered == len(who) - 3
    last = result.profiles[-1]
    assert (last.cluster, last.name, last.size) == (-1, UNCLUSTERED, 3)
    assert np.isnan(last.mean["recency_days"]) and np.isnan(last.median["recency_days"])
    assert last.mean["monetary"] == pytest.approx(features["monetary"][missing].mean())
    assert sum(p.size for p in result.profiles) == len(who)
    assert sum(p.share for p in result.profiles) == pytest.approx(1.0)
    assert sum(p.revenue_share for p in result.profiles) == pytest.approx(1.0)
    assert any("3 of 1,000 customers have a missing (NaN) feature" in note for note in result.notes)
    assert result.name_of(-1) == UNCLUSTERED
    assert result.to_arrow_profile().column("name").to_pylist()[-1] == UNCLUSTERED
    assert result.to_arrow_labels().column("cluster_name").to_pylist()[3] == UNCLUSTERED
    for blob in BLOBS:  # the others are clustered as before
        assert len(np.unique(result.labels[(who == blob) & ~missing])) == 1


def test_a_constant_feature_is_dropped_with_a_note() -> None:
    features, who = make_blobs()
    features["frequency"] = np.ones(len(who))  # everybody bought once
    result = cluster_customers(features)
    assert result.dropped_features == ["frequency"]
    assert result.feature_names == ["recency_days", "monetary"]
    assert any("'frequency' is constant" in note for note in result.notes)
    assert result.profiles[0].mean["frequency"] == 1.0  # still profiled
    assert all("one-time" not in name and "frequent" not in name for name in result.names)
    champions = result.names[blob_label(result, who, "champions")]
    assert champions == "Recent high spenders"


def test_negative_monetary_uses_the_signed_log_and_names_refunders() -> None:
    features, who = make_blobs()
    refunders = who == "lost"
    features["monetary"] = np.where(refunders, -features["monetary"], features["monetary"])
    result = cluster_customers(features)
    assert result.transforms["monetary"] == "signed log1p"
    label = blob_label(result, who, "lost")
    assert result.names[label] == "Lapsed one-time net refunders"
    assert result.centroids[label][2] == pytest.approx(-15.0, rel=0.15)
    assert label == result.k - 1  # lowest revenue per customer: last
    assert result.profiles[label].revenue < 0


def test_prediction_features_are_clustered_on() -> None:
    rng = np.random.default_rng(3)
    n = 600
    alive = np.arange(n) % 2 == 0
    features = {  # R/F/M do not tell the two groups apart (same distribution); p_alive does
        "recency_days": np.round(rng.lognormal(3.5, 0.3, n)),
        "frequency": np.round(rng.lognormal(2, 0.3, n)),
        "monetary": np.round(rng.lognormal(5, 0.3, n), 2),
        "p_alive": np.where(alive, rng.uniform(0.9, 1.0, n), rng.uniform(0.0, 0.1, n)),
    }
    result = cluster_customers(features)
    assert result.k == 2
    assert result.feature_names[-1] == "p_alive"
    assert result.transforms["p_alive"] == "none"
    assert adjusted_rand_score(alive, result.labels) == 1.0
    active = result.names[int(result.labels[alive][0])]
    churned = result.names[int(result.labels[~alive][0])]
    assert active.endswith(", likely active")
    assert churned.endswith(", likely churned")
    assert result.profiles[0].mean["p_alive"] > 0.5 or result.profiles[1].mean["p_alive"] > 0.5

    without = cluster_customers({k: v for k, v in features.items() if k != "p_alive"}, k=2)
    assert adjusted_rand_score(alive, without.labels) < 0.1


def test_clv_and_expected_purchases_are_log_scaled() -> None:
    features, _ = make_blobs()
    features["clv"] = features["monetary"] * 2
    features["expected_purchases"] = features["frequency"] / 3
    result = cluster_customers(features)
    assert result.transforms["clv"] == "log1p"
    assert result.transforms["expected_purchases"] == "log1p"
    assert result.feature_names == ["recency_days", "frequency", "monetary", "clv", "expected_purchases"]
    assert result.k == 4
    assert "mean_clv" in result.to_arrow_profile().column_names


def test_transforms_can_be_overridden() -> None:
    features, _ = make_blobs()
    result = cluster_customers(features, transforms={"recency_days": "none"}, k=4)
    assert result.transforms["recency_days"] == "none"
    scaled = (features["recency_days"] - features["recency_days"].mean()) / features["recency_days"].std()
    centre = result.scaled_centroids[0][0]
    assert scaled.min() <= centre <= scaled.max()


def test_k_is_limited_by_the_distinct_customers() -> None:
    rows = np.array([[1.0, 1.0, 10.0], [30.0, 5.0, 200.0], [300.0, 2.0, 50.0]])
    data = np.repeat(rows, 20, axis=0)
    features = {"recency_days": data[:, 0], "frequency": data[:, 1], "monetary": data[:, 2]}
    result = cluster_customers(features)
    assert [k for k, _ in result.silhouette_curve] == [2, 3]
    assert result.k == 3 and result.silhouette == 1.0
    assert any("only 3 distinct customer profiles" in note for note in result.notes)
    with pytest.raises(InputError, match=r"k: 5 clusters need at least 5 distinct customers.*only 3"):
        cluster_customers(features, k=5)


def test_input_may_be_integers_lists_or_arrow_arrays() -> None:
    features, _ = make_blobs()
    as_given = {
        "recency_days": features["recency_days"].astype(np.int64),
        "frequency": features["frequency"].tolist(),
        "monetary": pa.array(features["monetary"]),
    }
    assert np.array_equal(cluster_customers(as_given).labels, cluster_customers(features).labels)


def test_decimal_money_and_arrow_nulls_are_read() -> None:
    features, _ = make_blobs()
    cents = np.round(features["monetary"] * 100).astype(np.int64).tolist()
    money: list[Decimal | None] = [Decimal(c) / 100 for c in cents]
    money[7] = None
    as_given = {**features, "monetary": pa.array(money, type=pa.decimal128(18, 2))}
    result = cluster_customers(as_given)
    assert result.labels[7] == -1 and (result.labels >= 0).sum() == len(money) - 1
    assert result.profiles[-1].name == UNCLUSTERED and result.profiles[-1].size == 1


# --------------------------------------------------------------------------------------------
# Naming rules, silhouette
# --------------------------------------------------------------------------------------------
def test_equal_names_are_told_apart() -> None:
    z = {"recency_days": -1.0, "frequency": 1.0, "monetary": 1.0}
    typical = {"frequency": 5.0, "monetary": 100.0}
    by_clv = cluster_names(
        [{**z, "clv": 1.2}, {**z, "clv": -0.9}], [typical] * 2, [typical] * 2, ["recency_days", "clv"]
    )
    assert by_clv == ["Recent frequent high spenders (high CLV)", "Recent frequent high spenders (low CLV)"]
    same = cluster_names([z, z, z], [typical] * 3, [typical] * 3, ["recency_days"])
    assert same == [
        "Recent frequent high spenders",
        "Recent frequent high spenders (2)",
        "Recent frequent high spenders (3)",
    ]


def test_equal_names_are_told_apart_by_the_feature_that_differs_most() -> None:
    typical = {"frequency": 5.0, "monetary": 100.0}
    zs = [
        {"recency_days": -0.6, "frequency": 0.9, "monetary": 1.0},
        {"recency_days": -1.9, "frequency": 0.8, "monetary": 1.1},
        {"recency_days": -1.2, "frequency": 1.0, "monetary": 0.9},
    ]
    names = cluster_names(zs, [typical] * 3, [typical] * 3, ["recency_days", "frequency", "monetary"])
    assert names == [
        "Recent frequent high spenders (least recent)",
        "Recent frequent high spenders (most recent)",
        "Recent frequent high spenders (mid recency)",
    ]
    pair = cluster_names(zs[:2], [typical] * 2, [typical] * 2, ["recency_days"])
    assert pair == [
        "Recent frequent high spenders (less recent)",
        "Recent frequent high spenders (more recent)",
    ]
    spend = [{"recency_days": -1.0, "frequency": 1.0, "monetary": m} for m in (2.0, 1.6)]
    assert cluster_names(spend, [typical] * 2, [typical] * 2, ["monetary"]) == [
        "Recent frequent top spenders (higher spend)",
        "Recent frequent top spenders (lower spend)",
    ]


def test_very_frequent_top_spenders() -> None:
    z = {"recency_days": -1.0, "frequency": 1.6, "monetary": 2.0}
    typical = {"frequency": 12.0, "monetary": 900.0}
    assert cluster_names([z], [typical], [typical], []) == ["Recent very frequent top spenders"]


def test_middle_bands_have_their_own_words() -> None:
    name = cluster_names(
        [{"recency_days": 0.1, "frequency": -0.2, "monetary": 0.3}],
        [{"frequency": 3.0, "monetary": 80.0}],
        [{"frequency": 3.0, "monetary": 80.0}],
        ["recency_days", "frequency", "monetary"],
    )
    assert name == ["Cooling occasional mid spenders"]


def test_silhouette_matches_scikit_learn() -> None:
    rng = np.random.default_rng(5)
    points = rng.normal(size=(700, 3))
    labelings = [rng.integers(0, k, 700) for k in (2, 3, 7)]
    labelings.append(np.where(points[:, 0] > 0, 4, 9))  # non-contiguous labels
    singleton = np.zeros(700, dtype=np.int64)
    singleton[5] = 1  # a cluster of one: s = 0 for that point
    labelings.append(singleton)
    expected = [silhouette_score(points, labels) for labels in labelings]
    assert silhouette_scores(points, labelings) == pytest.approx(expected, abs=1e-12)
    undefined = silhouette_scores(points, [np.zeros(700, dtype=np.int64)])
    assert np.isnan(undefined[0])


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------
def _rfm(n: int = 40) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "recency_days": rng.integers(0, 100, n).astype(float),
        "frequency": rng.integers(1, 10, n).astype(float),
        "monetary": rng.uniform(5, 500, n),
    }


def _with(**changes: object) -> dict[str, Any]:
    features = _rfm()
    features.update(changes)
    return features


BAD_FEATURES = [
    ({}, "features: no features given"),
    ({"recency_days": [1.0], "frequency": [1.0]}, "required feature 'monetary' is missing"),
    (_with(frequency=np.ones(39)), "feature 'frequency': has 39 values but 'recency_days' has 40"),
    (_with(monetary=np.array(["a"] * 40)), "feature 'monetary': values must be numbers"),
    (_with(monetary=np.ones((40, 2))), "feature 'monetary': expected a one-dimensional array"),
    (
        _with(monetary=np.r_[np.ones(39), np.inf]),
        "feature 'monetary': 1 infinite value(s), the first at index 39",
    ),
    (
        _with(recency_days=np.r_[-3.0, np.ones(39)]),
        "feature 'recency_days': must not be negative, got -3 at index 0",
    ),
    (_with(frequency=np.r_[np.ones(39), -1.0]), "feature 'frequency': must not be negative"),
    (
        _with(p_alive=np.r_[np.full(39, 0.5), 1.5]),
        "feature 'p_alive': a probability must lie in [0, 1], got 1.5",
    ),
    (_with(clv=np.full(40, np.nan)), "feature 'clv': missing (NaN) for every customer"),
    (
        {"recency_days": np.ones(40), "frequency": np.ones(40), "monetary": np.full(40, 9.5)},
        "every feature is constant over the clustered customers",
    ),
    (
        {"recency_days": np.arange(9.0), "frequency": np.ones(9), "monetary": np.arange(9.0)},
        "clustering needs at least 10 customers with every feature present",
    ),
    (
        _with(recency_days=np.r_[np.full(35, np.nan), np.arange(5.0)]),
        "needs at least 10 customers with every feature present (at least 10, and more than the "
        "largest k=8 so that the silhouette is defined); got 5 (35 of the 40 have a missing (NaN) feature)",
    ),
    (
        {"": [1.0], "recency_days": [1.0], "frequency": [1.0], "monetary": [1.0]},
        "every key must be a non-empty",
    ),
    ({"recency_days": [], "frequency": [], "monetary": []}, "features: no customers"),
]


@pytest.mark.parametrize(("features", "message"), BAD_FEATURES, ids=[m[:40] for _, m in BAD_FEATURES])
def test_bad_features_are_rejected_with_the_field_and_reason(
    features: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        cluster_customers(features)  # type: ignore[arg-type]


BAD_PARAMETERS = [
    ({"k": 1}, "k: must be between 2 and 50, got 1"),
    ({"k": 51}, "k: must be between 2 and 50, got 51"),
    ({"k": 2.5}, "k: must be an integer, got 2.5"),
    ({"k": True}, "k: must be an integer, got True"),
    ({"k_range": (5, 3)}, "k_range: the smallest k (5) is larger than the largest (3)"),
    ({"k_range": (1, 4)}, "k_range[0]: must be between 2 and 50, got 1"),
    ({"k_range": (2, 60)}, "k_range[1]: must be between 2 and 50, got 60"),
    ({"k_range": 4}, "k_range: must be a pair"),
    ({"k_range": (2, 40)}, "needs at least 41 customers"),  # 40 given: one more than k is needed
    ({"sample_size": 10}, "sample_size: must be at least 100, got 10"),
    ({"fit_sample_size": 50}, "fit_sample_size: must be at least 100, got 50"),
    ({"random_state": -1}, "random_state: must be at least 0, got -1"),
    ({"revenue": np.ones(3)}, "revenue: needs one value per customer (40), got shape (3,)"),
    ({"revenue": np.r_[np.ones(39), -np.inf]}, "revenue: 1 infinite value(s), the first at index 39"),
    ({"transforms": {"tenure": "log"}}, "transforms: 'tenure' is not one of the features"),
    ({"transforms": {"monetary": "sqrt"}}, "transforms['monetary']: must be 'log' or 'none', got 'sqrt'"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_PARAMETERS, ids=[m[:40] for _, m in BAD_PARAMETERS])
def test_bad_parameters_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        cluster_customers(_rfm(), **kwargs)  # type: ignore[arg-type]


def test_one_customer_more_than_the_largest_k_is_enough() -> None:
    result = cluster_customers(_rfm(), k_range=(2, 39))
    assert [k for k, _ in result.silhouette_curve] == list(range(2, 40))
    assert isinstance(result.profiles[0], ClusterProfile)

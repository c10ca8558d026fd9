"""What :func:`rfmflow.clustering.cluster_customers` returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from rfmflow.clustering._features import Transform
from rfmflow.clustering._naming import UNCLUSTERED

UNCLUSTERED_LABEL = -1


@dataclass(frozen=True)
class ClusterProfile:
    """One cluster (or the unclustered customers, ``cluster == -1``) summarised.

    ``mean`` and ``median`` hold every input feature in its original units (NaN values left
    out; NaN when a feature has no value in the group). ``share`` is the cluster's fraction of
    all customers (clustered or not); ``revenue`` is the sum of the revenue array over the
    cluster (NaN counted as 0) and ``revenue_share`` its fraction of the total over all
    customers (NaN when that total is 0). With refunds a share can be negative.
    """

    cluster: int
    name: str
    size: int
    share: float
    mean: dict[str, float]
    median: dict[str, float]
    revenue: float
    revenue_share: float


@dataclass(frozen=True)
class ClusterResult:
    """Clusters of customers; see :func:`rfmflow.clustering.cluster_customers`.

    Attributes:
        labels: one int64 per input customer: the cluster, 0..k-1 in value order (0 is the
            highest mean revenue per customer), or -1 for a customer with a missing (NaN)
            feature.
        names: one unique human name per cluster, indexed by label.
        k: the number of clusters.
        chosen_automatically: whether k was chosen by the silhouette (``k=None``).
        silhouette_curve: ``(k, silhouette)`` for every k tried, ascending k (a single pair
            when k was given); NaN where the silhouette is undefined.
        silhouette: the curve's value at the chosen k.
        profiles: one per cluster in label order, then the "Unclustered" group if any.
        feature_names: the features clustered on (constant ones dropped), the columns of
            ``centroids`` and ``scaled_centroids``.
        centroids: k x len(feature_names): the cluster centres mapped back to original units
            (the inverse of the transform, so a geometric-mean-like "typical customer", not
            the arithmetic mean in ``profiles``).
        scaled_centroids: the same centres in the standardised space (0 = overall mean, units
            of one standard deviation), which is what the names are read from.
        inertia: the final K-Means objective (sum of squared distances to the centres in the
            standardised space) over the clustered customers.
        transforms: per input feature, "log1p", "signed log1p" or "none".
        dropped_features: constant features that were not clustered on.
        n_customers / n_clustered: input customers / those clustered (no NaN feature).
        fit_sample_size / silhouette_sample_size: rows used to choose k and to score it.
        notes: plain-text remarks for the user (missing values, dropped features, k limits).
    """

    labels: npt.NDArray[np.int64]
    names: list[str]
    k: int
    chosen_automatically: bool
    silhouette_curve: list[tuple[int, float]]
    silhouette: float
    profiles: list[ClusterProfile]
    feature_names: list[str]
    centroids: npt.NDArray[np.float64]
    scaled_centroids: npt.NDArray[np.float64]
    inertia: float
    transforms: dict[str, Transform]
    dropped_features: list[str]
    n_customers: int
    n_clustered: int
    fit_sample_size: int
    silhouette_sample_size: int
    random_state: int
    notes: list[str] = field(default_factory=list)

    def name_of(self, label: int) -> str:
        """The name of a label (``-1`` is "Unclustered")."""
        if label == UNCLUSTERED_LABEL:
            return UNCLUSTERED
        return self.names[label]

    def to_arrow_profile(self) -> pa.Table:
        """The profiles as a table: ``cluster`` (int32), ``name``, ``size`` (int64), ``share``,
        ``revenue``, ``revenue_share``, then ``mean_<feature>`` and ``median_<feature>`` for every
        input feature (float64), one row per profile in the order of ``profiles``."""
        features = list(self.profiles[0].mean) if self.profiles else []
        columns: dict[str, pa.Array] = {
            "cluster": pa.array([p.cluster for p in self.profiles], type=pa.int32()),
            "name": pa.array([p.name for p in self.profiles], type=pa.string()),
            "size": pa.array([p.size for p in self.profiles], type=pa.int64()),
            "share": pa.array([p.share for p in self.profiles], type=pa.float64()),
            "revenue": pa.array([p.revenue for p in self.profiles], type=pa.float64()),
            "revenue_share": pa.array([p.revenue_share for p in self.profiles], type=pa.float64()),
        }
        for feature in features:
            columns[f"mean_{feature}"] = pa.array([p.mean[feature] for p in self.profiles], pa.float64())
        for feature in features:
            columns[f"median_{feature}"] = pa.array([p.median[feature] for p in self.profiles], pa.float64())
        return pa.table(columns)

    def to_arrow_labels(self) -> pa.Table:
        """Per customer, in input order: ``cluster`` (int32, -1 unclustered) and ``cluster_name``
        (dictionary-encoded string)."""
        labels = self.labels.astype(np.int32)
        indices = np.where(labels == UNCLUSTERED_LABEL, self.k, labels).astype(np.int32)
        dictionary = pa.array([*self.names, UNCLUSTERED], type=pa.string())
        return pa.table(
            {
                "cluster": pa.array(labels, type=pa.int32()),
                "cluster_name": pa.DictionaryArray.from_arrays(
                    pa.array(indices, type=pa.int32()), dictionary
                ),
            }
        )

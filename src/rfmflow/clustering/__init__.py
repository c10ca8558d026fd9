"""K-Means clusters of customers on log-scaled, standardised R/F/M (and predictions).

Rule-based segments (Champions, At Risk, ...) cut the R/F/M scores where a scheme says;
clusters let the data say where the groups are. ::

    from rfmflow.clustering import cluster_customers

    result = cluster_customers(
        {"recency_days": r, "frequency": f, "monetary": m, "p_alive": p},  # one value per customer
        k=None,  # choose k by silhouette in k_range
    )
    result.labels  # per customer: 0..k-1 (0 = highest mean revenue per customer), -1 unclustered
    result.names  # e.g. ["Recent very frequent top spenders", ..., "Lapsed one-time low spenders"]
    result.to_arrow_profile()  # one row per cluster: size, shares, mean/median of every feature

**Features.** ``recency_days``, ``frequency`` and ``monetary`` are required (the definitions of
the scoring, see the docs); any other numeric per-customer array is clustered on as well, such
as the predictions ``p_alive``, ``clv`` or ``expected_purchases``.

**Transform.** Probabilities (``p_alive``, ``p_*``, ``*_probability``) must lie in [0, 1] and
are used as they are. Every other feature gets the signed logarithm ``sign(x) * log1p(|x|)``:
``log1p`` for the non-negative, right-skewed ones (recency, frequency, CLV, expected purchases)
and mirrored for negative values (net refunds in monetary). Then every feature is
standardised (mean 0, standard deviation 1 over the clustered customers), so each weighs the
same. ``transforms={"name": "log" | "none"}`` overrides the choice for a feature.

**Missing values.** A customer with NaN in any feature (for example no qualifying event, so
no recency) is not clustered: label -1, counted in an "Unclustered" profile (last), and
mentioned in ``result.notes``. Infinite values are an error.

**Constant features.** A feature with one value for every clustered customer carries no
information: it is dropped from the clustering (``result.dropped_features``, a note) but
keeps its profile columns. When every feature is constant there is nothing to cluster: error.

**Choosing k.** The candidates ``k_range`` (inclusive, default 2..8; or only ``k`` when given)
are fitted with K-Means (k-means++, 10 seeded restarts) on a seeded random sample of
``fit_sample_size`` customers (default 50,000, at least ``sample_size``); each fit is scored by
the mean silhouette on the first ``sample_size`` customers of that sample (default 10,000;
the cost grows with its square). The highest silhouette wins; silhouettes within 0.001 of the
best count as a tie, and the smallest such k is taken (fewer clusters are easier to act on).
k is never larger than the number of distinct customer profiles in the sample (a note says
when the range was cut). The final model is fitted on every clustered customer, starting
from the chosen sample fit's centres (one Lloyd run), so a million customers take seconds.

**Order and names.** Clusters are numbered by mean revenue per customer, highest first (ties:
lower mean recency first). ``revenue`` defaults to ``monetary``. Each cluster is named from
where it sits relative to all clustered customers, in standard deviations from their mean:
recency (in days) "Recent" / "Cooling" / "Lapsed"; frequency (clustering space) "very
frequent" / "frequent" / "occasional" / "infrequent", or "one-time" when the cluster's median
frequency is 1; monetary "top" / "high" / "mid" / "low spenders", or "net refunders"; and
", likely active" / ", likely churned" from ``p_alive``. "High" means at least 0.5 standard
deviations above the mean, "very" / "top" at least 1.5. Equal names are told apart by another
feature (``(high CLV)``), by the feature on which they differ most (``(more recent)`` /
``(less recent)``) or by a number (``(2)``); see :mod:`rfmflow.clustering._naming`.

**Errors.** Bad input raises :class:`rfmflow.core.errors.InputError` naming the field and the
reason: no features, a required feature missing, arrays of different lengths or not numeric,
infinite values, negative recency or frequency, a probability outside [0, 1], a feature
missing for every customer, every feature constant, fewer than ``max(10, largest k + 1)``
clustered customers (the silhouette needs more customers than clusters), fewer distinct
customers than k, or ``k`` / ``k_range`` outside 2..50.
"""

from rfmflow.clustering._cluster import cluster_customers
from rfmflow.clustering._features import REQUIRED_FEATURES
from rfmflow.clustering._naming import UNCLUSTERED
from rfmflow.clustering._result import UNCLUSTERED_LABEL, ClusterProfile, ClusterResult
from rfmflow.clustering._silhouette import silhouette_scores

__all__ = [
    "REQUIRED_FEATURES",
    "UNCLUSTERED",
    "UNCLUSTERED_LABEL",
    "ClusterProfile",
    "ClusterResult",
    "cluster_customers",
    "silhouette_scores",
]

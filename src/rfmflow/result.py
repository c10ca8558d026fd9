"""The result of scoring: per-customer rows plus what a person needs to trust them."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from rfmflow.core.errors import InputError
from rfmflow.core.prediction_results import PredictionReport
from rfmflow.core.results import InputStats, ScoreBand, SegmentSummary, Warning
from rfmflow.core.scheme import Scheme

if TYPE_CHECKING:
    import pandas as pd

    from rfmflow.clustering import ClusterResult

OUTPUT_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
}


@dataclass(frozen=True)
class ScoreResult:
    """Scores of every customer and the run's summary.

    ``customers`` is an Arrow table, one row per customer: ``customer_id, recency_days,
    frequency, monetary, r_score, f_score, m_score, rfm, segment, tenure_days`` and the
    scheme's extra columns (``tags``, ``rfm_composite``, decayed metrics, custom columns).
    ``monetary`` is an exact decimal when M is money.
    """

    customers: pa.Table
    scheme: Scheme
    as_of: date
    as_of_is_default: bool
    summaries: list[SegmentSummary]
    bands: dict[str, list[ScoreBand]]
    warnings: list[Warning]
    input: InputStats
    notes: list[str] = field(default_factory=list)
    currency: str | None = None
    timezone: str = "UTC"
    predictions: PredictionReport | None = None
    """The fitted models and their validation, when predictions were made."""

    @property
    def n_customers(self) -> int:
        return int(self.customers.num_rows)

    def to_pandas(self) -> pd.DataFrame:
        """The per-customer rows as a pandas DataFrame (``monetary`` as Python Decimals when money)."""
        frame: pd.DataFrame = self.customers.to_pandas()
        return frame

    def to_polars(self) -> Any:
        """The per-customer rows as a Polars DataFrame (needs the ``polars`` extra)."""
        import polars as pl

        return pl.from_arrow(self.customers)

    def write(self, path: str | Path) -> Path:
        """Write the per-customer rows to ``.csv``, ``.parquet`` or ``.json`` (JSON lines)."""
        return write_table(self.customers, path)

    def summary_dict(self) -> dict[str, Any]:
        """Everything but the rows, as plain JSON-ready data."""
        return {
            "scheme": {"name": self.scheme.name, "version": self.scheme.version},
            "as_of": self.as_of.isoformat(),
            "as_of_is_default": self.as_of_is_default,
            "timezone": self.timezone,
            "currency": self.currency,
            "customers": self.n_customers,
            "input": {
                "source": self.input.source,
                "rows_read": self.input.rows_read,
                "rows_rejected": self.input.rows_rejected,
                "rejects_path": self.input.rejects_path,
                "first_day": self.input.first_day.isoformat() if self.input.first_day else None,
                "last_day": self.input.last_day.isoformat() if self.input.last_day else None,
                "columns": self.input.columns,
            },
            "segments": [
                {
                    "segment": s.segment,
                    "customers": s.customers,
                    "share": round(s.share, 6),
                    "mean_recency_days": None
                    if s.mean_recency_days is None
                    else round(s.mean_recency_days, 3),
                    "mean_frequency": round(s.mean_frequency, 3),
                    "mean_monetary": round(s.mean_monetary, 2),
                    "revenue": str(s.revenue),
                    "revenue_share": round(s.revenue_share, 6),
                }
                for s in self.summaries
            ],
            "thresholds": {
                key: [
                    {"score": b.score, "low": b.low, "high": b.high, "customers": b.customers} for b in bands
                ]
                for key, bands in self.bands.items()
            },
            "warnings": [{"code": w.code, "message": w.message} for w in self.warnings],
            "notes": list(self.notes),
            "predictions": prediction_dict(self.predictions) if self.predictions else None,
        }


def write_table(table: pa.Table, path: str | Path) -> Path:
    """Write ``table`` to ``.csv``, ``.parquet`` or ``.json`` (JSON lines), atomically."""
    import duckdb

    target = Path(path)
    fmt = OUTPUT_FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise InputError(f"output {target}: unknown format {target.suffix!r}; use .csv, .parquet or .json")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    con = duckdb.connect()
    try:
        con.register("result_rows", table)
        options = {"csv": "FORMAT csv, HEADER true", "parquet": "FORMAT parquet", "json": "FORMAT json"}[fmt]
        escaped = str(tmp).replace("'", "''")
        con.execute(f"COPY (SELECT * FROM result_rows) TO '{escaped}' ({options})")
    except duckdb.Error as err:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {target}: {err}") from None
    finally:
        con.close()
    tmp.replace(target)  # never leave a half-written output behind
    return target


def _plain(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def prediction_dict(report: PredictionReport) -> dict[str, Any]:
    """The prediction report as JSON-ready data (dates as ISO strings, NaN as null)."""
    data = dataclasses.asdict(report)
    data.pop("grids")
    plain: dict[str, Any] = _plain(data)
    return plain


@dataclass(frozen=True)
class PredictResult:
    """Predictions for every customer with a transaction, and the fitted models.

    ``customers`` is an Arrow table, one row per customer: ``customer_id, first_purchase,
    last_purchase, x, t_x, T, m_x`` (the models' inputs: repeat purchases, time of the last
    purchase since the first and age, in the time unit; mean value of the repeat purchases),
    then ``p_alive, expected_purchases, expected_spend, clv, churn_risk,
    days_to_next_purchase, expected_next_purchase`` and, with a calibration end,
    ``holdout_x, holdout_expected``.
    """

    customers: pa.Table
    report: PredictionReport
    scheme: Scheme
    as_of: date
    as_of_is_default: bool
    source: str
    rows_rejected: int
    rejects_path: str | None = None
    notes: list[str] = field(default_factory=list)
    currency: str | None = None

    @property
    def n_customers(self) -> int:
        return int(self.customers.num_rows)

    def to_pandas(self) -> pd.DataFrame:
        frame: pd.DataFrame = self.customers.to_pandas()
        return frame

    def write(self, path: str | Path) -> Path:
        return write_table(self.customers, path)

    def summary_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "as_of_is_default": self.as_of_is_default,
            "source": self.source,
            "rows_rejected": self.rows_rejected,
            "rejects_path": self.rejects_path,
            "currency": self.currency,
            "customers": self.n_customers,
            "notes": list(self.notes),
            **prediction_dict(self.report),
        }


@dataclass(frozen=True)
class ClusterRun:
    """Customers grouped by K-Means on their R/F/M (and predictions), with the scores.

    ``customers`` is an Arrow table, one row per customer: ``customer_id, recency_days,
    frequency, monetary``, the prediction features clustered on (``p_alive, clv``) when
    predictions were made, the scheme's ``segment``, then ``cluster`` (0 = the highest mean
    revenue per customer; -1 for customers that could not be clustered) and ``cluster_name``.
    ``clusters`` holds the silhouette curve, centroids and profiles.
    """

    customers: pa.Table
    clusters: ClusterResult
    score: ScoreResult
    notes: list[str] = field(default_factory=list)

    @property
    def n_customers(self) -> int:
        return int(self.customers.num_rows)

    @property
    def profiles(self) -> pa.Table:
        """One row per cluster: size, share, revenue, revenue share, mean and median of each feature."""
        return self.clusters.to_arrow_profile()

    def to_pandas(self) -> pd.DataFrame:
        frame: pd.DataFrame = self.customers.to_pandas()
        return frame

    def write(self, path: str | Path) -> Path:
        return write_table(self.customers, path)

    def write_profiles(self, path: str | Path) -> Path:
        return write_table(self.profiles, path)

    def summary_dict(self) -> dict[str, Any]:
        c = self.clusters
        return {
            "as_of": self.score.as_of.isoformat(),
            "customers": self.n_customers,
            "clustered": c.n_clustered,
            "k": c.k,
            "chosen_automatically": c.chosen_automatically,
            "silhouette": _plain(c.silhouette),
            "silhouette_curve": [{"k": k, "silhouette": _plain(v)} for k, v in c.silhouette_curve],
            "features": list(c.feature_names),
            "transforms": dict(c.transforms),
            "profiles": _plain(self.profiles.to_pylist()),
            "notes": [*self.score.notes, *self.notes, *c.notes],
        }

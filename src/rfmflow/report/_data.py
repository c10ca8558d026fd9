"""Vectorised extraction of the per-customer columns the charts need (no per-row Python)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from rfmflow.core.scheme import Scheme, ScoreKey

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: The column that holds the metric each score was computed from.
METRIC_COLUMN: dict[ScoreKey, str] = {
    "recency": "recency_days",
    "frequency": "frequency",
    "monetary": "monetary",
}


@dataclass(frozen=True)
class Metric:
    """The values of one metric, as scored, with NaN for missing ones."""

    key: ScoreKey
    column: str
    values: FloatArray
    half_life_days: float | None = None

    @property
    def missing(self) -> int:
        return int(np.count_nonzero(np.isnan(self.values)))


def float_column(table: pa.Table, name: str) -> FloatArray | None:
    """Column ``name`` as float64 (decimals converted, nulls as NaN); ``None`` if absent or all null."""
    if name not in table.column_names:
        return None
    column = table.column(name)
    if column.null_count == len(column) and len(column) > 0:
        return None
    if not (
        pa.types.is_integer(column.type)
        or pa.types.is_floating(column.type)
        or pa.types.is_decimal(column.type)
    ):
        return None
    as_float = pc.cast(column, pa.float64(), safe=False)
    return np.asarray(as_float.to_numpy(), dtype=np.float64)


def score_column(table: pa.Table, name: str) -> IntArray | None:
    """Score column ``name`` as int64 with 0 for nulls; ``None`` if absent or all null."""
    if name not in table.column_names:
        return None
    column = table.column(name)
    if len(column) == 0 or column.null_count == len(column):
        return None
    filled = pc.fill_null(pc.cast(column, pa.int64(), safe=False), 0)
    return np.asarray(filled.to_numpy(), dtype=np.int64)


def metric(table: pa.Table, scheme: Scheme, key: ScoreKey) -> Metric | None:
    """The values ``key`` was scored on: the time-decayed column when the scheme decays it."""
    half_life = scheme.decayed.get(key)
    if half_life is not None and f"{key}_decayed" in table.column_names:
        values = float_column(table, f"{key}_decayed")
        column = f"{key}_decayed"
    else:
        half_life = None
        column = METRIC_COLUMN[key]
        values = float_column(table, column)
    if values is None:
        return None
    return Metric(key, column, values, half_life)


def score_bins(scheme: Scheme, key: ScoreKey, scores: IntArray) -> int:
    """Number of scores of ``key``: the scheme's bin count, or the highest score seen."""
    configured = scheme.bins(key) or 0
    observed = int(scores.max()) if scores.size else 0
    return max(configured, observed, 1)

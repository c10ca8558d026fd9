"""The result of scoring: per-customer rows plus what a person needs to trust them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from rfmflow.core.errors import InputError
from rfmflow.core.results import InputStats, ScoreBand, SegmentSummary, Warning
from rfmflow.core.scheme import Scheme

if TYPE_CHECKING:
    import pandas as pd

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
        import duckdb

        target = Path(path)
        fmt = OUTPUT_FORMATS.get(target.suffix.lower())
        if fmt is None:
            raise InputError(
                f"output {target}: unknown format {target.suffix!r}; use .csv, .parquet or .json"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        con = duckdb.connect()
        try:
            con.register("result_rows", self.customers)
            options = {"csv": "FORMAT csv, HEADER true", "parquet": "FORMAT parquet", "json": "FORMAT json"}[
                fmt
            ]
            escaped = str(tmp).replace("'", "''")
            con.execute(f"COPY (SELECT * FROM result_rows) TO '{escaped}' ({options})")
        except duckdb.Error as err:
            tmp.unlink(missing_ok=True)
            raise InputError(f"cannot write {target}: {err}") from None
        finally:
            con.close()
        tmp.replace(target)  # never leave a half-written output behind
        return target

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
        }

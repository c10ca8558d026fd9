"""Predictions in the service: churn probability, expected purchases and spend, CLV per customer.

:func:`fit_predictions` reads the buy-till-you-die model inputs of every customer straight from
the service's ``events`` (the one SQL definition of :mod:`rfmflow.core.model_inputs`, so the
numbers are those of ``rfmflow predict`` on the same events), fits the purchase model of the
active scheme's ``predictions:`` block (MBG/NBD by default) and the Gamma-Gamma spend model
(:func:`rfmflow.engines.predictions.predict_customers`), and replaces ``customer_predictions``
in one transaction, with a ``prediction_fits`` row holding the parameters and a summary (churn
counts, and per segment the customers at each risk, expected purchases, expected revenue over
the horizon and CLV).

A fit that cannot be made (too few repeat buyers, a model that does not converge) is recorded
as ``failed`` with the reason and leaves the previous predictions in place.

The scheduled scoring run fits after itself when ``RFMFLOW_PREDICTIONS`` is ``on`` (default);
``POST /v1/predictions/fit`` and ``rfmflow predictions fit`` fit on demand.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from rfmflow.core.errors import ModelError, RfmflowError
from rfmflow.core.model_inputs import MODEL_INPUT_COLUMNS, build_model_inputs_query
from rfmflow.core.prediction_results import FittedModel, PredictionReport, PredictOptions
from rfmflow.core.scheme import Predictions, Scheme
from rfmflow.engines.predictions import predict_customers
from rfmflow.service.db.engine import run_write
from rfmflow.service.db.tables import customer_predictions, customer_scores, prediction_fits, scoring_runs
from rfmflow.service.scoring_live import business_day, day_date, dialect_of
from rfmflow.service.scoring_schemes import active_scheme
from rfmflow.service.settings import Settings

log = logging.getLogger("rfmflow.service.predictions")

RISKS = ("high", "medium", "low")
FALLBACK_PENALIZER = 0.001
_LOCK_KEY = 7_265_010  # PostgreSQL advisory lock held while the predictions are replaced
_CHUNK = 5000


@dataclass
class FitResult:
    fit_id: int
    status: str  # done or failed
    as_of_day: int
    model: str
    customers: int = 0
    duration_ms: float = 0.0
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.fit_id,
            "status": self.status,
            "as_of": day_date(self.as_of_day).isoformat(),
            "model": self.model,
            "customers": self.customers,
            "duration_ms": round(self.duration_ms, 1),
            "error": self.error,
            "params": self.params,
            "summary": self.summary,
        }


def _as_of_day(conn: Connection, settings: Settings, now: datetime) -> tuple[int, int | None]:
    """The latest finished run's day (and id), else today in the business zone."""
    row = conn.execute(
        sa.select(scoring_runs.c.id, scoring_runs.c.as_of_day)
        .where(scoring_runs.c.finished_at.is_not(None))
        .order_by(scoring_runs.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return business_day(now, settings), None
    return int(row.as_of_day), int(row.id)


def read_model_inputs(conn: Connection, scheme: Scheme, as_of_day: int) -> pa.Table:
    """Every customer's model inputs (:data:`MODEL_INPUT_COLUMNS`) as an Arrow table."""
    sql = build_model_inputs_query(
        scheme, calibration_end_day=as_of_day, as_of_day=as_of_day, dialect=dialect_of(conn)
    )
    rows = conn.exec_driver_sql(sql).all()
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in MODEL_INPUT_COLUMNS]
    types = [pa.string(), pa.int64(), pa.int64(), pa.int64(), pa.float64(), pa.int64(), pa.int64()]
    return pa.table(
        {
            name: pa.array(list(values), type=kind)
            for name, values, kind in zip(MODEL_INPUT_COLUMNS, columns, types, strict=True)
        }
    )


def _minor(values: np.ndarray, scale: int) -> list[int | None]:
    return [None if not math.isfinite(v) else round(v * scale) for v in values.tolist()]


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def _rows(table: pa.Table, fit_id: int, at: datetime, scale: int) -> Iterator[dict[str, Any]]:
    ids = table.column("customer_id").to_pylist()
    p_alive = _floats(table.column("p_alive")).tolist()
    expected = _floats(table.column("expected_purchases")).tolist()
    spend = _minor(_floats(table.column("expected_spend")), scale)
    clv = _minor(_floats(table.column("clv")), scale)
    risk = table.column("churn_risk").to_pylist()
    wait = table.column("days_to_next_purchase").to_pylist()
    for i, customer in enumerate(ids):
        yield {
            "customer_id": customer,
            "fit_id": fit_id,
            "p_alive": p_alive[i],
            "expected_purchases": expected[i],
            "expected_spend_minor": spend[i],
            "clv_minor": clv[i],
            "churn_risk": risk[i],
            "days_to_next_purchase": None if wait[i] is None else float(wait[i]),
            "predicted_at": at,
        }


def _batches(rows: Iterator[dict[str, Any]], size: int = _CHUNK) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def by_segment(conn: Connection) -> list[dict[str, Any]]:
    """Per segment of the current scores: customers predicted, at each risk, mean p_alive, the
    expected purchases and revenue over the horizon, and the CLV (minor units)."""
    p, s = customer_predictions.c, customer_scores.c
    revenue = sa.func.sum(p.expected_purchases * sa.func.coalesce(p.expected_spend_minor, 0))
    counts = [sa.func.sum(sa.case((p.churn_risk == r, 1), else_=0)).label(r) for r in RISKS]
    rows = conn.execute(
        sa.select(
            s.segment,
            sa.func.count().label("customers"),
            *counts,
            sa.func.avg(p.p_alive).label("mean_p_alive"),
            sa.func.sum(p.expected_purchases).label("expected_purchases"),
            revenue.label("expected_revenue_minor"),
            sa.func.sum(p.clv_minor).label("clv_minor"),
        )
        .select_from(customer_predictions.join(customer_scores, s.customer_id == p.customer_id))
        .group_by(s.segment)
        .order_by(revenue.desc())
    ).all()
    return [
        {
            "segment": r.segment,
            "customers": int(r.customers),
            "churn": {risk: int(getattr(r, risk) or 0) for risk in RISKS},
            "mean_p_alive": round(float(r.mean_p_alive), 4) if r.mean_p_alive is not None else None,
            "expected_purchases": round(float(r.expected_purchases or 0), 2),
            "expected_revenue_minor": round(float(r.expected_revenue_minor or 0)),
            "clv_minor": int(r.clv_minor or 0),
        }
        for r in rows
    ]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _model_out(model: FittedModel) -> dict[str, Any]:
    return {
        "model": model.key,
        "name": model.name,
        "params": {k: _finite(v) for k, v in model.params.items()},
        "log_likelihood": _finite(model.log_likelihood),
        "bic": _finite(model.bic),
        "customers": model.customers,
    }


def _predict(
    inputs: pa.Table, options: Predictions, as_of_day: int, money_decimals: int
) -> tuple[pa.Table, PredictionReport, Predictions]:
    """Predict with the scheme's settings; when the purchase model's parameters run off to a
    boundary and the scheme set no penalizer, once more with :data:`FALLBACK_PENALIZER` (a note
    says so)."""

    def attempt(chosen: Predictions) -> tuple[pa.Table, PredictionReport]:
        table, _, report = predict_customers(
            inputs,
            None,
            PredictOptions(settings=chosen),
            as_of=day_date(as_of_day),
            money_scale=money_decimals,
        )
        return table, report

    try:
        table, report = attempt(options)
    except ModelError as err:
        if options.penalizer > 0:
            raise
        retry = options.model_copy(update={"penalizer": FALLBACK_PENALIZER})
        table, report = attempt(retry)
        first = str(err).split(" (optimizer", 1)[0]
        report.notes.insert(
            0,
            f"fitted with penalizer {FALLBACK_PENALIZER} because the unpenalised fit failed: {first}; "
            "set predictions.penalizer in the scheme to choose one",
        )
        return table, report, retry
    return table, report, options


def _failed(engine: Engine, fit_id: int, started: float, message: str) -> None:
    def work(conn: Connection) -> None:
        conn.execute(
            prediction_fits.update()
            .where(prediction_fits.c.id == fit_id)
            .values(
                status="failed",
                error=message[:2000],
                finished_at=datetime.now(UTC),
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        )

    run_write(engine, work)


def fit_predictions(engine: Engine, settings: Settings, *, now: datetime | None = None) -> FitResult:
    """Fit the models on every customer's purchases and replace the stored predictions."""
    started = time.perf_counter()
    at = now or datetime.now(UTC)
    with engine.connect() as conn:
        version = active_scheme(conn)
        as_of_day, run_id = _as_of_day(conn, settings, at)
    options = version.scheme.predictions

    def open_fit(conn: Connection) -> int:
        return int(
            conn.execute(
                prediction_fits.insert()
                .values(
                    as_of_day=as_of_day,
                    run_id=run_id,
                    model=options.model,
                    time_unit=options.time_unit,
                    status="running",
                    started_at=at,
                )
                .returning(prediction_fits.c.id)
            ).scalar_one()
        )

    fit_id = run_write(engine, open_fit)
    result = FitResult(fit_id, "failed", as_of_day, options.model)
    try:
        with engine.connect() as conn:
            inputs = read_model_inputs(conn, version.scheme, as_of_day)
        table, report, options = _predict(inputs, options, as_of_day, settings.money_decimals)
    except (RfmflowError, ValueError, FloatingPointError) as err:
        result.error = str(err).splitlines()[0] if str(err) else type(err).__name__
        result.duration_ms = (time.perf_counter() - started) * 1000
        _failed(engine, fit_id, started, result.error)
        log.warning("predictions not fitted", extra={"fit": fit_id, "reason": result.error})
        return result
    params = {
        "purchase": _model_out(report.purchase_model),
        "spend": _model_out(report.spend_model) if report.spend_model else None,
        "horizon_days": options.horizon_days,
        "clv_horizon_days": options.clv_horizon_days,
        "discount_rate": options.discount_rate,
        "penalizer": options.penalizer,
        "churn_thresholds": {
            "high_below": options.churn_risk.high_below,
            "medium_below": options.churn_risk.medium_below,
        },
    }
    scale = 10**settings.money_decimals

    def store(conn: Connection) -> dict[str, Any]:
        if conn.dialect.name == "postgresql":  # two fits at once replace the rows one after the other
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
        conn.execute(customer_predictions.delete())
        for batch in _batches(_rows(table, fit_id, at, scale)):
            conn.execute(customer_predictions.insert(), batch)
        summary = {
            "churn_counts": dict(report.churn_counts),
            "customers": table.num_rows,
            "horizon_days": options.horizon_days,
            "clv_horizon_days": options.clv_horizon_days,
            "by_segment": by_segment(conn),
            "notes": list(report.notes),
        }
        conn.execute(
            prediction_fits.update()
            .where(prediction_fits.c.id == fit_id)
            .values(
                status="done",
                params=params,
                summary=summary,
                customers=table.num_rows,
                finished_at=datetime.now(UTC),
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        )
        return summary

    result.summary = run_write(engine, store)
    result.status, result.customers, result.params = "done", table.num_rows, params
    result.duration_ms = (time.perf_counter() - started) * 1000
    log.info("predictions fitted", extra={"fit": fit_id, "customers": table.num_rows})
    return result


def _fit_out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "status": row.status,
        "as_of": day_date(row.as_of_day).isoformat(),
        "run_id": row.run_id,
        "model": row.model,
        "time_unit": row.time_unit,
        "customers": row.customers,
        "started_at": row.started_at.isoformat(),
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        "duration_ms": row.duration_ms,
        "error": row.error,
        "params": row.params,
        "summary": row.summary,
    }


def latest_fit(conn: Connection, *, done_only: bool = True) -> dict[str, Any] | None:
    """The newest fit (the newest successful one with ``done_only``), or None."""
    query = sa.select(prediction_fits).order_by(prediction_fits.c.id.desc()).limit(1)
    if done_only:
        query = query.where(prediction_fits.c.status == "done")
    row = conn.execute(query).first()
    return None if row is None else _fit_out(row)


def list_fits(conn: Connection, *, limit: int = 20) -> list[dict[str, Any]]:
    rows = conn.execute(sa.select(prediction_fits).order_by(prediction_fits.c.id.desc()).limit(limit)).all()
    return [_fit_out(r) for r in rows]


def _prediction_out(row: Any, scale: int) -> dict[str, Any]:
    """A stored row with the names conditions and pages read (money in major units)."""

    def money(minor: int | None) -> float | None:
        return None if minor is None else minor / scale

    return {
        "p_alive": row.p_alive,
        "churn_risk": row.churn_risk,
        "expected_purchases": row.expected_purchases,
        "expected_spend": money(row.expected_spend_minor),
        "clv": money(row.clv_minor),
        "days_to_next_purchase": row.days_to_next_purchase,
    }


def customer_prediction(conn: Connection, customer_id: str, settings: Settings) -> dict[str, Any] | None:
    """One customer's stored predictions, or None."""
    row = conn.execute(
        sa.select(customer_predictions).where(customer_predictions.c.customer_id == customer_id)
    ).first()
    if row is None:
        return None
    out = _prediction_out(row, 10**settings.money_decimals)
    return {**out, "fit_id": row.fit_id, "predicted_at": row.predicted_at.isoformat()}


def predictions_for(conn: Connection, ids: Sequence[str], money_decimals: int) -> dict[str, dict[str, Any]]:
    """Stored predictions of ``ids`` (customers without one are left out)."""
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 1000):
        chunk = list(ids[start : start + 1000])
        query = sa.select(customer_predictions).where(customer_predictions.c.customer_id.in_(chunk))
        for row in conn.execute(query):
            out[row.customer_id] = _prediction_out(row, 10**money_decimals)
    return out


__all__ = [
    "FitResult",
    "by_segment",
    "customer_prediction",
    "fit_predictions",
    "latest_fit",
    "list_fits",
    "predictions_for",
    "read_model_inputs",
]

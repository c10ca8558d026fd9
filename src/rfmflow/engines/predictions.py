"""Fit the buy-till-you-die and spend models on model inputs and predict every customer.

The inputs come from :func:`rfmflow.core.model_inputs.build_model_inputs_query` run on any
engine; this module only needs them as an Arrow table, so the service reuses it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from rfmflow.core.errors import ModelError, RfmflowError
from rfmflow.core.prediction_results import (
    DAYS_PER_UNIT,
    MODEL_NAMES,
    Comparison,
    FittedModel,
    Grid,
    Holdout,
    HoldoutRow,
    PredictionReport,
    PredictOptions,
)
from rfmflow.core.prediction_results import PREDICTION_OUTPUT as PREDICTION_OUTPUT
from rfmflow.core.scheme import Predictions
from rfmflow.predictive import BGNBD, MBGNBD, GammaGamma, ParetoNBD, customer_lifetime_value, load_model

EPOCH = date(1970, 1, 1)
PURCHASE_CLASSES: dict[str, Any] = {"bgnbd": BGNBD, "pareto-nbd": ParetoNBD, "mbgnbd": MBGNBD}
MODELS_FILE_FORMAT = "rfmflow-models/1"
HOLDOUT_BUCKETS = 7  # calibration frequencies 0..6 and 7+


@dataclass
class _Arrays:
    customer_id: pa.Array
    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    m_x: np.ndarray  # mean repeat transaction value (NaN when unusable)
    holdout_x: np.ndarray
    spend_excluded: int  # repeat buyers whose repeat transactions have no positive mean value


def _day(value: date) -> int:
    return (value - EPOCH).days


def model_arrays(inputs: pa.Table, *, end_day: int, unit_days: int, money_scale: int | None) -> _Arrays:
    """Turn the model-inputs rows into the models' ``x, t_x, T`` (in the time unit) and ``m_x``."""
    first = inputs.column("first_day").to_numpy(zero_copy_only=False).astype(np.float64)
    last = inputs.column("last_day").to_numpy(zero_copy_only=False).astype(np.float64)
    x = inputs.column("x").to_numpy(zero_copy_only=False).astype(np.float64)
    valued = inputs.column("repeat_valued").to_numpy(zero_copy_only=False).astype(np.float64)
    value = inputs.column("repeat_value_minor").to_numpy(zero_copy_only=False)
    value = np.asarray(value, dtype=np.float64)  # NULL -> NaN
    if money_scale:
        value = value / 10**money_scale
    with np.errstate(divide="ignore", invalid="ignore"):
        m_x = np.where((x > 0) & (valued == x), value / np.where(x > 0, x, 1), np.nan)
    bad = (x > 0) & ~(m_x > 0)
    m_x[bad] = np.nan
    return _Arrays(
        customer_id=inputs.column("customer_id").combine_chunks(),
        x=x,
        t_x=(last - first) / unit_days,
        T=(end_day - first) / unit_days,
        m_x=m_x,
        holdout_x=inputs.column("holdout_x").to_numpy(zero_copy_only=False).astype(np.float64),
        spend_excluded=int(bad.sum()),
    )


def _fitted(key: str, model: Any, time_unit: str | None) -> FittedModel:
    return FittedModel(
        key=key,
        name=MODEL_NAMES.get(key, "Gamma-Gamma"),
        params={k: float(v) for k, v in model.params_.items()},
        standard_errors={k: float(v) for k, v in model.standard_errors_.items()},
        log_likelihood=float(model.log_likelihood_),
        customers=int(model.n_customers_),
        bic=float(model.bic_),
        time_unit=time_unit,
    )


def _fit_purchase(key: str, settings: Predictions, a: _Arrays) -> Any:
    usable = a.T > 0  # a customer first seen on the end day carries no information
    if not usable.any():
        raise ModelError(
            "no customer bought before the end of the fitting period (every first purchase is on its last "
            "day): move the calibration end or the as-of date later"
        )
    model = PURCHASE_CLASSES[key](penalizer=settings.penalizer, time_unit=settings.time_unit)
    return model.fit(a.x[usable], a.t_x[usable], a.T[usable])


def _fit_spend(a: _Arrays) -> tuple[Any | None, str | None]:
    """The Gamma-Gamma model, unpenalised: a penalty on gamma would depend on the currency."""
    ok = (a.x > 0) & (a.m_x > 0)
    if not ok.any():
        return None, "no repeat transaction has a positive amount: expected_spend and clv are left empty"
    try:
        return GammaGamma().fit(a.x[ok], a.m_x[ok]), None
    except ModelError as err:
        return None, f"Gamma-Gamma spend model not fitted ({err}); expected_spend and clv are left empty"


def _holdout(
    model: Any, cal: _Arrays, cal_end: date, as_of: date, unit_days: int
) -> tuple[Holdout, np.ndarray]:
    duration = (as_of - cal_end).days / unit_days
    predicted = np.asarray(model.expected_purchases(duration, cal.x, cal.t_x, cal.T), dtype=np.float64)
    actual = cal.holdout_x
    rows = []
    bucket = np.minimum(cal.x, HOLDOUT_BUCKETS).astype(np.int64)
    for b in range(HOLDOUT_BUCKETS + 1):
        sel = bucket == b
        if not sel.any():
            continue
        label = f"{b}+" if b == HOLDOUT_BUCKETS else str(b)
        rows.append(
            HoldoutRow(label, int(sel.sum()), float(actual[sel].mean()), float(predicted[sel].mean()))
        )
    err = predicted - actual
    return (
        Holdout(
            calibration_end=cal_end,
            as_of=as_of,
            duration=duration,
            customers=int(actual.size),
            actual_total=int(actual.sum()),
            predicted_total=float(predicted.sum()),
            mae=float(np.abs(err).mean()),
            rmse=float(math.sqrt(float((err**2).mean()))),
            by_frequency=rows,
        ),
        predicted,
    )


def _grids(model: Any, a: _Arrays, horizon: float, horizon_days: int, unit: str) -> list[Grid]:
    age = float(a.T.max())
    max_x = int(min(max(np.quantile(a.x, 0.99), 5), 40))
    freqs = list(range(max_x + 1))
    recencies = [float(v) for v in np.linspace(0.0, age, 25)]
    xs, ts = np.meshgrid(np.array(freqs, dtype=np.float64), np.array(recencies), indexing="ij")
    ts = np.where(xs == 0, 0.0, ts)
    big_t = np.full_like(xs, age)
    alive = np.asarray(model.p_alive(xs.ravel(), ts.ravel(), big_t.ravel())).reshape(xs.shape)
    expected = np.asarray(model.expected_purchases(horizon, xs.ravel(), ts.ravel(), big_t.ravel())).reshape(
        xs.shape
    )
    return [
        Grid(
            f"Probability alive, by frequency and recency (age {age:.1f} {unit})",
            freqs,
            recencies,
            alive.tolist(),
            age,
        ),
        Grid(
            f"Expected purchases in the next {horizon_days} days, by frequency and recency",
            freqs,
            recencies,
            expected.tolist(),
            age,
        ),
    ]


def _compare(
    settings: Predictions, cal: _Arrays, holdout_args: tuple[date, date, int] | None
) -> list[Comparison]:
    out = []
    for key, name in MODEL_NAMES.items():
        try:
            model = _fit_purchase(key, settings, cal)
        except RfmflowError as err:
            out.append(Comparison(key, name, math.nan, 0, math.nan, None, None, error=str(err)))
            continue
        mae = rmse = None
        if holdout_args is not None:
            h, _ = _holdout(model, cal, *holdout_args)
            mae, rmse = h.mae, h.rmse
        out.append(
            Comparison(
                key, name, float(model.log_likelihood_), int(model.n_parameters), float(model.bic_), mae, rmse
            )
        )
    return out


def _load(path: Path, settings: Predictions) -> tuple[str, Any, Any | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"{path}: cannot read saved models: {err}") from None
    if not isinstance(data, dict) or data.get("format") != MODELS_FILE_FORMAT:
        raise ModelError(f"{path}: not a models file written by rfmflow predict --save-models")
    if not isinstance(data.get("purchase"), dict):
        raise ModelError(f"{path}: 'purchase': missing; the file holds no purchase model")
    try:
        purchase = load_model(data["purchase"])
        spend = load_model(data["spend"]) if data.get("spend") is not None else None
    except ModelError as err:
        raise ModelError(f"{path}: {err}") from None
    key = next((k for k, cls in PURCHASE_CLASSES.items() if type(purchase) is cls), None)
    if key is None:
        raise ModelError(f"{path}: 'purchase': holds a {type(purchase).__name__}, not a purchase model")
    if spend is not None and not isinstance(spend, GammaGamma):
        raise ModelError(f"{path}: 'spend': holds a {type(spend).__name__}, not a Gamma-Gamma spend model")
    unit = getattr(purchase, "time_unit", None)
    if unit != settings.time_unit:
        raise ModelError(
            f"{path}: the purchase model was fitted with time unit {unit!r} but predictions are asked in "
            f"{settings.time_unit!r}; pass --time-unit {unit} (parameters depend on the time unit)"
        )
    return key, purchase, spend


def _save(path: Path, key: str, purchase: Any, spend: Any | None) -> None:
    doc = {
        "format": MODELS_FILE_FORMAT,
        "purchase_key": key,
        "purchase": purchase.to_dict(),
        "spend": spend.to_dict() if spend is not None else None,
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def predict_customers(
    current: pa.Table,
    calibration: pa.Table | None,
    options: PredictOptions,
    *,
    as_of: date,
    money_scale: int | None,
    customers_without_transactions: int = 0,
) -> tuple[pa.Table, pa.Table | None, PredictionReport]:
    """Fit (or load) the models and predict every customer of ``current``.

    ``current`` holds the model inputs up to ``as_of``; ``calibration`` those up to the
    calibration end (with holdout counts) when one is given, and the models are then fitted
    on it. Returns one row per customer of ``current`` (``customer_id`` and
    :data:`PREDICTION_OUTPUT`), when calibrating one row per calibration customer
    (``customer_id, holdout_x, holdout_expected``), and the report.
    """
    s = options.settings
    unit_days = DAYS_PER_UNIT[s.time_unit]
    notes: list[str] = []
    now = model_arrays(current, end_day=_day(as_of), unit_days=unit_days, money_scale=money_scale)
    cal_end = options.calibration_end
    cal = (
        model_arrays(calibration, end_day=_day(cal_end), unit_days=unit_days, money_scale=money_scale)
        if calibration is not None and cal_end is not None
        else None
    )
    fit_on = cal if cal is not None else now
    key: str = s.model
    if options.load_path is not None:
        key, purchase, spend = _load(options.load_path, s)
        spend_note = None if spend is not None else "the saved models have no spend model"
    else:
        purchase = _fit_purchase(key, s, fit_on)
        spend, spend_note = _fit_spend(fit_on)
    if spend_note:
        notes.append(spend_note)
    never_repeated = int((now.x == 0).sum())
    if key == "bgnbd" and never_repeated:
        notes.append(
            f"BG/NBD lets customers drop out only right after a repeat purchase, so the {never_repeated:,} "
            "customers without one have p_alive = 1 and churn_risk 'low' however long ago they bought; "
            "--model mbgnbd or pareto-nbd gives them a churn probability"
        )
    if fit_on.spend_excluded and spend is not None:
        notes.append(
            f"{fit_on.spend_excluded} repeat buyers have zero, negative or missing amounts on their repeat "
            "purchases: left out of the spend model and given the population's mean spend"
        )
    if options.save_path is not None:
        _save(options.save_path, key, purchase, spend)

    horizon = s.horizon_days / unit_days
    p_alive = np.asarray(purchase.p_alive(now.x, now.t_x, now.T), dtype=np.float64)
    expected = np.asarray(purchase.expected_purchases(horizon, now.x, now.t_x, now.T), dtype=np.float64)
    if spend is not None:
        m_known = np.where(np.isnan(now.m_x), 0.0, now.m_x)
        x_known = np.where(np.isnan(now.m_x), 0.0, now.x)  # unusable spend: the population's mean
        spend_pred = np.asarray(spend.expected_spend(x_known, m_known), dtype=np.float64)
        finite = np.isfinite(spend_pred)
        if not finite.all():
            q = float(spend.params_["q"])
            notes.append(
                f"the spend model's q = {q:.3g} is not above 1, so the population's mean spend is infinite: "
                f"{int((~finite).sum()):,} customers without usable repeat purchases get no expected_spend "
                "or clv (fewer outliers in the amounts, or more repeat buyers, usually help)"
            )
            spend_pred[~finite] = np.nan
        clv = np.full(now.x.size, np.nan)
        if finite.any():
            clv[finite] = customer_lifetime_value(
                purchase,
                spend_pred[finite],
                now.x[finite],
                now.t_x[finite],
                now.T[finite],
                horizon=s.clv_horizon_days / unit_days,
                annual_discount_rate=s.discount_rate,
            )
    else:
        spend_pred = np.full(now.x.size, np.nan)
        clv = np.full(now.x.size, np.nan)
    high, medium = s.churn_risk.high_below, s.churn_risk.medium_below
    risk = np.where(p_alive < high, "high", np.where(p_alive < medium, "medium", "low"))
    wait = np.asarray(purchase.expected_wait_if_alive(now.x, now.t_x, now.T), dtype=np.float64) * unit_days
    defined = (now.x >= 1) & (p_alive >= high) & np.isfinite(wait)
    wait_days = np.where(defined, np.round(wait), np.nan)
    next_day = np.where(defined, _day(as_of) + wait_days, np.nan)

    columns: dict[str, pa.Array] = {
        "customer_id": now.customer_id,
        "p_alive": pa.array(np.round(p_alive, 6)),
        "expected_purchases": pa.array(np.round(expected, 6)),
        "expected_spend": pa.array(np.round(spend_pred, 2), mask=np.isnan(spend_pred)),
        "clv": pa.array(np.round(clv, 2), mask=np.isnan(clv)),
        "churn_risk": pa.array(risk.tolist(), type=pa.string()),
        "days_to_next_purchase": pa.array(
            np.nan_to_num(wait_days).astype(np.int64), mask=~defined, type=pa.int64()
        ),
        "expected_next_purchase": pa.array(
            np.nan_to_num(next_day).astype(np.int32), mask=~defined, type=pa.int32()
        ).cast(pa.date32()),
    }
    holdout = None
    comparison: list[Comparison] = []
    holdout_args = (cal_end, as_of, unit_days) if cal is not None and cal_end is not None else None
    holdout_rows = None
    if cal is not None and holdout_args is not None:
        holdout, predicted = _holdout(purchase, cal, *holdout_args)
        holdout_rows = pa.table(
            {
                "customer_id": cal.customer_id,
                "holdout_x": pa.array(cal.holdout_x.astype(np.int64)),
                "holdout_expected": pa.array(np.round(predicted, 6)),
            }
        )
        after = now.x.size - cal.x.size
        if after:
            notes.append(
                f"{after} customers first bought after the calibration end: predicted, but not in the fit "
                "or the holdout comparison"
            )
    if options.compare:
        comparison = _compare(s, fit_on, holdout_args)
    corr = None
    ok = (fit_on.x > 0) & (fit_on.m_x > 0)
    if ok.sum() > 2:
        corr = float(np.corrcoef(fit_on.x[ok], fit_on.m_x[ok])[0, 1])
        if abs(corr) > 0.3:
            notes.append(
                f"frequency and spend are correlated (r = {corr:.2f}): the Gamma-Gamma model assumes they "
                "are independent, so expected_spend and clv are less reliable"
            )
    counts = {level: int((risk == level).sum()) for level in ("low", "medium", "high")}
    report = PredictionReport(
        purchase_model=_fitted(key, purchase, s.time_unit),
        spend_model=_fitted("gamma-gamma", spend, None) if spend is not None else None,
        time_unit=s.time_unit,
        horizon_days=s.horizon_days,
        clv_horizon_days=s.clv_horizon_days,
        discount_rate=s.discount_rate,
        churn_thresholds=(high, medium),
        churn_counts=counts,
        customers_predicted=int(now.x.size),
        customers_without_transactions=customers_without_transactions,
        calibration_end=cal_end,
        holdout=holdout,
        comparison=comparison,
        spend_frequency_correlation=corr,
        grids=_grids(purchase, fit_on, horizon, s.horizon_days, s.time_unit),
        notes=notes,
        loaded_from=str(options.load_path) if options.load_path else None,
    )
    return pa.table(columns), holdout_rows, report

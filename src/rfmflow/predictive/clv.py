"""Customer lifetime value from a purchase model and an expected spend per transaction.

CLV over a horizon H, in steps t_1 < t_2 < ... < t_k = H (default about 30 days)::

    CLV = spend * sum_i (E[Y(t_i)] - E[Y(t_{i-1})]) / (1 + d) ^ (t_i in days / 365)

with E[Y(t)] the conditional expected purchases of :meth:`PurchaseModel.expected_purchases`
and d the annual discount rate: the purchases expected in each step are discounted from the
step's end. With d = 0 this is spend * E[Y(H)]. (Fader, Hardie & Lee 2005, "RFM and CLV",
discount the same expectation continuously; a monthly grid is the usual practice.)
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from rfmflow.core.errors import ModelError
from rfmflow.core.prediction_results import DAYS_PER_UNIT  # days in one model time unit
from rfmflow.predictive._base import FloatArray, PurchaseModel
from rfmflow.predictive._inputs import as_float_array, check_purchase_inputs, compress

DEFAULT_STEP_DAYS = 30.0


def days_per_time_unit(time_unit: str) -> float:
    """Length of a model time unit in days ("days" = 1, "weeks" = 7)."""
    try:
        return float(DAYS_PER_UNIT[time_unit])
    except KeyError:
        raise ModelError(
            f"time unit {time_unit!r} has no known length in days (known: days, weeks); "
            "pass days_per_unit=... to customer_lifetime_value"
        ) from None


def _positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ModelError(f"{name}: {value!r} is not a number") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ModelError(f"{name}: {value!r} must be a finite number {bound}")
    return v


def customer_lifetime_value(
    model: PurchaseModel,
    spend: ArrayLike,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    *,
    horizon: float,
    annual_discount_rate: float = 0.0,
    step: float | None = None,
    days_per_unit: float | None = None,
) -> FloatArray:
    """Discounted expected revenue per customer over ``horizon`` (in the model's time unit).

    ``spend`` is the expected value of one transaction (a scalar, or one value per customer,
    typically :meth:`GammaGamma.expected_spend`); ``step`` defaults to 30 days expressed in
    model time units; ``days_per_unit`` defaults from ``model.time_unit`` (days = 1,
    weeks = 7) and must be given for any other unit.
    """
    if not isinstance(model, PurchaseModel):
        raise ModelError(
            f"model: expected a fitted purchase model (BGNBD, ParetoNBD, MBGNBD), got {type(model).__name__}"
        )
    theta = model._require_fit()
    xa, ta, Ta = check_purchase_inputs(x, t_x, T)
    spend_arr = as_float_array("spend", spend)
    if spend_arr.size == 1:
        spend_arr = np.full(xa.size, spend_arr[0])
    elif spend_arr.size != xa.size:
        raise ModelError(f"spend: has {spend_arr.size} values for {xa.size} customers; give one per customer")
    if (spend_arr < 0).any():
        first = int(np.flatnonzero(spend_arr < 0)[0])
        raise ModelError(
            f"spend: row {first} is {float(spend_arr[first])!r}: expected spend cannot be negative"
        )
    H = _positive("horizon", horizon)
    rate = _positive("annual_discount_rate", annual_discount_rate, allow_zero=True)
    dpu = (
        _positive("days_per_unit", days_per_unit)
        if days_per_unit is not None
        else days_per_time_unit(model.time_unit)
    )
    dt = _positive("step", step) if step is not None else DEFAULT_STEP_DAYS / dpu
    n_steps = max(1, math.ceil(H / dt - 1e-9))
    ts = np.minimum(np.arange(1, n_steps + 1, dtype=np.float64) * dt, H)
    discount = (1.0 + rate) ** (-(ts * dpu / 365.0))
    p = model._p_alive(theta, xa, ta, Ta)
    comp = compress((xa, Ta))
    xu, Tu = comp.columns
    total = np.zeros(xu.size)
    previous = np.zeros(xu.size)
    for t_i, disc in zip(ts, discount, strict=True):
        current = model._alive_expected(theta, float(t_i), xu, Tu)
        total += disc * (current - previous)
        previous = current
    return np.asarray(spend_arr * p * total[comp.inverse])

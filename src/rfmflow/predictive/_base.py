"""What every fitted model has (parameters, standard errors, fit statistics, JSON form), and
the public methods of the purchase (buy-till-you-die) models, implemented once on top of a
few model-specific private methods."""

from __future__ import annotations

import json
import math
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rfmflow.core.errors import ModelError
from rfmflow.predictive._fit import MleResult, fit_advice, maximize_likelihood
from rfmflow.predictive._inputs import (
    Compressed,
    check_purchase_inputs,
    check_time,
    check_weights,
    compress,
    require_minimum,
)

FloatArray = NDArray[np.float64]

#: the ``schema`` key of a saved model; bumped when the layout changes
SCHEMA = "rfmflow.predictive.model/1"


def _json_number(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


class FittedModel(ABC):
    """Parameters and fit statistics of a maximum-likelihood model."""

    #: key in saved models and in ``PURCHASE_MODELS``
    name: ClassVar[str]
    #: how the literature writes the model's name
    label: ClassVar[str]
    #: parameter names, in the literature's order
    param_names: ClassVar[tuple[str, ...]]

    def __init__(self, penalizer: float = 0.0) -> None:
        try:
            pen = float(penalizer)
        except (TypeError, ValueError):
            raise ModelError(f"penalizer: {penalizer!r} is not a number") from None
        if not math.isfinite(pen) or pen < 0:
            raise ModelError(f"penalizer: {penalizer!r} must be a finite number >= 0 (0 = no penalty)")
        self.penalizer = pen
        self._theta: FloatArray | None = None
        self._ses: FloatArray = np.full(len(self.param_names), np.nan)
        self._ll: float = math.nan
        self._n: float = 0.0
        self._iterations = 0
        self._converged = False

    # -- fitted state ----------------------------------------------------------------
    def _require_fit(self) -> FloatArray:
        if self._theta is None:
            raise ModelError(
                f"{self.label} model is not fitted: call fit(...) first, or load a saved one with "
                "rfmflow.predictive.load_model(...)"
            )
        return self._theta

    def _set_result(self, res: MleResult, n: float) -> None:
        self._theta = res.params
        self._ses = res.standard_errors
        self._ll = res.log_likelihood
        self._n = float(n)
        self._iterations = res.iterations
        self._converged = res.converged

    @property
    def params_(self) -> dict[str, float]:
        """Fitted parameters, in the literature's order."""
        theta = self._require_fit()
        return {k: float(v) for k, v in zip(self.param_names, theta, strict=True)}

    @property
    def standard_errors_(self) -> dict[str, float]:
        """Asymptotic standard errors (inverse Hessian of the negative log-likelihood in the
        natural parameters); NaN when the Hessian is singular."""
        self._require_fit()
        return {k: float(v) for k, v in zip(self.param_names, self._ses, strict=True)}

    @property
    def log_likelihood_(self) -> float:
        self._require_fit()
        return self._ll

    @property
    def n_customers_(self) -> float:
        """Number of customers fitted (the sum of the weights)."""
        self._require_fit()
        return self._n

    @property
    def iterations_(self) -> int:
        self._require_fit()
        return self._iterations

    @property
    def converged_(self) -> bool:
        self._require_fit()
        return self._converged

    @property
    def n_parameters(self) -> int:
        return len(self.param_names)

    @property
    def bic_(self) -> float:
        """Bayesian information criterion, k ln n - 2 LL."""
        return self.n_parameters * math.log(self.n_customers_) - 2 * self.log_likelihood_

    @property
    def aic_(self) -> float:
        """Akaike information criterion, 2 k - 2 LL."""
        return 2 * self.n_parameters - 2 * self.log_likelihood_

    def __repr__(self) -> str:
        if self._theta is None:
            return f"{type(self).__name__}(penalizer={self.penalizer!r}, not fitted)"
        params = ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items())
        return f"{type(self).__name__}({params}; LL={self._ll:.2f}, n={self._n:g})"

    # -- JSON ------------------------------------------------------------------------
    def _time_unit_or_none(self) -> str | None:
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (parameters, standard errors, fit statistics)."""
        theta = self._require_fit()
        return {
            "schema": SCHEMA,
            "model": self.name,
            "label": self.label,
            "time_unit": self._time_unit_or_none(),
            "penalizer": self.penalizer,
            "params": {k: float(v) for k, v in zip(self.param_names, theta, strict=True)},
            "standard_errors": {
                k: _json_number(float(v)) for k, v in zip(self.param_names, self._ses, strict=True)
            },
            "log_likelihood": _json_number(self._ll),
            "n_customers": self._n,
            "iterations": self._iterations,
            "converged": self._converged,
        }

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The model as JSON text (never pickle); also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> Self:
        model = cls._empty(data)
        params = data.get("params")
        if not isinstance(params, dict) or set(params) != set(cls.param_names):
            raise ModelError(
                f"saved {cls.label} model: 'params' must have exactly {', '.join(cls.param_names)}"
            )
        theta = []
        for key in cls.param_names:
            value = params[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ModelError(f"saved {cls.label} model: params.{key} = {value!r} must be a number > 0")
            theta.append(float(value))
        ses_raw = data.get("standard_errors") or {}
        if not isinstance(ses_raw, dict):
            raise ModelError(f"saved {cls.label} model: 'standard_errors' must be an object")
        ses = [ses_raw.get(k) for k in cls.param_names]
        model._theta = np.asarray(theta, dtype=np.float64)
        model._ses = np.asarray([math.nan if v is None else float(v) for v in ses], dtype=np.float64)
        ll = data.get("log_likelihood")
        model._ll = math.nan if ll is None else float(ll)
        model._n = float(data.get("n_customers") or 0.0)
        model._iterations = int(data.get("iterations") or 0)
        model._converged = bool(data.get("converged", True))
        return model

    @classmethod
    @abstractmethod
    def _empty(cls, data: dict[str, Any]) -> Self:
        """An unfitted instance with the saved settings (penalizer, time unit)."""


class PurchaseModel(FittedModel):
    """A buy-till-you-die purchase model: (x, t_x, T) in, P(alive) and expected purchases out.

    Inputs, per customer, all in the model's ``time_unit``:

    * ``x``   repeat purchases (number of purchase occasions after the first; whole, >= 0);
    * ``t_x`` time of the last purchase, measured from the first (0 when x == 0);
    * ``T``   the customer's age: time from the first purchase to the end of observation (> 0).
    """

    def __init__(self, penalizer: float = 0.0, time_unit: str = "weeks") -> None:
        super().__init__(penalizer)
        if not isinstance(time_unit, str) or not time_unit.strip():
            raise ModelError(f"time_unit: {time_unit!r} must be a non-empty name such as 'days' or 'weeks'")
        self.time_unit = time_unit.strip()

    def _time_unit_or_none(self) -> str | None:
        return self.time_unit

    @classmethod
    def _empty(cls, data: dict[str, Any]) -> Self:
        unit = data.get("time_unit")
        if not isinstance(unit, str):
            raise ModelError(f"saved {cls.label} model: 'time_unit' is missing")
        return cls(penalizer=float(data.get("penalizer") or 0.0), time_unit=unit)

    def check_time_unit(self, unit: str) -> None:
        """Raise ModelError unless ``unit`` is the unit the model's parameters are in."""
        if unit != self.time_unit:
            raise ModelError(
                f"time unit mismatch: this {self.label} model's parameters are in {self.time_unit!r} "
                f"but {unit!r} was asked; give x, t_x and T (and horizons) in {self.time_unit!r}, "
                f"or refit the model with time_unit={unit!r}"
            )

    # -- model-specific parts ----------------------------------------------------------
    @abstractmethod
    def _likelihood(self, data: Compressed) -> tuple[Any, Any]:
        """(nll(theta) -> float, nll_grad(theta) -> (float, grad) or None) on compressed rows."""

    @abstractmethod
    def _starts(self, data: Compressed) -> list[FloatArray]:
        """Candidate starting values (natural parameters)."""

    @abstractmethod
    def _loglik_rows(self, theta: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
        """Per-customer log-likelihood."""

    @abstractmethod
    def _p_alive(self, theta: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
        """P(alive at T | x, t_x, T)."""

    @abstractmethod
    def _alive_expected(
        self, theta: FloatArray, t: float | FloatArray, x: FloatArray, T: FloatArray
    ) -> FloatArray:
        """E[Y(t) | x, T, alive at T]: the conditional expectation divided by P(alive)."""

    @abstractmethod
    def _expected_new(self, theta: FloatArray, t: FloatArray) -> FloatArray:
        """E[X(t)] for a customer acquired at time 0."""

    # -- public API ----------------------------------------------------------------------
    def fit(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike, *, weights: ArrayLike | None = None) -> Self:
        """Maximum-likelihood fit; returns ``self``.

        ``weights`` (optional) counts how many customers each row stands for.
        """
        xa, ta, Ta = check_purchase_inputs(x, t_x, T, fitting=True)
        w = check_weights(weights, xa.size)
        keep = w > 0
        if not keep.all():
            xa, ta, Ta, w = xa[keep], ta[keep], Ta[keep], w[keep]
        n = float(w.sum())
        n_repeat = float(w[xa > 0].sum())
        require_minimum(self.label, n, n_repeat)
        data = compress((xa, ta, Ta), w)
        nll, nll_grad = self._likelihood(data)
        advice = fit_advice(
            model=self.label,
            time_unit=self.time_unit,
            n_customers=n,
            n_repeat=n_repeat,
            class_name=type(self).__name__,
        )
        res = maximize_likelihood(
            label=self.label,
            names=self.param_names,
            nll=nll,
            nll_grad=nll_grad,
            starts=self._starts(data),
            n=n,
            penalizer=self.penalizer,
            advice=advice,
        )
        self._set_result(res, n)
        return self

    def log_likelihood(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
        """Per-customer log-likelihood at the fitted parameters."""
        theta = self._require_fit()
        return self._loglik_rows(theta, *check_purchase_inputs(x, t_x, T))

    def p_alive(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
        """Probability that each customer is still alive (active) at the end of observation."""
        theta = self._require_fit()
        return self._p_alive(theta, *check_purchase_inputs(x, t_x, T))

    def expected_purchases(self, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
        """E[Y(t) | x, t_x, T]: expected purchases in the next ``t`` time units.

        ``t`` is a scalar or an array broadcast against the customers.
        """
        theta = self._require_fit()
        tt = check_time(t)
        xa, ta, Ta = check_purchase_inputs(x, t_x, T)
        p = self._p_alive(theta, xa, ta, Ta)
        if tt.ndim == 0:
            comp = compress((xa, Ta))
            rate = self._alive_expected(theta, float(tt), comp.columns[0], comp.columns[1])
            return np.asarray(rate[comp.inverse] * p)
        try:
            tb, xb, Tb, pb = np.broadcast_arrays(tt, xa, Ta, p)
        except ValueError:
            raise ModelError(f"t: shape {tt.shape} cannot be broadcast against {xa.size} customers") from None
        comp = compress((tb.ravel(), xb.ravel(), Tb.ravel()))
        tu, xu, Tu = comp.columns
        rate = self._alive_expected(theta, tu, xu, Tu)[comp.inverse]
        return np.asarray((rate * pb.ravel()).reshape(tb.shape))

    def expected_purchases_new(self, t: ArrayLike) -> FloatArray | float:
        """E[X(t)]: expected purchases in ``t`` time units of a customer just acquired
        (repeat purchases, the first one not counted). A float for a scalar ``t``."""
        theta = self._require_fit()
        tt = check_time(t)
        out = self._expected_new(theta, tt.reshape(-1)).reshape(tt.shape)
        return float(out) if tt.ndim == 0 else out

    def expected_wait_if_alive(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
        """Posterior mean of 1/lambda (time between purchases) for a customer alive at T:
        (alpha + T) / (r + x - 1), since lambda | x, T, alive ~ Gamma(r + x, alpha + T);
        NaN where r + x <= 1 (the mean is infinite)."""
        theta = self._require_fit()
        xa, _, Ta = check_purchase_inputs(x, t_x, T)
        r, alpha = float(theta[0]), float(theta[1])
        shape = r + xa - 1.0
        ok = shape > 0
        out = np.full(xa.shape, np.nan)
        out[ok] = (alpha + Ta[ok]) / shape[ok]
        return out

"""The Gamma-Gamma model of spend per transaction.

Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). RFM and CLV: Using Iso-Value Curves for
Customer Base Analysis. Journal of Marketing Research 42(4), 415-430; the model follows
Colombo & Jiang (1999) and is spelled out in Fader & Hardie, "The Gamma-Gamma Model of
Monetary Value" (2013).

Assumptions:

1. A customer's transaction values z_1, ..., z_x vary around his mean: z_j ~ Gamma(p, nu).
2. nu varies across customers as Gamma(q, gamma), so the mean spend p / nu is inverse-gamma.
3. Spend is independent of the purchase process (check this: the correlation between x and
   m_x should be weak).

Inputs per customer: ``x`` the number of repeat transactions (> 0) and ``m_x`` the mean value
of those x transactions (> 0). One-time buyers and customers with zero or negative spend
must be left out of the fit. Parameters, in the paper's order: p, q, gamma.

Density of the observed mean (the full density, with the Jacobian of the mean)::

    f(m_x | x) = G(px+q) / (G(px) G(q)) * gamma^q m_x^(px-1) x^(px) / (gamma + x m_x)^(px+q)

Expected mean spend given the data: E[M | x, m_x] = p (gamma + x m_x) / (px + q - 1), a
weighted average of the population mean p gamma / (q - 1) and the customer's m_x.
"""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import digamma, gammaln

from rfmflow.core.errors import ModelError
from rfmflow.predictive._base import FittedModel, FloatArray
from rfmflow.predictive._fit import fit_advice, maximize_likelihood
from rfmflow.predictive._inputs import (
    as_float_array,
    check_spend_inputs,
    check_weights,
    compress,
    require_minimum_spend,
)
from rfmflow.predictive._special import wdot


class _GammaGammaLikelihood:
    def __init__(self, x: FloatArray, m: FloatArray, w: FloatArray) -> None:
        comp = compress((x, m), w)
        self.x, self.m = comp.columns
        self.w = comp.weights
        self.xs = comp.levels[0]
        self.Wx = np.bincount(comp.codes[0], weights=self.w, minlength=self.xs.size)
        self.W = float(self.w.sum())
        self.wx = self.w * self.x
        self.xm = self.x * self.m
        log_m = np.log(self.m)
        self.S_xlogm = wdot(self.wx, log_m)
        self.S_logm = wdot(self.w, log_m)
        self.S_xlogx = wdot(self.wx, np.log(self.x))

    def nll(self, theta: FloatArray) -> float:
        return self.nll_grad(theta)[0]

    def nll_grad(self, theta: FloatArray) -> tuple[float, FloatArray]:
        p, q, g = (float(v) for v in theta)
        xs, Wx, W = self.xs, self.Wx, self.W
        L = np.log(g + self.xm)
        sum_wxL = wdot(self.wx, L)
        sum_wL = wdot(self.w, L)
        px = p * xs
        ll = (
            wdot(Wx, gammaln(px + q) - gammaln(px))
            + W * (-gammaln(q) + q * math.log(g))
            + p * self.S_xlogm
            - self.S_logm
            + p * self.S_xlogx
            - p * sum_wxL
            - q * sum_wL
        )
        inv = 1.0 / (g + self.xm)
        dg_pq = digamma(px + q)
        d_p = wdot(Wx, xs * (dg_pq - digamma(px))) + self.S_xlogm + self.S_xlogx - sum_wxL
        d_q = wdot(Wx, dg_pq) - W * digamma(q) + W * math.log(g) - sum_wL
        d_g = W * q / g - p * wdot(self.wx, inv) - q * wdot(self.w, inv)
        return -float(ll), -np.array([d_p, d_q, d_g], dtype=np.float64)


def spend_loglik_rows(theta: FloatArray, x: FloatArray, m: FloatArray) -> FloatArray:
    p, q, g = (float(v) for v in theta)
    px = p * x
    return np.asarray(
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(g)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(g + x * m)
    )


class GammaGamma(FittedModel):
    """Gamma-Gamma spend model (Fader, Hardie & Lee 2005): fit on repeat buyers' (x, m_x),
    predict each customer's expected mean transaction value."""

    name = "gamma_gamma"
    label = "Gamma-Gamma"
    param_names = ("p", "q", "gamma")

    @classmethod
    def _empty(cls, data: dict[str, Any]) -> Self:
        return cls(penalizer=float(data.get("penalizer") or 0.0))

    def fit(self, x: ArrayLike, m_x: ArrayLike, *, weights: ArrayLike | None = None) -> Self:
        """Maximum-likelihood fit on repeat buyers: ``x`` > 0 repeat transactions whose mean
        value is ``m_x`` > 0. Returns ``self``."""
        xa, ma = check_spend_inputs(x, m_x)
        w = check_weights(weights, xa.size)
        keep = w > 0
        if not keep.all():
            xa, ma, w = xa[keep], ma[keep], w[keep]
        n = float(w.sum())
        require_minimum_spend(n)
        lik = _GammaGammaLikelihood(xa, ma, w)
        W = float(w.sum())
        mean = wdot(w, ma) / W
        var = wdot(w, (ma - mean) ** 2) / W
        # inverse-gamma mean spend: E = p g/(q-1); a few (p, q) with gamma matching the mean
        starts = []
        for p0, q0 in ((1.0, 2.0), (2.0, 3.0), (5.0, 3.0), (mean**2 / max(var, 1e-12), 4.0)):
            starts.append(np.array([p0, q0, mean * (q0 - 1.0) / p0]))
        res = maximize_likelihood(
            label=self.label,
            names=self.param_names,
            nll=lik.nll,
            nll_grad=lik.nll_grad,
            starts=starts,
            n=n,
            penalizer=self.penalizer,
            advice=fit_advice(
                model=self.label, time_unit="", n_customers=n, n_repeat=None, class_name="GammaGamma"
            ),
        )
        self._set_result(res, n)
        return self

    def log_likelihood(self, x: ArrayLike, m_x: ArrayLike) -> FloatArray:
        """Per-customer log density of m_x at the fitted parameters."""
        theta = self._require_fit()
        return spend_loglik_rows(theta, *check_spend_inputs(x, m_x))

    @property
    def population_mean_spend(self) -> float:
        """p gamma / (q - 1): the mean transaction value across customers (inf when q <= 1)."""
        p, q, g = (float(v) for v in self._require_fit())
        return p * g / (q - 1.0) if q > 1.0 else math.inf

    def expected_spend(self, x: ArrayLike, m_x: ArrayLike) -> FloatArray:
        """E[M | p, q, gamma, m_x, x] = p (gamma + x m_x) / (p x + q - 1) per customer; the
        population mean p gamma / (q - 1) where x == 0 (m_x is then ignored). Infinite where
        the fitted distribution has no finite mean (p x + q <= 1, or q <= 1 for x == 0)."""
        p, q, g = (float(v) for v in self._require_fit())
        xa = as_float_array("x", x)
        ma = as_float_array("m_x", m_x)
        if xa.size != ma.size:
            raise ModelError(
                f"the per-customer arrays differ in length: x has {xa.size}, m_x has {ma.size}; "
                "give one value per customer"
            )
        for field, mask, values, reason in (
            ("x", xa < 0, xa, "the number of repeat transactions cannot be negative"),
            ("x", xa != np.floor(xa), xa, "the number of repeat transactions must be a whole number"),
            ("m_x", (xa > 0) & (ma < 0), ma, "a mean transaction value cannot be negative"),
        ):
            if mask.any():
                first = int(np.flatnonzero(mask)[0])
                raise ModelError(f"{field}: row {first} is {float(values[first])!r}: {reason}")
        den = p * xa + q - 1.0
        out = np.full(xa.shape, self.population_mean_spend)
        rep = (xa > 0) & (den > 0)
        out[rep] = p * (g + xa[rep] * ma[rep]) / den[rep]
        out[(xa > 0) & (den <= 0)] = math.inf  # p x + q <= 1: the posterior mean is infinite
        return out

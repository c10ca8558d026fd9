"""The Pareto/NBD model.

Schmittlein, D. C., Morrison, D. G. & Colombo, R. (1987). Counting Your Customers: Who Are
They and What Will They Do Next? Management Science 33(1), 1-24. Likelihood and expressions
as derived in Fader, P. S. & Hardie, B. G. S. (2005), "A Note on Deriving the Pareto/NBD
Model and Related Expressions" (brucehardie.com/notes/009).

Assumptions:

1. While active, a customer's purchases follow a Poisson process with rate lambda.
2. lambda varies across customers as Gamma(shape r, rate alpha).
3. Each customer's unobserved lifetime is exponential with death rate mu (dropout can
   happen at any time, not only after a purchase).
4. mu varies across customers as Gamma(shape s, rate beta).
5. lambda and mu are independent across customers.

Inputs per customer, in the model's time unit: ``x`` repeat purchases, ``t_x`` time of the
last purchase since the first (0 when x == 0), ``T`` age. Parameters, in the paper's order:
r, alpha, s, beta.

Likelihood (Fader & Hardie 2005)::

    L = G(r+x) alpha^r beta^s / G(r) * [ 1 / ((alpha+T)^(r+x) (beta+T)^s) + s/(r+s+x) A0 ]
    A0 = F(t_x) - F(T),   F(t) = 2F1(r+s+x, s+1; r+s+x+1; (alpha-beta)/(alpha+t)) / (alpha+t)^(r+s+x)
                                 (alpha >= beta)
                          F(t) = 2F1(r+s+x, r+x; r+s+x+1; (beta-alpha)/(beta+t)) / (beta+t)^(r+s+x)
                                 (alpha < beta)

computed in log space: log F through :func:`~rfmflow.predictive._special.log_hyp2f1_c_eq_a_plus_1`,
log A0 = log F(t_x) + log(1 - exp(log F(T) - log F(t_x))). The gradient is numerical.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit, gammaln

from rfmflow.predictive._base import FloatArray, PurchaseModel
from rfmflow.predictive._fit import nbd_start
from rfmflow.predictive._inputs import Compressed, compress
from rfmflow.predictive._special import log1mexp, log_hyp2f1_c_eq_a_plus_1, one_minus_pow_over_k, wdot


def _log_f(theta: FloatArray, x: FloatArray, t: FloatArray) -> FloatArray:
    """log F(t) for each (x, t), in the form whose 2F1 argument lies in [0, 1)."""
    r, alpha, s, beta = (float(v) for v in theta)
    a = r + s + x
    if alpha >= beta:
        z = (alpha - beta) / (alpha + t)
        return np.asarray(log_hyp2f1_c_eq_a_plus_1(a, s + 1.0, z) - a * np.log(alpha + t))
    z = (beta - alpha) / (beta + t)
    return np.asarray(log_hyp2f1_c_eq_a_plus_1(a, r + x, z) - a * np.log(beta + t))


def _log_terms(
    theta: FloatArray, x: FloatArray, T: FloatArray, lf_tx: FloatArray, lf_T: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """(l1, l2): the logs of the two terms in the bracket of the likelihood."""
    r, alpha, s, beta = (float(v) for v in theta)
    l1 = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    l2 = np.log(s) - np.log(r + s + x) + lf_tx + log1mexp(lf_T - lf_tx)
    return np.asarray(l1), np.asarray(l2)


def _rows_terms(
    theta: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """(l1, l2) per customer, each 2F1 evaluated once per distinct (x, t)."""
    c_tx = compress((x, t_x))
    c_T = compress((x, T))
    lf_tx = _log_f(theta, *c_tx.columns)[c_tx.inverse]
    lf_T = _log_f(theta, *c_T.columns)[c_T.inverse]
    return _log_terms(theta, x, T, lf_tx, lf_T)


class _ParetoLikelihood:
    def __init__(self, data: Compressed) -> None:
        x, t_x, T = data.columns
        self.x, self.T, self.w = x, T, data.weights
        self.W = float(self.w.sum())
        self.xs = data.levels[0]
        self.Wx = np.bincount(data.codes[0], weights=self.w, minlength=self.xs.size)
        self.c_tx = compress((x, t_x))
        self.c_T = compress((x, T))

    def nll(self, theta: FloatArray) -> float:
        r, alpha, s, beta = (float(v) for v in theta)
        lf_tx = _log_f(theta, *self.c_tx.columns)[self.c_tx.inverse]
        lf_T = _log_f(theta, *self.c_T.columns)[self.c_T.inverse]
        l1, l2 = _log_terms(theta, self.x, self.T, lf_tx, lf_T)
        ll = (
            wdot(self.Wx, gammaln(r + self.xs))
            + self.W * (-gammaln(r) + r * np.log(alpha) + s * np.log(beta))
            + wdot(self.w, np.logaddexp(l1, l2))
        )
        return -float(ll)


class ParetoNBD(PurchaseModel):
    """Pareto/NBD (Schmittlein, Morrison & Colombo 1987): Poisson purchases at a
    Gamma-distributed rate, an exponential lifetime with a Gamma-distributed death rate."""

    name = "pareto_nbd"
    label = "Pareto/NBD"
    param_names = ("r", "alpha", "s", "beta")

    def _likelihood(self, data: Compressed) -> tuple[Any, Any]:
        return _ParetoLikelihood(data).nll, None

    def _starts(self, data: Compressed) -> list[FloatArray]:
        x, _, T = data.columns
        r0, alpha0 = nbd_start(x, T, data.weights)
        mean_T = wdot(data.weights, T) / float(data.weights.sum())
        return [
            np.array([r, alpha, s, beta])
            for (s, beta) in ((1.0, mean_T), (1.0, 4 * mean_T), (0.5, mean_T / 2), (2.0, 2 * mean_T))
            for (r, alpha) in ((r0, alpha0), (1.0, alpha0 / r0))
        ]

    def _loglik_rows(self, theta: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
        r, alpha, s, beta = (float(v) for v in theta)
        l1, l2 = _rows_terms(theta, x, t_x, T)
        base = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        return np.asarray(base + np.logaddexp(l1, l2))

    def _p_alive(self, theta: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
        # P(alive) = 1 / (1 + s/(r+s+x) (alpha+T)^(r+x) (beta+T)^s A0)
        comp = compress((x, t_x, T))
        l1, l2 = _rows_terms(theta, *comp.columns)
        return np.asarray(expit(l1 - l2)[comp.inverse])

    def _alive_expected(
        self, theta: FloatArray, t: float | FloatArray, x: FloatArray, T: FloatArray
    ) -> FloatArray:
        # E[Y(t) | alive] = (r+x)(beta+T) / ((alpha+T)(s-1)) [1 - ((beta+T)/(beta+T+t))^(s-1)]
        r, alpha, s, beta = (float(v) for v in theta)
        return np.asarray(
            (r + x) * (beta + T) / (alpha + T) * one_minus_pow_over_k(s - 1.0, np.log1p(t / (beta + T)))
        )

    def _expected_new(self, theta: FloatArray, t: FloatArray) -> FloatArray:
        # E[X(t)] = r beta / (alpha (s-1)) [1 - (beta/(beta+t))^(s-1)] (log form at s = 1)
        r, alpha, s, beta = (float(v) for v in theta)
        return np.asarray(r * beta / alpha * one_minus_pow_over_k(s - 1.0, np.log1p(t / beta)))

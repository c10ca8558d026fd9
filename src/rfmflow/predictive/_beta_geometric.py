"""Shared mathematics of the beta-geometric dropout models (BG/NBD and MBG/NBD).

Both models: while alive, a customer buys as a Poisson process with rate lambda ~
Gamma(r, alpha); after each purchase he drops out with probability p ~ Beta(a, b). BG/NBD
allows dropout after every *repeat* purchase; MBG/NBD also right after the first one. In
every formula MBG/NBD is BG/NBD with ``b`` replaced by ``b + 1`` where the posterior of p
appears (``shift = 1``), and its dropout term applies to x == 0 as well.

Log-likelihood of one customer (log space, ``bb = b + shift``)::

    ln L = lnG(r+x) - lnG(r) + r ln(alpha) + lnB(a, bb+x) - lnB(a, b) - (r+x) ln(alpha+T)
           + [dropout term applies] * softplus(c)
    c    = ln(a) - ln(bb+x-1) + (r+x) (ln(alpha+T) - ln(alpha+t_x))

and P(alive) = 1 / (1 + exp(c)) where the dropout term applies, else 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betaln, digamma, gammaln

from rfmflow.predictive._base import PurchaseModel
from rfmflow.predictive._fit import nbd_start
from rfmflow.predictive._inputs import Compressed
from rfmflow.predictive._special import log_hyp2f1, wdot

FloatArray = NDArray[np.float64]


def _softplus_and_sigmoid(c: FloatArray) -> tuple[FloatArray, FloatArray]:
    e = np.exp(-np.abs(c))
    soft = np.maximum(c, 0.0) + np.log1p(e)
    inv = 1.0 / (1.0 + e)
    sig = np.where(c >= 0, inv, e * inv)
    return soft, sig


class BetaGeometricLikelihood:
    """Negative log-likelihood and analytic gradient on compressed (x, t_x, T) rows.

    Everything that depends on x alone is computed once per distinct x, everything that
    depends on T (or t_x) alone once per distinct value; only the dropout term is per row.
    """

    def __init__(self, data: Compressed, shift: int) -> None:
        x_u = data.columns[0]
        xs, ts, Ts = data.levels
        ix, it, iT = data.codes
        w = data.weights
        self.shift = shift
        self.W = float(w.sum())
        self.xs, self.ts, self.Ts = xs, ts, Ts
        self.Wx = np.bincount(ix, weights=w, minlength=xs.size)
        self.WT = np.bincount(iT, weights=w, minlength=Ts.size)
        self.WXT = np.bincount(iT, weights=w * x_u, minlength=Ts.size)
        rows = x_u > 0 if shift == 0 else np.ones(x_u.size, dtype=bool)
        self.level_ok = xs > 0 if shift == 0 else np.ones(xs.size, dtype=bool)
        self.m_ix, self.m_it, self.m_iT = ix[rows], it[rows], iT[rows]
        self.m_w, self.m_x = w[rows], x_u[rows]

    def _den(self, bb: float) -> FloatArray:
        return np.where(self.level_ok, bb + self.xs - 1.0, 1.0)

    def nll(self, theta: FloatArray) -> float:
        return self.nll_grad(theta)[0]

    def nll_grad(self, theta: FloatArray) -> tuple[float, FloatArray]:
        """-LL and its gradient. With D = sigmoid(c) on the rows the dropout term applies to
        (psi = digamma, summed with the row weights)::

            dLL/dr     = psi(r+x) - psi(r) + ln(alpha) - ln(alpha+T) + D (ln(alpha+T) - ln(alpha+t_x))
            dLL/dalpha = r/alpha - (r+x)/(alpha+T) + D (r+x) (1/(alpha+T) - 1/(alpha+t_x))
            dLL/da     = psi(a+b) - psi(a+bb+x) + D/a
            dLL/db     = psi(bb+x) - psi(a+bb+x) - psi(b) + psi(a+b) - D/(bb+x-1)
        """
        r, alpha, a, b = (float(v) for v in theta)
        bb = b + self.shift
        xs, W, Wx = self.xs, self.W, self.Wx
        LT = np.log(alpha + self.Ts)
        Lt = np.log(alpha + self.ts)
        den = self._den(bb)
        ll = float(
            wdot(Wx, gammaln(r + xs) + betaln(a, bb + xs))
            + W * (-gammaln(r) + r * np.log(alpha) - betaln(a, b))
            - wdot(r * self.WT + self.WXT, LT)
        )
        c = np.log(a) - np.log(den)[self.m_ix] + (r + self.m_x) * (LT[self.m_iT] - Lt[self.m_it])
        soft, sig = _softplus_and_sigmoid(c)
        ll += wdot(self.m_w, soft)
        wD = self.m_w * sig
        wDx = wD * (r + self.m_x)
        nT, nt = self.Ts.size, self.ts.size
        inv_T = 1.0 / (alpha + self.Ts)
        inv_t = 1.0 / (alpha + self.ts)
        d_r = (
            wdot(Wx, digamma(r + xs))
            - W * digamma(r)
            + W * np.log(alpha)
            - wdot(self.WT, LT)
            + wdot(np.bincount(self.m_iT, weights=wD, minlength=nT), LT)
            - wdot(np.bincount(self.m_it, weights=wD, minlength=nt), Lt)
        )
        d_alpha = (
            W * r / alpha
            - wdot(r * self.WT + self.WXT, inv_T)
            + wdot(np.bincount(self.m_iT, weights=wDx, minlength=nT), inv_T)
            - wdot(np.bincount(self.m_it, weights=wDx, minlength=nt), inv_t)
        )
        dg_ab = digamma(a + bb + xs)
        d_a = -wdot(Wx, dg_ab) + W * digamma(a + b) + float(wD.sum()) / a
        d_b = (
            wdot(Wx, digamma(bb + xs) - dg_ab)
            - W * (digamma(b) - digamma(a + b))
            - wdot(np.bincount(self.m_ix, weights=wD, minlength=xs.size), 1.0 / den)
        )
        grad = np.array([d_r, d_alpha, d_a, d_b], dtype=np.float64)
        return -ll, -grad


def _dropout_c(theta: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray, shift: int) -> FloatArray:
    """c per customer (NaN-free; meaningless where the dropout term does not apply)."""
    r, alpha, a, b = (float(v) for v in theta)
    bb = b + shift
    applies = x > 0 if shift == 0 else np.ones(x.shape, dtype=bool)
    den = np.where(applies, bb + x - 1.0, 1.0)
    return np.asarray(np.log(a) - np.log(den) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x)))


def loglik_rows(theta: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray, shift: int) -> FloatArray:
    r, alpha, a, b = (float(v) for v in theta)
    bb = b + shift
    ll = (
        gammaln(r + x)
        - gammaln(r)
        + r * np.log(alpha)
        + betaln(a, bb + x)
        - betaln(a, b)
        - (r + x) * np.log(alpha + T)
    )
    soft, _ = _softplus_and_sigmoid(_dropout_c(theta, x, t_x, T, shift))
    if shift == 0:
        soft = np.where(x > 0, soft, 0.0)
    return np.asarray(ll + soft)


def p_alive(theta: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray, shift: int) -> FloatArray:
    _, sig = _softplus_and_sigmoid(-_dropout_c(theta, x, t_x, T, shift))
    if shift == 0:
        sig = np.where(x > 0, sig, 1.0)
    return np.asarray(sig)


# --------------------------------------------------------------------------------------
# Expected purchases
# --------------------------------------------------------------------------------------
_A_NEAR_ONE = 1e-5


def _q_core(r: FloatArray, alpha: FloatArray, a: float, b: FloatArray, t: FloatArray) -> FloatArray:
    """(a+b-1)/(a-1) * [1 - (alpha/(alpha+t))^r 2F1(r, b; a+b-1; t/(alpha+t))], a != 1, a+b-1 > 0."""
    C = a + b - 1.0
    z = t / (alpha + t)
    log_p = r * np.log1p(-z) + log_hyp2f1(r, b, C, z)
    return np.asarray(C / (a - 1.0) * -np.expm1(log_p))


def _q_shifted(r: FloatArray, alpha: FloatArray, a: float, b: FloatArray, t: FloatArray) -> FloatArray:
    """_q_core with the recurrence Q(a, b) = b/(a+b) Q(a, b+1) + a/(a+b) Q(a+1, b) where
    a + b - 1 is too small for the series (c of the 2F1 must be > 0)."""
    out = np.empty(np.broadcast_shapes(r.shape, alpha.shape, b.shape, t.shape))
    r, alpha, b, t = np.broadcast_arrays(r, alpha, b, t)
    direct = a + b - 1.0 > 1e-3
    if direct.all():
        return _q_core(r, alpha, a, b, t)
    out[direct] = _q_core(r[direct], alpha[direct], a, b[direct], t[direct])
    rest = ~direct
    rr, al, bb, tt = r[rest], alpha[rest], b[rest], t[rest]
    out[rest] = bb / (a + bb) * _q_core(rr, al, a, bb + 1.0, tt) + a / (a + bb) * _q_core(
        rr, al, a + 1.0, bb, tt
    )
    return out


def expected_q(r: ArrayLike, alpha: ArrayLike, a: float, b: ArrayLike, t: ArrayLike) -> FloatArray:
    """Q = E[(1 - exp(-lambda p t)) / p] for lambda ~ Gamma(r, alpha), p ~ Beta(a, b).

    This is the expected number of purchases in (0, t] of a customer alive at 0 who drops
    out after each purchase with probability p: (a+b-1)/(a-1) [1 - (alpha/(alpha+t))^r
    2F1(r, b; a+b-1; t/(alpha+t))] (Fader, Hardie & Lee 2005). The removable
    singularity at a = 1 is bridged linearly from a = 1 -/+ 1e-5.
    """
    rr, al, bb, tt = (np.asarray(v, dtype=np.float64) for v in (r, alpha, b, t))
    if abs(a - 1.0) < _A_NEAR_ONE:
        lo = _q_shifted(rr, al, 1.0 - _A_NEAR_ONE, bb, tt)
        hi = _q_shifted(rr, al, 1.0 + _A_NEAR_ONE, bb, tt)
        return np.asarray(lo + (a - (1.0 - _A_NEAR_ONE)) / (2 * _A_NEAR_ONE) * (hi - lo))
    return _q_shifted(rr, al, a, bb, tt)


class BetaGeometricModel(PurchaseModel):
    """What BG/NBD and MBG/NBD share; ``_shift`` is 0 for BG/NBD and 1 for MBG/NBD."""

    _shift = 0

    def _likelihood(self, data: Compressed) -> tuple[Any, Any]:
        lik = BetaGeometricLikelihood(data, shift=self._shift)
        return lik.nll, lik.nll_grad

    def _starts(self, data: Compressed) -> list[FloatArray]:
        x, _, T = data.columns
        r0, alpha0 = nbd_start(x, T, data.weights)
        return [
            np.array([r, alpha, a, b])
            for (a, b) in ((1.0, 1.0), (1.0, 3.0), (0.5, 2.0), (2.0, 10.0))
            for (r, alpha) in ((r0, alpha0), (1.0, alpha0 / r0))
        ]

    def _loglik_rows(self, theta: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
        return loglik_rows(theta, x, t_x, T, self._shift)

    def _p_alive(self, theta: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
        return p_alive(theta, x, t_x, T, self._shift)

    def _alive_expected(
        self, theta: FloatArray, t: float | FloatArray, x: FloatArray, T: FloatArray
    ) -> FloatArray:
        # posterior given alive at T: lambda ~ Gamma(r+x, alpha+T), p ~ Beta(a, b+x)
        r, alpha, a, b = (float(v) for v in theta)
        return expected_q(r + x, alpha + T, a, b + self._shift + x, t)

    def _expected_new(self, theta: FloatArray, t: FloatArray) -> FloatArray:
        # E[X(t)] = (a+b-1)/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b; a+b-1; t/(alpha+t))]
        r, alpha, a, b = (float(v) for v in theta)
        return expected_q(r, alpha, a, b, t)

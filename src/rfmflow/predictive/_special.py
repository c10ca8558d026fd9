"""Numerically stable special-function helpers for the buy-till-you-die models.

Everything here works on numpy arrays, in log space where values can overflow:

``log_hyp2f1(a, b, c, z)``
    log of the Gauss hypergeometric function 2F1(a, b; c; z) for a, b, c > 0 and
    0 <= z < 1, where every term of the series is positive. The series is summed in blocks
    with a running log-scale, and stopped with a rigorous bound on the remaining tail.
    ``scipy.special.hyp2f1`` is not used: in scipy 1.17 it silently returns NaN for large
    parameters with z close to 1 (for example 2F1(1, 221; 241; 0.999)), which is exactly the
    region of heavy buyers in the Pareto/NBD likelihood.

``log_hyp2f1_c_eq_a_plus_1(a, b, z)``
    log 2F1(a, b; a + 1; z), the function in the Pareto/NBD likelihood, through Euler's
    transformation 2F1(a, b; a+1; z) = (1-z)^(1-b) 2F1(1, a+1-b; a+1; z): the second series
    has positive terms bounded by z^n, whatever the size of b.

    The number of terms grows like 40 / (1 - z) (and like x z / (1 - z) when a and b are
    large); past ``MAX_SERIES_TERMS`` (reached only for 1 - z below ~1e-5, i.e. parameter
    ratios no real fit produces) the tail bound is added and the value is approximate.

``log1mexp(d)``
    log(1 - exp(d)) for d <= 0 (Mächler's two-branch rule), -inf at d == 0.

``one_minus_pow_over_k(k, log_base)``
    (1 - exp(-k * L)) / k with its limit L at k = 0, for the s = 1 case of Pareto/NBD.

``wdot(a, b)``
    sum(a * b) without BLAS (see its docstring).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

_TINY = float(np.finfo(np.float64).tiny)
_LOG_TINY = float(np.log(_TINY))
#: relative size of the neglected tail of a series
SERIES_RTOL = 1e-17
#: hard cap on the number of series terms per value (reached only for 1 - z below ~1e-5)
MAX_SERIES_TERMS = 4_000_000


def _tail_ratio_bound(n: float, a: FloatArray, b: FloatArray, c: FloatArray, z: FloatArray) -> FloatArray:
    """An upper bound of every term ratio t(j+1)/t(j), j >= n, of the 2F1(a, b; c; z) series.

    t(j+1)/t(j) = z (a+j)(b+j) / ((c+j)(j+1)); each of (a+j)/(c+j), (b+j)/(j+1) (or the other
    pairing) is monotone in j and tends to 1, so its supremum over j >= n is max(value at n, 1).
    """
    one = 1.0
    p1 = np.maximum((a + n) / (c + n), one) * np.maximum((b + n) / (n + one), one)
    p2 = np.maximum((a + n) / (n + one), one) * np.maximum((b + n) / (c + n), one)
    return np.asarray(z * np.minimum(p1, p2), dtype=np.float64)


def log_hyp2f1(
    a: ArrayLike,
    b: ArrayLike,
    c: ArrayLike,
    z: ArrayLike,
    *,
    rtol: float = SERIES_RTOL,
    max_terms: int = MAX_SERIES_TERMS,
) -> FloatArray:
    """log 2F1(a, b; c; z) for a, b, c > 0 and 0 <= z < 1 (all series terms positive).

    The terms are accumulated block by block (a cumulative product of the term ratios inside
    a block, a log-scale carried between blocks, so neither huge nor tiny terms overflow);
    a value is final when the bound ``t(n) M / (1 - M)`` of its remaining tail, with ``M``
    from :func:`_tail_ratio_bound`, is below ``rtol`` times the partial sum. Only values still
    running stay in the working arrays, and the block length doubles as they thin out.
    """
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (a, b, c, z)))
    shape = arrays[0].shape
    aa, bb, cc, zz = (np.ascontiguousarray(v).ravel() for v in arrays)
    out = np.zeros(aa.size, dtype=np.float64)
    idx = np.flatnonzero(zz > 0.0)
    if idx.size == 0:
        return out.reshape(shape)
    A, B, C, Z = aa[idx], bb[idx], cc[idx], zz[idx]
    log_term = np.zeros(idx.size)  # log of the last term included in the sum
    log_sum = np.zeros(idx.size)  # log of the partial sum (term 0 = 1)
    n = 0
    block = 16
    log_rtol = np.log(rtol)
    while idx.size:
        k = n + np.arange(block, dtype=np.float64)
        ratio = (A[:, None] + k) * (B[:, None] + k) / ((C[:, None] + k) * (k + 1.0)) * Z[:, None]
        with np.errstate(over="ignore"):  # overflowing rows are redone in log space below
            cum = np.cumprod(ratio, axis=1)
            block_sum = cum.sum(axis=1)
        last = cum[:, -1]
        bad = ~np.isfinite(block_sum)
        if bad.any():  # huge ratios: redo these rows in log space
            lcum = np.cumsum(np.log(ratio[bad]), axis=1)
            top = lcum.max(axis=1)
            log_block = top + np.log(np.exp(lcum - top[:, None]).sum(axis=1))
            log_last = lcum[:, -1]
        log_bs = np.log(np.maximum(block_sum, _TINY))
        log_ls = np.log(np.maximum(last, _TINY))
        if bad.any():
            log_bs[bad] = log_block
            log_ls[bad] = log_last
        log_sum = np.logaddexp(log_sum, log_term + log_bs)
        log_term = np.maximum(log_term + log_ls, 2 * _LOG_TINY)
        n += block
        m = _tail_ratio_bound(float(n), A, B, C, Z)
        log_tail = np.full(idx.size, np.inf)
        below = m < 1.0
        log_tail[below] = log_term[below] + np.log(m[below]) - np.log1p(-m[below])
        done = log_tail <= log_sum + log_rtol
        if n >= max_terms:  # add the bound of the tail and stop (documented limitation)
            finite = np.isfinite(log_tail)
            log_sum[finite] = np.logaddexp(log_sum[finite], log_tail[finite])
            done[:] = True
        if done.any():
            out[idx[done]] = log_sum[done]
            keep = ~done
            idx, A, B, C, Z = idx[keep], A[keep], B[keep], C[keep], Z[keep]
            log_term, log_sum = log_term[keep], log_sum[keep]
        if idx.size and block < 4096 and idx.size * block < 2_000_000:
            block *= 2
    return out.reshape(shape)


def log_hyp2f1_c_eq_a_plus_1(a: ArrayLike, b: ArrayLike, z: ArrayLike) -> FloatArray:
    """log 2F1(a, b; a + 1; z) for a > 0, 0 < b < a + 1 and 0 <= z < 1.

    Euler's transformation gives (1 - z)^(1 - b) 2F1(1, a + 1 - b; a + 1; z), whose terms are
    positive and fall at least as fast as z^n (their ratio is z (n + a + 1 - b)/(n + a + 1)).
    """
    aa = np.asarray(a, dtype=np.float64)
    bb = np.asarray(b, dtype=np.float64)
    zz = np.asarray(z, dtype=np.float64)
    return np.asarray((1.0 - bb) * np.log1p(-zz) + log_hyp2f1(1.0, aa + 1.0 - bb, aa + 1.0, zz))


def wdot(a: ArrayLike, b: ArrayLike) -> float:
    """sum(a * b) without BLAS.

    ``a @ b`` goes to OpenBLAS, whose worker threads busy-wait after each call; on a loaded
    machine that made a 20,000-customer fit 30x slower. numpy's own pairwise sum is as
    accurate and never starts threads.
    """
    return float(np.multiply(a, b).sum())


def log1mexp(d: ArrayLike) -> FloatArray:
    """log(1 - exp(d)) for d <= 0; -inf where d >= 0 (no warning)."""
    dd = np.asarray(d, dtype=np.float64)
    out = np.full(dd.shape, -np.inf)
    near = (dd < 0.0) & (dd > -np.log(2.0))
    far = dd <= -np.log(2.0)
    out[near] = np.log(-np.expm1(dd[near]))
    out[far] = np.log1p(-np.exp(dd[far]))
    return out


def one_minus_pow_over_k(k: float, log_base: ArrayLike) -> FloatArray:
    """(1 - exp(-k L)) / k for L = ``log_base`` >= 0, continuous at k = 0 (where it is L)."""
    L = np.asarray(log_base, dtype=np.float64)
    if abs(k) < 1e-9:
        return np.asarray(L * (1.0 - 0.5 * k * L))
    return np.asarray(-np.expm1(-k * L) / k)

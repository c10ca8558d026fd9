"""Validation of model inputs at the boundary, and compression to unique rows.

Every check raises :class:`~rfmflow.core.errors.ModelError` with a message that names the
field, the first bad row (0-based index into the arrays given), how many rows are bad, and
the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rfmflow.core.errors import ModelError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

#: a purchase model needs at least this many customers ...
MIN_CUSTOMERS = 20
#: ... of whom at least this many repeat (x > 0)
MIN_REPEAT_BUYERS = 5
#: Gamma-Gamma needs at least this many repeat buyers (3 parameters)
MIN_SPEND_CUSTOMERS = 10


def _bad_rows(field: str, mask: NDArray[np.bool_], values: FloatArray, reason: str) -> None:
    if mask.any():
        rows = np.flatnonzero(mask)
        first = int(rows[0])
        more = f" ({rows.size} rows in all)" if rows.size > 1 else ""
        raise ModelError(f"{field}: row {first} is {float(values[first])!r}: {reason}{more}")


def as_float_array(field: str, values: ArrayLike) -> FloatArray:
    """``values`` as a 1-D float64 array with only finite numbers."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ModelError(f"{field}: cannot be read as numbers ({err})") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ModelError(f"{field}: expected a 1-D array of per-customer values, got shape {arr.shape}")
    finite = np.isfinite(arr)
    if not finite.all():
        first = int(np.flatnonzero(~finite)[0])
        n_bad = int((~finite).sum())
        kind = "NaN" if np.isnan(arr[first]) else "infinite"
        more = f" ({n_bad} rows in all)" if n_bad > 1 else ""
        raise ModelError(f"{field}: row {first} is {kind}; every value must be a finite number{more}")
    return arr


def _same_length(arrays: dict[str, FloatArray]) -> int:
    lengths = {name: arr.size for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ModelError(f"the per-customer arrays differ in length: {listed}; give one value per customer")
    return next(iter(lengths.values()))


def check_weights(weights: ArrayLike | None, n: int) -> FloatArray:
    """Per-row counts (default 1), finite and >= 0."""
    if weights is None:
        return np.ones(n)
    w = as_float_array("weights", weights)
    if w.size != n:
        raise ModelError(f"weights: has {w.size} values for {n} rows; give one count per row")
    _bad_rows("weights", w < 0, w, "a count of customers cannot be negative")
    return w


def check_purchase_inputs(
    x: ArrayLike, t_x: ArrayLike, T: ArrayLike, *, fitting: bool = False
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Validate (x, t_x, T): same length, finite, x whole and >= 0, 0 <= t_x <= T,
    t_x == 0 when x == 0, and T > 0 to fit (a customer first seen at the end of observation
    carries no information) or T >= 0 to predict."""
    xa = as_float_array("x", x)
    ta = as_float_array("t_x", t_x)
    Ta = as_float_array("T", T)
    _same_length({"x": xa, "t_x": ta, "T": Ta})
    _bad_rows("x", xa < 0, xa, "the number of repeat purchases cannot be negative")
    _bad_rows("x", xa != np.floor(xa), xa, "the number of repeat purchases must be a whole number")
    if fitting:
        _bad_rows("T", Ta <= 0, Ta, "the customer's age T (time since the first purchase) must be > 0")
    else:
        _bad_rows("T", Ta < 0, Ta, "the customer's age T (time since the first purchase) cannot be negative")
    _bad_rows("t_x", ta < 0, ta, "the time of the last purchase since the first cannot be negative")
    _bad_rows(
        "t_x",
        ta > Ta,
        ta,
        "the last purchase (t_x) cannot come after the end of observation (T); check that both "
        "are measured from the first purchase in the same time unit",
    )
    _bad_rows(
        "t_x",
        (xa == 0) & (ta != 0),
        ta,
        "a customer with no repeat purchase (x == 0) must have t_x == 0",
    )
    return xa, ta, Ta


def check_spend_inputs(x: ArrayLike, m_x: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Validate (x, m_x) for Gamma-Gamma: x whole and > 0, m_x > 0."""
    xa = as_float_array("x", x)
    ma = as_float_array("m_x", m_x)
    _same_length({"x": xa, "m_x": ma})
    _bad_rows("x", xa != np.floor(xa), xa, "the number of repeat purchases must be a whole number")
    for field, mask, values, what in (
        ("x", xa <= 0, xa, "one-time buyers (x == 0)"),
        ("m_x", ma <= 0, ma, "zero or negative spend (m_x <= 0)"),
    ):
        if mask.any():
            rows = np.flatnonzero(mask)
            count = "1 row has" if rows.size == 1 else f"{rows.size} rows have"
            raise ModelError(
                f"{field}: {count} {what}, the first is row {int(rows[0])} "
                f"({float(values[rows[0]])!r}); Gamma-Gamma models the mean value of repeat transactions, "
                "so customers with zero or negative spend and one-time buyers must be left out"
            )
    return xa, ma


def check_time(t: ArrayLike, field: str = "t") -> FloatArray:
    """A horizon (scalar or array), finite and >= 0; returned as an array (0-d for a scalar)."""
    try:
        arr = np.asarray(t, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ModelError(f"{field}: cannot be read as a number ({err})") from None
    flat = arr.reshape(-1)
    bad = ~np.isfinite(flat) | (flat < 0)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ModelError(f"{field}: value {float(flat[first])!r} (index {first}) must be a finite time >= 0")
    return arr


def require_minimum(model: str, n_customers: float, n_repeat: float) -> None:
    """Enough customers to identify a 4-parameter purchase model."""
    if n_customers < MIN_CUSTOMERS or n_repeat < MIN_REPEAT_BUYERS:
        raise ModelError(
            f"{model}: too few customers to fit ({n_customers:g} customers, {n_repeat:g} with a repeat "
            f"purchase); at least {MIN_CUSTOMERS} customers with at least {MIN_REPEAT_BUYERS} repeat "
            "buyers are needed: a handful of customers cannot identify 4 parameters"
        )


def require_minimum_spend(n_customers: float) -> None:
    if n_customers < MIN_SPEND_CUSTOMERS:
        raise ModelError(
            f"Gamma-Gamma: too few repeat buyers to fit ({n_customers:g}); at least {MIN_SPEND_CUSTOMERS} "
            "customers with x > 0 and m_x > 0 are needed: a handful of customers cannot identify "
            "3 parameters"
        )


# --------------------------------------------------------------------------------------
# Compression
# --------------------------------------------------------------------------------------
#: largest table of counts the dense (sort-free) paths allocate
_DENSE_LIMIT = 1 << 23
#: time scales tried for a sort-free factorisation: whole days, and days expressed in weeks
_SCALES = (1.0, 7.0)


def _factorize_scaled(values: FloatArray) -> tuple[FloatArray, IntArray] | None:
    """Sort-free factorisation when ``values * scale`` are whole numbers in a modest range
    for a scale in ``_SCALES`` (x always; T and t_x in days, or in weeks at day resolution);
    checked exactly (every value must equal k / scale bit for bit), else None."""
    for scale in _SCALES:
        with np.errstate(over="ignore", invalid="ignore"):  # huge values just fail the checks
            k = np.rint(values * scale)
            lo, hi = float(k.min()), float(k.max())
            span = hi - lo
        if not (math.isfinite(span) and span <= min(_DENSE_LIMIT, 4 * values.size + 65_536)):
            continue
        if not np.array_equal(k / scale, values):
            continue
        idx = (k - lo).astype(np.intp)
        present = np.zeros(int(span) + 1, dtype=bool)
        present[idx] = True
        code_of = np.cumsum(present) - 1
        levels = np.asarray((np.flatnonzero(present) + lo) / scale, dtype=np.float64)
        return levels, code_of[idx].astype(np.intp)
    return None


def factorize(values: FloatArray) -> tuple[FloatArray, IntArray]:
    """(sorted unique values, code of each value), like np.unique(return_inverse=True), faster:
    O(n) for whole numbers (and multiples of 1/7), a sort and a binary search otherwise."""
    if values.size == 0:
        return values.copy(), np.zeros(0, dtype=np.intp)
    fast = _factorize_scaled(values)
    if fast is not None:
        return fast
    ordered = np.sort(values)
    keep = np.empty(ordered.size, dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    uniq = ordered[keep]
    codes = np.searchsorted(uniq, values).astype(np.intp, copy=False)
    return uniq, codes


@dataclass(frozen=True)
class Compressed:
    """Unique rows of several columns, with summed weights.

    ``columns[j]`` holds the unique rows' values of column j; ``levels[j]`` the sorted unique
    values of column j and ``codes[j]`` each unique row's index into ``levels[j]``;
    ``weights`` the summed weights; ``inverse`` maps each original row to its unique row.
    """

    columns: tuple[FloatArray, ...]
    levels: tuple[FloatArray, ...]
    codes: tuple[IntArray, ...]
    weights: FloatArray
    inverse: IntArray


def compress(columns: tuple[FloatArray, ...], weights: FloatArray | None = None) -> Compressed:
    """Group identical rows of ``columns``; ``weights`` (default 1 per row) are summed.

    Unique rows come out in lexicographic order of the columns' values.
    """
    levels: list[FloatArray] = []
    codes: list[IntArray] = []
    for col in columns:
        lv, cd = factorize(col)
        levels.append(lv)
        codes.append(cd)
    sizes = [max(lv.size, 1) for lv in levels]
    cells = float(np.prod(np.asarray(sizes, dtype=np.float64)))
    n = columns[0].size
    if cells < 2.0**62:
        key = np.zeros(n, dtype=np.int64)
        for cd, size in zip(codes, sizes, strict=True):
            key = key * size + cd
        if cells <= min(_DENSE_LIMIT, 4 * n + 65_536):  # a table of all combinations: no sort
            present = np.zeros(int(cells), dtype=bool)
            present[key] = True
            unique_keys = np.flatnonzero(present)
            inverse = (np.cumsum(present) - 1)[key].astype(np.intp)
        else:
            unique_keys, inverse = np.unique(key, return_inverse=True)
        # the unique rows' codes, decoded from their keys (last column varies fastest)
        unique_codes: list[IntArray] = []
        rest = unique_keys.astype(np.int64)
        for size in reversed(sizes):
            unique_codes.append((rest % size).astype(np.intp))
            rest = rest // size
        unique_codes.reverse()
    else:  # pragma: no cover - astronomically many distinct values
        stacked = np.stack(codes, axis=1)
        rows, inverse = np.unique(stacked, axis=0, return_inverse=True)
        unique_codes = [rows[:, j].astype(np.intp) for j in range(rows.shape[1])]
    inverse = inverse.reshape(-1).astype(np.intp, copy=False)
    n_unique = unique_codes[0].size
    w: FloatArray = np.bincount(inverse, weights=weights, minlength=n_unique).astype(np.float64, copy=False)
    return Compressed(
        columns=tuple(lv[cd] for lv, cd in zip(levels, unique_codes, strict=True)),
        levels=tuple(levels),
        codes=tuple(unique_codes),
        weights=w,
        inverse=inverse,
    )

"""Compression to distinct rows agrees with numpy's np.unique on every path."""

from __future__ import annotations

import numpy as np
import pytest

from rfmflow.predictive._inputs import compress, factorize

RNG = np.random.default_rng(17)


@pytest.mark.parametrize(
    "values",
    [
        RNG.integers(0, 200, 10_000).astype(float),  # whole numbers: the sort-free path
        RNG.integers(0, 730, 10_000) / 7.0,  # days in weeks: sort-free via the 1/7 scale
        RNG.random(10_000),  # arbitrary floats: sort and binary search
        np.array([1e308, -1e308, 3.0]),  # huge values must not overflow (or warn)
        np.array([0.5, 1 / 7, 2 / 7, 1 / 7, 0.0, -0.0]),
        np.array([1e-3, 2e-3, 1e-3]),
        np.arange(10.0) * 1e9,  # whole but spread too wide for a table
        np.array([4.0]),
    ],
    ids=["whole", "sevenths", "floats", "huge", "mixed", "tiny", "wide", "single"],
)
def test_factorize_equals_np_unique(values: np.ndarray) -> None:
    levels, codes = factorize(values)
    uniq, inverse = np.unique(values, return_inverse=True)
    np.testing.assert_array_equal(levels, uniq)
    np.testing.assert_array_equal(codes, inverse.ravel())
    np.testing.assert_array_equal(levels[codes], values)


@pytest.mark.parametrize("dense", [True, False], ids=["table", "sorted"])
def test_compress_equals_np_unique_rows(dense: bool) -> None:
    n = 5000
    x = RNG.integers(0, 4 if dense else 300, n).astype(float)
    t_x = RNG.integers(0, 3 if dense else 700, n) / 7
    T = RNG.random(n).round(2) if dense else RNG.random(n)
    w = RNG.integers(1, 4, n).astype(float)
    comp = compress((x, t_x, T), w)
    rows, inverse = np.unique(np.stack([x, t_x, T], axis=1), axis=0, return_inverse=True)
    np.testing.assert_array_equal(np.stack(comp.columns, axis=1), rows)
    np.testing.assert_array_equal(comp.inverse, inverse.ravel())
    np.testing.assert_allclose(comp.weights, np.bincount(inverse.ravel(), weights=w))
    for col, levels, codes in zip(comp.columns, comp.levels, comp.codes, strict=True):
        np.testing.assert_array_equal(levels[codes], col)

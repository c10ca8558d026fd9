"""Mean silhouette coefficients of several labelings of the same points, sharing one distance pass.

Choosing k scores one labeling per candidate k on the same subsample. scikit-learn's
``silhouette_score`` recomputes all pairwise distances for each labeling (about 1 s per k for
10,000 points here); this computes each block of distances once and reduces it for every
labeling with one matrix product against the labelings' one-hot matrices. The definition is
scikit-learn's (Rousseeuw 1987): for a point, ``a`` is the mean distance to the other members
of its cluster, ``b`` the smallest mean distance to the members of another cluster,
``s = (b - a) / max(a, b)``, and ``s = 0`` for a point alone in its cluster.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

_BLOCK_ENTRIES = 4_000_000  # distances held at once (32 MB of float64)


def _distances(block: FloatArray, points: FloatArray) -> FloatArray:
    """Euclidean distances, block rows x all points, by exact coordinate differences.

    With the handful of features clustered here this is as fast as the Gram-matrix trick and
    has no cancellation error (a point's distance to itself is exactly 0).
    """
    out = np.zeros((block.shape[0], points.shape[0]), dtype=np.float64)
    diff = np.empty_like(out)
    for j in range(points.shape[1]):
        np.subtract(block[:, j, None], points[None, :, j], out=diff)
        np.multiply(diff, diff, out=diff)
        out += diff
    np.sqrt(out, out=out)
    return out


def silhouette_scores(points: FloatArray, labelings: Sequence[npt.NDArray[np.integer]]) -> list[float]:
    """The mean silhouette of each labeling of ``points`` (n x d); NaN where undefined.

    A labeling's silhouette is undefined (NaN) unless it has between 2 and n - 1 distinct labels,
    as in scikit-learn. Labels may be any integers; they need not be contiguous.
    """
    n = points.shape[0]
    if n == 0:
        return [float("nan")] * len(labelings)
    codes: list[IntArray] = []
    counts: list[FloatArray] = []
    offsets: list[int] = []
    width = 0
    for labels in labelings:
        if labels.shape != (n,):
            raise ValueError(f"a labeling has shape {labels.shape}, expected ({n},)")
        uniq, inverse = np.unique(labels, return_inverse=True)
        codes.append(inverse.astype(np.intp, copy=False))
        counts.append(np.bincount(inverse, minlength=len(uniq)).astype(np.float64))
        offsets.append(width)
        width += len(uniq)
    onehot = np.zeros((n, width), dtype=np.float64)
    rows = np.arange(n)
    for code, offset in zip(codes, offsets, strict=True):
        onehot[rows, offset + code] = 1.0

    totals = np.zeros(len(labelings), dtype=np.float64)
    step = max(1, _BLOCK_ENTRIES // n)
    for start in range(0, n, step):
        stop = min(n, start + step)
        sums = _distances(points[start:stop], points) @ onehot  # block x width: distance sums per cluster
        local = np.arange(stop - start)
        for i, (code, count, offset) in enumerate(zip(codes, counts, offsets, strict=True)):
            k = len(count)
            if k < 2:
                continue
            block = sums[:, offset : offset + k]
            own = code[start:stop]
            own_count = count[own]
            a = block[local, own] / np.maximum(own_count - 1.0, 1.0)
            means = block / count
            means[local, own] = np.inf
            b = means.min(axis=1)
            denom = np.maximum(a, b)
            with np.errstate(invalid="ignore", divide="ignore"):
                s = np.where(denom > 0, (b - a) / np.where(denom > 0, denom, 1.0), 0.0)
            s[own_count <= 1] = 0.0
            totals[i] += float(s.sum())
    return [
        float(total / n) if 2 <= len(count) <= n - 1 else float("nan")
        for total, count in zip(totals, counts, strict=True)
    ]

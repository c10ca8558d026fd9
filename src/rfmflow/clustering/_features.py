"""Validation of the per-customer feature arrays and their transform into clustering space.

Transform, per feature (overridable with ``transforms={"name": "log" | "none"}``):

- probabilities (``p_alive`` and any feature named ``p_*``, ``prob_*``, ``*_prob`` or
  ``*_probability``) must lie in [0, 1] and are used as they are;
- every other feature (recency, frequency, monetary, CLV, expected purchases, ...) is
  compressed with the signed logarithm ``sign(x) * log1p(|x|)``, which is ``log1p(x)`` for the
  non-negative ones and keeps net refunds (negative monetary) on the other side of zero;
- then each feature is standardised to mean 0 and standard deviation 1 (population standard
  deviation, as scikit-learn's ``StandardScaler``) over the customers that are clustered.

Without the logarithm the long tail (a few customers with hundreds of orders) would make
every cluster boundary about the tail; without standardising, monetary (hundreds) would
outweigh the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from rfmflow.core.errors import InputError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

RECENCY = "recency_days"
FREQUENCY = "frequency"
MONETARY = "monetary"
REQUIRED_FEATURES = (RECENCY, FREQUENCY, MONETARY)
NON_NEGATIVE_FEATURES = (RECENCY, FREQUENCY, "expected_purchases", "tenure_days")

Transform = Literal["log1p", "signed log1p", "none"]


def is_probability_name(name: str) -> bool:
    """Whether a feature's name says it is a probability (kept on its 0..1 scale)."""
    lowered = name.lower()
    return (
        lowered.startswith(("p_", "prob_"))
        or lowered.endswith(("_prob", "_probability"))
        or lowered == "probability"
    )


@dataclass(frozen=True)
class PreparedFeatures:
    """The validated input and the standardised matrix of the clustered customers."""

    names: list[str]  # every input feature, in canonical order (R, F, M, then the rest as given)
    values: dict[str, FloatArray]  # name -> float64 array over all customers (NaN kept)
    complete: BoolArray  # customers with every feature present: the clustered ones
    used: list[str]  # the features clustered on (constant ones dropped)
    dropped: list[str]  # constant features, not clustered on
    transforms: dict[str, Transform]  # per input feature
    means: FloatArray  # per used feature: mean of the transformed values
    scales: FloatArray  # per used feature: standard deviation of the transformed values
    matrix: FloatArray  # n_clustered x len(used), standardised
    notes: list[str]


def signed_log1p(x: FloatArray) -> FloatArray:
    """``sign(x) * log1p(|x|)``: log1p for x >= 0, mirrored for negative x."""
    return np.asarray(np.sign(x) * np.log1p(np.abs(x)), dtype=np.float64)


def signed_expm1(y: FloatArray) -> FloatArray:
    """The inverse of :func:`signed_log1p`."""
    return np.asarray(np.sign(y) * np.expm1(np.abs(y)), dtype=np.float64)


def _as_float_array(name: str, raw: object) -> FloatArray:
    try:
        array = np.asarray(raw)
    except Exception as err:  # an object numpy cannot turn into an array
        raise InputError(f"feature {name!r}: cannot be read as an array ({err})") from err
    if array.ndim != 1:
        raise InputError(f"feature {name!r}: expected a one-dimensional array, got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        if array.dtype == object:  # Decimal or int objects; None (an Arrow null) is missing
            missing = np.fromiter((v is None for v in array), dtype=bool, count=len(array))
            array = np.where(missing, np.nan, array)
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError) as err:
            raise InputError(
                f"feature {name!r}: values must be numbers, got dtype {array.dtype} ({err})"
            ) from err
    return np.asarray(array, dtype=np.float64)


def _first_index(mask: BoolArray) -> int:
    return int(np.flatnonzero(mask)[0])


def read_features(
    features: Mapping[str, object],
    transforms: Mapping[str, str] | None,
) -> tuple[list[str], dict[str, FloatArray], dict[str, Transform]]:
    """Validate names, shapes, types and value ranges; decide each feature's transform."""
    if not isinstance(features, Mapping) or len(features) == 0:
        raise InputError(
            "features: no features given; pass a mapping with at least "
            + ", ".join(repr(f) for f in REQUIRED_FEATURES)
        )
    for name in features:
        if not isinstance(name, str) or not name:
            raise InputError(f"features: every key must be a non-empty feature name, got {name!r}")
    missing = [f for f in REQUIRED_FEATURES if f not in features]
    if missing:
        raise InputError(
            f"features: required feature {missing[0]!r} is missing (clustering needs "
            + ", ".join(repr(f) for f in REQUIRED_FEATURES)
            + f"; got {', '.join(repr(f) for f in features)})"
        )
    names = [*REQUIRED_FEATURES, *(f for f in features if f not in REQUIRED_FEATURES)]
    values = {name: _as_float_array(name, features[name]) for name in names}
    n = len(values[RECENCY])
    for name in names:
        if len(values[name]) != n:
            raise InputError(
                f"feature {name!r}: has {len(values[name]):,} values but {RECENCY!r} has {n:,}; "
                "every feature needs one value per customer, in the same order"
            )
    if n == 0:
        raise InputError("features: no customers (the arrays are empty)")

    overrides = dict(transforms or {})
    for name, how in overrides.items():
        if name not in values:
            raise InputError(f"transforms: {name!r} is not one of the features ({', '.join(names)})")
        if how not in ("log", "none"):
            raise InputError(f"transforms[{name!r}]: must be 'log' or 'none', got {how!r}")

    chosen: dict[str, Transform] = {}
    for name in names:
        x = values[name]
        bad = np.isinf(x)
        if bad.any():
            raise InputError(
                f"feature {name!r}: {int(bad.sum()):,} infinite value(s), the first at index "
                f"{_first_index(bad)}; only NaN is accepted as a missing value"
            )
        present = x[~np.isnan(x)]
        if name in NON_NEGATIVE_FEATURES and present.size and present.min() < 0:
            at = _first_index(x < 0)
            raise InputError(
                f"feature {name!r}: must not be negative, got {x[at]:g} at index {at} "
                f"({int((x < 0).sum()):,} negative value(s))"
            )
        probability = is_probability_name(name)
        how = overrides.get(name, "none" if probability else "log")
        if probability and how == "none" and present.size and (present.min() < 0 or present.max() > 1):
            outside = (x < 0) | (x > 1)
            at = _first_index(outside)
            raise InputError(
                f"feature {name!r}: a probability must lie in [0, 1], got {x[at]:g} at index {at} "
                f"({int(outside.sum()):,} value(s) outside)"
            )
        if how == "none":
            chosen[name] = "none"
        else:
            chosen[name] = "signed log1p" if present.size and present.min() < 0 else "log1p"
    return names, values, chosen


def prepare(
    features: Mapping[str, object],
    transforms: Mapping[str, str] | None = None,
) -> PreparedFeatures:
    """Validate, transform and standardise; see the module docstring."""
    names, values, chosen = read_features(features, transforms)
    n = len(values[RECENCY])
    complete = np.ones(n, dtype=bool)
    notes: list[str] = []
    for name in names:
        nan = np.isnan(values[name])
        if nan.all():
            raise InputError(
                f"feature {name!r}: missing (NaN) for every customer; leave it out of the features "
                "or fill it in"
            )
        complete &= ~nan
    n_missing = n - int(complete.sum())
    if n_missing:
        per_feature = ", ".join(
            f"{name} {int(np.isnan(values[name]).sum()):,}" for name in names if np.isnan(values[name]).any()
        )
        notes.append(
            f"{n_missing:,} of {n:,} customers have a missing (NaN) feature ({per_feature}); "
            "they are not clustered and are labelled -1 'Unclustered'"
        )

    used: list[str] = []
    dropped: list[str] = []
    columns: list[FloatArray] = []
    means: list[float] = []
    scales: list[float] = []
    for name in names:
        x = values[name][complete]
        t = x if chosen[name] == "none" else signed_log1p(x)
        if x.size == 0:
            continue
        mean = float(t.mean())
        scale = float(t.std())
        if x.min() == x.max() or scale <= 1e-12 * max(1.0, abs(mean)):
            dropped.append(name)
            notes.append(
                f"feature {name!r} is constant ({x[0]:g}) over the clustered customers and "
                "carries no information: it is not clustered on (its profile columns remain)"
            )
            continue
        used.append(name)
        columns.append((t - mean) / scale)
        means.append(mean)
        scales.append(scale)
    if complete.any() and not used:
        raise InputError(
            "features: every feature is constant over the clustered customers ("
            + ", ".join(names)
            + "); there is nothing to cluster on"
        )
    matrix = np.column_stack(columns) if columns else np.empty((0, 0), dtype=np.float64)
    return PreparedFeatures(
        names=names,
        values=values,
        complete=complete,
        used=used,
        dropped=dropped,
        transforms=chosen,
        means=np.asarray(means, dtype=np.float64),
        scales=np.asarray(scales, dtype=np.float64),
        matrix=np.ascontiguousarray(matrix, dtype=np.float64),
        notes=notes,
    )


def to_original_units(prepared: PreparedFeatures, standardised: FloatArray) -> FloatArray:
    """Map points of the standardised space (rows x used features) back to original units."""
    transformed = standardised * prepared.scales + prepared.means
    out = np.empty_like(transformed)
    for j, name in enumerate(prepared.used):
        column = transformed[:, j]
        out[:, j] = column if prepared.transforms[name] == "none" else signed_expm1(column)
    return out

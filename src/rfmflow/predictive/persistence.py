"""Saving and loading fitted models as JSON (never pickle).

A saved model is a JSON object::

    {"schema": "rfmflow.predictive.model/1", "model": "bgnbd", "label": "BG/NBD",
     "time_unit": "weeks", "penalizer": 0.0,
     "params": {"r": 0.2426, "alpha": 4.4136, "a": 0.7929, "b": 2.4259},
     "standard_errors": {"r": 0.0126, ...}, "log_likelihood": -9582.43,
     "n_customers": 2357, "iterations": 41, "converged": true}

``time_unit`` is null for Gamma-Gamma (spend has no time unit). Standard errors that could
not be computed are null.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rfmflow.core.errors import ModelError
from rfmflow.predictive._base import SCHEMA, FittedModel, PurchaseModel
from rfmflow.predictive.bgnbd import BGNBD
from rfmflow.predictive.gamma_gamma import GammaGamma
from rfmflow.predictive.mbgnbd import MBGNBD
from rfmflow.predictive.pareto_nbd import ParetoNBD

#: the purchase (buy-till-you-die) models by name
PURCHASE_MODELS: Mapping[str, type[PurchaseModel]] = {
    BGNBD.name: BGNBD,
    ParetoNBD.name: ParetoNBD,
    MBGNBD.name: MBGNBD,
}
_ALL_MODELS: Mapping[str, type[FittedModel]] = {**PURCHASE_MODELS, GammaGamma.name: GammaGamma}


def _read(source: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, str) and source.lstrip().startswith("{"):
        text, where = source, "JSON text"
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ModelError(f"cannot read the saved model {str(path)!r}: {err.strerror or err}") from None
        where = str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ModelError(
            f"{where}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from None
    if not isinstance(data, dict):
        raise ModelError(f"{where}: a saved model must be a JSON object")
    return data


def load_model(
    source: Mapping[str, Any] | str | os.PathLike[str], *, time_unit: str | None = None
) -> FittedModel:
    """A model saved by ``to_json``/``to_dict``: from a dict, JSON text or a file path.

    With ``time_unit``, a purchase model whose parameters are in another unit is refused
    (ModelError naming both units).
    """
    data = _read(source)
    schema = data.get("schema")
    if schema != SCHEMA:
        raise ModelError(
            f"saved model: schema {schema!r} is not {SCHEMA!r}; this file was not written by rfmflow"
        )
    name = data.get("model")
    cls = _ALL_MODELS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ModelError(f"saved model: unknown model {name!r} (known: {', '.join(_ALL_MODELS)})")
    model = cls._from_dict(data)
    if time_unit is not None and isinstance(model, PurchaseModel):
        model.check_time_unit(time_unit)
    return model

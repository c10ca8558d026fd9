"""JSON round trips: a loaded model predicts exactly what the fitted one did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rfmflow.predictive import (
    BGNBD,
    MBGNBD,
    PURCHASE_MODELS,
    GammaGamma,
    ParetoNBD,
    PurchaseModel,
    customer_lifetime_value,
    load_model,
)


@pytest.fixture(scope="module")
def sample(bgnbd_data: Any) -> Any:
    x, tx, T = (v[:3000] for v in bgnbd_data)
    return np.floor(x), np.floor(tx * 7) / 7, np.ceil(T * 7) / 7


@pytest.mark.parametrize("cls", [BGNBD, ParetoNBD, MBGNBD])
def test_purchase_model_round_trip(cls: type[PurchaseModel], sample: Any, tmp_path: Path) -> None:
    x, tx, T = sample
    model = cls(penalizer=0.0, time_unit="weeks").fit(x, tx, T)
    path = tmp_path / "model.json"
    text = model.to_json(path)
    saved = json.loads(path.read_text())
    assert saved == json.loads(text)
    assert saved["schema"] == "rfmflow.predictive.model/1"
    assert saved["model"] == cls.name and saved["time_unit"] == "weeks" and saved["penalizer"] == 0.0
    assert list(saved["params"]) == list(cls.param_names)
    assert saved["n_customers"] == 3000 and saved["converged"] is True
    for source in (path, str(path), text, saved):
        loaded = load_model(source)
        assert type(loaded) is cls
        assert isinstance(loaded, PurchaseModel)
        assert loaded.params_ == model.params_
        assert loaded.standard_errors_ == model.standard_errors_
        assert loaded.log_likelihood_ == model.log_likelihood_
        assert loaded.n_customers_ == model.n_customers_
        assert loaded.time_unit == "weeks" and loaded.iterations_ == model.iterations_
        assert np.array_equal(loaded.p_alive(x, tx, T), model.p_alive(x, tx, T))
        assert np.array_equal(
            loaded.expected_purchases(13.0, x, tx, T), model.expected_purchases(13.0, x, tx, T)
        )
        assert loaded.expected_purchases_new(52.0) == model.expected_purchases_new(52.0)
        assert np.array_equal(
            customer_lifetime_value(loaded, 20.0, x, tx, T, horizon=52.0, annual_discount_rate=0.1),
            customer_lifetime_value(model, 20.0, x, tx, T, horizon=52.0, annual_discount_rate=0.1),
        )
        assert loaded.bic_ == model.bic_


def test_gamma_gamma_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    x = rng.integers(1, 10, 500).astype(float)
    m = rng.gamma(4.0, 10.0, 500)
    gg = GammaGamma(penalizer=0.0).fit(x, m)
    data = json.loads(gg.to_json())
    assert data["model"] == "gamma_gamma" and data["time_unit"] is None
    loaded = load_model(gg.to_json(tmp_path / "gg.json"))
    assert isinstance(loaded, GammaGamma)
    assert np.array_equal(loaded.expected_spend(x, m), gg.expected_spend(x, m))
    assert loaded.population_mean_spend == gg.population_mean_spend
    # a spend model has no time unit to check
    assert isinstance(load_model(data, time_unit="days"), GammaGamma)


def test_nan_standard_errors_are_saved_as_null() -> None:
    model = load_model(
        {
            "schema": "rfmflow.predictive.model/1",
            "model": "bgnbd",
            "time_unit": "days",
            "params": {"r": 0.2, "alpha": 30.0, "a": 0.8, "b": 2.4},
        }
    )
    data = json.loads(model.to_json())  # strict JSON: no NaN tokens
    assert data["standard_errors"] == {"r": None, "alpha": None, "a": None, "b": None}
    assert data["log_likelihood"] is None


def test_purchase_models_registry() -> None:
    assert {"bgnbd": BGNBD, "pareto_nbd": ParetoNBD, "mbgnbd": MBGNBD} == PURCHASE_MODELS
    assert [cls.param_names for cls in PURCHASE_MODELS.values()] == [
        ("r", "alpha", "a", "b"),
        ("r", "alpha", "s", "beta"),
        ("r", "alpha", "a", "b"),
    ]
    assert GammaGamma.param_names == ("p", "q", "gamma")


def test_repr() -> None:
    assert repr(BGNBD()) == "BGNBD(penalizer=0.0, not fitted)"
    model = load_model(
        {
            "schema": "rfmflow.predictive.model/1",
            "model": "bgnbd",
            "time_unit": "weeks",
            "params": {"r": 0.2426, "alpha": 4.4136, "a": 0.7929, "b": 2.4259},
            "log_likelihood": -9582.43,
            "n_customers": 2357,
        }
    )
    assert repr(model) == "BGNBD(r=0.2426, alpha=4.414, a=0.7929, b=2.426; LL=-9582.43, n=2357)"

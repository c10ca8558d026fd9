"""Bad input is refused at the boundary with a message naming the field, the row and the reason."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rfmflow.core.errors import ModelError, RfmflowError
from rfmflow.predictive import (
    BGNBD,
    MBGNBD,
    GammaGamma,
    ParetoNBD,
    PurchaseModel,
    customer_lifetime_value,
    days_per_time_unit,
    load_model,
)

X = [0.0, 2.0, 1.0, 0.0, 5.0]
TX = [0.0, 10.0, 3.5, 0.0, 20.0]
T = [30.0, 30.0, 12.0, 8.0, 20.0]


def _replace(values: list[float], row: int, value: float) -> list[float]:
    out = list(values)
    out[row] = value
    return out


@pytest.mark.parametrize(
    ("x", "tx", "T", "expected"),
    [
        (X, TX[:4], T, r"differ in length: x has 5, t_x has 4, T has 5"),
        (X, TX, _replace(T, 1, float("nan")), r"T: row 1 is NaN; every value must be a finite number"),
        (_replace(X, 3, float("inf")), TX, T, r"x: row 3 is infinite"),
        (
            _replace(X, 2, -1.0),
            TX,
            T,
            r"x: row 2 is -1\.0: the number of repeat purchases cannot be negative",
        ),
        (
            _replace(X, 1, 1.5),
            TX,
            T,
            r"x: row 1 is 1\.5: the number of repeat purchases must be a whole number",
        ),
        (
            X,
            _replace(TX, 2, -0.5),
            T,
            r"t_x: row 2 is -0\.5: the time of the last purchase .* cannot be negative",
        ),
        (
            X,
            _replace(TX, 4, 21.0),
            T,
            r"t_x: row 4 is 21\.0: the last purchase \(t_x\) cannot come after .*\(T\)",
        ),
        (X, TX, _replace(T, 0, -1.0), r"T: row 0 is -1\.0: the customer's age T "),
        (
            X,
            _replace(TX, 3, 2.0),
            T,
            r"t_x: row 3 is 2\.0: a customer with no repeat purchase \(x == 0\) must have t_x == 0",
        ),
        (["a", "b"], [0, 0], [1, 1], r"x: cannot be read as numbers"),
        ([[1.0, 2.0]], [[0.0, 1.0]], [[3.0, 3.0]], r"x: expected a 1-D array"),
    ],
)
@pytest.mark.parametrize("method", ["fit", "p_alive", "log_likelihood", "expected_purchases"])
def test_bad_purchase_inputs(x: Any, tx: Any, T: Any, expected: str, method: str) -> None:
    model = BGNBD()
    if method != "fit":
        model = _fitted_bgnbd()
    call = {
        "fit": lambda: model.fit(x, tx, T),
        "p_alive": lambda: model.p_alive(x, tx, T),
        "log_likelihood": lambda: model.log_likelihood(x, tx, T),
        "expected_purchases": lambda: model.expected_purchases(4.0, x, tx, T),
    }[method]
    with pytest.raises(ModelError, match=expected):
        call()


def test_several_bad_rows_are_counted() -> None:
    with pytest.raises(ModelError, match=r"x: row 1 is -1\.0: .* \(3 rows in all\)"):
        BGNBD().fit([0, -1, -2, 1, -1], [0, 0, 0, 1, 0], [5, 5, 5, 5, 5])


def _fitted_bgnbd() -> BGNBD:
    model = load_model(
        {
            "schema": "rfmflow.predictive.model/1",
            "model": "bgnbd",
            "time_unit": "weeks",
            "params": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},
        }
    )
    assert isinstance(model, BGNBD)
    return model


def test_errors_are_rfmflow_errors() -> None:
    assert issubclass(ModelError, RfmflowError)


@pytest.mark.parametrize("cls", [BGNBD, ParetoNBD, MBGNBD])
def test_too_few_customers(cls: type[PurchaseModel]) -> None:
    with pytest.raises(
        ModelError, match=r"too few customers to fit \(5 customers, 3 with a repeat purchase\)"
    ):
        cls().fit(X, TX, T)
    # enough customers, too few repeat buyers
    x = [0.0] * 40 + [1.0] * 4
    tx = [0.0] * 40 + [2.0] * 4
    with pytest.raises(
        ModelError, match=r"at least 20 customers with at least 5 repeat buyers.*cannot identify 4"
    ):
        cls().fit(x, tx, [10.0] * 44)


def test_gamma_gamma_refuses_one_time_buyers_and_non_positive_spend() -> None:
    x = [1.0, 2.0, 3.0, 1.0]
    with pytest.raises(
        ModelError,
        match=r"m_x: 2 rows have zero or negative spend \(m_x <= 0\), the first is row 1 \(0\.0\);"
        r".*zero or negative spend and one-time buyers must be left out",
    ):
        GammaGamma().fit(x, [10.0, 0.0, -3.0, 5.0])
    with pytest.raises(ModelError, match=r"x: 1 row has one-time buyers \(x == 0\), the first is row 2"):
        GammaGamma().fit([1.0, 2.0, 0.0], [10.0, 20.0, 30.0])
    with pytest.raises(ModelError, match=r"too few repeat buyers to fit \(4\); at least 10.*3 parameters"):
        GammaGamma().fit(x, [10.0, 11.0, 12.0, 13.0])
    with pytest.raises(ModelError, match=r"m_x: row 1 is NaN"):
        GammaGamma().fit(x, [10.0, float("nan"), 12.0, 13.0])


def test_predicting_before_fitting() -> None:
    for model in (BGNBD(), ParetoNBD(), MBGNBD()):
        with pytest.raises(ModelError, match=r"model is not fitted: call fit\(\.\.\.\) first"):
            model.p_alive(X, TX, T)
        with pytest.raises(ModelError, match="not fitted"):
            _ = model.params_
        with pytest.raises(ModelError, match="not fitted"):
            model.to_json()
    with pytest.raises(ModelError, match="Gamma-Gamma model is not fitted"):
        GammaGamma().expected_spend([1.0], [10.0])


def test_bad_settings() -> None:
    with pytest.raises(ModelError, match=r"penalizer: -1 must be a finite number >= 0"):
        BGNBD(penalizer=-1)
    with pytest.raises(ModelError, match=r"time_unit: '' must be a non-empty name"):
        BGNBD(time_unit="")


def test_bad_weights() -> None:
    with pytest.raises(ModelError, match=r"weights: row 2 is -1\.0: a count of customers cannot be negative"):
        BGNBD().fit(X, TX, T, weights=[1, 1, -1, 1, 1])
    with pytest.raises(ModelError, match=r"weights: has 2 values for 5 rows"):
        BGNBD().fit(X, TX, T, weights=[1, 1])


def test_bad_horizons() -> None:
    model = _fitted_bgnbd()
    with pytest.raises(ModelError, match=r"t: value -1\.0 \(index 0\) must be a finite time >= 0"):
        model.expected_purchases(-1.0, X, TX, T)
    with pytest.raises(ModelError, match=r"t: value nan \(index 1\)"):
        model.expected_purchases_new([1.0, float("nan")])
    with pytest.raises(ModelError, match=r"t: shape \(3,\) cannot be broadcast against 5 customers"):
        model.expected_purchases([1.0, 2.0, 3.0], X, TX, T)


def test_time_unit_mismatch() -> None:
    model = _fitted_bgnbd()
    model.check_time_unit("weeks")
    with pytest.raises(
        ModelError, match=r"time unit mismatch: .* parameters are in 'weeks' but 'days' was asked"
    ):
        model.check_time_unit("days")
    with pytest.raises(ModelError, match=r"time unit mismatch"):
        load_model(model.to_dict(), time_unit="days")
    assert isinstance(load_model(model.to_dict(), time_unit="weeks"), BGNBD)


def test_clv_inputs() -> None:
    model = _fitted_bgnbd()
    with pytest.raises(ModelError, match=r"horizon: 0 must be a finite number > 0"):
        customer_lifetime_value(model, 10.0, X, TX, T, horizon=0)
    with pytest.raises(ModelError, match=r"annual_discount_rate: -0\.1 must be a finite number >= 0"):
        customer_lifetime_value(model, 10.0, X, TX, T, horizon=52, annual_discount_rate=-0.1)
    with pytest.raises(ModelError, match=r"spend: row 1 is -5\.0: expected spend cannot be negative"):
        customer_lifetime_value(model, [1.0, -5.0, 1.0, 1.0, 1.0], X, TX, T, horizon=52)
    with pytest.raises(ModelError, match=r"spend: has 2 values for 5 customers"):
        customer_lifetime_value(model, [1.0, 2.0], X, TX, T, horizon=52)
    with pytest.raises(ModelError, match=r"model: expected a fitted purchase model"):
        customer_lifetime_value(GammaGamma(), 1.0, X, TX, T, horizon=52)  # type: ignore[arg-type]
    months = BGNBD(time_unit="months")
    months._theta = model._theta
    with pytest.raises(ModelError, match=r"time unit 'months' has no known length in days.*days_per_unit="):
        customer_lifetime_value(months, 10.0, X, TX, T, horizon=12)
    out = customer_lifetime_value(months, 10.0, X, TX, T, horizon=12, days_per_unit=30.4, step=1.0)
    assert out.shape == (5,) and (out > 0).all()
    assert days_per_time_unit("weeks") == 7.0


def test_gamma_gamma_prediction_inputs() -> None:
    gg = load_model(
        {
            "schema": "rfmflow.predictive.model/1",
            "model": "gamma_gamma",
            "params": {"p": 6.25, "q": 3.74, "gamma": 15.44},
        }
    )
    assert isinstance(gg, GammaGamma)
    with pytest.raises(ModelError, match=r"m_x: row 1 is -2\.0: a mean transaction value cannot be negative"):
        gg.expected_spend([1.0, 3.0], [10.0, -2.0])
    with pytest.raises(ModelError, match=r"x: row 0 is -1\.0"):
        gg.expected_spend([-1.0], [10.0])
    with pytest.raises(ModelError, match=r"differ in length: x has 2, m_x has 1"):
        gg.expected_spend([1.0, 2.0], [10.0])
    # one-time buyers get the population mean whatever their m_x
    out = gg.expected_spend([0.0, 0.0], [0.0, 55.0])
    assert out[0] == out[1] == pytest.approx(6.25 * 15.44 / 2.74)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"schema": "other/1", "model": "bgnbd"}, r"schema 'other/1' is not 'rfmflow\.predictive\.model/1'"),
        (
            {"schema": "rfmflow.predictive.model/1", "model": "nope"},
            r"unknown model 'nope' \(known: bgnbd, pareto_nbd",
        ),
        (
            {
                "schema": "rfmflow.predictive.model/1",
                "model": "bgnbd",
                "time_unit": "weeks",
                "params": {"r": 1},
            },
            r"'params' must have exactly r, alpha, a, b",
        ),
        (
            {
                "schema": "rfmflow.predictive.model/1",
                "model": "bgnbd",
                "time_unit": "weeks",
                "params": {"r": 1, "alpha": -2, "a": 1, "b": 1},
            },
            r"params\.alpha = -2 must be a number > 0",
        ),
        ({"schema": "rfmflow.predictive.model/1", "model": "bgnbd", "params": {}}, r"'time_unit' is missing"),
        ("{not json", r"JSON text: not valid JSON \(line 1, column 2"),
        ("[1, 2]", r"cannot read the saved model '\[1, 2\]'"),
        ("/nonexistent/model.json", r"cannot read the saved model '/nonexistent/model\.json'"),
    ],
)
def test_load_model_refuses_bad_input(source: Any, expected: str) -> None:
    with pytest.raises(ModelError, match=expected):
        load_model(source)


def test_x_nonzero_t_x_zero_is_allowed() -> None:
    """Repeat purchases on the first purchase day (t_x == 0 with x > 0) are legal input."""
    model = _fitted_bgnbd()
    out = model.p_alive([2.0], [0.0], [10.0])
    assert 0 < out[0] < 1
    assert np.isfinite(model.expected_purchases(5.0, [2.0], [0.0], [10.0])).all()


def test_an_age_of_zero_cannot_be_fitted_but_is_predicted() -> None:
    """T == 0 (first purchase at the end of observation) carries no information for the fit,
    but such a customer still gets finite predictions (continuous with T -> 0)."""
    with pytest.raises(ModelError, match=r"T: row 0 is 0\.0: the customer's age T .* must be > 0"):
        BGNBD().fit(_replace(X, 0, 0.0), TX, _replace(T, 0, 0.0))
    model = _fitted_bgnbd()
    x, tx = np.array([0.0, 0.0]), np.array([0.0, 0.0])
    at_zero = model.p_alive(x, tx, np.array([0.0, 1e-9]))
    assert at_zero[0] == pytest.approx(at_zero[1]) and np.isfinite(at_zero).all()
    expected = model.expected_purchases(4.0, x, tx, np.array([0.0, 1e-9]))
    assert expected[0] == pytest.approx(expected[1], rel=1e-6) and expected[0] > 0

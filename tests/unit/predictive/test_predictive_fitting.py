"""Fitting: analytic gradients, the compressed likelihood, recovery of known parameters,
the penalizer, weights, and the non-convergence path."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rfmflow.core.errors import ModelFitError
from rfmflow.predictive import BGNBD, MBGNBD, GammaGamma, ParetoNBD, PurchaseModel
from rfmflow.predictive._beta_geometric import BetaGeometricLikelihood
from rfmflow.predictive._fit import maximize_likelihood
from rfmflow.predictive._inputs import compress
from rfmflow.predictive.gamma_gamma import _GammaGammaLikelihood
from rfmflow.predictive.pareto_nbd import _ParetoLikelihood


def _central_difference(f: Any, theta: np.ndarray, rel: float = 1e-6) -> np.ndarray:
    g = np.empty_like(theta)
    for i in range(theta.size):
        h = rel * theta[i]
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        g[i] = (f(up) - f(down)) / (2 * h)
    return g


@pytest.mark.parametrize("shift", [0, 1], ids=["bgnbd", "mbgnbd"])
@pytest.mark.parametrize(
    "theta", [[0.5, 6.0, 0.8, 2.5], [2.0, 1.5, 3.0, 0.7], [0.1, 40.0, 0.2, 9.0]], ids=["near", "far", "odd"]
)
def test_beta_geometric_gradient_matches_finite_differences(
    bgnbd_data: Any, shift: int, theta: list[float]
) -> None:
    lik = BetaGeometricLikelihood(compress(bgnbd_data), shift=shift)
    th = np.array(theta)
    _, grad = lik.nll_grad(th)
    np.testing.assert_allclose(grad, _central_difference(lik.nll, th), rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("theta", [[6.25, 3.74, 15.44], [1.0, 8.0, 2.0], [20.0, 1.2, 300.0]])
def test_gamma_gamma_gradient_matches_finite_differences(simulators: Any, theta: list[float]) -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(1, 30, 3000).astype(float)
    m = simulators["spend"](x, 6.25, 3.74, 15.44, seed=4)
    lik = _GammaGammaLikelihood(x, m, np.ones(x.size))
    th = np.array(theta)
    _, grad = lik.nll_grad(th)
    np.testing.assert_allclose(grad, _central_difference(lik.nll, th), rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("cls", [BGNBD, MBGNBD, ParetoNBD])
def test_compressed_likelihood_equals_the_sum_over_customers(
    bgnbd_data: Any, cls: type[PurchaseModel]
) -> None:
    x, tx, T = (v[:3000] for v in bgnbd_data)
    # duplicate rows on purpose: compression must weight them
    x, tx, T = np.concatenate([x, x[:500]]), np.concatenate([tx, tx[:500]]), np.concatenate([T, T[:500]])
    model = cls()
    data = compress((x, tx, T))
    assert data.weights.sum() == x.size and data.weights.size < x.size
    nll, _ = model._likelihood(data)
    theta = np.array([0.7, 5.0, 0.9, 3.0])
    per_row = model._loglik_rows(theta, x, tx, T)
    assert -nll(theta) == pytest.approx(per_row.sum(), rel=1e-12)


def test_pareto_likelihood_is_continuous_where_alpha_crosses_beta(bgnbd_data: Any) -> None:
    lik = _ParetoLikelihood(compress(tuple(v[:2000] for v in bgnbd_data)))
    below = lik.nll(np.array([0.6, 10.0 - 1e-9, 0.7, 10.0]))
    at = lik.nll(np.array([0.6, 10.0, 0.7, 10.0]))
    above = lik.nll(np.array([0.6, 10.0 + 1e-9, 0.7, 10.0]))
    assert below == pytest.approx(at, abs=1e-5) and above == pytest.approx(at, abs=1e-5)


# --------------------------------------------------------------------------------------
# Recovery of known parameters
# --------------------------------------------------------------------------------------
def _assert_recovered(model: Any, truth: dict[str, float], n_se: float = 4.0) -> None:
    for name, true in truth.items():
        est, se = model.params_[name], model.standard_errors_[name]
        assert np.isfinite(se) and se > 0, name
        assert abs(est - true) < n_se * se, (name, est, true, se)


def test_bgnbd_recovers_simulated_parameters(bgnbd_data: Any) -> None:
    model = BGNBD().fit(*bgnbd_data)
    assert model.converged_ and model.n_customers_ == 20_000
    _assert_recovered(model, {"r": 0.5, "alpha": 6.0, "a": 0.8, "b": 2.5})
    assert model.bic_ == pytest.approx(4 * np.log(20_000) - 2 * model.log_likelihood_)
    assert model.aic_ == pytest.approx(8 - 2 * model.log_likelihood_)
    assert model.n_parameters == 4 and model.iterations_ > 0


def test_mbgnbd_recovers_simulated_parameters(simulators: Any) -> None:
    truth = {"r": 0.7, "alpha": 5.0, "a": 1.2, "b": 3.0}
    data = simulators["bgnbd"](20_000, *truth.values(), seed=11, modified=True)
    _assert_recovered(MBGNBD().fit(*data), truth)


def test_pareto_nbd_recovers_simulated_parameters(simulators: Any) -> None:
    truth = {"r": 0.6, "alpha": 8.0, "s": 0.8, "beta": 12.0}
    x, t_x, T = simulators["pareto_nbd"](20_000, *truth.values(), seed=12)
    # day resolution, as real data (and far fewer distinct (x, t) pairs to evaluate 2F1 at)
    _assert_recovered(ParetoNBD().fit(x, np.floor(t_x * 7) / 7, np.ceil(T * 7) / 7), truth)


def test_gamma_gamma_recovers_simulated_parameters(simulators: Any) -> None:
    rng = np.random.default_rng(5)
    x = rng.integers(1, 15, 10_000).astype(float)
    truth = {"p": 6.25, "q": 3.74, "gamma": 15.44}
    m = simulators["spend"](x, *truth.values(), seed=6)
    _assert_recovered(GammaGamma().fit(x, m), truth)


def test_weights_count_customers(bgnbd_data: Any) -> None:
    x, tx, T = (v[:4000] for v in bgnbd_data)
    doubled = BGNBD().fit(np.concatenate([x, x]), np.concatenate([tx, tx]), np.concatenate([T, T]))
    weighted = BGNBD().fit(x, tx, T, weights=np.full(x.size, 2.0))
    np.testing.assert_allclose(list(weighted.params_.values()), list(doubled.params_.values()), rtol=1e-6)
    assert weighted.n_customers_ == doubled.n_customers_ == 8000
    assert weighted.log_likelihood_ == pytest.approx(doubled.log_likelihood_, abs=1e-6)
    # zero weights drop rows
    w = np.ones(x.size)
    w[:100] = 0
    assert BGNBD().fit(x, tx, T, weights=w).n_customers_ == x.size - 100


def test_penalizer_shrinks_the_parameters(bgnbd_data: Any) -> None:
    x, tx, T = bgnbd_data
    plain = BGNBD().fit(x, tx, T)
    shrunk = BGNBD(penalizer=0.01).fit(x, tx, T)
    assert sum(v**2 for v in shrunk.params_.values()) < sum(v**2 for v in plain.params_.values())
    assert shrunk.log_likelihood_ < plain.log_likelihood_  # the unpenalised LL at the penalised optimum
    assert shrunk.penalizer == 0.01


# --------------------------------------------------------------------------------------
# Non-convergence
# --------------------------------------------------------------------------------------
def test_parameters_running_off_to_the_boundary_raise_model_fit_error() -> None:
    # identical spend for everybody: no heterogeneity, so q and gamma run off to infinity
    x = np.arange(1, 41, dtype=float)
    with pytest.raises(ModelFitError) as err:
        GammaGamma().fit(x, np.full(x.size, 20.0))
    text = str(err.value)
    assert "ran off to the boundary" in text
    assert "penalizer" in text and "0.001" in text


def test_the_driver_reports_a_boundary_and_a_failure_with_advice() -> None:
    def runaway(theta: np.ndarray) -> float:  # decreasing without bound in theta[1]
        return float((theta[0] - 2.0) ** 2 + 1.0 / theta[1])

    with pytest.raises(ModelFitError, match=r"ran off to the boundary \(b = .*ADVICE"):
        maximize_likelihood(
            label="Test",
            names=("a", "b"),
            nll=runaway,
            nll_grad=None,
            starts=[np.array([1.0, 1.0])],
            n=1.0,
            penalizer=0.0,
            advice="ADVICE",
        )

    def nowhere_finite(theta: np.ndarray) -> float:
        return float("nan")

    with pytest.raises(ModelFitError, match=r"not finite at any starting value.*ADVICE"):
        maximize_likelihood(
            label="Test",
            names=("a",),
            nll=nowhere_finite,
            nll_grad=None,
            starts=[np.array([1.0])],
            n=1.0,
            penalizer=0.0,
            advice="ADVICE",
        )


def test_fit_advice_names_time_unit_and_repeat_buyers() -> None:
    from rfmflow.predictive._fit import fit_advice

    text = fit_advice(model="BG/NBD", time_unit="days", n_customers=100, n_repeat=7, class_name="BGNBD")
    assert "BGNBD(penalizer=0.001)" in text
    assert "'days'" in text
    assert "7 of 100 customers have x > 0" in text


def test_standard_errors_are_nan_when_the_hessian_is_singular() -> None:
    from rfmflow.predictive._fit import standard_errors

    def flat_in_b(theta: np.ndarray) -> float:  # b does not enter: singular Hessian
        return float((theta[0] - 2.0) ** 2)

    ses = standard_errors(flat_in_b, None, np.array([2.0, 3.0]))
    assert np.isnan(ses).all()

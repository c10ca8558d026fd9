"""Predictions at known points against the papers' formulas evaluated with mpmath (50 digits).

The references below are written straight from the papers (Fader, Hardie & Lee 2005 for
BG/NBD; Schmittlein, Morrison & Colombo 1987 / Fader & Hardie 2005 for Pareto/NBD;
Batislam, Denizel & Filiztekin 2007 for MBG/NBD; Fader, Hardie & Lee 2005 for Gamma-Gamma),
in plain arithmetic at high precision, with no log-space tricks. Some are additionally
checked against direct numerical integration over the latent variables.
"""

from __future__ import annotations

import math
from typing import Any

import mpmath as mp
import numpy as np
import pytest

from rfmflow.predictive import (
    BGNBD,
    MBGNBD,
    GammaGamma,
    ParetoNBD,
    PurchaseModel,
    customer_lifetime_value,
    load_model,
)

mp.mp.dps = 50

# (x, t_x, T): x = 0; T tiny; t_x == T; heavy buyers (x = 200); t_x far below T
POINTS = [
    (0, 0.0, 30.0),
    (0, 0.0, 1e-3),
    (1, 5.0, 30.0),
    (2, 30.0, 30.0),
    (10, 20.5, 38.0),
    (3, 1e-3, 2e-3),
    (50, 1.0, 52.0),
    (80, 38.9, 39.0),
    (200, 70.0, 78.0),
]
HORIZONS = [0.0, 1e-6, 4.3, 52.0, 520.0]


def _model(name: str, params: dict[str, float]) -> Any:
    return load_model(
        {"schema": "rfmflow.predictive.model/1", "model": name, "time_unit": "weeks", "params": params}
    )


def _arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, tx, T = (np.array(col, dtype=float) for col in zip(*POINTS, strict=True))
    return x, tx, T


def _close(ours: float, ref: Any, rel: float = 1e-10) -> None:
    assert ours == pytest.approx(float(ref), rel=rel, abs=1e-300), (ours, float(ref))


def _close_ll(ours: float, ref: Any) -> None:
    """A log-likelihood: absolute error, scaled by the size of its terms."""
    assert abs(ours - float(ref)) <= 1e-11 * max(1.0, abs(float(ref))), (ours, float(ref))


# --------------------------------------------------------------------------------------
# BG/NBD
# --------------------------------------------------------------------------------------
def bg_ref(
    r: float, alpha: float, a: float, b: float, x: int, tx: float, T: float, t: float
) -> dict[str, Any]:
    r, alpha, a, b, tx, T, t = (mp.mpf(v) for v in (r, alpha, a, b, tx, T, t))
    odds = a / (b + x - 1) * ((alpha + T) / (alpha + tx)) ** (r + x) if x > 0 else mp.mpf(0)
    p_alive = 1 / (1 + odds)
    ey = (
        (a + b + x - 1)
        / (a - 1)
        * (
            1
            - ((alpha + T) / (alpha + T + t)) ** (r + x)
            * mp.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
        )
        * p_alive
    )
    ex = (
        (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * mp.hyp2f1(r, b, a + b - 1, t / (alpha + t)))
    )
    common = mp.gamma(r + x) * alpha**r / mp.gamma(r)
    like = mp.beta(a, b + x) / mp.beta(a, b) * common / (alpha + T) ** (r + x)
    if x > 0:
        like += mp.beta(a + 1, b + x - 1) / mp.beta(a, b) * common / (alpha + tx) ** (r + x)
    return {"p_alive": p_alive, "ey": ey, "ex": ex, "ll": mp.log(like)}


BG_PARAMS = [
    {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},  # CDNOW
    {"r": 1.8, "alpha": 12.0, "a": 3.5, "b": 6.0},  # a > 1
    {"r": 0.5, "alpha": 3.0, "a": 0.3, "b": 0.4},  # a + b < 1: 2F1 with c < 0 at x = 0
    {"r": 0.4, "alpha": 5.0, "a": 1.0 + 2e-6, "b": 2.0},  # a ~ 1: removable singularity
]


@pytest.mark.parametrize("params", BG_PARAMS, ids=["cdnow", "a>1", "a+b<1", "a~1"])
def test_bgnbd_closed_forms(params: dict[str, float]) -> None:
    m = _model("bgnbd", params)
    x, tx, T = _arrays()
    rel = 1e-7 if abs(params["a"] - 1) < 1e-4 else 1e-10
    refs = {t: [bg_ref(*params.values(), *pt, t) for pt in POINTS] for t in HORIZONS}
    pa = m.p_alive(x, tx, T)
    ll = m.log_likelihood(x, tx, T)
    for i in range(len(POINTS)):
        _close(pa[i], refs[0.0][i]["p_alive"])
        _close_ll(ll[i], refs[0.0][i]["ll"])
    for t in HORIZONS:
        ey = m.expected_purchases(t, x, tx, T)
        for i in range(len(POINTS)):
            _close(ey[i], refs[t][i]["ey"], rel=rel)
        _close(m.expected_purchases_new(t), refs[t][0]["ex"], rel=rel)


# --------------------------------------------------------------------------------------
# Pareto/NBD
# --------------------------------------------------------------------------------------
def pareto_a0(r: Any, alpha: Any, s: Any, beta: Any, x: int, tx: Any, T: Any) -> Any:
    a = r + s + x
    if alpha >= beta:

        def F(t: Any) -> Any:
            return mp.hyp2f1(a, s + 1, a + 1, (alpha - beta) / (alpha + t)) / (alpha + t) ** a
    else:

        def F(t: Any) -> Any:
            return mp.hyp2f1(a, r + x, a + 1, (beta - alpha) / (beta + t)) / (beta + t) ** a

    return F(tx) - F(T)


def pareto_ref(
    r: float, alpha: float, s: float, beta: float, x: int, tx: float, T: float, t: float
) -> dict[str, Any]:
    r, alpha, s, beta, tx, T, t = (mp.mpf(v) for v in (r, alpha, s, beta, tx, T, t))
    a0 = pareto_a0(r, alpha, s, beta, x, tx, T)
    p_alive = 1 / (1 + s / (r + s + x) * (alpha + T) ** (r + x) * (beta + T) ** s * a0)
    if s == 1:
        ey = (r + x) * (beta + T) / (alpha + T) * mp.log((beta + T + t) / (beta + T)) * p_alive
        ex = r * beta / alpha * mp.log(1 + t / beta)
    else:
        ey = (
            (r + x)
            * (beta + T)
            / ((alpha + T) * (s - 1))
            * (1 - ((beta + T) / (beta + T + t)) ** (s - 1))
            * p_alive
        )
        ex = r * beta / (alpha * (s - 1)) * (1 - (beta / (beta + t)) ** (s - 1))
    like = (
        mp.gamma(r + x)
        * alpha**r
        * beta**s
        / mp.gamma(r)
        * (1 / ((alpha + T) ** (r + x) * (beta + T) ** s) + s / (r + s + x) * a0)
    )
    return {"p_alive": p_alive, "ey": ey, "ex": ex, "ll": mp.log(like)}


PARETO_PARAMS = [
    {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669},  # CDNOW: alpha < beta
    {"r": 0.553, "alpha": 20.0, "s": 0.606, "beta": 2.0},  # alpha >= beta
    {"r": 0.8, "alpha": 8.0, "s": 1.0, "beta": 12.0},  # s == 1
    {"r": 0.3, "alpha": 0.5, "s": 2.0, "beta": 30.0},  # alpha << beta (z near 1)
    {"r": 1.2, "alpha": 6.0, "s": 50.0, "beta": 4000.0},  # s, beta large (little dropout)
]


@pytest.mark.parametrize(
    "params", PARETO_PARAMS, ids=["cdnow", "alpha>=beta", "s=1", "alpha<<beta", "s,beta big"]
)
def test_pareto_nbd_closed_forms(params: dict[str, float]) -> None:
    m = _model("pareto_nbd", params)
    x, tx, T = _arrays()
    pa = m.p_alive(x, tx, T)
    ll = m.log_likelihood(x, tx, T)
    refs = {t: [pareto_ref(*params.values(), *pt, t) for pt in POINTS] for t in HORIZONS}
    for i in range(len(POINTS)):
        _close(pa[i], refs[0.0][i]["p_alive"], rel=1e-9)
        _close_ll(ll[i], refs[0.0][i]["ll"])
    for t in HORIZONS:
        ey = m.expected_purchases(t, x, tx, T)
        for i in range(len(POINTS)):
            _close(ey[i], refs[t][i]["ey"], rel=1e-9)
        _close(m.expected_purchases_new(t), refs[t][0]["ex"])


@pytest.mark.parametrize("params", PARETO_PARAMS[:2], ids=["alpha<beta", "alpha>=beta"])
def test_pareto_a0_hypergeometric_form_equals_the_integral(params: dict[str, float]) -> None:
    """A0 = (r+s+x) * integral_{t_x}^{T} (alpha+tau)^-(r+x) (beta+tau)^-(s+1) dtau: the paper's
    2F1 expressions for both branches agree with the integral they come from."""
    r, alpha, s, beta = (mp.mpf(v) for v in params.values())
    for x, tx, T in [(0, 0.0, 30.0), (4, 12.0, 39.0), (30, 2.0, 52.0)]:
        integral = (r + s + x) * mp.quad(
            lambda tau, x=x: (alpha + tau) ** -(r + x) * (beta + tau) ** -(s + 1), [tx, T]
        )
        assert pareto_a0(r, alpha, s, beta, x, mp.mpf(tx), mp.mpf(T)) == pytest.approx(integral, rel=1e-20)


# --------------------------------------------------------------------------------------
# MBG/NBD
# --------------------------------------------------------------------------------------
def mbg_ref(
    r: float, alpha: float, a: float, b: float, x: int, tx: float, T: float, t: float
) -> dict[str, Any]:
    r, alpha, a, b, tx, T, t = (mp.mpf(v) for v in (r, alpha, a, b, tx, T, t))
    p_alive = 1 / (1 + a / (b + x) * ((alpha + T) / (alpha + tx)) ** (r + x))
    ey = (
        (a + b + x)
        / (a - 1)
        * (
            1
            - ((alpha + T) / (alpha + T + t)) ** (r + x)
            * mp.hyp2f1(r + x, b + x + 1, a + b + x, t / (alpha + T + t))
        )
        * p_alive
    )
    ex = b / (a - 1) * (1 - (alpha / (alpha + t)) ** r * mp.hyp2f1(r, b + 1, a + b, t / (alpha + t)))
    common = mp.gamma(r + x) * alpha**r / mp.gamma(r)
    like = mp.beta(a, b + x + 1) / mp.beta(a, b) * common / (alpha + T) ** (r + x) + mp.beta(
        a + 1, b + x
    ) / mp.beta(a, b) * common / (alpha + tx) ** (r + x)
    return {"p_alive": p_alive, "ey": ey, "ex": ex, "ll": mp.log(like)}


MBG_PARAMS = [
    {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614},  # fitted on the CDNOW sample
    {"r": 1.8, "alpha": 12.0, "a": 3.5, "b": 6.0},
]


@pytest.mark.parametrize("params", MBG_PARAMS, ids=["cdnow", "a>1"])
def test_mbgnbd_closed_forms(params: dict[str, float]) -> None:
    m = _model("mbgnbd", params)
    x, tx, T = _arrays()
    pa = m.p_alive(x, tx, T)
    ll = m.log_likelihood(x, tx, T)
    refs = {t: [mbg_ref(*params.values(), *pt, t) for pt in POINTS] for t in HORIZONS}
    for i in range(len(POINTS)):
        _close(pa[i], refs[0.0][i]["p_alive"])
        _close_ll(ll[i], refs[0.0][i]["ll"])
    assert (pa < 1).all()  # unlike BG/NBD, even x == 0 customers may be gone
    for t in HORIZONS:
        ey = m.expected_purchases(t, x, tx, T)
        for i in range(len(POINTS)):
            _close(ey[i], refs[t][i]["ey"])
        _close(m.expected_purchases_new(t), refs[t][0]["ex"])


@pytest.mark.parametrize(("name", "shift"), [("bgnbd", 0), ("mbgnbd", 1)])
def test_expected_purchases_equal_the_integral_over_the_posterior(name: str, shift: int) -> None:
    """E[Y(t) | alive] = E[(1 - exp(-lambda p t)) / p] with lambda ~ Gamma(r+x, alpha+T) and
    p ~ Beta(a, b+x+shift): integrate over p numerically (lambda in closed form)."""
    params = {"r": 0.6, "alpha": 5.0, "a": 0.8, "b": 2.5}
    m = _model(name, params)
    r, alpha, a, b = (mp.mpf(v) for v in params.values())
    for x, tx, T, t in [(0, 0.0, 20.0, 10.0), (3, 15.0, 30.0, 52.0), (12, 25.0, 26.0, 4.0)]:
        bp = b + x + shift

        def integrand(p: Any, x: int = x, T: float = T, t: float = t, bp: Any = bp) -> Any:
            inner = 1 - ((alpha + T) / (alpha + T + p * t)) ** (r + x)
            return inner / p * p ** (a - 1) * (1 - p) ** (bp - 1) / mp.beta(a, bp)

        alive_expected = mp.quad(integrand, [0, 1])
        ours = m.expected_purchases(t, [x], [tx], [T])[0] / m.p_alive([x], [tx], [T])[0]
        _close(ours, alive_expected, rel=1e-9)


# --------------------------------------------------------------------------------------
# Gamma-Gamma
# --------------------------------------------------------------------------------------
def test_gamma_gamma_expected_spend_is_the_posterior_mean() -> None:
    p, q, g = 6.25, 3.74, 15.44
    gg = load_model(
        {
            "schema": "rfmflow.predictive.model/1",
            "model": "gamma_gamma",
            "time_unit": None,
            "params": {"p": p, "q": q, "gamma": g},
        }
    )
    assert isinstance(gg, GammaGamma)
    x = np.array([1, 2, 10, 200, 0], dtype=float)
    m = np.array([35.0, 12.5, 80.0, 3.0, 0.0])
    ours = gg.expected_spend(x, m)
    P, Q, G = mp.mpf(p), mp.mpf(q), mp.mpf(g)
    for i in range(4):
        # nu | data ~ Gamma(q + p x, gamma + x m_x); E[M] = E[p / nu]
        shape, rate = Q + P * x[i], G + mp.mpf(x[i]) * mp.mpf(m[i])
        posterior_mean = mp.quad(
            lambda nu, shape=shape, rate=rate: (
                P / nu * rate**shape * nu ** (shape - 1) * mp.exp(-rate * nu) / mp.gamma(shape)
            ),
            [0, mp.inf],
        )
        _close(ours[i], posterior_mean, rel=1e-12)
    _close(ours[4], P * G / (Q - 1))
    assert gg.population_mean_spend == pytest.approx(p * g / (q - 1))


def test_gamma_gamma_infinite_means_are_inf_not_negative() -> None:
    gg = _model_gg(0.05, 0.9, 10.0)  # q <= 1: no finite population mean
    out = gg.expected_spend([0.0, 1.0, 5.0], [0.0, 30.0, 30.0])
    assert out[0] == math.inf and gg.population_mean_spend == math.inf
    assert out[1] == math.inf  # p x + q = 0.95 <= 1: infinite posterior mean
    assert out[2] == pytest.approx(0.05 * (10.0 + 150.0) / (0.25 + 0.9 - 1.0))


def test_gamma_gamma_log_density_matches_the_formula() -> None:
    p, q, g = 6.25, 3.74, 15.44
    gg = _model_gg(p, q, g)
    x = np.array([1.0, 3.0, 40.0])
    m = np.array([20.0, 41.3, 9.99])
    ours = gg.log_likelihood(x, m)
    P, Q, G = mp.mpf(p), mp.mpf(q), mp.mpf(g)
    for i in range(3):
        X, M = mp.mpf(x[i]), mp.mpf(m[i])
        dens = (
            mp.gamma(P * X + Q)
            / (mp.gamma(P * X) * mp.gamma(Q))
            * G**Q
            * M ** (P * X - 1)
            * X ** (P * X)
            / (G + M * X) ** (P * X + Q)
        )
        _close_ll(ours[i], mp.log(dens))


def _model_gg(p: float, q: float, g: float) -> GammaGamma:
    model = load_model(
        {
            "schema": "rfmflow.predictive.model/1",
            "model": "gamma_gamma",
            "params": {"p": p, "q": q, "gamma": g},
        }
    )
    assert isinstance(model, GammaGamma)
    return model


# --------------------------------------------------------------------------------------
# CLV
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "params"),
    [("bgnbd", BG_PARAMS[0]), ("pareto_nbd", PARETO_PARAMS[0]), ("mbgnbd", MBG_PARAMS[0])],
)
def test_clv_without_discount_is_spend_times_expected_purchases(name: str, params: dict[str, float]) -> None:
    m: PurchaseModel = _model(name, params)
    x, tx, T = _arrays()
    spend = np.linspace(10.0, 90.0, x.size)
    clv = customer_lifetime_value(m, spend, x, tx, T, horizon=52.0)
    np.testing.assert_allclose(clv, spend * m.expected_purchases(52.0, x, tx, T), rtol=1e-12)
    # a scalar spend is broadcast
    np.testing.assert_allclose(
        customer_lifetime_value(m, 25.0, x, tx, T, horizon=52.0), 25.0 * m.expected_purchases(52.0, x, tx, T)
    )


def test_clv_discounts_each_monthly_step_from_its_end() -> None:
    params = BG_PARAMS[0]
    m = _model("bgnbd", params)
    pts = POINTS[:5]
    x, tx, T = (np.array(c, dtype=float) for c in zip(*pts, strict=True))
    spend = np.array([20.0, 30.0, 40.0, 50.0, 60.0])
    clv = customer_lifetime_value(m, spend, x, tx, T, horizon=52.0, annual_discount_rate=0.15)
    step = 30.0 / 7.0
    ts = [min(k * step, 52.0) for k in range(1, math.ceil(52.0 / step) + 1)]
    assert len(ts) == 13 and ts[-1] == 52.0
    for i, pt in enumerate(pts):
        total = mp.mpf(0)
        prev = mp.mpf(0)
        for t in ts:
            cur = bg_ref(*params.values(), *pt, t)["ey"]
            total += (cur - prev) / mp.mpf(1.15) ** (mp.mpf(t) * 7 / 365)
            prev = cur
        _close(clv[i], spend[i] * total)
    # days as the unit: the same customers in days with day parameters give the same CLV
    md = load_model(
        {
            "schema": "rfmflow.predictive.model/1",
            "model": "bgnbd",
            "time_unit": "days",
            "params": {"r": params["r"], "alpha": params["alpha"] * 7, "a": params["a"], "b": params["b"]},
        }
    )
    assert isinstance(md, PurchaseModel)
    clv_days = customer_lifetime_value(md, spend, x, tx * 7, T * 7, horizon=364.0, annual_discount_rate=0.15)
    np.testing.assert_allclose(clv_days, clv, rtol=1e-10)


def test_expected_purchases_broadcasts_t() -> None:
    m = _model("bgnbd", BG_PARAMS[0])
    x, tx, T = _arrays()
    per_customer = np.linspace(1.0, 30.0, x.size)
    out = m.expected_purchases(per_customer, x, tx, T)
    for i in range(x.size):
        assert out[i] == pytest.approx(
            m.expected_purchases(per_customer[i], x[i : i + 1], tx[i : i + 1], T[i : i + 1])[0]
        )
    grid = m.expected_purchases(np.array([[4.0], [13.0]]), x, tx, T)
    assert grid.shape == (2, x.size)
    np.testing.assert_allclose(grid[1], m.expected_purchases(13.0, x, tx, T))
    new = m.expected_purchases_new(np.array([0.0, 13.0]))
    assert isinstance(new, np.ndarray) and new[0] == 0.0
    assert isinstance(m.expected_purchases_new(13.0), float)


@pytest.mark.parametrize("cls", [BGNBD, ParetoNBD, MBGNBD])
def test_expected_wait_if_alive(cls: type[PurchaseModel]) -> None:
    names = cls.param_names
    params = dict(zip(names, (0.6, 5.0, 0.8, 2.5), strict=True))
    m = _model(cls.name, params)
    out = m.expected_wait_if_alive([0, 1, 5], [0.0, 3.0, 10.0], [20.0, 20.0, 30.0])
    assert math.isnan(out[0])  # r + x = 0.6 <= 1: infinite mean
    assert out[1] == pytest.approx((5.0 + 20.0) / (0.6 + 1 - 1))
    assert out[2] == pytest.approx((5.0 + 30.0) / (0.6 + 5 - 1))

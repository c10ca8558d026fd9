"""Simulators for the buy-till-you-die tests: customers drawn from each model's own story."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def simulate_beta_geometric(
    n: int, r: float, alpha: float, a: float, b: float, *, seed: int, modified: bool = False
) -> Arrays:
    """BG/NBD (or MBG/NBD with ``modified``): Poisson purchases at lambda ~ Gamma(r, alpha),
    dropout with probability p ~ Beta(a, b) after each repeat purchase (and, for MBG/NBD,
    right after the first). T uniform in 30 .. 80 time units."""
    rng = np.random.default_rng(seed)
    T = rng.uniform(30.0, 80.0, n)
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    x = np.zeros(n)
    t_x = np.zeros(n)
    clock = np.zeros(n)
    active = np.arange(n)
    if modified:
        active = active[rng.random(n) >= p]
    while active.size:
        clock[active] += rng.exponential(1.0, active.size) / lam[active]
        active = active[clock[active] <= T[active]]
        x[active] += 1
        t_x[active] = clock[active]
        active = active[rng.random(active.size) >= p[active]]
    return x, t_x, T


def simulate_pareto_nbd(n: int, r: float, alpha: float, s: float, beta: float, *, seed: int) -> Arrays:
    """Pareto/NBD: Poisson purchases at lambda ~ Gamma(r, alpha) during an exponential
    lifetime with rate mu ~ Gamma(s, beta)."""
    rng = np.random.default_rng(seed)
    T = rng.uniform(30.0, 80.0, n)
    lam = rng.gamma(r, 1.0 / alpha, n)
    mu = rng.gamma(s, 1.0 / beta, n)
    window = np.minimum(rng.exponential(1.0, n) / mu, T)
    x = rng.poisson(lam * window).astype(float)
    # given x purchases in (0, window], the last is window * U^(1/x)
    u = rng.random(n)
    t_x = np.where(x > 0, window * u ** (1.0 / np.maximum(x, 1.0)), 0.0)
    return x, t_x, T


def simulate_spend(x: np.ndarray, p: float, q: float, gamma: float, *, seed: int) -> np.ndarray:
    """Gamma-Gamma: nu ~ Gamma(q, gamma); the mean of x Gamma(p, nu) values is Gamma(p x, x nu)."""
    rng = np.random.default_rng(seed)
    nu = rng.gamma(q, 1.0 / gamma, x.size)
    return np.asarray(rng.gamma(p * x, 1.0 / (x * nu)))


@pytest.fixture(scope="session")
def bgnbd_data() -> Arrays:
    return simulate_beta_geometric(20_000, 0.5, 6.0, 0.8, 2.5, seed=20261122)


@pytest.fixture(scope="session")
def simulators() -> dict[str, Callable[..., object]]:
    return {
        "bgnbd": simulate_beta_geometric,
        "pareto_nbd": simulate_pareto_nbd,
        "spend": simulate_spend,
    }

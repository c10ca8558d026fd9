"""The maximum-likelihood driver shared by every model.

The models hand over their negative log-likelihood (and, for BG/NBD, MBG/NBD and
Gamma-Gamma, its analytic gradient) in the natural parameters. The driver

* optimises the log-parameters (so every parameter stays positive) with
  ``scipy.optimize.minimize(method="L-BFGS-B")`` on the mean negative log-likelihood per
  customer plus the optional L2 penalty ``penalizer * sum(params ** 2)``, starting from the
  best of the model's candidate starting values; models without an analytic gradient get
  a central finite-difference one;
* declares non-convergence (:class:`~rfmflow.core.errors.ModelFitError`, with advice) when
  the optimiser fails, or when a parameter runs off to the boundary (> 1e6 or < 1e-8),
  which means the data cannot identify it;
* computes standard errors from the inverse of a finite-difference Hessian of the
  unpenalised negative log-likelihood in the natural parameters (NaN when that Hessian is
  singular or not positive definite).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

from rfmflow.core.errors import ModelFitError
from rfmflow.predictive._special import wdot

FloatArray = NDArray[np.float64]
#: negative log-likelihood at natural parameters
NllFn = Callable[[FloatArray], float]
#: negative log-likelihood and its gradient with respect to the natural parameters
NllGradFn = Callable[[FloatArray], tuple[float, FloatArray]]

#: a fitted parameter above this is "running off to infinity"
UPPER_BOUNDARY = 1e6
#: ... and below this "collapsing to zero"
LOWER_BOUNDARY = 1e-8
_LOG_BOUNDS = (-25.0, 25.0)  # the optimiser's box in log space (1.4e-11 .. 7.2e10)
_BAD_VALUE = 1e100


@dataclass(frozen=True)
class MleResult:
    params: FloatArray
    log_likelihood: float
    standard_errors: FloatArray
    iterations: int
    converged: bool
    message: str


def _central_gradient(f: Callable[[FloatArray], float], phi: FloatArray, h: float = 1e-5) -> FloatArray:
    g = np.empty_like(phi)
    for i in range(phi.size):
        e = np.zeros_like(phi)
        e[i] = h
        g[i] = (f(phi + e) - f(phi - e)) / (2 * h)
    return g


def _hessian_log(nll: NllFn, nll_grad: NllGradFn | None, phi: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Hessian and gradient of the unpenalised NLL with respect to phi = log(theta)."""
    k = phi.size

    def f(p: FloatArray) -> float:
        return nll(np.exp(p))

    if nll_grad is not None:

        def g(p: FloatArray) -> FloatArray:
            theta = np.exp(p)
            return nll_grad(theta)[1] * theta

        h = 1e-5
        H = np.empty((k, k))
        for i in range(k):
            e = np.zeros(k)
            e[i] = h
            H[:, i] = (g(phi + e) - g(phi - e)) / (2 * h)
        grad = g(phi)
    else:
        h = 1e-4
        f0 = f(phi)
        H = np.empty((k, k))
        grad = np.empty(k)
        for i in range(k):
            ei = np.zeros(k)
            ei[i] = h
            fp, fm = f(phi + ei), f(phi - ei)
            H[i, i] = (fp - 2 * f0 + fm) / h**2
            grad[i] = (fp - fm) / (2 * h)
            for j in range(i):
                ej = np.zeros(k)
                ej[j] = h
                H[i, j] = H[j, i] = (
                    f(phi + ei + ej) - f(phi + ei - ej) - f(phi - ei + ej) + f(phi - ei - ej)
                ) / (4 * h**2)
    return 0.5 * (H + H.T), grad


def standard_errors(nll: NllFn, nll_grad: NllGradFn | None, theta: FloatArray) -> FloatArray:
    """sqrt(diag(H^-1)) with H the Hessian of the NLL in the natural parameters (NaN if singular)."""
    phi = np.log(theta)
    H_phi, g_phi = _hessian_log(nll, nll_grad, phi)
    # d2/dtheta_i dtheta_j = H_phi_ij / (theta_i theta_j) - delta_ij g_phi_i / theta_i^2
    H = (H_phi - np.diag(g_phi)) / np.outer(theta, theta)
    nan = np.full(theta.size, np.nan)
    if not np.isfinite(H).all():
        return nan
    eig = np.linalg.eigvalsh(H)
    if eig[0] <= max(abs(eig[-1]), 1e-300) * 1e-13:
        return nan
    cov = np.linalg.inv(H)
    diag = np.diag(cov)
    if (diag <= 0).any():
        return nan
    return np.sqrt(diag)


def maximize_likelihood(
    *,
    label: str,
    names: Sequence[str],
    nll: NllFn,
    nll_grad: NllGradFn | None,
    starts: Sequence[FloatArray],
    n: float,
    penalizer: float,
    advice: str,
) -> MleResult:
    """Fit by L-BFGS-B in log-parameters; raise ModelFitError with ``advice`` on failure."""
    scale = 1.0 / max(n, 1.0)

    def objective(phi: FloatArray) -> float:
        theta = np.exp(phi)
        value = nll(theta)
        if not np.isfinite(value):
            return _BAD_VALUE
        return value * scale + penalizer * float(np.sum(theta**2))

    def objective_grad(phi: FloatArray) -> tuple[float, FloatArray]:
        theta = np.exp(phi)
        if nll_grad is None:
            return objective(phi), _central_gradient(objective, phi)
        value, grad = nll_grad(theta)
        if not (np.isfinite(value) and np.isfinite(grad).all()):
            return _BAD_VALUE, np.zeros_like(phi)
        return (
            value * scale + penalizer * float(np.sum(theta**2)),
            grad * theta * scale + 2.0 * penalizer * theta**2,
        )

    candidates = [np.log(np.clip(np.asarray(s, dtype=np.float64), 1e-6, 1e6)) for s in starts]
    values = [objective(c) for c in candidates]
    order = np.argsort(values)
    phi0 = candidates[int(order[0])]
    if values[int(order[0])] >= _BAD_VALUE:
        raise ModelFitError(
            f"{label} fit failed: the log-likelihood is not finite at any starting value. {advice}"
        )
    bounds = [_LOG_BOUNDS] * len(names)
    options = {"maxiter": 3000, "ftol": 1e-15, "gtol": 1e-9, "maxls": 50}
    iterations = 0
    res = minimize(objective_grad, phi0, jac=True, method="L-BFGS-B", bounds=bounds, options=options)
    iterations += int(res.nit)
    # polish: restart from the solution (L-BFGS-B's curvature memory is rebuilt)
    res2 = minimize(objective_grad, res.x, jac=True, method="L-BFGS-B", bounds=bounds, options=options)
    iterations += int(res2.nit)
    if res2.fun <= res.fun:
        res = res2
    phi = np.asarray(res.x, dtype=np.float64)
    theta = np.exp(phi)
    _, grad_phi = objective_grad(phi)
    # a line-search stop at the optimum is fine when the gradient is ~0 (and the value finite)
    small_gradient = bool(np.max(np.abs(grad_phi)) < 1e-5)
    converged = bool(res.fun < _BAD_VALUE and (res.success or small_gradient))
    message = str(res.message)
    # parameters heading to 0 or infinity often also stall the line search: report the cause
    off = [
        f"{name} = {value:.4g}"
        for name, value in zip(names, theta, strict=True)
        if value > UPPER_BOUNDARY or value < LOWER_BOUNDARY
    ]
    if off:
        raise ModelFitError(
            f"{label} fit did not converge: parameter(s) ran off to the boundary ({', '.join(off)}; "
            f"allowed {LOWER_BOUNDARY:g} .. {UPPER_BOUNDARY:g}), so the data cannot identify them "
            f"(optimizer: {message}). {advice}"
        )
    if not converged:
        raise ModelFitError(
            f"{label} fit did not converge after {iterations} iterations "
            f"(optimizer: {message}; largest gradient {np.max(np.abs(grad_phi)):.3g}). {advice}"
        )
    ll = -nll(theta)
    ses = standard_errors(nll, nll_grad, theta)
    return MleResult(
        params=theta,
        log_likelihood=float(ll),
        standard_errors=ses,
        iterations=iterations,
        converged=True,
        message=message,
    )


def fit_advice(
    *, model: str, time_unit: str, n_customers: float, n_repeat: float | None, class_name: str
) -> str:
    """The 'what to try' part of a ModelFitError message."""
    parts = [
        f"Try a small penalizer ({class_name}(penalizer=0.001) in Python, --penalizer 0.001 on the "
        "command line)",
    ]
    if n_repeat is not None:
        parts.append(
            f"check the time unit: x, t_x and T must be in {time_unit!r} (a customer's age of "
            "several years expressed in days gives very different scales than in weeks)"
        )
        parts.append(
            f"check that enough customers repeat: {n_repeat:g} of {n_customers:g} customers have x > 0"
        )
    else:
        parts.append(
            f"check the spend data ({n_customers:g} repeat buyers): Gamma-Gamma needs mean transaction "
            "values m_x that vary between customers, in one currency, outliers checked"
        )
    return f"{model}: " + "; ".join(parts) + "."


def nbd_start(x: FloatArray, T: FloatArray, w: FloatArray) -> tuple[float, float]:
    """Method-of-moments (r, alpha) of a gamma-Poisson purchase rate, ignoring dropout."""
    W = float(w.sum())
    rate = x / T
    m1 = wdot(w, rate) / W
    var = wdot(w, (rate - m1) ** 2) / W
    inv_T = wdot(w, 1.0 / T) / W
    m1 = max(m1, 1e-6)
    k = var - m1 * inv_T  # = r / alpha^2
    if k > 0:
        alpha = m1 / k
        r = m1 * alpha
    else:
        r, alpha = 1.0, 1.0 / m1
    return float(np.clip(r, 1e-3, 1e3)), float(np.clip(alpha, 1e-3, 1e5))

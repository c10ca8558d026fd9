"""Benchmark the buy-till-you-die fit and predictions (``rfmflow.predictive``) against a
plain scipy Nelder-Mead maximum-likelihood fit.

    python bench/bench_predict.py                          # 1,000,000 customers
    python bench/bench_predict.py --customers 200000       # smaller
    python bench/bench_predict.py --check                  # exit 1 when a target is missed
    python bench/bench_predict.py --baseline-seconds 30    # cap the baseline harder

Data: N customers simulated (seeded) from BG/NBD (r=0.243, alpha=4.414 per week, a=0.793,
b=2.426: the CDNOW estimates) and Gamma-Gamma spend (p=6.25, q=3.74, gamma=15.44).
Two years of observation; customers are acquired uniformly over the first year; purchase
times are kept at day resolution and expressed in weeks (so distinct (x, t_x, T) rows are as
many as in real data, not one per customer). Written once to a temporary .npz.

Every step runs in its own fresh subprocess (``--worker``), so the peak RSS printed is that
step's alone (``ru_maxrss``, interpreter, imports and the loaded arrays included; the "idle"
column is the RSS after imports and loading the data). Times are measured around the work
only.

Steps:

``baseline``   scipy.optimize.minimize(method="Nelder-Mead") on the direct per-customer
               log-likelihoods (no compression to distinct rows, no analytic gradient), from
               all-ones starting values in log-parameters, BG/NBD then Gamma-Gamma; each stops
               at convergence or when its time budget (``--baseline-seconds``, split 2:1) is
               spent. The table says how far it got (log-likelihood gap to rfmflow's optimum).
``fit``        ``BGNBD().fit(x, t_x, T)`` and ``GammaGamma().fit(x[x>0], m_x[x>0])``.
``predict``    the fitted models loaded from JSON, then ``p_alive``, ``expected_purchases``
               over 90 days, ``GammaGamma.expected_spend`` and ``customer_lifetime_value``
               over 365 days with monthly steps and a 10% annual discount rate.

Targets (issue): fit BG/NBD + Gamma-Gamma on 1,000,000 customers in < 10 s; predict in < 2 s;
peak memory < 2 GB, on 2 cores. The script prints PASS/FAIL and exits 0 unless ``--check``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRUE_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
TRUE_GG = {"p": 6.25, "q": 3.74, "gamma": 15.44}
FIT_TARGET_S = 10.0
PREDICT_TARGET_S = 2.0
RSS_TARGET_MB = 2048.0
TARGET_CUSTOMERS = 1_000_000


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------
def simulate(n: int, seed: int, path: Path) -> dict:
    """BG/NBD purchases and Gamma-Gamma spend for n customers; saved to ``path`` (.npz)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    acquired = rng.integers(0, 365, n)  # day of the first purchase
    T_days = 730 - acquired
    lam = rng.gamma(TRUE_BGNBD["r"], 1.0 / TRUE_BGNBD["alpha"], n) / 7.0  # purchases per day
    p = rng.beta(TRUE_BGNBD["a"], TRUE_BGNBD["b"], n)
    x = np.zeros(n)
    t_last = np.zeros(n)
    clock = np.zeros(n)
    active = np.arange(n)
    while active.size:
        clock[active] += rng.exponential(1.0, active.size) / lam[active]
        active = active[clock[active] <= T_days[active]]
        x[active] += 1
        t_last[active] = clock[active]
        active = active[rng.random(active.size) >= p[active]]  # drop out after a repeat purchase
    nu = rng.gamma(TRUE_GG["q"], 1.0 / TRUE_GG["gamma"], n)
    repeat = x > 0
    m_x = np.zeros(n)
    # the mean of x Gamma(p, nu) values is Gamma(p x, x nu)
    m_x[repeat] = rng.gamma(TRUE_GG["p"] * x[repeat], 1.0 / (x[repeat] * nu[repeat]))
    t_x = np.floor(t_last) / 7.0  # day resolution, in weeks
    T = T_days / 7.0
    np.savez(path, x=x, t_x=t_x, T=T, m_x=m_x)
    distinct = np.unique(np.stack([x, t_x, T], axis=1), axis=0).shape[0]
    return {"customers": n, "repeat": int(repeat.sum()), "distinct": int(distinct), "max_x": int(x.max())}


def _load(path: str):
    import numpy as np

    with np.load(path) as data:
        return data["x"], data["t_x"], data["T"], data["m_x"]


# --------------------------------------------------------------------------------------
# The baseline: Nelder-Mead on the direct per-customer likelihoods
# --------------------------------------------------------------------------------------
def _bgnbd_direct_ll(params, x, t_x, T):
    """BG/NBD log-likelihood per customer (Fader, Hardie & Lee 2005, eq. 6), in logs."""
    import numpy as np
    from scipy.special import betaln, gammaln

    r, alpha, a, b = params
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b) - (r + x) * np.log(alpha + T)
    a3 = np.where(
        x > 0,
        betaln(a + 1, np.maximum(b + x - 1, 1e-12)) - betaln(a, b) - (r + x) * np.log(alpha + t_x),
        -np.inf,
    )
    return a1 + np.logaddexp(a2, a3)


def _gg_direct_ll(params, x, m):
    import numpy as np
    from scipy.special import gammaln

    p, q, g = params
    return (
        gammaln(p * x + q)
        - gammaln(p * x)
        - gammaln(q)
        + q * np.log(g)
        + (p * x - 1) * np.log(m)
        + p * x * np.log(x)
        - (p * x + q) * np.log(g + x * m)
    )


def _nelder_mead(ll, n_params: int, data: tuple, budget_s: float) -> dict:
    import numpy as np
    from scipy.optimize import minimize

    n = data[0].size
    evals = 0

    def objective(log_params):
        nonlocal evals
        evals += 1
        with np.errstate(all="ignore"):
            value = -float(np.sum(ll(np.exp(log_params), *data))) / n
        return value if math.isfinite(value) else 1e300

    t0 = time.perf_counter()

    def stop_when_out_of_time(intermediate_result) -> None:
        if time.perf_counter() - t0 > budget_s:
            raise StopIteration

    res = minimize(
        objective,
        np.zeros(n_params),
        method="Nelder-Mead",
        callback=stop_when_out_of_time,
        options={"xatol": 1e-6, "fatol": 1e-10, "maxiter": 100_000, "maxfev": 100_000},
    )
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "params": np.exp(res.x).tolist(),
        "ll": -res.fun * n,
        "evals": evals,
        "converged": bool(res.success),
    }


def work_baseline(path: str, budget_s: float) -> dict:
    x, t_x, T, m_x = _load(path)
    rep = x > 0
    bg = _nelder_mead(_bgnbd_direct_ll, 4, (x, t_x, T), budget_s * 2 / 3)
    gg = _nelder_mead(_gg_direct_ll, 3, (x[rep], m_x[rep]), budget_s / 3)
    return {"steps": {"baseline_bgnbd": bg, "baseline_gg": gg}, "seconds": bg["seconds"] + gg["seconds"]}


# --------------------------------------------------------------------------------------
# rfmflow
# --------------------------------------------------------------------------------------
def work_fit(path: str, models: str) -> dict:
    from rfmflow.predictive import BGNBD, GammaGamma

    x, t_x, T, m_x = _load(path)
    t0 = time.perf_counter()
    bg = BGNBD(time_unit="weeks").fit(x, t_x, T)
    t1 = time.perf_counter()
    rep = x > 0
    gg = GammaGamma().fit(x[rep], m_x[rep])
    t2 = time.perf_counter()
    Path(models).write_text(json.dumps({"purchase": bg.to_dict(), "spend": gg.to_dict()}))
    return {
        "seconds": t2 - t0,
        "steps": {
            "fit_bgnbd": {
                "seconds": t1 - t0,
                "params": list(bg.params_.values()),
                "se": list(bg.standard_errors_.values()),
                "ll": bg.log_likelihood_,
                "iterations": bg.iterations_,
            },
            "fit_gg": {
                "seconds": t2 - t1,
                "params": list(gg.params_.values()),
                "se": list(gg.standard_errors_.values()),
                "ll": gg.log_likelihood_,
                "iterations": gg.iterations_,
            },
        },
    }


def work_predict(path: str, models: str) -> dict:
    from rfmflow.predictive import customer_lifetime_value, load_model

    x, t_x, T, m_x = _load(path)
    saved = json.loads(Path(models).read_text())
    bg = load_model(saved["purchase"], time_unit="weeks")
    gg = load_model(saved["spend"])
    steps = {}
    t0 = time.perf_counter()
    p_alive = bg.p_alive(x, t_x, T)
    t1 = time.perf_counter()
    expected = bg.expected_purchases(90 / 7, x, t_x, T)
    t2 = time.perf_counter()
    spend = gg.expected_spend(x, m_x)
    t3 = time.perf_counter()
    clv = customer_lifetime_value(bg, spend, x, t_x, T, horizon=365 / 7, annual_discount_rate=0.10)
    t4 = time.perf_counter()
    steps["p_alive"] = {"seconds": t1 - t0, "mean": float(p_alive.mean())}
    steps["expected_purchases_90d"] = {"seconds": t2 - t1, "total": float(expected.sum())}
    steps["expected_spend"] = {"seconds": t3 - t2, "mean": float(spend.mean())}
    steps["clv_365d_monthly"] = {"seconds": t4 - t3, "total": float(clv.sum())}
    return {"seconds": t4 - t0, "steps": steps}


# --------------------------------------------------------------------------------------
# Workers and measurement
# --------------------------------------------------------------------------------------
def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_worker(name: str, path: str, models: str, budget_s: float) -> None:
    import numpy  # noqa: F401
    import scipy.optimize
    import scipy.special  # noqa: F401

    import rfmflow.predictive  # noqa: F401

    _load(path)  # warm the page cache; the arrays are loaded again inside the timed work
    idle = _current_rss_mb()
    before = resource.getrusage(resource.RUSAGE_SELF)
    if name == "baseline":
        result = work_baseline(path, budget_s)
    elif name == "fit":
        result = work_fit(path, models)
    else:
        result = work_predict(path, models)
    after = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result["peak_mb"] = _rss_mb()
    result["idle_mb"] = idle
    print(json.dumps(result))


def measure(name: str, path: Path, models: Path, budget_s: float) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        name,
        "--data",
        str(path),
        "--models",
        str(models),
        "--baseline-seconds",
        str(budget_s),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {name} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _load_avg() -> str:
    with open("/proc/loadavg") as fh:
        return fh.read().split()[0]


def _fmt_params(values: list[float], names: list[str]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in zip(names, values, strict=True))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="rfmflow.predictive fit/predict benchmark vs scipy Nelder-Mead")
    p.add_argument(
        "--customers", type=int, default=TARGET_CUSTOMERS, help="customers to simulate (default 1m)"
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--baseline-seconds",
        type=float,
        default=90.0,
        help="time budget of the Nelder-Mead baseline (default 90)",
    )
    p.add_argument("--skip-baseline", action="store_true", help="only time rfmflow")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--models", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        run_worker(args.worker, args.data, args.models, args.baseline_seconds)
        return 0

    import numpy as np
    import scipy

    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rfmbench_predict_") as tmp:
        data_path = Path(tmp) / "customers.npz"
        models_path = Path(tmp) / "models.json"
        print(f"simulating {args.customers:,} customers ...", file=sys.stderr)
        info = simulate(args.customers, args.seed, data_path)
        results = {}
        order = ["fit", "predict"] if args.skip_baseline else ["baseline", "fit", "predict"]
        for name in order:
            res = measure(name, data_path, models_path, args.baseline_seconds)
            print(
                f"  {name}: {res['seconds']:.2f}s (cpu {res['cpu']:.2f}s) peak {res['peak_mb']:.0f} MB, "
                f"load {_load_avg()}",
                file=sys.stderr,
            )
            results[name] = res

    fit, predict = results["fit"], results["predict"]
    base = results.get("baseline")
    bg_names, gg_names = list(TRUE_BGNBD), list(TRUE_GG)
    out = [
        f"rfmflow.predictive benchmark (numpy {np.__version__}, scipy {scipy.__version__}, "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs)",
        "",
        f"{info['customers']:,} customers simulated from BG/NBD + Gamma-Gamma (seed {args.seed}): "
        f"{info['repeat']:,} repeat buyers, {info['distinct']:,} distinct (x, t_x, T) rows, "
        f"max x {info['max_x']}",
        f"  {'step':<44} {'seconds':>8} {'x baseline':>11} {'CPU s':>7} {'peak RSS MB':>12} {'idle MB':>8}",
    ]

    def row(label: str, seconds: float, ratio: str, cpu: str, peak: str, idle: str) -> None:
        out.append(f"  {label:<44} {seconds:8.2f} {ratio:>11} {cpu:>7} {peak:>12} {idle:>8}")

    fit_bg, fit_gg = fit["steps"]["fit_bgnbd"], fit["steps"]["fit_gg"]
    if base:
        bb, bgg = base["steps"]["baseline_bgnbd"], base["steps"]["baseline_gg"]
        row(
            "baseline: Nelder-Mead BG/NBD + Gamma-Gamma",
            base["seconds"],
            "1.00x",
            f"{base['cpu']:.2f}",
            f"{base['peak_mb']:.0f}",
            f"{base['idle_mb']:.0f}",
        )
        for label, step in (("  BG/NBD", bb), ("  Gamma-Gamma", bgg)):
            row(label, step["seconds"], "", "", "", "")
    ratio = f"{fit['seconds'] / base['seconds']:.3f}x" if base else "-"
    row(
        "rfmflow fit: BGNBD + GammaGamma",
        fit["seconds"],
        ratio,
        f"{fit['cpu']:.2f}",
        f"{fit['peak_mb']:.0f}",
        f"{fit['idle_mb']:.0f}",
    )
    row("  BG/NBD", fit_bg["seconds"], "", "", "", "")
    row("  Gamma-Gamma", fit_gg["seconds"], "", "", "", "")
    row(
        "rfmflow predict (from JSON)",
        predict["seconds"],
        "",
        f"{predict['cpu']:.2f}",
        f"{predict['peak_mb']:.0f}",
        f"{predict['idle_mb']:.0f}",
    )
    labels = {
        "p_alive": "  p_alive",
        "expected_purchases_90d": "  expected_purchases, 90 days",
        "expected_spend": "  expected_spend",
        "clv_365d_monthly": "  CLV, 365 days, monthly steps, 10%/year",
    }
    for key, label in labels.items():
        row(label, predict["steps"][key]["seconds"], "", "", "", "")

    out.append("")
    out.append("  estimates (truth | rfmflow +- SE | baseline where it stopped):")
    out.append(f"    BG/NBD truth    {_fmt_params(list(TRUE_BGNBD.values()), bg_names)}")
    out.append(
        f"    BG/NBD rfmflow  {_fmt_params(fit_bg['params'], bg_names)}  "
        f"(SE {', '.join(f'{s:.2g}' for s in fit_bg['se'])}); LL {fit_bg['ll']:,.2f}, "
        f"{fit_bg['iterations']} L-BFGS-B iterations"
    )
    if base:
        out.append(
            f"    BG/NBD baseline {_fmt_params(bb['params'], bg_names)}; LL {bb['ll']:,.2f} "
            f"({bb['ll'] - fit_bg['ll']:+,.2f} vs rfmflow), {bb['evals']} evaluations, "
            f"{'converged' if bb['converged'] else 'stopped by its time budget'}"
        )
    out.append(f"    GG truth        {_fmt_params(list(TRUE_GG.values()), gg_names)}")
    out.append(
        f"    GG rfmflow      {_fmt_params(fit_gg['params'], gg_names)}  "
        f"(SE {', '.join(f'{s:.2g}' for s in fit_gg['se'])}); LL {fit_gg['ll']:,.2f}"
    )
    if base:
        out.append(
            f"    GG baseline     {_fmt_params(bgg['params'], gg_names)}; LL {bgg['ll']:,.2f} "
            f"({bgg['ll'] - fit_gg['ll']:+,.2f} vs rfmflow), {bgg['evals']} evaluations, "
            f"{'converged' if bgg['converged'] else 'stopped by its time budget'}"
        )
    out.append("")

    verdicts: list[tuple[bool, str]] = []
    if args.customers >= TARGET_CUSTOMERS:
        verdicts.append(
            (
                fit["seconds"] < FIT_TARGET_S,
                f"fit BG/NBD + GG {fit['seconds']:.2f}s (target < {FIT_TARGET_S:g} s)",
            )
        )
        verdicts.append(
            (
                predict["seconds"] < PREDICT_TARGET_S,
                f"predict {predict['seconds']:.2f}s (target < {PREDICT_TARGET_S:g} s)",
            )
        )
        peak = max(fit["peak_mb"], predict["peak_mb"])
        verdicts.append((peak < RSS_TARGET_MB, f"peak RSS {peak:,.0f} MB (target < {RSS_TARGET_MB:,.0f} MB)"))
    print("\n".join(out))
    if not verdicts:
        print(f"targets: not evaluated (they apply from {TARGET_CUSTOMERS:,} customers)")
    for ok, text in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    print(f"(total {time.perf_counter() - t_all:.0f}s, load {_load_avg()})")
    failed = any(not ok for ok, _ in verdicts)
    return 1 if (failed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())

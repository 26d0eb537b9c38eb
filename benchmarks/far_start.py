"""Plain Pyro models whose posterior lies far from the start: MAP, VI and SVGD against the
analytic posterior, with and without the MAP's L-BFGS rescue, next to Pyro's own MAP.

Three conjugate models, so that every answer is known in closed form:

* ``mean D``: ``mu ~ Normal(0, 1e5)``, 50 observations ``Normal(mu, 1)`` around ``D`` (D =
  50, 500, 5,000, 50,000): the posterior of ``mu`` is Gaussian;
* ``regression``: 3 coefficients of size 1e3 (``Normal(0, 1e4)`` prior), 100 rows of a
  correlated design, noise sd 1: a Gaussian posterior with correlated coordinates;
* ``precision``: ``tau ~ Gamma(1, 1e-3)``, 50 observations ``Normal(0, 1 / sqrt(tau))`` of
  sd 1e-6 (``tau`` 1e12, 28 units from the start in log space): a Gamma posterior, whose mode
  (the MAP) and mean (VI, SVGD) are both known.

Per problem and method, the error in posterior sds: ``|estimate - truth| / sd`` (the MAP
against the mode, VI and SVGD against the mean, coordinate-wise maximum), the ratio of the
fitted sd to the true one (VI, SVGD), whether a ``NotConvergedWarning`` was raised, and the
seconds. ``--no-rescue`` runs the library with the rescue switched off (its evaluations set to
0, which is the library before it). The peer: Pyro's MAP, ``AutoDelta`` guide with SVI and
Adam (``lr`` 0.02, the MAP's, 2000 steps, then the 4 runs' 8000), from Pyro's default start
(``init_to_median``).

Run: ``OMP_NUM_THREADS=1 python benchmarks/far_start.py [--no-rescue] [--out PATH]``
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bayestensor as bt  # noqa: E402
from bayestensor.infer import baselines  # noqa: E402

RESULTS = Path(__file__).parent / "results"
DISTANCES = (50.0, 500.0, 5000.0, 50000.0)
PRIOR_SD_MEAN, PRIOR_SD_COEF = 1e5, 1e4
GAMMA_A, GAMMA_B = 1.0, 1e-3
PYRO_STEPS = (2000, 8000)


def mean_problem(distance: float) -> dict:
    y = distance + torch.randn(50, generator=torch.Generator().manual_seed(0))

    def model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, PRIOR_SD_MEAN))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    precision = len(y) + PRIOR_SD_MEAN ** -2
    mean = float(y.double().sum()) / precision
    return {"model": model, "args": (y,), "site": "mu", "mode": np.array([mean]),
            "mean": np.array([mean]), "sd": np.array([precision ** -0.5])}


def regression_problem() -> dict:
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(100, 1, generator=gen)
    X = base + 0.3 * torch.randn(100, 3, generator=gen)  # correlated columns
    coef = torch.tensor([3000.0, -2000.0, 1000.0])
    y = X @ coef + torch.randn(100, generator=gen)

    def model(X, y):
        w = pyro.sample("w", dist.Normal(0.0, PRIOR_SD_COEF).expand([3]).to_event(1))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(X @ w, 1.0), obs=y)

    Xd, yd = X.double().numpy(), y.double().numpy()
    precision = Xd.T @ Xd + np.eye(3) * PRIOR_SD_COEF ** -2
    cov = np.linalg.inv(precision)
    mean = cov @ Xd.T @ yd
    return {"model": model, "args": (X, y), "site": "w", "mode": mean, "mean": mean,
            "sd": np.sqrt(np.diag(cov))}


def precision_problem() -> dict:
    y = 1e-6 * torch.randn(50, generator=torch.Generator().manual_seed(2))

    def model(y):
        tau = pyro.sample("tau", dist.Gamma(GAMMA_A, GAMMA_B))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(0.0, tau.rsqrt()), obs=y)

    shape = GAMMA_A + len(y) / 2
    rate = GAMMA_B + float((y.double() ** 2).sum()) / 2
    return {"model": model, "args": (y,), "site": "tau", "mode": np.array([(shape - 1) / rate]),
            "mean": np.array([shape / rate]), "sd": np.array([math.sqrt(shape) / rate])}


def problems() -> dict:
    out = {f"mean {d:g}": mean_problem(d) for d in DISTANCES}
    out["regression"] = regression_problem()
    out["precision"] = precision_problem()
    return out


def score(draws: np.ndarray, problem: dict, target: str) -> dict:
    """Error in posterior sds against ``target`` ("mode" or "mean"), and the sd ratio."""
    est = draws.mean(0)
    out = {"error_sds": float(np.max(np.abs(est - problem[target]) / problem["sd"]))}
    if draws.shape[0] > 1:
        out["sd_ratio"] = float(np.max(draws.std(0) / problem["sd"]))
    return out


def run_ours(problem: dict, method: str) -> dict:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        post = bt.fit(problem["model"], method=method, model_args=problem["args"], seed=0,
                      progress=False)
        seconds = time.perf_counter() - start
    draws = post[problem["site"]].double().reshape(-1, problem["sd"].size).numpy()
    warned = any(issubclass(w.category, bt.infer.NotConvergedWarning) for w in caught)
    return {**score(draws, problem, "mode" if method == "map" else "mean"),
            "warned": warned, "seconds": seconds, "map_finish": post.info.get("map_finish")}


def run_pyro_map(problem: dict, steps: int) -> dict:
    """Pyro's MAP: ``AutoDelta`` with SVI and Adam at the MAP's learning rate."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = pyro.infer.autoguide.AutoDelta(problem["model"])
    svi = pyro.infer.SVI(problem["model"], guide, pyro.optim.Adam({"lr": 0.02}),
                         pyro.infer.Trace_ELBO())
    start = time.perf_counter()
    for _ in range(steps):
        svi.step(*problem["args"])
    seconds = time.perf_counter() - start
    value = guide.median(*problem["args"])[problem["site"]].detach().double().reshape(1, -1)
    return {**score(value.numpy(), problem, "mode"), "seconds": seconds}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-rescue", action="store_true",
                        help="the MAP without its L-BFGS rescue (the library before it)")
    parser.add_argument("--no-pyro", action="store_true", help="skip Pyro's MAP")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.no_rescue:
        baselines.RESCUE_EVALS = 0
    rows = []
    for name, problem in problems().items():
        for method in ("map", "vi", "svgd"):
            row = {"problem": name, "method": f"ours {method}", **run_ours(problem, method)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        for steps in () if args.no_pyro else PYRO_STEPS:
            row = {"problem": name, "method": f"pyro map {steps}",
                   **run_pyro_map(problem, steps)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = args.out or RESULTS / ("far_start_no_rescue.json" if args.no_rescue
                                 else "far_start.json")
    RESULTS.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "torch": torch.__version__,
                               "threads": torch.get_num_threads(), "rescue": not args.no_rescue,
                               "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

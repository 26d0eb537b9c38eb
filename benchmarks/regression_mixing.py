"""SGHMC mixing on tensor regression: with and without the exact redraws.

The three problems of ``regression_vs_tensorly.py`` (cross, cp3, box; CP, gamma prior, max rank
6), SGHMC at its other defaults (4 chains x 1000 draws after 1000 burn-in steps) in three
variants: ``no_redraws`` (``factor_redraws=False``: only the noise precision is redrawn
exactly, the default before the redraws), ``factors_only`` (every 4 steps each factor and the
intercept redrawn from its Gaussian full conditional, :mod:`bayestensor.models.cp_regression_gibbs`,
and the noise precision) and ``factors_and_precisions`` (the same and the slice precisions
from their Gamma conditionals: the default). Per run: the largest R-hat and smallest bulk ESS
(ArviZ) of 200 held-out predictions and of the noise precision, 90% coverage of the noisy
held-out responses, the posterior mode of the effective rank, seconds.

Run: ``OMP_NUM_THREADS=1 python benchmarks/regression_mixing.py [--seeds 0,1,2]
[--problems cross,cp3,box] [--variants ...]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from pathlib import Path

import arviz as az
import numpy as np
import torch

import bayestensor as bt
from regression_vs_tensorly import PROBLEMS

RESULTS = Path(__file__).parent / "results"
VARIANTS = ("no_redraws", "factors_only", "factors_and_precisions")
HELD_OUT = 200


def rhat_ess(draws: np.ndarray) -> tuple[float, float]:
    """Largest R-hat and smallest bulk ESS over the trailing dimension of ``(C, D, ...)``."""
    data = az.convert_to_dataset({"x": draws})
    return float(np.max(az.rhat(data)["x"].values)), float(np.min(az.ess(data)["x"].values))


def run(problem: str, seed: int, variant: str, format: str = "cp") -> dict:
    data = PROBLEMS[problem]["make"](seed)
    model = bt.TensorRegression(data.input_shape, format=format,
                                max_rank=PROBLEMS[problem]["over"])
    options = {"no_redraws": {"factor_redraws": False},
               "factors_only": {"factor_redraws": True, "gibbs": {
                   "noise_precision": model.noise_a + len(data.train[1]) / 2}},
               "factors_and_precisions": {"factor_redraws": True}}[variant]
    start = time.perf_counter()
    post = bt.fit(model, data.train, method="sghmc", seed=seed, progress=False, **options)
    seconds = time.perf_counter() - start
    c, d = post.num_chains, post.num_draws
    pred = post.predict(data.X_test[:HELD_OUT])
    rhat_pred, ess_pred = rhat_ess(pred.draws.double().numpy().reshape(c, d, -1))
    rhat_noise, ess_noise = rhat_ess(post["noise_precision"].double().numpy().reshape(c, d))
    return {"problem": problem, "format": format, "seed": seed, "variant": variant,
            "seconds": round(seconds, 1), "draws": d,
            "gibbs_sites": post.info["gibbs_sites"], "factor_redraws": post.info["factor_redraws"],
            "rhat_prediction_max": rhat_pred, "ess_prediction_min": ess_pred,
            "rhat_noise": rhat_noise, "ess_noise": ess_noise,
            "coverage90": post.predict(data.X_test).coverage(data.y_test, 0.9),
            "rank_mode": int(post.effective_rank().mode()[0]),
            "rank_modes": [int(r) for r in post.effective_rank().mode()]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--problems", default="cross,cp3,box")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--formats", default="cp", help="comma list of cp, tucker, tt")
    parser.add_argument("--out", type=Path, default=RESULTS / "regression_mixing.json")
    args = parser.parse_args(argv)
    rows = []
    seeds = [int(s) for s in args.seeds.split(",")]
    for format, problem, seed, variant in itertools.product(
            args.formats.split(","), args.problems.split(","), seeds, args.variants.split(",")):
        rows.append(run(problem, seed, variant, format))
        print(json.dumps(rows[-1]), flush=True)
    out = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                       "threads": torch.get_num_threads()}, "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()

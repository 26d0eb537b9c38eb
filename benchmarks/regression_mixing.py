"""SGHMC mixing on tensor regression: with and without the exact redraws.

The three problems of ``regression_vs_tensorly.py`` (cross, cp3, box; CP, gamma prior, max rank
6), SGHMC at its other defaults (4 chains x 1000 draws after 1000 burn-in steps) in three
variants: ``no_redraws`` (``factor_redraws=False``: only the noise precision is redrawn
exactly, the default before the redraws), ``factors_only`` (every 4 steps each factor and the
intercept redrawn from its Gaussian full conditional, :mod:`bayestensor.models.regression_gibbs`,
and the noise precision) and ``factors_and_precisions`` (the same and the slice precisions
from their Gamma conditionals: the default). Per run: the largest R-hat and smallest bulk ESS
(ArviZ) of 200 held-out predictions and of the noise precision, 90% coverage of the noisy
held-out responses, the posterior mode of the effective rank, seconds. ``--formats`` runs
Tucker and TT too; ``--likelihood bernoulli`` fits 0/1 labels drawn from the same responses
(``binary_labels``) and scores accuracy and log loss in place of the noise and coverage.

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


def binary_labels(y: np.ndarray, reference: np.ndarray, seed: int) -> np.ndarray:
    """0/1 labels drawn with probability ``sigmoid(2 z)``, ``z`` the responses standardized
    by the training responses' (``reference``) mean and sd."""
    z = (y - reference.mean()) / reference.std()
    return (np.random.default_rng(seed).random(len(y)) < 1 / (1 + np.exp(-2 * z))).astype(float)


def binary_scores(probabilities, labels: np.ndarray) -> dict:
    """Held-out ``accuracy`` and ``log_loss`` of predicted probabilities of label 1."""
    p = np.clip(np.asarray(probabilities).ravel(), 1e-12, 1 - 1e-12)
    return {"accuracy": float(np.mean((p > 0.5) == (labels > 0.5))),
            "log_loss": float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))}


def run(problem: str, seed: int, variant: str, format: str = "cp",
        likelihood: str = "gaussian") -> dict:
    data = PROBLEMS[problem]["make"](seed)
    model = bt.TensorRegression(data.input_shape, format=format, likelihood=likelihood,
                                max_rank=PROBLEMS[problem]["over"])
    X, y = data.train
    y_test = data.y_test
    if likelihood == "bernoulli":
        y, y_test = binary_labels(y, data.y_train, seed), binary_labels(y_test, data.y_train,
                                                                         seed + 1000)
    options = {"no_redraws": {"factor_redraws": False},
               "factors_only": {"factor_redraws": True, "gibbs": {
                   "noise_precision": model.noise_a + len(y) / 2}},
               "factors_and_precisions": {"factor_redraws": True}}[variant]
    start = time.perf_counter()
    post = bt.fit(model, (X, y), method="sghmc", seed=seed, progress=False, **options)
    seconds = time.perf_counter() - start
    c, d = post.num_chains, post.num_draws
    pred = post.predict(data.X_test[:HELD_OUT])
    rhat_pred, ess_pred = rhat_ess(pred.draws.double().numpy().reshape(c, d, -1))
    row = {"problem": problem, "format": format, "likelihood": likelihood, "seed": seed,
           "variant": variant, "seconds": round(seconds, 1), "draws": d,
           "gibbs_sites": post.info["gibbs_sites"], "factor_redraws": post.info["factor_redraws"],
           "rhat_prediction_max": rhat_pred, "ess_prediction_min": ess_pred,
           "rank_mode": int(post.effective_rank().mode()[0]),
           "rank_modes": [int(r) for r in post.effective_rank().mode()],
           "prior_step_caps": post.info.get("prior_step_caps")}
    full = post.predict(data.X_test)
    if likelihood == "bernoulli":
        row.update(binary_scores(full.mean, y_test))
        return row
    rhat_noise, ess_noise = rhat_ess(post["noise_precision"].double().numpy().reshape(c, d))
    row.update(rhat_noise=rhat_noise, ess_noise=ess_noise,
               coverage90=full.coverage(y_test, 0.9))
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--problems", default="cross,cp3,box")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--formats", default="cp", help="comma list of cp, tucker, tt")
    parser.add_argument("--likelihood", default="gaussian", choices=("gaussian", "bernoulli"),
                        help="bernoulli: labels drawn from the responses (binary_labels)")
    parser.add_argument("--out", type=Path, default=RESULTS / "regression_mixing.json")
    args = parser.parse_args(argv)
    rows = []
    seeds = [int(s) for s in args.seeds.split(",")]
    for format, problem, seed, variant in itertools.product(
            args.formats.split(","), args.problems.split(","), seeds, args.variants.split(",")):
        rows.append(run(problem, seed, variant, format, args.likelihood))
        print(json.dumps(rows[-1]), flush=True)
    out = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                       "threads": torch.get_num_threads()}, "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()

"""SGHMC under the log-uniform prior: where the chains start and how its scales are redrawn.

(``--prior half_cauchy`` runs the same problems under the half-Cauchy prior, whose scales
have had their redraws all along: there ``redraws`` is the former default and
``noncentred`` the default for a Gaussian response since it was measured against NUTS.)

The three problems of ``regression_vs_tensorly.py`` (cross, cp3, box; max rank 6) in CP,
Tucker and TT format, SGHMC at its defaults (4 chains, draws until converged), in three
variants:

- ``joint``: the chains start at the joint mode and the slice scales move by SGHMC alone (the
  former default);
- ``redraws``: the joint mode, and the scales redrawn from their truncated Gamma conditionals
  (:class:`~bayestensor.priors.conditionals.LogUniformConditional`);
- ``noncentred_only``: the non-centred start (below) without the redraws;
- ``noncentred``: the redraws, from the mode of the non-centred parametrization
  (:attr:`TensorRegression.sghmc_start_noncentred
  <bayestensor.models.TensorRegression.sghmc_start_noncentred>`): the default.

Per run: held-out RMSE and 90% coverage of 1,000 noisy held-out responses, the posterior mode
and distribution of the effective rank (of the first rank dimension) and each slice's
activity probability, the largest R-hat and smallest bulk ESS (ArviZ) of 200 held-out
predictions, the draws per chain and seconds. ``--nuts`` adds NUTS (4 x 300 draws after 300
warm-up steps, CP only) as the reference posterior. ``--likelihood bernoulli`` fits 0/1
labels drawn from the responses (``regression_mixing.binary_labels``) and scores held-out
accuracy and log loss in place of RMSE and coverage.

Run: ``OMP_NUM_THREADS=1 python benchmarks/log_uniform_start.py [--seeds 0,1,2]
[--problems cross,cp3,box] [--formats cp,tucker,tt] [--variants joint,redraws,noncentred]
[--nuts]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import torch

import bayestensor as bt
from bayestensor.priors.conditionals import LogUniformConditional
from regression_mixing import HELD_OUT, binary_labels, binary_scores, rhat_ess
from bayestensor.data.regression import synthetic_cp_regression
from regression_vs_tensorly import PROBLEMS as SHARED_PROBLEMS

RESULTS = Path(__file__).parent / "results"
#: The shared problems and ``box`` at a lower signal-to-noise ratio, where a slice the data
#: need is weak enough for the joint mode to switch it off.
PROBLEMS = {**SHARED_PROBLEMS, **{
    f"box{snr}db": dict(make=lambda seed, snr=snr: synthetic_cp_regression(
        (7, 8, 9), rank=3, n_train=400, n_test=1000, snr_db=snr, seed=seed), over=6)
    for snr in (0, 5)}}
VARIANTS = ("joint", "redraws", "noncentred_only", "noncentred")


def variant_options(model, data, variant: str) -> dict:
    """``fit`` options of a variant: ``joint`` and ``noncentred_only`` pass the default
    redraws minus the log-uniform scales'."""
    if variant not in ("joint", "noncentred_only"):
        return {}
    model.set_data(data)
    conditionals = model.gibbs_sites(factor_redraws=True)
    return {"gibbs": {name: c for name, c in conditionals.items()
                      if not isinstance(c, LogUniformConditional)}}


def run(problem: str, fmt: str, seed: int, variant: str, prior: str = "log_uniform",
        likelihood: str = "gaussian") -> dict:
    data = PROBLEMS[problem]["make"](seed)
    model = bt.TensorRegression(data.input_shape, format=fmt, prior=prior,
                                max_rank=PROBLEMS[problem]["over"], likelihood=likelihood)
    (X, y), y_test = data.train, data.y_test
    if likelihood == "bernoulli":
        y = binary_labels(y, data.y_train, seed)
        y_test = binary_labels(y_test, data.y_train, seed + 1000)
    if variant == "nuts":
        method, options = "nuts", {"num_samples": 300, "num_warmup": 300, "num_chains": 4}
    else:
        method, options = "sghmc", variant_options(model, (X, y), variant)
    noncentred = variant.startswith("noncentred")
    start_objective = mock.patch.object(bt.TensorRegression, "sghmc_start_noncentred",
                                        property(lambda self: noncentred))
    start = time.perf_counter()
    with start_objective:
        post = bt.fit(model, (X, y), method=method, seed=seed, progress=False, **options)
    seconds = time.perf_counter() - start
    c, d = post.num_chains, post.num_draws
    pred = post.predict(data.X_test[:HELD_OUT])
    rhat, ess = rhat_ess(pred.draws.double().numpy().reshape(c, d, -1))
    full = post.predict(data.X_test)
    ranks = post.effective_rank()
    mean = np.asarray(full.mean).ravel()
    if likelihood == "bernoulli":
        scores = binary_scores(mean, y_test)
    else:
        scores = {"rmse": float(np.sqrt(np.mean((mean - y_test) ** 2))),
                  "coverage90": full.coverage(y_test, 0.9)}
    return {"problem": problem, "format": fmt, "seed": seed, "variant": variant, "prior": prior,
            "likelihood": likelihood, **scores,
            "rank_mode": [int(r) for r in ranks.mode()],
            "rank_distribution": {int(k): round(float(v), 3)
                                  for k, v in ranks.distribution().items()},
            "slice_activity": [round(float(a), 3) for a in ranks.activity()],
            "rhat_prediction_max": rhat, "ess_prediction_min": ess, "draws": d,
            "seconds": round(seconds, 1), "start": post.info.get("start_objective", "joint"),
            "gibbs_sites": post.info.get("gibbs_sites")}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--problems", default="cross,cp3,box")
    parser.add_argument("--formats", default="cp,tucker,tt", help="comma list of cp, tucker, tt")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--nuts", action="store_true", help="NUTS as the reference (CP only)")
    parser.add_argument("--prior", default="log_uniform", choices=("log_uniform", "half_cauchy"))
    parser.add_argument("--likelihood", default="gaussian", choices=("gaussian", "bernoulli"),
                        help="bernoulli: labels drawn from the responses (binary_labels)")
    parser.add_argument("--part", type=int, default=0, help="Run cases k with k %% parts == part.")
    parser.add_argument("--parts", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "log_uniform_start.json")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    cases = list(itertools.product(args.problems.split(","), args.formats.split(","), seeds,
                                   args.variants.split(",")))
    if args.nuts:
        cases += [(p, "cp", s, "nuts") for p in args.problems.split(",") for s in seeds]
    rows = []
    for k, case in enumerate(cases):
        if k % args.parts == args.part:
            rows.append(run(*case, prior=args.prior, likelihood=args.likelihood))
            print(json.dumps(rows[-1]), flush=True)
    out = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                       "torch": torch.__version__, "threads": torch.get_num_threads()},
           "args": {k: str(v) for k, v in vars(args).items()}, "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()

"""MAP with and without the hand-over from Adam to L-BFGS (``fit(method="map", quasi_newton=...)``).

For each problem and seed, the same model is fitted with ``quasi_newton=False`` (Adam alone,
the earlier default) and with ``True``: seconds, the final log joint, held-out relative error,
the posterior-mode rank, Adam steps and L-BFGS evaluations. ``"auto"`` (the default) is
``True`` for the CP problems and ``False`` for Tucker and TT, whose rows show why.

Problems: tensor regression (``bayestensor.data.regression``, 10 dB, max rank 6) "box" 7x8x9
rank 3 n=400, "cp3" 10x10x10 rank 3 n=600, "cross" 32x32 rank 2 n=500, and "cross-tucker"
(the cross with a Tucker weight); completion of a 30^3 tensor (20% observed, 10 dB, max rank
8, ``map_hold=None``) of CP, Tucker and TT rank 3.

Run: ``OMP_NUM_THREADS=1 python benchmarks/map_quasi_newton.py [--seeds 0 1 2]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import bayestensor as bt
from bayestensor.data.regression import synthetic_cp_regression, synthetic_image_regression

RESULTS = Path(__file__).parent / "results"


def regression(make, fmt="cp"):
    def build(seed):
        data = make(seed)
        model = bt.TensorRegression(data.input_shape, format=fmt, max_rank=6)
        return model, data.train, {}, lambda post: data.relative_error(
            post.predict(data.X_test).mean)
    return build


def completion(fmt):
    def build(seed):
        data = bt.data.synthetic_tensor((30, 30, 30), rank=3, format=fmt, snr_db=10,
                                        observed=0.2, seed=seed)
        model = bt.TensorCompletion(data.shape, format=fmt, max_rank=8)
        return model, data.train, {"map_hold": None}, lambda post: data.relative_error(
            post.predict(data.test.indices).mean)
    return build


PROBLEMS = {
    "box": regression(lambda s: synthetic_cp_regression((7, 8, 9), rank=3, n_train=400,
                                                        n_test=1000, seed=s)),
    "cp3": regression(lambda s: synthetic_cp_regression((10, 10, 10), rank=3, n_train=600,
                                                        n_test=1000, seed=s)),
    "cross": regression(lambda s: synthetic_image_regression("cross", size=32, n_train=500,
                                                             n_test=1000, seed=s)),
    "cross-tucker": regression(lambda s: synthetic_image_regression(
        "cross", size=32, n_train=500, n_test=1000, seed=s), fmt="tucker"),
    "completion-cp": completion("cp"),
    "completion-tucker": completion("tucker"),
    "completion-tt": completion("tt"),
}


def run(build, seed, quasi_newton):
    model, data, options, error = build(seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = bt.fit(model, data, method="map", seed=seed, progress=False,
                      quasi_newton=quasi_newton, **options)
    seconds = time.perf_counter() - start
    return {"quasi_newton": quasi_newton, "seconds": seconds,
            "log_joint": post.info["map_objective"], "error": error(post),
            "rank": post.effective_rank().mode().tolist(), "adam_steps": post.info["map_steps"],
            "lbfgs_evals": post.info["map_quasi_newton_evals"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    run(PROBLEMS["box"], 0, True)  # warm-up: imports and first-call costs are not timed
    rows = []
    for name in args.problems:
        for seed in args.seeds:
            for qn in (False, True):
                rows.append({"problem": name, "seed": seed, **run(PROBLEMS[name], seed, qn)})
                print(json.dumps(rows[-1]), flush=True)
    print(f"{'problem':<18} {'speed-up':>8} {'Adam s':>7} {'L-BFGS s':>8} {'d log joint':>11} "
          f"{'err Adam':>8} {'err L-BFGS':>10}  ranks Adam / L-BFGS")
    for name in args.problems:
        adam = [r for r in rows if r["problem"] == name and not r["quasi_newton"]]
        qn = [r for r in rows if r["problem"] == name and r["quasi_newton"]]
        speed = np.median([a["seconds"] / q["seconds"] for a, q in zip(adam, qn)])
        gap = np.median([q["log_joint"] - a["log_joint"] for a, q in zip(adam, qn)])
        print(f"{name:<18} {speed:8.2f} {np.median([r['seconds'] for r in adam]):7.2f} "
              f"{np.median([r['seconds'] for r in qn]):8.2f} {gap:11.3f} "
              f"{np.median([r['error'] for r in adam]):8.4f} "
              f"{np.median([r['error'] for r in qn]):10.4f}  "
              f"{[r['rank'] for r in adam]} / {[r['rank'] for r in qn]}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "map_quasi_newton.json"
    out.write_text(json.dumps({"machine": platform.platform(), "torch": torch.__version__,
                               "args": vars(args), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""How a MAP fit ends: Adam alone, Adam then L-BFGS, or Adam then the model's block ascent.

For each problem and seed, the same model is fitted with each ``--finishes``: ``adam``
(``quasi_newton=False``, the earliest default), ``lbfgs`` (``quasi_newton=True,
block_ascent=False``: 100 Adam steps, then L-BFGS) and ``block`` (``quasi_newton=True,
block_ascent=True``: 100 Adam steps, then the closed-form block ascent of
``bayestensor.models.cp_block_ascent``, offered by the CP models under the gamma prior only);
seconds, the final log joint, held-out relative error, the posterior-mode rank, Adam steps and
L-BFGS evaluations or sweeps. The defaults (``"auto"``) are ``block`` for the CP problems and
``adam`` for Tucker and TT, whose ``lbfgs`` rows show why.

Problems: tensor regression (``bayestensor.data.regression``, 10 dB, max rank 6) "box" 7x8x9
rank 3 n=400, "cp3" 10x10x10 rank 3 n=600, "cross" 32x32 rank 2 n=500, and "cross-tucker"
(the cross with a Tucker weight); completion of a 30^3 tensor (20% observed, 10 dB, max rank
8, ``map_hold=None``) of CP, Tucker and TT rank 3, and of a TT-matrix of rank 3 on a 13^4 and an
8^4 tensor (``completion-ttm``, ``completion-ttm-small``; two cores, so one scale per entry as
in CP, without CP's block ascent).

Run: ``OMP_NUM_THREADS=1 python benchmarks/map_quasi_newton.py [--seeds 0 1 2] [--finishes adam
lbfgs block] [--problems ...] [--tag TAG]``
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


def completion(fmt, shape=(30, 30, 30)):
    def build(seed):
        data = bt.data.synthetic_tensor(shape, rank=3, format=fmt, snr_db=10,
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
    "completion-ttm": completion("ttm", (13, 13, 13, 13)),
    "completion-ttm-small": completion("ttm", (8, 8, 8, 8)),
}


FINISHES = {"adam": {"quasi_newton": False, "block_ascent": False},
            "lbfgs": {"quasi_newton": True, "block_ascent": False},
            "block": {"quasi_newton": True, "block_ascent": True}}


def run(build, seed, finish):
    model, data, options, error = build(seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = bt.fit(model, data, method="map", seed=seed, progress=False,
                      **FINISHES[finish], **options)
    seconds = time.perf_counter() - start
    return {"finish": finish, "seconds": seconds, "log_joint": post.info["map_objective"],
            "error": error(post), "rank": post.effective_rank().mode().tolist(),
            "adam_steps": post.info["map_steps"],
            "lbfgs_evals_or_sweeps": post.info["map_quasi_newton_evals"],
            "ended_by": post.info["map_finish"]}


def offers_block_ascent(build) -> bool:
    model, data, _, _ = build(0)
    model.set_data(data)
    return model.block_ascent() is not None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    parser.add_argument("--finishes", nargs="+", default=list(FINISHES), choices=list(FINISHES))
    parser.add_argument("--tag", default="", help="suffix of the result file name")
    args = parser.parse_args()
    torch.set_num_threads(1)
    run(PROBLEMS["box"], 0, "lbfgs")  # warm-up: imports and first-call costs are not timed
    rows = []
    for name in args.problems:
        finishes = [f for f in args.finishes
                    if f != "block" or offers_block_ascent(PROBLEMS[name])]
        for seed in args.seeds:
            for finish in finishes:
                rows.append({"problem": name, "seed": seed, **run(PROBLEMS[name], seed, finish)})
                print(json.dumps(rows[-1]), flush=True)
    print(summary(rows, args.problems, args.finishes))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"map_quasi_newton{'_' + args.tag if args.tag else ''}.json"
    out.write_text(json.dumps({"machine": platform.platform(), "torch": torch.__version__,
                               "args": vars(args), "rows": rows}, indent=2))
    print(f"wrote {out}")


def summary(rows, problems, finishes) -> str:
    """Per problem: median seconds, error and ranks per finish, and each finish's median
    per-seed speed-up and log-joint gain over the first finish."""
    lines = []
    for name in problems:
        by = {f: [r for r in rows if r["problem"] == name and r["finish"] == f] for f in finishes}
        by = {f: sel for f, sel in by.items() if sel}
        base_name, base = next(iter(by.items()))
        parts = [f"{name}:"]
        for f, sel in by.items():
            speed = np.median([b["seconds"] / r["seconds"] for b, r in zip(base, sel)])
            gain = np.median([r["log_joint"] - b["log_joint"] for b, r in zip(base, sel)])
            parts.append(f"{f} {np.median([r['seconds'] for r in sel]):.2f} s "
                         f"(x{speed:.2f} vs {base_name}, d log joint {gain:+.3f}), "
                         f"error {np.median([r['error'] for r in sel]):.4f}, "
                         f"ranks {[r['rank'] for r in sel]};")
        lines.append(" ".join(parts))
    return "\n".join(lines)


if __name__ == "__main__":
    main()

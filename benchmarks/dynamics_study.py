"""Learning-dynamics study: FA vs GD vs FA* across seeds and ranks; lazy vs rich across m and alpha.

Part A (matrix factorization, ``Y`` 30 x 20 of rank 6, singular values 1 .. 0.2): for each model
rank ``r`` and learner, over seeds (instance, feedback matrix and start all vary): the final
error relative to the Eckart-Young optimum, the success rate (reaches the optimum, excess <
1e-6) with a Wilson interval, the largest gap between FA's error and the zero-init prediction
(projection of ``Y`` on ``col(Y B^T)``), the final row-space alignment and the smallest
eigenvalue of the symmetric part of ``W B^T``.

Part B (symmetric order-3 tensor, ``d = 10``, rank ``r = 2``): rich GD from scale ``alpha`` and
the lazy (linearized) model at the same start, for ``m`` components and ``alpha``; final
relative errors (median; mean with a bootstrap interval) and recovery rates (error < 1e-3) with
Wilson intervals.

Run: ``python benchmarks/dynamics_study.py [--seeds 10] [--quick] [--threads 1]``; prints tables
and writes ``benchmarks/results/dynamics_study.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bayestensor.dynamics import (FactorizationLearner, FactorizationProblem, OverparamLearner,
                                  TensorProblem, compare)

RESULTS = Path(__file__).parent / "results"


def part_a(seeds: int, ranks, steps: int, rank_y: int) -> list[dict]:
    rows = []
    learners = [FactorizationLearner(rule, steps=steps) for rule in ("gd", "fa", "fa_star")]
    for r in ranks:
        start = time.perf_counter()
        res = compare(FactorizationProblem(n=30, m=20, rank=rank_y, r=r), learners, seeds,
                      progress=False)
        secs = time.perf_counter() - start
        summ = res.summary(["error", "excess", "ey_ratio", "alignment_row", "sym_min_eig",
                            "projection_gap"])
        succ = res.success_table()
        for lrn in res.learners:
            s = summ[summ.learner == lrn].set_index("metric")
            p = succ[succ.learner == lrn].iloc[0]
            gap = res.dataset["projection_gap"].sel(learner=lrn).values
            rows.append({
                "r": r, "rank_y": rank_y, "learner": lrn, "seeds": seeds,
                "error_mean": s.loc["error", "mean"],
                "excess_mean": s.loc["excess", "mean"],
                "excess_mean_ci": [s.loc["excess", "ci_low"], s.loc["excess", "ci_high"]],
                "ey_ratio_median": s.loc["ey_ratio", "median"],
                "success": p["p"], "success_ci": [p["ci_low"], p["ci_high"]],
                "max_abs_projection_gap": float(np.nanmax(np.abs(gap))),
                "alignment_row_mean": s.loc["alignment_row", "mean"],
                "sym_min_eig_min": float(np.nanmin(res.dataset["sym_min_eig"].sel(learner=lrn).values)),
                "seconds_per_run": secs / (seeds * len(learners)),
            })
    return rows


def part_b(seeds: int, ms, alphas, steps: int, d: int, r: int) -> list[dict]:
    rows = []
    for m in ms:
        for alpha in alphas:
            learners = [OverparamLearner("rich", alpha, steps, name="rich"),
                        OverparamLearner("lazy", alpha, steps=200, name="lazy")]
            start = time.perf_counter()
            res = compare(TensorProblem(d=d, r=r, m=m), learners, seeds, progress=False)
            secs = time.perf_counter() - start
            summ = res.summary(["error"])
            succ = res.success_table()
            for lrn in ("rich", "lazy"):
                s = summ[summ.learner == lrn].iloc[0]
                p = succ[succ.learner == lrn].iloc[0]
                rows.append({"m": m, "alpha": alpha, "learner": lrn, "seeds": seeds,
                             "error_median": s["median"], "error_mean": s["mean"],
                             "error_mean_ci": [s["ci_low"], s["ci_high"]],
                             "recovered": p["p"], "recovered_ci": [p["ci_low"], p["ci_high"]],
                             "seconds_per_run": secs / (2 * seeds)})
    return rows


def _table(rows, cols):
    head = " ".join(f"{c:>14}" for c in cols)
    lines = [head, "-" * len(head)]
    for row in rows:
        cells = []
        for c in cols:
            v = row[c]
            if isinstance(v, float):
                cells.append(f"{v:14.3g}")
            elif isinstance(v, list):
                cells.append(f"{v[0]:6.2g},{v[1]:<7.2g}")
            else:
                cells.append(f"{str(v):>14}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="Fewer ranks, m and alpha (a smoke run).")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "dynamics_study.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        ranks, ms, alphas = (3, 6), (2, 10), (0.03, 0.3)
    else:
        ranks, ms, alphas = (2, 4, 6, 8), (2, 4, 10, 20), (0.01, 0.03, 0.1, 0.3)
    start = time.perf_counter()
    a = part_a(args.seeds, ranks, steps=3000, rank_y=6)
    print("A. Matrix factorization Y 30x20, rank 6 (FA/FA* from zero init, GD from scale 1e-3)")
    print(_table(a, ["r", "learner", "error_mean", "ey_ratio_median", "success", "success_ci",
                     "max_abs_projection_gap", "alignment_row_mean", "sym_min_eig_min"]))
    b = part_b(max(2, args.seeds // 2), ms, alphas, steps=1500, d=10, r=2)
    print("\nB. Symmetric order-3 tensor d=10, rank 2: rich GD vs lazy (linearized) model")
    print(_table(b, ["m", "alpha", "learner", "error_median", "error_mean", "error_mean_ci",
                     "recovered", "recovered_ci"]))
    total = time.perf_counter() - start
    out = {
        "command": "python benchmarks/dynamics_study.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "processor": platform.processor() or platform.machine(),
                    "threads": args.threads},
        "seconds": total, "factorization": a, "overparam": b,
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=float))
    print(f"\n{total:.0f} s; wrote {path}")


if __name__ == "__main__":
    main()

"""Mean-field VI on small Tucker and TT tensors: how many runs its convergence rule takes.

``vi_fit`` continues a run while a coordinate of ``q`` is still travelling, up to four runs of
3,000 steps. A rank-3 CP tensor (TT ranks (3, 3), Tucker (3, 3, 3)) at 20 dB and 30% observed
is completed at max rank 6 by ``bt.fit(..., method="vi")`` at its defaults (``q`` started at
the MAP), under each rank prior.

Per run: seconds, Adam steps taken, whether the fit says it converged (and the sites it names
as still moving), the effective rank (mode), the held-out relative error against the
noise-free truth and the 90% predictive coverage of the noisy held-out entries.

Run: ``OMP_NUM_THREADS=1 python benchmarks/vi_rounds.py [--seeds 3] [--formats tt tucker]
[--priors gamma half_cauchy log_uniform] [--shape 12 9 12] [--out FILE]``
"""

from __future__ import annotations

import json
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import bayestensor as bt
from tables import groups, runs_parser, write_result

RESULTS = Path(__file__).parent / "results"


def run(data, fmt: str, prior: str, seed: int) -> dict:
    """One VI fit at its defaults, with the warnings it raised."""
    model = bt.TensorCompletion(data.shape, fmt, max_rank=6, prior=prior)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post = bt.fit(model, data.train, method="vi", seed=seed, progress=False)
    seconds = time.perf_counter() - start
    pred = post.predict(data.test.indices)
    low, high = pred.interval(0.9)
    noisy = data.test_noisy.values.numpy()
    moving = [str(w.message) for w in caught if issubclass(w.category, bt.infer.NotConvergedWarning)]
    return {"seconds": round(seconds, 2), "steps": post.info["vi_steps"],
            "converged": post.info["vi_converged"], "warnings": moving,
            "rank_found": [int(r) for r in post.effective_rank().mode()],
            "error": data.relative_error(pred.mean),
            "coverage90": float(np.mean((noisy >= low) & (noisy <= high)))}


def main(argv=None) -> dict:
    parser = runs_parser(__doc__, RESULTS / "vi_rounds.json", ["tt", "tucker"],
                         ["gamma", "half_cauchy", "log_uniform"], ["tucker", "tt"])
    parser.add_argument("--shape", nargs="+", type=int, default=[12, 9, 12])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for seed in range(args.seeds):
        data = bt.data.synthetic_tensor(tuple(args.shape), rank=3, snr_db=20, observed=0.3,
                                        n_test=2000, seed=seed)
        for fmt in args.formats:
            for prior in args.priors:
                row = {"format": fmt, "prior": prior, "seed": seed,
                       **run(data, fmt, prior, seed)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    summary = []
    for fmt, prior, sel in groups(rows, args.formats, args.priors):
        summary.append({"format": fmt, "prior": prior,
                        "steps": [r["steps"] for r in sel],
                        "warned": sum(bool(r["warnings"]) for r in sel),
                        "errors": [round(r["error"], 4) for r in sel],
                        "coverage90": [round(r["coverage90"], 3) for r in sel],
                        "median_seconds": statistics.median(r["seconds"] for r in sel)})
        print(json.dumps(summary[-1]))
    return write_result(args, rows, summary)


if __name__ == "__main__":
    main()

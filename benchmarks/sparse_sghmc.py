"""SGHMC at its defaults on few observations of a small tensor: does the run complete?

A rank-3 CP tensor of 12 x 9 x 12 entries at 10 dB, 10% or 20% observed (130 or 259 entries),
completed with SGHMC at its defaults (chains from the MAP) at max rank 6 under the gamma and
half-Cauchy priors, for the formats whose slice hyper-parameters SGHMC redraws exactly (Tucker,
TT). Where the data barely determine the tensor the chains roam the funnels of the slice scales,
so this is where the sampler's step, adapted in burn-in, meets states it has not seen. Per
run: whether it diverged (and at which step), the largest R-hat the report checks, the
posterior's effective rank (mode), the held-out relative error against the noise-free truth and
seconds.

Run: ``OMP_NUM_THREADS=1 python benchmarks/sparse_sghmc.py [--seeds 3] [--first-seed 0]
[--formats tucker tt]
[--priors gamma half_cauchy] [--observed 0.1 0.2] [--out FILE]``
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import torch

import bayestensor as bt
from tables import groups, runs_parser, write_result

RESULTS = Path(__file__).parent / "results"
SHAPE, SNR_DB, MAX_RANK = (12, 9, 12), 10.0, 6


def run(data, fmt: str, prior: str, seed: int) -> dict:
    """One SGHMC fit at its defaults; a divergence is recorded, not raised."""
    model = bt.TensorCompletion(data.shape, fmt, max_rank=MAX_RANK, prior=prior)
    start = time.perf_counter()
    try:
        post = bt.fit(model, data.train, method="sghmc", seed=seed, progress=False)
    except bt.DivergenceError as err:
        return {"diverged": str(err), "seconds": round(time.perf_counter() - start, 2)}
    check = post.diagnostics()
    return {"diverged": None, "seconds": round(time.perf_counter() - start, 2),
            "max_rhat": float(check["max_rhat"]), "converged": bool(check["converged"]),
            "rank_found": [int(r) for r in post.effective_rank().mode()],
            "error": data.relative_error(post.predict(data.test.indices).mean)}


def main(argv=None) -> dict:
    parser = runs_parser(__doc__, RESULTS / "sparse_sghmc.json", ["tucker", "tt"],
                         ["gamma", "half_cauchy"], ["tucker", "tt"])
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--observed", nargs="+", type=float, default=[0.1, 0.2])
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    rows = []
    for observed in args.observed:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            data = bt.data.synthetic_tensor(SHAPE, rank=3, snr_db=SNR_DB, observed=observed,
                                            n_test=2000, seed=seed)
            for fmt in args.formats:
                for prior in args.priors:
                    row = {"observed": observed, "seed": seed, "format": fmt, "prior": prior,
                           **run(data, fmt, prior, seed)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    summary = []
    for fmt, prior, sel in groups(rows, args.formats, args.priors):
        done = [r for r in sel if r["diverged"] is None]
        summary.append({"format": fmt, "prior": prior, "runs": len(sel),
                        "diverged": len(sel) - len(done),
                        "converged": sum(r["converged"] for r in done),
                        "errors": [round(r["error"], 3) for r in done]})
        print(json.dumps(summary[-1]))
    return write_result(args, rows, summary)


if __name__ == "__main__":
    main()

"""SGHMC at its defaults on data without low-rank structure: does the run complete?

A tensor of pure Gaussian noise (20^3, 30% observed), completed with SGHMC at its defaults
(max rank 8 unless ``--max-rank``) under the gamma and half-Cauchy priors, for the formats whose slice
hyper-parameters SGHMC redraws exactly (Tucker, TT). Where nothing is to be found the prior
switches every slice off and the chains walk the funnel of the slice scales, so this is where
a sampler's exact redraws are stressed. Per run: whether it diverged (and at which step), the
largest R-hat the report checks and whether it says converged, the posterior's effective rank
(mode) and seconds.

Run: ``OMP_NUM_THREADS=1 python benchmarks/pure_noise_sghmc.py [--seeds 3] [--formats tucker
tt] [--priors gamma half_cauchy] [--max-rank 8] [--out FILE]``
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import bayestensor as bt
from tables import runs_parser, write_result

RESULTS = Path(__file__).parent / "results"
SHAPE, OBSERVED = (20, 20, 20), 0.3


def noise_tensor(seed: int) -> np.ndarray:
    """Standard normal entries, NaN where unobserved (30% observed)."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=SHAPE)
    values[rng.random(SHAPE) >= OBSERVED] = np.nan
    return values


def run(fmt: str, prior: str, seed: int, max_rank: int) -> dict:
    """One SGHMC fit at its defaults; a divergence is recorded, not raised."""
    model = bt.TensorCompletion(SHAPE, fmt, max_rank=max_rank, prior=prior)
    row = {"format": fmt, "prior": prior, "seed": seed, "max_rank": max_rank}
    start = time.perf_counter()
    try:
        post = bt.fit(model, noise_tensor(seed), method="sghmc", seed=seed, progress=False)
    except bt.DivergenceError as err:
        return {**row, "seconds": round(time.perf_counter() - start, 1), "diverged": str(err)}
    diagnostics = post.diagnostics()
    return {**row, "seconds": round(time.perf_counter() - start, 1), "diverged": None,
            "draws": int(post.num_draws), "max_rhat": round(diagnostics["max_rhat"], 3),
            "converged": bool(diagnostics["converged"]),
            "rank": [int(r) for r in post.effective_rank().mode()]}


def main(argv=None) -> dict:
    parser = runs_parser(__doc__, RESULTS / "pure_noise_sghmc.json", ["tucker", "tt"],
                         ["gamma", "half_cauchy"], ["cp", "tucker", "tt"])
    parser.add_argument("--max-rank", type=int, default=8)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    rows = []
    for fmt in args.formats:
        for prior in args.priors:
            for seed in range(args.seeds):
                rows.append(run(fmt, prior, seed, args.max_rank))
                print(json.dumps(rows[-1]), flush=True)
    diverged = sum(r["diverged"] is not None for r in rows)
    summary = {"runs": len(rows), "diverged": diverged}
    print(json.dumps(summary))
    return write_result(args, rows, summary)


if __name__ == "__main__":
    main()

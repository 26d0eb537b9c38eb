"""SGHMC at its defaults against NUTS on pure noise: the rank posterior and the warning.

A 12 x 10 x 8 tensor of standard normal noise, half of its entries observed, completed in CP
format at max rank 5 under the gamma prior: SGHMC at ``fit``'s defaults (4 chains, drawing
until converged) and NUTS (4 chains x 500 draws after 500 warm-up steps, the reference
posterior). Per run: the effective rank's distribution, the median over draws of the low-rank
part's rms over every cell (the signal a draw claims), the rms of the posterior mean, the
largest R-hat and smallest bulk ESS of the identified quantities, the draws per chain, whether
``fit`` warned that the chains did not pass their check, and seconds.

Run: ``OMP_NUM_THREADS=1 python benchmarks/noise_chains_vs_nuts.py [--seeds 0 1 2] [--out FILE]``
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import bayestensor as bt
from tables import write_result

RESULTS = Path(__file__).parent / "results"
SHAPE, OBSERVED, MAX_RANK = (12, 10, 8), 0.5, 5
METHODS = {"sghmc": {}, "nuts": {"num_samples": 500, "num_warmup": 500}}


def noise_tensor(seed: int) -> np.ndarray:
    """Standard normal entries, NaN where unobserved."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=SHAPE)
    values[rng.random(SHAPE) < 1 - OBSERVED] = np.nan
    return values


def run(method: str, seed: int) -> dict:
    model = bt.TensorCompletion(SHAPE, "cp", max_rank=MAX_RANK)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", bt.infer.ChainsNotConvergedWarning)
        post = bt.fit(model, noise_tensor(seed), method=method, seed=seed, progress=False,
                      **METHODS[method])
    seconds = time.perf_counter() - start
    ranks = np.asarray(post.effective_rank().ranks).reshape(-1)
    cells = torch.as_tensor(np.argwhere(np.ones(SHAPE)))
    draws = post.predict(cells).draws.double().numpy().reshape(-1, len(cells))
    check = post.diagnostics()
    return {"method": method, "seed": seed, "seconds": round(seconds, 1),
            "draws": int(post.num_draws),
            "rank_distribution": (np.bincount(ranks, minlength=MAX_RANK + 1)
                                  / len(ranks)).round(3).tolist(),
            "signal_rms_per_draw": round(float(np.median(np.sqrt((draws ** 2).mean(1)))), 3),
            "posterior_mean_rms": round(float(np.sqrt((draws.mean(0) ** 2).mean())), 3),
            "max_rhat": round(check["max_rhat"], 3), "min_ess_bulk": round(check["min_ess_bulk"]),
            "warned": any(issubclass(w.category, bt.infer.ChainsNotConvergedWarning)
                          for w in caught)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS / "noise_chains_vs_nuts.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for seed in args.seeds:
        for method in METHODS:
            rows.append(run(method, seed))
            print(json.dumps(rows[-1]), flush=True)
    summary = {"warned": {m: sum(r["warned"] for r in rows if r["method"] == m)
                          for m in METHODS}}
    print(json.dumps(summary))
    return write_result(args, rows, summary)


if __name__ == "__main__":
    main()

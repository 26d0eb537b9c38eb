"""The closed-form VI with and without the slices rescaled across modes after each sweep.

``CPGammaVariational._balance`` rescales each slice's rows across the modes (product 1) to the
scales that maximize the ELBO at the current slice precisions. This fits the default method
(the closed-form VI from the starting values) on synthetic CP completions with the rescaling
and with it replaced by the identity, in one process, and reports per case the sweeps, whether
the fit settled, the final ELBO, the held-out error (noise-free truth) and the seconds.

Run: ``python benchmarks/vi_balance.py`` (under a minute, one thread). Writes
``benchmarks/results/vi_balance.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import torch

import bayestensor as bt
from bayestensor.models.cp_variational import CPGammaVariational

RESULTS = Path(__file__).parent / "results"
#: (shape, true rank, observed fraction, SNR in dB, max rank)
CASES = [((40, 30, 6), 3, 0.3, 15, 10), ((30, 30, 30), 3, 0.2, 10, 8),
         ((20, 15, 10), 3, 0.3, 10, 8), ((50, 50, 50), 10, 0.2, 20, 15)]


def unbalanced(self, means, covs, lowers, e_lam):
    """The identity in ``_balance``'s place: the rows as the sweep left them."""
    squares = sum(m.pow(2).sum(0) + torch.diagonal(s, dim1=-2, dim2=-1).sum(0)
                  for m, s in zip(means, covs))
    return means, covs, lowers, squares


def one_fit(shape, rank, observed, snr_db, max_rank, seed, balanced: bool) -> dict:
    data = bt.data.synthetic_tensor(shape, rank=rank, snr_db=snr_db, observed=observed,
                                    n_test=1000, seed=seed)
    model = bt.TensorCompletion(shape, "cp", max_rank=max_rank)
    original = CPGammaVariational._balance
    if not balanced:
        CPGammaVariational._balance = unbalanced
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            post = bt.fit(model, data.train, seed=seed, progress=False)
            seconds = time.perf_counter() - t0
    finally:
        CPGammaVariational._balance = original
    return {"shape": list(shape), "rank": rank, "observed": observed, "snr_db": snr_db,
            "seed": seed, "balanced": balanced, "sweeps": post.info["vi_sweeps"],
            "converged": post.info["vi_converged"],
            "elbo": max(post.info["vi_noise_starts"].values()),
            "error": data.relative_error(post.predict(data.test.indices).mean),
            "rank_found": int(post.effective_rank().mode()[0]), "seconds": seconds}


def main() -> dict:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(1)
    runs = []
    for case in CASES:
        for seed in (0, 1):
            for balanced in (True, False):
                runs.append(one_fit(*case, seed, balanced))
                print(json.dumps(runs[-1]), flush=True)
    out = {"runs": runs, "machine": platform.platform(), "torch": torch.__version__}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "vi_balance.json").write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()

"""The default CP fit (closed-form VI) on data without low-rank structure, and where there is.

The coordinate ascent from the model's starting values can settle with slices that fit noise;
the fit now also sweeps from a null start (one slice at a thousandth of its size, the model
without a low-rank part) and keeps the higher ELBO
(:meth:`~bayestensor.models.cp_variational.CPGammaVariational.fit`). Two parts:

* ``noise``: standard normal noise at the cells a tensor's observed fraction occupies (20^3 at
  30% and 10%, 30^3 at 20%), max rank 8, under each rank prior; per run the default fit's
  effective rank (mode), its low-rank part's rms over the data's sd (``signal``, mean over
  draws), the rms of its predicted means at 2,000 cells it did not see (the truth there is
  0), seconds, and the published VB's (BCPF, ``benchmarks/baselines/bcpf.py``, gamma only)
  components kept and its low-rank part's rms at the observed cells;
* ``structure``: the rank study's seven settings and six small CP tensors of rank 3
  (``benchmarks/vi_noise_start.py``'s), the default fit's rank, held-out error against the
  noise-free truth, seconds and the starts it ran (``info["vi_noise_starts"]``).

Run: ``OMP_NUM_THREADS=1 python benchmarks/vi_null_start.py --part noise|structure
[--seeds 6] [--priors gamma half_cauchy log_uniform] [--out FILE]``
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import bayestensor as bt
from baselines.bcpf import bcpf
from tables import PRIORS, write_result
from vi_noise_start import SETTINGS

RESULTS = Path(__file__).parent / "results"
#: (shape, observed fraction) of the pure-noise runs.
NOISE_CELLS = [((20, 20, 20), 0.3), ((20, 20, 20), 0.1), ((30, 30, 30), 0.2)]
MAX_RANK = 8


def pure_noise(shape, observed: float, seed: int):
    """Standard normal values at the observed cells and at 2,000 cells not observed."""
    cells = bt.data.synthetic_tensor(shape, rank=3, snr_db=0, observed=observed, n_test=2000,
                                     seed=seed)
    noise = torch.randn(len(cells.train), generator=torch.Generator().manual_seed(seed))
    return bt.Observations(cells.train.indices, noise, shape), cells.test.indices


def noise_run(shape, observed: float, seed: int, prior: str) -> dict:
    train, unseen = pure_noise(shape, observed, seed)
    model = bt.TensorCompletion(shape, "cp", max_rank=MAX_RANK, prior=prior)
    start = time.perf_counter()
    post = bt.fit(model, train, seed=seed, progress=False)
    seconds = time.perf_counter() - start
    ranks = post.effective_rank()
    row = {"shape": list(shape), "observed": observed, "seed": seed, "prior": prior,
           "rank": int(ranks.mode()[0]), "signal": float(ranks.signal.mean()),
           "unseen_rms": float(np.sqrt(np.mean(post.predict(unseen).mean ** 2))),
           "seconds": round(seconds, 3), "starts": sorted(post.info["vi_noise_starts"])}
    if prior == "gamma":
        vb = bcpf(train.indices, train.values, shape, MAX_RANK)
        fitted = vb.predict(train.indices, kind="mean")[0]
        row["bcpf"] = {"rank": int(vb.rank),
                       "signal": float(np.sqrt(np.mean(fitted ** 2)) / train.values.std())}
    return row


def structure_run(shape, rank, observed, snr, max_rank, seed) -> dict:
    data = bt.data.synthetic_tensor(shape, rank=rank, snr_db=snr, observed=observed, seed=seed)
    model = bt.TensorCompletion(data.shape, "cp", max_rank=max_rank)
    start = time.perf_counter()
    post = bt.fit(model, data.train, seed=seed, progress=False)
    seconds = time.perf_counter() - start
    return {"shape": list(shape), "true_rank": rank, "observed": observed, "snr_db": snr,
            "max_rank": max_rank, "seed": seed, "rank": int(post.effective_rank().mode()[0]),
            "error": data.relative_error(post.predict(data.test.indices).mean),
            "seconds": round(seconds, 3), "starts": sorted(post.info["vi_noise_starts"])}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["noise", "structure"], required=True)
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--priors", nargs="+", default=list(PRIORS), choices=PRIORS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.out = args.out or RESULTS / f"vi_null_start_{args.part}.json"
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    rows = []
    if args.part == "noise":
        for prior in args.priors:
            for shape, observed in NOISE_CELLS:
                for seed in range(args.seeds):
                    rows.append(noise_run(shape, observed, seed, prior))
                    print(rows[-1], flush=True)
        summary = {prior: {"rank_zero": sum(r["rank"] == 0 for r in rows if r["prior"] == prior),
                           "runs": sum(r["prior"] == prior for r in rows),
                           "median_signal": float(np.median([r["signal"] for r in rows
                                                             if r["prior"] == prior]))}
                   for prior in args.priors}
    else:
        for setting in SETTINGS:
            for seed in range(args.seeds):
                rows.append(structure_run(*setting, seed))
                print(rows[-1], flush=True)
        summary = {"exact_rank": sum(r["rank"] == r["true_rank"] for r in rows),
                   "runs": len(rows), "seconds": sum(r["seconds"] for r in rows)}
    return write_result(args, rows, summary)


if __name__ == "__main__":
    main()

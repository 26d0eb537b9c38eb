"""Where SVGD's particles start on a CP completion: the jittered MAP or the closed-form VI's draws.

SVGD's ``init_from="auto"`` starts a CP completion's particles from draws of the closed-form VI
(:func:`~bayestensor.infer.auto_options.settle_svgd`); ``"map"`` was the default before. Both
starts, in one process, on the same data and seeds, every other option at its default:

* ``noise``: standard normal values at the cells of 20^3 at 30% and 10% and 30^3 at 20%, max
  rank 8; per run the effective rank (mode) and the rms of the predicted means at 1,000 cells
  not observed (the truth there is 0);
* ``structure``: the rank study's 30^3 settings (their max ranks); per run the effective
  rank, the held-out error against the noise-free truth, the 90% coverage of those entries by
  the credible interval (``kind="mean"``) and seconds.

Run: ``OMP_NUM_THREADS=1 python benchmarks/svgd_start.py --part noise|structure [--seeds 3]
[--out FILE]``
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import bayestensor as bt
from tables import write_result
from vi_null_start import NOISE_CELLS, pure_noise

RESULTS = Path(__file__).parent / "results"
STARTS = ("map", "vi")
#: The rank study's 30^3 settings: (true rank, observed fraction, SNR dB, max rank).
STRUCTURE = [(3, 0.2, 10, 8), (3, 0.1, 0, 8), (5, 0.5, 20, 10), (10, 0.5, 20, 20),
             (10, 0.2, 10, 20)]


def fit(train, shape, max_rank: int, start: str, seed: int):
    model = bt.TensorCompletion(shape, "cp", max_rank=max_rank)
    begin = time.perf_counter()
    post = bt.fit(model, train, method="svgd", init_from=start, seed=seed, progress=False)
    return post, round(time.perf_counter() - begin, 2)


def noise_rows(seeds: int) -> list[dict]:
    rows = []
    for shape, observed in NOISE_CELLS:
        for seed in range(seeds):
            train, unseen = pure_noise(shape, observed, seed)
            for start in STARTS:
                post, seconds = fit(train, shape, 8, start, seed)
                rows.append({"shape": list(shape), "observed": observed, "seed": seed,
                             "start": start, "rank": int(post.effective_rank().mode()[0]),
                             "unseen_rms": float(np.sqrt(np.mean(post.predict(unseen).mean ** 2))),
                             "seconds": seconds})
                print(rows[-1], flush=True)
    return rows


def structure_rows(seeds: int) -> list[dict]:
    rows = []
    for rank, observed, snr, max_rank in STRUCTURE:
        for seed in range(seeds):
            data = bt.data.synthetic_tensor((30, 30, 30), rank=rank, snr_db=snr,
                                            observed=observed, n_test=1000, seed=seed)
            for start in STARTS:
                post, seconds = fit(data.train, data.shape, max_rank, start, seed)
                pred = post.predict(data.test.indices)
                rows.append({"true_rank": rank, "observed": observed, "snr_db": snr,
                             "seed": seed, "start": start,
                             "rank": int(post.effective_rank().mode()[0]),
                             "error": data.relative_error(pred.mean),
                             "coverage90": float(pred.coverage(data.test.values, 0.9,
                                                               kind="mean")),
                             "seconds": seconds})
                print(rows[-1], flush=True)
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["noise", "structure"], required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.out = args.out or RESULTS / f"svgd_start_{args.part}.json"
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    rows = noise_rows(args.seeds) if args.part == "noise" else structure_rows(args.seeds)
    keys = ["rank", "unseen_rms", "seconds"] if args.part == "noise" else \
        ["error", "coverage90", "seconds"]
    summary = {start: {key: float(np.median([r[key] for r in rows if r["start"] == start]))
                       for key in keys} for start in STARTS}
    return write_result(args, rows, summary)


if __name__ == "__main__":
    main()

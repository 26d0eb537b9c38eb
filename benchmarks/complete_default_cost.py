"""What `bayestensor complete` costs at its default on a larger tensor, against `--method map`.

A 100 x 100 x 100 CP-rank-5 tensor at 10 dB with 10% of its entries observed (100,000), saved
with NaN for the missing entries, completed by the command line at its defaults (for CP under
the gamma prior: the closed-form VI, 1,000 draws) and with `--method map` (one draw), max rank
10, no report. Per run: the command's wall seconds, the fit's seconds (`posterior.pt`'s
`info["seconds"]`; the rest is reading, predicting every entry from every draw and writing),
the rank found and the held-out error of the noise-free truth on 10,000 unobserved entries.

Run: ``OMP_NUM_THREADS=1 python benchmarks/complete_default_cost.py``
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import bayestensor as bt

RESULTS = Path(__file__).parent / "results"
RUNS = {"default": [], "map": ["--method", "map"]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS / "complete_default_cost.json")
    args = parser.parse_args(argv)
    data = bt.data.synthetic_tensor((args.size,) * 3, rank=5, snr_db=10, observed=0.1,
                                    n_test=10_000, seed=0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dense = np.full(data.shape, np.nan)
        dense[tuple(data.train.indices.numpy().T)] = data.train.values.numpy()
        np.save(Path(tmp) / "x.npy", dense)
        for label, extra in RUNS.items():
            out = Path(tmp) / label
            start = time.perf_counter()
            subprocess.run([str(Path(sys.executable).parent / "bayestensor"), "complete",
                            str(Path(tmp) / "x.npy"), "--max-rank", "10", "--quiet",
                            "--no-report", "--out", str(out), *extra], check=True)
            seconds = time.perf_counter() - start
            post = bt.Posterior.load(out / "posterior.pt")
            mean = np.load(out / "predictions.npz")["mean"]
            test = tuple(data.test.indices.numpy().T)
            rows.append({"run": label, "method": post.method, "seconds": round(seconds, 1),
                         "fit_seconds": round(post.info["seconds"], 1),
                         "draws": post.num_chains * post.num_draws,
                         "rank_found": post.effective_rank().mode().tolist(),
                         "error": data.relative_error(mean[test])})
            print(json.dumps(rows[-1]), flush=True)
    result = {"size": args.size, "observed": len(data.train),
              "machine": {"cpu": platform.machine(), "torch": torch.__version__}, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

"""Peak memory of an SGHMC fit against the number of draws it keeps.

SGHMC keeps every chain's whole position at every kept draw, so its memory grows with the
draws; drawing until converged bounds the kept draws at
:data:`bayestensor.infer.stopping.MAX_KEPT_BYTES`. This measures what a kept draw costs at the
peak: a 300^3 CP completion (true rank 10, 50,000 entries at 20 dB, max rank 20: 18,000
parameters), 4 chains, 200 burn-in steps, ``num_samples`` drawn exactly, one fresh process per
size (its ``ru_maxrss``). It reports the bytes a kept draw holds, the peak's growth per draw
between the smallest and the largest run, and their ratio (the posterior is built from the
kept draws, so the peak holds more than one copy of them).

Run: ``python benchmarks/kept_draws_memory.py [--draws 250 1000 2000]`` (about 3 minutes,
one thread). Writes ``benchmarks/results/kept_draws_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"
SHAPE, TRUE_RANK, MAX_RANK, OBSERVED, CHAINS = (300, 300, 300), 10, 20, 50_000, 4


def one_fit(draws: int) -> dict:
    """Fit once with ``draws`` draws per chain; peak resident memory and the kept bytes."""
    import bayestensor as bt
    from bayestensor.infer.stopping import draw_bytes

    torch.set_num_threads(1)
    data = bt.data.synthetic_tensor(SHAPE, rank=TRUE_RANK, snr_db=20,
                                    observed=OBSERVED / torch.tensor(SHAPE).prod().item(),
                                    n_test=1000, seed=0)
    model = bt.TensorCompletion(SHAPE, "cp", max_rank=MAX_RANK)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = bt.fit(model, data.train, method="sghmc", num_samples=draws, num_warmup=200,
                      map_steps=200, num_chains=CHAINS, seed=0, progress=False)
    dim = sum(v[0, 0].numel() for v in post.samples.values())
    one = {"theta": torch.zeros(CHAINS, dim), "potential": torch.zeros(CHAINS),
           "grad_norm": torch.zeros(CHAINS)}  # what SGHMC records per kept draw
    return {"draws": draws, "parameters": dim, "bytes_per_draw": draw_bytes(one),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "seconds": time.perf_counter() - t0}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, nargs="+", default=[250, 1000, 2000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS / "kept_draws_memory.json")
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one_fit(args.one)))
        return {}
    runs = []
    for draws in args.draws:
        done = subprocess.run([sys.executable, __file__, "--one", str(draws)], check=True,
                              capture_output=True, text=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]))
    low, high = runs[0], runs[-1]
    per_draw = (high["peak_rss_mib"] - low["peak_rss_mib"]) * 2 ** 20 / (high["draws"] - low["draws"])
    out = {"runs": runs, "peak_bytes_per_draw": per_draw,
           "peak_per_kept_byte": per_draw / high["bytes_per_draw"],
           "machine": platform.platform(), "torch": torch.__version__}
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}))
    return out


if __name__ == "__main__":
    main()

"""SGHMC's MAP start at two step budgets: does it converge, and how long does it take?

SGHMC's chains start at a MAP point fitted from the starting values in ``map_steps`` Adam
steps, the rate decaying 10x over that budget; a start that ends with coordinates still moving
is warned about (``NotConvergedWarning``). This fits the start alone (SGHMC with 10 burn-in
steps and 10 draws, so the time is the start's) on small synthetic completions in CP, Tucker
and TT format (10 dB, max rank 8, seeds 0 and 1), at each budget given, one case after the
other in one process, and reports per case the Adam steps taken, whether the start converged,
the warning and the seconds; then per budget the starts warned about and the seconds summed.

Run: ``python benchmarks/sghmc_map_start.py [--budgets 1000 2000]`` (about 2 minutes, one
thread). Writes ``benchmarks/results/sghmc_map_start.json``.
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

RESULTS = Path(__file__).parent / "results"
#: (shape, observed fraction, true rank) of the completions.
PROBLEMS = [((30, 30, 30), 0.2, 3), ((26, 24, 22), 0.3, 4), ((20, 15, 10), 0.3, 3),
            ((40, 30, 6), 0.3, 3)]


def one_start(fmt: str, shape, observed: float, rank: int, seed: int, budget: int) -> dict:
    data = bt.data.synthetic_tensor(shape, rank=rank, snr_db=10, observed=observed, n_test=10,
                                    seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bt.TensorCompletion(shape, fmt, max_rank=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        post = bt.fit(model, data.train, method="sghmc", num_samples=10, num_warmup=10,
                      seed=seed, progress=False, map_steps=budget)
        seconds = time.perf_counter() - t0
    start_warnings = [str(w.message) for w in caught if "MAP start" in str(w.message)]
    return {"format": fmt, "shape": list(shape), "observed": observed, "seed": seed,
            "map_steps": budget, "adam_steps": post.info["map_steps"],
            "converged": post.info["map_converged"], "warning": start_warnings,
            "seconds": seconds}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[1000, 2000])
    parser.add_argument("--out", type=Path, default=RESULTS / "sghmc_map_start.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = []
    for fmt in ("cp", "tucker", "tt"):
        for shape, observed, rank in PROBLEMS:
            for seed in (0, 1):
                for budget in args.budgets:
                    runs.append(one_start(fmt, shape, observed, rank, seed, budget))
                    print(json.dumps({k: v for k, v in runs[-1].items() if k != "warning"}),
                          flush=True)
    summary = {str(b): {"warned": sum(bool(r["warning"]) for r in runs if r["map_steps"] == b),
                        "runs": sum(r["map_steps"] == b for r in runs),
                        "seconds": sum(r["seconds"] for r in runs if r["map_steps"] == b)}
               for b in args.budgets}
    print(json.dumps(summary))
    out = {"summary": summary, "runs": runs, "machine": platform.platform(),
           "torch": torch.__version__}
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()

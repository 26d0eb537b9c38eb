"""Whether SVGD's particles settled, on mini-batches: the Stein ratio on a batch and on all data.

SVGD judges its final particles by the Stein ratio (``|phi|`` against the sum of its two
terms' sizes; 0 at a fixed point). On mini-batches a batch's ratio stays high by gradient
noise alone, so the run judges the particles on all the data
(``info["full_batch_stein_ratio"]``). This runs SVGD at its defaults and stopped early on
built-in completions (20 dB, 20% observed, 10% and 2% batches) and on a logistic regression
with a sub-sampled Pyro plate (2,000 observations, batches of 200), and records both ratios,
the verdict and the held-out error (completions) or the posterior mean (regression).

Run: ``python benchmarks/svgd_settled.py`` (about 5 minutes, one thread). Writes
``benchmarks/results/svgd_settled.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch

import bayestensor as bt

RESULTS = Path(__file__).parent / "results"
#: name: (shape, true rank, format, max rank)
COMPLETIONS = {"cp30": ((30, 30, 30), 3, "cp", 8), "tucker30": ((30, 30, 30), 3, "tucker", 6),
               "tt30": ((30, 30, 30), 3, "tt", 6), "cp50_rank10": ((50, 50, 50), 10, "cp", 15)}
#: (case, batch fraction, steps)
COMPLETION_RUNS = [(name, 0.1, steps) for name in COMPLETIONS for steps in (500, 50)] + [
    ("cp30", 0.02, 500), ("cp30", 0.1, 150)]
#: (steps, init_from) of the logistic regression
REGRESSION_RUNS = [(500, "auto"), (500, "prior"), (2000, "prior"), (20, "prior"), (100, "prior")]
N, P, BATCH = 2000, 5, 200


def verdict(post) -> dict:
    return {"full_batch_stein_ratio": post.info.get("full_batch_stein_ratio"),
            "batch_stein_ratio": float(post.info["final_kernel_stats"]["stein_ratio"]),
            "svgd_converged": post.info.get("svgd_converged")}


def completion_run(name: str, fraction: float, steps: int) -> dict:
    shape, rank, fmt, max_rank = COMPLETIONS[name]
    data = bt.data.synthetic_tensor(shape, rank=rank, snr_db=20, observed=0.2, n_test=1000,
                                    seed=0)
    model = bt.TensorCompletion(shape, fmt, max_rank=max_rank)
    t0 = time.perf_counter()
    post = bt.fit(model, data.train, method="svgd", batch_size=int(fraction * len(data.train)),
                  num_steps=steps, seed=0, progress=False)
    error = float(data.relative_error(post.predict(data.test.indices).mean))
    return {"case": name, "batch_fraction": fraction, "steps": steps, **verdict(post),
            "heldout_error": error, "seconds": time.perf_counter() - t0}


def logistic(X, y):
    beta = pyro.sample("beta", dist.Normal(torch.zeros(P), 1.0).to_event(1))
    with pyro.plate("n", N, subsample_size=BATCH) as idx:
        pyro.sample("y", dist.Bernoulli(logits=X[idx] @ beta), obs=y[idx])


def regression_run(steps: int, init_from: str) -> dict:
    gen = torch.Generator().manual_seed(0)
    X, w = torch.randn(N, P, generator=gen), torch.randn(P, generator=gen)
    y = (torch.rand(N, generator=gen) < torch.sigmoid(X @ w)).float()
    t0 = time.perf_counter()
    post = bt.fit(logistic, method="svgd", model_args=(X, y), num_steps=steps,
                  init_from=init_from, seed=0, progress=False)
    return {"case": "logistic", "steps": steps, "init_from": init_from, **verdict(post),
            "beta_mean": post["beta"].mean((0, 1)).tolist(),
            "seconds": time.perf_counter() - t0}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "svgd_settled.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for spec in COMPLETION_RUNS:
            runs.append(completion_run(*spec))
            print(json.dumps(runs[-1]), flush=True)
        for spec in REGRESSION_RUNS:
            runs.append(regression_run(*spec))
            print(json.dumps(runs[-1]), flush=True)
    out = {"runs": runs, "machine": platform.platform(), "torch": torch.__version__}
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()

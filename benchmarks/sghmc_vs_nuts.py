"""SGHMC vs NUTS on the same CP completion model: effective samples per second.

For each problem size, both samplers run on the built-in ``TensorCompletion`` model (same data,
same start), each at its defaults; SGHMC takes mini-batches of 10% above 10,000 observations. ESS is ArviZ's bulk ESS, computed for the noise precision and for the
reconstruction of 50 held-out entries (median over entries); ESS/s divides by the whole wall
time including warm-up. Held-out relative error and 90% coverage are reported beside it.

NUTS runs once per entry of ``--nuts-processes``: ``auto`` (the library's default, one worker
process per chain up to the cores) and ``1`` (its chains one after another in this process,
with ``--threads`` threads). Both draw the same numbers; only the wall time differs. The
ratios are taken against the last entry.

Run: ``python benchmarks/sghmc_vs_nuts.py [--sizes 30,40,50] [--threads 2]
[--nuts-processes 1,auto]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import arviz as az
import numpy as np
import torch

import bayestensor as bt

RESULTS = Path(__file__).parent / "results"


def ess_bulk(draws: np.ndarray) -> float:
    """Bulk ESS of ``(chain, draw)`` draws."""
    return float(az.ess(np.asarray(draws, dtype=np.float64), method="bulk"))


def evaluate(post, data, seconds, name, n_obs):
    test_idx = data.test.indices[:50]
    flat = post.flat_samples()
    mu, _ = post.model.predict_entries(flat, test_idx)
    mu = mu.reshape(post.num_chains, post.num_draws, -1).numpy()
    ess_entries = [ess_bulk(mu[..., k]) for k in range(mu.shape[-1])]
    ess_tau = ess_bulk(post.samples["noise_precision"].numpy())
    pred = post.predict(data.test.indices)
    return {"sampler": name, "observations": n_obs, "seconds": seconds,
            "chains": post.num_chains, "draws": post.num_draws,
            "ess_noise_precision": ess_tau, "ess_per_s_noise_precision": ess_tau / seconds,
            "ess_entries_median": float(np.median(ess_entries)),
            "ess_per_s_entries": float(np.median(ess_entries)) / seconds,
            "heldout_rel_err": data.relative_error(pred.mean),
            "coverage90_noisy": pred.coverage(data.test_noisy.values.numpy(), 0.9)}


def run_size(size: int, observed: float, seed: int, args) -> list[dict]:
    data = bt.data.synthetic_tensor((size, size, size), rank=3, snr_db=10, observed=observed,
                                        seed=seed)
    n_obs = len(data.train)
    rows = []
    model = bt.TensorCompletion(data.shape, "cp", max_rank=args.max_rank)
    batch = None if n_obs <= 10_000 else max(2_000, n_obs // 10)
    start = time.perf_counter()
    post = bt.fit(model, data.train, method="sghmc", num_chains=4, num_samples=args.sghmc_draws,
                  num_warmup=args.sghmc_warmup, batch_size=batch, seed=seed, progress=False)
    rows.append(evaluate(post, data, time.perf_counter() - start,
                         f"sghmc (4 chains{', batch ' + str(batch) if batch else ''})", n_obs))
    for processes in args.nuts_processes.split(","):
        processes = processes if processes == "auto" else int(processes)
        start = time.perf_counter()
        post = bt.fit(model, data.train, method="nuts", num_chains=args.nuts_chains,
                      num_samples=args.nuts_draws, num_warmup=args.nuts_warmup,
                      max_tree_depth=args.tree_depth, seed=seed, progress=False,
                      processes=processes)
        name = (f"nuts ({args.nuts_chains} chains, {post.info['nuts_processes']} "
                f"process{'es' if post.info['nuts_processes'] > 1 else ''})")
        rows.append(evaluate(post, data, time.perf_counter() - start, name, n_obs))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="30,40,50")
    parser.add_argument("--observed", type=float, default=0.2)
    parser.add_argument("--max-rank", type=int, default=8)
    parser.add_argument("--sghmc-draws", type=int, default=1000)
    parser.add_argument("--sghmc-warmup", type=int, default=1000)
    parser.add_argument("--nuts-draws", type=int, default=200)
    parser.add_argument("--nuts-warmup", type=int, default=200)
    parser.add_argument("--tree-depth", type=int, default=8)
    parser.add_argument("--nuts-chains", type=int, default=2)
    parser.add_argument("--nuts-processes", default="auto",
                        help="comma-separated: 'auto' and/or process counts, one NUTS run each")
    parser.add_argument("--out", type=Path, default=RESULTS / "sghmc_vs_nuts.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        group = run_size(size, args.observed, args.seed, args)
        nuts = group[-1]
        for r in group:
            r["ess_per_s_ratio_vs_nuts_entries"] = r["ess_per_s_entries"] / nuts["ess_per_s_entries"]
            r["ess_per_s_ratio_vs_nuts_noise"] = (r["ess_per_s_noise_precision"]
                                                  / nuts["ess_per_s_noise_precision"])
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
        rows += group
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    out.write_text(json.dumps({"machine": platform.platform(), "torch": torch.__version__,
                               "args": settings, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""SGHMC mixing at default settings: R-hat and ESS of held-out entries per format and prior.

Completes a 26 x 24 x 22 rank-4 CP tensor (20% observed, 10 dB, ``max_rank=8``) with SGHMC,
4 chains x 1000 draws after 1000 burn-in steps, and reports the worst and median R-hat and the
smallest bulk ESS (ArviZ) of 200 held-out entries, the noise precision's R-hat, the held-out
relative error and the adapted step multipliers. ``--former`` runs the former defaults (a fixed
``lr=0.01``, every chain at the MAP point, ``noise_estimate=0``) for comparison.

Run: ``python benchmarks/sghmc_mixing.py cp gamma [--former]`` (one thread).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import arviz as az
import numpy as np
import torch

import bayestensor as bt

SHAPE = (26, 24, 22)
FORMER = {"adapt_step": False, "init_spread": 0.0, "noise_estimate": 0.0}


def rhat_ess(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    data = az.convert_to_dataset({"x": draws})
    return az.rhat(data)["x"].values, az.ess(data)["x"].values


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("format", choices=["cp", "tucker", "tt"])
    parser.add_argument("prior", choices=["gamma", "half_cauchy", "log_uniform"])
    parser.add_argument("--former", action="store_true", help="The former defaults.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    data = bt.data.synthetic_tensor(SHAPE, rank=4, snr_db=10, observed=0.2, seed=args.seed)
    model = bt.TensorCompletion(SHAPE, format=args.format, max_rank=8, prior=args.prior)
    start = time.perf_counter()
    post = bt.fit(model, data.train, method="sghmc", num_samples=1000, num_chains=4,
                  seed=args.seed, progress=False, **(FORMER if args.former else {}))
    seconds = time.perf_counter() - start
    c, d = post.num_chains, post.num_draws
    entries = post.predict(data.test.indices[:200]).draws.double().numpy().reshape(c, d, -1)
    rhat, ess = rhat_ess(entries)
    noise_rhat, _ = rhat_ess(post["noise_precision"].double().numpy().reshape(c, d))
    out = {"format": args.format, "prior": args.prior, "former": args.former,
           "seconds": round(seconds, 1), "rhat_entry_max": float(rhat.max()),
           "rhat_entry_median": float(np.median(rhat)), "ess_entry_min": float(ess.min()),
           "rhat_noise": float(noise_rhat), "error": data.relative_error(post.predict(
               data.test.indices).mean), "step_scale": post.info.get("step_scale")}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

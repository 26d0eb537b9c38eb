"""SVGD's kernel blocks on Gaussians: per-coordinate against one isotropic kernel.

For each dimension ``D`` and correlation ``rho`` (every pair of coordinates correlated
``rho``, unit variances), SVGD at its defaults (100 particles) with ``blocks="coordinate"`` and
``blocks="all"``; the median over coordinates of the particles' sd (1 is exact), averaged over
the seeds. This is the table behind SVGD's default for models of at most three coordinates
(``MAX_ISOTROPIC_DIM`` in ``bayestensor/infer/runners.py``; ``docs/benchmarks.md``).

Run: ``OMP_NUM_THREADS=1 python benchmarks/svgd_kernel_dims.py --dims 2 3 --rhos 0 0.5 0.9 0.99
--seeds 0 1`` (and ``--dims 5 10 20 50 100 --rhos 0 0.7 --seeds 0``); ``--offset 50000`` puts
every coordinate's mean there, where float32 particles test that the kernel's distances and
repulsion do not cancel.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bayestensor as bt  # noqa: E402


def gaussian_model(dim: int, rho: float, offset: float = 0.0):
    cov = torch.full((dim, dim), rho) + (1 - rho) * torch.eye(dim)
    scale_tril = torch.linalg.cholesky(cov)

    def model():
        pyro.sample("x", dist.MultivariateNormal(torch.full((dim,), offset),
                                                 scale_tril=scale_tril))

    return model


def median_sd(dim: int, rho: float, blocks: str, seeds, offset: float = 0.0) -> float:
    sds = []
    for seed in seeds:
        post = bt.fit(gaussian_model(dim, rho, offset), method="svgd", blocks=blocks, seed=seed,
                      progress=False)
        draws = post["x"].double().reshape(-1, dim).numpy()
        sds.append(float(np.median(draws.std(0))))
    return float(np.mean(sds))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3, 5, 10])
    parser.add_argument("--rhos", type=float, nargs="+", default=[0.0, 0.7])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--offset", type=float, default=0.0,
                        help="mean of every coordinate (float32 particles far from the origin)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the rows")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows = []
    for dim in args.dims:
        for rho in args.rhos:
            row = {"dim": dim, "rho": rho, "offset": args.offset,
                   **{blocks: median_sd(dim, rho, blocks, args.seeds, args.offset)
                      for blocks in ("coordinate", "all")}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps({"seeds": args.seeds, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

"""Your own Pyro model with a rank-revealing prior, fitted by SGHMC and by SVGD.

The model explains a noisy 15 x 12 matrix as a CP (matrix) factorization of rank at most 5.
``bt.low_rank_tensor`` registers the factors and their per-slice shrinkage prior,
``bt.noise_precision`` the Gaussian noise precision; the likelihood is ordinary Pyro. Both
samplers start from an SVD of the data (a start from prior draws can underflow) and we compare
what they find: error of the posterior-mean matrix, the noise sd, the slice scales.

Usage::

    python examples/custom_pyro_model.py [OUT_DIR]
"""

import json
import os
import sys
import tempfile
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch

import bayestensor as bt

FAST = os.environ.get("BAYESTENSOR_EXAMPLES_FAST") == "1"
STEPS, MAP_STEPS = (80, 300) if FAST else (400, 2000)
N_ROWS, N_COLS, MAX_RANK, NOISE_SD = 15, 12, 5, 0.1

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bt-pyro-"))

torch.manual_seed(0)
truth = bt.CPTensor.random((N_ROWS, N_COLS), rank=2, seed=0).reconstruct()
y = truth + NOISE_SD * torch.randn(N_ROWS, N_COLS)


def matrix_model(y):
    W = bt.low_rank_tensor("W", (N_ROWS, N_COLS), rank=MAX_RANK, format="cp", prior="gamma")
    tau = bt.noise_precision("tau")
    with pyro.plate("rows", N_ROWS, dim=-2), pyro.plate("cols", N_COLS, dim=-1):
        pyro.sample("y", dist.Normal(W.reconstruct(), tau.rsqrt()), obs=y)


start = bt.CPTensor.from_tensor(y.numpy(), rank=MAX_RANK)
init = {"W.factor0": start.factors[0], "W.factor1": start.factors[1]}

# SGHMC chains start at the SVD point (init_from="init") rather than at a MAP point: the start
# is already good, and the MAP run would cost more than the sampling here.
fits = {
    "sghmc": bt.fit(matrix_model, method="sghmc", model_args=(y,), init=init,
                    num_samples=STEPS, num_warmup=STEPS, num_chains=2, init_from="init",
                    seed=0, progress=False),
    "svgd": bt.fit(matrix_model, method="svgd", model_args=(y,), init=init, num_samples=20,
                   num_steps=2 * STEPS, map_steps=MAP_STEPS, seed=0, progress=False),
}

summary = {}
for name, post in fits.items():
    factors = [post["W.factor0"].flatten(0, 1), post["W.factor1"].flatten(0, 1)]
    draws = bt.CPTensor((N_ROWS, N_COLS), factors)      # one low-rank matrix per draw
    mean = draws.reconstruct().mean(0)
    scales = draws.slice_norms()[0].mean(0)             # rank dimension 0, averaged over draws
    summary[name] = {
        "relative_error": float((mean - truth).norm() / truth.norm()),
        "noise_sd": float(post["tau"].rsqrt().mean()),
        "slice_scales": [round(float(s), 3) for s in scales.sort(descending=True).values],
    }
    print(f"{name:6s} relative error {summary[name]['relative_error']:.3f}, "
          f"noise sd {summary[name]['noise_sd']:.3f} (true {NOISE_SD}), "
          f"slice scales {summary[name]['slice_scales']}")

(out / "comparison.json").write_text(json.dumps(summary, indent=2))
print("written:", out / "comparison.json")

"""Why the Tucker MLP's ranks follow the cap: the same MAP fit under two forms of the core prior.

The 784-512-10 MLP of ``nets_mnist.py`` with both linear layers as Tucker (2+2 modes), MAP,
40 epochs, per ``--seeds`` and ``--caps`` max rank, under

* ``product`` (``core_variance=None``; the default before Tucker linear layers took the
  fixed core): a core entry's variance is the product of its four slice
  variances, so a slice's precision governs ``I_d + prod_{e != d} R_e`` entries. Under MAP its
  pull towards zero grows with that count: doubling the cap multiplies it by 8 for a 4-mode
  core, where a CP slice governs ``sum_d I_d`` entries whatever the cap;
* ``factor``: ``prior_params={"core_variance": --core-variance}`` (default: the Tucker
  linear layers' default, ``TUCKER_CORE_VARIANCE``), ARD on the factor columns only and a
  fixed ``N(0, core_variance)`` core, so a slice governs ``I_d`` entries at any cap.

Printed per cap: ranks found per layer, linear-layer ratio, test accuracy and ECE.

Run: ``OMP_NUM_THREADS=1 python benchmarks/tucker_rank_cap.py --core product factor --caps 6 12
[--seeds 0 1 2]`` (1-2 minutes per fit on one thread).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch

from bayestensor.nets import fit_net, tensorize
from bayestensor.nets.layers import TUCKER_CORE_VARIANCE
from nets_mnist import DATA, evaluate, load, mlp

OUT = Path(__file__).resolve().parent / "results" / "tucker_rank_cap.json"


def fit(data, cap: int, seed: int, epochs: int, core_variance: float | None) -> dict:
    params = {"core_variance": core_variance}  # None: the product prior
    bnet = tensorize(mlp(seed), prior="gamma", prior_params=params, init="random",
                     min_features=1, seed=seed, format="tucker", max_rank=cap)
    t0 = time.perf_counter()
    fit_net(bnet, data["x_train"], data["y_train"], method="map", epochs=epochs, lr=1e-2,
            seed=seed)
    bnet.prune(1e-2)
    comp = bnet.compression()
    return {"cap": cap, "ranks": [r["ranks"] for r in comp["layers"]],
            "linear_ratio": comp["linear_ratio"], "seconds": time.perf_counter() - t0,
            **evaluate(bnet.predict_proba, data)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--core", nargs="+", default=["product", "factor"],
                    choices=["product", "factor"])
    ap.add_argument("--caps", type=int, nargs="+", default=[6, 12])
    ap.add_argument("--core-variance", type=float, default=TUCKER_CORE_VARIANCE)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    data = load(args.data)
    rows = []
    for seed in args.seeds:
        for core in args.core:
            variance = args.core_variance if core == "factor" else None
            for cap in args.caps:
                rows.append({"core": core, "seed": seed,
                             **fit(data, cap, seed, args.epochs, variance)})
                print({k: rows[-1][k] for k in ("core", "seed", "cap", "ranks", "linear_ratio",
                                                 "accuracy", "ece")}, flush=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                    "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

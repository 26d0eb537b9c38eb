"""Where CP completion starts: the SVD of the mean-filled tensor or the observed entries.

``TensorCompletion(init="svd")`` (the default) decomposes the tensor with its missing entries
filled by the mean; ``init="spectral"`` takes each mode's subspace from the observed entries
alone (the unfolding's Gram matrix with its diagonal deleted) and refines it by ridge ALS.
Both MAP fits run on the same split; printed per data set and start: the rank found, the
held-out relative error, the 90% predictive coverage, the MAP's log joint and seconds.

* ``il2``: IL-2 (13 x 4 x 12 x 8, 87% observed), 10% of the observed entries held out, CP max
  rank 20, ``map_hold="auto"`` (``bayestensor complete il2``'s settings);
* ``pines95`` / ``pines90``: Indian Pines with 95% / 90% of its entries hidden, CP max rank
  20, no hold, 1000 steps, scored on a fixed random 200,000 hidden entries;
* ``images``: astronaut and coffee at 96 px, 70% / 90% of the pixels missing, CP max rank 40.

Run: ``OMP_NUM_THREADS=1 python benchmarks/cp_start.py --data il2 pines95 pines90 images``
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bayestensor as bt  # noqa: E402
from benchmarks.real_tensor_peers import scores, split  # noqa: E402

RESULTS = Path(__file__).parent / "results"
STARTS = ("svd", "spectral")


def problems(name):
    """``(label, shape, (idx, vals), (test_idx, truth), max_rank, fit options)`` of a data set."""
    if name == "il2":
        real = bt.data.load_il2(holdout=0.1, seed=0)
        yield "il2", real.data.shape, *split(real), 20, {}
    elif name.startswith("pines"):
        missing = {"pines95": 0.95, "pines90": 0.9}[name]
        real = bt.data.load_indian_pines(missing=missing, seed=0)
        yield name, real.data.shape, *split(real, 200_000), 20, {"map_hold": None,
                                                                  "num_steps": 1000}
    else:
        for image in ("astronaut", "coffee"):
            for missing in (0.7, 0.9):
                img = bt.data.load_image(image, size=96, missing=missing, seed=0)
                obs, hidden = img.observations(), ~img.mask
                yield (f"{image} {int(missing * 100)}%", obs.shape,
                       (obs.indices.numpy(), obs.values.numpy()),
                       (np.argwhere(hidden), img.info["truth"][hidden]), 40, {})


def run(name):
    rows = []
    for label, shape, (idx, vals), (test_idx, truth), max_rank, fit in problems(name):
        for start in STARTS:
            model = bt.TensorCompletion(shape, "cp", max_rank=max_rank)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                post = bt.fit(model, (idx, vals), method="map", seed=0, init=start,
                              progress=False, **fit)
            pred = post.predict(test_idx)
            rows.append({"data": label, "init": start, "observed": len(vals) / np.prod(shape),
                         "seconds": time.perf_counter() - t0,
                         "rank": post.effective_rank().mode().tolist(),
                         "error": scores(pred.mean, truth)["error"],
                         "coverage90": pred.coverage(truth, 0.9),
                         "log_joint": post.info["map_objective"]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["il2", "pines95"],
                        choices=["il2", "pines95", "pines90", "images"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [row for name in args.data for row in run(name)]
    out = args.out or RESULTS / f"cp_start_{'_'.join(args.data)}.json"
    out.write_text(json.dumps({"machine": platform.platform(), "torch": torch.__version__,
                               "args": {"data": args.data}, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""How long predicting every entry takes: the box route against the factor-row gather.

A CP posterior shaped like the Indian Pines run of ``bayestensor complete`` (145 x 145 x 200,
rank ``--rank``, ``--draws`` draws in 4 chains, random factors around a MAP-like scale) is
predicted over ``--blocks`` consecutive blocks of the size the command line uses
(``PREDICT_BLOCK_ELEMENTS`` draws x entries). Each block is predicted twice in the same run:
by ``Posterior.predict`` (which reads a run of consecutive entries from each draw's dense
reconstruction of the box it fills) and by the gather it replaced (``entries`` of the
low-rank tensor, in ``Posterior.predict``'s former chunks). Both must agree; the script
reports seconds per block, their ratio, and the time of the intervals for scale.

Run: ``OMP_NUM_THREADS=1 python benchmarks/predict_speed.py [--rank 15] [--draws 800]``.
Writes ``benchmarks/results/predict_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import bayestensor as bt
from bayestensor.cli.complete import PREDICT_BLOCK_ELEMENTS
from bayestensor.results.posterior import PREDICT_CHUNK_ELEMENTS, Posterior

RESULTS = Path(__file__).parent / "results"
SHAPE = (145, 145, 200)


def posterior(rank: int, draws: int, seed: int = 0) -> Posterior:
    """A CP posterior of ``draws`` draws (4 chains) on SHAPE, with data attached for scaling."""
    gen = torch.Generator().manual_seed(seed)
    model = bt.TensorCompletion(SHAPE, "cp", max_rank=rank)
    rng = np.random.default_rng(seed)
    idx = np.argwhere(rng.random(SHAPE) < 0.05)
    model.set_data((idx, rng.normal(size=len(idx))))
    chains = 4
    samples = {f"X.factor{m}": torch.randn(chains, draws // chains, n, rank, generator=gen)
               * 0.3 for m, n in enumerate(SHAPE)}
    samples["X.precision0"] = torch.ones(chains, draws // chains, rank)
    samples["noise_precision"] = torch.full((chains, draws // chains), 10.0)
    return Posterior(samples, method="sghmc", model=model)


def gathered(post: Posterior, idx: np.ndarray) -> np.ndarray:
    """The former route: factor rows gathered per entry, in the former chunks."""
    x = post.model.low_rank(post.flat_samples())
    chunk = max(64, PREDICT_CHUNK_ELEMENTS // (post.num_chains * post.num_draws))
    parts = [x.entries(torch.as_tensor(idx[s:s + chunk])) for s in range(0, len(idx), chunk)]
    return (torch.cat(parts, -1) * post.model.scale + post.model.center).double().mean(0).numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=15)
    parser.add_argument("--draws", type=int, default=800)
    parser.add_argument("--blocks", type=int, default=4)
    args = parser.parse_args()
    post = posterior(args.rank, args.draws)
    block = PREDICT_BLOCK_ELEMENTS // args.draws
    rows = []
    for k in range(args.blocks):
        idx = np.stack(np.unravel_index(np.arange(k * block, (k + 1) * block), SHAPE), -1)
        start = time.perf_counter()
        pred = post.predict(idx)
        box = time.perf_counter() - start
        pred.interval(0.9)
        intervals = time.perf_counter() - start - box
        start = time.perf_counter()
        mean = gathered(post, idx)
        gather = time.perf_counter() - start
        rows.append({"block": k, "entries": block, "box_s": box, "gather_s": gather,
                     "intervals_s": intervals,
                     "max_abs_diff": float(np.abs(mean - pred.mean).max())})
        print(json.dumps(rows[-1]), flush=True)
    summary = {"box_s": float(np.median([r["box_s"] for r in rows])),
               "gather_s": float(np.median([r["gather_s"] for r in rows])),
               "intervals_s": float(np.median([r["intervals_s"] for r in rows]))}
    summary["speedup"] = summary["gather_s"] / summary["box_s"]
    print(json.dumps(summary))
    RESULTS.mkdir(exist_ok=True)
    out = {"machine": platform.platform(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "args": vars(args), "shape": SHAPE,
           "rows": rows, "summary": summary}
    (RESULTS / "predict_speed.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

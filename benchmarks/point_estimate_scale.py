"""Where the default MAP loses to VB at 0 dB: the scale of its predictions, not its noise estimate.

On the rank study's settings (``completion_study.RANK_GRID``) and seeds, for the default fit
(MAP, ``map_hold="auto"``), SGHMC's posterior mean at its defaults (with ``--posterior-mean``)
and the VB peer (``benchmarks/baselines/bcpf.py``), per run:

* ``error``: relative error of the held-out entries against the noise-free truth;
* ``scale``: the least-squares factor ``c`` that best maps the held-out predictions onto the
  noise-free truth (``c < 1``: the predictions are too large) and ``error_at_scale``, the error
  of ``c`` times the predictions. Both use the truth, so they diagnose, they are no estimator;
* for the MAP: its noise precision against the true one (standardized units), and
  ``error_true_noise``: the MAP refitted by the closed-form block ascent from its own end with
  the noise precision held at the true value throughout (does a better noise estimate fix it?).

Run: ``OMP_NUM_THREADS=1 python benchmarks/point_estimate_scale.py [--settings 1] [--seeds 6]
[--posterior-mean]`` (``--settings``: positions in ``RANK_GRID``; default all seven).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bayestensor as bt  # noqa: E402
from benchmarks.baselines.bcpf import bcpf  # noqa: E402
from benchmarks.completion_study import RANK_GRID  # noqa: E402

RESULTS = Path(__file__).parent / "results"
MAP_SITES = ("X.factor0", "X.factor1", "X.factor2", "X.precision0", "noise_precision")


def scale_fit(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """The least-squares scale of ``pred`` onto ``truth`` and the relative error at it."""
    c = float(pred @ truth / (pred @ pred))
    return c, float(np.linalg.norm(c * pred - truth) / np.linalg.norm(truth))


def held_noise_refit(model, post, noise_precision: float, shape, test_indices) -> np.ndarray:
    """The MAP's block ascent from its end with the noise precision held at
    ``noise_precision`` for every sweep; held-out predictions in the data's units."""
    values = {s: post[s][0] for s in MAP_SITES}
    values["noise_precision"] = torch.tensor([noise_precision], dtype=values["X.factor0"].dtype)
    out, _, _ = model.block_ascent()(values, max_sweeps=500, tol=1e-10,
                                     hold_noise_sweeps=10 ** 6)
    cp = bt.CPTensor(shape, [out[f"X.factor{k}"][0] for k in range(3)])
    return cp.entries(test_indices).double().numpy() * model.scale + model.center


def run_setting(size, rank, observed, snr, seed, posterior_mean: bool) -> list[dict]:
    max_rank = max(2 * rank, rank + 5)
    data = bt.data.synthetic_tensor((size,) * 3, rank=rank, snr_db=snr, observed=observed,
                                    seed=seed)
    truth = data.test.values.double().numpy()
    base = {"size": size, "rank": rank, "observed": observed, "snr_db": snr, "seed": seed}
    rows = []

    model = bt.TensorCompletion(data.shape, "cp", max_rank=max_rank)
    start = time.perf_counter()
    post = bt.fit(model, data.train, method="map", seed=seed, progress=False)
    seconds = time.perf_counter() - start
    pred = np.asarray(post.predict(data.test.indices).mean, dtype=float)
    true_tau = (model.scale / data.noise_sd) ** 2
    refit = held_noise_refit(model, post, true_tau, data.shape, data.test.indices)
    rows.append({**base, "method": "map+auto", "seconds": seconds,
                 "error": data.relative_error(pred), **dict(zip(("scale", "error_at_scale"),
                                                                scale_fit(pred, truth))),
                 "noise_precision_ratio": float(post["noise_precision"].flatten()[0]) / true_tau,
                 "error_true_noise": data.relative_error(refit),
                 "rank_found": int(post.effective_rank().mode()[0])})

    if posterior_mean:
        model = bt.TensorCompletion(data.shape, "cp", max_rank=max_rank)
        start = time.perf_counter()
        post = bt.fit(model, data.train, method="sghmc", seed=seed, progress=False)
        seconds = time.perf_counter() - start
        pred = np.asarray(post.predict(data.test.indices).mean, dtype=float)
        rows.append({**base, "method": "sghmc@defaults", "seconds": seconds,
                     "error": data.relative_error(pred),
                     **dict(zip(("scale", "error_at_scale"), scale_fit(pred, truth))),
                     "rank_found": int(post.effective_rank().mode()[0])})

    start = time.perf_counter()
    vb = bcpf(data.train.indices, data.train.values, data.shape, max_rank, seed=seed)
    seconds = time.perf_counter() - start
    pred = np.asarray(vb.predict(data.test.indices)[0], dtype=float)
    rows.append({**base, "method": "vb", "seconds": seconds, "error": data.relative_error(pred),
                 **dict(zip(("scale", "error_at_scale"), scale_fit(pred, truth))),
                 "rank_found": vb.rank})
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Medians per setting and method; the error ratio to VB paired by seed."""
    vb = {(r["size"], r["rank"], r["observed"], r["snr_db"], r["seed"]): r["error"]
          for r in rows if r["method"] == "vb"}
    groups: dict = {}
    for r in rows:
        key = (r["size"], r["rank"], r["observed"], r["snr_db"], r["method"])
        groups.setdefault(key, []).append(r)
    out = []
    for (size, rank, observed, snr, method), group in groups.items():
        med = {k: statistics.median(r[k] for r in group)
               for k in ("error", "scale", "error_at_scale", "noise_precision_ratio",
                         "error_true_noise") if k in group[0]}
        ratios = [r["error"] / vb[(size, rank, observed, snr, r["seed"])] for r in group]
        out.append({"size": size, "rank": rank, "observed": observed, "snr_db": snr,
                    "method": method, "runs": len(group), **med,
                    "error_vs_vb_paired": statistics.median(ratios),
                    "scale_range": [min(r["scale"] for r in group),
                                    max(r["scale"] for r in group)]})
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", type=int, nargs="+", default=None, metavar="K",
                        help="Positions in RANK_GRID (default: all seven).")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--posterior-mean", action="store_true",
                        help="Also SGHMC at its defaults (posterior mean).")
    parser.add_argument("--out", type=Path, default=RESULTS / "point_estimate_scale.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    settings = RANK_GRID if args.settings is None else [RANK_GRID[k] for k in args.settings]
    rows = []
    for setting in settings:
        for seed in range(args.seeds):
            new = run_setting(*setting, seed, args.posterior_mean)
            for r in new:
                print(json.dumps(r), flush=True)
            rows += new
    result = {"args": vars(args) | {"out": str(args.out)},
              "machine": {"cpu": platform.processor() or platform.machine(),
                          "torch": torch.__version__, "threads": torch.get_num_threads()},
              "rows": rows, "summary": summarize(rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    for s in result["summary"]:
        print(json.dumps(s))
    return result


if __name__ == "__main__":
    main()

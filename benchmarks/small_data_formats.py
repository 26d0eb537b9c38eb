"""Completion from few observations by format: where the TT and Tucker MAPs collapse.

A rank-3 CP tensor (so TT ranks (3, 3), Tucker (3, 3, 3)) at 20 dB, observed at a fraction of
its entries, completed at the default max rank 10 (TT-matrix, ``--formats ttm``: an 8^4
tensor, the same rank, at 20% and 40% observed) by

* ``map``: the default fit (MAP, ``map_hold="auto"``: for TT and Tucker it chooses by a
  validation split between the noise precision started at ``1 / Var(y)``, with or without
  the hold, and started at the start's residual);
* ``map@residual_start``: the MAP with the noise precision always started at the reciprocal
  of the start's mean squared residual on the observed entries
  (``init_values(noise_start="residual")``; Tucker's from one HOOI pass since ``f9f7610``);
* ``sghmc@init``: SGHMC at its defaults with the chains started at the data-driven start
  instead of the MAP (``init_from="init"``; the command line's ``--init-from init``);
* ``map@fixed_core`` (Tucker only): the default MAP with the core's entries at a fixed prior
  variance of 1 (``prior_params={"core_variance": 1.0}``), so that a slice precision scales
  its factor column alone instead of its column and its core slab.

Per run: the effective rank (posterior mode) and the relative error of the held-out entries
against the noise-free truth, and seconds; a run that diverges is recorded as such.

Run: ``OMP_NUM_THREADS=1 python benchmarks/small_data_formats.py [--seeds 3]
[--formats tt tucker cp ttm] [--variants map map@residual_start sghmc@init map@fixed_core]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import torch

import bayestensor as bt
from tables import write_result

RESULTS = Path(__file__).parent / "results"
SETTINGS = [((20, 15, 10), 0.3), ((20, 15, 10), 0.5), ((30, 30, 30), 0.1), ((30, 30, 30), 0.2)]
#: A TT-matrix needs an even order: 8^4 (4,096 entries, about the 20 x 15 x 10 tensor's 3,000).
TTM_SETTINGS = [((8, 8, 8, 8), 0.2), ((8, 8, 8, 8), 0.4)]
VARIANTS = ("map", "map@residual_start", "sghmc@init", "map@fixed_core")


def settings_of(fmt: str) -> list:
    """The ``(shape, observed)`` settings a format is run on."""
    return TTM_SETTINGS if fmt == "ttm" else SETTINGS


def run(data, fmt: str, variant: str, seed: int) -> dict | None:
    """One fit of ``variant``; ``None`` where it does not apply to ``fmt``."""
    if variant == "map@fixed_core" and fmt != "tucker":
        return None
    prior_params = {"core_variance": 1.0} if variant == "map@fixed_core" else None
    model = bt.TensorCompletion(data.shape, fmt, max_rank=10, prior_params=prior_params)
    options = {}
    if variant == "map@residual_start":
        model.set_data(data.train)
        options["init"] = model.init_values(seed=seed, noise_start="residual")
    elif variant == "sghmc@init":
        options["init_from"] = "init"
    start = time.perf_counter()
    try:
        post = bt.fit(model, data.train, method=variant.split("@")[0], seed=seed,
                      progress=False, **options)
    except bt.DivergenceError as err:  # recorded, not fatal: the other runs go on
        return {"format": fmt, "variant": variant,
                "seconds": round(time.perf_counter() - start, 2), "rank_found": None,
                "error": None, "diverged": str(err)}
    seconds = time.perf_counter() - start
    return {"format": fmt, "variant": variant, "seconds": round(seconds, 2),
            "rank_found": [int(r) for r in post.effective_rank().mode()],
            "error": data.relative_error(post.predict(data.test.indices).mean)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--formats", nargs="+", default=["tt", "tucker", "cp"],
                        choices=["cp", "tucker", "tt", "ttm"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--out", type=Path, default=RESULTS / "small_data_formats.json")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    rows = []
    for shape, observed in SETTINGS + TTM_SETTINGS:
        for seed in range(args.seeds):
            data = bt.data.synthetic_tensor(shape, rank=3, snr_db=20, observed=observed,
                                            seed=seed)
            for fmt in args.formats:
                if (shape, observed) not in settings_of(fmt):
                    continue
                for variant in args.variants:
                    result = run(data, fmt, variant, seed)
                    if result is None:
                        continue
                    row = {"shape": list(shape), "observed": observed, "seed": seed,
                           "n_observed": len(data.train), **result}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    summary = []
    for shape, observed in SETTINGS + TTM_SETTINGS:
        for fmt in args.formats:
            for variant in args.variants:
                sel = [r for r in rows if r["shape"] == list(shape) and r["observed"] == observed
                       and r["format"] == fmt and r["variant"] == variant]
                if sel:
                    summary.append({"shape": list(shape), "observed": observed, "format": fmt,
                                    "variant": variant,
                                    "errors": [None if r["error"] is None
                                               else round(r["error"], 4) for r in sel],
                                    "ranks": [r["rank_found"] for r in sel],
                                    "median_seconds": statistics.median(r["seconds"] for r in sel)})
    for row in summary:
        print(json.dumps(row))
    return write_result(args, rows, summary)


if __name__ == "__main__":
    main()

"""The default fit of a TT, Tucker or TT-matrix completion with its validation fits batched.

``map_hold="auto"`` (the default) fits the MAP to 90% of the observations three ways (no
hold, the noise precision held, the noise precision started at the start's residual), keeps
the way with the lowest error on the other 10%, then fits all the data. Where the MAP runs on
Adam alone (TT, Tucker, TT-matrix) the three validation fits run as rows of one batch
(``bayestensor.infer.runners.run_map_rows``). This script runs each default fit both ways in
one process: ``batched`` (the library) and ``one by one`` (the former path, which CP's MAP
still takes: selected here by patching ``map_hands_over`` in the continuation module to say
that the MAP hands over). Per run: wall seconds of ``bt.fit`` at its defaults, the choice, the
three validation errors, the held-out error against the noise-free truth and the rank.

Data: the settings of ``small_data_formats.py`` (a rank-3 CP tensor at 20 dB, max rank 10)
plus a 30^3 tensor at 10% and 20% observed; TT-matrix on an 8^4 tensor at 20% and 40%.

Run: ``OMP_NUM_THREADS=1 python benchmarks/map_hold_batch.py [--seeds 3] [--formats tt tucker
ttm]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch

import bayestensor as bt
from bayestensor.infer import continuation

RESULTS = Path(__file__).parent / "results"
SETTINGS = [((20, 15, 10), 0.3), ((20, 15, 10), 0.5), ((30, 30, 30), 0.1), ((30, 30, 30), 0.2)]
TTM_SETTINGS = [((8, 8, 8, 8), 0.2), ((8, 8, 8, 8), 0.4)]
WAYS = ("batched", "one by one")


def default_fit(data, fmt: str, seed: int, way: str) -> dict:
    """``bt.fit`` at its defaults (the MAP with ``map_hold="auto"``), timed."""
    real = continuation.map_hands_over
    if way == "one by one":
        continuation.map_hands_over = lambda model: True
    try:
        model = bt.TensorCompletion(data.shape, fmt, max_rank=10)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = bt.fit(model, data.train, seed=seed, progress=False)
        seconds = time.perf_counter() - start
    finally:
        continuation.map_hands_over = real
    choice = post.info["map_hold_auto"]
    chosen = ("residual" if choice["noise_start"] == "residual"
              else "hold" if choice["chosen"] else "none")
    return {"seconds": seconds, "chosen": chosen, "validation_mse": choice["validation_mse"],
            "error": float(data.relative_error(post.predict(data.test.indices).mean)),
            "rank": post.effective_rank().mode().tolist()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--formats", nargs="+", default=["tt", "tucker", "ttm"],
                        choices=["tt", "tucker", "ttm"])
    parser.add_argument("--out", type=Path, default=RESULTS / "map_hold_batch.json")
    args = parser.parse_args(argv)
    rows = []
    for fmt in args.formats:
        for shape, observed in TTM_SETTINGS if fmt == "ttm" else SETTINGS:
            for seed in range(args.seeds):
                data = bt.data.synthetic_tensor(shape, rank=3, snr_db=20, observed=observed,
                                                n_test=2000, seed=seed)
                runs = {way: default_fit(data, fmt, seed, way) for way in WAYS}
                rows.append({"format": fmt, "shape": list(shape), "observed": observed,
                             "seed": seed, **runs})
                b, o = runs["batched"], runs["one by one"]
                print(f"{fmt:6s} {shape} {observed:.0%} seed {seed}: {b['seconds']:.1f} s / "
                      f"{o['seconds']:.1f} s, chosen {b['chosen']} / {o['chosen']}, error "
                      f"{b['error']:.4f} / {o['error']:.4f}, rank {b['rank']} / {o['rank']}",
                      flush=True)
    ratios = [r["one by one"]["seconds"] / r["batched"]["seconds"] for r in rows]
    summary = {"median_speedup": statistics.median(ratios), "min_speedup": min(ratios),
               "max_speedup": max(ratios),
               "same_choice": sum(r["batched"]["chosen"] == r["one by one"]["chosen"]
                                  for r in rows), "runs": len(rows)}
    print(summary)
    result = {"rows": rows, "summary": summary, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "machine": platform.machine()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

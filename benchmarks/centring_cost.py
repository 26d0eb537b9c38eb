"""What centring the observed values costs the default fit on a small high-SNR tensor.

``python benchmarks/centring_cost.py [--seeds 0 1 2 3] [--offsets 0 5]`` (one thread): a 20^3
CP rank-3 tensor, 20% observed, 20 dB, max rank 6, with a constant ``offset`` added to every
entry. Per seed and offset, in one process on the same data: the published VB
(``baselines/bcpf.py``, which does not centre), and ``bt.fit`` by its default method (the
closed-form VI) and by the MAP, with the model's fitted offset (the default) and without it
(``offset_scale=None``: the centred values alone); held-out error against the noise-free truth
(plus the offset), the rank found, and the observed values' mean over their sd. Writes
``benchmarks/results/centring_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import warnings
from pathlib import Path

import torch

import bayestensor as bt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.baselines.bcpf import bcpf  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SETTING = {"shape": (20, 20, 20), "rank": 3, "observed": 0.2, "snr_db": 20, "max_rank": 6}


FITS = {"default": {}, "offset_scale=None": {"offset_scale": None}}
METHODS = (None, "map")


def run(seed: int, offset: float) -> dict:
    s = SETTING
    data = bt.data.synthetic_tensor(s["shape"], rank=s["rank"], snr_db=s["snr_db"],
                                    observed=s["observed"], seed=seed)
    train = bt.Observations(data.train.indices, data.train.values + offset, data.shape)
    values = train.values.double()
    row = {"seed": seed, "offset": offset, "mean_over_sd": float(values.mean() / values.std())}
    vb = bcpf(train.indices, train.values, data.shape, s["max_rank"], seed=seed)
    row["vb"] = {"error": data.relative_error(vb.predict(data.test.indices)[0] - offset),
                 "rank": int(vb.rank)}
    for name, keywords in FITS.items():
        for method in METHODS:
            model = bt.TensorCompletion(data.shape, "cp", max_rank=s["max_rank"], **keywords)
            post = bt.fit(model, train, method=method, seed=seed, progress=False)
            error = data.relative_error(post.predict(data.test.indices).mean - offset)
            row[f"{name}/{post.method}"] = {"error": error,
                                            "rank": int(post.effective_rank().mode()[0])}
    return row


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--offsets", type=float, nargs="+", default=[0.0, 5.0])
    parser.add_argument("--out", type=Path, default=RESULTS / "centring_cost.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    rows = []
    for offset in args.offsets:
        for seed in args.seeds:
            rows.append(run(seed, offset))
            print(json.dumps(rows[-1]), flush=True)
    fits = [k for k in rows[0] if "/" in k]
    ratios = {f"offset {offset}": {k: statistics.median(r[k]["error"] / r["vb"]["error"]
                                                        for r in rows if r["offset"] == offset)
                                   for k in fits} for offset in args.offsets}
    result = {"setting": SETTING, "rows": rows, "median_error_over_vb": ratios,
              "machine": platform.platform(), "torch": torch.__version__}
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(ratios))
    return result


if __name__ == "__main__":
    main()

"""What centring the observed values costs the default fit on a small high-SNR tensor.

``python benchmarks/centring_cost.py [--seeds 0 1 2 3]`` (one thread): a 20^3 CP rank-3
tensor, 20% observed, 20 dB, max rank 6. Per seed, in one process on the same data: the
published VB (``baselines/bcpf.py``, which does not centre), and ``bt.fit`` without a method
(the closed-form VI) with ``standardize=True`` (the default: centred and scaled) and
``standardize=False``; held-out error against the noise-free truth, the rank found, and the
observed values' mean over their sd. Writes ``benchmarks/results/centring_cost.json``.
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


def run(seed: int) -> dict:
    s = SETTING
    data = bt.data.synthetic_tensor(s["shape"], rank=s["rank"], snr_db=s["snr_db"],
                                    observed=s["observed"], seed=seed)
    values = data.train.values.double()
    row = {"seed": seed, "mean_over_sd": float(values.mean() / values.std())}
    vb = bcpf(data.train.indices, data.train.values, data.shape, s["max_rank"], seed=seed)
    row["vb"] = {"error": data.relative_error(vb.predict(data.test.indices)[0]),
                 "rank": int(vb.rank)}
    for standardize in (True, False):
        model = bt.TensorCompletion(data.shape, "cp", max_rank=s["max_rank"],
                                    standardize=standardize)
        post = bt.fit(model, data.train, seed=seed, progress=False)
        error = data.relative_error(post.predict(data.test.indices).mean)
        row[f"standardize={standardize}"] = {"method": post.method, "error": error,
                                             "rank": int(post.effective_rank().mode()[0])}
    return row


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--out", type=Path, default=RESULTS / "centring_cost.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    rows = []
    for seed in args.seeds:
        rows.append(run(seed))
        print(json.dumps(rows[-1]), flush=True)
    ratios = {k: statistics.median(r[k]["error"] / r["vb"]["error"] for r in rows)
              for k in ("standardize=True", "standardize=False")}
    result = {"setting": SETTING, "rows": rows, "median_error_over_vb": ratios,
              "machine": platform.platform(), "torch": torch.__version__}
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(ratios))
    return result


if __name__ == "__main__":
    main()

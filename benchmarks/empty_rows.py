"""SGHMC on a completion whose data leave a slice empty: with and without the exact redraws.

The parameters that no observed entry reads (a CP or Tucker factor row, a TT core slice) have
their prior as full conditional, and SGHMC redraws them from it by default
(``factor_redraws="auto"``, :class:`bayestensor.models.empty_rows.EmptyRows`). This fits SGHMC
at its defaults, 4 x 1,000 draws, on a synthetic CP tensor (rank 3, 20 dB) with the first slice
of mode 0 removed from the observed entries, in the format asked for, with the redraws
(``auto``) and without (``False``), and reports the tensor norm's R-hat and bulk ESS, the
largest R-hat and smallest bulk ESS of the entries of the empty slice (checked at 1,000 fixed
positions) and of the other entries, the bulk ESS of the empty index's parameters (at most 24
of them), and the seconds of each fit, timed on a second, warm fit.

Run: ``python benchmarks/empty_rows.py [--shape 20 20 20 --observed 0.3 --format cp]`` (about
a minute, one thread). Writes ``benchmarks/results/empty_rows_<shape>.json`` (CP) or
``empty_rows_<format>_<shape>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import bayestensor as bt
from bayestensor.results.convergence import fixed_entries
from bayestensor.results.rank_normalized import rhat_and_bulk_ess

RESULTS = Path(__file__).parent / "results"


def empty_index_draws(model, post) -> torch.Tensor:
    """Draws ``(chains, draws, k)`` of the (first 24) parameters that index 0 of mode 0 reads."""
    prior = model.tensor_prior
    for site, axes in zip(prior.param_sites, prior.format_cls.index_axes(model.shape)):
        for axis, mode in axes.items():
            if mode == 0:
                row = post[site].select(2 + axis, 0)
                return row.reshape(row.shape[:2] + (-1,))[:, :, :24]
    raise ValueError("no parameter reads mode 0")


def one_fit(model, obs, redraws) -> dict:
    kw = dict(method="sghmc", num_samples=1000, seed=0, progress=False, factor_redraws=redraws)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt.fit(model, obs, **kw)  # warm: the timed fit below pays no first-call costs
        t0 = time.perf_counter()
        post = bt.fit(model, obs, **kw)
        seconds = time.perf_counter() - t0
    entries = fixed_entries(model, 1000)
    draws = post.predict(entries).draws.double().numpy()
    rhat, ess = rhat_and_bulk_ess(draws.reshape(post.num_chains, post.num_draws, -1))
    empty = entries[:, 0] == 0
    norm = next(v for v in post.diagnostics()["variables"] if v["var"] == "tensor_norm")
    _, row_ess = rhat_and_bulk_ess(empty_index_draws(model, post).double().numpy())
    return {"factor_redraws": str(redraws), "empty_row_redraws": post.info["empty_row_redraws"],
            "tensor_norm_rhat": norm["max_rhat"], "tensor_norm_ess": norm["min_ess_bulk"],
            "empty_slice_entries": int(empty.sum()),
            "empty_slice_max_rhat": float(rhat[empty].max()),
            "empty_slice_min_ess": float(ess[empty].min()),
            "other_max_rhat": float(rhat[~empty].max()), "other_min_ess": float(ess[~empty].min()),
            "empty_row_ess": [round(float(e)) for e in row_ess], "seconds": seconds}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[20, 20, 20])
    parser.add_argument("--observed", type=float, default=0.3)
    parser.add_argument("--format", default="cp", choices=["cp", "tucker", "tt"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    shape = tuple(args.shape)
    data = bt.data.synthetic_tensor(shape, rank=3, snr_db=20, observed=args.observed, n_test=100,
                                    seed=0)
    keep = data.train.indices[:, 0] != 0
    obs = bt.Observations(data.train.indices[keep], data.train.values[keep], shape)
    model = bt.TensorCompletion(shape, args.format, max_rank=8)
    runs = []
    for redraws in ("auto", False):
        runs.append(one_fit(model, obs, redraws))
        print(json.dumps(runs[-1]), flush=True)
    out = {"shape": shape, "observed": args.observed, "format": args.format, "runs": runs,
           "machine": platform.platform(), "torch": torch.__version__}
    stem = "empty_rows" if args.format == "cp" else f"empty_rows_{args.format}"
    path = args.out or RESULTS / f"{stem}_{'x'.join(map(str, shape))}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()

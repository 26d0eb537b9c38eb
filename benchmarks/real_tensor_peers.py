"""Real tensors against the faithful VB and TensorLy at its best rank: IL-2 and Indian Pines.

The splits are those of ``bayestensor complete``: IL-2 with its own missing entries and 10% of
the observed ones held out (``bt.data.load_il2``), Indian Pines with 95% of its entries hidden
(``bt.data.load_indian_pines``). Every method fits the same observed entries:

* ours: ``TensorCompletion`` at the command's defaults for the data set (IL-2: CP, max rank
  60, ``map_hold="auto"``, MAP, and SGHMC, the command's default method, with its 4 chains
  and start, ``BUILTIN_FIT``; also SGHMC with its chains started at the MAP; Indian Pines: CP,
  max rank 20, the spectral start, no hold, 1000 steps, MAP, the command's default, and SGHMC
  with 4 chains x 200 draws after 300 warm-up steps from the starting values);
* ``vb``: BCPF as its published code runs it (``benchmarks/baselines/bcpf.py``), at our max
  rank;
* ``tensorly@val``: TensorLy's masked ``parafac`` at the rank in 1..max rank with the lowest
  error on a 10% validation split of the observed entries, refit on all of them (IL-2 only:
  on Indian Pines each rank costs a minute, so it runs at ranks 4 and 20 there,
  ``tensorly@4`` / ``tensorly@20``).

Scores on the held-out entries (Indian Pines: a fixed random 200,000 of its 3,994,750 hidden
entries, so that VB's per-entry second moments fit in memory): relative error
``||mean - truth|| / ||truth||`` and the share inside the 90% predictive interval (TensorLy
gives none). Seconds are wall-clock and include predicting the scored entries. SGHMC rows also
get the largest R-hat and smallest bulk ESS over the first 1,000 scored entries and the noise
precision (``rhat_max``, ``ess_min``; ArviZ, as in ``sghmc_mixing.py``).

``--max-rank R`` runs every method at max rank R instead (ours, VB, TensorLy's grid on IL-2;
TensorLy at ranks 4 and R on Indian Pines).
``--nuts`` adds NUTS on IL-2 as the reference posterior (``NUTS_RUN``: 2 chains x 200 draws
after 200 warm-up steps, ``max_tree_depth=8``; about 6 minutes).

``--methods`` replaces our rows (e.g. ``vi "vi from the starting values"``: the closed-form
VI from the data set's MAP, or from its start); ``--tag`` names the result file.

Run: ``OMP_NUM_THREADS=1 python benchmarks/real_tensor_peers.py [--data il2 indian_pines]
[--max-rank R] [--nuts] [--methods LABEL ...] [--tag T]``
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
from bayestensor.cli.complete import BUILTIN_FIT  # noqa: E402
from bayestensor.infer.runners import SAMPLER_CHAINS  # noqa: E402
from benchmarks.sghmc_mixing import rhat_ess  # noqa: E402
from benchmarks.baselines.bcpf import (  # noqa: E402
    bcpf, tensorly_masked_parafac, tensorly_masked_parafac_tuned)

RESULTS = Path(__file__).parent / "results"
#: Scored entries whose R-hat and ESS are reported (all of IL-2's 480).
MIXING_ENTRIES = 1000
#: ``--nuts``: the reference posterior's run (6 minutes on IL-2, one thread).
NUTS_RUN = {"num_chains": 2, "num_samples": 200, "num_warmup": 200, "max_tree_depth": 8}
SETTINGS = {
    "il2": dict(load=lambda: bt.data.load_il2(holdout=0.1, seed=0), max_rank=60,
                ours=dict(format="cp", max_rank=60), fit={},
                methods=("map", "sghmc", "sghmc from the MAP"), tensorly="val"),
    "indian_pines": dict(load=lambda: bt.data.load_indian_pines(missing=0.95, seed=0),
                         max_rank=20, ours=dict(format="cp", max_rank=20),
                         fit={"map_hold": None, "num_steps": 1000, "init": "spectral"},
                         methods=("map", "sghmc from the starting values"),
                         sghmc={"num_samples": 200, "num_warmup": 300},
                         tensorly=(4, 20), max_scored=200_000),
}


def split(real, max_scored=None):
    """Fitted ``(indices, values)`` and held-out ``(indices, truth)`` of a RealTensor; at most
    ``max_scored`` held-out entries, a fixed random subset."""
    truth = real.info["truth"]
    fitted = np.argwhere(real.mask)
    held = np.argwhere(~real.mask & ~np.isnan(truth))
    if max_scored is not None and len(held) > max_scored:
        held = held[np.sort(np.random.default_rng(0).permutation(len(held))[:max_scored])]
    return (fitted, real.data[real.mask]), (held, truth[tuple(held.T)])


def scores(mean, truth, sd=None):
    out = {"error": float(np.linalg.norm(mean - truth) / np.linalg.norm(truth))}
    if sd is not None:
        out["coverage90"] = float(np.mean(np.abs(truth - mean) <= 1.6448536269514722 * sd))
    return out


def mixing(post, pred) -> dict:
    """Largest R-hat and smallest bulk ESS over the scored entries and the noise precision, as
    ``sghmc_mixing.py`` measures them (chains of draws only)."""
    c, d = post.num_chains, post.num_draws
    if c < 2 or d < 4:
        return {}
    entries = pred.draws.reshape(c, d, -1)[..., :MIXING_ENTRIES].double().numpy()
    rhat, ess = rhat_ess(entries)
    noise_rhat, noise_ess = rhat_ess(post["noise_precision"].double().numpy().reshape(c, d))
    return {"rhat_max": float(max(rhat.max(), noise_rhat)),
            "ess_min": float(min(ess.min(), noise_ess))}


def ours_fit(name: str, label: str, spec: dict) -> tuple[str, dict]:
    """Method and options of one of our rows: ``bayestensor complete``'s for the data set
    (``"sghmc"``: with its chains and start), SGHMC with its chains ``"from the MAP"`` or
    ``"from the starting values"``, ``"nuts"``, the reference posterior (``NUTS_RUN``), or the
    closed-form VI (``"vi"``: from the MAP of the data set's fit; ``"vi from the starting
    values"``)."""
    fit = spec["fit"]
    if label == "map":
        return "map", fit
    if label == "nuts":
        return "nuts", NUTS_RUN
    if label.startswith("vi"):
        fit = {k: v for k, v in fit.items() if k != "num_steps"}
        return "vi", {**fit, **({"init_from": "init"} if label.endswith("values") else {})}
    fit = {k: v for k, v in fit.items() if k != "num_steps"}
    init_from = {"sghmc from the MAP": "map", "sghmc from the starting values": "init"}.get(
        label, BUILTIN_FIT[name]["init_from"])
    fit = {**fit, "num_chains": SAMPLER_CHAINS, **spec.get("sghmc", {}),
           **({"init_from": init_from} if init_from else {})}
    return "sghmc", fit


def run(name, max_rank=None, nuts=False, methods=None):
    spec = dict(SETTINGS[name])
    if methods is not None:
        spec["methods"] = tuple(methods)
    if max_rank is not None:
        spec.update(max_rank=max_rank, ours={**spec["ours"], "max_rank": max_rank})
        if spec["tensorly"] != "val":
            spec["tensorly"] = (spec["tensorly"][0], max_rank)
    real = spec["load"]()
    (idx, vals), (test_idx, truth) = split(real, spec.get("max_scored"))
    rows = []
    for label in spec["methods"] + (("nuts",) if nuts else ()):
        method, fit = ours_fit(name, label, spec)
        start = time.perf_counter()
        model = bt.TensorCompletion(real.data.shape, **spec["ours"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = bt.fit(model, (idx, vals), method=method, seed=0, progress=False, **fit)
        pred = post.predict(test_idx)
        rows.append({"method": f"ours {label.replace(method, method.upper())}",
                     "seconds": time.perf_counter() - start,
                     "rank": post.effective_rank().mode().tolist(),
                     "error": scores(pred.mean, truth)["error"],
                     "coverage90": pred.coverage(truth, 0.9), **mixing(post, pred),
                     # the fit's warnings are silenced above; how it ended is recorded here
                     **{k: post.info[k] for k in ("vi_sweeps", "vi_converged")
                        if k in post.info}})
    start = time.perf_counter()
    vb = bcpf(idx, vals, real.data.shape, spec["max_rank"], seed=0)
    mean, sd = vb.predict(test_idx)
    rows.append({"method": "vb", "seconds": time.perf_counter() - start, "rank": [vb.rank],
                 **scores(mean, truth, sd)})
    if spec["tensorly"] == "val":
        start = time.perf_counter()
        f = tensorly_masked_parafac_tuned(idx, vals, real.data.shape,
                                          range(1, spec["max_rank"] + 1), seed=0)
        rows.append({"method": "tensorly@val", "seconds": time.perf_counter() - start,
                     "rank": [f.rank], **scores(f(test_idx), truth)})
    else:
        for rank in spec["tensorly"]:
            start = time.perf_counter()
            f = tensorly_masked_parafac(idx, vals, real.data.shape, rank, seed=0)
            rows.append({"method": f"tensorly@{rank}", "seconds": time.perf_counter() - start,
                         "rank": [rank], **scores(f(test_idx), truth)})
    for row in rows:
        row.update(data=name, scored=len(truth))
        print(json.dumps(row), flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["il2"], choices=list(SETTINGS))
    parser.add_argument("--max-rank", type=int, default=None,
                        help="every method's max rank (default: 60 for IL-2, 20 for Indian Pines; "
                        "TensorLy on Indian Pines runs at 4 and at this rank)")
    parser.add_argument("--nuts", action="store_true",
                        help="IL-2 only: also NUTS, the reference posterior")
    parser.add_argument("--methods", nargs="+", default=None, metavar="LABEL",
                        help="our rows instead of the data set's (map, sghmc, 'sghmc from the "
                        "MAP', 'sghmc from the starting values', vi, 'vi from the starting "
                        "values'); the peers run as always")
    parser.add_argument("--tag", default="", help="suffix of the result file's name")
    args = parser.parse_args()
    if args.nuts and args.data != ["il2"]:
        parser.error("--nuts: IL-2 only (--data il2)")
    torch.set_num_threads(1)
    rows = [row for name in args.data
            for row in run(name, args.max_rank, args.nuts, args.methods)]
    RESULTS.mkdir(exist_ok=True)
    tag = ("" if args.max_rank is None else f"_max{args.max_rank}") + ("_nuts" if args.nuts else "")
    tag += f"_{args.tag}" if args.tag else ""
    out = RESULTS / f"real_tensor_peers_{'_'.join(args.data)}{tag}.json"
    out.write_text(json.dumps({"machine": platform.platform(), "torch": torch.__version__,
                               "args": vars(args), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Credible intervals of noise-free held-out entries, with NUTS as the reference.

Predictive intervals of held-out *noisy* entries calibrate for nearly every method because the
noise dominates them; the intervals of the *noise-free* entries (``kind="mean"``) are where a
sampler has to earn its cost. For each seed, on the rank study's 30^3 setting (true rank 3,
20% observed, 10 dB, ``max_rank=8``), the built-in CP completion model is fitted by NUTS (the
reference), SGHMC and SVGD at their defaults, SGHMC with the moves that explore the
switched-off slices (``sghmc+explore``; ``sghmc+moves`` / ``sghmc+rows``: one of the two),
mean-field VI and MAP, and the VB peer
(``benchmarks/baselines/bcpf.py``). On held-out entries, against the noise-free truth:

* coverage of the central 50/80/90/95% credible interval of the entry (empirical quantiles of
  the draws; Gaussian for VB, with the noise term left out);
* median 90% interval width, and its ratio to NUTS's median width;
* median over entries of ``|mean - NUTS mean| / NUTS sd``;
* relative error of the posterior mean on these entries, and wall seconds of the fit.

Run: ``python benchmarks/coverage_vs_nuts.py [--seeds 0,1,2] [--nuts-draws 200] [--threads 1]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import arviz as az
import numpy as np
import torch
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bayestensor as bt  # noqa: E402
from benchmarks.baselines.bcpf import bcpf  # noqa: E402
from benchmarks.completion_study import LEVELS, coverage  # noqa: E402
from benchmarks.sghmc_vs_nuts import ess_bulk  # noqa: E402

RESULTS = Path(__file__).parent / "results"
METHODS = ("nuts", "sghmc", "sghmc+explore", "sghmc+moves", "sghmc+rows", "svgd", "vi", "map",
           "vb")
#: SGHMC with the moves that explore the switched-off slices (not the default; see
#: docs/inference.md, "Exploring the switched-off slices"), both or one of them
SGHMC_VARIANTS = {"sghmc+explore": {"scale_moves": True, "factor_redraws": True},
                  "sghmc+moves": {"scale_moves": True},
                  "sghmc+rows": {"factor_redraws": True}}


def cov_key(level):
    return f"cov{int(round(100 * level))}"


def fit_ours(method, data, args, seed):
    """Fit the built-in CP model; NUTS at the reference budget, SGHMC with 4 chains, the rest
    at their defaults."""
    model = bt.TensorCompletion(data.shape, "cp", max_rank=args.max_rank)
    settings = {"sghmc": {"num_chains": 4},
                **{name: {"num_chains": 4, **opts} for name, opts in SGHMC_VARIANTS.items()},
                "nuts": {"num_chains": args.nuts_chains, "num_samples": args.nuts_draws,
                         "num_warmup": args.nuts_warmup, "max_tree_depth": args.tree_depth}}
    start = time.perf_counter()
    post = bt.fit(model, data.train, method=method.split("+")[0], seed=seed, progress=False,
                  **settings.get(method, {}))
    return post, time.perf_counter() - start


def max_rhat(pred, post, count: int) -> float:
    """Largest rank-normalized R-hat (ArviZ) over the first ``count`` entries' draws."""
    draws = pred.draws.reshape(post.num_chains, post.num_draws, -1)[..., :count].double()
    return float(az.rhat(az.convert_to_dataset({"x": draws.numpy()}))["x"].values.max())


def summarize(method, mean, lo_hi, cov, truth, seconds, ref):
    """One row: ``lo_hi`` maps level -> (lower, upper); ``ref`` is NUTS's (mean, sd, width90)."""
    width90 = lo_hi[0.9][1] - lo_hi[0.9][0]
    row = {"method": method, "seconds": seconds,
           **{cov_key(lv): c for lv, c in zip(LEVELS, cov)},
           "width90_median": float(np.median(width90)),
           "heldout_rel_err": float(np.linalg.norm(mean - truth) / np.linalg.norm(truth))}
    if ref is not None:
        ref_mean, ref_sd, ref_width = ref
        row["width90_ratio_vs_nuts"] = row["width90_median"] / float(np.median(ref_width))
        row["mean_shift_in_nuts_sd"] = float(np.median(np.abs(mean - ref_mean) / ref_sd))
    return row


def run_seed(seed, args):
    data = bt.data.synthetic_tensor((args.size,) * 3, rank=3, snr_db=10, observed=args.observed,
                                        seed=seed)
    idx = data.test.indices[:args.n_heldout]
    truth = data.test.values[:args.n_heldout].double().numpy()
    rows, ref = [], None
    for method in args.methods:
        try:
            if method == "vb":
                start = time.perf_counter()
                vb = bcpf(data.train.indices, data.train.values, data.shape, args.max_rank,
                          seed=seed)
                seconds = time.perf_counter() - start
                mean, sd = vb.predict(idx, kind="mean")
                lo_hi = {lv: (mean - norm.ppf(0.5 + lv / 2) * sd, mean + norm.ppf(0.5 + lv / 2) * sd)
                         for lv in LEVELS}
                cov = [coverage((mean, sd), truth, lv) for lv in LEVELS]
                row = summarize(method, mean, lo_hi, cov, truth, seconds, ref)
                row["rank_found"] = int(vb.rank)
            else:
                post, seconds = fit_ours(method, data, args, seed)
                pred = post.predict(idx)
                lo_hi = {lv: pred.interval(lv, kind="mean") for lv in LEVELS}
                cov = pred.coverage(truth, list(LEVELS), kind="mean")
                row = summarize(method, pred.mean, lo_hi, cov, truth, seconds, ref)
                row["rank_found"] = int(post.effective_rank().mode()[0])
                row["draws_total"] = int(pred.draws.shape[0])
                if post.num_chains > 1:
                    row["rhat_entries_max"] = max_rhat(pred, post, 200)
                if method == "nuts":
                    ref = (pred.mean, pred.sd_mean, lo_hi[0.9][1] - lo_hi[0.9][0])
                    row["width90_ratio_vs_nuts"] = 1.0
                    row["mean_shift_in_nuts_sd"] = 0.0
                    draws = pred.draws.reshape(post.num_chains, post.num_draws, -1).numpy()
                    k = min(100, draws.shape[-1])
                    row["nuts_ess_entries_median"] = float(np.median(
                        [ess_bulk(draws[..., j]) for j in range(k)]))
        except Exception as exc:  # report a failed method instead of dropping it
            traceback.print_exc()
            row = {"method": method, "error": f"{type(exc).__name__}: {exc}"}
        row = {"seed": seed, "n_heldout": len(truth), **row}
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        rows.append(row)
    return rows


COLUMNS = [("method", "method"), ("cov50", "50%"), ("cov80", "80%"), ("cov90", "90%"),
           ("cov90_range", "90%, min-max over seeds"), ("cov95", "95%"),
           ("width90_ratio_vs_nuts", "90% width / NUTS"),
           ("mean_shift_in_nuts_sd", "abs(mean - NUTS mean) / NUTS sd"),
           ("heldout_rel_err", "held-out error"), ("rhat_entries_max", "max R-hat, 200 entries"),
           ("seconds", "wall s")]


def summary(rows):
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        ok = [r for r in rows if r["method"] == method and "error" not in r]
        failed = [r for r in rows if r["method"] == method and "error" in r]
        s = {"method": method, "seeds": len(ok), "failed": len(failed)}
        for key, _ in COLUMNS[1:]:
            vals = [r[key] for r in ok if key in r]
            if vals:
                s[key] = float(statistics.median(vals))
        if ok:
            c90 = [r["cov90"] for r in ok]
            s["cov90_range"] = f"{min(c90):.3f}-{max(c90):.3f}"
        out.append(s)
    return out


def markdown(summ):
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for s in summ:
        cells = []
        for key, _ in COLUMNS:
            v = s.get(key, s["method"] if key == "method" else ("failed" if not s["seeds"] else "-"))
            if key == "seconds" and isinstance(v, float):
                cells.append(f"{v:.1f}")
            elif isinstance(v, float):
                cells.append(f"{v:.3f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--size", type=int, default=30)
    parser.add_argument("--observed", type=float, default=0.2)
    parser.add_argument("--max-rank", type=int, default=8)
    parser.add_argument("--n-heldout", type=int, default=1000)
    parser.add_argument("--nuts-chains", type=int, default=2)
    parser.add_argument("--nuts-draws", type=int, default=200)
    parser.add_argument("--nuts-warmup", type=int, default=200)
    parser.add_argument("--tree-depth", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "coverage_vs_nuts.json"))
    args = parser.parse_args()
    args.methods = [m.strip() for m in args.methods.split(",")]
    if "nuts" in args.methods and args.methods[0] != "nuts":
        raise SystemExit("--methods: nuts must come first (it is the reference)")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        rows += run_seed(seed, args)
    summ = summary(rows)
    out = Path(args.out)
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "processor": platform.processor(),
                               "python": platform.python_version(), "torch": torch.__version__,
                               "threads": torch.get_num_threads(), "args": vars(args),
                               "total_seconds": time.perf_counter() - start,
                               "summary": summ, "rows": rows}, indent=2))
    print(f"\nMedians over seeds ({len(set(r['seed'] for r in rows))}), "
          f"{args.n_heldout} held-out entries each:\n")
    print(markdown(summ))
    print(f"\nwrote {out} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()

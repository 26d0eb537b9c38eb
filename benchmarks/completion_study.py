"""Tensor completion against its peers: rank recovery, calibration, real data, scale.

Peers, run in the same process on the same observations:

* ``vb``: Bayesian CP factorization by variational Bayes with ARD (Zhao, Zhang & Cichocki
  2015), ``benchmarks/baselines/bcpf.py``, run as the authors' BCPF_TC.m runs it (scaling,
  start, pruning and lower-bound stopping of their code);
* ``tensorly@val``: TensorLy's masked ``parafac`` at the rank in 1..max rank with the lowest
  error on a 10% validation split of the observed entries (refit on all of them);
* ``tensorly@true`` / ``tensorly@max``: the same at the true rank (an oracle) and at the
  over-specified maximum rank.

Studies (``--study``):

* ``rank``: synthetic CP tensors over a grid of size, rank, observed fraction and SNR, several
  seeds: fraction of runs whose posterior-mode rank equals the truth, median held-out relative
  error (noise-free truth) per method;
* ``calibration``: empirical coverage of 50/80/90/95% predictive intervals on held-out noisy
  entries;
* ``real``: TensorLy's kinetic fluorescence tensor (its own mask, plus 10% of the observed
  entries held out) and scikit-image colour images with 70% / 90% of pixels missing;
* ``scale``: a 1000^3 rank-20 CP tensor with 1e4..1e6 observed entries (separate processes,
  see ``scale_probe.py``).

Run: ``python benchmarks/completion_study.py --study rank [--seeds 5] [--threads 2]
[--settings 1] [--methods map+auto,sghmc@defaults]`` (``--settings``: positions in
``RANK_GRID``; ``sghmc@defaults``: SGHMC at the library's defaults, where ``sghmc`` runs 2 x 300
draws)
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
from benchmarks.baselines.bcpf import (  # noqa: E402
    bcpf,
    tensorly_masked_parafac,
    tensorly_masked_parafac_tuned,
)

RESULTS = Path(__file__).parent / "results"
LEVELS = (0.5, 0.8, 0.9, 0.95)

RANK_GRID = [  # (size, true rank, observed, snr_db)
    (30, 3, 0.2, 10), (30, 3, 0.1, 0), (30, 5, 0.5, 20), (30, 10, 0.5, 20), (30, 10, 0.2, 10),
    (50, 5, 0.1, 10), (50, 10, 0.2, 20),
]

METHOD_SETTINGS = {
    "map": {},
    "sghmc": {"num_chains": 2, "num_samples": 300, "num_warmup": 300},
    "svgd": {"num_samples": 50, "num_steps": 200},
    "vi": {"num_samples": 300, "num_steps": 2000},
    "sghmc@defaults": {},  # the library's defaults: 4 chains x 1000 draws after 1000 steps
    "vi@init": {"num_samples": 300, "init_from": "init"},  # closed-form VI from the start
    "default": {},  # fit without a method: the model's default (CP, gamma: the closed-form VI)
}
# "+hold": the same with the noise precision held at 1 / Var(y) for the first tenth of the MAP
# steps (``map_hold``, see bayestensor.models.completion.TensorCompletion)
# "+auto": ``map_hold="auto"``, held or not as a 10% validation split of the observations says
HOLD = {"map_hold": {"noise_precision": 0.1}}
METHOD_SETTINGS.update({f"{m}+hold": {**METHOD_SETTINGS[m], **HOLD} for m in ("map", "sghmc", "svgd")})
METHOD_SETTINGS.update({f"{m}+auto": {**METHOD_SETTINGS[m], "map_hold": "auto"}
                        for m in ("map", "sghmc", "svgd")})


def coverage(mean_sd_or_pred, truth, level):
    if isinstance(mean_sd_or_pred, tuple):
        mean, sd = mean_sd_or_pred
        from scipy.stats import norm

        z = norm.ppf(0.5 + level / 2)
        return float(np.mean(np.abs(truth - mean) <= z * sd))
    return mean_sd_or_pred.coverage(truth, level)


def run_ours(method, shape, train, test_idx, max_rank, seed, fmt="cp", prior="gamma",
             init="svd"):
    model = bt.TensorCompletion(shape, fmt, max_rank=max_rank, prior=prior)
    start = time.perf_counter()
    name = method.split("+")[0].split("@")[0]
    post = bt.fit(model, train, method=None if name == "default" else name, seed=seed,
                  progress=False, init=init, **METHOD_SETTINGS[method])
    seconds = time.perf_counter() - start
    pred = post.predict(test_idx)
    return post, pred, seconds


def study_rank(args):
    rows = []
    settings = [RANK_GRID[i] for i in args.settings] if args.settings else RANK_GRID
    for size, rank, observed, snr in settings:
        max_rank = max(2 * rank, rank + 5)
        for seed in range(args.seeds):
            data = bt.data.synthetic_tensor((size,) * 3, rank=rank, snr_db=snr,
                                                observed=observed, seed=seed)
            base = {"size": size, "rank": rank, "observed": observed, "snr_db": snr, "seed": seed,
                    "max_rank": max_rank}
            for method in args.methods:
                post, pred, sec = run_ours(method, data.shape, data.train, data.test.indices,
                                           max_rank, seed, prior=args.prior, init=args.init)
                rows.append({**base, "method": method, "rank_found": int(post.effective_rank().mode()[0]),
                             "error": data.relative_error(pred.mean), "seconds": sec,
                             "coverage90": pred.coverage(data.test_noisy.values, 0.9)})
            start = time.perf_counter()
            vb = bcpf(data.train.indices, data.train.values, data.shape, max_rank, seed=seed)
            rows.append({**base, "method": "vb", "rank_found": vb.rank, "seconds": time.perf_counter() - start,
                         "error": data.relative_error(vb.predict(data.test.indices)[0])})
            for label, r in (("tensorly@true", rank), ("tensorly@max", max_rank)):
                start = time.perf_counter()
                f = tensorly_masked_parafac(data.train.indices, data.train.values, data.shape, r, seed=seed)
                rows.append({**base, "method": label, "rank_found": r, "seconds": time.perf_counter() - start,
                             "error": data.relative_error(f(data.test.indices))})
            start = time.perf_counter()
            f = tensorly_masked_parafac_tuned(data.train.indices, data.train.values, data.shape,
                                              range(1, max_rank + 1), seed=seed)
            rows.append({**base, "method": "tensorly@val", "rank_found": f.rank,
                         "seconds": time.perf_counter() - start,
                         "error": data.relative_error(f(data.test.indices))})
            print(f"done size={size} rank={rank} obs={observed} snr={snr} seed={seed}", flush=True)
    return {"runs": rows, "summary": rank_summary(rows)}


def rank_summary(rows: list[dict], reference: str = "vb") -> list[dict]:
    """Per setting and method: how often the exact rank was found, the median error and
    seconds, and the median over seeds of each seed's error and time ratio to ``reference``
    (paired: the same data per seed), beside the ratio of the medians."""
    summary = []
    for size, rank, observed, snr in RANK_GRID:
        here = [r for r in rows if (r["size"], r["rank"], r["observed"], r["snr_db"]) ==
                (size, rank, observed, snr)]
        ref = {r["seed"]: r for r in here if r["method"] == reference}
        for method in dict.fromkeys(r["method"] for r in here):
            sel = [r for r in here if r["method"] == method]
            row = {"size": size, "rank": rank, "observed": observed, "snr_db": snr,
                   "method": method,
                   "rank_exact": float(np.mean([r["rank_found"] == rank for r in sel])),
                   "median_error": statistics.median(r["error"] for r in sel),
                   "median_seconds": statistics.median(r["seconds"] for r in sel)}
            if all("coverage90" in r for r in sel):
                row["median_coverage90"] = statistics.median(r["coverage90"] for r in sel)
            paired = [(r, ref[r["seed"]]) for r in sel if r["seed"] in ref]
            if method != reference and paired:
                row["error_ratio_paired"] = statistics.median(r["error"] / v["error"]
                                                              for r, v in paired)
                row["error_ratio_of_medians"] = row["median_error"] / statistics.median(
                    v["error"] for _, v in paired)
                row["seconds_ratio_paired"] = statistics.median(r["seconds"] / v["seconds"]
                                                                for r, v in paired)
            summary.append(row)
    return summary


def study_calibration(args):
    rows = []
    settings = [(30, 3, 0.2, 10), (30, 5, 0.3, 20), (40, 4, 0.1, 5)]
    for size, rank, observed, snr in settings:
        for seed in range(args.seeds):
            data = bt.data.synthetic_tensor((size,) * 3, rank=rank, snr_db=snr, observed=observed,
                                                seed=seed, n_test=5000)
            truth = data.test_noisy.values.numpy()
            base = {"size": size, "rank": rank, "observed": observed, "snr_db": snr, "seed": seed}
            for method in args.methods:
                _, pred, _ = run_ours(method, data.shape, data.train, data.test.indices, 2 * rank + 2, seed)
                rows.append({**base, "method": method,
                             **{f"cov{int(100 * l)}": coverage(pred, truth, l) for l in LEVELS}})
            vb = bcpf(data.train.indices, data.train.values, data.shape, 2 * rank + 2, seed=seed)
            ms = vb.predict(data.test.indices)
            rows.append({**base, "method": "vb", **{f"cov{int(100 * l)}": coverage(ms, truth, l) for l in LEVELS}})
            print(f"done calibration {base}", flush=True)
    summary = []
    for method in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == method]
        summary.append({"method": method, **{f"cov{int(100 * l)}": float(np.mean([r[f"cov{int(100 * l)}"] for r in sel]))
                                              for l in LEVELS}, "runs": len(sel)})
    return {"runs": rows, "summary": summary}


def psnr(pred, truth):
    mse = float(np.mean((np.clip(pred, 0, 1) - truth) ** 2))
    return 10 * np.log10(1.0 / mse)


def study_real(args):
    rows = []
    if "kinetic" in args.real_data:
        rows += real_kinetic(args)
    if "images" in args.real_data:
        rows += real_images(args)
    return {"runs": rows}


def real_kinetic(args):
    rows = []
    kin = bt.data.load_kinetic()
    obs = kin.observations()
    train, test = obs.split(0.1, seed=0)
    truth = test.values.double().numpy()
    for method in args.methods:
        post, pred, sec = run_ours(method, obs.shape, train, test.indices, 10, 0)
        rows.append({"data": "kinetic", "method": method, "rank_found": post.effective_rank().mode().tolist(),
                     "rel_error": float(np.linalg.norm(pred.mean - truth) / np.linalg.norm(truth)),
                     "cov90": pred.coverage(truth, 0.9), "seconds": sec})
    vb = bcpf(train.indices, train.values, obs.shape, 10)
    m, sd = vb.predict(test.indices)
    rows.append({"data": "kinetic", "method": "vb", "rank_found": [vb.rank],
                 "rel_error": float(np.linalg.norm(m - truth) / np.linalg.norm(truth)),
                 "cov90": coverage((m, sd), truth, 0.9)})
    for r in (vb.rank, 10):
        f = tensorly_masked_parafac(train.indices, train.values, obs.shape, r)
        p = f(test.indices)
        rows.append({"data": "kinetic", "method": f"tensorly@{r}", "rank_found": [r],
                     "rel_error": float(np.linalg.norm(p - truth) / np.linalg.norm(truth))})
    f = tensorly_masked_parafac_tuned(train.indices, train.values, obs.shape, range(1, 11))
    p = f(test.indices)
    rows.append({"data": "kinetic", "method": "tensorly@val", "rank_found": [f.rank],
                 "rel_error": float(np.linalg.norm(p - truth) / np.linalg.norm(truth))})
    print("done kinetic", flush=True)
    return rows


def real_images(args):
    rows = []
    for name in ("astronaut", "coffee"):
        for missing in (0.7, 0.9):
            img = bt.data.load_image(name, size=args.image_size, missing=missing, seed=0)
            full = img.info["truth"]
            obs = img.observations()
            test_mask = ~img.mask
            test_idx = np.argwhere(test_mask)
            rank = args.image_rank
            for method in [m for m in args.methods if m.split("+")[0] in ("map", "sghmc")]:
                post, pred, sec = run_ours(method, obs.shape, obs, test_idx, rank, 0)
                rec = full.copy()
                rec[test_mask] = pred.mean
                rows.append({"data": f"{name} {int(missing * 100)}% missing", "method": method,
                             "psnr": psnr(rec, full), "rank_found": post.effective_rank().mode().tolist(),
                             "cov90": pred.coverage(full[test_mask], 0.9), "seconds": sec})
            vb = bcpf(obs.indices, obs.values, obs.shape, rank)
            m, sd = vb.predict(test_idx)
            rec = full.copy()
            rec[test_mask] = m
            rows.append({"data": f"{name} {int(missing * 100)}% missing", "method": "vb",
                         "psnr": psnr(rec, full), "rank_found": [vb.rank],
                         "cov90": coverage((m, sd), full[test_mask], 0.9)})
            f = tensorly_masked_parafac(obs.indices, obs.values, obs.shape, vb.rank)
            rec = full.copy()
            rec[test_mask] = f(test_idx)
            rows.append({"data": f"{name} {int(missing * 100)}% missing", "method": f"tensorly@{vb.rank}",
                         "psnr": psnr(rec, full)})
            f = tensorly_masked_parafac_tuned(obs.indices, obs.values, obs.shape,
                                              sorted({1, 2, 3, 5, 8, 10, 20, rank}))
            rec = full.copy()
            rec[test_mask] = f(test_idx)
            rows.append({"data": f"{name} {int(missing * 100)}% missing", "method": "tensorly@val",
                         "rank_found": [f.rank], "psnr": psnr(rec, full)})
            print(f"done {name} {missing}", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--study", choices=["rank", "calibration", "real"], required=True)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--methods", default="map,sghmc,svgd")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--image-rank", type=int, default=40)
    parser.add_argument("--real-data", nargs="+", choices=["kinetic", "images"],
                        default=["kinetic", "images"], help="--study real: which data sets")
    parser.add_argument("--init", choices=["svd", "spectral"], default="svd",
                        help="--study rank: the CP start of our fits")
    parser.add_argument("--prior", choices=bt.priors.PRIORS, default="gamma",
                        help="--study rank: the rank prior of our fits (the peers have their own)")
    parser.add_argument("--settings", type=int, nargs="+", default=None, metavar="K",
                        choices=range(len(RANK_GRID)),
                        help="--study rank: only these settings, by position in RANK_GRID "
                             "(0-6; default all)")
    parser.add_argument("--tag", default="", help="suffix of the result file name")
    parser.add_argument("--summarize", type=Path, default=None, metavar="JSON",
                        help="--study rank: print the summary of a saved result; no fits")
    args = parser.parse_args()
    if args.summarize is not None:
        if args.study != "rank":
            parser.error("--summarize: only with --study rank")
        for row in rank_summary(json.loads(args.summarize.read_text())["runs"]):
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
        return
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in args.methods if m not in METHOD_SETTINGS]
    if unknown:
        parser.error(f"--methods: unknown {unknown}; choose from {sorted(METHOD_SETTINGS)}")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    result = {"rank": study_rank, "calibration": study_calibration, "real": study_real}[args.study](args)
    result.update(machine=platform.platform(), torch=torch.__version__, args=vars(args),
                  seconds=time.perf_counter() - start)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"completion_{args.study}{'_' + args.tag if args.tag else ''}.json"
    out.write_text(json.dumps(result, indent=2, default=float))
    for row in result.get("summary", result["runs"]):
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

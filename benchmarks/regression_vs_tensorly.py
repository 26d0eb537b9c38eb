"""Bayesian low-rank tensor regression vs TensorLy's CPRegressor / TuckerRegressor.

Problems (inputs iid N(0, 1), SNR 10 dB, ``bayestensor.data.regression``):

* ``cross``: a rank-2 cross in a 32x32 image, n_train=500 (fewer data than the 1024 pixels);
* ``cp3``: a random rank-3 CP array of shape 10x10x10, n_train=600;
* ``box``: a random rank-3 CP array of shape 7x8x9, n_train=400.

Ours (``bt.TensorRegression``, gamma ARD prior, ``max_rank`` over-specified, the rank found by
the posterior) with MAP and with SGHMC started at the MAP (2 chains x 500 draws after 500
burn-in steps), SGHMC also with the sharper hyperprior ``Gamma(1e-3, 1e-6)`` on the slice
precisions (``prior_params={"b": 1e-6}``; default ``b=1e-3``), and Tucker MAP, against TensorLy's ALS regressors at the true rank and at the same
over-specified rank (``reg_W=1``, their default; inputs and responses centred the same way,
the mean added back), and TensorLy's CPRegressor with its rank chosen by 5-fold
cross-validation over 1..max_rank (the task ours solves: the rank is not given). SGHMC also
runs at its defaults (4 chains of 1000 draws after 1000 warm-up steps; one chain before
``fit`` took 4 chains by default). Held-out data: 1000
inputs. Every method is warmed up once on a small problem before the clock runs (imports and
first-call costs are not timed, for either library).

Columns: held-out relative error against the noise-free means (``||pred - mu|| / ||mu -
mean(mu)||``), held-out RMSE against the noisy responses, relative error of W, rank found
(ours: posterior mode of the effective rank, rule of ``bayestensor.priors.effective_rank``; TensorLy: the rank
it was given), 90% predictive coverage of the noisy held-out responses (ours only: TensorLy
gives no intervals), seconds. Medians over seeds are printed; every run is in the JSON.

``--rank-reference`` runs instead, per problem and seed, NUTS (2 chains x 300 draws after 300
warm-up steps, ``max_tree_depth=8``) as the reference posterior next to SGHMC with one chain,
at its default 4 chains, and at 4 chains without its factor redraws, and records each one's
effective-rank distribution and the median scale of every slice relative to the largest
(``regression_rank_reference.json``): whether a rank SGHMC finds is the posterior's or its
mixing's. ``--max-rank`` sets the models' max rank there (default: the problem's, 6).

Run: ``OMP_NUM_THREADS=1 python benchmarks/regression_vs_tensorly.py [--seeds 0,1,2]
[--rank-reference --problems cross [--max-rank 5]]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import tensorly as tl
import torch
from tensorly.regression import CPRegressor, TuckerRegressor

import bayestensor as bt
from bayestensor.viz.regression import plot_weights
from bayestensor.data.regression import synthetic_cp_regression, synthetic_image_regression

RESULTS = Path(__file__).parent / "results"

PROBLEMS = {
    "cross": dict(make=lambda seed: synthetic_image_regression("cross", size=32, n_train=500,
                                                               n_test=1000, seed=seed),
                  true_cp=2, true_tucker=(2, 2), over=6),
    "cp3": dict(make=lambda seed: synthetic_cp_regression((10, 10, 10), rank=3, n_train=600,
                                                          n_test=1000, seed=seed),
                true_cp=3, true_tucker=(3, 3, 3), over=6),
    "box": dict(make=lambda seed: synthetic_cp_regression((7, 8, 9), rank=3, n_train=400,
                                                          n_test=1000, seed=seed),
                true_cp=3, true_tucker=(3, 3, 3), over=6),
}
CV_FOLDS = 5


def score(data, mean, w, seconds, name, rank, coverage=None):
    return {"method": name, "heldout_rel_err": data.relative_error(mean),
            "heldout_rmse": float(np.sqrt(np.mean((mean - data.y_test) ** 2))),
            "w_rel_err": data.weight_relative_error(w), "rank": rank,
            "coverage90": coverage, "seconds": seconds}


def run_tensorly(data, cls, rank, name):
    X = data.X_train - data.X_train.mean(0)
    y = data.y_train - data.y_train.mean()
    start = time.perf_counter()
    reg = cls(rank, n_iter_max=200, random_state=0, verbose=0).fit(tl.tensor(X), tl.tensor(y))
    seconds = time.perf_counter() - start
    w = np.asarray(reg.weight_tensor_)
    b = data.y_train.mean() - float(np.sum(w * data.X_train.mean(0)))
    mean = data.X_test.reshape(len(data.X_test), -1) @ w.reshape(-1) + b
    return score(data, mean, w, seconds, name, [int(r) for r in np.atleast_1d(rank)])


def run_tensorly_cv(data, max_rank):
    """CPRegressor at the rank with the least 5-fold cross-validated error over 1..max_rank,
    refitted on all the data; the seconds count every fit."""
    X = data.X_train - data.X_train.mean(0)
    y = data.y_train - data.y_train.mean()
    folds = np.array_split(np.random.default_rng(0).permutation(len(y)), CV_FOLDS)
    start = time.perf_counter()
    cv_error = []
    for rank in range(1, max_rank + 1):
        err = 0.0
        for fold in folds:
            train = np.setdiff1d(np.arange(len(y)), fold)
            reg = CPRegressor(rank, n_iter_max=200, random_state=0, verbose=0).fit(
                tl.tensor(X[train]), tl.tensor(y[train]))
            err += float(np.sum((reg.predict(tl.tensor(X[fold])) - y[fold]) ** 2))
        cv_error.append(err)
    best = int(np.argmin(cv_error)) + 1
    reg = CPRegressor(best, n_iter_max=200, random_state=0, verbose=0).fit(tl.tensor(X),
                                                                           tl.tensor(y))
    seconds = time.perf_counter() - start
    w = np.asarray(reg.weight_tensor_)
    b = data.y_train.mean() - float(np.sum(w * data.X_train.mean(0)))
    mean = data.X_test.reshape(len(data.X_test), -1) @ w.reshape(-1) + b
    return score(data, mean, w, seconds, f"tensorly CPRegressor (rank by {CV_FOLDS}-fold CV)",
                 [best])


def warm_up():
    """One small fit of each kind, so no timed run pays imports or first-call costs."""
    data = synthetic_cp_regression((4, 4, 4), rank=2, n_train=60, n_test=10, seed=0)
    run_tensorly(data, CPRegressor, 2, "warm-up")
    model = bt.TensorRegression(data.input_shape, format="cp", max_rank=2)
    bt.fit(model, data.train, method="map", seed=0, progress=False)
    bt.fit(model, data.train, method="sghmc", num_samples=20, seed=0, progress=False)


def run_ours(data, fmt, max_rank, method, seed, sghmc_draws, sghmc_warmup, prior_params=None,
             defaults=False):
    model = bt.TensorRegression(data.input_shape, format=fmt, max_rank=max_rank,
                                prior_params=prior_params)
    start = time.perf_counter()
    if method == "map":
        post = bt.fit(model, data.train, method="map", seed=seed, progress=False)
    elif defaults:
        post = bt.fit(model, data.train, method="sghmc", seed=seed, progress=False)
    else:
        post = bt.fit(model, data.train, method="sghmc", num_chains=2,
                      num_samples=sghmc_draws, num_warmup=sghmc_warmup, seed=seed,
                      progress=False)
    seconds = time.perf_counter() - start
    pred = post.predict(data.X_test)
    w_mean, w_sd = model.weight_posterior(post)
    ranks = post.effective_rank()
    tag = "" if not prior_params else ", " + ", ".join(f"{k}={v:g}" for k, v in prior_params.items())
    if defaults:
        tag += ", defaults"
    row = score(data, pred.mean, w_mean, seconds, f"ours {fmt} {method} (max {max_rank}{tag})",
                ranks.mode().tolist(), pred.coverage(data.y_test, 0.9))
    row["rank_distribution"] = ranks.distribution(0)
    row["coverage90_mean"] = pred.coverage(data.mean_test, 0.9, kind="mean")
    return row, (w_mean, w_sd)


def rank_reference(data, seed, max_rank, prior_params=None) -> list[dict]:
    """Effective-rank posterior of NUTS (the reference), SGHMC with one chain and at its default
    4 chains, and at 4 chains without its factor redraws (the default before they were), under
    the default hyperprior or ``prior_params``."""
    runs = {"nuts": dict(method="nuts", num_chains=2, num_samples=300, num_warmup=300,
                         max_tree_depth=8),
            "sghmc (1 chain)": dict(method="sghmc", num_chains=1),
            "sghmc (4 chains)": dict(method="sghmc", num_chains=4),
            "sghmc (4 chains, no factor redraws)": dict(method="sghmc", num_chains=4,
                                                        factor_redraws=False)}
    rows = []
    for name, options in runs.items():
        model = bt.TensorRegression(data.input_shape, format="cp", max_rank=max_rank,
                                    prior_params=prior_params)
        start = time.perf_counter()
        post = bt.fit(model, data.train, seed=seed, progress=False, **options)
        ranks = post.effective_rank()
        scales = ranks.scales[0].reshape(-1, ranks.scales[0].shape[-1])
        ordered = -np.sort(-scales, axis=1)
        rows.append({"method": name, "seconds": time.perf_counter() - start,
                     "rank_distribution": ranks.distribution(0),
                     "rank_mode": int(ranks.mode()[0]),
                     "relative_slice_scales": np.median(ordered / ordered[:, :1], 0).tolist(),
                     "coverage90": post.predict(data.X_test).coverage(data.y_test, 0.9)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main_rank_reference(args):
    rows = []
    for pname in args.problems.split(","):
        spec = PROBLEMS[pname]
        for seed in (int(s) for s in args.seeds.split(",")):
            prior_params = None if args.hyperprior_rate is None else {"b": args.hyperprior_rate}
            max_rank = spec["over"] if args.max_rank is None else args.max_rank
            for row in rank_reference(spec["make"](seed), seed, max_rank, prior_params):
                rows.append({"problem": pname, "seed": seed, "true_rank": spec["true_cp"],
                             "max_rank": max_rank, "prior_params": prior_params, **row})
    RESULTS.mkdir(exist_ok=True)
    out = Path(args.out) if args.out else RESULTS / "regression_rank_reference.json"
    out.write_text(json.dumps({"machine": platform.platform(), "torch": torch.__version__,
                               "args": vars(args), "rows": rows}, indent=2))
    print(f"wrote {out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--problems", default="cross,cp3,box")
    parser.add_argument("--sghmc-draws", type=int, default=500)
    parser.add_argument("--sghmc-warmup", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rank-reference", action="store_true",
                        help="NUTS's rank posterior next to SGHMC's instead of the comparison")
    parser.add_argument("--hyperprior-rate", type=float, default=None,
                        help="with --rank-reference: the slice precisions' Gamma rate b "
                             "(default: the model's, 1e-3)")
    parser.add_argument("--max-rank", type=int, default=None,
                        help="with --rank-reference: the models' max rank (default: each "
                             "problem's, 6)")
    parser.add_argument("--out", default=None,
                        help="results file (default: benchmarks/results/"
                             "regression_vs_tensorly.json, or regression_rank_reference.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.rank_reference:
        return main_rank_reference(args)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    warm_up()
    total = time.perf_counter()
    for pname in args.problems.split(","):
        spec = PROBLEMS[pname]
        for seed in seeds:
            data = spec["make"](seed)
            over = spec["over"]
            over_tucker = tuple(over for _ in data.input_shape)
            group = [
                run_tensorly(data, CPRegressor, spec["true_cp"],
                             f"tensorly CPRegressor (rank {spec['true_cp']}, true)"),
                run_tensorly(data, CPRegressor, over, f"tensorly CPRegressor (rank {over})"),
                run_tensorly(data, TuckerRegressor, list(spec["true_tucker"]),
                             f"tensorly TuckerRegressor (ranks {spec['true_tucker']}, true)"),
                run_tensorly(data, TuckerRegressor, list(over_tucker),
                             f"tensorly TuckerRegressor (ranks {over_tucker})"),
                run_tensorly_cv(data, over),
            ]
            row_map, _ = run_ours(data, "cp", over, "map", seed, 0, 0)
            row_sg, (w_mean, w_sd) = run_ours(data, "cp", over, "sghmc", seed, args.sghmc_draws,
                                              args.sghmc_warmup)
            row_sg6, _ = run_ours(data, "cp", over, "sghmc", seed, args.sghmc_draws,
                                  args.sghmc_warmup, prior_params={"b": 1e-6})
            row_default, _ = run_ours(data, "cp", over, "sghmc", seed, 0, 0, defaults=True)
            row_tk, _ = run_ours(data, "tucker", over, "map", seed, 0, 0)
            group += [row_map, row_sg, row_sg6, row_default, row_tk]
            for r in group:
                r.update(problem=pname, seed=seed, true_rank=spec["true_cp"])
            rows += group
            if pname == "cross" and seed == seeds[0]:
                RESULTS.mkdir(exist_ok=True)
                plot_weights(w_mean, w_sd, truth=data.weight,
                             path=RESULTS / "regression_cross_W.png",
                             title="cross, n=500, SGHMC: truth, posterior mean, posterior sd")
            print(f"{pname} seed {seed} done ({time.perf_counter() - total:.0f} s)", flush=True)
    table = summarize(rows)
    print(format_table(table))
    RESULTS.mkdir(exist_ok=True)
    out = Path(args.out) if args.out else RESULTS / "regression_vs_tensorly.json"
    out.write_text(json.dumps({"machine": platform.platform(), "processor": platform.processor(),
                               "torch": torch.__version__, "tensorly": tl.__version__,
                               "args": vars(args), "total_seconds": time.perf_counter() - total,
                               "median_table": table, "rows": rows}, indent=2, default=str))
    print(f"wrote {out}")


def summarize(rows):
    table = []
    keys = []
    for r in rows:
        k = (r["problem"], r["method"])
        if k not in keys:
            keys.append(k)
    for problem, method in keys:
        group = [r for r in rows if r["problem"] == problem and r["method"] == method]
        entry = {"problem": problem, "method": method, "seeds": len(group)}
        for col in ("heldout_rel_err", "heldout_rmse", "w_rel_err", "seconds"):
            entry[col] = float(np.median([r[col] for r in group]))
        cov = [r["coverage90"] for r in group if r["coverage90"] is not None]
        entry["coverage90"] = float(np.median(cov)) if cov else None
        entry["ranks"] = [r["rank"] for r in group]
        table.append(entry)
    return table


def format_table(table):
    head = (f"{'problem':<7} {'method':<50} {'rel.err':>8} {'RMSE':>7} {'W err':>7} "
            f"{'cov90':>6} {'sec':>6}  ranks per seed")
    lines = [head, "-" * len(head)]
    for e in table:
        cov = "  -   " if e["coverage90"] is None else f"{e['coverage90']:6.3f}"
        lines.append(f"{e['problem']:<7} {e['method']:<50} {e['heldout_rel_err']:8.3f} "
                     f"{e['heldout_rmse']:7.3f} {e['w_rel_err']:7.3f} {cov} "
                     f"{e['seconds']:6.2f}  {e['ranks']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

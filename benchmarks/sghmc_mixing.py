"""SGHMC mixing at default settings: R-hat and ESS of held-out entries per format and prior.

Completes a 26 x 24 x 22 rank-4 CP tensor (20% observed, 10 dB, ``max_rank=8``) with SGHMC,
4 chains after 1000 burn-in steps, at ``fit``'s default draws (1,000 per chain, more in blocks
of 500 up to 4,000 until the chains pass their convergence check; ``--draws N`` fixes them at
N, as every run before the check existed did), and reports the worst and median R-hat and the
smallest bulk ESS (ArviZ) of 200 held-out entries, the noise precision's R-hat, the held-out
relative error and the adapted step multipliers. ``--former`` runs the former defaults (a fixed
``lr=0.01``, every chain at the MAP point, ``noise_estimate=0``) for comparison.

Run: ``python benchmarks/sghmc_mixing.py cp gamma [--former]`` (one thread).

``grid`` runs the same fit (4 chains, defaults) over the rank study's seven CP
settings (``completion_study.RANK_GRID``, max rank ``max(2r, r + 5)``) and over CP / gamma,
Tucker / half-Cauchy and TT / gamma on a 30^3 rank-4 tensor (20% observed, 10 dB, max rank 8)
and TT-matrix / gamma on a 13^4 one (TT-matrix needs an even order),
``--seeds`` seeds each, and counts the runs with max R-hat <= 1.02 and min bulk ESS >= 400 on
the held-out entries and the noise precision, without divergence:
``python benchmarks/sghmc_mixing.py grid --seeds 3 [--part 0 --parts 2]``. Variants that are
not the defaults: ``--thin``, ``--factor-redraws`` and, for CP, ``--precision-redraws`` (the
slice precisions redrawn from their Gamma conditionals too) and ``--explore``; for Tucker,
``--tucker-core-variance`` (the core at a fixed prior variance).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import torch

import bayestensor as bt
from completion_study import RANK_GRID

SHAPE = (26, 24, 22)
FORMER = {"adapt_step": False, "init_spread": 0.0, "noise_estimate": 0.0}
CHAINS, DEFAULT_DRAWS = 4, 1000
RESULTS = Path(__file__).parent / "results"


def rhat_ess(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    data = az.convert_to_dataset({"x": draws})
    return az.rhat(data)["x"].values, az.ess(data)["x"].values


def run_case(data, fmt: str, prior: str, max_rank: int, seed: int, settings: dict,
             draws: int | None = None) -> dict:
    """One SGHMC fit (4 chains, ``draws`` per chain or fit's default); R-hat and ESS of 200
    held-out entries."""
    settings = dict(settings)
    core_variance = settings.pop("tucker_core_variance", None)  # not the default
    prior_params = {"core_variance": core_variance} if fmt == "tucker" and core_variance else None
    model = bt.TensorCompletion(data.shape, format=fmt, max_rank=max_rank, prior=prior,
                                prior_params=prior_params)
    if settings.pop("precision_redraws", False):  # CP's slice precisions too: not a default
        model.set_data(data.train)
        settings["gibbs"] = {**model.gibbs_sites(), **model.low_rank_prior.conditionals()}
    start = time.perf_counter()
    post = bt.fit(model, data.train, method="sghmc", num_samples=draws, num_chains=CHAINS,
                  seed=seed, progress=False, **settings)
    seconds = time.perf_counter() - start
    c, d = post.num_chains, post.num_draws
    entries = post.predict(data.test.indices[:200]).draws.double().numpy().reshape(c, d, -1)
    rhat, ess = rhat_ess(entries)
    noise_rhat, noise_ess = rhat_ess(post["noise_precision"].double().numpy().reshape(c, d))
    return {"format": fmt, "prior": prior, "seconds": round(seconds, 1),
            "rhat_entry_max": float(rhat.max()), "rhat_entry_median": float(np.median(rhat)),
            "ess_entry_min": float(ess.min()), "rhat_noise": float(noise_rhat),
            "ess_noise": float(noise_ess),
            "draws": d, "convergence_checks": post.info.get("convergence_checks"),
            "diverged": d < (draws or DEFAULT_DRAWS) or "diverged_at_step" in post.info,
            "error": data.relative_error(post.predict(data.test.indices).mean),
            "step_scale": post.info.get("step_scale")}


def grid_cases(seeds: int):
    """The issue's grid: the rank study's seven CP settings, and CP / Tucker / TT at 30^3 and
    TT-matrix at 13^4 (a TT-matrix needs an even order; 13^4 has about as many entries)."""
    for size, rank, observed, snr in RANK_GRID:
        for seed in range(seeds):
            yield ({"shape": (size,) * 3, "rank": rank, "observed": observed, "snr_db": snr,
                    "seed": seed}, "cp", "gamma", max(2 * rank, rank + 5))
    for fmt, prior, shape in (("cp", "gamma", (30,) * 3), ("tucker", "half_cauchy", (30,) * 3),
                              ("tt", "gamma", (30,) * 3), ("ttm", "gamma", (13,) * 4)):
        for seed in range(seeds):
            yield ({"shape": shape, "rank": 4, "observed": 0.2, "snr_db": 10, "seed": seed},
                   fmt, prior, 8)


def run_grid(args, settings: dict) -> dict:
    rows = []
    cases = list(grid_cases(args.seeds))
    formats = None if args.formats is None else set(args.formats)
    for k, (case, fmt, prior, max_rank) in enumerate(cases):
        if k % args.parts != args.part or (formats is not None and fmt not in formats):
            continue
        data = bt.data.synthetic_tensor(case["shape"], rank=case["rank"],
                                        snr_db=case["snr_db"], observed=case["observed"],
                                        seed=case["seed"])
        row = {**case, "max_rank": max_rank, **run_case(data, fmt, prior, max_rank,
                                                         case["seed"], settings, args.draws)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        "runs": len(rows),
        "max_rhat": max(max(r["rhat_entry_max"], r["rhat_noise"]) for r in rows),
        "min_ess": min(min(r["ess_entry_min"], r["ess_noise"]) for r in rows),
        "runs_meeting": sum(max(r["rhat_entry_max"], r["rhat_noise"]) <= 1.02
                            and min(r["ess_entry_min"], r["ess_noise"]) >= 400
                            and not r["diverged"] for r in rows),
        "divergent_runs": sum(r["diverged"] for r in rows),
        "draws_median": float(np.median([r["draws"] for r in rows])),
        "seconds_median": float(np.median([r["seconds"] for r in rows]))}
    result = {"settings": settings, "draws": args.draws, "part": [args.part, args.parts],
              "rows": rows,
              "summary": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(summary))
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("format", choices=["cp", "tucker", "tt", "grid"])
    parser.add_argument("prior", nargs="?", default="gamma",
                        choices=["gamma", "half_cauchy", "log_uniform"])
    parser.add_argument("--former", action="store_true", help="The former defaults.")
    parser.add_argument("--explore", action="store_true",
                        help="Not the default: scale moves and factor-row redraws (CP).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=3, help="Seeds per grid setting.")
    parser.add_argument("--part", type=int, default=0, help="Run grid cases k with k %% parts == part.")
    parser.add_argument("--parts", type=int, default=1)
    parser.add_argument("--thin", type=int, default=None, help="Not the default: keep every n-th draw.")
    parser.add_argument("--factor-redraws", choices=["true", "false", "auto"], default=None,
                        help="SGHMC's factor_redraws (default: the library's default).")
    parser.add_argument("--precision-redraws", action="store_true",
                        help="Not the default: redraw CP's slice precisions from their Gamma "
                             "conditionals too (with --factor-redraws true: a full Gibbs sweep).")
    parser.add_argument("--tucker-core-variance", type=float, default=None,
                        help="Not the default: Tucker cores at this fixed prior variance "
                             "(prior_params core_variance) instead of the product prior.")
    parser.add_argument("--draws", type=int, default=None,
                        help="Draws per chain, exactly (default: fit's, until converged).")
    parser.add_argument("--formats", nargs="+", default=None,
                        help="Grid cases of these formats only (default: all).")
    parser.add_argument("--out", type=Path, default=RESULTS / "sghmc_mixing_grid.json")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    settings = dict(FORMER) if args.former else {}
    if args.explore:
        settings.update(scale_moves=True, factor_redraws=True)
    if args.thin is not None:
        settings["thin"] = args.thin
    if args.factor_redraws is not None:
        settings["factor_redraws"] = {"true": True, "false": False}.get(args.factor_redraws,
                                                                        "auto")
    if args.precision_redraws:
        settings["precision_redraws"] = True
    if args.tucker_core_variance is not None:
        settings["tucker_core_variance"] = args.tucker_core_variance
    if args.format == "grid":
        return run_grid(args, settings)
    data = bt.data.synthetic_tensor(SHAPE, rank=4, snr_db=10, observed=0.2, seed=args.seed)
    out = {"former": args.former, **run_case(data, args.format, args.prior, 8, args.seed,
                                             settings, args.draws)}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

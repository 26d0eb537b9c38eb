"""``bayestensor demo`` and ``bayestensor complete``: tensor completion with credible intervals."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import click
import numpy as np

from bayestensor.data import tensors as datasets
from bayestensor.data.observations import Observations
from bayestensor.formats import FORMATS
from bayestensor.infer import METHODS, fit
from bayestensor.infer.api import SIZE_METHODS
from bayestensor.io import atomic_write
from bayestensor.models import TensorCompletion
from bayestensor.models.completion import closed_form_vi_runs, default_method
from bayestensor.report.rundir import save_npz, write_heldout, write_image, write_run
from bayestensor.viz.images import (band_figures, default_bands, image_completion_figures,
                                     is_image)
from bayestensor.cli import options as opt
from bayestensor.cli.errors import Command
from bayestensor.cli.files import read_tensor

#: The demo problem: 20% of the entries observed at 10 dB, rank 3 per rank dimension.
DEMO_SHAPE = (30, 30, 30)
DEMO_TTM_SHAPE = (5, 6, 6, 5, 6, 6)  # TT-matrix needs row and column modes
DEMO_RANK = {"cp": 3, "tucker": (3, 3, 3), "tt": (3, 3), "ttm": (3, 3)}
DEMO_MAX_RANK = {"cp": 15, "tucker": 8, "tt": 8, "ttm": 8}
DEMO_OBSERVED = 0.2
DEMO_SNR_DB = 10
#: Credible level whose held-out coverage the demo prints.
DEMO_LEVEL = 0.9
# The library's SGHMC defaults (step tuned in burn-in, chains spread from the MAP point,
# precisions redrawn exactly), keeping every 4th of 1600 steps: seed 0 gave max R-hat 1.003
# and min bulk ESS 451 on the report's key variables (noise precision, tensor norm, 4
# entries), so the report is clean. Every 3rd of 1200 gave 1.006 before the redraws and 1.010
# with them (a warning at the 1.01 bar); every 2nd of 800 gave 1.018 on an entry.
DEMO_SGHMC = {"num_samples": 400, "num_warmup": 500, "num_chains": 2, "thin": 4}
#: Methods whose MAP start can hold the noise precision while the prior prunes.
MAP_HOLD_METHODS = ("map", "vi", "sghmc", "svgd")
#: Methods that run for a number of optimization (or SVGD) steps rather than draws.
STEP_METHODS = ("map", "vi", "svgd")
#: Methods with a burn-in (``--num-warmup``).
WARMUP_METHODS = SIZE_METHODS["num_warmup"]
#: Real tensors ``complete`` takes by name instead of a file (bundled with TensorLy).
BUILTIN_DATA = ("kinetic", "indian_pines", "il2")
#: Method, format, max rank, start, MAP continuation and MAP steps when --method / --format /
#: --max-rank / --init / --map-hold / --steps are not given, per built-in name; any other input
#: gets ``DEFAULT_FIT`` (``None`` steps: the method's default; ``None`` method: ``vi`` for CP,
#: ``map`` otherwise, ``bayestensor.models.completion.default_method``; Indian Pines keeps the
#: MAP: its closed-form VI matched VB there, 0.0641 against the MAP's 0.0754, but ran to its
#: 500-sweep cap without settling, 251 s against 132 s, and scoring its 4 million hidden
#: entries over 1,000 draws is another cost). Indian Pines (4.2M entries, 5-10%
#: observed): CP max rank 20 from the spectral start had held-out error 0.062 / 0.075 at 90% /
#: 95% missing, against 0.096 / 0.102 from the mean-filled SVD start and 0.082 / 0.083 for
#: Tucker (8, 8, 4) (docs/benchmarks.md, "Real tensors"); 1000 steps and no map_hold
#: validation fits keep it to one MAP fit. IL-2 (4,320 observed entries): SGHMC, its chains
#: started at the starting values: at max rank 20 NUTS, the reference posterior, keeps all 20
#: slices with probability 1, and so do these chains, while chains started at the MAP stay at
#: its 14 (docs/benchmarks.md, "IL-2: the chains"). Max rank 60: at 10 and 20 the chains kept
#: every slice (a cap the report flags), 37 of 40 at 40, and 35-43 of 60 on three splits.
#: ``init_from`` applies to the data set's own method only.
DEFAULT_FIT = {"method": None, "format": "cp", "max_rank": 10, "map_hold": "auto",
               "map_steps": None, "init": "svd", "init_from": None}
BUILTIN_FIT = {"indian_pines": {**DEFAULT_FIT, "method": "map", "max_rank": 20,
                                "init": "spectral", "map_hold": "none", "map_steps": 1000},
               "il2": {**DEFAULT_FIT, "method": "sghmc", "max_rank": 60, "init_from": "init"}}
#: The --init-from values each method takes (where its chains, q or particles start).
INIT_FROM_CHOICES = {"sghmc": ("map", "init"), "vi": ("map", "init"),
                     "svgd": ("map", "vi", "prior")}
#: Fraction of Indian Pines entries hidden when --missing is not given.
DEFAULT_MISSING = 0.9
#: Predictions of every entry are made this many draws x entries at a time (bounded memory).
PREDICT_BLOCK_ELEMENTS = 20_000_000
#: At most this many of a built-in data set's hidden entries go to heldout.npz (the report's
#: sample); the summary scores all of them.
REPORT_HELDOUT = 20_000


@click.command(cls=Command)
@click.option("--method", type=click.Choice(METHODS), default="sghmc", show_default=True)
@click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)), default="cp", show_default=True)
@opt.run_options("demo")
@opt.quiet_option
def demo(method, fmt, seed, out, force, with_report, quiet):
    """Complete a synthetic tensor of known rank (20% observed, 10 dB) and report what was found.

    CP: 30x30x30 of rank 3 with max rank 15; other formats: rank 3 per rank dimension with max
    rank 8 (TT-matrix on a (5, 6, 6, 5, 6, 6) tensor).
    """
    shape, rank = (DEMO_TTM_SHAPE if fmt == "ttm" else DEMO_SHAPE), DEMO_RANK[fmt]
    out = opt.open_run_dir(out, "demo", force)
    data = datasets.synthetic_tensor(shape, rank=rank, format=fmt, snr_db=DEMO_SNR_DB,
                                     observed=DEMO_OBSERVED, seed=seed)
    model = TensorCompletion(shape, format=fmt, max_rank=DEMO_MAX_RANK[fmt], prior="gamma")
    click.echo(f"bayestensor demo: {fmt.upper()} tensor {shape}, true rank {rank}, "
               f"{len(data.train)} observed entries ({DEMO_OBSERVED:.0%}), SNR {DEMO_SNR_DB} dB, "
               f"method {method}")
    options = DEMO_SGHMC if method == "sghmc" else {}
    start = time.perf_counter()
    with opt.chains_echoed():
        post = fit(model, data.train, method=method, seed=seed,
                   progress=opt.show_progress(quiet), **options)
    seconds = time.perf_counter() - start
    pred = post.predict(data.test.indices)
    ranks = post.effective_rank()
    err = data.relative_error(pred.mean)
    cov = pred.coverage(data.test_noisy.values.numpy(), DEMO_LEVEL)
    check = opt.convergence(post, data.test.indices)
    summary = {"method": method, "format": fmt, "shape": list(shape), "true_rank": rank,
               "found_rank_mode": ranks.mode().tolist(), "rank_distribution": ranks.distribution(0),
               "heldout_relative_error": err, "coverage_90": cov, "seconds": seconds,
               "convergence": check}
    click.echo(f"  rank found (posterior mode): {ranks.mode().tolist()}   true: {rank}")
    click.echo(f"  rank posterior (dim 0): {ranks.distribution(0)}")
    click.echo(f"  held-out relative error: {err:.4f}")
    click.echo(f"  {DEMO_LEVEL:.0%} interval coverage of held-out noisy entries: {cov:.3f}")
    click.echo(f"  time: {seconds:.1f} s")
    opt.echo_convergence(check, indent="  ")
    files = [post.save(out / "posterior.pt"), _write_summary(out, summary),
             write_heldout(out, indices=data.test.indices.numpy(), truth=data.test.values.numpy(),
                           noisy=data.test_noisy.values.numpy())]
    write_run(out, "completion", files=files,
              settings={"command": "demo", "method": method, "format": fmt, "seed": seed,
                        "prior": "gamma", "options": options, "true_rank": rank,
                        "seconds": seconds},
              data={"shape": list(shape), "observed": len(data.train),
                    "observed_fraction": DEMO_OBSERVED, "heldout": len(data.test),
                    "snr_db": DEMO_SNR_DB})
    click.echo(f"  saved: {out / 'posterior.pt'}, {out / 'summary.json'}")
    opt.echo_report(out, with_report)


@click.command(cls=Command)
@click.argument("file")
@click.option("--mask", type=click.Path(exists=True, dir_okay=False), default=None,
              help=".npy boolean mask, True where observed (default: NaN marks missing).")
@click.option("--missing", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=None, help="indian_pines only: fraction of entries hidden at --seed "
              f"(default {DEFAULT_MISSING}).")
@click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)), default=None,
              help="Default: cp.")
@opt.prior_option
@click.option("--method", type=click.Choice(METHODS), default=None,
              help="Default: vi (closed form) for CP, map for the other formats (map for "
              "indian_pines, sghmc for il2).")
@click.option("--max-rank", type=opt.RankType(), default=None,
              help="Int or comma list per rank dim. Default: 10 (20 for indian_pines, 60 for il2; "
              "10 for any --format other than a data set's default one).")
@click.option("--offset-scale", type=opt.OffsetScaleType(),
              default=TensorCompletion.OFFSET_SCALE, show_default=True,
              help="Prior sd of the fitted offset added to every entry, on the standardized "
              "scale; 'none' fits the model without it.")
@click.option("--core-variance", type=click.FloatRange(0, min_open=True), default=None,
              help="Tucker only: the core entries' fixed prior variance, the slice precisions "
              "on the factor columns alone (default: the product of the slice variances). "
              "1 keeps the MAP from switching off true slices on small tensors.")
@opt.num_samples_option
@opt.num_chains_option
@opt.steps_option(help="Optimization steps (map, vi) or SVGD steps; see --num-warmup for samplers.")
@opt.num_warmup_option
@opt.level_option
@click.option("--init", type=click.Choice(["svd", "spectral", "random"]), default=None,
              help="Start: SVD of the mean-filled tensor ('svd', the default; 'spectral' for "
              "indian_pines), the observed entries' spectral start (CP only; for mostly "
              "missing data) or random.")
@click.option("--init-from", type=click.Choice(["map", "init", "vi", "prior"]), default=None,
              help="sghmc, vi: start the chains (q) at a MAP point or at the --init start "
              "itself (default: map for sghmc, init for il2; vi: init where its closed form "
              "runs). svgd: the particles from a jittered MAP point, the closed-form VI's "
              "draws (CP only; the default there) or the prior.")
@click.option("--map-hold", type=click.Choice(["auto", "none", "noise"]), default=None,
              help="MAP continuation (map/vi/sghmc/svgd): hold the noise precision while the "
              "prior prunes ('noise'), never ('none'), or choose by a validation split "
              "('auto', the default; for TT and Tucker it also tries the noise started at the "
              "start's residual; 'none' for indian_pines).")
@click.option("--holdout", type=click.FloatRange(0, 1, max_open=True), default=0.0,
              show_default=True, help="Fraction of the observed entries held out (drawn at "
              "--seed), not fitted, then predicted and scored: the report gets a calibration "
              "section. 0 fits every observed entry.")
@click.option("--figures/--no-figures", default=True, show_default=True,
              help="For (H, W, 3) data: PNGs of observed, posterior mean and entry sd.")
@opt.checkpoint_option
@opt.resume_option
@opt.run_options("complete")
@opt.quiet_option
def complete(file, mask, missing, fmt, prior, method, max_rank, offset_scale, core_variance,
             num_samples, num_chains, steps, num_warmup, level, init, init_from, map_hold,
             holdout, figures, checkpoint, resume, seed, out, force, with_report, quiet):
    """Complete the tensor in FILE (.npy/.npz; NaN or --mask marks missing entries), or a
    real tensor bundled with TensorLy: 'kinetic', 'indian_pines' (--missing of its entries
    hidden and scored) or 'il2' (its own missing entries, 10% of the observed ones held out
    and scored).

    Writes predictions.npz (mean, sd, lower, upper of every entry), posterior.pt and
    summary.json to --out; with --holdout (or indian_pines / il2) also heldout.npz (the
    held-out entries; at most 20,000 of them for indian_pines).
    """
    defaults = BUILTIN_FIT.get(file, DEFAULT_FIT)
    fmt = fmt or defaults["format"]
    method = method or defaults["method"] or default_method(fmt, prior)
    num_chains = opt.chains_for(method, num_chains)
    if init_from is not None and init_from not in INIT_FROM_CHOICES.get(method, ()):
        takers = [m for m, starts in INIT_FROM_CHOICES.items() if init_from in starts]
        raise click.BadParameter(f"'{init_from}' applies to {', '.join(takers)}, not {method}",
                                 param_hint="--init-from")
    if init_from == "vi" and not closed_form_vi_runs(fmt, prior):
        raise click.BadParameter("'vi' starts SVGD from the closed-form VI, which fits CP "
                                 f"models only, not --format {fmt}", param_hint="--init-from")
    if init_from is None and method == defaults["method"]:
        init_from = defaults["init_from"]
    if map_hold == "noise" and method not in MAP_HOLD_METHODS:
        raise click.BadParameter(f"applies to {', '.join(MAP_HOLD_METHODS)}, not {method}",
                                 param_hint="--map-hold")
    check_sizes(method, steps=steps, num_warmup=num_warmup, num_samples=num_samples,
                closed_form_vi=closed_form_vi_runs(fmt, prior))
    if core_variance is not None and fmt != "tucker":
        raise click.BadParameter(f"applies to --format tucker, not {fmt}",
                                 param_hint="--core-variance")
    data, builtin_test, info = _read_data(file, mask, missing, holdout, seed)
    map_hold = map_hold or defaults["map_hold"]
    if steps is None and method == "map":
        steps = defaults["map_steps"]
    if max_rank is None:
        max_rank = defaults["max_rank"] if fmt == defaults["format"] else DEFAULT_FIT["max_rank"]
    if init is None:
        init = defaults["init"] if fmt == defaults["format"] else DEFAULT_FIT["init"]
    if init == "spectral" and fmt != "cp":
        raise click.BadParameter(f"'spectral' starts CP models only, not {fmt}",
                                 param_hint="--init")
    bands = info.get("band_mode") is not None
    obs, test = holdout_split(Observations.from_dense(data), holdout, seed)
    model = TensorCompletion(data.shape, format=fmt, max_rank=max_rank, prior=prior,
                             offset_scale=offset_scale,
                             prior_params=None if core_variance is None
                             else {"core_variance": core_variance})
    options = {"num_steps": steps} if steps is not None else {}
    options.update({k: v for k, v in (("checkpoint", checkpoint), ("resume", resume),
                                      ("init_from", init_from)) if v})
    if method in MAP_HOLD_METHODS:
        options["map_hold"] = {"auto": "auto", "none": None,
                               "noise": model.map_hold_candidate}[map_hold]
    out = opt.open_run_dir(out, "complete", force)
    start = time.perf_counter()
    with opt.chains_echoed():
        post = fit(model, obs, method=method, seed=seed, init=init, num_samples=num_samples,
                   num_chains=num_chains, num_warmup=num_warmup,
                   progress=opt.show_progress(quiet), **options)
    pred = _predictions(post, data, level, test)
    fitted = obs.to_dense()  # the data as the fit saw it: held-out entries missing
    files = [save_npz(out / "predictions.npz", pred), post.save(out / "posterior.pt")]
    if figures and is_image(data.shape):
        files += image_completion_figures(fitted, pred["mean"], pred["entry_sd"], out).values()
    if figures and bands:
        chosen = default_bands(data.shape[-1])
        files += band_figures(fitted[..., chosen], pred["mean"][..., chosen],
                              pred["entry_sd"][..., chosen], out, labels=chosen).values()
    ranks = post.effective_rank()
    seconds = time.perf_counter() - start
    summary = {"file": str(file), "shape": list(data.shape), "observed": len(obs),
               "observed_fraction": obs.observed_fraction, "format": fmt, "prior": prior,
               "method": method, "max_rank": max_rank, "offset_scale": offset_scale,
               "core_variance": core_variance, "init": init,
               "init_from": post.info.get("options", {}).get("init_from", init_from),
               "found_rank_mode": ranks.mode().tolist(), "seconds": seconds, "level": level,
               "map_hold": post.info.get("options", {}).get("map_hold"),
               "map_hold_auto": post.info.get("map_hold_auto"), "holdout": holdout}
    if test is not None:
        summary["heldout"] = _score_heldout(post, test, level)
        files.append(write_heldout(out, indices=test.indices.numpy(), truth=test.values.numpy()))
    if builtin_test is not None:
        summary["heldout"] = _score_dense(pred, builtin_test)
        sample = builtin_test
        if len(sample) > REPORT_HELDOUT:
            keep = np.random.default_rng(seed).choice(len(sample), REPORT_HELDOUT, replace=False)
            sample = Observations(sample.indices[np.sort(keep)], sample.values[np.sort(keep)],
                                  sample.shape)
        files.append(write_heldout(out, indices=sample.indices.numpy(), truth=sample.values.numpy()))
    heldout = test if test is not None else (sample if builtin_test is not None else None)
    summary["convergence"] = opt.convergence(post, None if heldout is None else heldout.indices)
    summary.update(info)
    files.append(_write_summary(out, summary))
    if is_image(data.shape) or bands:
        files.append(write_image(out, fitted))
    write_run(out, "completion", files=files,
              settings={"command": "complete", "file": str(file), "format": fmt, "prior": prior,
                        "method": method, "max_rank": max_rank, "offset_scale": offset_scale,
                        "core_variance": core_variance, "init": init, "init_from": init_from,
                        "num_samples": num_samples,
                        "num_chains": num_chains, "steps": steps, "num_warmup": num_warmup,
                        "level": level, "holdout": holdout, "seed": seed, "seconds": seconds},
              data={"shape": list(data.shape), "observed": len(obs),
                    "observed_fraction": obs.observed_fraction,
                    "heldout": len(test) if test is not None else
                    (0 if builtin_test is None else len(builtin_test)), **info})
    click.echo(f"rank found: {ranks.mode().tolist()}  ({len(obs)} observed of {data.size})")
    if test is not None or builtin_test is not None:
        h = summary["heldout"]
        rel = f", relative error {h['relative_error']:.4f}" if "relative_error" in h else ""
        click.echo(f"held out: {h['n']} entries, RMSE {h['rmse']:.4g}{rel}, {level:.0%} "
                   f"interval coverage {h['coverage']:.3f}  ({seconds:.0f} s)")
    opt.echo_convergence(summary["convergence"])
    click.echo(f"wrote (mean, sd, {level:.0%} interval): " + ", ".join(str(p) for p in files))
    opt.echo_report(out, with_report)


def check_sizes(method: str, *, steps, num_warmup, num_samples,
                closed_form_vi: bool = False) -> None:
    """Refuse ``--steps``, ``--num-warmup`` or ``--num-samples`` where ``method`` would ignore
    it (``complete`` and ``regress``), before the run folder is made; ``closed_form_vi``:
    ``vi`` runs in closed form here, without steps."""
    if steps is not None and method not in STEP_METHODS:
        raise click.BadParameter(f"does not apply to {method}; use --num-samples and "
                                 "--num-warmup", param_hint="--steps")
    if steps is not None and method == "vi" and closed_form_vi:
        raise click.BadParameter("does not apply to vi on a CP model, which is fitted in "
                                 "closed form (sweeps to convergence)", param_hint="--steps")
    if num_warmup is not None and method not in WARMUP_METHODS:
        raise click.BadParameter(f"applies to {', '.join(WARMUP_METHODS)}, not {method}",
                                 param_hint="--num-warmup")
    if num_samples is not None and method == "map":
        raise click.BadParameter("does not apply to map (one point; --num-chains sets its "
                                 "restarts)", param_hint="--num-samples")


def _read_data(file: str, mask, missing, holdout: float, seed: int):
    """``(data, held_out, info)``: the tensor (NaN where missing), the built-in data's own
    held-out entries with their truth (``None`` for a file and for kinetic), and what to
    record about the data. Arguments that do not apply are refused by name."""
    if file not in BUILTIN_DATA:
        if missing is not None:
            raise click.BadParameter(f"applies to indian_pines only, not {file}",
                                     param_hint="--missing")
        if not Path(file).is_file():
            found = "no such file" if not Path(file).exists() else "not a file"
            raise click.BadParameter(f"expected a .npy / .npz file or one of "
                                     f"{', '.join(BUILTIN_DATA)}, got {file!r} ({found})",
                                     param_hint="FILE")
        return read_tensor(file, mask), None, {}
    if mask is not None:
        raise click.BadParameter(f"{file} brings its own missing entries", param_hint="--mask")
    if missing is not None and file != "indian_pines":
        raise click.BadParameter(f"applies to indian_pines only, not {file}",
                                 param_hint="--missing")
    if holdout > 0 and file != "kinetic":
        raise click.BadParameter(f"{file} holds out its own entries (see --help)",
                                 param_hint="--holdout")
    if file == "kinetic":
        real = datasets.load_kinetic()
    elif file == "indian_pines":
        missing = DEFAULT_MISSING if missing is None else missing
        real = datasets.load_indian_pines(missing=missing, seed=seed)
    else:
        real = datasets.load_il2(seed=seed)
    info = {"dataset": file,
            **{k: real.info[k] for k in ("missing", "holdout", "band_mode") if k in real.info}}
    return real.data, real.heldout(), info


def holdout_split(obs: Observations, fraction: float, seed: int):
    """``(fitted, held_out)`` observations: ``fraction`` of them held out at ``seed``.

    ``fraction`` 0 holds out nothing (``held_out`` is ``None``). At least one entry is held
    out and at least one is fitted; otherwise the fraction is refused naming ``--holdout``.
    """
    if fraction == 0:
        return obs, None
    fitted, held = obs.split(fraction, seed=seed)
    if len(fitted) == 0:
        raise click.BadParameter(f"{fraction} leaves no observed entry to fit (of {len(obs)})",
                                 param_hint="--holdout")
    return fitted, held


def _score_heldout(post, test: Observations, level: float) -> dict:
    """RMSE and central-interval coverage of the held-out observations."""
    pred = post.predict(test.indices)
    y = test.values.double().numpy()
    return {"n": len(test), "rmse": float(np.sqrt(np.mean((pred.mean - y) ** 2))),
            "coverage": pred.coverage(y, level), "level": level}


def _score_dense(pred: dict, test: Observations) -> dict:
    """RMSE, relative error and interval coverage of ``test`` from the every-entry predictions."""
    at = tuple(test.indices.T.numpy())
    y = test.values.double().numpy()
    mean = pred["mean"][at]
    inside = (pred["lower"][at] <= y) & (y <= pred["upper"][at])
    return {"n": len(test), "rmse": float(np.sqrt(np.mean((mean - y) ** 2))),
            "relative_error": float(np.linalg.norm(mean - y) / (np.linalg.norm(y) or 1.0)),
            "coverage": float(inside.mean()), "level": pred["level"]}


def _predictions(post, data: np.ndarray, level: float, test: Observations | None = None) -> dict:
    """Mean, sds and central ``level`` interval of every entry, shaped like ``data``.

    ``sd`` is the predictive sd of a new noisy observation, ``entry_sd`` the posterior sd of
    the noise-free entry; ``heldout`` marks the observed entries held out of the fit. Entries
    are predicted in blocks of about ``PREDICT_BLOCK_ELEMENTS`` draws x entries, so memory
    stays bounded for tensors of millions of entries and many draws.
    """
    keys = ("mean", "sd", "entry_sd", "lower", "upper")
    flat = {k: np.empty(data.size) for k in keys}
    block = max(1, PREDICT_BLOCK_ELEMENTS // max(1, post.num_chains * post.num_draws))
    slab = math.prod(data.shape[1:])
    if slab <= block:  # whole slabs: each block is a box the model reconstructs as it is
        block -= block % slab
    for start in range(0, data.size, block):
        stop = min(start + block, data.size)
        idx = np.stack(np.unravel_index(np.arange(start, stop), data.shape), -1)
        pred = post.predict(idx)
        lower, upper = pred.interval(level)
        for k, v in zip(keys, (pred.mean, pred.sd, pred.sd_mean, lower, upper)):
            flat[k][start:stop] = v
    held = np.zeros(data.shape, dtype=bool)
    if test is not None:
        held[tuple(test.indices.T.numpy())] = True
    out = {k: v.reshape(data.shape) for k, v in flat.items()}
    return {**out, "observed": ~np.isnan(data), "heldout": held, "level": level}


def _write_summary(out: Path, summary: dict) -> Path:
    return atomic_write(out / "summary.json", json.dumps(summary, indent=2, default=str))

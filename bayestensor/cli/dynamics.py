"""``bayestensor dynamics``: the standard learning-dynamics studies, each writing a report.

Commands (each writes PNG figures, ``results.json`` with every number and ``summary.md`` into
``--out``):

* ``fa-vs-gd``: GD, FA and FA* (and the ARD/SGHMC posterior as a reference) on ``Y`` with
  ``r < rank(Y)`` and with ``r >= rank(Y)``;
* ``overparam``: rich GD, the lazy (linearized) model and the wang2020 variant on a symmetric
  order-3 tensor, across the number of components ``m`` and the initialization scale ``alpha``;
* ``diagonal``: depth-``D`` diagonal networks on sparse regression across ``alpha``;
* ``all``: the three above into sub-folders and one ``report.md``.

The functions ``run_fa_vs_gd``, ``run_overparam`` and ``run_diagonal`` do the work and can be
called from Python; the main CLI registers the group with ``main.add_command(dynamics)``.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np
import pandas as pd

from bayestensor.viz import dynamics as plots
from bayestensor.dynamics.compare import bootstrap_interval, compare
from bayestensor.dynamics.report import comparison_section, markdown_table, write_json


def _write_run(out, study: str, settings: dict) -> None:
    """``run.json`` so that ``bayestensor report OUT`` can read the study (see docs/reports.md)."""
    from bayestensor.report.rundir import write_run

    write_run(out, "dynamics", settings={"study": study, **settings})
from bayestensor.dynamics.studies import (BayesReference, DiagonalLearner, FactorizationLearner, FactorizationProblem,
                      OverparamLearner, SparseRegressionProblem, TensorProblem)


def _floats(text: str, name: str) -> list[float]:
    try:
        vals = [float(p) for p in str(text).split(",") if p.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}", param_hint=name) from None
    if not vals or any(not np.isfinite(v) or v <= 0 for v in vals):
        raise click.BadParameter(f"expected positive numbers, got {text!r}", param_hint=name)
    return vals


def _ints(text: str, name: str) -> list[int]:
    vals = _floats(text, name)
    if any(v != int(v) for v in vals):
        raise click.BadParameter(f"expected positive integers, got {text!r}", param_hint=name)
    return [int(v) for v in vals]


# --- studies ----------------------------------------------------------------------------------
def run_fa_vs_gd(out, *, seeds: int = 10, n: int = 30, m: int = 20, rank: int = 5, r_low: int = 3,
                 r_high: int = 6, steps: int = 3000, bayes: bool = True, seed: int = 0,
                 progress: bool = False) -> dict:
    """GD vs FA vs FA* (plus the Bayesian reference) with ``r < rank(Y)`` and ``r >= rank(Y)``.

    Parameters
    ----------
    out : path
        Output folder.
    seeds : int
        Replicates (instance, feedback matrix and initialization all vary).
    n, m, rank : int
        Shape and rank of ``Y``.
    r_low, r_high : int
        Model ranks below and at/above ``rank``.
    steps : int
        Updates per learner.
    bayes : bool
        Add the SGHMC posterior of the ARD factorization as a reference.
    seed : int
        Base seed.
    progress : bool

    Returns
    -------
    dict
        ``{"markdown": str, "json": dict}`` (also written to ``out``).
    """
    if not r_low < rank <= r_high:
        raise ValueError(f"r_low, r_high: expected r_low < rank <= r_high, got {r_low}, {rank}, {r_high}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    learners = [FactorizationLearner(rule, steps=steps) for rule in ("gd", "fa", "fa_star")]
    sections, payload = [], {}
    for tag, r in (("under", r_low), ("over", r_high)):
        problem = FactorizationProblem(n=n, m=m, rank=rank, r=r, name=f"factorization r={r}")
        start = time.perf_counter()
        res = compare(problem, learners, seeds, seed=seed,
                      reference=BayesReference() if bayes else None, progress=progress)
        secs = time.perf_counter() - start
        figs = []
        for metric in ("error", "alignment_row", "sym_min_eig", "update_angle", "angle_col"):
            fig = plots.plot_bands(res, metric, learners=[lrn.name for lrn in learners],
                                   log=True if metric == "error" else None)
            name = f"{tag}_{metric}.png"
            plots.save_figure(fig, out / name)
            figs.append((f"{metric} trajectories, r={r}", name))
        fig = plots.plot_final(res, "error", log=False)
        plots.save_figure(fig, out / f"{tag}_final_error.png")
        figs.append((f"final relative error, r={r}", f"{tag}_final_error.png"))
        fig = plots.plot_success(res)
        plots.save_figure(fig, out / f"{tag}_success.png")
        figs.append((f"success probability, r={r}", f"{tag}_success.png"))
        gap = res.summary(["projection_gap"]) if "projection_gap" in res.final_metrics else None
        notes = [f"r = {r} {'<' if r < rank else '>='} rank(Y) = {rank}; {steps} steps; "
                 f"wall time {secs:.1f} s."]
        if gap is not None:
            fa = gap[gap.learner == "FA"].iloc[0]
            notes.append(f"FA error minus the error of projecting Y on col(Y B^T) (zero-init "
                         f"prediction): mean {fa['mean']:.2e} over {fa['n']} seeds.")
        sections.append(comparison_section(
            res, f"FA vs GD vs FA*, r = {r} (rank Y = {rank})",
            metrics=["error", "excess", "ey_ratio", "projection_gap", "alignment_row",
                     "sym_min_eig", "angle_col", "effective_rank"] if bayes else
            ["error", "excess", "ey_ratio", "projection_gap", "alignment_row", "sym_min_eig",
             "angle_col"],
            figures=figs, notes=notes, level_heading=3))
        payload[tag] = {"r": r, "seconds": secs, **res.to_dict()}
    md = "## Feedback alignment vs gradient descent\n\n" + "\n".join(sections)
    (out / "summary.md").write_text(md)
    write_json(out / "results.json", payload)
    _write_run(out, "fa_vs_gd", dict(seeds=seeds, n=n, m=m, rank=rank, r_low=r_low, r_high=r_high,
                                     steps=steps, bayes=bayes, seed=seed))
    return {"markdown": md, "json": payload}


def run_overparam(out, *, seeds: int = 5, d: int = 10, r: int = 2, m_multiples=(1, 2, 5),
                  alphas=(0.01, 0.03, 0.1, 0.3), alpha: float = 0.03, steps: int = 1500,
                  seed: int = 0, progress: bool = False) -> dict:
    """Rich GD vs the lazy model vs wang2020 across ``m`` (at ``alpha``) and across ``alpha`` (at ``m = 5r``).

    Parameters
    ----------
    out : path
    seeds : int
    d, r : int
        Dimension and rank of the symmetric order-3 target.
    m_multiples : sequence of int
        ``m = k r`` for each ``k``.
    alphas : sequence of float
        Initialization scales of the alpha sweep.
    alpha : float
        Scale used in the ``m`` sweep.
    steps : int
    seed : int
    progress : bool

    Returns
    -------
    dict
        ``{"markdown": str, "json": dict}``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"m_sweep": {}, "alpha_sweep": {}}
    rows = []
    results_5r = None
    for k in m_multiples:
        m = int(k) * r
        learners = [OverparamLearner("rich", alpha, steps, name="rich"),
                    OverparamLearner("lazy", alpha, steps, name="lazy"),
                    OverparamLearner("rich", 1e-3, steps, variant="wang2020", name="wang2020")]
        res = compare(TensorProblem(d=d, r=r, m=m), learners, seeds, seed=seed, progress=progress)
        payload["m_sweep"][str(m)] = res.to_dict()
        summ = res.summary(["error"])
        succ = res.success_table()
        for name in ("rich", "lazy", "wang2020"):
            srow = summ[summ.learner == name].iloc[0]
            prow = succ[succ.learner == name].iloc[0]
            rows.append({"m": m, "learner": name, "error_mean": srow["mean"],
                         "error_median": srow["median"], "ci_low": srow["ci_low"],
                         "ci_high": srow["ci_high"], "success": prow["p"]})
        if int(k) == 5:
            results_5r = res
    mtab = pd.DataFrame(rows)
    ms = sorted(set(mtab.m))
    series = {name: tuple(np.array([mtab[(mtab.m == mm) & (mtab.learner == name)][c].iloc[0]
                                    for mm in ms]) for c in ("error_mean", "ci_low", "ci_high"))
              for name in ("rich", "lazy", "wang2020")}
    fig = plots.plot_sweep(ms, series, xlabel="components m", ylabel="final relative error",
                           logx=False, logy=True,
                           title=f"rich (alpha={alpha:g}) vs lazy vs wang2020 (alpha=1e-3)")
    plots.save_figure(fig, out / "m_sweep.png")

    arows = []
    learners = [OverparamLearner("rich", a, steps, name=f"rich alpha={a:g}") for a in alphas]
    learners += [OverparamLearner("lazy", alphas[0], steps, name="lazy")]
    ares = compare(TensorProblem(d=d, r=r, m=5 * r), learners, seeds, seed=seed, progress=progress)
    payload["alpha_sweep"] = ares.to_dict()
    summ = ares.summary(["error", "movement"])
    for a in alphas:
        e = summ[(summ.learner == f"rich alpha={a:g}") & (summ.metric == "error")].iloc[0]
        mv = summ[(summ.learner == f"rich alpha={a:g}") & (summ.metric == "movement")].iloc[0]
        arows.append({"alpha": a, "error_mean": e["mean"], "ci_low": e["ci_low"],
                      "ci_high": e["ci_high"], "movement_mean": mv["mean"]})
    atab = pd.DataFrame(arows)
    lazy_err = summ[(summ.learner == "lazy") & (summ.metric == "error")].iloc[0]["mean"]
    fig = plots.plot_sweep(list(alphas), {"rich GD": (atab.error_mean, atab.ci_low, atab.ci_high)},
                           refs={"lazy model (mean)": lazy_err}, xlabel="initialization scale alpha",
                           ylabel="final relative error", logy=True, title=f"m = {5 * r}")
    plots.save_figure(fig, out / "alpha_sweep.png")
    figs = [("final error against m", "m_sweep.png"), ("final error against alpha", "alpha_sweep.png")]
    if results_5r is not None:
        plots.save_figure(plots.plot_bands(results_5r, "error", log=True), out / "bands_error_5r.png")
        figs.append((f"error trajectories at m = {5 * r}", "bands_error_5r.png"))
    md = ["## Over-parameterized tensor decomposition: rich vs lazy", "",
          f"Symmetric order-3 tensor, d = {d}, rank r = {r}, {seeds} seeds, {steps} steps. "
          f"Rich: GD from scale alpha = {alpha:g}; lazy: the linearized model at the same "
          "initialization (least-squares limit); wang2020: 2-homogeneous components from "
          "alpha = 1e-3.", "", "### Across m", "",
          markdown_table(mtab), "", "### Across alpha (m = 5r)", "", markdown_table(atab), "",
          f"Lazy model at m = {5 * r}: mean relative error {lazy_err:.3g}.", ""]
    if results_5r is not None:
        md.append(comparison_section(results_5r, f"Replicates at m = {5 * r}", metrics=["error"],
                                     level_heading=3))
    for caption, path in figs:
        md += [f"![{caption}]({path})", ""]
    text = "\n".join(md)
    (out / "summary.md").write_text(text)
    payload["m_table"] = mtab.to_dict(orient="records")
    payload["alpha_table"] = atab.to_dict(orient="records")
    write_json(out / "results.json", payload)
    _write_run(out, "overparam", dict(seeds=seeds, d=d, r=r, m_multiples=list(m_multiples),
                                      alphas=list(alphas), alpha=alpha, steps=steps, seed=seed))
    return {"markdown": text, "json": payload}


def run_diagonal(out, *, seeds: int = 5, n: int = 20, d: int = 50, k: int = 3, depth: int = 2,
                 alphas=(1e-3, 1e-2, 1e-1, 0.3, 1.0, 3.0, 10.0), steps: int = 20000,
                 seed: int = 0, progress: bool = False) -> dict:
    """Diagonal networks on sparse regression across ``alpha``: from min-l1 to min-l2.

    Parameters
    ----------
    out : path
    seeds : int
    n, d, k : int
        Samples, features, non-zeros.
    depth : int
    alphas : sequence of float
    steps : int
    seed : int
    progress : bool

    Returns
    -------
    dict
        ``{"markdown": str, "json": dict}``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    learners = [DiagonalLearner(a, depth, steps) for a in alphas]
    res = compare(SparseRegressionProblem(n=n, d=d, k=k), learners, seeds, seed=seed,
                  progress=progress)
    pos = res.dataset["l1_position"].values  # (A, S)
    mean = pos.mean(1)
    lo, hi = np.array([bootstrap_interval(p) for p in pos]).T
    fig = plots.plot_sweep(list(alphas), {f"depth {depth}": (mean, lo, hi)},
                           refs={"min-l1 interpolant": 0.0, "min-l2 interpolant": 1.0},
                           ylabel="(||b||_1 - l1 min) / (l1 of min-l2 - l1 min)",
                           title="where the solution's l1 norm sits between the interpolants")
    plots.save_figure(fig, out / "l1_position.png")
    plots.save_figure(plots.plot_success(res), out / "success.png")
    dist = res.summary(["dist_truth"])
    fig = plots.plot_sweep(list(alphas), {"||b - b*|| / ||b*||": (dist["mean"], dist["ci_low"],
                                                                  dist["ci_high"])},
                           ylabel="distance to the sparse truth", logy=True)
    plots.save_figure(fig, out / "dist_truth.png")
    monotone = bool(np.all(np.diff(pos, axis=0) >= -1e-3))
    notes = [f"n = {n}, d = {d}, k = {k}, depth {depth}, {steps} steps per network. The l1 "
             f"position is 0 at the minimum-l1 interpolant and 1 at the minimum-l2 one. "
             f"Monotone in alpha on every seed (to 1e-3): {'yes' if monotone else 'no'}."]
    md = comparison_section(res, "Initialization scale: rich to kernel regime (diagonal networks)",
                            metrics=["l1_position", "dist_l1", "dist_l2", "dist_truth", "loss",
                                     "kkt"],
                            figures=[("l1 position against alpha", "l1_position.png"),
                                     ("distance to the sparse truth", "dist_truth.png"),
                                     ("success probability", "success.png")],
                            notes=notes)
    (out / "summary.md").write_text(md)
    payload = {"alphas": list(alphas), "monotone": monotone, **res.to_dict()}
    write_json(out / "results.json", payload)
    _write_run(out, "diagonal", dict(seeds=seeds, n=n, d=d, k=k, depth=depth, alphas=list(alphas),
                                     steps=steps, seed=seed))
    return {"markdown": md, "json": payload}


# --- click ------------------------------------------------------------------------------------
@click.group()
def dynamics():
    """Learning-dynamics studies: FA vs GD, rich vs lazy, initialization-scale regimes."""


_out = click.option("--out", type=click.Path(file_okay=False), required=True,
                    help="Folder for figures (PNG), results.json and summary.md.")
_seed = click.option("--seed", type=int, default=0, show_default=True, help="Base seed.")
_quiet = click.option("--quiet", is_flag=True, help="No progress bar.")


def _positive(ctx, param, value):
    if value is not None and value < 1:
        raise click.BadParameter(f"expected a positive integer, got {value}")
    return value


@dynamics.command("fa-vs-gd")
@click.option("--seeds", type=int, default=10, show_default=True, callback=_positive)
@click.option("--n", type=int, default=30, show_default=True, callback=_positive)
@click.option("--m", type=int, default=20, show_default=True, callback=_positive)
@click.option("--rank", type=int, default=5, show_default=True, callback=_positive, help="Rank of Y.")
@click.option("--r-low", type=int, default=3, show_default=True, callback=_positive)
@click.option("--r-high", type=int, default=6, show_default=True, callback=_positive)
@click.option("--steps", type=int, default=3000, show_default=True, callback=_positive)
@click.option("--bayes/--no-bayes", default=True, show_default=True,
              help="Add the ARD posterior (SGHMC) as a reference.")
@_seed
@_out
@_quiet
def fa_vs_gd_cmd(seeds, n, m, rank, r_low, r_high, steps, bayes, seed, out, quiet):
    """GD, FA and FA* on Y (n x m, rank RANK) with r < rank(Y) and r >= rank(Y)."""
    try:
        res = run_fa_vs_gd(out, seeds=seeds, n=n, m=m, rank=rank, r_low=r_low, r_high=r_high,
                           steps=steps, bayes=bayes, seed=seed, progress=not quiet)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    _echo_done(out, res)


@dynamics.command("overparam")
@click.option("--seeds", type=int, default=5, show_default=True, callback=_positive)
@click.option("--d", type=int, default=10, show_default=True, callback=_positive)
@click.option("--r", type=int, default=2, show_default=True, callback=_positive)
@click.option("--m-multiples", default="1,2,5", show_default=True, help="m = k r for each k.")
@click.option("--alphas", default="0.01,0.03,0.1,0.3", show_default=True)
@click.option("--alpha", type=float, default=0.03, show_default=True, help="alpha of the m sweep.")
@click.option("--steps", type=int, default=1500, show_default=True, callback=_positive)
@_seed
@_out
@_quiet
def overparam_cmd(seeds, d, r, m_multiples, alphas, alpha, steps, seed, out, quiet):
    """Rich GD vs the lazy model vs wang2020 on a symmetric order-3 tensor."""
    try:
        res = run_overparam(out, seeds=seeds, d=d, r=r, m_multiples=_ints(m_multiples, "--m-multiples"),
                            alphas=_floats(alphas, "--alphas"), alpha=alpha, steps=steps,
                            seed=seed, progress=not quiet)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    _echo_done(out, res)


@dynamics.command("diagonal")
@click.option("--seeds", type=int, default=5, show_default=True, callback=_positive)
@click.option("--n", type=int, default=20, show_default=True, callback=_positive)
@click.option("--d", type=int, default=50, show_default=True, callback=_positive)
@click.option("--k", type=int, default=3, show_default=True, callback=_positive)
@click.option("--depth", type=int, default=2, show_default=True, callback=_positive)
@click.option("--alphas", default="0.001,0.01,0.1,0.3,1,3,10", show_default=True)
@click.option("--steps", type=int, default=20000, show_default=True, callback=_positive)
@_seed
@_out
@_quiet
def diagonal_cmd(seeds, n, d, k, depth, alphas, steps, seed, out, quiet):
    """Depth-D diagonal networks on sparse regression across the initialization scale."""
    try:
        res = run_diagonal(out, seeds=seeds, n=n, d=d, k=k, depth=depth,
                           alphas=_floats(alphas, "--alphas"), steps=steps, seed=seed,
                           progress=not quiet)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    _echo_done(out, res)


@dynamics.command("all")
@click.option("--seeds", type=int, default=5, show_default=True, callback=_positive)
@click.option("--bayes/--no-bayes", default=True, show_default=True)
@_seed
@_out
@_quiet
def all_cmd(seeds, bayes, seed, out, quiet):
    """Run the three standard studies into OUT/<study>/ and write OUT/report.md."""
    out = Path(out)
    start = time.perf_counter()
    parts = [
        ("fa_vs_gd", run_fa_vs_gd(out / "fa_vs_gd", seeds=seeds, bayes=bayes, seed=seed,
                                  progress=not quiet)),
        ("overparam", run_overparam(out / "overparam", seeds=seeds, seed=seed, progress=not quiet)),
        ("diagonal", run_diagonal(out / "diagonal", seeds=seeds, seed=seed, progress=not quiet)),
    ]
    text = ["# Learning-dynamics report", "",
            f"{seeds} seeds per study, base seed {seed}; total {time.perf_counter() - start:.0f} s.", ""]
    for folder, res in parts:
        md = res["markdown"].replace("](", f"]({folder}/")
        text += [md, ""]
    (out / "report.md").write_text("\n".join(text))
    write_json(out / "results.json", {name: res["json"] for name, res in parts})
    _write_run(out, "all", dict(seeds=seeds, bayes=bayes, seed=seed))
    click.echo(f"wrote {out / 'report.md'} and {out / 'results.json'}")


def _echo_done(out, res):
    click.echo(f"wrote {Path(out) / 'summary.md'}, {Path(out) / 'results.json'} and figures")


__all__ = ["dynamics", "run_fa_vs_gd", "run_overparam", "run_diagonal"]

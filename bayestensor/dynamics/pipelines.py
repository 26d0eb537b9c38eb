"""The standard learning-dynamics studies, each writing a run folder with a report.

* :func:`run_fa_vs_gd`: GD, FA and FA* (and the ARD/SGHMC posterior as a reference) on ``Y``
  with ``r < rank(Y)`` and with ``r >= rank(Y)``;
* :func:`run_overparam`: rich GD, the lazy (linearized) model and the wang2020 variant on a
  symmetric order-3 tensor, across the number of components ``m`` and the initialization scale;
* :func:`run_diagonal`: depth-``D`` diagonal networks on sparse regression across ``alpha``;
* :func:`run_all`: the three above into sub-folders and one combined ``summary.md``.

Each writes PNG figures, ``results.json`` (every number), ``summary.md`` and ``run.json``
(listing those files) into ``out``; ``bayestensor dynamics`` runs them from the command line.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from bayestensor.dynamics.compare import compare, mean_interval
from bayestensor.dynamics.report import comparison_section, markdown_table, write_json
from bayestensor.io import atomic_write
from bayestensor.dynamics.studies import (BayesReference, DiagonalLearner, FactorizationLearner,
                                          FactorizationProblem, OverparamLearner,
                                          SparseRegressionProblem, TensorProblem)
from bayestensor.report.rundir import write_run
from bayestensor.viz import dynamics as plots

#: Initialization scale of the wang2020 variant (small: the variant is meant for the rich regime).
WANG2020_ALPHA = 1e-3
#: The alpha sweep and the replicate figures use ``m = ALPHA_SWEEP_MULTIPLE * r`` components.
ALPHA_SWEEP_MULTIPLE = 5
#: Slack when checking that the l1 position grows with alpha (optimizer tolerance).
MONOTONE_TOL = 1e-3


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
        Show a progress bar.

    Returns
    -------
    dict
        ``{"markdown", "json", "files"}``: the summary, every number (``under`` and ``over``)
        and the files written to ``out``.
    """
    if rank > min(n, m):
        raise ValueError(f"rank: Y of shape ({n}, {m}) has rank at most {min(n, m)}, got {rank}")
    if not r_low < rank <= r_high:
        raise ValueError(f"r_low, r_high: expected r_low < rank <= r_high, got {r_low}, {rank}, {r_high}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    learners = [FactorizationLearner(rule, steps=steps) for rule in ("gd", "fa", "fa_star")]
    sections, payload, written = [], {}, []
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
            figs.append((f"{metric} trajectories, r={r}", f"{tag}_{metric}.png", fig))
        figs.append((f"final relative error, r={r}", f"{tag}_final_error.png",
                     plots.plot_final(res, "error", log=False)))
        figs.append((f"success probability, r={r}", f"{tag}_success.png", plots.plot_success(res)))
        written += [plots.save_figure(fig, out / name) for _, name, fig in figs]
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
            figures=[(caption, name) for caption, name, _ in figs], notes=notes, level_heading=3))
        payload[tag] = {"r": r, "seconds": secs, **res.to_dict()}
    md = "## Feedback alignment vs gradient descent\n\n" + "\n".join(sections)
    settings = dict(seeds=seeds, n=n, m=m, rank=rank, r_low=r_low, r_high=r_high, steps=steps,
                    bayes=bayes, seed=seed)
    return _finish(out, "fa_vs_gd", settings, md, payload, written)


def run_overparam(out, *, seeds: int = 5, d: int = 10, r: int = 2, m_multiples=(1, 2, 5),
                  alphas=(0.01, 0.03, 0.1, 0.3), alpha: float = 0.03, steps: int = 1500,
                  seed: int = 0, progress: bool = False) -> dict:
    """Rich GD vs the lazy model vs wang2020 across ``m`` (at ``alpha``) and across ``alpha`` (at ``m = 5r``).

    Parameters
    ----------
    out : path
        Folder of the figures, tables and ``run.json``.
    seeds : int
        Replicates of each sweep point (target and start vary).
    d, r : int
        Dimension and rank of the symmetric order-3 target.
    m_multiples : sequence of int
        ``m = k r`` for each ``k``.
    alphas : sequence of float
        Initialization scales of the alpha sweep.
    alpha : float
        Scale used in the ``m`` sweep.
    steps, seed, progress
        Gradient steps per learner, base seed, progress bar.

    Returns
    -------
    dict
        ``{"markdown", "json", "files"}``; ``json`` holds both sweeps and their tables.
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
                    OverparamLearner("rich", WANG2020_ALPHA, steps, variant="wang2020",
                                     name="wang2020")]
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
        if int(k) == ALPHA_SWEEP_MULTIPLE:
            results_5r = res
    mtab = pd.DataFrame(rows)
    ms = sorted(set(mtab.m))
    series = {name: tuple(np.array([mtab[(mtab.m == mm) & (mtab.learner == name)][c].iloc[0]
                                    for mm in ms]) for c in ("error_mean", "ci_low", "ci_high"))
              for name in ("rich", "lazy", "wang2020")}
    fig = plots.plot_sweep(ms, series, xlabel="components m", ylabel="final relative error",
                           logx=False, logy=True,
                           title=f"rich (alpha={alpha:g}) vs lazy vs wang2020 "
                                 f"(alpha={WANG2020_ALPHA:g})")
    written = [plots.save_figure(fig, out / "m_sweep.png")]

    arows = []
    learners = [OverparamLearner("rich", a, steps, name=f"rich alpha={a:g}") for a in alphas]
    learners += [OverparamLearner("lazy", alphas[0], steps, name="lazy")]
    m_alpha = ALPHA_SWEEP_MULTIPLE * r
    ares = compare(TensorProblem(d=d, r=r, m=m_alpha), learners, seeds, seed=seed, progress=progress)
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
                           ylabel="final relative error", logy=True, title=f"m = {m_alpha}")
    written.append(plots.save_figure(fig, out / "alpha_sweep.png"))
    figs = [("final error against m", "m_sweep.png"), ("final error against alpha", "alpha_sweep.png")]
    if results_5r is not None:
        written.append(plots.save_figure(plots.plot_bands(results_5r, "error", log=True),
                                         out / "bands_error_5r.png"))
        figs.append((f"error trajectories at m = {m_alpha}", "bands_error_5r.png"))
    md = ["## Over-parameterized tensor decomposition: rich vs lazy", "",
          f"Symmetric order-3 tensor, d = {d}, rank r = {r}, {seeds} seeds, {steps} steps. "
          f"Rich: GD from scale alpha = {alpha:g}; lazy: the linearized model at the same "
          "initialization (least-squares limit); wang2020: 2-homogeneous components from "
          f"alpha = {WANG2020_ALPHA:g}.", "", "### Across m", "",
          markdown_table(mtab), "", f"### Across alpha (m = {ALPHA_SWEEP_MULTIPLE}r)", "",
          markdown_table(atab), "",
          f"Lazy model at m = {m_alpha}: mean relative error {lazy_err:.3g}.", ""]
    if results_5r is not None:
        md.append(comparison_section(results_5r, f"Replicates at m = {m_alpha}", metrics=["error"],
                                     level_heading=3))
    for caption, path in figs:
        md += [f"![{caption}]({path})", ""]
    payload["m_table"] = mtab.to_dict(orient="records")
    payload["alpha_table"] = atab.to_dict(orient="records")
    settings = dict(seeds=seeds, d=d, r=r, m_multiples=list(m_multiples), alphas=list(alphas),
                    alpha=alpha, steps=steps, seed=seed)
    return _finish(out, "overparam", settings, "\n".join(md), payload, written)


def run_diagonal(out, *, seeds: int = 5, n: int = 20, d: int = 50, k: int = 3, depth: int = 2,
                 alphas=(1e-3, 1e-2, 1e-1, 0.3, 1.0, 3.0, 10.0), steps: int = 20000,
                 seed: int = 0, progress: bool = False) -> dict:
    """Diagonal networks on sparse regression across ``alpha``: from min-l1 to min-l2.

    Parameters
    ----------
    out : path
        Output folder.
    seeds : int
        Replicates (design, sparse truth and start vary).
    n, d, k : int
        Samples, features, non-zeros.
    depth : int
        Depth of the diagonal network.
    alphas : sequence of float
        Initialization scales, one network each.
    steps, seed, progress
        Gradient steps per network, base seed, progress bar.

    Returns
    -------
    dict
        ``{"markdown", "json", "files"}``; ``json["monotone"]`` says whether the l1 position
        grows with alpha on every seed.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    learners = [DiagonalLearner(a, depth, steps) for a in alphas]
    res = compare(SparseRegressionProblem(n=n, d=d, k=k), learners, seeds, seed=seed,
                  progress=progress)
    pos = res.dataset["l1_position"].values  # (A, S)
    mean = pos.mean(1)
    lo, hi = np.array([mean_interval(p)[:2] for p in pos]).T
    fig = plots.plot_sweep(list(alphas), {f"depth {depth}": (mean, lo, hi)},
                           refs={"min-l1 interpolant": 0.0, "min-l2 interpolant": 1.0},
                           ylabel="(||b||_1 - l1 min) / (l1 of min-l2 - l1 min)",
                           title="where the solution's l1 norm sits between the interpolants")
    written = [plots.save_figure(fig, out / "l1_position.png"),
               plots.save_figure(plots.plot_success(res), out / "success.png")]
    dist = res.summary(["dist_truth"])
    fig = plots.plot_sweep(list(alphas), {"||b - b*|| / ||b*||": (dist["mean"], dist["ci_low"],
                                                                  dist["ci_high"])},
                           ylabel="distance to the sparse truth", logy=True)
    written.append(plots.save_figure(fig, out / "dist_truth.png"))
    monotone = bool(np.all(np.diff(pos, axis=0) >= -MONOTONE_TOL))
    notes = [f"n = {n}, d = {d}, k = {k}, depth {depth}, {steps} steps per network. The l1 "
             f"position is 0 at the minimum-l1 interpolant and 1 at the minimum-l2 one. "
             f"Monotone in alpha on every seed (to {MONOTONE_TOL:g}): "
             f"{'yes' if monotone else 'no'}."]
    md = comparison_section(res, "Initialization scale: rich to kernel regime (diagonal networks)",
                            metrics=["l1_position", "dist_l1", "dist_l2", "dist_truth", "loss",
                                     "kkt"],
                            figures=[("l1 position against alpha", "l1_position.png"),
                                     ("distance to the sparse truth", "dist_truth.png"),
                                     ("success probability", "success.png")],
                            notes=notes)
    payload = {"alphas": list(alphas), "monotone": monotone, **res.to_dict()}
    settings = dict(seeds=seeds, n=n, d=d, k=k, depth=depth, alphas=list(alphas), steps=steps,
                    seed=seed)
    return _finish(out, "diagonal", settings, md, payload, written)


def run_all(out, *, seeds: int = 5, bayes: bool = True, seed: int = 0,
            progress: bool = False) -> dict:
    """The three standard studies into ``out/<study>/`` and one combined ``out/summary.md``.

    Parameters
    ----------
    out : path
        Output folder; each study gets a sub-folder.
    seeds : int
        Replicates per study.
    bayes : bool
        Add the Bayesian reference to the FA vs GD study.
    seed, progress
        Base seed, progress bar.

    Returns
    -------
    dict
        ``{"markdown", "json", "files"}``: the combined summary, every study's numbers by
        study, and every file written (paths inside ``out``).
    """
    out = Path(out)
    start = time.perf_counter()
    parts = [
        ("fa_vs_gd", run_fa_vs_gd(out / "fa_vs_gd", seeds=seeds, bayes=bayes, seed=seed,
                                  progress=progress)),
        ("overparam", run_overparam(out / "overparam", seeds=seeds, seed=seed, progress=progress)),
        ("diagonal", run_diagonal(out / "diagonal", seeds=seeds, seed=seed, progress=progress)),
    ]
    text = ["# Learning-dynamics report", "",
            f"{seeds} seeds per study, base seed {seed}; total {time.perf_counter() - start:.0f} s.", ""]
    for folder, res in parts:
        text += [res["markdown"].replace("](", f"]({folder}/"), ""]
    payload = {name: res["json"] for name, res in parts}
    written = [out / name / f for name, res in parts for f in res["files"]]
    return _finish(out, "all", dict(seeds=seeds, bayes=bayes, seed=seed), "\n".join(text),
                   payload, written)


def _finish(out: Path, study: str, settings: dict, markdown: str, payload: dict,
             written: list) -> dict:
    """Write ``summary.md``, ``results.json`` and ``run.json`` listing every file."""
    files = [*written, atomic_write(out / "summary.md", markdown),
             write_json(out / "results.json", payload)]
    write_run(out, "dynamics", settings={"study": study, **settings}, files=files)
    return {"markdown": markdown, "json": payload,
            "files": sorted(Path(f).relative_to(out).as_posix() for f in files)}

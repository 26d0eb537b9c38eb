"""Figures for the dynamics studies (matplotlib ``Figure`` objects, no pyplot state).

* :func:`plot_bands`: trajectory median and quantile band over seeds, one line per learner
  (learners whose records are posterior draws on a second x-axis, "draw", at the top);
* :func:`plot_final`: per-seed final values per learner with the mean and its interval
  (bootstrap or Student-t, as :meth:`ComparisonResult.summary` chose);
* :func:`plot_success`: success probability per learner with its binomial interval;
* :func:`plot_sweep`: summaries with intervals against a swept setting (``alpha`` or ``m``), e.g.
  where the diagonal network's l1 norm sits between the minimum-l1 and minimum-l2 interpolants.

Every function returns the ``Figure``; :func:`save_figure` writes it as PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bayestensor.dynamics.compare import ComparisonResult
from bayestensor.viz.figures import save_png

#: Resolution of the study figures (sharper than report thumbnails: they are read on their own).
DPI = 110


def _axes(ax, figsize=(6.0, 3.6)):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot(1, 1, 1)


def _check_result(result):
    if not isinstance(result, ComparisonResult):
        raise ValueError(f"result: expected a ComparisonResult, got {type(result).__name__}")


def plot_bands(result: ComparisonResult, metric: str, *, level: float = 0.8, ax=None,
               log: bool | None = None, learners=None, title: str | None = None) -> Figure:
    """Median trajectory of ``metric`` with its central ``level`` band over seeds.

    Learners recording optimizer steps share the bottom x-axis ("step"); learners recording
    posterior draws (a sampler reference) get a second x-axis at the top ("draw"), so draws are
    never read as steps.

    Parameters
    ----------
    result : ComparisonResult
    metric : str
        A trajectory metric.
    level : float
        Band level.
    ax : matplotlib Axes, optional
    log : bool, optional
        Log y-axis; default when every plotted value is positive and they span > 2 decades.
    learners : sequence of str, optional
        Subset of learners (default: those with this trajectory).
    title : str, optional
    """
    _check_result(result)
    b = result.bands(metric, level=level)
    fig, ax = _axes(ax)
    names = result.learners if learners is None else list(learners)
    units = result.step_units
    draw_ax = None
    values, handles = [], []
    for k, name in enumerate(names):
        if name not in result.learners:
            raise ValueError(f"learners: unknown learner {name!r}; have {result.learners}")
        i = result.learners.index(name)
        step, med = b["step"].values[i], b["median"].values[i]
        keep = np.isfinite(step) & np.isfinite(med)
        if not keep.any():
            continue
        target = ax
        if units[name] == "draw":
            draw_ax = draw_ax if draw_ax is not None else ax.twiny()
            target = draw_ax
        line, = target.plot(step[keep], med[keep], color=f"C{k}", label=name)
        target.fill_between(step[keep], b["lower"].values[i][keep], b["upper"].values[i][keep],
                            color=line.get_color(), alpha=0.2, linewidth=0)
        handles.append(line)
        values.append(np.concatenate([b["lower"].values[i][keep], b["upper"].values[i][keep]]))
    if draw_ax is not None:
        draw_ax.set_xlabel("draw (posterior sample)")
    if values:
        allv = np.concatenate(values)
        allv = allv[np.isfinite(allv)]
        if log is None:
            log = allv.size > 0 and bool((allv > 0).all()) and allv.max() / allv.min() > 100
        if log:
            ax.set_yscale("log")
        ax.legend(handles=handles, fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric}: median and {level:.0%} band over {len(result.dataset.seed)} seeds",
                 fontsize=9)
    return fig


def plot_final(result: ComparisonResult, metric: str, *, ax=None, log: bool | None = None,
               level: float = 0.95, title: str | None = None) -> Figure:
    """Per-seed final ``metric`` for each learner, with the mean and its interval.

    The interval is the summary's (BCa bootstrap from enough seeds, else Student-t; none for
    one seed); the title names the method(s) used.
    """
    _check_result(result)
    if metric not in result.final_metrics:
        raise ValueError(f"metric: unknown final metric {metric!r}; have {result.final_metrics}")
    summ = result.summary([metric], level=level)
    fig, ax = _axes(ax)
    rng = np.random.default_rng(0)
    allv = []
    for i, name in enumerate(result.learners):
        v = np.asarray(result.dataset[metric].values[i], dtype=np.float64)
        v = v[np.isfinite(v)]
        if v.size == 0:
            continue
        allv.append(v)
        ax.scatter(i + rng.uniform(-0.15, 0.15, v.size), v, s=12, alpha=0.6)
        row = summ[summ.learner == name].iloc[0]
        ax.errorbar([i + 0.3], [row["mean"]], yerr=[[row["mean"] - row["ci_low"]],
                                                    [row["ci_high"] - row["mean"]]],
                    fmt="o", color="black", capsize=3)
    if allv:
        a = np.concatenate(allv)
        if log is None:
            log = bool((a > 0).all()) and a.max() / max(a.min(), 1e-300) > 100
        if log:
            ax.set_yscale("log")
    ax.set_xticks(range(len(result.learners)), result.learners, rotation=20, fontsize=8)
    ax.set_ylabel(metric)
    how = ", ".join(sorted(set(summ["ci_method"])))
    ax.set_title(title or f"final {metric} per seed; black: mean with {level:.0%} interval ({how})",
                 fontsize=9)
    return fig


def plot_success(result: ComparisonResult, *, ax=None, level: float = 0.95,
                 method: str = "wilson", title: str | None = None) -> Figure:
    """Success probability per learner with its binomial interval."""
    _check_result(result)
    tab = result.success_table(level=level, method=method)
    fig, ax = _axes(ax)
    x = np.arange(len(tab))
    ax.bar(x, tab["p"], color="tab:blue", alpha=0.6)
    ax.errorbar(x, tab["p"], yerr=[tab["p"] - tab["ci_low"], tab["ci_high"] - tab["p"]],
                fmt="none", color="black", capsize=4)
    ax.set_xticks(x, tab["learner"], rotation=20, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success probability")
    rule = result.dataset.attrs.get("success_rule", "")
    ax.set_title(title or f"success ({rule}); {level:.0%} {method} interval", fontsize=8)
    return fig


def plot_sweep(x, series: dict, *, refs: dict | None = None, ax=None, xlabel: str = "alpha",
               ylabel: str = "value", logx: bool = True, logy: bool = False,
               title: str | None = None) -> Figure:
    """Summaries against a swept setting (``alpha``, ``m``) with intervals, one line per series.

    Parameters
    ----------
    x : sequence of float
        The swept values.
    series : dict of str to (mean, low, high)
        Arrays aligned with ``x`` per series (e.g. rich vs lazy).
    refs : dict of str to float, optional
        Horizontal reference lines (e.g. ``{"min-l1 interpolant": 0, "min-l2": 1}``).
    ax, xlabel, ylabel, logx, logy, title
        Axes options.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"x: expected a non-empty 1-D array, got shape {x.shape}")
    if not series:
        raise ValueError("series: expected at least one (mean, low, high) series")
    fig, ax = _axes(ax)
    for name, (mean, low, high) in series.items():
        mean, low, high = (np.asarray(a, dtype=np.float64) for a in (mean, low, high))
        if mean.shape != x.shape:
            raise ValueError(f"series[{name!r}]: expected {x.size} values, got shape {mean.shape}")
        ax.errorbar(x, mean, yerr=[np.maximum(mean - low, 0), np.maximum(high - mean, 0)],
                    fmt="o-", capsize=3, label=name)
    colors = ["tab:green", "tab:red", "tab:gray", "tab:purple"]
    for k, (label, val) in enumerate((refs or {}).items()):
        ax.axhline(float(val), color=colors[k % len(colors)], linestyle="--", label=label)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def save_figure(fig: Figure, path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (parent folders created)."""
    return save_png(fig, path, dpi=DPI)


__all__ = ["plot_bands", "plot_final", "plot_success", "plot_sweep", "save_figure"]

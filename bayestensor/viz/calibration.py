"""Calibration figures: the reliability diagram with its bin counts, and interval coverage."""

from __future__ import annotations

import numpy as np

from bayestensor.viz.figures import finite, subplots


def reliability_figure(curves: dict, title: str = "reliability diagram"):
    """Reliability diagram, one line per model, above a bar chart of the bin counts.

    Parameters
    ----------
    curves : dict of str to dict
        ``{name: reliability data}`` as :func:`bayestensor.nets.metrics.reliability_bins`
        returns it (``bin_edges``, ``counts``, ``accuracy``, ``confidence``; empty bins
        ``None``).
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, (top, bottom) = subplots(2, 1, figsize=(4.6, 5.6), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    lows = [r["bin_edges"][0] for r in curves.values() if r.get("bin_edges")]
    low = min(lows, default=0.0)
    top.plot([low, 1], [low, 1], "k--", lw=1, label="perfect")
    width = 0.8 / max(len(curves), 1)
    for i, (name, rel) in enumerate(curves.items()):
        conf, acc = finite(rel["confidence"]), finite(rel["accuracy"])
        shown = np.isfinite(conf) & np.isfinite(acc)
        top.plot(conf[shown], acc[shown], "o-", ms=3, color=f"C{i}", label=name)
        edges = np.asarray(rel.get("bin_edges") or [], dtype=float)
        if edges.size == len(rel["counts"]) + 1:
            step = np.diff(edges)
            bottom.bar(edges[:-1] + step * (0.1 + i * width), rel["counts"], width=step * width,
                       align="edge", color=f"C{i}")
    top.set(ylabel="accuracy", title=title)
    top.legend(loc="upper left", fontsize=8)
    bottom.set(xlabel="confidence", ylabel="count")
    fig.tight_layout()
    return fig


def coverage_figure(levels, coverage, label: str, ax=None):
    """Empirical against nominal coverage of central credible intervals.

    Draws on ``ax`` when given (returns its figure), else on a new backend-free figure.
    """
    if ax is None:
        fig, ax = subplots(figsize=(4.5, 4.2))
    else:
        fig = ax.figure
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="nominal")
    ax.plot(levels, coverage, "o-", color="C0", label=label)
    ax.set(xlabel="nominal level", ylabel="empirical coverage", xlim=(0.4, 1), ylim=(0.4, 1),
           title="interval calibration")
    ax.legend()
    return fig

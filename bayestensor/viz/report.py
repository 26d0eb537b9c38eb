"""Figures of the uncertainty report: particle diversity, rank posterior, predictions,
compressed networks and dynamics studies. Each function returns a ``Figure``."""

from __future__ import annotations

import numpy as np

from bayestensor.viz.figures import finite, hist_bins, subplots

#: A y-axis spanning more than this ratio (two decades) is drawn on a log scale.
LOG_SCALE_SPAN = 100
#: Floor of the largest slice scale when scales are divided by it (all-zero draws).
TINY = 1e-300


def diversity_figure(distances, sd_over_noise=None):
    """Histograms of pairwise particle distances and, optionally, entry sd over noise sd."""
    fig, axes = subplots(1, 2, figsize=(10, 3.2))
    axes[0].hist(distances, bins=hist_bins(distances, 20), color="C0")
    axes[0].set(xlabel="pairwise distance between particles (all parameters; log of positive ones)",
                ylabel="pairs")
    if sd_over_noise is not None:
        axes[1].hist(sd_over_noise, bins=hist_bins(sd_over_noise, 30), color="C1")
        axes[1].set(xlabel="particle sd of an entry / noise sd", ylabel="entries")
    fig.suptitle("particle diversity")
    return fig


def rank_figure(rank_posterior):
    """Effective-rank distribution and relative slice scales per rank dimension (a slice's box
    over the draws where it is not zero: a fit without a low-rank part has none).

    Parameters
    ----------
    rank_posterior : RankPosterior
        ``Posterior.effective_rank()``: ``distribution(d)``, ``scales``, ``threshold``.
    """
    rp = rank_posterior
    dims = rp.n_rank_dims
    fig, axes = subplots(2, dims, figsize=(4.2 * dims, 6), squeeze=False)
    for d in range(dims):
        dist = rp.distribution(d)
        axes[0, d].bar(list(dist), list(dist.values()), color="C0")
        axes[0, d].set(title=f"effective rank, dim {d}", xlabel="rank", ylabel="posterior probability")
        s = np.asarray(rp.scales[d], dtype=np.float64)  # TINY is zero in float32
        s = s.reshape(-1, s.shape[-1])
        s = s / np.maximum(s.max(-1, keepdims=True), TINY)
        # on the log axis, each slice's box is of the draws where it is not exactly zero
        positive = [column[column > 0] for column in s.T]
        axes[1, d].boxplot(positive, showfliers=False)
        if not any(len(column) for column in positive):
            axes[1, d].text(0.5, 0.5, "no slice in any draw", ha="center",
                            transform=axes[1, d].transAxes)
        axes[1, d].axhline(rp.threshold, color="C3", ls="--", label=f"threshold {rp.threshold}")
        axes[1, d].set(yscale="log", xlabel="slice", ylabel="scale / largest", title=f"slice scales, dim {d}")
        axes[1, d].legend(fontsize=8)
    fig.tight_layout()
    return fig


def interval_figure(mean, lower, upper, truth, level: float):
    """Points sorted by truth with their posterior mean and central ``level`` interval."""
    order = np.argsort(truth)
    fig, ax = subplots(figsize=(10, 3.4))
    x = np.arange(len(truth))
    ax.errorbar(x, mean[order], yerr=[(mean - lower)[order], (upper - mean)[order]],
                fmt="o", ms=3, color="C0", label=f"posterior mean, {level:.0%} interval")
    ax.plot(x, truth[order], "x", color="C3", label="truth")
    ax.set(xlabel="held-out point (sorted by truth)", ylabel="value")
    ax.legend(fontsize=8)
    return fig


def ratios_figure(layers: list[dict]):
    """Compression ratio (dense / compressed parameters) per layer, log scale."""
    fig, ax = subplots(figsize=(max(5, 1.2 * len(layers)), 3.2))
    ax.bar([lay["name"] for lay in layers], [lay["ratio"] for lay in layers], color="C0")
    ax.set(ylabel="compression ratio (dense / compressed)", yscale="log", title="per layer")
    ax.set_ylim(bottom=1)
    ax.tick_params(axis="x", rotation=30)
    return fig


def metrics_figure(metrics: dict, keys):
    """One bar chart per metric in ``keys``, one bar per model of ``metrics``."""
    fig, axes = subplots(1, len(keys), figsize=(3.6 * len(keys), 3), squeeze=False)
    for ax, k in zip(axes[0], keys):
        names = [n for n in metrics if metrics[n].get(k) is not None]
        ax.bar(names, [metrics[n][k] for n in names], color=[f"C{i}" for i in range(len(names))])
        ax.set(title=k)
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def bands_figure(comparison: dict, metrics, title: str):
    """Median trajectory and band over seeds per learner, one panel per metric.

    ``comparison`` is a ``ComparisonResult.to_dict()`` (as stored in ``results.json``).
    Learners whose records are posterior draws (``step_units``) go on a top "draw" axis.
    """
    bands = comparison["bands"]["metrics"]
    learners = list(comparison["final"])
    units = comparison.get("step_units", {})
    fig, axes = subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), squeeze=False)
    handles = []
    for ax, m in zip(axes[0], metrics):
        drawn = [lrn for lrn in bands[m] if units.get(lrn) == "draw"
                 and np.isfinite(finite(bands[m][lrn]["median"])).any()]
        draw_ax = ax.twiny() if drawn else None
        for i, lrn in enumerate(learners):
            _band(draw_ax if lrn in drawn else ax, bands[m].get(lrn),
                  finite(comparison["trajectories"][lrn]["steps"]), i, lrn)
        if draw_ax is not None:
            draw_ax.set_xlabel("draw (posterior sample)")
        handles = handles or [h for a in (ax, draw_ax) if a is not None
                              for h in a.get_legend_handles_labels()[0]]
        vals = np.concatenate([finite(bands[m][lrn]["median"]) for lrn in bands[m]])
        vals = vals[np.isfinite(vals)]
        if vals.size and vals.min() > 0 and vals.max() / vals.min() > LOG_SCALE_SPAN:
            ax.set_yscale("log")
        ax.set(xlabel="step", title=m)
    axes[0, 0].legend(handles=handles, fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _band(ax, band, steps, i: int, label: str) -> None:
    if band is None:
        return
    n = min(len(steps), len(band["median"]))
    if n == 0:
        return
    med, lo, hi = (finite(band[k])[:n] for k in ("median", "lower", "upper"))
    ax.plot(steps[:n], med, color=f"C{i}", label=label)
    ax.fill_between(steps[:n], lo, hi, color=f"C{i}", alpha=0.2)


def final_figure(comparison: dict, metric: str | None):
    """Per-seed final ``metric`` per learner (box and points) and success probabilities."""
    learners = list(comparison["final"])
    fig, axes = subplots(1, 2, figsize=(10, 3.2))
    if metric is not None:
        data = [finite(comparison["final"][lrn].get(metric, [])) for lrn in learners]
        data = [d[np.isfinite(d)] for d in data]
        axes[0].boxplot([d if d.size else [np.nan] for d in data], showfliers=False)
        for i, d in enumerate(data):
            axes[0].plot(np.full(d.size, i + 1.0) + np.linspace(-0.1, 0.1, d.size), d, "o",
                         ms=3, color=f"C{i}", alpha=0.7)
        axes[0].set_xticks(range(1, len(learners) + 1), learners, rotation=20, fontsize=8)
        axes[0].set(title=f"final {metric} per seed")
    succ = comparison["success_summary"]
    p = finite([r["p"] for r in succ])
    lo = finite([r["ci_low"] for r in succ])
    hi = finite([r["ci_high"] for r in succ])
    axes[1].errorbar(range(len(succ)), p, yerr=[p - lo, hi - p], fmt="o", capsize=4)
    axes[1].set_xticks(range(len(succ)), [r["learner"] for r in succ], rotation=20, fontsize=8)
    axes[1].set(ylim=(-0.05, 1.05), title="success probability (95% interval)")
    fig.tight_layout()
    return fig

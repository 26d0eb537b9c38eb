"""Calibration of the predictive distribution: PIT and LOO-PIT histograms.

For a calibrated model the probability integral transform ``P(y_rep <= y)`` of each
observation is uniform on [0, 1]. The posterior-predictive PIT reuses the data the model was
fitted to (so it looks better than it is); LOO-PIT leaves each observation out by Pareto-
smoothed importance sampling (ArviZ's ``loo_pit``). The grey band is where a histogram bar of
uniform values falls with probability ``band`` (binomial quantiles).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from bayestensor.results import arviz_adapter
from bayestensor.viz.figures import subplots

#: Probability of the uniform reference band.
BAND = 0.99


def pit_values(data, var: str = "y") -> np.ndarray:
    """Posterior-predictive PIT of each observation of ``var``: the fraction of replicated
    values at or below it (``to_arviz(posterior_predictive=True)`` data)."""
    if not arviz_adapter.has_group(data, "posterior_predictive"):
        raise ValueError("data: no posterior_predictive group; use "
                         "posterior.to_arviz(posterior_predictive=True)")
    rep = np.asarray(arviz_adapter.group(data, "posterior_predictive")[var])
    obs = np.asarray(arviz_adapter.group(data, "observed_data")[var])
    rep = rep.reshape((-1,) + obs.shape)
    return (rep <= obs).mean(0).ravel()


def loo_pit_values(data, var: str = "y") -> np.ndarray:
    """LOO-PIT of each observation of ``var`` (needs ``posterior_predictive`` and
    ``log_likelihood``)."""
    return np.asarray(arviz_adapter.loo_pit(data, var)).ravel()


def plot_pit_histogram(values, *, bins: int = 20, band: float = BAND, title: str = "PIT",
                       ax=None):
    """Histogram of PIT values with the band a uniform histogram stays in; returns the Figure.

    Parameters
    ----------
    values : array_like
        PIT values in [0, 1].
    bins : int
        Equal-width bins on [0, 1].
    band : float in (0, 1)
        Probability of the reference band per bar.
    title : str
    ax : matplotlib Axes, optional
        Draw there instead of on a new backend-free Figure.
    """
    values = np.asarray(values, dtype=float).ravel()
    if values.size == 0 or np.any((values < 0) | (values > 1)):
        span = f" in [{float(values.min())!r}, {float(values.max())!r}]" if values.size else ""
        raise ValueError(f"values: expected PIT values in [0, 1], got {values.size} "
                         f"values{span}")
    if not 0 < band < 1:
        raise ValueError(f"band: expected a probability in (0, 1), got {band}")
    if ax is None:
        fig, ax = subplots(figsize=(5.0, 3.5))
    else:
        fig = ax.figure
    n = values.size
    counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    lo, hi = stats.binom.interval(band, n, 1.0 / bins)
    ax.axhspan(lo, hi, color="0.85", label=f"{band:.0%} band of uniform PIT")
    ax.axhline(n / bins, color="0.5", lw=1)
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="C0", alpha=0.8,
           edgecolor="white", label=f"{n} observations")
    ax.set_xlim(0, 1)
    ax.set_xlabel("PIT")
    ax.set_ylabel("observations per bin")
    ax.set_title(title)
    ax.legend(loc="upper center", fontsize=8)
    return fig


def plot_loo_pit(data, var: str = "y", **kwargs):
    """LOO-PIT histogram of ``var`` (see :func:`plot_pit_histogram`); returns the Figure."""
    return plot_pit_histogram(loo_pit_values(data, var), title=kwargs.pop("title", "LOO-PIT"),
                              **kwargs)


def plot_pit(data, var: str = "y", **kwargs):
    """Posterior-predictive PIT histogram of ``var``; returns the Figure."""
    return plot_pit_histogram(pit_values(data, var),
                              title=kwargs.pop("title", "posterior-predictive PIT"), **kwargs)

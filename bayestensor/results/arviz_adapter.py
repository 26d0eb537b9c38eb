"""One adapter for ArviZ 0.2x (``InferenceData``) and ArviZ 1.x (xarray ``DataTree``).

ArviZ 1.x (Python >= 3.12) has no ``from_pyro``, returns a ``DataTree`` from ``from_dict`` and
renamed ``hdi_prob`` to ``ci_prob`` in ``summary``. Everything in bayestensor that talks to
ArviZ goes through the functions here (conversion, summary, R-hat/ESS, trace and rank plots).
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np

ARVIZ_MAJOR = int(az.__version__.split(".")[0])


def to_inference_data(posterior: dict, sample_stats: dict | None = None,
                      observed_data: dict | None = None, attrs: dict | None = None):
    """ArviZ object from ``{name: (chain, draw, ...)}`` arrays.

    Returns an ``InferenceData`` on ArviZ 0.2x and a ``DataTree`` on ArviZ 1.x.
    """
    groups = {"posterior": {k: np.asarray(v) for k, v in posterior.items()}}
    if sample_stats:
        groups["sample_stats"] = {k: np.asarray(v) for k, v in sample_stats.items()}
    if observed_data:
        groups["observed_data"] = {k: np.asarray(v) for k, v in observed_data.items()}
    if ARVIZ_MAJOR >= 1:
        tree = az.from_dict(groups)
        if attrs:
            tree.attrs.update(attrs)
        return tree
    return az.from_dict(**groups, attrs=attrs or {})


def summary(data, var_names=None, ci_prob: float = 0.9):
    """``az.summary`` with the credible-interval argument of either ArviZ major version."""
    if ARVIZ_MAJOR >= 1:
        return az.summary(data, var_names=var_names, ci_prob=ci_prob)
    return az.summary(data, var_names=var_names, hdi_prob=ci_prob)


def posterior_group(data):
    """The posterior group as an ``xarray.Dataset`` for either ArviZ major version."""
    post = data["posterior"] if ARVIZ_MAJOR >= 1 else data.posterior
    return post.to_dataset() if hasattr(post, "to_dataset") else post


def rhat_ess(data, var_names=None) -> dict:
    """Worst R-hat, smallest bulk and tail ESS over the chosen variables."""
    rhat = az.rhat(data, var_names=var_names)
    bulk = az.ess(data, var_names=var_names, method="bulk")
    tail = az.ess(data, var_names=var_names, method="tail")

    def _reduce(ds, fn):
        if hasattr(ds, "to_dataset"):
            ds = ds.to_dataset()
        vals = [np.asarray(ds[v]).ravel() for v in ds.data_vars]
        vals = np.concatenate(vals) if vals else np.array([np.nan])
        vals = vals[np.isfinite(vals)]
        return float(fn(vals)) if vals.size else float("nan")

    return {"max_rhat": _reduce(rhat, np.max), "min_ess_bulk": _reduce(bulk, np.min),
            "min_ess_tail": _reduce(tail, np.min)}


def per_variable(data, var_names=None) -> list[dict]:
    """Worst R-hat and smallest bulk/tail ESS of every variable: ``[{var, max_rhat, ...}]``."""
    rhat = az.rhat(data, var_names=var_names)
    bulk = az.ess(data, var_names=var_names, method="bulk")
    tail = az.ess(data, var_names=var_names, method="tail")
    dss = [d.to_dataset() if hasattr(d, "to_dataset") else d for d in (rhat, bulk, tail)]

    def _red(ds, name, fn):
        v = np.asarray(ds[name]).ravel()
        v = v[np.isfinite(v)]
        return float(fn(v)) if v.size else float("nan")

    return [{"var": str(name), "max_rhat": _red(dss[0], name, np.max),
             "min_ess_bulk": _red(dss[1], name, np.min), "min_ess_tail": _red(dss[2], name, np.min)}
            for name in dss[0].data_vars]


def _figure_of(result):
    """The matplotlib Figure behind what an ArviZ plot returned (axes array or PlotCollection)."""
    import matplotlib.pyplot as plt

    if hasattr(result, "viz"):  # ArviZ 1.x PlotCollection
        fig = getattr(result, "figure", None)
        if fig is not None and hasattr(fig, "savefig"):
            return fig
        return plt.gcf()
    axes = np.asarray(result).ravel()
    return axes[0].figure if axes.size else plt.gcf()


def plot_trace(data, var_names=None, **kwargs):
    """Trace plot (``az.plot_trace`` on 0.2x, ``az.plot_trace_dist`` on 1.x); returns the Figure.

    ``kwargs`` (e.g. ``figsize``) go to ``az.plot_trace`` on ArviZ 0.2x only.
    """
    with warnings.catch_warnings():  # ArviZ 0.2x on matplotlib >= 3.11: normalize_kwargs deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        return _plot_trace(data, var_names, **kwargs)


def _plot_trace(data, var_names, **kwargs):
    if ARVIZ_MAJOR >= 1:
        return _figure_of(az.plot_trace_dist(data, var_names=var_names, backend="matplotlib"))
    return _figure_of(az.plot_trace(data, var_names=var_names, compact=True, backend="matplotlib",
                                   **kwargs))


def plot_rank(data, var_names=None, **kwargs):
    """Rank plot of the chains (``az.plot_rank``, both versions); returns the Figure."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return _plot_rank(data, var_names, **kwargs)


def _plot_rank(data, var_names, **kwargs):
    if ARVIZ_MAJOR >= 1:
        return _figure_of(az.plot_rank(data, var_names=var_names, backend="matplotlib"))
    return _figure_of(az.plot_rank(data, var_names=var_names, backend="matplotlib", **kwargs))

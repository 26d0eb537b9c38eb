"""One adapter for ArviZ 0.2x (``InferenceData``) and ArviZ 1.x (xarray ``DataTree``).

ArviZ 1.x (Python >= 3.12) has no ``from_pyro``, returns a ``DataTree`` from ``from_dict`` and
renamed ``hdi_prob`` to ``ci_prob`` in ``summary``. Everything in bayestensor that talks to
ArviZ goes through the functions here (conversion, summary, R-hat/ESS, trace and rank plots).

ArviZ is imported on first use: with xarray, pandas and matplotlib it takes seconds, which a
fit that never builds ArviZ data should not pay.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from dataclasses import dataclass, field

import numpy as np


@functools.cache
def _arviz():
    try:
        import arviz
    except FileNotFoundError:
        # ArviZ 0.23 writes a once-a-day notice stamp on import by renaming a temporary file
        # of a fixed name; two processes importing it at the same moment (Ray workers,
        # parallel jobs) race on that rename and one fails. The other has written the stamp
        # by then, so the second import goes through.
        import arviz
    return arviz


def arviz_major() -> int:
    """The installed ArviZ's major version (0 or 1)."""
    return int(_arviz().__version__.split(".")[0])


#: Groups whose variables have no (chain, draw) dimensions.
DATA_GROUPS = ("observed_data", "constant_data")
#: The order of groups in the result (ArviZ's own order).
GROUP_ORDER = ("posterior", "posterior_predictive", "log_likelihood", "sample_stats",
               "observed_data", "constant_data")


def to_inference_data(posterior: dict, sample_stats: dict | None = None,
                      observed_data: dict | None = None, attrs: dict | None = None, *,
                      log_likelihood: dict | None = None,
                      posterior_predictive: dict | None = None,
                      dims: dict | None = None, coords: dict | None = None):
    """ArviZ object from ``{name: (chain, draw, ...)}`` arrays, one argument per group.

    ``observed_data`` arrays have no chain and draw dimensions. ``dims`` maps a group name to
    ``{variable: [axis names]}`` (the axes after chain and draw); ``coords`` maps an axis name
    to its labels. Returns an ``InferenceData`` on ArviZ 0.2x and a ``DataTree`` on ArviZ 1.x.
    """
    groups = {"posterior": posterior, "sample_stats": sample_stats,
              "observed_data": observed_data, "log_likelihood": log_likelihood,
              "posterior_predictive": posterior_predictive}
    groups = {name: groups[name] for name in GROUP_ORDER if groups.get(name)}
    return build_groups(groups, dims or {}, coords or {}, attrs or {})


def build_groups(groups: dict, dims: dict, coords: dict, attrs: dict):
    """The one place where ArviZ objects are built: ``{group: {var: array}}`` -> ArviZ data."""
    datasets = {}
    for name, variables in groups.items():
        arrays = {k: np.asarray(v) for k, v in variables.items()}
        group_dims = {k: list(d) for k, d in dims.get(name, {}).items() if k in arrays}
        used = {a for d in group_dims.values() for a in d}
        group_coords = {a: c for a, c in coords.items() if a in used}
        sample_dims = [] if name in DATA_GROUPS else ["chain", "draw"]
        datasets[name] = _dataset(arrays, group_dims, group_coords, sample_dims, attrs)
    if arviz_major() >= 1:
        import xarray as xr

        tree = xr.DataTree.from_dict(datasets)
        tree.attrs.update(attrs)
        return tree
    return _arviz().InferenceData(**datasets)


def _dataset(arrays: dict, dims: dict, coords: dict, sample_dims: list, attrs: dict):
    if arviz_major() >= 1:
        return _arviz().dict_to_dataset(arrays, attrs=attrs, coords=coords, dims=dims,
                                  sample_dims=sample_dims)
    if not sample_dims:
        return _arviz().dict_to_dataset(arrays, attrs=attrs, coords=coords, dims=dims,
                                  default_dims=[], index_origin=0)
    return _arviz().dict_to_dataset(arrays, attrs=attrs, coords=coords, dims=dims, index_origin=0)


def summary(data, var_names=None, ci_prob: float = 0.9, kind: str = "all"):
    """``az.summary`` with the credible-interval argument of either ArviZ major version.

    ``kind="stats"`` leaves out the Markov-chain diagnostics (R-hat, ESS, MCSE).
    """
    if arviz_major() >= 1:
        return _arviz().summary(data, var_names=var_names, ci_prob=ci_prob, kind=kind)
    return _arviz().summary(data, var_names=var_names, hdi_prob=ci_prob, kind=kind)


def posterior_group(data):
    """The posterior group as an ``xarray.Dataset`` for either ArviZ major version."""
    return group(data, "posterior")


def group(data, name: str):
    """Group ``name`` as an ``xarray.Dataset`` for either ArviZ major version."""
    ds = data[name] if arviz_major() >= 1 else getattr(data, name)
    return ds.to_dataset() if hasattr(ds, "to_dataset") else ds


def has_group(data, name: str) -> bool:
    """Whether ArviZ data (``InferenceData`` or ``DataTree``) has group ``name``."""
    return name in (data.children if arviz_major() >= 1 else data.groups())


def per_variable(data, var_names=None) -> list[dict]:
    """Worst R-hat and smallest bulk/tail ESS of every variable: ``[{var, max_rhat, ...}]``.

    Elements that are NaN in every draw (positions a model discards, such as Pyro's
    ``obs_mask`` ones) get NaN statistics and are left out of the worst values; ArviZ's log
    line about them ("Array contains NaN-value") is held back. So do constant elements (the
    fixed 1 and 0 entries of an ``LKJCholesky`` factor), for which ArviZ divides 0 by 0 and
    NumPy would warn about it."""
    with _quiet_arviz_log(), np.errstate(invalid="ignore", divide="ignore"):
        rhat = _arviz().rhat(data, var_names=var_names)
        bulk = _arviz().ess(data, var_names=var_names, method="bulk")
        tail = _arviz().ess(data, var_names=var_names, method="tail")
    dss = [d.to_dataset() if hasattr(d, "to_dataset") else d for d in (rhat, bulk, tail)]

    def _red(ds, name, fn):
        v = np.asarray(ds[name]).ravel()
        v = v[np.isfinite(v)]
        return float(fn(v)) if v.size else float("nan")

    return [{"var": str(name), "max_rhat": _red(dss[0], name, np.max),
             "min_ess_bulk": _red(dss[1], name, np.min), "min_ess_tail": _red(dss[2], name, np.min)}
            for name in dss[0].data_vars]


@contextlib.contextmanager
def _quiet_arviz_log():
    """ArviZ's loggers at ERROR for the duration (it logs a warning per array with NaN).
    ArviZ 0.2x logs through a ``Logger`` it made itself (``arviz._log``), outside
    ``logging.getLogger``'s registry."""
    logs = {logging.getLogger("arviz"), getattr(_arviz(), "_log", logging.getLogger("arviz"))}
    levels = {log: log.level for log in logs}
    for log in logs:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for log, level in levels.items():
            log.setLevel(level)


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
    if arviz_major() >= 1:
        return _figure_of(_arviz().plot_trace_dist(data, var_names=var_names, backend="matplotlib"))
    az = _arviz()
    return _figure_of(az.plot_trace(data, var_names=var_names, compact=True, backend="matplotlib",
                                   **kwargs))


def plot_rank(data, var_names=None, **kwargs):
    """Rank plot of the chains (``az.plot_rank``, both versions); returns the Figure."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return _plot_rank(data, var_names, **kwargs)


def _plot_rank(data, var_names, **kwargs):
    if arviz_major() >= 1:
        return _figure_of(_arviz().plot_rank(data, var_names=var_names, backend="matplotlib"))
    return _figure_of(_arviz().plot_rank(data, var_names=var_names, backend="matplotlib", **kwargs))


@dataclass(frozen=True)
class LooResult:
    """PSIS-LOO of one run, named alike for both ArviZ major versions (ArviZ 1.x calls
    ``elpd_loo`` and ``p_loo`` ``elpd`` and ``p``)."""

    elpd_loo: float
    se: float
    p_loo: float
    pareto_k: np.ndarray  # one per observation
    raw: object = field(default=None, repr=False, compare=False)  # ArviZ's own result


def loo(data, pointwise: bool = True) -> LooResult:
    """``az.loo`` (PSIS-LOO) of one run as a :class:`LooResult`."""
    result = _arviz().loo(data, pointwise=pointwise)
    if arviz_major() >= 1:
        elpd, p = result.elpd, result.p
    else:
        elpd, p = result.elpd_loo, result.p_loo
    k = getattr(result, "pareto_k", None)
    return LooResult(float(elpd), float(result.se), float(p),
                     np.asarray(k if k is not None else []).ravel(), result)


#: ArviZ 1.x's names of ``az.compare``'s columns -> ArviZ 0.2x's, which bayestensor uses.
COMPARE_COLUMNS_0X = {"elpd": "elpd_loo", "p": "p_loo"}


def compare(runs: dict):
    """``az.compare`` of ``{name: ArviZ data or LooResult}`` by PSIS-LOO: a DataFrame ranked
    best first, with ArviZ 0.2x's column names (``elpd_loo``, ``p_loo``, ``elpd_diff``,
    ``se``, ``dse``, ``weight``, ...) on either major version. A :class:`LooResult` (from
    :func:`loo`) is compared as it is, without computing PSIS-LOO again."""
    runs = {name: r.raw if isinstance(r, LooResult) else r for name, r in runs.items()}
    if arviz_major() >= 1:
        # unrounded, as ArviZ 0.2x returns them (1.x rounds to the estimates' precision)
        return _arviz().compare(runs, round_to="none").rename(columns=COMPARE_COLUMNS_0X)
    with warnings.catch_warnings():  # ArviZ 0.2x on pandas >= 3: sort_values(inplace=True)
        warnings.filterwarnings("ignore", message=".*inplace keyword")
        return _arviz().compare(runs, ic="loo")


#: How far outside [0, 1] a LOO-PIT value may fall by rounding and still be taken as the bound.
PIT_ROUNDING = 1e-9


def loo_pit(data, y: str):
    """LOO-PIT values of observed variable ``y`` (one per observation), in [0, 1].

    ArviZ 1.x sums normalized importance weights, which can exceed 1 by rounding (1 + 2.2e-16
    with arviz-stats 1.3.3 on an SVGD run of 25 particles); values within ``PIT_ROUNDING`` of
    the bounds are set to them, anything farther is returned as it is, for the caller to
    refuse."""
    if arviz_major() >= 1:
        values = np.asarray(_arviz().loo_pit(data, var_names=[y])[y], dtype=float)
    else:
        values = np.asarray(_arviz().loo_pit(data, y=y), dtype=float)
    values = np.where((values > 1) & (values <= 1 + PIT_ROUNDING), 1.0, values)
    return np.where((values < 0) & (values >= -PIT_ROUNDING), 0.0, values)

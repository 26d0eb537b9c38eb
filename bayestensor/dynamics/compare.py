"""Replicates under uncertainty: run learners over seeds, then summarize with intervals.

:func:`compare` runs every learner on every replicate seed and returns a
:class:`ComparisonResult` holding an ``xarray.Dataset``:

* final metrics as variables named after the metric, dims ``(learner, seed)``;
* trajectories as ``traj_<metric>``, dims ``(learner, seed, record)``, with the step numbers in
  ``step`` ``(learner, record)`` (learners may record at different steps; NaN pads) and what a
  record counts in ``step_unit`` ``(learner,)``: ``"step"`` (optimizer updates) or ``"draw"``
  (posterior draws of a sampler);
* ``success`` ``(learner, seed)`` from the problem's rule (or a rule given to ``compare``).

Summaries: per learner and metric the mean, sd and median with an interval for the mean
(:func:`mean_interval`: SciPy's BCa bootstrap from :data:`MIN_BOOTSTRAP_N` seeds on, a Student-t
interval below, named in the ``ci_method`` column); success probabilities with Wilson or
Clopper-Pearson binomial intervals from :func:`scipy.stats.binomtest` (:func:`wilson_interval`,
:func:`clopper_pearson_interval`); pointwise trajectory bands (median and a central quantile band
over seeds, :meth:`ComparisonResult.bands`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats
from tqdm.auto import tqdm

from bayestensor.io import to_jsonable
from bayestensor import checks as _checks
from bayestensor.parallel import TaskExecutor

INTERVAL_METHODS = ("wilson", "clopper_pearson")


# --- interval statistics ----------------------------------------------------------------------
#: Below this many finite replicates a bootstrap interval is not reported: the resamples of so
#: few values barely reach beyond their range, so the "interval" is about ``[min, max]`` whatever
#: its nominal level. :func:`mean_interval` then uses a Student-t interval instead.
MIN_BOOTSTRAP_N = 10
#: SciPy's bootstrap method: BCa corrects the percentile interval for the bias and skew of the
#: resampled means, which matters for final errors spread over decades; the jackknife it needs
#: costs ``n`` evaluations, nothing for a few dozen seeds.
BOOTSTRAP_METHOD = "BCa"
#: ``method`` of :func:`scipy.stats.binomtest`'s ``proportion_ci`` for each interval name.
_BINOM_METHODS = {"wilson": "wilson", "clopper_pearson": "exact"}


def _level(level) -> float:
    lv = _checks.positive_float("level", level)
    if not 0 < lv < 1:
        raise ValueError(f"level: expected a number in (0, 1), got {level!r}")
    return lv


def _finite(values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    return v[np.isfinite(v)]


def _all_equal(v: np.ndarray) -> bool:
    """Whether the values agree to rounding: replicates that end at the same point by different
    arithmetic (a ratio of norms, say) differ in their last bits, and BCa's jackknife then
    divides zero by zero (SciPy warns and returns NaN)."""
    return bool(np.ptp(v) <= 16 * np.finfo(np.float64).eps * np.abs(v).max())


def bootstrap_interval(values, *, statistic: Callable = np.mean, level: float = 0.95,
                       n_boot: int = 2000, seed: int = 0,
                       min_n: int = MIN_BOOTSTRAP_N) -> tuple[float, float]:
    """BCa bootstrap interval of ``statistic`` over the finite entries of ``values``.

    A thin wrapper of :func:`scipy.stats.bootstrap` (``method="BCa"``).

    Parameters
    ----------
    values : array_like
        Replicate values (NaN / inf are dropped).
    statistic : callable
        Vectorized statistic taking ``axis`` (``np.mean``, ``np.median``).
    level : float
        Interval level in (0, 1).
    n_boot : int
        Bootstrap resamples.
    seed : int
        Seeds the resampling.
    min_n : int
        Fewest finite values for which an interval is returned (at least 2; see
        :data:`MIN_BOOTSTRAP_N`).

    Returns
    -------
    (float, float)
        Lower and upper bound; ``(nan, nan)`` with fewer than ``min_n`` finite values (too few
        for a bootstrap: use :func:`mean_interval`), the value itself when all are equal to
        rounding, and the percentile interval where BCa's correction is undefined (every
        leave-one-out statistic equal, as a median over ties can be).

    Examples
    --------
    >>> lo, hi = bootstrap_interval(np.arange(20.0), seed=0)
    >>> bool(lo < 9.5 < hi)
    True
    """
    level = _level(level)
    n_boot = _checks.positive_int("n_boot", n_boot)
    min_n = _checks.positive_int("min_n", min_n, minimum=2)
    v = _finite(values)
    if v.size < min_n:
        return float("nan"), float("nan")
    if _all_equal(v):  # every resample gives the same value: BCa is undefined, the answer is not
        value = float(statistic(v, axis=0))
        return value, value
    seed = _checks.seed_value(seed)

    def interval(method):
        return stats.bootstrap((v,), statistic, n_resamples=n_boot, confidence_level=level,
                               method=method, rng=np.random.default_rng(seed)).confidence_interval

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # BCa's 0/0, handled below
        low, high = interval(BOOTSTRAP_METHOD)
    if not (np.isfinite(low) and np.isfinite(high)):
        # the jackknife values are all equal (a median over ties): no BCa correction exists
        low, high = interval("percentile")
    return float(low), float(high)


def t_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean: ``mean +- t_{n-1} * sd / sqrt(n)`` over the finite values.

    Assumes roughly normal replicates; with few seeds that assumption is the price of any
    interval at all.

    Parameters
    ----------
    values : array_like
        Replicate values (flattened; NaN / inf are dropped).
    level : float
        Interval level in (0, 1) (default 0.95).

    Returns
    -------
    (float, float)
        Lower and upper bound; ``(nan, nan)`` with fewer than two finite values, the value
        itself when all are equal to rounding.

    Raises
    ------
    ValueError
        When ``level`` is not a number in (0, 1).

    Examples
    --------
    >>> lo, hi = t_interval([1.0, 2.0, 3.0])
    >>> round(hi - 2.0, 4)  # t_{2, 0.975} * 1 / sqrt(3)
    2.4841
    """
    level = _level(level)
    v = _finite(values)
    if v.size < 2:
        return float("nan"), float("nan")
    if _all_equal(v):
        return float(v.mean()), float(v.mean())
    lo, hi = stats.t.interval(level, v.size - 1, loc=v.mean(), scale=stats.sem(v))
    return float(lo), float(hi)


def mean_interval(values, *, level: float = 0.95, n_boot: int = 2000, seed: int = 0,
                  min_n: int = MIN_BOOTSTRAP_N) -> tuple[float, float, str]:
    """Interval of the mean over replicates, with the name of the method used.

    BCa bootstrap (:func:`bootstrap_interval`) from ``min_n`` finite values on, a Student-t
    interval (:func:`t_interval`) from 2 to ``min_n - 1``, none below 2.

    Parameters
    ----------
    values : array_like
        Replicate values (flattened; NaN / inf are dropped).
    level : float
        Interval level in (0, 1) (default 0.95).
    n_boot : int
        Bootstrap resamples (default 2000).
    seed : int
        Seeds the bootstrap resampling.
    min_n : int
        Fewest finite values (at least 2) for the bootstrap (default :data:`MIN_BOOTSTRAP_N`).

    Returns
    -------
    (float, float, str)
        Lower bound, upper bound and ``"bootstrap BCa"``, ``"student t"`` or
        ``"none (n < 2)"``.
    """
    v = _finite(values)
    min_n = _checks.positive_int("min_n", min_n, minimum=2)
    if v.size >= min_n:
        return (*bootstrap_interval(v, level=level, n_boot=n_boot, seed=seed, min_n=min_n),
                f"bootstrap {BOOTSTRAP_METHOD}")
    if v.size >= 2:
        return (*t_interval(v, level), "student t")
    _level(level)
    return float("nan"), float("nan"), "none (n < 2)"


def _proportion_ci(successes, n, level, method: str) -> tuple[float, float]:
    k, n = _binomial_args(successes, n)
    level = _level(level)
    if n == 0:
        return float("nan"), float("nan")
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method=_BINOM_METHODS[method])
    return float(ci.low), float(ci.high)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    ``scipy.stats.binomtest(successes, n).proportion_ci(level, method="wilson")``.

    Parameters
    ----------
    successes, n : int
        Successes out of ``n`` trials (``0 <= successes <= n``).
    level : float

    Returns
    -------
    (float, float)
        Within [0, 1]; ``(nan, nan)`` when ``n == 0``.
    """
    return _proportion_ci(successes, n, level, "wilson")


def clopper_pearson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a binomial proportion.

    ``scipy.stats.binomtest(successes, n).proportion_ci(level, method="exact")``.

    Parameters
    ----------
    successes, n : int
        Successes out of ``n`` trials (``0 <= successes <= n``).
    level : float
        Interval level in (0, 1) (default 0.95).

    Returns
    -------
    (float, float)
        Within [0, 1]; ``(nan, nan)`` when ``n == 0``.

    Raises
    ------
    ValueError
        When the counts are not integers with ``0 <= successes <= n``, or ``level`` is not in
        (0, 1).
    """
    return _proportion_ci(successes, n, level, "clopper_pearson")


def _binomial_args(successes, n) -> tuple[int, int]:
    n = _checks.positive_int("n", n, minimum=0)
    k = _checks.positive_int("successes", successes, minimum=0)
    if k > n:
        raise ValueError(f"successes: expected at most n = {n}, got {k}")
    return k, n


# --- the runner -------------------------------------------------------------------------------
def _run_one(task):
    learner, instance, seed = task
    return learner.run(instance, seed)


def _seed_list(seeds, seed: int) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        n = _checks.positive_int("seeds", seeds)
        return [seed + i for i in range(n)]
    try:
        out = [int(s) for s in seeds]
    except TypeError:
        raise ValueError(f"seeds: expected a count or a sequence of integers, got {seeds!r}") from None
    if not out:
        raise ValueError("seeds: expected at least one seed")
    if any(s < 0 for s in out) or len(set(out)) != len(out):
        raise ValueError(f"seeds: expected distinct non-negative integers, got {out}")
    return out


def compare(problem, learners: Sequence, seeds=10, *, seed: int = 0, vary: str = "all",
            reference=None, success: Callable | None = None, executor=None,
            backend: str = "local", progress: bool = True) -> "ComparisonResult":
    """Run every learner on every replicate and collect final metrics and trajectories.

    Parameters
    ----------
    problem : problem object
        Has ``instance(seed)``, ``success(final)`` and ``describe()`` (see
        :mod:`bayestensor.dynamics.studies`).
    learners : sequence of learner objects
        Each has ``name``, ``run(instance, seed) -> Trace`` and ``describe()``; names must be
        distinct.
    seeds : int or sequence of int
        Replicate seeds; an int ``k`` means ``seed, seed + 1, ..., seed + k - 1``.
    seed : int
        Base seed (of the replicate seeds when ``seeds`` is a count, of the fixed instance for
        ``vary="learner"``).
    vary : {"all", "learner"}
        ``"all"``: replicate ``s`` draws the instance and the learners' randomness (feedback
        matrices, initializations) from ``s``. ``"learner"``: one instance (from ``seed``) for all
        replicates; only the learners' randomness varies.
    reference : learner object, optional
        Added as one more learner (e.g. :class:`~bayestensor.dynamics.studies.BayesReference`).
    success : callable, optional
        ``success(final) -> bool``; default ``problem.success``.
    executor : object with ``map``, optional
        Runs the replicates (``concurrent.futures`` executors, ``ray.util.multiprocessing.Pool``);
        default: in this process, in order.
    backend : {"local", "ray"}
        ``"ray"`` runs the replicates as Ray tasks (bounded in flight, retried on failure) via
        :class:`bayestensor.parallel.TaskExecutor`; ignored when ``executor`` is given.
        Seeds do not depend on the backend, so both give the same numbers.
    progress : bool
        Progress bar.

    Returns
    -------
    ComparisonResult

    Raises
    ------
    ValueError
        No learners, duplicate names, bad seeds or ``vary``.

    Examples
    --------
    >>> from bayestensor.dynamics.studies import FactorizationProblem, FactorizationLearner
    >>> res = compare(FactorizationProblem(rank=5, r=3), [FactorizationLearner("gd", steps=500),
    ...               FactorizationLearner("fa", steps=500)], seeds=3, progress=False)
    >>> sorted(res.dataset.learner.values.tolist())
    ['FA', 'GD']
    """
    seed = _checks.seed_value(seed)
    vary = _checks.choice("vary", vary, ("all", "learner"))
    learners = list(learners) + ([reference] if reference is not None else [])
    if not learners:
        raise ValueError("learners: expected at least one learner")
    for lrn in learners:
        if not (hasattr(lrn, "run") and hasattr(lrn, "name")):
            raise ValueError(f"learners: {lrn!r} has no run(instance, seed) / name")
    names = [str(lrn.name) for lrn in learners]
    if len(set(names)) != len(names):
        raise ValueError(f"learners: names must be distinct, got {names}")
    if not (hasattr(problem, "instance") and callable(problem.instance)):
        raise ValueError(f"problem: expected an object with instance(seed), got {type(problem).__name__}")
    seed_list = _seed_list(seeds, seed)
    rule = success if success is not None else getattr(problem, "success", None)
    if rule is not None and not callable(rule):
        raise ValueError(f"success: expected a callable, got {rule!r}")

    fixed = problem.instance(seed) if vary == "learner" else None
    tasks, keys = [], []
    for s in seed_list:
        inst = fixed if fixed is not None else problem.instance(s)
        for name, lrn in zip(names, learners):
            tasks.append((lrn, inst, s))
            keys.append((name, s))
    if executor is None and backend != "local":
        executor = TaskExecutor(backend)
    mapper = executor.map if executor is not None else map
    results = mapper(_run_one, tasks)
    if progress:
        results = tqdm(results, total=len(tasks), desc=f"compare {getattr(problem, 'name', '')}")
    traces = dict(zip(keys, list(results)))
    rule_text = getattr(problem, "success_rule", "") if success is None else getattr(
        success, "__doc__", None) or "custom rule"
    return ComparisonResult.from_traces(traces, names, seed_list, rule,
                                        problem=_describe(problem),
                                        learners={n: _describe(lrn) for n, lrn in zip(names, learners)},
                                        success_rule=str(rule_text), vary=vary, base_seed=seed)


def _describe(obj) -> dict:
    if hasattr(obj, "describe"):
        return obj.describe()
    return {"type": type(obj).__name__}


@dataclass
class ComparisonResult:
    """Final metrics and trajectories of every learner on every replicate, with summaries.

    Attributes
    ----------
    dataset : xarray.Dataset
        See the module docstring for its layout.
    info : dict
        Problem and learner descriptions, success rule, seeds.
    """

    dataset: xr.Dataset
    info: dict = field(default_factory=dict)

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_traces(cls, traces: dict, names: list, seeds: list, rule, **info) -> "ComparisonResult":
        """Assemble the dataset from ``{(learner, seed): Trace}``.

        Parameters
        ----------
        traces : dict
            ``{(learner name, seed): Trace}``, one entry for every name in ``names`` with every
            seed in ``seeds``. Runs with fewer records than the longest are padded with NaN;
            each learner's ``step`` row comes from its run with the most records, its
            ``step_unit`` from its last seed's trace.
        names : list of str
            Learner names, in the order of the ``learner`` dimension.
        seeds : list of int
            Replicate seeds, in the order of the ``seed`` dimension.
        rule : callable or None
            ``rule(final) -> bool`` on a trace's final metrics, giving ``success``; ``None``
            marks every run unsuccessful.
        **info
            Stored in :attr:`info` (as :func:`compare` passes them: ``problem``, ``learners``,
            ``success_rule``, ``vary``, ``base_seed``). ``success_rule`` (default ``""``) also
            becomes the dataset's ``attrs["success_rule"]``.

        Returns
        -------
        ComparisonResult
            With ``seeds``, ``final_metrics`` and ``trajectory_metrics`` (the metric names in
            order of first appearance) added to ``info``.
        """
        final_keys: list[str] = []
        traj_keys: list[str] = []
        n_rec = 1
        for tr in traces.values():
            for k in tr.final:
                if k not in final_keys:
                    final_keys.append(k)
            for k in tr.trajectory:
                if k not in traj_keys:
                    traj_keys.append(k)
            n_rec = max(n_rec, len(tr.steps))
        nl, ns = len(names), len(seeds)
        final = {k: np.full((nl, ns), np.nan) for k in final_keys}
        traj = {k: np.full((nl, ns, n_rec), np.nan) for k in traj_keys}
        step = np.full((nl, n_rec), np.nan)
        units = ["step"] * nl
        succ = np.zeros((nl, ns), dtype=bool)
        for i, name in enumerate(names):
            for j, s in enumerate(seeds):
                tr = traces[(name, s)]
                for k, v in tr.final.items():
                    final[k][i, j] = v
                for k, v in tr.trajectory.items():
                    arr = np.asarray(v, dtype=np.float64)
                    traj[k][i, j, : arr.size] = arr
                steps = np.asarray(tr.steps, dtype=np.float64)
                if steps.size > np.isfinite(step[i]).sum():
                    step[i, :] = np.nan
                    step[i, : steps.size] = steps
                units[i] = str(getattr(tr, "unit", "step"))
                succ[i, j] = bool(rule(tr.final)) if rule is not None else False
        coords = {"learner": names, "seed": seeds, "record": np.arange(n_rec)}
        data = {k: (("learner", "seed"), v) for k, v in final.items()}
        for k, v in traj.items():
            data[f"traj_{k}"] = (("learner", "seed", "record"), v)
        data["step"] = (("learner", "record"), step)
        data["step_unit"] = (("learner",), np.array(units, dtype=object))
        data["success"] = (("learner", "seed"), succ)
        ds = xr.Dataset(data, coords=coords)
        ds.attrs["success_rule"] = str(info.get("success_rule", ""))
        info = {**info, "seeds": list(seeds), "final_metrics": final_keys,
                "trajectory_metrics": traj_keys}
        return cls(ds, info)

    # --- views --------------------------------------------------------------------------------
    @property
    def learners(self) -> list[str]:
        """Learner names, in order."""
        return [str(v) for v in self.dataset.learner.values]

    @property
    def step_units(self) -> dict[str, str]:
        """What each learner's records count: ``"step"`` (updates) or ``"draw"`` (posterior draws)."""
        if "step_unit" not in self.dataset:
            return {lrn: "step" for lrn in self.learners}
        return dict(zip(self.learners, (str(u) for u in self.dataset["step_unit"].values)))

    @property
    def final_metrics(self) -> list[str]:
        """Names of the final metrics."""
        return list(self.info.get("final_metrics", []))

    @property
    def trajectory_metrics(self) -> list[str]:
        """Names of the trajectory metrics."""
        return list(self.info.get("trajectory_metrics", []))

    def table(self) -> pd.DataFrame:
        """Tidy final metrics: one row per (learner, seed, metric) with its ``value``."""
        rows = []
        for m in self.final_metrics:
            da = self.dataset[m]
            for i, lrn in enumerate(self.learners):
                for j, s in enumerate(self.dataset.seed.values):
                    rows.append({"learner": lrn, "seed": int(s), "metric": m,
                                 "value": float(da.values[i, j])})
        for i, lrn in enumerate(self.learners):
            for j, s in enumerate(self.dataset.seed.values):
                rows.append({"learner": lrn, "seed": int(s), "metric": "success",
                             "value": float(self.dataset["success"].values[i, j])})
        return pd.DataFrame(rows)

    def trajectories(self, metric: str) -> pd.DataFrame:
        """Tidy trajectory of ``metric``: rows (learner, seed, step, value), NaN rows dropped."""
        var = self._traj_var(metric)
        rows = []
        for i, lrn in enumerate(self.learners):
            steps = self.dataset["step"].values[i]
            for j, s in enumerate(self.dataset.seed.values):
                vals = self.dataset[var].values[i, j]
                for st, v in zip(steps, vals):
                    if np.isfinite(st) and np.isfinite(v):
                        rows.append({"learner": lrn, "seed": int(s), "step": int(st), "value": float(v)})
        return pd.DataFrame(rows, columns=["learner", "seed", "step", "value"])

    def _traj_var(self, metric: str) -> str:
        var = f"traj_{metric}"
        if var not in self.dataset:
            raise ValueError(f"metric: no trajectory {metric!r}; have {self.trajectory_metrics}")
        return var

    # --- summaries ----------------------------------------------------------------------------
    def summary(self, metrics: Sequence[str] | None = None, *, level: float = 0.95,
                n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
        """Mean, sd, median and an interval of the mean, per learner and metric.

        The interval is :func:`mean_interval`'s: a BCa bootstrap from :data:`MIN_BOOTSTRAP_N`
        finite seeds on, a Student-t interval from 2 seeds, none for one.

        Parameters
        ----------
        metrics : sequence of str, optional
            Final metrics (default all).
        level : float
            Interval level.
        n_boot : int
            Bootstrap resamples.
        seed : int
            Seeds the bootstrap.

        Returns
        -------
        pandas.DataFrame
            Columns ``learner, metric, n, mean, sd, median, ci_low, ci_high, ci_method``
            (``n`` counts the finite values; NaN where there are none).
        """
        level = _level(level)
        metrics = self.final_metrics if metrics is None else list(metrics)
        for m in metrics:
            if m not in self.dataset:
                raise ValueError(f"metrics: unknown metric {m!r}; have {self.final_metrics}")
        rows = []
        for i, lrn in enumerate(self.learners):
            for m in metrics:
                v = np.asarray(self.dataset[m].values[i], dtype=np.float64)
                f = v[np.isfinite(v)]
                lo, hi, how = mean_interval(f, level=level, n_boot=n_boot, seed=seed)
                rows.append({"learner": lrn, "metric": m, "n": int(f.size),
                             "mean": float(f.mean()) if f.size else float("nan"),
                             "sd": float(f.std(ddof=1)) if f.size > 1 else float("nan"),
                             "median": float(np.median(f)) if f.size else float("nan"),
                             "ci_low": lo, "ci_high": hi, "ci_method": how})
        return pd.DataFrame(rows)

    def success_table(self, *, level: float = 0.95, method: str = "wilson") -> pd.DataFrame:
        """Success probability per learner with a binomial interval.

        Parameters
        ----------
        level : float
        method : {"wilson", "clopper_pearson"}

        Returns
        -------
        pandas.DataFrame
            Columns ``learner, successes, n, p, ci_low, ci_high, method``.
        """
        level = _level(level)
        method = _checks.choice("method", method, INTERVAL_METHODS)
        fn = wilson_interval if method == "wilson" else clopper_pearson_interval
        rows = []
        for i, lrn in enumerate(self.learners):
            s = self.dataset["success"].values[i]
            k, n = int(s.sum()), int(s.size)
            lo, hi = fn(k, n, level)
            rows.append({"learner": lrn, "successes": k, "n": n, "p": k / n if n else float("nan"),
                         "ci_low": lo, "ci_high": hi, "method": method})
        return pd.DataFrame(rows)

    def bands(self, metric: str, *, level: float = 0.8) -> xr.Dataset:
        """Pointwise trajectory band over seeds: median and the central ``level`` quantiles.

        Parameters
        ----------
        metric : str
            A trajectory metric (one of :attr:`trajectory_metrics`).
        level : float
            Share of the seeds inside the band, in (0, 1): ``lower`` and ``upper`` are the
            ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles (default 0.8).

        Returns
        -------
        xarray.Dataset
            ``median``, ``lower``, ``upper`` and ``step``, dims ``(learner, record)``; NaN where
            no seed has a value. Its attributes hold ``metric`` and ``level``.

        Raises
        ------
        ValueError
            When ``metric`` has no trajectory or ``level`` is not in (0, 1).
        """
        level = _level(level)
        var = self._traj_var(metric)
        v = self.dataset[var].values  # (L, S, R)
        a = (1 - level) / 2
        finite = np.isfinite(v).any(axis=1)  # (L, R): some seed has a value
        filled = np.where(np.isfinite(v), v, np.nan)
        med = np.full(finite.shape, np.nan)
        lo = np.full(finite.shape, np.nan)
        hi = np.full(finite.shape, np.nan)
        for i in range(v.shape[0]):
            cols = finite[i]
            if cols.any():
                qs = np.nanquantile(filled[i][:, cols], [0.5, a, 1 - a], axis=0)
                med[i, cols], lo[i, cols], hi[i, cols] = qs
        coords = {"learner": self.dataset.learner.values, "record": self.dataset.record.values}
        return xr.Dataset({"median": (("learner", "record"), med),
                           "lower": (("learner", "record"), lo),
                           "upper": (("learner", "record"), hi),
                           "step": (("learner", "record"), self.dataset["step"].values)},
                          coords=coords, attrs={"metric": metric, "level": level})

    # --- export -------------------------------------------------------------------------------
    def to_dict(self, *, level: float = 0.95, band_level: float = 0.8) -> dict:
        """Every number as plain JSON-safe Python (NaN becomes ``None``).

        Contains the run info, per-seed final metrics and success, per-seed trajectories with
        their steps and step units, the summary table, the success table and the trajectory
        bands of the metrics that have a finite value somewhere (a metric undefined on this
        problem, e.g. ``ey_ratio`` when the Eckart-Young error is zero, gets no band).

        Parameters
        ----------
        level : float
            Interval level of the summary and success tables (default 0.95; the summary's
            bootstrap uses 2000 resamples and seed 0, the success table Wilson intervals).
        band_level : float
            Level of the trajectory bands (default 0.8, see :meth:`bands`).

        Returns
        -------
        dict
            Keys ``info``, ``seeds``, ``success_rule``, ``final`` (``{learner: {metric: per-seed
            list}}``), ``success`` (``{learner: per-seed list of bool}``), ``summary`` and
            ``success_summary`` (the rows of :meth:`summary` and :meth:`success_table`),
            ``trajectories`` (``{learner: {"steps": [...], metric: per-seed lists}}``),
            ``step_units`` and ``bands`` (``{"level": band_level, "metrics": {metric:
            {learner: {"median", "lower", "upper"}}}}``).
        """
        final = {lrn: {m: _clean(self.dataset[m].values[i]) for m in self.final_metrics}
                 for i, lrn in enumerate(self.learners)}
        success = {lrn: self.dataset["success"].values[i].astype(bool).tolist()
                   for i, lrn in enumerate(self.learners)}
        traj = {}
        for i, lrn in enumerate(self.learners):
            steps = self.dataset["step"].values[i]
            keep = np.isfinite(steps)
            traj[lrn] = {"steps": _clean(steps[keep])}
            for m in self.trajectory_metrics:
                traj[lrn][m] = _clean(self.dataset[f"traj_{m}"].values[i][:, keep])
        bands = {}
        for m in self.trajectory_metrics:
            if not np.isfinite(self.dataset[f"traj_{m}"].values).any():
                continue
            b = self.bands(m, level=band_level)
            bands[m] = {lrn: {"median": _clean(b["median"].values[i]),
                              "lower": _clean(b["lower"].values[i]),
                              "upper": _clean(b["upper"].values[i])}
                        for i, lrn in enumerate(self.learners)}
        return {
            "info": to_jsonable(self.info),
            "seeds": [int(s) for s in self.dataset.seed.values],
            "success_rule": self.dataset.attrs.get("success_rule", ""),
            "final": final,
            "success": success,
            "summary": _records(self.summary(level=level)),
            "success_summary": _records(self.success_table(level=level)),
            "trajectories": traj,
            "step_units": self.step_units,
            "bands": {"level": band_level, "metrics": bands},
        }

    def __repr__(self) -> str:
        return (f"ComparisonResult(learners={self.learners}, seeds={len(self.dataset.seed)}, "
                f"final_metrics={len(self.final_metrics)}, trajectory_metrics={self.trajectory_metrics})")


def _clean(arr):
    a = np.asarray(arr, dtype=np.float64)
    out = np.where(np.isfinite(a), a, np.nan).tolist()
    return _none_nan(out)


def _none_nan(x):
    if isinstance(x, list):
        return [_none_nan(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x



def _records(df: pd.DataFrame) -> list[dict]:
    return [to_jsonable(r) for r in df.to_dict(orient="records")]


__all__ = ["compare", "ComparisonResult", "bootstrap_interval", "t_interval", "mean_interval",
           "wilson_interval", "clopper_pearson_interval", "INTERVAL_METHODS", "MIN_BOOTSTRAP_N",
           "BOOTSTRAP_METHOD"]

"""Comparison of fitted runs by PSIS-LOO (ArviZ), with unreliable estimates named."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from bayestensor.results import arviz_adapter

#: Pareto shape above which the importance-sampling LOO estimate of an observation is not
#: reliable with many draws (Vehtari et al., 2024, JMLR 25(72): 0.7 from S = 2154 draws on);
#: :func:`pareto_k_limit` gives the stricter limit of smaller runs.
PARETO_K_LIMIT = 0.7


def pareto_k_limit(num_draws: int) -> float:
    """The sample-size dependent Pareto-k limit ``min(1 - 1 / log10(S), 0.7)`` of Vehtari et
    al. (2024), as ArviZ applies it: 0.62 for 400 draws, 0.7 from about 2,150 on."""
    return min(1.0 - 1.0 / np.log10(max(num_draws, 11)), PARETO_K_LIMIT)


#: Fewest draws of a run for PSIS-LOO: its Pareto fit uses the largest fifth of the
#: importance weights of small runs and needs at least 5 of them (Vehtari et al., 2024);
#: ArviZ 1.x refuses fewer, ArviZ 0.2x would fit fewer and return unreliable numbers.
MIN_LOO_DRAWS = 25


class ParetoKWarning(UserWarning):
    """Some observations have a Pareto shape above :data:`PARETO_K_LIMIT`."""


def _check_runs(posteriors) -> None:
    if not isinstance(posteriors, dict) or len(posteriors) < 2:
        got = len(posteriors) if isinstance(posteriors, dict) else type(posteriors).__name__
        raise ValueError(f"posteriors: expected a dict of at least two named posteriors, got {got}")
    for name, post in posteriors.items():
        if not hasattr(post, "to_arviz"):
            raise TypeError(f"posteriors[{name!r}]: expected a Posterior, got {type(post).__name__}")
        draws = post.num_chains * post.num_draws
        if draws < 2:
            raise ValueError(f"posteriors[{name!r}]: a {post.method} run of one draw has no "
                             "posterior spread, so LOO does not apply; fit it with a sampler "
                             "(sghmc, nuts), svgd or vi")
        if draws < MIN_LOO_DRAWS:
            raise ValueError(f"posteriors[{name!r}]: {draws} draws; PSIS-LOO needs at least "
                             f"{MIN_LOO_DRAWS} (its Pareto fit takes the largest fifth of the "
                             "importance weights, at least 5): draw more samples or particles")


def _observed(name, data) -> np.ndarray:
    if not arviz_adapter.has_group(data, "observed_data"):
        raise ValueError(f"posteriors[{name!r}]: no log-likelihood (the model or its data is not "
                         "known; fit a built-in model, or pass a Pyro model to fit)")
    group = arviz_adapter.group(data, "observed_data")
    return np.concatenate([np.asarray(group[v]).ravel() for v in group.data_vars])


def compare_runs(posteriors: dict, prepared: dict | None = None) -> pd.DataFrame:
    """Rank runs of one data set by their expected log predictive density (PSIS-LOO).

    Parameters
    ----------
    posteriors : dict of str to Posterior
        Two or more runs (formats, priors, methods) fitted to the same observations.
    prepared : dict of str to (ArviZ data, LooResult), optional
        For some of the runs, what was already computed from them: ``post.to_arviz()`` (with
        its log-likelihood) and its pointwise PSIS-LOO
        (:func:`~bayestensor.results.arviz_adapter.loo`), reused instead of computed again;
        the report's LOO section passes its run's.

    Returns
    -------
    pandas.DataFrame
        ``az.compare``'s table (``elpd_loo``, ``p_loo``, ``elpd_diff``, ``weight``, ``se``,
        ``dse``, ...; best first, log scale: higher is better) plus ``pareto_k_bad``: the
        observations whose LOO estimate is unreliable (Pareto k above ``PARETO_K_LIMIT``).

    Warns
    -----
    ParetoKWarning
        Naming every run with unreliable observations and how many.

    Raises
    ------
    ValueError
        Fewer than two runs, a run without a log-likelihood, or runs of different data.
    """
    _check_runs(posteriors)
    prepared = prepared or {}
    data = {name: prepared[name][0] if name in prepared else post.to_arviz()
            for name, post in posteriors.items()}
    first_name, first = None, None
    for name, d in data.items():
        obs = _observed(name, d)
        if first is None:
            first_name, first = name, obs
        elif obs.shape != first.shape or not np.allclose(obs, first, rtol=1e-6, atol=1e-9):
            raise ValueError(f"posteriors: runs {first_name!r} and {name!r} were fitted to "
                             "different observations; LOO compares runs of the same data")
    bad = {}
    with warnings.catch_warnings():
        # ArviZ's generic Pareto-k warning is replaced by one naming the runs below.
        warnings.filterwarnings("ignore", message=".*Pareto.*")
        loos = {name: prepared[name][1] if name in prepared else arviz_adapter.loo(d)
                for name, d in data.items()}  # once per run
        for name, result in loos.items():
            limit = pareto_k_limit(posteriors[name].num_chains * posteriors[name].num_draws)
            bad[name] = int(np.sum(result.pareto_k > limit))
        table = arviz_adapter.compare(loos)
    table["pareto_k_bad"] = [bad[name] for name in table.index]
    flagged = {name: n for name, n in bad.items() if n}
    if flagged:
        listing = ", ".join(f"{name!r}: {n}" for name, n in flagged.items())
        warnings.warn(f"PSIS-LOO is unreliable for some observations (Pareto k above "
                      f"min(1 - 1/log10(draws), {PARETO_K_LIMIT})): {listing}; compare those runs with care (more draws, "
                      "or K-fold cross-validation)", ParetoKWarning, stacklevel=2)
    return table

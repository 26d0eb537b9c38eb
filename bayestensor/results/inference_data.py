"""The ArviZ groups of a posterior: samples, statistics, pointwise log-likelihood, data.

Built-in models score their observations vectorized, in data units; a user's Pyro model is
traced draw by draw (:mod:`bayestensor.results.pointwise`). The groups are handed to
:func:`bayestensor.results.arviz_adapter.build_groups`, the one place that builds ArviZ
objects for either ArviZ major version.
"""

from __future__ import annotations

import numpy as np
import torch

from bayestensor.results import pointwise

#: Sample statistics whose negative is ArviZ's ``lp`` (the log density of each draw).
NEGATED_LP = ("potential",)
#: Sample statistics that are ArviZ's ``lp`` as they are.
LP = ("log_joint", "log_density")
#: Methods whose run stops at the first non-finite step and keeps only the draws before it,
#: so none of their kept draws diverged (``diverging`` is all False, stated, not missing).
STOPS_AT_DIVERGENCE = ("sghmc", "svgd")


def sample_stats(stats: dict, info: dict, shape: tuple[int, int], method: str = "") -> dict:
    """Per-draw statistics ``(chain, draw)`` with ``lp`` and, where known, ``diverging``:
    NUTS's divergent transitions, all False for SGHMC and SVGD (see ``STOPS_AT_DIVERGENCE``)."""
    out = {k: v.double().cpu().numpy() for k, v in stats.items() if tuple(v.shape) == shape}
    for name in NEGATED_LP:
        if name in out:
            out["lp"] = -out[name]
    for name in LP:
        if name in out:
            out["lp"] = out.pop(name)
    draws = info.get("diverging_draws")
    if isinstance(draws, list) and len(draws) == shape[0]:
        diverging = np.zeros(shape, dtype=bool)
        for chain, idx in enumerate(draws):
            diverging[chain, [i for i in idx if 0 <= int(i) < shape[1]]] = True
        out["diverging"] = diverging
    elif method in STOPS_AT_DIVERGENCE:
        out["diverging"] = np.zeros(shape, dtype=bool)
    return out


def _by_chain(value: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    return value.detach().double().cpu().numpy().reshape(shape + tuple(value.shape[1:]))


def data_groups(post, *, posterior_predictive: bool = False, model=None, model_args=(),
                model_kwargs=None, seed: int = 0, log_likelihood: bool = True) -> tuple[dict, dict]:
    """``log_likelihood``, ``observed_data`` (and ``posterior_predictive``) groups and dims.

    ``post`` is a :class:`~bayestensor.results.posterior.Posterior`; ``model`` a Pyro model
    with ``model_args`` / ``model_kwargs`` for a posterior without a built-in model. Returns
    ``({group: {var: array}}, {group: {var: dims}})``; both empty when there is no model
    or ``log_likelihood`` is false. A Pyro model's ``pyro.deterministic`` sites, computed per
    draw on the same pass, come as the extra group ``deterministic``, for the posterior.
    """
    if not log_likelihood:
        return {}, {}
    shape = (post.num_chains, post.num_draws)
    flat = post.flat_samples()
    builtin = post.model if hasattr(post.model, "pointwise_log_likelihood") else None
    if builtin is not None and builtin.has_data:
        site = builtin.observed_site
        observed = {site: builtin.observed_data()}
        log_lik = {site: builtin.pointwise_log_likelihood(flat)}
        dims = builtin.arviz_dims()
        obs_dims = {site: dims[site]}
        ll_dims = {site: ["obs"]}
        derived = {}
    elif model is not None:
        log_lik, observed, derived = pointwise.pyro_log_likelihood(model, flat, model_args,
                                                                   model_kwargs)
        obs_dims, ll_dims = {}, {}
    else:
        return {}, {}
    groups = {"log_likelihood": {k: _by_chain(v, shape) for k, v in log_lik.items()},
              "observed_data": {k: v.detach().cpu().numpy() for k, v in observed.items()}}
    if derived:
        groups["deterministic"] = {k: _by_chain(v, shape) for k, v in derived.items()}
    dims = {"log_likelihood": ll_dims, "observed_data": obs_dims}
    if posterior_predictive:
        if builtin is not None and model is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                new = {site: builtin.observation_distribution(flat).sample()}
        else:
            new = pointwise.pyro_predictive(model, flat, list(observed), model_args,
                                            model_kwargs, seed)
        groups["posterior_predictive"] = {k: _by_chain(v, shape) for k, v in new.items()}
        dims["posterior_predictive"] = obs_dims
    return groups, dims


def posterior_dims(post) -> dict:
    """Named axes of the posterior sites (built-in models; an axis whose size disagrees with
    another axis of the same name is left to ArviZ's default name)."""
    if not hasattr(post.model, "arviz_dims"):
        return {}
    sizes: dict[str, int] = {}
    dims = {}
    for site, names in post.model.arviz_dims().items():
        if site not in post.samples:
            continue
        shape = tuple(post.samples[site].shape[2:])
        if len(names) != len(shape) or any(sizes.get(n, s) != s for n, s in zip(names, shape)):
            continue
        sizes.update(zip(names, shape))
        dims[site] = list(names)
    return dims

"""Pointwise log-likelihood and posterior predictive draws of any Pyro model, draw by draw.

A built-in model scores its observations in one vectorized pass
(``BayesModel.pointwise_log_likelihood``); a user's Pyro model is traced once per posterior
draw with its latent sites fixed at the draw, as ArviZ's ``from_pyro`` does with a vectorized
trace. The per-draw loop needs nothing of the model beyond running it once, so models that
cannot be vectorized over draws work too.
"""

from __future__ import annotations

import torch
from pyro import poutine


def _trace(model, args, kwargs, draw: dict):
    return poutine.trace(poutine.condition(model, data=draw)).get_trace(*args, **kwargs)


def _check_full_data(trace) -> None:
    """Refuse a trace whose plates sub-sample the data (the scores would be of a subset)."""
    for name, node in trace.nodes.items():
        fn = node.get("fn")
        if node["type"] == "sample" and type(fn).__name__ == "_Subsample":
            if fn.subsample_size is not None and int(fn.subsample_size) < int(fn.size):
                raise ValueError(f"model: plate {name!r} sub-samples {int(fn.subsample_size)} of "
                                 f"{int(fn.size)} data points; the pointwise log-likelihood "
                                 "needs every point (remove subsample_size for this call)")


def _is_deterministic(node) -> bool:
    """A ``pyro.deterministic`` site: an observed, masked Delta that Pyro marks as such."""
    return bool((node.get("infer") or {}).get("_deterministic"))


def _observed_sites(trace, latent: set) -> list[str]:
    return [name for name, node in trace.nodes.items()
            if node["type"] == "sample" and node["is_observed"] and name not in latent
            and not _is_deterministic(node)]


def _deterministic_sites(trace) -> list[str]:
    return [name for name, node in trace.nodes.items()
            if node["type"] == "sample" and _is_deterministic(node)]


def _draws(samples: dict):
    """Yield ``{site: value}`` per draw of flat samples ``{site: (S, ...)}``."""
    n = next(iter(samples.values())).shape[0]
    for i in range(n):
        yield {k: v[i] for k, v in samples.items()}


def pyro_log_likelihood(model, samples: dict, args=(), kwargs=None) -> tuple[dict, dict, dict]:
    """Log-likelihood of every observed site per draw, the observed values, and the values of
    the model's ``pyro.deterministic`` sites per draw (computed on the same pass).

    Parameters
    ----------
    model : callable
        A Pyro model with its observations passed as ``obs=``.
    samples : dict of str to tensor
        Latent site values with one flat leading draw dimension ``S``.
    args, kwargs
        The model's arguments (the data it conditions on).

    Returns
    -------
    log_lik : dict of str to tensor
        ``{site: (S, *batch_shape)}``: ``fn.log_prob(value)`` of each observed site (an event
        dimension is summed, as in Pyro).
    observed : dict of str to tensor
        ``{site: value}`` of each observed site (``pyro.deterministic`` sites, which Pyro
        records as masked observations, are not among them).
    deterministic : dict of str to tensor
        ``{site: (S, *shape)}``: the value of each ``pyro.deterministic`` site per draw.

    Raises
    ------
    ValueError
        When the model has no observed site or sub-samples its data.
    """
    kwargs = kwargs or {}
    latent = set(samples)
    scores: dict[str, list] = {}
    observed: dict[str, torch.Tensor] = {}
    derived: dict[str, list] = {}
    with torch.no_grad():
        for draw in _draws(samples):
            trace = _trace(model, args, kwargs, draw)
            if not observed:
                _check_full_data(trace)
                names = _observed_sites(trace, latent)
                if not names:
                    raise ValueError("model: no observed sample site (pyro.sample(..., obs=...)); "
                                     "nothing to score")
                observed = {k: trace.nodes[k]["value"].detach() for k in names}
                derived = {k: [] for k in _deterministic_sites(trace)}
            for name in observed:
                node = trace.nodes[name]
                scores.setdefault(name, []).append(node["fn"].log_prob(node["value"]).detach())
            for name, values in derived.items():
                values.append(trace.nodes[name]["value"].detach())
    return ({k: torch.stack(v) for k, v in scores.items()}, observed,
            {k: torch.stack(v) for k, v in derived.items()})


def pyro_predictive(model, samples: dict, sites, args=(), kwargs=None, seed: int = 0) -> dict:
    """New values of the observed ``sites`` per draw: ``{site: (S, *shape)}``.

    The latent sites are fixed at each draw and the observed sites are drawn afresh from
    their distributions; the random numbers come from ``seed`` and leave the caller's
    generators as they were.
    """
    kwargs = kwargs or {}
    out: dict[str, list] = {k: [] for k in sites}
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        free = poutine.uncondition(model)
        for draw in _draws(samples):
            trace = _trace(free, args, kwargs, draw)
            for name in out:
                out[name].append(trace.nodes[name]["value"].detach())
    return {k: torch.stack(v) for k, v in out.items()}

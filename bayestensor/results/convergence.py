"""Convergence checks of Markov chains on the quantities a low-rank model identifies.

Most parameters of a low-rank model are not identified: a CP component moves scale between its
factors without changing the tensor, slices swap order or sign between chains, and the
precision of a switched-off slice wanders under its prior. Their R-hat can be 2 on chains whose
every prediction agrees, so a check over the raw sites raises false alarms. The checks here
look at what the likelihood identifies instead: the noise precision, the norm of the low-rank
tensor and a few predicted entries. Both :meth:`Posterior.diagnostics
<bayestensor.results.posterior.Posterior.diagnostics>` and the report's diagnostics section
use them.
"""

from __future__ import annotations

import math

import numpy as np

from bayestensor.results import arviz_adapter

#: Warning thresholds: worst R-hat, and smallest bulk ESS per chain (those of Vehtari et al.
#: 2021, Bayesian Analysis 16(2), for rank-normalized split R-hat, which ArviZ documents).
RHAT_MAX = 1.01
ESS_PER_CHAIN_MIN = 100
#: Predicted entries checked when the caller names none.
N_KEY_ENTRIES = 4
#: Above this R-hat the chains are not slowly mixing but apart (Gelman and Rubin's original
#: 1.1). Below it more draws are the first thing to try (Tucker's 1.015-1.019 in the SGHMC grid
#: fell to 1.007-1.009 at twice the steps, ``docs/benchmarks.md``); IL-2's 2.0-2.3 (NUTS's
#: too) came from chains in different modes, which more draws do not join.
RHAT_APART = 1.1
#: SGHMC chains of a user's model with at most this many parameters that fail their check are
#: pointed to NUTS, whose cost per draw on a model this small is a few gradients.
NUTS_ADVICE_DIM = 200
#: Chains with fewer draws than this that fail their check are told to draw more before
#: anything else: the test suite's runs of 10-100 draws per chain read R-hat 1.5-3.3, too
#: few draws to say whether chains are apart or only slow.
SHORT_RUN_DRAWS = 500


def convergence_advice(max_rhat: float, draws: int | None = None) -> str:
    """What to do about chains that did not converge, by how far apart they are.

    Parameters
    ----------
    max_rhat : float
        The worst R-hat of the identified quantities.
    draws : int, optional
        Draws per chain. Below :data:`SHORT_RUN_DRAWS`: draw more, whatever the R-hat.

    Returns
    -------
    str
        For few draws, or R-hat up to :data:`RHAT_APART`: draw more (the chains mix, slowly,
        or too few draws to tell). Above it: the chains sit in different regions, which more
        draws rarely join.
    """
    if draws is not None and draws < SHORT_RUN_DRAWS:
        return (f"draw more samples: {draws} draws per chain are too few to tell chains that "
                "mix slowly from chains apart")
    if math.isfinite(max_rhat) and max_rhat > RHAT_APART:
        return ("the chains sit in different regions (R-hat above "
                f"{RHAT_APART}), which more draws rarely join: compare them in the trace "
                "plots and the rank posterior, and do not read the pooled draws as one "
                "posterior")
    return "draw more samples or chains"


def monitored_entries(posterior) -> dict | None:
    """The monitored entries' part of the last check of a run that drew until converged
    (:mod:`~bayestensor.infer.stopping`: some 1,000 predicted entries, held to their own
    R-hat), when that check saw every draw kept; ``None`` otherwise.

    The report's and the command line's own check reads a few entries only, so chains apart on
    entries it does not read would go unsaid there while the run stopped because of them.

    Returns
    -------
    dict or None
        ``max_rhat``, ``min_ess_bulk``, ``rhat_threshold``, ``count`` (entries),
        ``converged`` (the check's verdict on them) and ``noun``, what they are in words
        (``"entries"``; a regression's ``"predictions at training inputs"``).
    """
    checks = posterior.info.get("convergence_checks")
    last = checks[-1] if checks else None
    # runs saved before the check recorded its entries' verdict keep the former report
    if last is None or "entries_converged" not in last or last["draws"] != posterior.num_draws:
        return None
    inputs = hasattr(posterior.model, "monitor_inputs")  # what fixed_entries gave the check
    return {"max_rhat": last["entries_max_rhat"], "min_ess_bulk": last["entries_min_ess_bulk"],
            "rhat_threshold": last["entries_rhat_threshold"], "count": last["entries_count"],
            "converged": last["entries_converged"],
            "noun": "predictions at training inputs" if inputs else "entries"}


def entries_words(entries: dict) -> str:
    """"max R-hat 1.182 (wanted <= 1.015) over the 1,000 monitored entries", of
    :func:`monitored_entries`."""
    return (f"max R-hat {entries['max_rhat']:.3f} (wanted <= {entries['rhat_threshold']}) and "
            f"min bulk ESS {entries['min_ess_bulk']:.0f} over the {entries['count']:,} monitored "
            f"{entries['noun']}")


def worst_rhat(max_rhat: float, entries: dict | None) -> float:
    """The R-hat the advice reads: the key quantities', or the monitored entries' where those
    (:func:`monitored_entries`) are worse."""
    return max_rhat if entries is None else max(max_rhat, entries["max_rhat"])


def unconverged_message(posterior) -> str | None:
    """What a Markov-chain run whose chains failed their check should be told, or ``None``.

    The check is the run's last one when it drew until converged
    (``info["convergence_checks"]``, which also covers the monitored entries), else
    :meth:`~bayestensor.results.posterior.Posterior.diagnostics`. A single chain, or a run
    that is not a Markov chain, gets ``None``: it has no such check to fail; so does a run
    with draws at a saturated transform, which :func:`saturated_message` tells instead.
    """
    if not posterior.is_markov_chain or posterior.num_chains < 2:
        return None
    if posterior.info.get("saturated_draws"):  # saturated_message says what matters more
        return None
    checks = posterior.info.get("convergence_checks")
    check = checks[-1] if checks else posterior.diagnostics()
    if check["converged"]:
        return None
    ess_min = ESS_PER_CHAIN_MIN * posterior.num_chains
    over = "identified quantities" if hasattr(posterior.model, "low_rank") else "sites"
    found = [f"max R-hat {check['max_rhat']:.3f} (wanted <= {RHAT_MAX}) and min bulk ESS "
             f"{check['min_ess_bulk']:.0f} (>= {ess_min}) over the {over}"]
    entries = monitored_entries(posterior) if checks else None
    if entries is not None:
        found.append(entries_words(entries))
    advice = (convergence_advice(worst_rhat(check["max_rhat"], entries), posterior.num_draws)
              + _memory_advice(check) + _small_model_advice(posterior))
    symmetry = ("" if over != "sites" else
                " (a site that a symmetry of the model leaves free, such as the sign, scale "
                "or order of low-rank factors, can disagree between chains whose predictions "
                "agree: check what the data identify, e.g. a pyro.deterministic site, with "
                "Posterior.diagnostics(var_names=[...]))")
    return (f"{posterior.method}: the {posterior.num_chains} chains did not pass their "
            f"convergence check after {posterior.num_draws:,} draws each: "
            f"{'; '.join(found)}{symmetry}. Advice: {advice}. "
            "Posterior.diagnostics() and the report list each quantity")


def _memory_advice(check: dict) -> str:
    """For a run whose draws stopped at the memory bound of drawing until converged."""
    if check.get("stopped") != "memory":
        return ""
    return (f"; the draws stopped there, holding {check['kept_bytes'] / 2 ** 30:.2f} GiB, "
            "because more would pass the memory bound of drawing until converged "
            "(bayestensor.infer.stopping.MAX_KEPT_BYTES): thin=2 spans twice the steps in that "
            "memory, and a num_samples given is drawn as asked")


def _small_model_advice(posterior) -> str:
    """For SGHMC on a user's model of at most ``NUTS_ADVICE_DIM`` parameters: NUTS's words."""
    if posterior.method != "sghmc" or posterior.model is not None:
        return ""
    size = sum(v[0, 0].numel() for v in posterior.samples.values())
    if size > NUTS_ADVICE_DIM:
        return ""
    return (f"; for a model of {size} parameters on its full data, method='nuts' (Pyro's "
            "NUTS: paths of adaptive length and a Metropolis test) mixes in far fewer draws: "
            "where a scale's curvature changes by orders of magnitude over its posterior, "
            "SGHMC's fixed step must suit the steepest part (the non-centred eight schools: "
            "NUTS 4 x 500 draws, R-hat 1.007; SGHMC 4 x 4,000, 1.009-1.12)")


def saturated_message(posterior) -> str | None:
    """What a run with draws where a site's transform saturates should be told, or ``None``.

    ``info["saturated_draws"]`` (``{site: count}``, recorded by the run) counts the draws whose
    unconstrained value the constrained one no longer represents in float: a positive site
    rounded to 0, a probability to 0 or 1. Either the posterior puts mass out there (a
    Beta(0.02, 0.02) puts a sixth of it below float32's smallest number), or, far more often,
    a chain ran down a funnel or onto a boundary where the density rises without bound and
    stayed (the neck of a hierarchical model, whose scale takes its group effects with it).
    R-hat cannot tell: draws rounded to one value do not vary.
    """
    saturated = posterior.info.get("saturated_draws")
    if not saturated:
        return None
    total = posterior.num_chains * posterior.num_draws
    counts = ", ".join(f"{name!r} in {count:,}" for name, count in saturated.items())
    return (f"{posterior.method}: of {total:,} draws, site {counts} sit where the site's "
            "transform saturates in float (a positive value rounded to 0, a probability to 0 "
            "or 1), where R-hat cannot see whether the chains mix. Unless the posterior "
            "really puts mass there, a chain or particle went down a funnel or onto a "
            "boundary where the density rises without bound and stayed, and those draws are "
            "not the posterior's. For a hierarchical scale, write the group effects "
            "non-centred (effect = loc + scale * z with z ~ Normal(0, 1), or "
            "pyro.poutine.reparam with LocScaleReparam), or give the scale a prior that keeps "
            "it off 0")


def key_indices(posterior, heldout: dict | None, k: int = N_KEY_ENTRIES) -> np.ndarray | None:
    """Indices (completion) or inputs (regression) of the few predicted entries that are checked.

    The first ``k`` of ``heldout["indices"]`` or ``heldout["inputs"]`` when given; otherwise
    :func:`fixed_entries` (the same entries or training inputs on every call); ``None`` for a
    Pyro model.
    """
    if heldout is not None and "indices" in heldout:
        return np.asarray(heldout["indices"][:k])
    if heldout is not None and "inputs" in heldout:
        return np.asarray(heldout["inputs"][:k])
    return fixed_entries(posterior.model, k)


def fixed_entries(model, k: int) -> np.ndarray | None:
    """``k`` index tuples of a tensor model drawn at a fixed seed (the same on every call), or
    every entry once where the tensor has at most ``k``; for a regression, ``k`` of its
    training inputs (``monitor_inputs``: its predictions there are what the check reads);
    ``None`` for a Pyro model."""
    monitor_inputs = getattr(model, "monitor_inputs", None)
    if monitor_inputs is not None:
        return monitor_inputs(k)
    if model is not None and hasattr(model, "shape"):
        shape = tuple(model.shape)
        if math.prod(shape) <= k:
            return np.indices(shape).reshape(len(shape), -1).T
        rng = np.random.default_rng(0)
        return np.stack([rng.integers(0, n, k) for n in shape], 1)
    return None


def key_variables(posterior, heldout: dict | None = None,
                  num_entries: int = N_KEY_ENTRIES) -> dict:
    """Identified quantities whose chains are checked: ``{name: (chain, draw, ...)}``.

    ``noise_precision``; ``tensor_norm``: the Frobenius norm of the low-rank tensor (the
    coefficient tensor for regression), computed from the parameters; ``entry``: a few
    predicted entries (the first ``num_entries`` of :func:`key_indices`). A model that has
    none of them (a plain Pyro model without a ``noise_precision`` site) is checked on every
    site, as ``Posterior.diagnostics`` checks it.
    """
    c, d = posterior.num_chains, posterior.num_draws
    out = {}
    if "noise_precision" in posterior.samples:
        out["noise_precision"] = posterior.samples["noise_precision"].double().numpy().reshape(c, d)
    model = posterior.model
    if model is not None and hasattr(model, "low_rank"):
        norm = model.low_rank(posterior.flat_samples()).norm()
        out["tensor_norm"] = norm.detach().double().numpy().reshape(c, d)
    if model is not None and hasattr(model, "predict_entries"):
        idx = key_indices(posterior, heldout, num_entries)
        if idx is not None:
            out["entry"] = posterior.predict(idx).draws.double().numpy().reshape(c, d, -1)
    return out or {name: value.double().numpy() for name, value in posterior.samples.items()}


def check_chains(data, num_chains: int, var_names=None) -> dict:
    """R-hat and ESS of every variable of an ArviZ object, worst values and a verdict.

    Returns ``{"variables": [{var, max_rhat, min_ess_bulk, min_ess_tail}], "max_rhat",
    "min_ess_bulk", "min_ess_tail", "rhat_threshold", "ess_threshold", "converged"}``:
    ``converged`` is True when the worst R-hat is at most ``RHAT_MAX`` and the smallest bulk
    ESS at least ``ESS_PER_CHAIN_MIN`` per chain (with two chains or more; one chain cannot
    show chains that disagree, so it is never called converged, and ``"note"`` says so).
    """
    rows = arviz_adapter.per_variable(data, var_names)

    def worst(key, fn):
        vals = [r[key] for r in rows if math.isfinite(r[key])]
        return fn(vals) if vals else float("nan")

    max_rhat, min_bulk = worst("max_rhat", max), worst("min_ess_bulk", min)
    ess_min = ESS_PER_CHAIN_MIN * num_chains
    converged = bool(num_chains >= 2 and max_rhat <= RHAT_MAX and min_bulk >= ess_min)
    out = {"variables": rows, "max_rhat": max_rhat, "min_ess_bulk": min_bulk,
           "min_ess_tail": worst("min_ess_tail", min), "rhat_threshold": RHAT_MAX,
           "ess_threshold": ess_min, "converged": converged}
    if num_chains < 2:
        out["note"] = ("one chain: R-hat cannot see chains that disagree, so the run is never "
                       "called converged; fit with num_chains=4 (the default)")
    return out


def check_identified(posterior, heldout: dict | None = None,
                     num_entries: int = N_KEY_ENTRIES) -> tuple[dict, object, dict]:
    """The check of a built-in model's chains on its identified quantities: the arrays of
    :func:`key_variables`, their ArviZ object (for trace and rank plots) and
    :func:`check_chains` of it (every site of a plain Pyro model)."""
    key = key_variables(posterior, heldout, num_entries)
    data = arviz_adapter.to_inference_data(key)
    return key, data, check_chains(data, posterior.num_chains)

"""Options a method leaves ``"auto"`` that depend on the fit, resolved once ``fit`` has
checked its settings, before any work.

A method's option check (:mod:`bayestensor.infer.options`) sees its options alone; what an
``"auto"`` means, or whether a value fits, can also depend on the model and on ``fit``'s
settled sizes. Each method that needs that declares a ``settle(options, plan)`` function here
(``Method.settle``), which gets them in a :class:`FitPlan`, fills its ``"auto"`` options in
place and raises ``ValueError`` naming the option when a value does not fit the sizes.
"""

from __future__ import annotations

import warnings

from dataclasses import dataclass
from typing import Any

import torch

from bayestensor.infer.stopping import auto_max_samples
from bayestensor.models.completion import TensorCompletion, closed_form_vi_runs, default_method


@dataclass(frozen=True)
class FitPlan:
    """``fit``'s settings once checked, as a method's ``settle`` sees them.

    Attributes
    ----------
    model : BayesModel or callable
        The model as given to ``fit``.
    num_samples : int
        Draws per chain (particles for SVGD), the method's default filled in.
    samples_given : bool
        Whether the caller gave ``num_samples``.
    num_chains : int
        Chains (MAP restarts; independent runs for VI and SVGD).
    chain_groups : int or None
        Chain groups run apart (Ray, or independent runs); ``None`` for one local fit.
    batch_size : int or None
        Mini-batch size; ``None`` for full batches.
    device : torch.device or None
        Where the fit computes; ``None`` for the model's device.
    init : str or dict
        ``fit``'s ``init``.
    """

    model: Any
    num_samples: int
    samples_given: bool
    num_chains: int
    chain_groups: int | None
    batch_size: int | None
    device: torch.device | None
    init: Any


def closed_form_vi_applies(model, batch_size, device) -> bool:
    """Whether ``method="vi"`` runs the model's closed-form VI (a built-in completion model
    whose format and prior have one, see
    :func:`bayestensor.models.completion.closed_form_vi_runs`)."""
    if not isinstance(model, TensorCompletion):
        return False
    return closed_form_vi_runs(*_format_and_prior(model), batch_size, device)


def fit_default_method(model, batch_size, device) -> str:
    """``fit``'s method when none is given: a built-in completion model's
    :func:`bayestensor.models.completion.default_method`, ``"map"`` for any other model."""
    if not isinstance(model, TensorCompletion):
        return "map"
    return default_method(*_format_and_prior(model), batch_size, device)


def _format_and_prior(model: TensorCompletion) -> tuple[str, str]:
    prior = model.tensor_prior
    return prior.format_cls.format_name, prior.prior.kind


#: VI options of the stochastic-gradient fit only, which the closed form refuses.
GRADIENT_VI_OPTIONS = ("num_steps", "lr", "num_particles")


def settle_vi(options: dict, plan: FitPlan) -> None:
    """VI's ``init_from="auto"``: the closed form starts at the data-driven starting values,
    the stochastic fit (or any fit from ``init="random"``) at the MAP. Where the closed form
    runs, the stochastic fit's ``GRADIENT_VI_OPTIONS`` are ignored, with a warning.

    From ``init="random"`` the closed-form sweeps prune the small random slices (rank 1 of 2 on
    three 10 x 9 x 8 seeds, where the MAP first found 2 in two), hence the MAP there.
    """
    closed = (options.get("closed_form", "auto") is not False
              and closed_form_vi_applies(plan.model, plan.batch_size, plan.device))
    unused = sorted(set(options) & set(GRADIENT_VI_OPTIONS)) if closed else []
    if unused:  # a warning, not a refusal: the same options fit by gradient on a GPU
        warnings.warn(f"{', '.join(unused)}: the closed-form VI of this model takes no "
                      "gradient steps and ignores them; set closed_form=False for the "
                      "stochastic-gradient fit", UserWarning, stacklevel=4)
    if options.get("init_from", "auto") != "auto":
        return
    random_start = isinstance(plan.init, str) and plan.init == "random"
    options["init_from"] = "init" if closed and not random_start else "map"


def settle_svgd(options: dict, plan: FitPlan) -> None:
    """SVGD's ``init_from="auto"``: the closed-form VI's draws (``"vi"``) where that runs and
    the start is the data-driven one, else the jittered MAP (``"map"``). ``"vi"`` where the
    closed form cannot run is a ``ValueError``, before any work.

    The MAP of a CP completion can fit noise with every slice (pure noise at 20^3, 30%
    observed: rank 8), and particles started there keep those slices (predictions at unseen
    cells with an rms of 0.37 of the data's sd where the truth is 0); the closed-form VI keeps
    no low-rank part there, and on data with structure its draws are as good a start
    (``benchmarks/svgd_start.py``).
    """
    start = options.get("init_from", "auto")
    applies = closed_form_vi_applies(plan.model, plan.batch_size, plan.device)
    if start == "vi" and not applies:
        raise ValueError("init_from: 'vi' starts the particles from the closed-form VI, which "
                         "runs for a TensorCompletion in CP format fitted on full batches on "
                         "the CPU; use 'map' or 'prior' here")
    if start == "auto":
        random_start = isinstance(plan.init, str) and plan.init == "random"
        options["init_from"] = "vi" if applies and not random_start else "map"


def settle_sghmc(options: dict, plan: FitPlan) -> None:
    """SGHMC's ``max_samples``: ``"auto"`` becomes a cap (drawing until converged, see
    :func:`~bayestensor.infer.stopping.auto_max_samples`) or ``None``; chain groups run each
    group's draws as given (no group sees all the chains). A number must be at least
    ``num_samples``."""
    cap = options.get("max_samples", "auto")
    if isinstance(cap, str):  # "auto", the only string the option check lets through
        options["max_samples"] = None if plan.chain_groups is not None else auto_max_samples(
            plan.model, plan.num_samples if plan.samples_given else None, plan.num_samples,
            plan.num_chains)
    elif cap is not None and cap < plan.num_samples:
        raise ValueError(f"max_samples: expected at least num_samples ({plan.num_samples}), "
                         f"got {cap}")

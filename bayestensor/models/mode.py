"""The posterior mode of a built-in model from a start, by plain Adam on its own log joint.

A model uses this to offer a MAP start (``TensorRegression.init_values(init="map")``) without
depending on :mod:`bayestensor.infer` (which depends on the models). The optimizer is the one
of ``fit(method="map")`` on the full data: Adam on unconstrained values, the learning rate
decayed 10x over the run, stopping when the objective stalls; from the same start it reaches
the same point.
"""

from __future__ import annotations

import math

import pyro
import torch
from pyro import poutine
from torch.distributions import biject_to

#: Adam's learning rate at the first step.
LEARNING_RATE = 0.02
#: The learning rate falls by this factor over ``num_steps``.
LR_DECAY = 0.1
#: A step counts as progress when it raises the log joint by this much, relative.
TOLERANCE = 1e-7
#: Steps in a row without progress after which the search stops.
PATIENCE = 50


def site_transforms(model, start: dict) -> dict:
    """Map from each site in ``start`` to the bijection from real space onto its support."""
    with pyro.validation_enabled(False):
        trace = poutine.trace(poutine.condition(model.pyro_model, data=start)).get_trace(
            *model.model_args())
    return {name: biject_to(trace.nodes[name]["fn"].support) for name in start}


def posterior_mode(model, start: dict, num_steps: int = 2000) -> dict:
    """Maximize the model's log joint (no log-Jacobian) over its latent sites from ``start``.

    Parameters
    ----------
    model : BayesModel
        A built-in model with bound data and a fast path (``fast_log_joint``).
    start : dict
        Constrained starting value of every latent site.
    num_steps : int
        Adam steps at most.

    Returns
    -------
    dict
        Constrained values at the mode, with the shapes of ``start``.

    Raises
    ------
    FloatingPointError
        When the log joint stops being finite (a step too large for the data's scale).
    """
    transforms = site_transforms(model, start)
    free = {name: t.inv(torch.as_tensor(start[name], dtype=torch.get_default_dtype()))
            .unsqueeze(0).detach().requires_grad_(True) for name, t in transforms.items()}
    opt = torch.optim.Adam(list(free.values()), lr=LEARNING_RATE)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: LR_DECAY ** (t / num_steps))
    best, stall = -math.inf, 0
    for step in range(num_steps):
        opt.zero_grad()
        with pyro.validation_enabled(False):
            obj = model.fast_log_joint(_constrain(transforms, free), {})
        if not bool(torch.isfinite(obj).all()):
            raise FloatingPointError(f"posterior_mode: log joint is not finite at step {step}")
        (-obj.sum()).backward()
        opt.step()
        sched.step()
        total = float(obj.detach().sum())
        if not math.isfinite(best) or total > best + TOLERANCE * abs(best):
            best, stall = total, 0
        else:
            stall += 1
            if stall >= PATIENCE:
                break
    with torch.no_grad():
        return {name: v[0] for name, v in _constrain(transforms, free).items()}


def _constrain(transforms: dict, free: dict) -> dict:
    return {name: transforms[name](u) for name, u in free.items()}

"""A cap on SGHMC's step where a Gaussian prior alone makes it unstable.

The entries of a built-in low-rank tensor have Gaussian priors whose precision is a product of
slice precisions (a Tucker core entry: one per mode; an inner TT core entry: two). Those
precisions are redrawn exactly every few steps (:mod:`~bayestensor.infer.gibbs`), and one
redraw can raise an entry's prior curvature by orders of magnitude, while SGHMC's mass is fixed
at the end of burn-in. Where ``lr * P * k`` (step, preconditioner, prior curvature ``k``)
passes about 4 the update is unstable for that entry and its oscillation grows each step.
Seen on a Tucker regression (the ``cp3`` problem of ``benchmarks/regression_mixing.py``, seed
0, SGHMC from the starting values): a precision redraw put a core entry's prior precision at
1.6e8, and in two steps the entry went 0.0008, -0.010, 0.13 (prior energy 47, 8,057, 569,828
nats) before the log density overflowed at step 2,034.

:class:`PriorStepCap` lowers ``P``, each step, to ``PRIOR_STEP_MAX / (lr * k)`` for the
entries where ``lr * P * k`` exceeds ``PRIOR_STEP_MAX`` (1): the update on the prior's
harmonic part is then stable whatever the velocity, and samples it with a 36% variance excess
(the discrete Lyapunov equation at ``h = 1``; 36-375% between ``h`` 1 and 3 uncapped). Where
no entry passes, the chain is unchanged to the bit. The cap is a position-dependent mass,
which SGHMC's guarantees do not cover; it trades that, on entries the prior holds at a
near-zero scale, for a run that does not overflow.
Written here because no library caps a sampler's step by a known prior curvature.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.distributions.transforms import identity_transform

from bayestensor.infer.gibbs import _elementwise
from bayestensor.infer.log_density import LogDensity

#: The largest ``lr * P * k`` the cap allows: stable (the limit is ``2 (2 - friction)``), and
#: about 12 times the step the adapted chains take on their stiffest well-measured entries.
PRIOR_STEP_MAX = 1.0


class PriorStepCap:
    """Caps the diagonal preconditioner where an entry's Gaussian prior makes a step unstable.

    Parameters
    ----------
    target : LogDensity
        The model's batched log density.
    prior_precisions : callable
        ``values -> {site: precision}``: for batched constrained values (``(C, ...)`` per
        site), the Gaussian prior precision of every entry of the sites it names (a built-in
        model's :meth:`~bayestensor.models.base.BayesModel.prior_precisions`). Sites that
        are not sampled as themselves are left out.

    """

    def __init__(self, target: LogDensity,
                 prior_precisions: Callable[[dict], dict[str, torch.Tensor]]):
        self.target = target
        self.prior_precisions = prior_precisions
        self.spans = {s.name: slice(s.offset, s.offset + s.size) for s in target.sites
                      if _elementwise(s.transform) == identity_transform}
        self._caps = 0  # a tensor once counting: read back only when asked (no sync a step)

    def curvature(self, theta: torch.Tensor) -> torch.Tensor:
        """``(C, D)`` prior curvature of each entry at ``theta``, 0 where none is known."""
        curvature = torch.zeros_like(theta)
        precisions = self.prior_precisions(self.target.constrain(theta))
        for name, precision in precisions.items():
            span = self.spans.get(name)
            if span is not None:
                curvature[:, span] = precision.reshape(theta.shape[0], -1).to(theta)
        return curvature

    def apply(self, precond: torch.Tensor, lr: torch.Tensor | float,
              theta: torch.Tensor) -> torch.Tensor:
        """The preconditioner to step with: ``precond`` where ``lr * precond * k`` is at most
        ``PRIOR_STEP_MAX``, ``PRIOR_STEP_MAX / (lr * k)`` where it is more (``(C, D)``)."""
        limit = PRIOR_STEP_MAX / (lr * self.curvature(theta))
        capped = precond > limit
        self._caps = self._caps + capped.sum()
        return torch.where(capped, limit, precond)

    @property
    def caps(self) -> int:
        """Entry-steps at which the cap bound, over the run so far."""
        return int(self._caps)

"""Metropolis moves along a rank slice's scale, inside SGHMC.

A rank slice whose data barely constrain it sits in a funnel: given its factor entries, its
precision is tight (``Gamma(a + m / 2, .)`` over ``m`` entries), and given its precision, so
are the entries. Small gradient steps and exact redraws of the precision then move along the
funnel slowly, by alternating between two tight conditionals. In
``benchmarks/sghmc_mixing.py`` one of four chains of the 30^3 rank-3 CP case kept a switched-off
slice half awake for hundreds of draws, and a held-out entry's R-hat was 1.033-1.037 with
bulk ESS above 650: the chains agreed on everything but the slow funnel coordinate.

The move here goes along the funnel in one step: every entry of slice ``k`` (its factor
columns, its slab of a Tucker core, its bond of TT cores) is multiplied by ``g`` and its
slice variance by ``g^2``, so the standardized entries (entry / slice sd) stay as they are.
This is the ancillary half of the interweaving strategy of Yu & Meng ("To center or not to
center", JCGS 2011), and a group move of Liu & Sabatti ("Generalised Gibbs sampler and
multigrid Monte Carlo", JASA 2000), made a Metropolis step: ``log g ~ Normal(0, SCALE_STEP^2)``
(symmetric), accepted with probability ``min(1, p(x') |J| / p(x))``, where ``p`` is the
model's log joint on constrained values and ``J = g^m * g^(2 / e)`` the Jacobian of the map
(``m`` scaled entries; the hyper site ``h`` with ``variance = h^e`` goes to ``h g^(2 / e)``).
It leaves the posterior invariant exactly, and the velocities, which do not depend on the
positions, untouched, as an exact Gibbs redraw does.

Each chain moves one slice per rank dimension, chosen at random, every ``SCALE_MOVE_EVERY``
SGHMC steps: two batched evaluations of the log joint (current and proposed), no gradient.
Full-batch only: on mini-batches the log joint would be noisy and the step not exact.
"""

from __future__ import annotations

import torch

from bayestensor.infer.log_density import LogDensity
from bayestensor.priors.low_rank import SliceGroup

#: SGHMC steps between scale moves.
SCALE_MOVE_EVERY = 4
#: Standard deviation of the proposal's ``log g``: the slice variance moves by a factor of
#: about ``exp(2 * 0.5)``, far along the funnel, while a slice the data need rejects it.
SCALE_STEP = 0.5


class SliceScaleMoves:
    """Scale moves of every rank slice of a low-rank prior (see the module docstring).

    Parameters
    ----------
    target : LogDensity
        The log density SGHMC samples; the groups' sites must be among its sites.
    groups : list of SliceGroup
        One per rank dimension (:meth:`LowRankPrior.slice_groups`).
    step : float
        Proposal sd of ``log g``.

    Raises
    ------
    ValueError
        A site that is not one of ``target``'s, or a non-positive ``step``.
    """

    def __init__(self, target: LogDensity, groups: list[SliceGroup], step: float = SCALE_STEP):
        names = set(target.site_names)
        for group in groups:
            for site in (group.hyper, *(s for s, _ in group.members)):
                if site not in names:
                    raise ValueError(f"scale moves: {site!r} is not a site of the model; its "
                                     f"sites are {sorted(names)}")
        if not step > 0:
            raise ValueError(f"step: expected a positive number, got {step}")
        self.target, self.groups, self.step = target, list(groups), float(step)
        self.proposed = 0
        self.accepted = 0

    @property
    def acceptance(self) -> float | None:
        """Fraction of the proposals accepted so far (``None`` before the first)."""
        return self.accepted / self.proposed if self.proposed else None

    def move(self, theta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``theta`` ``(C, D)`` after one move per chain and rank dimension."""
        for group in self.groups:
            theta = self._move_group(theta, group, generator)
        return theta

    def _move_group(self, theta, group: SliceGroup, generator) -> torch.Tensor:
        chains = theta.shape[0]
        values = self.target.constrain(theta)
        slice_of = torch.randint(0, group.size, (chains,), generator=generator,
                                 device=theta.device)
        log_g = self.step * torch.randn(chains, generator=generator, dtype=theta.dtype,
                                        device=theta.device)
        chosen = torch.nn.functional.one_hot(slice_of, group.size).to(theta.dtype)
        factor = (chosen * log_g[:, None]).exp()  # (C, R): g at the chosen slice, 1 elsewhere
        proposal = dict(values)
        for site, axis in group.members:
            value = values[site]
            shape = [chains] + [1] * (value.ndim - 1)
            shape[axis + 1] = group.size
            proposal[site] = value * factor.reshape(shape)
        proposal[group.hyper] = values[group.hyper] * factor.pow(2.0 / group.exponent)
        log_jacobian = (group.count + 2.0 / group.exponent) * log_g
        both = {k: torch.cat([values[k], proposal[k]]) for k in values}
        with torch.no_grad():
            log_p = self.target.log_joint(both)
        ratio = log_p[chains:] - log_p[:chains] + log_jacobian
        uniform = torch.rand(chains, generator=generator, dtype=theta.dtype,
                             device=theta.device)
        accept = torch.isfinite(ratio) & (uniform.log() < ratio)
        self.proposed += chains
        self.accepted += int(accept.sum())
        if not bool(accept.any()):
            return theta
        moved = self.target.unconstrain(proposal)
        ok = accept[:, None] & torch.isfinite(moved).all(-1, keepdim=True)
        return torch.where(ok, moved, theta)

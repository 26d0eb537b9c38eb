"""Whether an optimizer's end point is a mode: not a spike, nor a point on a rising ridge.

:func:`spiked_sites`: a coordinate whose Laplace sd is within a few float spacings of its value
(the float cannot resolve a mode that narrow). :func:`rising_sites`: the density still rises
toward the edge of a positive or bounded site along a ridge, as follows.

An optimizer that stops is not at a mode when the density goes on rising along a ridge it
moves along too slowly to follow: the centred eight schools' density rises without bound as
the group scale ``tau`` goes to 0 with every group effect following the mean, and Adam stopped
there at ``tau = 1.5e-4`` on one seed (``tau = 4e-8`` on others, which the spike test of
:func:`spiked_sites` catches), calling it converged. Along the
ridge no single coordinate's gradient shows the rise: the effects must shrink with ``tau``.

The profile shows it: for a coordinate of a site off the real line that sits far out
(``|u| > EDGE_UNITS`` unconstrained: a scale below e^-3 or above e^3 of its unit, a
probability within 5% of 0 or 1), the MAP's objective (the log joint of the constrained values,
no log-Jacobian) is maximized over all other coordinates twice, once with the coordinate where
it is and once moved ``PROBE_STEP`` further out. A mode loses along that move; the centred
eight schools gained 8.0 nats per unit of ``log tau`` (the non-centred form, whose MAP sits at
``tau = 0`` with a flat direction there, gained 0.0). The maximizations are L-BFGS from the end
point (PyTorch's, strong-Wolfe line search), at most ``PROBE_ITERATIONS`` iterations each, on
at most ``MAX_PROBES`` coordinates (the farthest out).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch

from bayestensor.infer.log_density import LogDensity

#: An optimizer's end point where some coordinate's diagonal Laplace sd is below this many
#: float spacings of its value is a spike, not a mode (:func:`spiked_sites`).
SPIKE_ULPS = 10
#: Rademacher probes of the curvature at a possible spike.
SPIKE_PROBES = 8
#: Coordinates further out than this (unconstrained) are probed.
EDGE_UNITS = 3.0
#: The probe's move further out, unconstrained.
PROBE_STEP = 1.0
#: A profile that gains more than this many nats over the move is still rising: not a mode.
RISE_NATS = 1.0
#: L-BFGS iterations per profile maximization.
PROBE_ITERATIONS = 50
#: Most coordinates probed per end point.
MAX_PROBES = 8
#: Where a density rises without bound, and the cure (the words of this check and the spike's).
UNBOUNDED_CAUSE = ("as where a hierarchical scale goes to 0 and takes the group effects it "
                   "scales with it (write them non-centred: effect = loc + scale * z with "
                   "z ~ Normal(0, 1), or pyro.poutine.reparam with LocScaleReparam)")


def rising_sites(target: LogDensity, theta: torch.Tensor,
                 exempt=()) -> dict[str, tuple[float, float]]:
    """Sites along whose far-out coordinates the profile of the MAP's objective still rises outward.

    Parameters
    ----------
    target : LogDensity
    theta : torch.Tensor
        The end point, ``(D,)`` or ``(1, D)`` (a row of restarts: the first is probed).
    exempt : sequence of str
        Sites not probed (a built-in model's slice scales, off by design at 0).

    Returns
    -------
    dict of str to tuple of float
        ``{site: (rise, value)}``: the profile's gain in nats over the move and the
        coordinate's unconstrained value, for each site with a coordinate that rises by more
        than ``RISE_NATS``.
    """
    point = theta.detach().reshape(-1, target.dim)[0]
    far = target.off_real_line() & (point.abs() > EDGE_UNITS)
    for s in target.sites:
        if s.name in exempt:
            far[s.offset:s.offset + s.size] = False
    candidates = far.nonzero().flatten()
    candidates = candidates[point[candidates].abs().argsort(descending=True)][:MAX_PROBES]
    out: dict[str, tuple[float, float]] = {}
    for k in candidates.tolist():
        step = PROBE_STEP if float(point[k]) > 0 else -PROBE_STEP
        rise = _profile(target, point, k, step) - _profile(target, point, k, 0.0)
        site = next(s for s in target.sites if s.offset <= k < s.offset + s.size)
        if rise > RISE_NATS and rise > out.get(site.name, (-float("inf"),))[0]:
            out[site.name] = (rise, float(point[k]))
    return out


def _profile(target: LogDensity, point: torch.Tensor, k: int, step: float) -> float:
    """The log density maximized over every coordinate but ``k``, held at ``point[k] + step``
    (L-BFGS from ``point``); ``-inf`` where it is not finite."""
    held = point.clone()
    held[k] = held[k] + step
    free = torch.ones_like(point, dtype=torch.bool)
    free[k] = False
    rest = held[free].clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([rest], max_iter=PROBE_ITERATIONS,
                                  line_search_fn="strong_wolfe")

    def full() -> torch.Tensor:
        x = held.clone()
        x[free] = rest
        return x

    def objective(x: torch.Tensor) -> torch.Tensor:  # the MAP's: no log-Jacobian
        return target.log_joint(target.constrain(x.unsqueeze(0)))[0]

    def loss():
        optimizer.zero_grad()
        value = -objective(full())
        if torch.isfinite(value):
            value.backward()
        return value

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            optimizer.step(loss)
        except RuntimeError:  # a line search into a non-finite region: keep what was reached
            pass
        with torch.no_grad():
            value = float(objective(full()))
    return value if value == value else -float("inf")


def rise_text(rising: dict[str, tuple[float, float]]) -> str:
    """The words for what :func:`rising_sites` found."""
    where = ", ".join(f"{name!r} (at {value:.3g}, rising {rise:.1f} nats per unit further out)"
                      for name, (rise, value) in rising.items())
    return (f"the point found is not a mode: with every other coordinate re-fitted, the "
            f"density still rises toward the edge of sites {where}, unconstrained. Either it "
            f"rises without bound there, {UNBOUNDED_CAUSE}, or the optimum lies further out "
            "than the optimizer went (raise num_steps)")


def spiked_sites(target: LogDensity, theta: torch.Tensor,
                 exempt: Sequence[str] = ()) -> dict[str, tuple[float, float]]:
    """Sites whose curvature at an optimizer's end point ``theta`` (``(C, D)``) puts their
    diagonal Laplace sd below ``SPIKE_ULPS`` float spacings of their value, unconstrained.

    The target's float cannot resolve a mode that narrow where it lies: no step of a sampler
    moves within it, and an optimizer stops there because its steps round away, not because
    the density stops rising. The centred eight schools is the case: its joint density rises
    without bound as the group scale goes to 0 with every group effect at the mean, and Adam
    stopped at tau = 4e-8, where the effects' sd (tau) is a third of float32's spacing at
    their value 0.27. A site whose posterior sd is really that small needs a float64 model
    (the suite's float64 site of sd 1e-8 at values 0-5 is 1e7 spacings wide). Near 0 the
    spacing is tiny, so a mode there is never called a spike. The curvature is a Hutchinson
    estimate (``SPIKE_PROBES`` probes), whose noise is far below the margins involved.

    Returns
    -------
    dict of str to tuple of float
        ``{site: (sd, value)}`` of each such site's narrowest coordinate (relative to its
        spacing), the first row's value.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        curvature = target.hessian_diag(theta, SPIKE_PROBES).abs()
    value = theta.detach().reshape(-1, target.dim)[0]
    spacing = torch.finfo(theta.dtype).eps * value.abs()
    sd = curvature.rsqrt()
    narrow = sd < SPIKE_ULPS * spacing
    out = {}
    for s in target.sites:
        span = slice(s.offset, s.offset + s.size)
        if s.name in exempt or not bool(narrow[span].any()):
            continue
        k = s.offset + int((sd[span] / spacing[span].clamp_min(1e-300)).argmin())
        out[s.name] = (float(sd[k]), float(value[k]))
    return out


def spike_text(spikes: dict[str, tuple[float, float]]) -> str:
    """The words for what :func:`spiked_sites` found."""
    where = ", ".join(f"{name!r} (sd {sd:.2g} at {value:.3g})"
                      for name, (sd, value) in spikes.items())
    return (f"the optimum found is a spike, not a mode: its curvature puts the Laplace sd of "
            f"sites {where}, unconstrained, within a few float spacings of their values. "
            f"Either the density rises without bound there, {UNBOUNDED_CAUSE}, or the "
            "posterior is narrower than the model's float resolves (compute the model in "
            "float64)")

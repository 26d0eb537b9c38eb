"""Stochastic-gradient Hamiltonian Monte Carlo (Chen, Fox & Guestrin, ICML 2014).

:func:`sghmc_update` is the pure update (shared with the network trainer), :class:`Warmup` its
burn-in schedule and :class:`SGHMC` the kernel that adapts a diagonal preconditioner during
burn-in, all on the mini-batch gradients of a :class:`~bayestensor.infer.gradients.GradientEstimator`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Iterable

import torch

from bayestensor.infer.gradients import GradientEstimator
from bayestensor.infer.log_density import LogDensity

#: Burn-in starts at this fraction of the learning rate, while the first curvature estimates
#: are still rough ...
LR_RAMP_START = 0.1
#: ... and reaches the full rate after this fraction of the burn-in.
LR_RAMP_FRACTION = 0.25
#: Fractions of the burn-in at which the preconditioner is re-estimated (besides the start).
ADAPT_FRACTIONS = (0.1, 0.25, 0.5, 0.75)
#: Probe chains per curvature estimate (probes x chains): enough for a stable Hutchinson mean.
PROBE_CHAINS = 32
#: Fewest Rademacher probes per curvature estimate, however many chains there are.
MIN_PROBES = 4
#: Independent mini-batches whose gradient variance estimates ``beta_hat``.
NOISE_BATCHES = 4
#: Hutchinson estimates of weakly curved coordinates are noisy (off-diagonal terms): each
#: coordinate's curvature is floored at this fraction of a median, keeping its step within
#: 1000x of the median one. For a user's model the median is over the coordinate's own site:
#: a hyperparameter 1000x flatter than thousands of well-determined locals (a hierarchical
#: model) must keep its own, larger step. For a built-in low-rank model it is over the whole
#: vector: its factor sites are coupled through one product, and a factor that is flat at the
#: start (a padded slice, constant data) is steep once the others move.
PRECOND_FLOOR = 1e-3
#: ... and never below this absolute curvature: a step scale of at most 10 unconstrained
#: units. In the tails of a density the curvature vanishes (the logit of a Beta(0.3, 0.7)),
#: and an unbounded ``P`` would throw a chain to where its constrained value rounds to the
#: support's boundary and stays.
MIN_CURVATURE = 1e-2
#: Later curvature estimates sit closer to the typical set: each weighs this many earlier ones.
LATE_ESTIMATE_WEIGHT = 2


@dataclass(frozen=True)
class Warmup:
    """SGHMC's burn-in schedule: learning-rate ramp and preconditioner adaptation steps.

    The learning rate starts at ``LR_RAMP_START`` of its value and grows linearly to it over the
    first ``LR_RAMP_FRACTION`` of the ``num_warmup`` burn-in steps; the preconditioner (and
    ``beta_hat``) are re-estimated at ``ADAPT_FRACTIONS`` of the burn-in and frozen after it.
    """

    num_warmup: int = 0

    @property
    def adapt_steps(self) -> frozenset:
        """Steps at which the preconditioner is re-estimated."""
        return frozenset(int(self.num_warmup * f) for f in ADAPT_FRACTIONS) - {0}

    def adapts_at(self, t: int) -> bool:
        """Whether step ``t`` re-estimates the preconditioner before moving."""
        return t < self.num_warmup and t in self.adapt_steps

    def lr_scale(self, t: int) -> float:
        """Factor on the learning rate at step ``t`` (1 after the ramp)."""
        if t >= self.num_warmup:
            return 1.0
        ramp = max(1, int(self.num_warmup * LR_RAMP_FRACTION))
        return min(1.0, LR_RAMP_START + (1 - LR_RAMP_START) * t / ramp)


@dataclass
class SGHMCState:
    """Positions ``theta`` and velocities ``v`` of all chains, plus the preconditioner.

    ``log_density`` and ``grad`` are evaluated at ``theta`` (on the mini-batch of the next
    step, which uses that gradient), so a recorded draw carries its own density.
    """

    theta: torch.Tensor            # (C, D) unconstrained positions
    v: torch.Tensor                # (C, D) velocities
    precond: torch.Tensor          # (D,) diagonal preconditioner P
    curvature: torch.Tensor        # (D,) running mean of |diag H| estimates (burn-in only)
    n_estimates: int
    beta_hat: torch.Tensor         # (D,) gradient-noise estimate in velocity units
    log_density: torch.Tensor      # (C,) at theta (mini-batch estimate)
    grad: torch.Tensor             # (C, D) gradient of the log density at theta

    @property
    def grad_norm(self) -> torch.Tensor:
        """``(C,)`` norm of the gradient at ``theta``."""
        return self.grad.norm(dim=-1)

    def to_dict(self) -> dict:
        """Plain dict of tensors and numbers (what a checkpoint may hold)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict) -> "SGHMCState":
        """Inverse of :meth:`to_dict`."""
        return cls(**{f.name: values[f.name] for f in fields(cls)})


def sghmc_update(theta: torch.Tensor, v: torch.Tensor, grad: torch.Tensor, *, lr: float,
                 friction: float, precond: torch.Tensor | float = 1.0,
                 beta_hat: torch.Tensor | float = 0.0, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGHMC step (Chen, Fox & Guestrin 2014, eq. 15) on any tensor of positions.

    ``v <- (1 - friction) v + lr P grad + N(0, 2 (friction - beta_hat) lr P T)``, then
    ``theta <- theta + v``, where ``grad`` is the gradient of the log density (ascent
    direction), ``P`` the diagonal preconditioner and ``T`` the posterior temperature. Pure:
    returns new ``(theta, v)`` and leaves its inputs untouched. Used by :class:`SGHMC` and by
    the network trainer, so both samplers share one update.
    """
    noise_var = 2.0 * (friction - beta_hat) * lr * precond * temperature
    noise = torch.randn(theta.shape, generator=generator, dtype=theta.dtype, device=theta.device)
    noise_sd = noise_var.sqrt() if torch.is_tensor(noise_var) else math.sqrt(noise_var)
    v = (1 - friction) * v + lr * precond * grad + noise_sd * noise
    return theta + v, v


class SGHMC:
    r"""SGHMC in the SGD-with-momentum form of Chen, Fox & Guestrin (2014, eq. 15).

    For every chain and every element of the unconstrained parameter vector ``theta``::

        v     <- (1 - alpha) * v  +  lr * P * g(theta)  +  N(0, 2 * (alpha - beta_hat) * lr * P)
        theta <- theta + v

    where

    * ``g`` is the stochastic gradient of the log joint, the mini-batch log-likelihood scaled
      by N/B (sub-sampled plates) plus the log prior and log-Jacobian;
    * ``lr`` is the learning rate :math:`\eta = \epsilon^2 M^{-1}` of the paper;
    * ``alpha`` (``friction``) is :math:`\epsilon M^{-1} C`, so ``1 - alpha`` is the momentum;
    * ``beta_hat`` (``noise_estimate``, default 0) is :math:`\epsilon M^{-1} \hat B`, the
      estimate of the gradient-noise term; the injected noise variance is reduced by it.
      ``"auto"`` sets it per element to ``lr * P * V / 2`` (the paper's
      :math:`\hat B = \frac12 \epsilon \hat V`), with ``V`` the variance of the mini-batch
      gradient measured over ``NOISE_BATCHES`` independent mini-batches at the chains'
      positions whenever the preconditioner is estimated (burn-in only), capped at
      ``friction / 2``;
    * ``P`` is a diagonal preconditioner (inverse mass matrix, 1 by default). With
      ``precondition=True`` it is ``1 / |diag H|``, the inverse magnitude of the diagonal of
      the Hessian of the negative log density, estimated by Hutchinson's method (Rademacher
      probes, Hessian-vector products) at the chains' current positions at the start and at
      the :class:`Warmup` adaptation steps, averaged, floored at ``PRECOND_FLOOR`` of the
      median over each site (or the whole vector, ``floor_per_site``) and at ``MIN_CURVATURE``, and frozen after burn-in. This makes ``lr`` dimensionless
      (``lr * P * H ≈ lr`` for a Gaussian) and the sampled chain keeps a fixed mass matrix,
      so the usual SGHMC guarantees hold.

    The noise is drawn per element from the sampler's own generator. Velocities start at their
    stationary distribution ``N(0, lr * P)``. Without preconditioning, ``lr`` must be scaled
    to the model (about ``0.01 / curvature``).

    Parameters
    ----------
    target : LogDensity
        The model's batched log density.
    lr : float
        Learning rate (> 0).
    friction : float
        ``alpha`` in (0, 1].
    noise_estimate : float or "auto"
        ``beta_hat`` in [0, alpha), or ``"auto"`` (mini-batch runs).
    precondition : bool
        Adapt the diagonal preconditioner during burn-in.
    batch_size : int, optional
        Sub-sample size for the model's sub-sampled plates (the model's own when ``None``).
    batches : iterable, optional
        Mini-batches given as model-argument tuples, cycled through (instead of sub-sampling);
        the model scales its likelihood itself (``pyro.plate(name, N, subsample_size=B)``).
    num_warmup : int
        Burn-in steps: the :class:`Warmup` schedule of learning-rate ramp and adaptation.
    floor_per_site : bool
        Floor the curvature per site (a user's model) or over the whole vector (a built-in
        low-rank model); see ``PRECOND_FLOOR``.
    """

    name = "sghmc"

    def __init__(self, target: LogDensity, lr: float = 0.01, friction: float = 0.1,
                 noise_estimate: float = 0.0, precondition: bool = True,
                 batch_size: int | None = None, batches: Iterable | None = None,
                 num_warmup: int = 0, floor_per_site: bool = True):
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr: expected a positive step size, got {lr}")
        if not 0 < friction <= 1:
            raise ValueError(f"friction: expected a number in (0, 1], got {friction}")
        if noise_estimate != "auto" and not 0 <= float(noise_estimate) < friction:
            raise ValueError(f"noise_estimate: expected 'auto' or a number in "
                             f"[0, friction={friction}), got {noise_estimate}")
        self.target = target
        self.gradients = GradientEstimator(target, batch_size, batches)
        self.lr, self.friction = float(lr), float(friction)
        self.noise_estimate = noise_estimate if noise_estimate == "auto" else float(noise_estimate)
        self.precondition = bool(precondition)
        self.floor_per_site = bool(floor_per_site)
        self.warmup = Warmup(int(num_warmup))
        self.generator = target.generator

    def _curvature(self, theta: torch.Tensor, t: int) -> torch.Tensor:
        probes = max(MIN_PROBES, PROBE_CHAINS // theta.shape[0])
        return self.gradients.hessian_diag(theta, t, probes).abs()

    def _gradient_noise(self, theta: torch.Tensor, t: int, precond: torch.Tensor) -> torch.Tensor:
        """``beta_hat``: half of ``lr * P`` times the mini-batch gradient variance."""
        if self.noise_estimate != "auto":
            return torch.full_like(precond, self.noise_estimate)
        if not self.gradients.is_stochastic:
            return torch.zeros_like(precond)
        grads = torch.stack([self.gradients.value_and_grad(theta, t + k)[1]
                             for k in range(NOISE_BATCHES)])  # (B, C, D)
        variance = grads.var(0).mean(0)
        return (0.5 * self.lr * precond * variance).clamp(max=0.5 * self.friction)

    def _precond_from(self, curvature: torch.Tensor) -> torch.Tensor:
        """``1 / curvature``, the curvature floored (see ``PRECOND_FLOOR``, ``MIN_CURVATURE``)."""
        tiny = torch.finfo(curvature.dtype).tiny
        spans = ([slice(s.offset, s.offset + s.size) for s in self.target.sites]
                 if self.floor_per_site else [slice(None)])
        floor = torch.empty_like(curvature)
        for span in spans:
            floor[span] = PRECOND_FLOOR * curvature[span].median().clamp_min(tiny)
        return 1.0 / curvature.clamp_min(floor).clamp_min(MIN_CURVATURE)

    def init_state(self, theta: torch.Tensor) -> SGHMCState:
        """State at ``theta`` ``(C, D)`` with velocities drawn from ``N(0, lr * P)``."""
        logp, grad = self.gradients.value_and_grad(theta, 0)
        if self.precondition:
            curvature = self._curvature(theta, 0)
            precond = self._precond_from(curvature)
        else:
            curvature = torch.ones(theta.shape[-1], dtype=theta.dtype, device=theta.device)
            precond = curvature.clone()
        v = (self.lr * precond).sqrt() * torch.randn(theta.shape, generator=self.generator,
                                                      dtype=theta.dtype, device=theta.device)
        beta_hat = self._gradient_noise(theta, 0, precond)
        return SGHMCState(theta.detach().clone(), v, precond, curvature, 1, beta_hat, logp, grad)

    def step(self, state: SGHMCState, t: int) -> SGHMCState:
        """One SGHMC update of every chain (step ``t``, counted from the start of burn-in).

        At the warm-up's adaptation steps the curvature is re-estimated at the current
        positions and the preconditioner updated before the move; the learning rate follows
        the warm-up ramp. The new state carries the log density and gradient at its positions.
        """
        precond, curvature, n_est = state.precond, state.curvature, state.n_estimates
        beta_hat = state.beta_hat
        if self.warmup.adapts_at(t):
            if self.precondition:
                new = self._curvature(state.theta, t)
                w = LATE_ESTIMATE_WEIGHT
                curvature = (curvature * n_est + w * new) / (n_est + w)
                n_est += w
                precond = self._precond_from(curvature)
            beta_hat = self._gradient_noise(state.theta, t, precond)
        theta, v = sghmc_update(state.theta, state.v, state.grad,
                                lr=self.lr * self.warmup.lr_scale(t), friction=self.friction,
                                precond=precond, beta_hat=beta_hat, generator=self.generator)
        logp, grad = self.gradients.value_and_grad(theta, t + 1)
        return SGHMCState(theta, v, precond, curvature, n_est, beta_hat, logp, grad)

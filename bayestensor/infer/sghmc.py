"""Stochastic-gradient Hamiltonian Monte Carlo (Chen, Fox & Guestrin, ICML 2014)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch

from bayestensor.infer.log_density import LogDensity


@dataclass
class SGHMCState:
    """Positions ``theta`` and velocities ``v`` of all chains, plus the preconditioner.

    ``log_density`` and ``grad_norm`` are those evaluated at the start of the last step.
    """

    theta: torch.Tensor            # (C, D) unconstrained positions
    v: torch.Tensor                # (C, D) velocities
    precond: torch.Tensor          # (D,) diagonal preconditioner P
    curvature: torch.Tensor        # (D,) running mean of |diag H| estimates (burn-in only)
    n_estimates: int
    beta_hat: torch.Tensor         # (D,) gradient-noise estimate in velocity units
    log_density: torch.Tensor      # (C,) at theta (mini-batch estimate)
    grad_norm: torch.Tensor        # (C,)


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
      gradient measured over 4 independent mini-batches at the chains' positions whenever the
      preconditioner is estimated (burn-in only), capped at ``friction / 2``;
    * ``P`` is a diagonal preconditioner (inverse mass matrix, 1 by default). With
      ``precondition=True`` it is ``1 / |diag H|``, the inverse magnitude of the diagonal of
      the Hessian of the negative log density, estimated by Hutchinson's method (Rademacher
      probes, Hessian-vector products) at the chains' current positions at the start and at
      four points of the burn-in, averaged, floored at 1e-3 of its median, and frozen after
      burn-in. This makes ``lr`` dimensionless (``lr * P * H ≈ lr`` for a Gaussian) and the
      sampled chain keeps a fixed mass matrix, so the usual SGHMC guarantees hold.

    The noise is drawn per element from the sampler's own generator. Velocities start at their
    stationary distribution ``N(0, lr * P)``. Without preconditioning, ``lr`` must be scaled
    to the model (about ``0.01 / curvature``).

    Parameters
    ----------
    potential : LogDensity
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
    """

    name = "sghmc"

    def __init__(self, potential: LogDensity, lr: float = 0.01, friction: float = 0.1,
                 noise_estimate: float = 0.0, precondition: bool = True,
                 batch_size: int | None = None, batches: Iterable | None = None):
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr: expected a positive step size, got {lr}")
        if not 0 < friction <= 1:
            raise ValueError(f"friction: expected a number in (0, 1], got {friction}")
        if noise_estimate != "auto" and not 0 <= float(noise_estimate) < friction:
            raise ValueError(f"noise_estimate: expected 'auto' or a number in "
                             f"[0, friction={friction}), got {noise_estimate}")
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
        self.potential = potential
        self.lr, self.friction = float(lr), float(friction)
        self.noise_estimate = noise_estimate if noise_estimate == "auto" else float(noise_estimate)
        self.precondition = bool(precondition)
        self.batch_size = batch_size
        self._batches = None if batches is None else list(batches)
        if self._batches is not None and not self._batches:
            raise ValueError("batches: expected a non-empty iterable of model-argument tuples")
        self.generator = potential.generator

    def _gradient(self, theta: torch.Tensor, t: int):
        if self._batches is not None:
            args = self._batches[t % len(self._batches)]
            args = args if isinstance(args, tuple) else (args,)
            return self.potential.value_and_grad(theta, model_args=args)
        sub = self.potential.draw_subsample(self.batch_size)
        return self.potential.value_and_grad(theta, sub)

    def _estimate_curvature(self, theta: torch.Tensor, t: int) -> torch.Tensor:
        probes = max(4, 32 // theta.shape[0])  # about 32 probe-chains per estimate
        if self._batches is not None:
            args = self._batches[t % len(self._batches)]
            args = args if isinstance(args, tuple) else (args,)
            return self.potential.hessian_diag(theta, probes, model_args=args).abs()
        sub = self.potential.draw_subsample(self.batch_size)
        return self.potential.hessian_diag(theta, probes, sub).abs()

    def _gradient_noise(self, theta: torch.Tensor, t: int, precond: torch.Tensor) -> torch.Tensor:
        """``beta_hat``: half of ``lr * P`` times the mini-batch gradient variance."""
        if self.noise_estimate != "auto":
            return torch.full_like(precond, self.noise_estimate)
        if self._batches is None and not self.potential.subsample_plates:
            return torch.zeros_like(precond)
        grads = torch.stack([self._gradient(theta, t + k)[1] for k in range(4)])  # (4, C, D)
        variance = grads.var(0).mean(0)
        return (0.5 * self.lr * precond * variance).clamp(max=0.5 * self.friction)

    @staticmethod
    def _precond_from(curvature: torch.Tensor) -> torch.Tensor:
        # Hutchinson estimates of weakly curved coordinates are noisy (off-diagonal terms):
        # the floor keeps any coordinate's step within 1000x of the median one.
        floor = 1e-3 * curvature.median().clamp_min(1e-30)
        return 1.0 / curvature.clamp_min(floor)

    def init_state(self, theta: torch.Tensor) -> SGHMCState:
        """State at ``theta`` ``(C, D)`` with velocities drawn from ``N(0, lr * P)``."""
        logp, grad = self._gradient(theta, 0)
        if self.precondition:
            curvature = self._estimate_curvature(theta, 0)
            precond = self._precond_from(curvature)
        else:
            curvature = torch.ones(theta.shape[-1], dtype=theta.dtype, device=theta.device)
            precond = curvature.clone()
        v = (self.lr * precond).sqrt() * torch.randn(theta.shape, generator=self.generator,
                                                      dtype=theta.dtype, device=theta.device)
        beta_hat = self._gradient_noise(theta, 0, precond)
        return SGHMCState(theta.detach().clone(), v, precond, curvature, 1, beta_hat, logp,
                          grad.norm(dim=-1))

    def step(self, state: SGHMCState, t: int, adapt_at: bool = False,
             lr_scale: float = 1.0) -> SGHMCState:
        """One SGHMC update of every chain.

        ``adapt_at=True`` (burn-in only) re-estimates the curvature at the current positions
        and updates the preconditioner before the step. ``lr_scale`` multiplies the learning
        rate (``fit`` ramps it up over the first quarter of burn-in, while the first curvature
        estimates are still rough).
        """
        precond, curvature, n_est = state.precond, state.curvature, state.n_estimates
        beta_hat = state.beta_hat
        if adapt_at:
            if self.precondition:
                new = self._estimate_curvature(state.theta, t)
                # Later estimates sit closer to the typical set: weight them more.
                curvature = (curvature * n_est + 2 * new) / (n_est + 2)
                n_est += 2
                precond = self._precond_from(curvature)
            beta_hat = self._gradient_noise(state.theta, t, precond)
        logp, grad = self._gradient(state.theta, t)
        theta, v = sghmc_update(state.theta, state.v, grad, lr=self.lr * lr_scale,
                                friction=self.friction, precond=precond, beta_hat=beta_hat,
                                generator=self.generator)
        return SGHMCState(theta, v, precond, curvature, n_est, beta_hat, logp, grad.norm(dim=-1))

"""Stochastic-gradient Hamiltonian Monte Carlo (Chen, Fox & Guestrin, ICML 2014).

:func:`sghmc_update` is the pure update (shared with the network trainer), :class:`Warmup` its
burn-in schedule and :class:`SGHMC` the kernel that adapts a diagonal preconditioner during
burn-in, all on the mini-batch gradients of a :class:`~bayestensor.infer.gradients.GradientEstimator`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
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
#: Step-size adaptation target: the excess kinetic temperature of each block. For a Gaussian
#: this excess equals the relative bias of the sampled variance (see :class:`StepAdapter`).
STEP_TARGET = 0.02
#: Step-size adaptation windows after the learning-rate ramp (each ``MIN_STEP_WINDOW`` steps
#: at least).
STEP_WINDOWS = 15
MIN_STEP_WINDOW = 25
#: A window changes a block's step by at most this factor either way.
MAX_STEP_CHANGE = 2.0
#: An element whose window temperature exceeds this is unstable (``h`` near 4), not unlucky:
#: with 20 effective velocity samples a temperature of 4 has a chance below 1e-12.
HOT_TEMPERATURE = 4.0
#: Velocity samples (elements x chains x window steps / ``VELOCITY_CORRELATION``) a block
#: needs to measure its own temperature to about +-1%; smaller blocks share one measurement.
MIN_BLOCK_SAMPLES = 20_000
#: Steps over which velocities decorrelate at the default friction (about 1 / friction).
VELOCITY_CORRELATION = 10


class StepAdapter:
    r"""Per-block step sizes tuned in burn-in to a kinetic-temperature target.

    At stationarity the exact SGHMC dynamics give every velocity element the variance
    ``lr * P`` (the temperature 1). The discrete update heats the velocities: for a Gaussian
    with curvature ``lambda`` (in units of ``1 / P``) and ``h = lr * lambda``, the stationary
    variance of ``v / sqrt(lr P)`` is ``(1 + e) / (1 - friction / 2)`` where the excess ``e``
    is exactly the relative bias of the sampled variance of ``theta`` (about
    ``h / (4 - 2 friction)``; 2.7% at ``h = 0.1``, 100% at ``h = 2``, unstable near ``h = 4``).
    Gradient noise from mini-batches heats the velocities too, and shows in ``e`` the same way.
    So the measured excess is a per-block thermometer of the sampling bias: this is the kinetic
    temperature diagnostic of SG-MCMC (Leimkuhler & Matthews, *Molecular Dynamics*, 2015,
    Sec. 6; used for SG-MCMC by Wenzel et al., ICML 2020, Sec. 4), turned into a controller.

    Blocks are the model's sites; a site with too few velocity samples per window for a
    reliable temperature (``MIN_BLOCK_SAMPLES``) joins the pooled block of such sites, which
    is measured over as many windows as it needs. Measuring starts when the learning-rate ramp
    of :class:`Warmup` ends. Every window of the rest of burn-in, each measured block's step is
    multiplied by ``target / e`` (the excess is linear in ``h``), clipped to ``MAX_STEP_CHANGE`` either way; the velocities are rescaled with it so
    the temperature is unchanged. A window's temperature is noisy (about +-1% against a 2%
    target), so each step wanders around its target value; as in the dual averaging of Hoffman
    & Gelman (2014, Sec. 3.2) the final step is the geometric mean of the steps set in the
    second half of burn-in. The steps are frozen after burn-in, so the sampled chain has a fixed
    mass and step, as SGHMC's guarantees require.
    """

    def __init__(self, target: LogDensity, num_chains: int, num_warmup: int,
                 goal: float = STEP_TARGET):
        self.goal = float(goal)
        self.num_warmup = int(num_warmup)
        self.start = int(num_warmup * LR_RAMP_FRACTION)  # measured once the lr ramp is over
        self.window = max(MIN_STEP_WINDOW, (self.num_warmup - self.start) // STEP_WINDOWS)
        self.samples_per_step = num_chains / VELOCITY_CORRELATION
        sizes = [site.size for site in target.sites]
        own = [size * self.window * self.samples_per_step >= MIN_BLOCK_SAMPLES for size in sizes]
        ids, block_of = {}, []
        for k, size in enumerate(sizes):
            key = k if own[k] else "pooled"
            ids.setdefault(key, len(ids))
            block_of += [ids[key]] * size
        self.block_of = torch.tensor(block_of, dtype=torch.long, device=target.device)
        self.num_blocks = len(ids)
        self.block_size = torch.bincount(self.block_of, minlength=self.num_blocks).to(target.dtype)

    def measures_at(self, t: int) -> bool:
        """Whether step ``t`` is measured (after the learning-rate ramp, within burn-in)."""
        return self.start <= t < self.num_warmup

    def adapts_at(self, t: int) -> bool:
        """Whether step ``t`` ends a window (then the steps change before step ``t + 1``)."""
        return (self.start <= t < self.num_warmup - 1
                and (t + 1 - self.start) % self.window == 0)

    def averages_at(self, t: int) -> bool:
        """Whether the step set after window-end ``t`` joins the final average (second half)."""
        return 2 * (t + 1) >= self.num_warmup + self.start

    def finishes_at(self, t: int) -> bool:
        """Whether step ``t`` is the last of burn-in (then the averaged steps are set)."""
        return t == self.num_warmup - 1

    @staticmethod
    def heat(v: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """``(D,)`` chain-mean of ``v**2 / step``: each element's temperature at one step."""
        return (v.pow(2) / step).mean(0)

    def factors(self, heat_sum: torch.Tensor, steps: torch.Tensor,
                friction: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Step multipliers ``(D,)`` from the ``heat`` sums over each block's ``steps`` ``(B,)``,
        and which blocks were measured ``(B,)`` (their sums start again).

        A block is measured once it holds ``MIN_BLOCK_SAMPLES`` velocity samples (a small
        model may never be: its step stays ``lr``). A measured block with an element hotter
        than ``HOT_TEMPERATURE`` (an unstable coordinate that the block's mean would hide among
        many flat ones) takes the largest cut.
        """
        ready = steps * self.samples_per_step * self.block_size >= MIN_BLOCK_SAMPLES
        element = heat_sum / steps.clamp_min(1)[self.block_of] * (1 - friction / 2)
        block = torch.zeros(self.num_blocks, dtype=element.dtype, device=element.device)
        excess = block.index_add_(0, self.block_of, element) / self.block_size - 1
        factor = torch.where(excess > 0, self.goal / excess.clamp_min(1e-12),
                             torch.full_like(excess, MAX_STEP_CHANGE))
        unstable = (~torch.isfinite(element) | (element > HOT_TEMPERATURE)).to(element.dtype)
        hot = torch.zeros_like(excess).index_add_(0, self.block_of, unstable)
        factor = torch.where((hot > 0) | ~torch.isfinite(factor),
                             torch.full_like(factor, 1 / MAX_STEP_CHANGE), factor)
        factor = torch.where(ready, factor.clamp(1 / MAX_STEP_CHANGE, MAX_STEP_CHANGE),
                             torch.ones_like(factor))
        return factor[self.block_of], ready


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
    step_scale: torch.Tensor | None = None  # (D,) adapted multiplier of lr (burn-in)
    heat_sum: torch.Tensor | None = None    # (D,) this window's kinetic-temperature sums
    heat_steps: torch.Tensor | None = None  # (B,) steps in each block's sums
    log_scale_sum: torch.Tensor | None = None  # (D,) sum of the log steps averaged at the end
    log_scale_count: int = 0

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
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})


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
    adapt_step : bool
        Tune a step multiplier per block (site) during burn-in to the kinetic-temperature
        target ``step_target`` (:class:`StepAdapter`), starting from ``lr`` once the
        learning-rate ramp is over. Without burn-in nothing is tuned.
    step_target : float
        The excess kinetic temperature aimed at (> 0): the relative bias of the sampled
        variances a block accepts for faster mixing.
    """

    name = "sghmc"

    def __init__(self, target: LogDensity, lr: float = 0.01, friction: float = 0.1,
                 noise_estimate: float = 0.0, precondition: bool = True,
                 batch_size: int | None = None, batches: Iterable | None = None,
                 num_warmup: int = 0, floor_per_site: bool = True, adapt_step: bool = False,
                 step_target: float = STEP_TARGET):
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
        if not (step_target > 0 and math.isfinite(step_target)):
            raise ValueError(f"step_target: expected a positive number, got {step_target}")
        self.adapt_step = bool(adapt_step) and int(num_warmup) > 0
        self.step_target = float(step_target)
        self.warmup = Warmup(int(num_warmup))
        self.adapter = None
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
        # The stationary velocity variance of the discrete update (see StepAdapter).
        v_var = self.lr * precond / (1 - self.friction / 2)
        v = v_var.sqrt() * torch.randn(theta.shape, generator=self.generator,
                                       dtype=theta.dtype, device=theta.device)
        beta_hat = self._gradient_noise(theta, 0, precond)
        state = SGHMCState(theta.detach().clone(), v, precond, curvature, 1, beta_hat, logp,
                           grad)
        return self._with_adaptation(state)

    def _with_adaptation(self, state: SGHMCState) -> SGHMCState:
        """The state with the step-adaptation fields it lacks (a fresh start, or a checkpoint
        written without them), and ``self.adapter`` made for its chains (also on resume)."""
        if self.adapt_step and self.adapter is None:
            self.adapter = StepAdapter(self.target, state.theta.shape[0], self.warmup.num_warmup,
                                       self.step_target)
        if state.step_scale is not None:
            return state
        blocks = self.adapter.num_blocks if self.adapter is not None else 1
        like = state.precond
        return replace(state, step_scale=torch.ones_like(like), heat_sum=torch.zeros_like(like),
                       heat_steps=torch.zeros(blocks, dtype=like.dtype, device=like.device),
                       log_scale_sum=torch.zeros_like(like), log_scale_count=0)

    def spread(self, state: SGHMCState, scale: float) -> SGHMCState:
        """The state moved to ``theta + scale * sqrt(P) * N(0, 1)``, independently per chain.

        ``P`` is the inverse diagonal curvature measured at the start, so ``scale = 1`` draws
        each chain's start from the diagonal Laplace approximation there: chains that begin
        apart let R-hat see chains that have not forgotten their start (Gelman & Rubin, 1992).
        """
        noise = torch.randn(state.theta.shape, generator=self.generator,
                            dtype=state.theta.dtype, device=state.theta.device)
        theta = state.theta + scale * state.precond.sqrt() * noise
        logp, grad = self.gradients.value_and_grad(theta, 0)
        return replace(state, theta=theta, log_density=logp, grad=grad)

    def step(self, state: SGHMCState, t: int) -> SGHMCState:
        """One SGHMC update of every chain (step ``t``, counted from the start of burn-in).

        At the warm-up's adaptation steps the curvature is re-estimated at the current
        positions and the preconditioner updated before the move; the learning rate follows
        the warm-up ramp. The new state carries the log density and gradient at its positions.
        """
        state = self._with_adaptation(state)
        precond, curvature, n_est = state.precond, state.curvature, state.n_estimates
        beta_hat, v, scale = state.beta_hat, state.v, state.step_scale
        if self.warmup.adapts_at(t):
            if self.precondition:
                new = self._curvature(state.theta, t)
                w = LATE_ESTIMATE_WEIGHT
                curvature = (curvature * n_est + w * new) / (n_est + w)
                n_est += w
                precond = self._precond_from(curvature)
                if self.adapt_step:  # a new mass: keep the velocities' temperature
                    v = v * (precond / state.precond).sqrt()
            beta_hat = self._gradient_noise(state.theta, t, precond)
        lr = self.lr * self.warmup.lr_scale(t) * scale
        theta, v = sghmc_update(state.theta, v, state.grad, lr=lr, friction=self.friction,
                                precond=precond, beta_hat=beta_hat, generator=self.generator)
        heat_sum, heat_steps = state.heat_sum, state.heat_steps
        log_sum, log_count = state.log_scale_sum, state.log_scale_count
        adapter = self.adapter
        if adapter is not None and adapter.measures_at(t):
            heat_sum, heat_steps = heat_sum + adapter.heat(v, lr * precond), heat_steps + 1
            new_scale = scale
            if adapter.adapts_at(t):
                factor, measured = adapter.factors(heat_sum, heat_steps, self.friction)
                new_scale = scale * factor
                heat_sum = torch.where(measured[adapter.block_of], 0.0, heat_sum)
                heat_steps = torch.where(measured, 0.0, heat_steps)
                if adapter.averages_at(t):
                    log_sum, log_count = log_sum + new_scale.log(), log_count + 1
            elif adapter.finishes_at(t) and log_count:
                new_scale = (log_sum / log_count).exp()
            v, scale = v * (new_scale / scale).sqrt(), new_scale
        logp, grad = self.gradients.value_and_grad(theta, t + 1)
        return SGHMCState(theta, v, precond, curvature, n_est, beta_hat, logp, grad, scale,
                          heat_sum, heat_steps, log_sum, log_count)

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

from bayestensor.infer.dense_metric import MIN_CURVATURE, DenseRoot, choose_metric, identified
from bayestensor.infer.gibbs import GIBBS_EVERY, GibbsRedraws, exact_curvature_spans
from bayestensor.infer.gradients import GradientEstimator
from bayestensor.infer.log_density import LogDensity
from bayestensor.infer.prior_step_cap import PriorStepCap
from bayestensor.infer.scale_moves import SCALE_MOVE_EVERY, SliceScaleMoves

#: Burn-in starts at this fraction of the learning rate, while the first curvature estimates
#: are still rough ...
LR_RAMP_START = 0.1
#: ... and reaches the full rate after this fraction of the burn-in.
LR_RAMP_FRACTION = 0.25
#: Fractions of the burn-in at which the preconditioner is re-estimated (besides the start).
ADAPT_FRACTIONS = (0.1, 0.25, 0.5, 0.75)
#: ... and, for chains that do not start at a mode, also here: from the starting values the
#: curvature grows as the chains fall towards the mode, and a preconditioner measured at the
#: start alone let IL-2's chains (``init_from="init"``) overflow at step 54 of 1,000, before
#: the re-estimate at 10%.
EARLY_ADAPT_FRACTIONS = (0.01, 0.02, 0.04, 0.07)
#: Probe chains per curvature estimate (probes x chains): enough for a stable Hutchinson mean.
PROBE_CHAINS = 32
#: Fewest Rademacher probes per curvature estimate, however many chains there are.
MIN_PROBES = 4
#: Independent mini-batches whose gradient variance ``V`` sets ``beta_hat`` and the
#: preconditioner's noise floor (``SGHMC._curvature``). Per-coordinate gradients of sparse
#: data are heavy-tailed: with 4, two of the three seeds of the case in ``SGHMC._curvature``
#: still overflowed; with 16 none did, at 5%, 10% or 20% batches.
NOISE_BATCHES = 16
#: Hutchinson estimates of weakly curved coordinates are noisy (off-diagonal terms): each
#: coordinate's curvature is floored at this fraction of a median, keeping its step within
#: 1000x of the median one. For a user's model the median is over the coordinate's own site:
#: a hyperparameter 1000x flatter than thousands of well-determined locals (a hierarchical
#: model) must keep its own, larger step. For a built-in low-rank model it is over the whole
#: vector: its factor sites are coupled through one product, and a factor that is flat at the
#: start (a padded slice, constant data) is steep once the others move.
PRECOND_FLOOR = 1e-3
#: ... and never below ``MIN_CURVATURE`` (:mod:`~bayestensor.infer.dense_metric`).
#: Later curvature estimates sit closer to the typical set: each weighs this many earlier ones.
LATE_ESTIMATE_WEIGHT = 2
#: The chains of a user's model start spread by the Laplace sd at the MAP, but by at most this
#: many unconstrained units per coordinate of a site off the real line (a positive or bounded
#: one, set through an exp or a sigmoid). Where the MAP is flat (a hierarchical scale whose
#: mode is at 0) the curvature is floored and the Laplace sd is 10: a factor e^10 on a
#: positive site. On the non-centred eight schools such a start put a chain at tau = 1,190,
#: where the curvature is 1e5 times the one the preconditioner was set with; its first step
#: moved log tau by -2,000, and the chain coasted on to -19,700, where tau is 0 in float.
USER_SPREAD_SD = 1.0
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
#: Whitened step ``h = epsilon**2`` under a dense metric. BAOAB samples a Gaussian's positions
#: exactly at any ``h < 4`` (Leimkuhler & Matthews, 2013), so ``h`` is set for mixing, with
#: room for a local curvature 8x the averaged Hessian's before the update turns unstable. Its
#: bias grows with the density's departure from a Gaussian: on the logit of a Beta(0.3, 0.7)
#: (Pyro's test_svgd.py) ``h = 1`` misses the variance by 0.068 (tolerance 0.02), 0.5 by 0.013.
DENSE_STEP = 0.5
#: ``metric="auto"`` keeps the diagonal metric when a chain one Laplace sd from the start meets
#: a whitened curvature above this (half the ``4 / DENSE_STEP`` at which BAOAB turns unstable).
DENSE_MAX_CURVATURE = 4.0


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
    ``beta_hat``) are re-estimated at ``ADAPT_FRACTIONS`` of the burn-in (and at
    ``EARLY_ADAPT_FRACTIONS`` unless ``start_at_mode``) and frozen after it.
    """

    num_warmup: int = 0
    start_at_mode: bool = True

    @property
    def adapt_steps(self) -> frozenset:
        """Steps at which the preconditioner is re-estimated."""
        fractions = ADAPT_FRACTIONS + (() if self.start_at_mode else EARLY_ADAPT_FRACTIONS)
        return frozenset(int(self.num_warmup * f) for f in fractions) - {0}

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
    hessian: torch.Tensor | None = None  # (D, D) running mean of -H (dense metric only)

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


def sghmc_velocity(v: torch.Tensor, grad: torch.Tensor, *, lr: float, friction: float,
                   precond: torch.Tensor | float = 1.0, beta_hat: torch.Tensor | float = 0.0,
                   temperature: float = 1.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """SGHMC's velocity update (Chen, Fox & Guestrin 2014, eq. 15), pure.

    ``v <- (1 - friction) v + lr P grad + N(0, 2 (friction - beta_hat) lr P T)``, where
    ``grad`` is the gradient of the log density (ascent direction), ``P`` the diagonal
    preconditioner and ``T`` the posterior temperature.
    """
    noise_var = 2.0 * (friction - beta_hat) * lr * precond * temperature
    noise = torch.randn(v.shape, generator=generator, dtype=v.dtype, device=v.device)
    noise_sd = noise_var.sqrt() if torch.is_tensor(noise_var) else math.sqrt(noise_var)
    return (1 - friction) * v + lr * precond * grad + noise_sd * noise


def sghmc_update(theta: torch.Tensor, v: torch.Tensor, grad: torch.Tensor, *, lr: float,
                 friction: float, precond: torch.Tensor | float = 1.0,
                 beta_hat: torch.Tensor | float = 0.0, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGHMC step on any tensor of positions: :func:`sghmc_velocity`, then
    ``theta <- theta + v``. Pure: returns new ``(theta, v)``. Used by :class:`SGHMC` and by
    the network trainer, so both samplers share one update.

    Parameters
    ----------
    theta : torch.Tensor
        Positions, any shape (``(C, D)`` for :class:`SGHMC`'s chains).
    v : torch.Tensor
        Velocities, the shape of ``theta``.
    grad : torch.Tensor
        Gradient of the log density at ``theta`` (the ascent direction, not of the negative
        log density), the shape of ``theta``.
    lr : float or torch.Tensor
        Learning rate; a tensor broadcasting against ``theta`` gives each element its own
        (:class:`SGHMC` passes its per-element adapted steps this way).
    friction : float
        ``alpha``, the share of the velocity lost per step; the velocity keeps
        ``1 - friction`` of itself.
    precond : torch.Tensor or float
        Diagonal preconditioner ``P``, broadcasting against ``theta``; 1 for none.
    beta_hat : torch.Tensor or float
        Estimate of the gradient-noise term, subtracted from ``friction`` in the injected
        noise variance; it must stay below ``friction`` (not checked here).
    temperature : float
        Posterior temperature ``T`` multiplying the injected noise variance; 1 samples the
        posterior itself.
    generator : torch.Generator, optional
        Source of the Gaussian noise (torch's global generator when ``None``); it must live
        on ``theta``'s device.

    Returns
    -------
    theta : torch.Tensor
        New positions ``theta + v``, with ``v`` the new velocities.
    v : torch.Tensor
        New velocities. The inputs are not modified.
    """
    v = sghmc_velocity(v, grad, lr=lr, friction=friction, precond=precond, beta_hat=beta_hat,
                       temperature=temperature, generator=generator)
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
      median over each site (or the whole vector, ``floor_per_site``) and at ``MIN_CURVATURE``
      (on mini-batches also at ``lr * V / friction``, where the friction can still absorb the
      gradient noise ``V``), and frozen after burn-in. This makes ``lr`` dimensionless
      (``lr * P * H ≈ lr`` for a Gaussian) and the sampled chain keeps a fixed mass matrix,
      so the usual SGHMC guarantees hold.
    * with ``metric="dense"`` (``"auto"`` picks it for a small user's model on full-batch
      gradients, see :func:`~bayestensor.infer.dense_metric.choose_metric`) ``P`` is a dense
      matrix instead: the inverse of the exact Hessian averaged over the chains, its
      eigenvalues taken in magnitude and floored at ``MIN_CURVATURE``, estimated at the same
      steps and frozen the same way. The dynamics then run in whitened coordinates
      ``L^{-1} theta`` (``L L^T = P``), where a Gaussian posterior has unit curvature, and
      are integrated by the BAOAB splitting (half kick, half drift, exact friction and noise,
      half drift, half kick; Leimkuhler & Matthews, 2013) instead of the update above: it
      samples a Gaussian's positions without step-size bias, so with ``adapt_step`` the
      whitened step is ``DENSE_STEP``, chosen for mixing; the friction per unit time
      ``friction / sqrt(lr)`` is kept. On Pyro's correlated Gaussian chains this raises the
      effective sample size of the means from 1.4-2.7% of the draws to about 28%.

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
    metric : {"diag", "dense", "auto"}
        The preconditioner's shape (see above); ``"auto"`` decides with ``builtin``.
    builtin : bool
        Whether the model is a built-in low-rank model (``metric="auto"`` keeps it diagonal).
    gibbs : dict of str to float or conditional, optional
        Sites whose full conditional is known, with it (a model's ``gibbs_sites()``; a
        number is the shape of a Gamma conditional, otherwise a conditional of
        :mod:`bayestensor.priors.conditionals`): every ``GIBBS_EVERY`` steps they are redrawn
        exactly from it (:class:`~bayestensor.infer.gibbs.GibbsRedraws`; in burn-in only the
        conditionals that allow it). Used on full-batch gradients only; on
        mini-batches the rate it reads from the gradient would be noisy, and the sites move by
        SGHMC like the others.
    scale_moves : list of SliceGroup, optional
        Rank slices to move along their scale every ``SCALE_MOVE_EVERY`` steps by an exact
        Metropolis step (:class:`~bayestensor.infer.scale_moves.SliceScaleMoves`; a built-in
        model's ``low_rank_prior.slice_groups()``). Full batch only, as ``gibbs``.
    block_redraws : object, optional
        Exact redraws of whole blocks from their full conditionals, every ``GIBBS_EVERY``
        steps: ``redraw(values, generator)`` on batched constrained values (a model's
        ``factor_redraws()``, :class:`~bayestensor.models.cp_row_gibbs.CPRowGibbs`). Full
        batch only, unless the object's ``needs_full_batch`` is false (a conditional that
        reads no data: :class:`~bayestensor.models.empty_rows.EmptyRows`); not in burn-in
        where its ``during_warmup`` is false.
    start_at_mode : bool
        Whether the chains start at a mode (a MAP point), where the curvature measured at the
        start holds; if not, burn-in re-estimates it early as well (``EARLY_ADAPT_FRACTIONS``).
    exact_curvature : dict of str to float, optional
        Positive sites sampled as ``u = log x`` whose log density in ``u`` is ``shape * u -
        x * rate`` (``rate`` from the rest of the model; a Gaussian noise precision, a slice
        precision under the gamma prior; a model's :meth:`gamma_shapes`), with their
        ``shape``: their diagonal curvature is exactly ``shape - gradient``, used in place of
        Hutchinson's estimate on mini-batch gradients. That estimate's off-diagonal terms
        reach ``x`` times the slice's entries: from a short mini-batch MAP a chain started
        with a switched-off slice's precision at 1.8e6 and its norm still 0.25, the estimate
        came out at 0.008 against an exact 1,450, and the 40-fold step overflowed at step 0
        (``tests/test_devices.py``'s mini-batch case at 200 MAP steps: 6 of 32 seeds; none
        of 32 with it). On full batches it is not used: on the SGHMC grid it changed little
        and made one run of 33 worse (R-hat 1.019 -> 1.039; 28 runs meeting the bar against
        29, docs/benchmarks.md).
    hyper_gradient : callable, optional
        ``theta -> gradient`` exact on the sites of the later ``gibbs`` stages (a built-in
        model's :meth:`~bayestensor.models.base.BayesModel.hyper_gradient`: from its prior
        alone); by default the full gradient is taken again before each later stage.
    prior_precisions : callable, optional
        ``values -> {site: precision}`` of the sites with Gaussian priors (a built-in model's
        :meth:`~bayestensor.models.base.BayesModel.prior_precisions`): each step the
        preconditioner of an entry whose prior alone would make the step unstable is lowered
        to a stable one (:class:`~bayestensor.infer.prior_step_cap.PriorStepCap`; it binds
        after a slice-precision redraw has stiffened an entry, and nowhere else).
    """

    name = "sghmc"

    def __init__(self, target: LogDensity, lr: float = 0.01, friction: float = 0.1,
                 noise_estimate: float = 0.0, precondition: bool = True,
                 batch_size: int | None = None, batches: Iterable | None = None,
                 num_warmup: int = 0, floor_per_site: bool = True, adapt_step: bool = False,
                 step_target: float = STEP_TARGET, metric: str = "diag", builtin: bool = False,
                 gibbs: dict | None = None, scale_moves: list | None = None,
                 block_redraws=None, start_at_mode: bool = True,
                 exact_curvature: dict | None = None, hyper_gradient=None,
                 prior_precisions=None):
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
        self.builtin = bool(builtin)
        if not (step_target > 0 and math.isfinite(step_target)):
            raise ValueError(f"step_target: expected a positive number, got {step_target}")
        self.metric_requested = metric
        self.step_requested = bool(adapt_step) and int(num_warmup) > 0
        self._use_metric(choose_metric(metric, target.dim, self.gradients.is_stochastic,
                                       builtin, self.precondition))
        self.step_target = float(step_target)
        self.warmup = Warmup(int(num_warmup), bool(start_at_mode))
        self.adapter = None
        self.generator = target.generator
        self._cached_root = None  # (hessian, DenseRoot) of the dense metric in use
        self.gibbs = (GibbsRedraws(target, gibbs) if gibbs and not self.gradients.is_stochastic
                      else None)
        self.scale_moves = (SliceScaleMoves(target, scale_moves)
                            if scale_moves and not self.gradients.is_stochastic else None)
        needs_full_batch = getattr(block_redraws, "needs_full_batch", True)
        self.block_redraws = (None if needs_full_batch and self.gradients.is_stochastic
                              else block_redraws)
        self.hyper_gradient = hyper_gradient
        exact = exact_curvature_spans(target, exact_curvature or {})  # checked either way
        self.exact_curvature = exact if self.gradients.is_stochastic else []
        if prior_precisions is not None and not callable(prior_precisions):
            raise ValueError(f"prior_precisions: expected a function of the constrained values "
                             f"(a model's prior_precisions), got {type(prior_precisions).__name__}")
        self.prior_cap = (None if prior_precisions is None
                          else PriorStepCap(target, prior_precisions))

    def start_away_from_mode(self) -> None:
        """The chains start away from a mode after all (a MAP start that did not converge):
        burn-in re-estimates the curvature early as well (``EARLY_ADAPT_FRACTIONS``)."""
        self.warmup = replace(self.warmup, start_at_mode=False)

    def _curvature(self, theta: torch.Tensor, t: int, variance: torch.Tensor | None,
                   grad: torch.Tensor) -> torch.Tensor:
        """``|diag H|`` by Hutchinson's method (exactly, ``shape - grad``, for the sites of
        ``exact_curvature``; ``grad`` the gradient at ``theta``), floored where the gradient
        is noisy.

        On mini-batches the floor is ``lr * V / friction`` (``V`` from
        :meth:`_gradient_variance`): it keeps ``lr * P * V / 2``, the paper's gradient-noise
        term, within the ``friction / 2`` that the friction can absorb (Chen et al., 2014,
        Sec. 3.2, need ``C >= B``). Without it, a coordinate whose one-batch estimate lands
        near zero gets a huge step: the estimate's off-diagonal noise grows as the batch
        shrinks, and on 30,000 entries of a 300^3 rank-20 tensor, 10% batches, each of three
        seeds overflowed within 8 steps.
        """
        probes = max(MIN_PROBES, PROBE_CHAINS // theta.shape[0])
        curvature = self.gradients.hessian_diag(theta, t, probes).abs()
        for span, shape in self.exact_curvature:
            curvature[span] = (shape - grad[:, span]).mean(0).clamp_min(MIN_CURVATURE)
        if variance is None:
            return curvature
        return torch.maximum(curvature, self.lr * variance / self.friction)

    def _gradient_variance(self, theta: torch.Tensor, t: int) -> torch.Tensor | None:
        """``V``: the variance ``(D,)`` of the mini-batch gradient over ``NOISE_BATCHES``
        batches at ``theta``, averaged over chains; ``None`` on full-batch gradients or when
        neither the preconditioner nor ``noise_estimate="auto"`` needs it."""
        needed = self.precondition or self.noise_estimate == "auto"
        if not (needed and self.gradients.is_stochastic):
            return None
        grads = torch.stack([self.gradients.value_and_grad(theta, t + k)[1]
                             for k in range(NOISE_BATCHES)])  # (B, C, D)
        return grads.var(0).mean(0)

    def _gradient_noise(self, precond: torch.Tensor,
                        variance: torch.Tensor | None) -> torch.Tensor:
        """``beta_hat``: half of ``lr * P * V`` (``"auto"``), or the fixed ``noise_estimate``."""
        if self.noise_estimate != "auto":
            return torch.full_like(precond, self.noise_estimate)
        if variance is None:
            return torch.zeros_like(precond)
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

    def _use_metric(self, metric: str) -> None:
        """Run under ``metric`` (``"dense"`` or ``"diag"``). A dense metric sets its step from
        the unit whitened curvature, so only the diagonal one has a :class:`StepAdapter`."""
        self.metric, self.dense = metric, metric == "dense"
        self.dense_step = self.dense and self.step_requested
        self.adapt_step = self.step_requested and not self.dense

    def _root(self, hessian: torch.Tensor) -> DenseRoot:
        """The dense metric's square root for ``hessian`` (cached: one per estimate)."""
        cached = self._cached_root
        if cached is None or cached[0] is not hessian:
            self._cached_root = (hessian, DenseRoot.from_hessian(hessian, MIN_CURVATURE))
        return self._cached_root[1]

    def _dense_scale(self) -> float:
        """Multiplier of ``lr`` under a dense metric: ``DENSE_STEP / lr`` with ``adapt_step``,
        else 1."""
        return DENSE_STEP / self.lr if self.dense_step else 1.0

    def _dense_keep(self, lr: float) -> float:
        """The velocity kept per BAOAB step at whitened step ``lr``: ``exp(-gamma sqrt(lr))``
        with ``gamma = friction / sqrt(self.lr)``, the friction per unit time that ``friction``
        sets at the user's ``lr`` (the paper's ``alpha = epsilon * gamma``, ``lr = epsilon**2``)."""
        return math.exp(-self.friction * math.sqrt(lr / self.lr))

    def init_state(self, theta: torch.Tensor) -> SGHMCState:
        """State at ``theta`` ``(C, D)`` with velocities from ``N(0, lr * P / (1 - friction / 2))``.

        The log density and gradient are evaluated on step 0's batch. Chains that start away
        from a mode (``start_at_mode`` false) first have their ``gibbs`` sites drawn from
        their conditionals given the rest of the start, so that the curvature is measured where
        the two agree: a completion's starting noise precision is ``1 / Var(y)`` whatever the
        starting factors' residual, and on a 12 x 10 x 8 CP completion whose start fitted its
        325 entries to a residual precision of 293 (standardized) the preconditioner measured
        at 1 made the chains from the starting values diverge at step 0. Not where some of
        those sites wait for the end of burn-in (Tucker's slice precisions): the noise alone
        redrawn there left the start's surplus slices fitted, at higher held-out errors, and
        one of 10 runs diverged (``benchmarks/small_data_formats.py --variants
        sghmc@init``).
        Under the diagonal
        metric, with ``precondition=True`` the preconditioner ``P`` is estimated at ``theta``
        (otherwise it is 1), and the drawn velocities carry the stationary variance of the
        discrete update, ``lr * P / (1 - friction / 2)`` (see :class:`StepAdapter`). Under
        ``metric="dense"``, or ``"auto"`` where it picked the dense metric, ``P`` is the dense
        metric from the exact negative Hessian at ``theta`` (averaged over chains); when
        ``"auto"`` finds that Hessian not identified
        (:func:`~bayestensor.infer.dense_metric.identified`) or the curvature one Laplace sd
        away too large, the sampler falls back to the diagonal metric for the whole run.

        Parameters
        ----------
        theta : tensor, shape (C, D)
            Unconstrained starting positions of ``C`` chains; copied, not modified.

        Returns
        -------
        SGHMCState
            The chains at ``theta`` with their velocities, preconditioner, gradient-noise
            estimate ``beta_hat``, log density and gradient, and fresh step-adaptation
            fields.
        """
        logp, grad = self.gradients.value_and_grad(theta, 0)
        if (self.gibbs is not None and self.gibbs.all_during_warmup
                and not self.warmup.start_at_mode):
            theta = self.gibbs.redraw(theta, grad, self.generator, warmup=True,
                                      gradient=self._gradient_at(0))
            logp, grad = self.gradients.value_and_grad(theta, 0)
        if self.dense:
            hessian = self.gradients.hessian(theta, 0)
            if self.metric_requested == "dense" or (identified(hessian)
                                                    and self._laplace_holds(theta, hessian)):
                return self._init_dense(theta, logp, grad, hessian)
            self._use_metric("diag")
        variance = self._gradient_variance(theta, 0)
        if self.precondition:
            curvature = self._curvature(theta, 0, variance, grad)
            precond = self._precond_from(curvature)
        else:
            curvature = torch.ones(theta.shape[-1], dtype=theta.dtype, device=theta.device)
            precond = curvature.clone()
        # The stationary velocity variance of the discrete update (see StepAdapter).
        v_var = self.lr * precond / (1 - self.friction / 2)
        v = v_var.sqrt() * torch.randn(theta.shape, generator=self.generator,
                                       dtype=theta.dtype, device=theta.device)
        beta_hat = self._gradient_noise(precond, variance)
        state = SGHMCState(theta.detach().clone(), v, precond, curvature, 1, beta_hat, logp,
                           grad)
        return self._with_adaptation(state)

    def _laplace_holds(self, theta: torch.Tensor, hessian: torch.Tensor) -> bool:
        """Whether the curvature one Laplace sd away, in each chain's direction, stays within
        ``DENSE_MAX_CURVATURE`` in whitened units (and the density finite there).

        A hierarchical model's funnel (a scale hyperparameter over shrunk locals) is curved
        nothing like its mode one sd away, and BAOAB at ``DENSE_STEP`` diverges there at once;
        a Gaussian's whitened curvature is 1 everywhere.
        """
        root = self._root(hessian)
        noise = torch.randn(theta.shape, generator=self.generator, dtype=theta.dtype,
                            device=theta.device)
        for point in theta + root.color(noise):
            white = root.root.T @ self.gradients.hessian(point[None], 0) @ root.root
            if not bool(torch.isfinite(white).all()):
                return False
            lam = torch.linalg.eigvalsh(0.5 * (white + white.T).double())
            if float(lam.abs().max()) > DENSE_MAX_CURVATURE:
                return False
        return True

    def _init_dense(self, theta, logp, grad, hessian) -> SGHMCState:
        root = self._root(hessian)
        scale = self._dense_scale()
        white = torch.randn(theta.shape, generator=self.generator, dtype=theta.dtype,
                            device=theta.device)
        v = root.color(white * math.sqrt(self.lr * scale / (1 - self.friction / 2)))
        precond = root.diagonal()
        beta_hat = self._gradient_noise(precond, self._gradient_variance(theta, 0))
        state = SGHMCState(theta.detach().clone(), v, precond, hessian.diagonal().abs(), 1,
                           beta_hat, logp, grad, hessian=hessian)
        return self._with_adaptation(state)

    def _with_adaptation(self, state: SGHMCState) -> SGHMCState:
        """The state with the step-adaptation fields it lacks (a fresh start, or a checkpoint
        written without them), and ``self.adapter`` made for its chains (also on resume)."""
        if self.dense != (state.hessian is not None):  # a resumed run keeps its metric
            self._use_metric("dense" if state.hessian is not None else "diag")
        if self.adapt_step and self.adapter is None:
            self.adapter = StepAdapter(self.target, state.theta.shape[0], self.warmup.num_warmup,
                                       self.step_target)
        if state.step_scale is not None:
            return state
        blocks = self.adapter.num_blocks if self.adapter is not None else 1
        like = state.precond
        scale = torch.full_like(like, self._dense_scale() if self.dense else 1.0)
        return replace(state, step_scale=scale, heat_sum=torch.zeros_like(like),
                       heat_steps=torch.zeros(blocks, dtype=like.dtype, device=like.device),
                       log_scale_sum=torch.zeros_like(like), log_scale_count=0)

    def spread(self, state: SGHMCState, scale: float) -> SGHMCState:
        """The state moved to ``theta + scale * sqrt(P) * N(0, 1)``, independently per chain.

        ``P`` is the inverse curvature measured at the start, so ``scale = 1`` draws each
        chain's start from the (diagonal or dense) Laplace approximation there: chains that begin
        apart let R-hat see chains that have not forgotten their start (Gelman & Rubin, 1992).
        For a user's model each coordinate of a site off the real line (a positive or bounded
        one) moves with an sd of at most ``USER_SPREAD_SD`` unconstrained units (see there).

        Parameters
        ----------
        state : SGHMCState
            The state to move, usually the one :meth:`init_state` returned.
        scale : float
            Multiplier of the Laplace standard deviations: the standard deviation of the
            move in units of ``sqrt(P)`` (under a dense metric, of its square root).

        Returns
        -------
        SGHMCState
            ``state`` with new positions and the log density and gradient there (on step 0's
            batch); velocities, preconditioner and adaptation fields are kept as they are.
        """
        noise = torch.randn(state.theta.shape, generator=self.generator,
                            dtype=state.theta.dtype, device=state.theta.device)
        if state.hessian is not None:
            root = self._root(state.hessian)
            move, sd = root.color(noise), root.diagonal().sqrt()
        else:
            move, sd = state.precond.sqrt() * noise, state.precond.sqrt()
        if not self.builtin:  # see USER_SPREAD_SD
            cap = (USER_SPREAD_SD / sd).clamp(max=1.0)
            move = move * torch.where(self.target.off_real_line(), cap, torch.ones_like(cap))
        theta = state.theta + scale * move
        logp, grad = self.gradients.value_and_grad(theta, 0)
        return replace(state, theta=theta, log_density=logp, grad=grad)

    def step(self, state: SGHMCState, t: int) -> SGHMCState:
        """One SGHMC update of every chain (step ``t``, counted from the start of burn-in).

        At the warm-up's adaptation steps the curvature is re-estimated at the current
        positions and the preconditioner updated before the move; the learning rate follows
        the warm-up ramp. The new state carries the log density and gradient at its positions.

        Parameters
        ----------
        state : SGHMCState
            Current chains; their ``grad`` (at ``state.theta``) drives the move.
        t : int
            Step number from the start of burn-in (0-based): the burn-in schedule, the step
            adaptation and the exact redraws (``gibbs``, ``block_redraws``, ``scale_moves``)
            are timed by it, and the gradient at the new positions is taken on step
            ``t + 1``'s batch.

        Returns
        -------
        SGHMCState
            A new state: positions and velocities after the update (and after any exact
            redraw due after step ``t``), the preconditioner and step sizes as adapted, and
            the log density and gradient at the new positions. ``state`` is not modified.
        """
        state = self._with_adaptation(state)
        if state.hessian is not None:
            return self._dense_step(state, t)
        precond, curvature, n_est = state.precond, state.curvature, state.n_estimates
        beta_hat, v, scale = state.beta_hat, state.v, state.step_scale
        if self.warmup.adapts_at(t):
            variance = self._gradient_variance(state.theta, t)
            if self.precondition:
                new = self._curvature(state.theta, t, variance, state.grad)
                w = LATE_ESTIMATE_WEIGHT
                curvature = (curvature * n_est + w * new) / (n_est + w)
                n_est += w
                precond = self._precond_from(curvature)
                if self.adapt_step:  # a new mass: keep the velocities' temperature
                    v = v * (precond / state.precond).sqrt()
            beta_hat = self._gradient_noise(precond, variance)
        lr = self.lr * self.warmup.lr_scale(t) * scale
        step_precond = (precond if self.prior_cap is None
                        else self.prior_cap.apply(precond, lr, state.theta))
        theta, v = sghmc_update(state.theta, v, state.grad, lr=lr, friction=self.friction,
                                precond=step_precond, beta_hat=beta_hat,
                                generator=self.generator)
        heat_sum, heat_steps = state.heat_sum, state.heat_steps
        log_sum, log_count = state.log_scale_sum, state.log_scale_count
        adapter = self.adapter
        if adapter is not None and adapter.measures_at(t):
            heat_sum, heat_steps = heat_sum + adapter.heat(v, lr * step_precond), heat_steps + 1
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
        theta, logp, grad = self._redraw(theta, logp, grad, t)
        return SGHMCState(theta, v, precond, curvature, n_est, beta_hat, logp, grad, scale,
                          heat_sum, heat_steps, log_sum, log_count)

    def _gradient_at(self, t: int):
        """The gradient of the log density on step ``t``'s batch, as a function of ``theta``
        (for the later stages of the exact redraws): ``hyper_gradient`` where given."""
        if self.hyper_gradient is not None:
            return self.hyper_gradient
        return lambda theta: self.gradients.value_and_grad(theta, t)[1]

    def _redraw(self, theta: torch.Tensor, logp: torch.Tensor, grad: torch.Tensor, t: int):
        """After step ``t``: every ``GIBBS_EVERY`` steps the ``gibbs`` sites redrawn exactly
        (in burn-in those that allow it), every ``SCALE_MOVE_EVERY`` steps the scale moves;
        with the log density and gradient at the new positions."""
        warmup = t < self.warmup.num_warmup
        redraw = (self.gibbs is not None and not (t + 1) % GIBBS_EVERY
                  and (not warmup or self.gibbs.any_during_warmup))
        blocks = (self.block_redraws is not None and not (t + 1) % GIBBS_EVERY
                  and (not warmup or getattr(self.block_redraws, "during_warmup", True)))
        move = self.scale_moves is not None and not (t + 1) % SCALE_MOVE_EVERY
        if redraw:
            theta = self.gibbs.redraw(theta, grad, self.generator, warmup=warmup,
                                      gradient=self._gradient_at(t + 1))
        if blocks:
            values = self.block_redraws.redraw(self.target.constrain(theta), self.generator)
            theta = self.target.unconstrain(values)
        if move:
            theta = self.scale_moves.move(theta, self.generator)
        if redraw or blocks or move:
            logp, grad = self.gradients.value_and_grad(theta, t + 1)
        return theta, logp, grad

    def _dense_step(self, state: SGHMCState, t: int) -> SGHMCState:
        """:meth:`step` under the dense metric: the update in whitened coordinates."""
        hessian, n_est, v = state.hessian, state.n_estimates, state.v
        precond, curvature = state.precond, state.curvature
        if self.warmup.adapts_at(t):
            new = self.gradients.hessian(state.theta, t)
            w = LATE_ESTIMATE_WEIGHT
            hessian = (hessian * n_est + w * new) / (n_est + w)
            n_est += w
            # A new mass: keep the whitened velocities, so their temperature is unchanged.
            v = self._root(hessian).color(self._root(state.hessian).whiten(v))
            precond, curvature = self._root(hessian).diagonal(), hessian.diagonal().abs()
        root = self._root(hessian)
        lr = self.lr * self.warmup.lr_scale(t) * float(state.step_scale[0])
        # BAOAB: half kick, half drift, exact friction and noise, half drift, half kick.
        white = root.whiten(v) + 0.5 * lr * root.pull_gradient(state.grad)
        theta = state.theta + 0.5 * root.color(white)
        keep = self._dense_keep(lr)
        noise = torch.randn(white.shape, generator=self.generator, dtype=white.dtype,
                            device=white.device)
        white = keep * white + math.sqrt((1 - keep ** 2) * lr) * noise
        theta = theta + 0.5 * root.color(white)
        logp, grad = self.gradients.value_and_grad(theta, t + 1)
        white = white + 0.5 * lr * root.pull_gradient(grad)
        v = root.color(white)
        theta, logp, grad = self._redraw(theta, logp, grad, t)
        return replace(state, theta=theta, v=v, precond=precond, curvature=curvature,
                       n_estimates=n_est, log_density=logp, grad=grad, hessian=hessian)

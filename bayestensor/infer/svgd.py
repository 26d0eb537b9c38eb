"""Stein variational gradient descent (Liu & Wang, NeurIPS 2016), particles as one tensor."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Iterable

import torch

from bayestensor.infer.gradients import GradientEstimator
from bayestensor.infer.kernels import BlockLayout, Kernel, get_kernel, svgd_direction
from bayestensor.infer.log_density import LogDensity

#: Momentum-Adagrad of Liu & Wang's code: weights of the old and new ``phi**2`` in ``s``, and
#: the constant added to ``sqrt(s)``.
ADAGRAD_KEEP, ADAGRAD_NEW, ADAGRAD_EPS = 0.9, 0.1, 1e-6
#: Adam's first and second moment weights (old, new) and its denominator constant.
ADAM_M_KEEP, ADAM_M_NEW = 0.9, 0.1
ADAM_S_KEEP, ADAM_S_NEW = 0.999, 0.001
ADAM_EPS = 1e-8


def adagrad_step(phi, m, s, t: int, lr: float):
    """Momentum-Adagrad: ``s <- 0.9 s + 0.1 phi**2``, ``x <- x + lr phi / (1e-6 + sqrt(s))``.

    Returns ``(update, m, s)``; ``s`` starts at ``phi**2`` on the first step.
    """
    s = ADAGRAD_KEEP * s + ADAGRAD_NEW * phi.pow(2) if t > 0 else phi.pow(2)
    return lr * phi / (ADAGRAD_EPS + s.sqrt()), m, s


def adam_step(phi, m, s, t: int, lr: float):
    """Adam's bias-corrected moments; returns ``(update, m, s)``."""
    m = ADAM_M_KEEP * m + ADAM_M_NEW * phi
    s = ADAM_S_KEEP * s + ADAM_S_NEW * phi.pow(2)
    m_hat, s_hat = m / (1 - ADAM_M_KEEP ** (t + 1)), s / (1 - ADAM_S_KEEP ** (t + 1))
    return lr * m_hat / (ADAM_EPS + s_hat.sqrt()), m, s


def sgd_step(phi, m, s, t: int, lr: float):
    """A plain step ``lr * phi``; returns ``(update, m, s)`` with the moments untouched."""
    return lr * phi, m, s


#: SVGD step rules by name: ``rule(phi, m, s, t, lr) -> (update, m, s)``.
STEP_RULES = {"adagrad": adagrad_step, "adam": adam_step, "sgd": sgd_step}
OPTIMIZERS = tuple(STEP_RULES)


@dataclass
class SVGDState:
    """Particles ``theta`` ``(n, D)``, the step rule's running moments and the metric.

    ``scale`` ``(D,)`` is the per-coordinate length unit the particles move in (``None``:
    unconstrained units); ``m`` and ``s`` are in those units.
    """

    theta: torch.Tensor
    m: torch.Tensor
    s: torch.Tensor
    log_density: torch.Tensor
    stats: dict = field(default_factory=dict)
    scale: torch.Tensor | None = None

    def to_dict(self) -> dict:
        """Plain dict of tensors (what a checkpoint may hold)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict) -> "SVGDState":
        """Inverse of :meth:`to_dict` (a checkpoint from before ``scale`` existed has none)."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})


class SVGD:
    r"""SVGD over a batched log density.

    Each step moves every particle along

    .. math:: \phi(x_i) = \frac1n \sum_j k(x_j, x_i) \nabla \log p(x_j)
              + \nabla_{x_j} k(x_j, x_i)

    (the first term drives particles to high density, the second repels them from each
    other), with a per-coordinate step rule from ``STEP_RULES``: ``"adagrad"``
    (:func:`adagrad_step`, the momentum-Adagrad of the original paper's code), ``"adam"``
    (:func:`adam_step`) or ``"sgd"`` (:func:`sgd_step`). The fixed point ``phi = 0`` does not
    depend on the step rule.

    With a per-coordinate ``scale`` (given to :meth:`init_state`), the particles move in
    ``u = theta / scale``: the kernel, ``phi`` and the step rule all work on ``u``. That is
    SVGD with a constant diagonal preconditioner, the simplest case of the matrix-valued
    kernels of Wang, Tang, Bajaj & Liu (NeurIPS 2019); the runner sets ``scale`` to the
    diagonal Laplace sd at the MAP start. It matters because the per-coordinate step rules move
    every coordinate by about ``lr`` whatever the size of ``phi``: in unconstrained units a
    site of posterior sd 1e-8 would jitter by ``lr`` forever, in ``u`` it jitters by
    ``lr`` sds.

    Parameters
    ----------
    target : LogDensity
    kernel : {"rbf", "imq"} or Kernel
        Kernel with the median-heuristic bandwidth by default.
    blocks : tensor of int, optional
        Block id per coordinate (see :mod:`bayestensor.infer.kernels`); all zeros gives the
        classic isotropic kernel.
    lr : float
        Initial step size (> 0).
    final_lr_ratio : float
        The step size decays geometrically to ``lr * final_lr_ratio`` over ``num_steps``:
        the per-coordinate step rules move every coordinate by about ``lr`` whatever the size
        of ``phi``, so without decay particles jitter by ``lr`` around the fixed point.
    num_steps : int
        Planned number of steps (for the decay).
    optimizer : {"adagrad", "adam", "sgd"}
    batch_size : int, optional
        Sub-sample size of the model's sub-sampled plates.
    batches : iterable, optional
        Mini-batches as model-argument tuples, cycled through.
    """

    name = "svgd"

    def __init__(self, target: LogDensity, kernel: str | Kernel = "rbf", blocks=None,
                 lr: float = 0.05, optimizer: str = "adagrad", batch_size: int | None = None,
                 batches: Iterable | None = None, final_lr_ratio: float = 0.01,
                 num_steps: int = 1000):
        if not 0 < final_lr_ratio <= 1:
            raise ValueError(f"final_lr_ratio: expected a number in (0, 1], got {final_lr_ratio}")
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr: expected a positive step size, got {lr}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {optimizer!r}")
        self.target = target
        self.gradients = GradientEstimator(target, batch_size, batches)
        self.kernel: Kernel = get_kernel(kernel)
        if blocks is None:
            blocks = torch.zeros(target.dim, dtype=torch.long)
        blocks = torch.as_tensor(blocks, dtype=torch.long)
        if blocks.shape != (target.dim,):
            raise ValueError(f"blocks: expected one block id per coordinate ({target.dim}), "
                             f"got shape {tuple(blocks.shape)}")
        self.layout = BlockLayout(blocks, device=target.device)
        self.lr = float(lr)
        self.final_lr_ratio = float(final_lr_ratio)
        self.num_steps = int(num_steps)
        self.optimizer = optimizer
        self.step_rule = STEP_RULES[optimizer]
        self.generator = target.generator

    def init_state(self, theta: torch.Tensor, scale: torch.Tensor | None = None) -> SVGDState:
        """State of particles ``theta`` ``(n, D)`` (``n >= 2``) with zero step-rule moments.

        ``scale`` ``(D,)``, positive: the length unit of each coordinate (see the class
        docstring); ``None`` moves the particles in unconstrained units.

        Parameters
        ----------
        theta : tensor, shape (n, D)
            Unconstrained starting positions of ``n`` particles; copied, not modified.
        scale : array_like, shape (D,), optional
            Positive length unit per coordinate, converted to ``theta``'s dtype and device.

        Returns
        -------
        SVGDState
            The particles at ``theta`` with zero moments ``m`` and ``s`` ``(n, D)``, a zero
            placeholder ``log_density`` ``(n,)`` (nothing is evaluated here) and ``scale``.

        Raises
        ------
        ValueError
            If there are fewer than 2 particles, or ``scale`` does not hold ``D`` positive
            numbers.
        """
        if theta.shape[0] < 2:
            raise ValueError(f"num_particles: SVGD needs at least 2 particles, got {theta.shape[0]}")
        if scale is not None:
            scale = torch.as_tensor(scale, dtype=theta.dtype, device=theta.device)
            if scale.shape != theta.shape[-1:] or not bool((scale > 0).all()):
                raise ValueError(f"scale: expected {theta.shape[-1]} positive numbers, got shape "
                                 f"{tuple(scale.shape)}")
        zeros = torch.zeros_like(theta)
        return SVGDState(theta.detach().clone(), zeros, zeros.clone(),
                         torch.zeros(theta.shape[0], dtype=theta.dtype, device=theta.device),
                         scale=scale)

    def step(self, state: SVGDState, t: int) -> SVGDState:
        """One SVGD move of all particles.

        The gradient is taken on step ``t``'s batch; ``phi`` is computed in the units of
        ``state.scale``, and the step size decays geometrically from ``lr`` at ``t = 0`` to
        ``lr * final_lr_ratio`` at ``t = num_steps - 1`` (and stays there after).

        Parameters
        ----------
        state : SVGDState
            Current particles and step-rule moments.
        t : int
            Step number (0-based): selects the mini-batch, sets the step size and, for the
            step rules, the first-step and bias-correction terms.

        Returns
        -------
        SVGDState
            A new state: the moved particles and updated moments, with ``log_density``
            ``(n,)`` evaluated at the particles *before* the move (on step ``t``'s batch),
            ``stats`` holding ``"repulsion_ratio"`` (the size of the repulsive term relative to
            the driving one, see :func:`~bayestensor.infer.kernels.svgd_direction`) and the
            same ``scale``.
        """
        logp, grad = self.gradients.value_and_grad(state.theta, t)
        scale = 1.0 if state.scale is None else state.scale
        phi, stats = svgd_direction(state.theta / scale, grad * scale, self.kernel, self.layout)
        lr = self.lr * self.final_lr_ratio ** min(t / max(self.num_steps - 1, 1), 1.0)
        update, m, s = self.step_rule(phi, state.m, state.s, t, lr)
        return SVGDState(state.theta + update * scale, m, s, logp, stats, state.scale)

    def full_batch_stein_ratio(self, state: SVGDState) -> float | None:
        """The ``stein_ratio`` of :func:`~bayestensor.infer.kernels.svgd_direction` at
        ``state``'s particles on all the data (:meth:`GradientEstimator.full_gradient`):
        whether particles moved on mini-batches sit near the full posterior's fixed point,
        which a mini-batch's ratio cannot tell (its gradient noise alone keeps it high).
        ``None`` where the full gradient is not defined (a user's ``batches``)."""
        grad = self.gradients.full_gradient(state.theta)
        if grad is None:
            return None
        scale = 1.0 if state.scale is None else state.scale
        _, stats = svgd_direction(state.theta / scale, grad * scale, self.kernel, self.layout)
        return float(stats["stein_ratio"])

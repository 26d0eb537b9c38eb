"""Stein variational gradient descent (Liu & Wang, NeurIPS 2016), particles as one tensor."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import torch

from bayestensor.infer.kernels import BlockLayout, Kernel, get_kernel, svgd_direction
from bayestensor.infer.log_density import LogDensity

OPTIMIZERS = ("adagrad", "adam", "sgd")


@dataclass
class SVGDState:
    """Particles ``theta`` ``(n, D)`` and the step rule's running moments."""

    theta: torch.Tensor
    m: torch.Tensor
    s: torch.Tensor
    log_density: torch.Tensor
    stats: dict = field(default_factory=dict)


class SVGD:
    r"""SVGD over a batched potential.

    Each step moves every particle along

    .. math:: \phi(x_i) = \frac1n \sum_j k(x_j, x_i) \nabla \log p(x_j)
              + \nabla_{x_j} k(x_j, x_i)

    (the first term drives particles to high density, the second repels them from each
    other), with a per-coordinate step: ``"adagrad"`` is the momentum-Adagrad of the original
    paper's code (``s <- 0.9 s + 0.1 phi**2``, ``x <- x + lr * phi / (1e-6 + sqrt(s))``),
    ``"adam"`` Adam's bias-corrected moments, ``"sgd"`` a plain step. The fixed point
    ``phi = 0`` does not depend on the step rule.

    Parameters
    ----------
    potential : LogDensity
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

    def __init__(self, potential: LogDensity, kernel: str | Kernel = "rbf", blocks=None,
                 lr: float = 0.05, optimizer: str = "adagrad", batch_size: int | None = None,
                 batches: Iterable | None = None, final_lr_ratio: float = 0.01,
                 num_steps: int = 1000):
        if not 0 < final_lr_ratio <= 1:
            raise ValueError(f"final_lr_ratio: expected a number in (0, 1], got {final_lr_ratio}")
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr: expected a positive step size, got {lr}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {optimizer!r}")
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
        self.potential = potential
        self.kernel: Kernel = get_kernel(kernel)
        if blocks is None:
            blocks = torch.zeros(potential.dim, dtype=torch.long)
        blocks = torch.as_tensor(blocks, dtype=torch.long)
        if blocks.shape != (potential.dim,):
            raise ValueError(f"blocks: expected one block id per coordinate ({potential.dim}), "
                             f"got shape {tuple(blocks.shape)}")
        self.layout = BlockLayout(blocks)
        self.lr = float(lr)
        self.final_lr_ratio = float(final_lr_ratio)
        self.num_steps = int(num_steps)
        self.optimizer = optimizer
        self.batch_size = batch_size
        self._batches = None if batches is None else list(batches)
        self.generator = potential.generator

    def _gradient(self, theta, t):
        if self._batches is not None:
            args = self._batches[t % len(self._batches)]
            args = args if isinstance(args, tuple) else (args,)
            return self.potential.value_and_grad(theta, model_args=args)
        return self.potential.value_and_grad(theta, self.potential.draw_subsample(self.batch_size))

    def init_state(self, theta: torch.Tensor) -> SVGDState:
        if theta.shape[0] < 2:
            raise ValueError(f"num_particles: SVGD needs at least 2 particles, got {theta.shape[0]}")
        zeros = torch.zeros_like(theta)
        return SVGDState(theta.detach().clone(), zeros, zeros.clone(),
                         torch.zeros(theta.shape[0], dtype=theta.dtype))

    def step(self, state: SVGDState, t: int) -> SVGDState:
        """One SVGD move of all particles."""
        logp, grad = self._gradient(state.theta, t)
        phi, stats = svgd_direction(state.theta, grad, self.kernel, self.layout)
        m, s = state.m, state.s
        lr = self.lr * self.final_lr_ratio ** min(t / max(self.num_steps - 1, 1), 1.0)
        if self.optimizer == "adagrad":
            s = 0.9 * s + 0.1 * phi.pow(2) if t > 0 else phi.pow(2)
            update = lr * phi / (1e-6 + s.sqrt())
        elif self.optimizer == "adam":
            m = 0.9 * m + 0.1 * phi
            s = 0.999 * s + 0.001 * phi.pow(2)
            m_hat, s_hat = m / (1 - 0.9 ** (t + 1)), s / (1 - 0.999 ** (t + 1))
            update = lr * m_hat / (1e-8 + s_hat.sqrt())
        else:
            update = lr * phi
        return SVGDState(state.theta + update, m, s, logp, stats)

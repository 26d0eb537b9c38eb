"""Closed-form log densities for the built-in models' fast path.

The Pyro models build ``dist.Normal`` / ``dist.Gamma`` objects per site; the fast path
(:meth:`BayesModel.fast_log_joint`) evaluates the same densities thousands of times. Building
the distribution objects, broadcasting their parameters to every entry and the autograd nodes
that go with them cost as much as the arithmetic on small models (a 7x8x9 CP regression:
0.58 ms of 1.5 ms per evaluation with its gradient went to the prior's distribution objects),
so the formulas are written out here. Each function sums over the last ``event_dims`` axes;
the tests compare every one with Pyro's trace of the same model.
"""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2 * math.pi)


def event_sum(x: torch.Tensor, event_dims: int) -> torch.Tensor:
    """Sum over the last ``event_dims`` axes."""
    return x.reshape(x.shape[: x.ndim - event_dims] + (-1,)).sum(-1) if event_dims else x


def gamma_log_density(x: torch.Tensor, a: float, b: float, event_dims: int = 0) -> torch.Tensor:
    """``log Gamma(x | shape a, rate b)``, summed over the last ``event_dims`` axes."""
    a, b = float(a), float(b)
    count = math.prod(x.shape[x.ndim - event_dims:])
    const = count * (a * math.log(b) - math.lgamma(a))
    return event_sum((a - 1) * x.log() - b * x, event_dims) + const


def half_cauchy_log_density(x: torch.Tensor, scale: float, event_dims: int = 0) -> torch.Tensor:
    """``log HalfCauchy(x | scale)``, summed over the last ``event_dims`` axes."""
    scale = float(scale)
    count = math.prod(x.shape[x.ndim - event_dims:])
    return event_sum(-torch.log1p((x / scale).square()), event_dims) + count * math.log(
        2 / (math.pi * scale))


def log_uniform_log_density(x: torch.Tensor, low: float, high: float,
                            event_dims: int = 0) -> torch.Tensor:
    """``log p(x) = -log x - log log(high / low)`` on ``[low, high]`` (the support is not
    checked, as in the distribution with validation off)."""
    count = math.prod(x.shape[x.ndim - event_dims:])
    return event_sum(-x.log(), event_dims) - count * math.log(math.log(float(high) / float(low)))


def centered_normal_log_density(x: torch.Tensor, precision: torch.Tensor | None,
                                log_variance_sum: torch.Tensor | float,
                                event_dims: int) -> torch.Tensor:
    """``sum log Normal(x | 0, 1 / precision)`` over the last ``event_dims`` axes.

    ``precision`` broadcasts against ``x`` (``None``: unit variance) and is never expanded to
    its shape; ``log_variance_sum`` is the sum of ``log(1 / precision)`` over those entries,
    which the caller forms from the factors of the precision without broadcasting them.
    """
    count = math.prod(x.shape[x.ndim - event_dims:])
    squares = x.square() if precision is None else x.square() * precision
    return -0.5 * (event_sum(squares, event_dims) + log_variance_sum + count * LOG_2PI)


def gaussian_log_likelihood(y: torch.Tensor, mu: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """``sum_i log N(y_i | mu_i, 1 / tau)`` over the last axis, for precisions ``tau`` of shape
    ``mu.shape[:-1]``.

    ``dist.Normal(mu, tau**-0.5).log_prob(y).sum(-1)`` broadcasts the scale and its log over
    every entry; this form touches the ``(samples, entries)`` array three times (difference,
    square, sum), which matters when a step evaluates 100 particles at thousands of entries.
    """
    n = y.shape[-1]
    squares = (y - mu).square_().sum(-1)
    return 0.5 * n * (tau.log() - LOG_2PI) - 0.5 * tau * squares

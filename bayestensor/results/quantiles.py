"""Quantiles of an equal-weight mixture of normals, per column: predictive intervals.

The predictive distribution of an entry given ``S`` posterior draws is the mixture
``mean_s Normal(mu[s], sd[s])``. Its ``p``-quantile lies between the smallest and the largest
component quantile ``mu[s] + sd[s] * z_p`` (the mixture CDF there is at most, resp. at least,
``p``), and the mixture is close to a normal. Halley's method, started at the quantile of the
moment-matched normal and kept inside that bracket (bisection where a step leaves it), needs
two or three evaluations of the mixture CDF; its derivatives cost little next to the CDF.
Columns are solved in chunks so that memory stays bounded for millions of entries.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from bayestensor.checks import is_real

#: Most draws x columns evaluated at once (float64 temporaries of 2 MB each, which stay in cache).
CHUNK_ELEMENTS = 1 << 18
#: A column stops when the error estimate of its last Halley step falls below this fraction
#: of its scale (the mixture's sd).
STEP_TOL = 1e-12
#: ... or when its bracket is this narrow (point masses: the CDF jumps, bisection finishes).
BRACKET_TOL = 1e-13
#: More than enough for bisection of a bracket down to ``BRACKET_TOL`` in float64.
MAX_ITER = 200
#: Levels at least this far from 0 and 1 use ``erf`` for the normal CDF: several times faster
#: than ``ndtr``, and its absolute error (~1e-16) moves such a quantile by under 1e-10 sd.
ERF_MIN_TAIL = 1e-6
#: Smallest component sd, relative to the data's scale: a zero sd (a point mass) is raised to it.
SD_FLOOR = 1e-30
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)


def normal_mixture_quantiles(mu, sd, probs, chunk_elements: int = CHUNK_ELEMENTS) -> list[torch.Tensor]:
    """Quantiles of the equal-weight mixture ``mean_s Normal(mu[s], sd[s])`` per column.

    Parameters
    ----------
    mu : (S, n) tensor or array
        Component means: one row per posterior draw, one column per entry.
    sd : (S,) or (S, n) tensor or array
        Component sds, >= 0 (a zero sd is a point mass at ``mu``).
    probs : sequence of float in (0, 1)
        Levels; all are solved in one pass over the columns.
    chunk_elements : int
        Most ``S x columns`` elements held at once.

    Returns
    -------
    list of (n,) float64 tensors
        One per level: the smallest ``x`` with mixture CDF ``>= p``, exact to about 1e-12 of
        the mixture's sd (deterministic, unlike quantiles of random draws).

    Examples
    --------
    >>> import torch
    >>> lo, hi = normal_mixture_quantiles(torch.zeros(1, 2), torch.ones(1), [0.025, 0.975])
    >>> [round(v, 4) for v in hi.tolist()]
    [1.96, 1.96]
    """
    mu, sd, p = _checked(mu, sd, probs)
    if not isinstance(chunk_elements, int) or chunk_elements < 1:
        raise ValueError(f"chunk_elements: expected an integer >= 1, got {chunk_elements!r}")
    n_draws, n = mu.shape
    # A point mass becomes a normal of negligible sd: small enough, and 1 / sd stays finite.
    floor = SD_FLOOR * max(float(mu.abs().max()), float(sd.max()), 1.0)
    out = torch.empty(len(p), n, dtype=torch.float64)
    step = max(1, chunk_elements // n_draws)
    for start in range(0, n, step):
        cols = slice(start, min(n, start + step))
        sd_cols = sd if sd.shape[1] == 1 else sd[:, cols]
        out[:, cols] = _solve_chunk(mu[:, cols].contiguous(), sd_cols.contiguous(),
                                    floor, p.tolist())
    return list(out)


def _checked(mu, sd, probs):
    """``mu`` (S, n), ``sd`` (S, 1) or (S, n) in float64 and the levels, or a ValueError."""
    mu = torch.as_tensor(mu).detach().to("cpu", torch.float64)
    if mu.ndim != 2 or mu.shape[0] < 1:
        raise ValueError(f"mu: expected a (draws, entries) array, got shape {tuple(mu.shape)}")
    sd = torch.as_tensor(sd).detach().to("cpu", torch.float64)
    if sd.ndim == 1:
        sd = sd.unsqueeze(-1)
    if sd.ndim != 2 or sd.shape[0] != mu.shape[0] or sd.shape[1] not in (1, mu.shape[1]):
        raise ValueError(f"sd: expected shape ({mu.shape[0]},) or {tuple(mu.shape)} to match mu, "
                         f"got {tuple(sd.shape)}")
    if not (torch.isfinite(mu).all() and torch.isfinite(sd).all() and (sd >= 0).all()):
        raise ValueError("mu, sd: expected finite values and sd >= 0")
    if isinstance(probs, (str, bytes)) or not all(is_real(v) and 0 < v < 1 for v in np.ravel(probs)):
        raise ValueError(f"probs: expected a sequence of numbers in (0, 1), got {probs!r}")
    return mu, sd, torch.as_tensor(np.ravel(probs), dtype=torch.float64)


def _solve_chunk(mu: torch.Tensor, sd: torch.Tensor, floor: float, probs: list[float]) -> torch.Tensor:
    """``(len(probs), n)`` quantiles of the mixtures of the columns of ``mu`` and ``sd``."""
    mean = mu.mean(0)
    scale = (mu.var(0, correction=0) + (sd * sd).mean(0)).sqrt()
    # The CDF is evaluated as erf(w) with w = x * a - b, a = 1 / (sd * sqrt 2), b = mu * a.
    a = _INV_SQRT_2 / sd.clamp_min(floor)
    b = mu * a
    out = torch.empty(len(probs), mu.shape[1], dtype=torch.float64)
    for k, p in enumerate(probs):
        z = float(torch.special.ndtri(torch.tensor(p, dtype=torch.float64)))
        component_q = mu + sd * z
        lo, hi = component_q.amin(0), component_q.amax(0)
        start = (mean + scale * z).clamp(lo, hi)
        out[k] = _solve(a, b, p, start, lo, hi, scale)
    return out


def _solve(a, b, p: float, x, lo, hi, scale) -> torch.Tensor:
    """The ``p``-quantile of each column's mixture: bracketed Halley, bisection as fallback."""
    result = lo.clone()  # the answer where lo == hi (one draw, or identical components)
    active = torch.nonzero(hi > lo).flatten()
    if active.numel() < len(lo):
        a, b, x, lo, hi, scale = _take(active, a, b, x, lo, hi, scale)
    for _ in range(MAX_ITER):
        if active.numel() == 0:
            break
        gap, d1, d2, d3 = _cdf_and_derivatives(x, a, b, p)
        lo = torch.where(gap < 0, x, lo)
        hi = torch.where(gap > 0, x, hi)
        newton = gap / d1
        step = -newton / (1 - 0.5 * newton * d2 / d1)
        ok = torch.isfinite(step) & (x + step >= lo) & (x + step <= hi)
        # Halley's error is about (F2**2 / (4 F1**2) - F3 / (6 F1)) * step**3: bounded above.
        error = ((d2 / d1) ** 2 + (d3 / d1).abs()) * step.abs() ** 3
        x = torch.where(ok, x + step, 0.5 * (lo + hi))
        done = (gap == 0) | (ok & (error <= STEP_TOL * scale)) | (hi - lo <= BRACKET_TOL * scale)
        result[active[done]] = x[done]
        if done.any():
            keep = torch.nonzero(~done).flatten()
            active = active[keep]
            a, b, x, lo, hi, scale = _take(keep, a, b, x, lo, hi, scale)
    result[active] = x  # empty unless MAX_ITER ran out
    return result


def _cdf_and_derivatives(x, a, b, p: float):
    """Per column: the mixture's ``F(x) - p`` and its first three derivatives ``F1, F2, F3``.

    With ``w = x * a - b`` (the standardized point over sqrt 2) and ``e = exp(-w**2)``:
    ``F = mean(Phi(sqrt(2) w))``, ``F1 = mean(e a) / sqrt(pi)``,
    ``F2 = -2 mean(w e a**2) / sqrt(pi)``, ``F3 = 2 mean((2 w**2 - 1) e a**3) / sqrt(pi)``.
    """
    w = torch.addcmul(-b, a, x)
    if min(p, 1 - p) >= ERF_MIN_TAIL:
        cdf = 0.5 + 0.5 * torch.erf(w).mean(0)
    else:
        cdf = torch.special.ndtr(w * math.sqrt(2.0)).mean(0)
    w2 = w * w
    e = torch.exp(w2.neg())
    a3 = a * a * a
    d1 = _INV_SQRT_PI * _weighted_mean(e, a)
    d2 = -2 * _INV_SQRT_PI * _weighted_mean(w * e, a * a)
    d3 = 2 * _INV_SQRT_PI * (2 * _weighted_mean(w2 * e, a3) - _weighted_mean(e, a3))
    return cdf - p, d1, d2, d3


def _weighted_mean(values, weights):
    """``mean_s(values[s] * weights[s])`` per column; a shared weight per row is a product."""
    if weights.shape[1] == 1:
        return weights[:, 0] @ values / values.shape[0]
    return (values * weights).mean(0)


def _take(idx, a, b, *cols):
    """Columns ``idx`` of ``a`` (unless shared) and ``b``, and entries ``idx`` of the rest."""
    a = a if a.shape[1] == 1 else a[:, idx]
    return (a, b[:, idx], *(c[idx] for c in cols))

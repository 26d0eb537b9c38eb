"""Quantiles of an equal-weight mixture of normals, per column: predictive intervals.

The predictive distribution of an entry given ``S`` posterior draws is the mixture
``mean_s Normal(mu[s], sd[s])``. Its ``p``-quantile lies between the smallest and the largest
component quantile ``mu[s] + sd[s] * z_p`` (the mixture CDF there is at most, resp. at least,
``p``), and the mixture is close to a normal. Halley's method, started at the quantile of the
Cornish-Fisher expansion (normal, skewness and kurtosis corrections) and kept inside that
bracket (bisection where a step leaves it), needs one to three evaluations of the mixture CDF;
its derivatives cost little next to the CDF.
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
STEP_TOL = 1e-10
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
    mu_min, mu_max = (float(v) for v in torch.aminmax(mu))
    if not isinstance(chunk_elements, int) or chunk_elements < 1:
        raise ValueError(f"chunk_elements: expected an integer >= 1, got {chunk_elements!r}")
    n_draws, n = mu.shape
    # A point mass becomes a normal of negligible sd: small enough, and 1 / sd stays finite.
    floor = SD_FLOOR * max(-mu_min, mu_max, float(sd.max()), 1.0)
    out = torch.empty(len(p), n, dtype=torch.float64)
    step = max(1, chunk_elements // n_draws)
    # Buffers reused by every chunk: fresh multi-megabyte temporaries would each be mapped and
    # zeroed by the system again, which costs more than the arithmetic on them.
    work = [torch.empty(n_draws * min(step, n), dtype=torch.float64) for _ in range(3)]
    for start in range(0, n, step):
        cols = slice(start, min(n, start + step))
        sd_cols = sd if sd.shape[1] == 1 else sd[:, cols]
        out[:, cols] = _solve_chunk(mu[:, cols].to(torch.float64).contiguous(),
                                    sd_cols.contiguous(), floor,
                                    p.tolist(), work)
    return list(out)


def normal_mixture_cdf(mu, sd, x, chunk_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """The CDF of the equal-weight mixture ``mean_s Normal(mu[s], sd[s])`` at ``x``, per column.

    At held-out values this is the probability integral transform (PIT): uniform on (0, 1)
    when the predictive distribution is calibrated, and ``x`` lies inside the central interval
    of level ``L`` exactly when its PIT is within ``L / 2`` of 0.5, so the coverage of every
    level needs this one pass instead of two quantiles per level.

    Parameters
    ----------
    mu : (S, n) tensor or array
    sd : (S,) or (S, n) tensor or array
        Component sds, >= 0 (a zero sd is a point mass).
    x : (n,) tensor or array
        One point per column.
    chunk_elements : int
        Most ``S x columns`` elements held at once.

    Returns
    -------
    (n,) float64 tensor

    Examples
    --------
    >>> import torch
    >>> round(normal_mixture_cdf(torch.zeros(2, 1), torch.ones(2), torch.tensor([1.96])).item(), 6)
    0.975002
    """
    mu, sd, _ = _checked(mu, sd, [0.5])
    x = torch.as_tensor(x).detach().to("cpu", torch.float64).reshape(-1)
    if x.shape[0] != mu.shape[1] or not bool(torch.isfinite(x).all()):
        raise ValueError(f"x: expected {mu.shape[1]} finite values (one per column of mu), got "
                         f"shape {tuple(x.shape)}")
    if not isinstance(chunk_elements, int) or chunk_elements < 1:
        raise ValueError(f"chunk_elements: expected an integer >= 1, got {chunk_elements!r}")
    floor = SD_FLOOR * max(float(mu.abs().max()), float(sd.max()), 1.0)
    step = max(1, chunk_elements // mu.shape[0])
    out = torch.empty(mu.shape[1], dtype=torch.float64)
    for start in range(0, mu.shape[1], step):
        cols = slice(start, start + step)
        sd_cols = (sd if sd.shape[1] == 1 else sd[:, cols]).clamp_min(floor)
        out[cols] = torch.special.ndtr((x[cols] - mu[:, cols]) / sd_cols).mean(0)
    return out


def _checked(mu, sd, probs):
    """``mu`` (S, n) in float32 or float64 (converted chunk by chunk where it is used: a
    whole float64 copy of 1,000 draws x 100,000 entries is 800 MB, and took a third of the
    quantiles' time), ``sd`` (S, 1) or (S, n) in float64 and the levels, or a ValueError."""
    mu = torch.as_tensor(mu).detach().cpu()
    if mu.dtype not in (torch.float32, torch.float64):
        mu = mu.to(torch.float64)
    if mu.ndim != 2 or mu.shape[0] < 1:
        raise ValueError(f"mu: expected a (draws, entries) array, got shape {tuple(mu.shape)}")
    sd = torch.as_tensor(sd).detach().to("cpu", torch.float64)
    if sd.ndim == 1:
        sd = sd.unsqueeze(-1)
    if sd.ndim != 2 or sd.shape[0] != mu.shape[0] or sd.shape[1] not in (1, mu.shape[1]):
        raise ValueError(f"sd: expected shape ({mu.shape[0]},) or {tuple(mu.shape)} to match mu, "
                         f"got {tuple(sd.shape)}")
    extremes = [float(v) for v in (*torch.aminmax(mu), *torch.aminmax(sd))]  # NaN propagates
    if not (all(map(math.isfinite, extremes)) and extremes[2] >= 0):
        raise ValueError("mu, sd: expected finite values and sd >= 0")
    if isinstance(probs, (str, bytes)) or not all(is_real(v) and 0 < v < 1 for v in np.ravel(probs)):
        raise ValueError(f"probs: expected a sequence of numbers in (0, 1), got {probs!r}")
    return mu, sd, torch.as_tensor(np.ravel(probs), dtype=torch.float64)


def _solve_chunk(mu, sd, floor: float, probs: list[float], work) -> torch.Tensor:
    """``(len(probs), n)`` quantiles of the mixtures of the columns of ``mu`` and ``sd``."""
    mean, scale, skew, kurt = _moments(mu, sd, work)
    # The CDF is evaluated as erf(w) with w = x * a + nb, a = 1 / (sd * sqrt 2), nb = -mu * a.
    a = _INV_SQRT_2 / sd.clamp_min(floor)
    nb = torch.mul(mu, a).neg_()
    out = torch.empty(len(probs), mu.shape[1], dtype=torch.float64)
    for k, p in enumerate(probs):
        z = float(torch.special.ndtri(torch.tensor(p, dtype=torch.float64)))
        component_q = torch.add(mu, sd, alpha=z, out=_view(work[0], mu.shape))
        lo, hi = component_q.amin(0), component_q.amax(0)
        # Cornish-Fisher: the normal quantile corrected for the mixture's skewness and kurtosis
        w = z + (z * z - 1) * skew / 6 + (z**3 - 3 * z) * kurt / 24 - (2 * z**3 - 5 * z) * skew**2 / 36
        start = (mean + scale * w).clamp(lo, hi)
        out[k] = _solve(a, nb, p, start, lo, hi, scale, work)
    return out


def _moments(mu, sd, work):
    """Per column: the mixture's mean, sd, skewness and excess kurtosis."""
    mean = mu.mean(0)
    dev = torch.sub(mu, mean, out=_view(work[0], mu.shape))
    dev2 = torch.mul(dev, dev, out=_view(work[1], mu.shape))
    third = torch.mul(dev2, dev, out=_view(work[2], mu.shape)).mean(0)
    fourth = torch.mul(dev2, dev2, out=_view(work[2], mu.shape)).mean(0)
    var_s = sd * sd
    var = (dev2.mean(0) + var_s.mean(0)).clamp_min(torch.finfo(torch.float64).tiny)
    third += 3 * _weighted_mean(dev, var_s)
    fourth += 6 * _weighted_mean(dev2, var_s) + 3 * (var_s * var_s).mean(0)
    return mean, var.sqrt(), third / var**1.5, fourth / var**2 - 3


def _solve(a, nb, p: float, x, lo, hi, scale, work) -> torch.Tensor:
    """The ``p``-quantile of each column's mixture: bracketed Halley, bisection as fallback."""
    result = lo.clone()  # the answer where lo == hi (one draw, or identical components)
    active = torch.nonzero(hi > lo).flatten()
    if active.numel() < len(lo):
        a, nb, x, lo, hi, scale = _take(active, a, nb, x, lo, hi, scale)
    for _ in range(MAX_ITER):
        if active.numel() == 0:
            break
        gap, d1, d2, d3 = _cdf_and_derivatives(x, a, nb, p, work)
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
            a, nb, x, lo, hi, scale = _take(keep, a, nb, x, lo, hi, scale)
    result[active] = x  # empty unless MAX_ITER ran out
    return result


def _cdf_and_derivatives(x, a, nb, p: float, work):
    """Per column: the mixture's ``F(x) - p`` and its first three derivatives ``F1, F2, F3``.

    With ``w = x * a + nb`` (the standardized point over sqrt 2) and ``e = exp(-w**2)``:
    ``F = mean(Phi(sqrt(2) w))``, ``F1 = mean(e a) / sqrt(pi)``,
    ``F2 = -2 mean(w e a**2) / sqrt(pi)``, ``F3 = 2 mean((2 w**2 - 1) e a**3) / sqrt(pi)``.
    """
    w, t1, t2 = (_view(buf, nb.shape) for buf in work)
    torch.addcmul(nb, a, x, out=w)
    if min(p, 1 - p) >= ERF_MIN_TAIL:
        cdf = 0.5 + 0.5 * torch.erf(w, out=t1).mean(0)
    else:
        cdf = torch.special.ndtr(torch.mul(w, math.sqrt(2.0), out=t1), out=t1).mean(0)
    e = torch.mul(w, w, out=t1).neg_().exp_()
    we = torch.mul(w, e, out=t2)
    a2 = a * a
    d1 = _INV_SQRT_PI * _weighted_mean(e, a)
    d2 = -2 * _INV_SQRT_PI * _weighted_mean(we, a2)
    d3 = 2 * _INV_SQRT_PI * (2 * _weighted_mean(we.mul_(w), a2 * a) - _weighted_mean(e, a2 * a))
    return cdf - p, d1, d2, d3


def _weighted_mean(values, weights):
    """``mean_s(values[s] * weights[s])`` per column; a shared weight per row is a product."""
    if weights.shape[1] == 1:
        return weights[:, 0] @ values / values.shape[0]
    return (values * weights).mean(0)


def _view(buffer, shape):
    """The first ``prod(shape)`` elements of a flat buffer, as a contiguous tensor of ``shape``."""
    return buffer[: shape[0] * shape[1]].view(shape)


def _take(idx, a, nb, *cols):
    """Columns ``idx`` of ``a`` (unless shared) and ``nb``, and entries ``idx`` of the rest."""
    a = a if a.shape[1] == 1 else a[:, idx]
    return (a, nb[:, idx], *(c[idx] for c in cols))

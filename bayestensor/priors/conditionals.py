"""Full conditionals of precisions and scales, in the form SGHMC's exact redraws use.

Each conditional draws a positive site ``x`` afresh given the current value and the gradient
of the log density on ``u = log x`` (the samplers' coordinate), which carries the one quantity
the conditional needs from the rest of the model (a residual or slice sum of squares). See
:mod:`bayestensor.infer.gibbs` for where they are used and what they measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import special


def check_stage(name: str, stage) -> None:
    """``ValueError`` naming the site unless ``stage`` is a non-negative integer."""
    if isinstance(stage, bool) or not isinstance(stage, (int, np.integer)) or stage < 0:
        raise ValueError(f"gibbs: the stage of {name!r} must be a non-negative integer, "
                         f"got {stage!r}")


def check_positive(name: str, cond, keys) -> None:
    """``ValueError`` naming the site unless each of ``cond``'s fields ``keys`` is a positive
    finite number."""
    for key in keys:
        value = float(getattr(cond, key))
        if not (value > 0 and np.isfinite(value)):
            raise ValueError(f"gibbs: the {key} of {name!r} must be a positive number, "
                             f"got {value}")


@dataclass(frozen=True)
class GammaConditional:
    """A positive site ``x`` (sampled as ``log x``) whose full conditional is
    ``Gamma(shape, rate)``, ``shape`` fixed by the model's structure."""

    shape: float
    #: Redrawn from the first step of burn-in (the default): TT's slice precisions need it
    #: (without these redraws in burn-in a 30^3 TT grid case had R-hat 1.036 and ESS 227, with
    #: them 1.010 and 610; ``benchmarks/sghmc_mixing.py``, seed 0), and Tucker's, redrawn
    #: only after burn-in, overflowed on data that barely determine the tensor; from the
    #: starting values Tucker's wait for the end of burn-in (:meth:`LowRankPrior.conditionals
    #: <bayestensor.priors.LowRankPrior.conditionals>`).
    during_warmup: bool = True
    #: Redraw stage (see :mod:`bayestensor.infer.gibbs`): sites of one stage are redrawn
    #: together from one gradient, so their conditionals must not depend on each other.
    stage: int = 0

    def check(self, name: str) -> None:
        if not (float(self.shape) > 0 and np.isfinite(float(self.shape))):
            raise ValueError(f"gibbs: the shape of {name!r} must be a positive number, "
                             f"got {self.shape}")
        check_stage(name, self.stage)

    def describe(self) -> dict:
        """Plain values for run records and checkpoint fingerprints."""
        out = {"kind": "gamma", "shape": float(self.shape)}
        out = out if self.during_warmup else {**out, "during_warmup": False}
        return {**out, "stage": self.stage} if self.stage else out

    def draw(self, x: torch.Tensor, grad: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """New values (double) from the current ones and the gradient on ``log x``."""
        rate = (self.shape - grad) / x
        return torch.from_numpy(rng.standard_gamma(self.shape, size=tuple(x.shape))) / rate


@dataclass(frozen=True)
class HalfCauchyConditional:
    """A scale ``s ~ HalfCauchy(scale)`` (sampled as ``log s``) whose variance ``s^2`` scales
    ``count`` Gaussian entries; redrawn through the auxiliary variable of the module notes.

    On ``u = log s`` the log density's gradient is
    ``g = 1 - count + S / s^2 - 2 q / (1 + q)`` with ``q = s^2 / scale^2`` (the last term from
    the half-Cauchy, the 1 from the Jacobian), which gives the weighted sum of squares ``S``.
    """

    count: float
    scale: float
    #: Redraw stage, as :attr:`GammaConditional.stage`.
    stage: int = 0
    #: Redrawn from the first step of burn-in (``True``) or only after it (the default; a TT
    #: prior's scales are redrawn from the first step, a Tucker prior's when the chains start
    #: at a mode, see :meth:`LowRankPrior.conditionals
    #: <bayestensor.priors.LowRankPrior.conditionals>`).
    #: While a Tucker core's scales were redrawn together (not in turn, see ``stage``), the
    #: redraws in burn-in collapsed the adapted step (step scale 0.003, R-hat 3.8-4.1 on 2 of
    #: 3 seeds of the 30^3 grid case); redrawn in turn they no longer do (R-hat 1.007-1.017,
    #: ESS 1,010-1,188 from the first step; 1.007-1.009 and 739-896 after burn-in).
    during_warmup: bool = False

    def check(self, name: str) -> None:
        check_positive(name, self, ("count", "scale"))
        check_stage(name, self.stage)

    def describe(self) -> dict:
        """Plain values for run records and checkpoint fingerprints."""
        out = {"kind": "half_cauchy", "count": float(self.count), "scale": float(self.scale)}
        out = {**out, "during_warmup": True} if self.during_warmup else out
        return {**out, "stage": self.stage} if self.stage else out

    def draw(self, x: torch.Tensor, grad: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """New values (double) from the current ones and the gradient on ``log x``."""
        x2, a2 = x.square(), float(self.scale) ** 2
        q = x2 / a2
        squares = x2 * (grad + self.count - 1 + 2 * q / (1 + q))
        size = tuple(x.shape)
        inv_nu = torch.from_numpy(rng.standard_gamma(1.0, size=size)) / (1 / a2 + 1 / x2)
        precision = (torch.from_numpy(rng.standard_gamma((self.count + 1) / 2, size=size))
                     / (inv_nu + squares / 2))
        return precision.rsqrt()


@dataclass(frozen=True)
class OffsetConditional:
    """A real site ``c`` (sampled as itself), prior ``Normal(0, scale)``, added to the mean of
    each of ``count`` Gaussian observations whose precision is the site ``noise_site``: its
    full conditional is Normal with precision ``P = tau count + 1 / scale^2`` and mean
    ``tau sum(y - x) / P``.

    The residual sum is read off the gradient before the redraws, ``g = tau sum(y - x - c) -
    c / scale^2``, with that moment's ``tau``; the draw uses ``tau`` after its own redraw, so
    the two redraws form one Gibbs sweep (``tau`` given ``c``, then ``c`` given ``tau``).
    """

    count: int
    scale: float
    noise_site: str
    during_warmup = True

    def check(self, name: str) -> None:
        if not (self.count >= 1 and math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"gibbs: {name!r} needs a count >= 1 and a positive finite scale, "
                             f"got {self.count!r} and {self.scale!r}")

    def describe(self) -> dict:
        return {"conditional": "normal", "count": self.count, "scale": self.scale,
                "noise_site": self.noise_site}

    def draw(self, c: torch.Tensor, grad: torch.Tensor, tau_before: torch.Tensor,
             tau_after: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        prior_precision = self.scale ** -2
        total = (grad + c * prior_precision) / tau_before + self.count * c  # sum(y - x)
        precision = tau_after * self.count + prior_precision
        noise = torch.from_numpy(rng.standard_normal(size=tuple(c.shape)))
        return tau_after * total / precision + noise / precision.sqrt()


@dataclass(frozen=True)
class LogUniformConditional:
    """A scale ``s ~ LogUniform(low, high)`` (``p(s) ∝ 1 / s`` on ``[low, high]``) whose variance
    ``s^2`` scales ``count`` Gaussian entries with weighted sum of squares ``S``: its precision
    ``1 / s^2`` has prior ``∝ 1 / precision`` on ``[high^-2, low^-2]``, so its full
    conditional is ``Gamma(count / 2, S / 2)`` truncated to that interval
    (:func:`truncated_gamma`).

    On ``v = log s`` the log density's gradient is ``g = S / s^2 - count`` (the prior's
    ``-1`` cancels the Jacobian's ``+1``), which gives ``S``. The site is sampled through a
    bounded transform, not ``log s``; :class:`~bayestensor.infer.gibbs.GibbsRedraws` converts
    the gradient to ``v``.
    """

    count: float
    low: float
    high: float
    #: Redraw stage, as :attr:`GammaConditional.stage`.
    stage: int = 0
    #: Redrawn from the first step of burn-in, as :attr:`HalfCauchyConditional.during_warmup`.
    during_warmup: bool = False

    def check(self, name: str) -> None:
        check_positive(name, self, ("count", "low", "high"))
        if not float(self.low) < float(self.high):
            raise ValueError(f"gibbs: the low bound of {name!r} must be below its high bound, "
                             f"got {self.low} and {self.high}")
        check_stage(name, self.stage)

    def describe(self) -> dict:
        """Plain values for run records and checkpoint fingerprints."""
        out = {"kind": "log_uniform", "count": float(self.count), "low": float(self.low),
               "high": float(self.high)}
        out = {**out, "during_warmup": True} if self.during_warmup else out
        return {**out, "stage": self.stage} if self.stage else out

    def draw(self, x: torch.Tensor, grad: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """New values (double) from the current ones and the gradient on ``log x``; strictly
        inside ``(low, high)``, where the sampler's bounded coordinate is finite."""
        squares = (x.square() * (grad + self.count)).numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = truncated_gamma(self.count / 2, squares / 2, float(self.high) ** -2,
                                        float(self.low) ** -2, rng)
            scale = torch.from_numpy(precision).rsqrt()
        inside = torch.tensor([float(self.low) * (1 + BOUND_MARGIN),
                               float(self.high) * (1 - BOUND_MARGIN)], dtype=scale.dtype)
        return torch.minimum(torch.maximum(scale, inside[0]), inside[1])


#: A redrawn bounded scale stays this relative distance inside its bounds.
BOUND_MARGIN = 1e-9
#: Rejection tries per element of :func:`truncated_gamma`'s tail sampler.
TAIL_TRIES = 200


def truncated_gamma(shape: float, rate: np.ndarray, lower: float, upper: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Draws of ``Gamma(shape, rate)`` truncated to ``[lower, upper]``, one per ``rate``.

    By the inverse of the regularized incomplete gamma function (SciPy), in the tail (lower
    or upper) that keeps the interval's probabilities away from 1; where the interval lies so
    far in a tail that those underflow, by rejection from the tangent at the nearer bound of
    the log-concave density of ``log z`` (:func:`_tail_draw`). NumPy and SciPy have no
    truncated Gamma sampler.

    Parameters
    ----------
    shape : float
        Positive shape of the Gamma.
    rate : numpy.ndarray
        Its rates, one draw per element; one that is not a positive finite number gives
        ``nan``.
    lower, upper : float
        Bounds of the truncation, ``0 < lower < upper`` (``upper`` may be ``inf``).
    rng : numpy.random.Generator
        The source of the draws.

    Returns
    -------
    numpy.ndarray
        Draws in ``[lower, upper]``, the shape of ``rate``.
    """
    rate = np.asarray(rate, dtype=float)
    valid = np.isfinite(rate) & (rate > 0)
    safe = np.where(valid, rate, 1.0)
    lo, hi = safe * lower, safe * upper  # the bounds in units of a standard Gamma
    p_lo, p_hi = special.gammainc(shape, lo), special.gammainc(shape, hi)
    q_lo, q_hi = special.gammaincc(shape, lo), special.gammaincc(shape, hi)
    u = rng.uniform(size=rate.shape)
    below = p_hi < 0.5  # the interval lies below the median: lower-tail probabilities
    with np.errstate(all="ignore"):
        z = np.where(below, special.gammaincinv(shape, p_lo + u * (p_hi - p_lo)),
                     special.gammainccinv(shape, q_lo - u * (q_lo - q_hi)))
    mass = np.where(below, p_hi - p_lo, q_lo - q_hi)
    far = valid & ~(mass > TINY_MASS)
    for i in zip(*np.nonzero(far)):
        z[i] = _tail_draw(shape, lo[i], hi[i], bool(below[i]), rng)
    z = np.clip(z, lo, hi)
    return np.where(valid, z / safe, np.nan)


#: Below this probability of the truncation interval the inverse-CDF draw loses precision.
TINY_MASS = 1e-250


def _tail_draw(shape: float, lo: float, hi: float, below: bool,
               rng: np.random.Generator) -> float:
    """One draw of a standard ``Gamma(shape)`` truncated to ``[lo, hi]`` far in a tail.

    ``w = log z`` has the concave log density ``h(w) = shape * w - e^w``, which lies below its
    tangent at the bound nearer the mode (``hi`` when the interval lies below the mode); a
    draw from the truncated exponential of that tangent is accepted with probability
    ``exp(h(w) - tangent(w))``, close to 1 far in a tail. After ``TAIL_TRIES`` rejections
    the bound itself.
    """
    w_lo, w_hi = math.log(lo), math.log(hi) if math.isfinite(hi) else math.inf
    bound = w_hi if below else w_lo
    slope = abs(shape - math.exp(bound))
    width = w_hi - w_lo

    def h(w):
        return shape * w - math.exp(w)

    for _ in range(TAIL_TRIES):
        # a truncated exponential on [0, width] by its inverse CDF
        d = -math.log1p(rng.uniform() * math.expm1(-slope * width)) / slope
        w = bound - d if below else bound + d
        if math.log(rng.uniform()) <= h(w) - h(bound) + slope * d:
            return math.exp(w)
    return math.exp(bound)


def conditional(spec) -> (GammaConditional | HalfCauchyConditional | LogUniformConditional
                          | OffsetConditional):
    """A conditional from a ``gibbs`` entry: a conditional itself, or a number (a Gamma
    conditional's shape)."""
    if isinstance(spec, (GammaConditional, HalfCauchyConditional, LogUniformConditional,
                         OffsetConditional)):
        return spec
    return GammaConditional(float(spec))

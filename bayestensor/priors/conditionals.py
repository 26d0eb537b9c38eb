"""Full conditionals of precisions and scales, in the form SGHMC's exact redraws use.

Each conditional draws a positive site ``x`` afresh given the current value and the gradient
of the log density on ``u = log x`` (the samplers' coordinate), which carries the one quantity
the conditional needs from the rest of the model (a residual or slice sum of squares). See
:mod:`bayestensor.infer.gibbs` for where they are used and what they measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class GammaConditional:
    """A positive site ``x`` (sampled as ``log x``) whose full conditional is
    ``Gamma(shape, rate)``, ``shape`` fixed by the model's structure."""

    shape: float
    #: Redrawn from the first step of burn-in (the default): TT's slice precisions need it
    #: (without these redraws in burn-in a 30^3 TT grid case had R-hat 1.036 and ESS 227, with
    #: them 1.010 and 610; ``benchmarks/sghmc_mixing.py``, seed 0). Tucker's wait for the end
    #: of burn-in, as its half-Cauchy scales do (:meth:`LowRankPrior.conditionals
    #: <bayestensor.priors.LowRankPrior.conditionals>`).
    during_warmup: bool = True

    def check(self, name: str) -> None:
        if not (float(self.shape) > 0 and np.isfinite(float(self.shape))):
            raise ValueError(f"gibbs: the shape of {name!r} must be a positive number, "
                             f"got {self.shape}")

    def describe(self) -> dict:
        """Plain values for run records and checkpoint fingerprints."""
        out = {"kind": "gamma", "shape": float(self.shape)}
        return out if self.during_warmup else {**out, "during_warmup": False}

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
    #: Redrawn only after burn-in. In burn-in the redraws carried the scales of switched-off
    #: Tucker slices down the funnel to 1e-4-1e-3 faster than the preconditioner followed the
    #: stiffening entries, and the adapted step collapsed (step scale 0.003, R-hat 3.8-4.1 on 2
    #: of 3 seeds of the 30^3 grid case); redrawn after it the three seeds gave R-hat
    #: 1.017-1.020 and ESS 310-449 (1.017-1.023 and 285-452 without these redraws).
    during_warmup = False

    def check(self, name: str) -> None:
        for key in ("count", "scale"):
            value = float(getattr(self, key))
            if not (value > 0 and np.isfinite(value)):
                raise ValueError(f"gibbs: the {key} of {name!r} must be a positive number, "
                                 f"got {value}")

    def describe(self) -> dict:
        """Plain values for run records and checkpoint fingerprints."""
        return {"kind": "half_cauchy", "count": float(self.count), "scale": float(self.scale)}

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


def conditional(spec) -> GammaConditional | HalfCauchyConditional:
    """A conditional from a ``gibbs`` entry: a conditional itself, or a number (a Gamma
    conditional's shape)."""
    if isinstance(spec, (GammaConditional, HalfCauchyConditional)):
        return spec
    return GammaConditional(float(spec))

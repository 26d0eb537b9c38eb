"""Hyperpriors on the variance of each rank slice: gamma (ARD), half-Cauchy, log-uniform.

See :mod:`bayestensor.priors.low_rank` for how the slice variances enter the low-rank
parameters; this module holds the three laws and their default parameters.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import pyro.distributions as dist
import torch
from pyro.distributions import constraints

from bayestensor.priors.densities import (gamma_log_density, half_cauchy_log_density,
                                          log_uniform_log_density)

PRIORS = ("gamma", "half_cauchy", "log_uniform")
#: A starting log-uniform scale stays this factor inside the bounds of its support.
INSIDE_BOUNDS = 1.01

#: Parameters any kind takes, without a default: ``core_variance`` gives a Tucker core the
#: fixed prior ``Normal(0, core_variance)`` instead of the product of its slice variances.
OPTIONAL_PRIOR_PARAMS = ("core_variance",)
DEFAULT_PRIOR_PARAMS = {
    "gamma": {"a": 1e-3, "b": 1e-3},
    "half_cauchy": {"scale": 1.0},
    "log_uniform": {"low": 1e-4, "high": 1e3},
}


class LogUniform(dist.TorchDistribution):
    """Log-uniform (truncated Jeffreys) distribution on ``[low, high]``: ``p(s) ∝ 1/s``.

    Pyro has no such distribution; it is two lines of math, so it is written here.

    Parameters
    ----------
    low, high : float or tensor
        Positive bounds, broadcast together to the batch shape.
    validate_args : bool, optional
        As for every torch distribution: check arguments and sampled values.
    """

    arg_constraints = {"low": constraints.positive, "high": constraints.positive}
    has_rsample = True

    def __init__(self, low, high, validate_args=None):
        self.low, self.high = torch.as_tensor(low), torch.as_tensor(high)
        batch_shape = torch.broadcast_shapes(self.low.shape, self.high.shape)
        self.low, self.high = self.low.expand(batch_shape), self.high.expand(batch_shape)
        super().__init__(batch_shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.interval(self.low, self.high)

    def expand(self, batch_shape, _instance=None):
        """A new :class:`LogUniform` whose bounds are broadcast to ``batch_shape``.

        Parameters
        ----------
        batch_shape : sequence of int
            The new batch shape; the bounds' current shape must broadcast to it.
        _instance : optional
            Part of torch's ``expand`` signature; not used.

        Returns
        -------
        LogUniform
        """
        return LogUniform(self.low.expand(batch_shape), self.high.expand(batch_shape))

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        u = torch.rand(shape, dtype=self.low.dtype, device=self.low.device)
        log_low, log_high = self.low.log(), self.high.log()
        return (log_low + u * (log_high - log_low)).exp()

    def log_prob(self, value):
        return -value.log() - (self.high.log() - self.low.log()).log()


@dataclass
class RankPrior:
    """A hyperprior on the per-slice variances ``v_d`` of a rank dimension.

    Parameters
    ----------
    kind : {"gamma", "half_cauchy", "log_uniform"}
        Which hyperprior (see the module docstring).
    params : dict
        Its parameters: ``a, b`` for gamma; ``scale`` for half-Cauchy; ``low, high`` for
        log-uniform. Missing ones take the defaults in ``DEFAULT_PRIOR_PARAMS``. Any kind
        also takes ``core_variance`` (Tucker only, see
        :class:`~bayestensor.priors.low_rank.LowRankPrior`).
    """

    kind: str = "gamma"
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in PRIORS:
            raise ValueError(f"prior: expected one of {PRIORS}, got {self.kind!r}")
        allowed = DEFAULT_PRIOR_PARAMS[self.kind]
        unknown = set(self.params) - set(allowed) - set(OPTIONAL_PRIOR_PARAMS)
        if unknown:
            raise ValueError(f"prior_params: {sorted(unknown)} not understood by the "
                             f"{self.kind!r} prior, which takes "
                             f"{sorted(allowed) + list(OPTIONAL_PRIOR_PARAMS)}")
        self.params = {**allowed, **self.params}
        for key, val in self.params.items():
            if not isinstance(val, numbers.Real) or isinstance(val, bool) \
                    or not (float(val) > 0 and math.isfinite(float(val))):
                raise ValueError(f"prior_params[{key!r}]: expected a positive number, got {val}")
        if self.kind == "log_uniform" and self.params["low"] >= self.params["high"]:
            raise ValueError(f"prior_params: low must be below high, got {self.params}")

    @property
    def site_prefix(self) -> str:
        """Name stem of the hyper sites: ``"precision"`` under the gamma prior (a slice's
        precision), ``"scale"`` under the others (a slice's scale)."""
        return "precision" if self.kind == "gamma" else "scale"

    def hyper_dist(self, size: int) -> dist.Distribution:
        """Distribution of the hyper-parameter vector of one rank dimension (event dim 1)."""
        p = self.params
        if self.kind == "gamma":
            base = dist.Gamma(torch.tensor(float(p["a"])), torch.tensor(float(p["b"])))
        elif self.kind == "half_cauchy":
            base = dist.HalfCauchy(torch.tensor(float(p["scale"])))
        else:
            base = LogUniform(float(p["low"]), float(p["high"]))
        return base.expand([size]).to_event(1)

    def log_density(self, hyper: torch.Tensor) -> torch.Tensor:
        """``hyper_dist(size).log_prob(hyper)`` in closed form (no distribution objects; see
        :mod:`~bayestensor.priors.densities`): summed over the last axis."""
        p = self.params
        if self.kind == "gamma":
            return gamma_log_density(hyper, p["a"], p["b"], event_dims=1)
        if self.kind == "half_cauchy":
            return half_cauchy_log_density(hyper, p["scale"], event_dims=1)
        return log_uniform_log_density(hyper, p["low"], p["high"], event_dims=1)

    @property
    def variance_exponent(self) -> float:
        """``e`` in ``variance = hyper^e``: ``-1`` for a precision, ``2`` for a scale."""
        return -1.0 if self.kind == "gamma" else 2.0

    def variance(self, hyper: torch.Tensor) -> torch.Tensor:
        """Slice variances from the hyper-parameter values."""
        return 1.0 / hyper if self.kind == "gamma" else hyper**2

    def hyper_of(self, variance: torch.Tensor) -> torch.Tensor:
        """Hyper-parameter values giving slice variances ``variance`` (inverse of :meth:`variance`).

        A log-uniform scale is kept a little inside ``[low, high]``, where its unconstrained
        value is finite.
        """
        if self.kind == "gamma":
            return 1.0 / variance
        s = variance.sqrt()
        if self.kind == "log_uniform":
            s = s.clamp(self.params["low"] * INSIDE_BOUNDS, self.params["high"] / INSIDE_BOUNDS)
        return s

    def init_value(self, size: int, variance: float = 1.0) -> torch.Tensor:
        """A hyper-parameter vector whose slice variances all equal ``variance``.

        Parameters
        ----------
        size : int
            Number of slices ``R`` of the rank dimension.
        variance : float
            The slice variance to start at.

        Returns
        -------
        torch.Tensor
            ``(size,)`` precisions ``1 / variance`` (gamma) or scales ``sqrt(variance)``
            (half-Cauchy; log-uniform kept a little inside ``[low, high]``, see
            :meth:`hyper_of`), in the default float dtype.
        """
        return self.hyper_of(torch.full((size,), float(variance)))


def get_prior(prior, prior_params: dict | None = None) -> RankPrior:
    """A :class:`RankPrior` from a name (plus parameters) or an existing instance.

    Parameters
    ----------
    prior : {"gamma", "half_cauchy", "log_uniform"} or RankPrior
        The hyperprior's kind, or a prior to use as it is.
    prior_params : dict, optional
        Parameters for a kind given by name (see :class:`RankPrior`); must be empty or
        ``None`` when ``prior`` is a :class:`RankPrior`.

    Returns
    -------
    RankPrior
        ``prior`` itself when it is one, else a new one.

    Raises
    ------
    ValueError
        An unknown kind, a parameter the kind does not take or that is not a positive
        number, log-uniform bounds out of order, or ``prior_params`` given with a
        :class:`RankPrior`.
    """
    if isinstance(prior, RankPrior):
        if prior_params:
            raise ValueError("prior_params: give parameters inside the RankPrior, not both")
        return prior
    return RankPrior(str(prior), dict(prior_params or {}))

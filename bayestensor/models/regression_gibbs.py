"""Exact redraws of a Gaussian tensor regression's factors or cores and intercept from their
full conditionals.

Given the other parameters, the slice variances, the intercept ``c`` and the noise precision
``tau``, the linear predictor is linear in any one parameter ``p`` of the low-rank coefficient
tensor (a CP or Tucker factor, the Tucker core, a TT core): ``eta = D vec(p) + c``, with ``D``
(``N x numel(p)``) each input contracted with the other parameters
(:func:`~bayestensor.formats.design.linear_design`). So its full conditional is Gaussian (the
blocked Gibbs sampler of Bayesian tensor regression, Guhaniyogi, Qamar & Dunson, JMLR 2017,
with the rank prior's variances):

    precision  P = tau * D^T D + diag(1 / v),    mean  m = P^{-1} tau D^T (y - c),

``v`` each entry's prior variance (the product of its slice variances), and the intercept's,
under its ``Normal(0, s)`` prior, is Gaussian with precision ``tau N + s^-2`` and mean
``tau sum(y - D vec(p)) / (tau N + s^-2)``. One redraw sweeps the parameters in turn, then the
intercept.

Why inside SGHMC: every input meets every coefficient, so the coefficients' posterior is
correlated across a whole factor or core, a shape SGHMC's diagonal preconditioner cannot
follow. For CP, on the three problems of ``benchmarks/regression_mixing.py`` (3 seeds, 4 x 1000
draws), the largest R-hat of 200 held-out predictions was 1.047-1.122 with a smallest bulk ESS
of 26-158 without the redraws; with them (and the slice precisions redrawn from their Gamma
conditionals, :meth:`~bayestensor.models.regression.TensorRegression.gibbs_sites`), a median
1.021 and 375 (``docs/benchmarks.md``, "Tensor regression: exact factor redraws").
Why by hand: Pyro has no conditional sampler for this structure.
"""

from __future__ import annotations

import torch

from bayestensor.formats.design import linear_design
from bayestensor.models.cp_row_gibbs import gaussian_draw
from bayestensor.priors.low_rank import LowRankPrior


class RegressionGibbs:
    """Parameter and intercept redraws of a Gaussian, scalar-response
    :class:`~bayestensor.models.regression.TensorRegression` in any format, under any rank
    prior.

    Parameters
    ----------
    inputs, values
        The standardized inputs ``(N, P)`` and responses ``(N,)``.
    prior : LowRankPrior
        The coefficient tensor's prior: its parameter and hyper sites, and each entry's prior
        variance from the slice variances.
    noise_site, intercept_site : str
        The noise precision's and the intercept's sites.
    intercept_scale : float
        The intercept's prior sd.
    """

    def __init__(self, inputs: torch.Tensor, values: torch.Tensor, prior: LowRankPrior, *,
                 noise_site: str, intercept_site: str, intercept_scale: float):
        self.y = values.detach().cpu().double()
        self.X = inputs.detach().cpu().double().reshape((-1,) + tuple(prior.shape))
        self.prior = prior
        self.noise_site, self.intercept_site = noise_site, intercept_site
        self.intercept_precision = intercept_scale ** -2

    def redraw(self, values: dict, generator: torch.Generator) -> dict:
        """Batched constrained ``values`` (``(C, ...)`` per site) with every parameter of the
        low-rank tensor, then the intercept, redrawn from its full conditional (all chains at
        once)."""
        prior = self.prior
        params = [values[s].detach().cpu().double() for s in prior.param_sites]
        variances = [prior.prior.variance(values[h]).detach().cpu().double()
                     for h in prior.hyper_sites]
        tau = values[self.noise_site].detach().cpu().double()
        intercept = values[self.intercept_site].detach().cpu().double()
        chains = tau.shape[0]
        for k, spec in enumerate(prior.specs):
            std = prior.entry_std(spec, variances).expand((chains,) + spec.shape)
            prior_precision = std.pow(-2).reshape(chains, -1)
            params[k], linear = self._draw_param(params, k, prior_precision, tau, intercept,
                                                 generator)
        intercept = self._draw_intercept(linear, tau, generator)
        out = {s: p.to(values[s]) for s, p in zip(prior.param_sites, params)}
        out[self.intercept_site] = intercept.to(values[self.intercept_site])
        return {**values, **out}

    def _draw_param(self, params, k: int, prior_precision: torch.Tensor, tau: torch.Tensor,
                    intercept: torch.Tensor, generator: torch.Generator):
        """Parameter ``k`` (``(C, ...)``) drawn from its conditional given ``prior_precision``
        ``(C, numel)``, ``tau`` and ``intercept`` ``(C,)``; returns it and the linear predictor
        (without the intercept) at the new value, ``(C, N)``."""
        tensor = self.prior.build(dict(zip(self.prior.param_sites, params)))
        design = linear_design(self.X, tensor, k)  # (C, N, K)
        precision = tau[:, None, None] * (design.mT @ design)
        precision.diagonal(dim1=-2, dim2=-1).add_(prior_precision)
        residual = self.y - intercept[:, None]  # (C, N)
        shift = tau[:, None] * (design.mT @ residual.unsqueeze(-1)).squeeze(-1)
        draw = gaussian_draw(precision, shift, generator)
        return draw.reshape(params[k].shape), (design @ draw.unsqueeze(-1)).squeeze(-1)

    def _draw_intercept(self, linear: torch.Tensor, tau: torch.Tensor,
                        generator: torch.Generator) -> torch.Tensor:
        """The intercept ``(C,)`` given the linear predictors ``(C, N)``."""
        precision = tau * self.y.shape[0] + self.intercept_precision
        mean = tau * (self.y - linear).sum(-1) / precision
        z = torch.randn(mean.shape, generator=generator, dtype=torch.float64)
        return mean + z / precision.sqrt()


def regression_gibbs_flops(prior: LowRankPrior, num_obs: int) -> float:
    """Multiply-adds of one chain's redraw sweep: per parameter of ``K`` entries, its design
    (about ``N P R``, ``R`` the largest rank), normal equations ``N K^2`` and Cholesky
    ``K^3 / 3``."""
    size = 1
    for s in prior.shape:
        size *= s
    rank = max(prior.ranks)
    return sum(num_obs * size * rank + num_obs * spec.numel() ** 2 + spec.numel() ** 3 / 3
               for spec in prior.specs)

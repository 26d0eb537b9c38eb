"""Exact redraws of a tensor regression's factors or cores and intercept from their full
conditionals, for Gaussian responses and for binary labels.

Given the other parameters, the slice variances and the intercept ``c``, the linear predictor
is linear in any one parameter ``p`` of the low-rank coefficient tensor (a CP or Tucker
factor, the Tucker core, a TT core): ``eta = D vec(p) + c``, with ``D`` (``N x numel(p)``) each
input contracted with the other parameters (:func:`~bayestensor.formats.design.linear_design`).
Where the likelihood is Gaussian in ``eta`` with per-observation precisions ``w`` and
``w * eta`` pulled towards ``b``, the full conditional of ``p`` is Gaussian (the blocked Gibbs
sampler of Bayesian tensor regression, Guhaniyogi, Qamar & Dunson, JMLR 2017, with the rank
prior's variances):

    precision  P = D^T diag(w) D + diag(1 / v),    mean  m = P^{-1} D^T (b - w c),

``v`` each entry's prior variance (the product of its slice variances), and the intercept's,
under its ``Normal(0, s)`` prior, is Gaussian with precision ``sum(w) + s^-2`` and mean
``sum(b - w D vec(p)) / (sum(w) + s^-2)``. One redraw sweeps the parameters in turn, then the
intercept.

- **Gaussian responses** ``y`` with noise precision ``tau``: ``w = tau``, ``b = tau y``.
- **Binary labels** (logistic link): with Polya-Gamma variables ``omega_n ~ PG(1, eta_n)``
  drawn first, the augmented likelihood is Gaussian in ``eta``: ``w = omega``, ``b = y - 1/2``
  (Polson, Scott & Windle, JASA 2013). The ``omega`` come from the ``polyagamma`` package
  (Devroye-type exact samplers in C); nothing else here is a logistic special case.

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

import numpy as np
import torch
from polyagamma import random_polyagamma

from bayestensor.formats.design import linear_design
from bayestensor.models.cp_row_gibbs import gaussian_draw
from bayestensor.priors.low_rank import LowRankPrior


class RegressionGibbs:
    """Parameter and intercept redraws of a scalar-response
    :class:`~bayestensor.models.regression.TensorRegression` (Gaussian, or Bernoulli through
    Polya-Gamma variables) in any format, under any rank prior.

    Parameters
    ----------
    inputs, values
        The standardized inputs ``(N, P)`` and responses ``(N,)`` (0/1 labels for
        ``likelihood="bernoulli"``).
    prior : LowRankPrior
        The coefficient tensor's prior: its parameter and hyper sites, and each entry's prior
        variance from the slice variances.
    noise_site : str or None
        The noise precision's site (Gaussian); ``None`` for binary labels.
    intercept_site : str
        The intercept's site.
    intercept_scale : float
        The intercept's prior sd.
    likelihood : {"gaussian", "bernoulli"}
    """

    def __init__(self, inputs: torch.Tensor, values: torch.Tensor, prior: LowRankPrior, *,
                 noise_site: str | None, intercept_site: str, intercept_scale: float,
                 likelihood: str = "gaussian"):
        if likelihood not in ("gaussian", "bernoulli"):
            raise ValueError(f"likelihood: expected 'gaussian' or 'bernoulli', got {likelihood!r}")
        if (likelihood == "gaussian") != (noise_site is not None):
            raise ValueError("noise_site: a Gaussian likelihood needs it, a Bernoulli one has "
                             "none")
        self.y = values.detach().cpu().double()
        self.X = inputs.detach().cpu().double().reshape((-1,) + tuple(prior.shape))
        self.prior = prior
        self.likelihood = likelihood
        self.noise_site, self.intercept_site = noise_site, intercept_site
        self.intercept_precision = intercept_scale ** -2

    def redraw(self, values: dict, generator: torch.Generator) -> dict:
        """Batched constrained ``values`` (``(C, ...)`` per site) with every parameter of the
        low-rank tensor, then the intercept, redrawn from its full conditional (all chains at
        once; for binary labels, given Polya-Gamma variables drawn first at the current
        values)."""
        prior = self.prior
        params = [values[s].detach().cpu().double() for s in prior.param_sites]
        variances = [prior.prior.variance(values[h]).detach().cpu().double()
                     for h in prior.hyper_sites]
        intercept = values[self.intercept_site].detach().cpu().double()
        weights, pulls = self._gaussian_terms(values, params, intercept, generator)
        chains = intercept.shape[0]
        for k, spec in enumerate(prior.specs):
            std = prior.entry_std(spec, variances).expand((chains,) + spec.shape)
            prior_precision = std.pow(-2).reshape(chains, -1)
            params[k], linear = self._draw_param(params, k, prior_precision, weights, pulls,
                                                 intercept, generator)
        intercept = self._draw_intercept(linear, weights, pulls, generator)
        out = {s: p.to(values[s]) for s, p in zip(prior.param_sites, params)}
        out[self.intercept_site] = intercept.to(values[self.intercept_site])
        return {**values, **out}

    def _gaussian_terms(self, values: dict, params, intercept: torch.Tensor,
                        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Per chain and observation, the precision ``w`` and pull ``b`` of the likelihood as a
        Gaussian in ``eta`` (``(C, N)`` each; see the module's docstring)."""
        chains, n = intercept.shape[0], self.y.shape[0]
        if self.likelihood == "gaussian":
            tau = values[self.noise_site].detach().cpu().double()[:, None]
            return tau.expand(chains, n), tau * self.y
        weight = self.prior.build(dict(zip(self.prior.param_sites, params))).reconstruct()
        eta = weight.reshape(chains, -1) @ self.X.reshape(n, -1).T + intercept[:, None]
        seed = int(torch.randint(2 ** 62, (), generator=generator))
        omega = random_polyagamma(1.0, eta.numpy(), random_state=np.random.default_rng(seed))
        return torch.as_tensor(omega), (self.y - 0.5).expand(chains, n)

    def _draw_param(self, params, k: int, prior_precision: torch.Tensor, weights: torch.Tensor,
                    pulls: torch.Tensor, intercept: torch.Tensor, generator: torch.Generator):
        """Parameter ``k`` (``(C, ...)``) drawn from its conditional given ``prior_precision``
        ``(C, numel)``, the likelihood's ``weights`` and ``pulls`` ``(C, N)`` and ``intercept``
        ``(C,)``; returns it and the linear predictor (without the intercept) at the new value,
        ``(C, N)``."""
        tensor = self.prior.build(dict(zip(self.prior.param_sites, params)))
        design = linear_design(self.X, tensor, k)  # (C, N, K)
        precision = design.mT @ (weights.unsqueeze(-1) * design)
        precision.diagonal(dim1=-2, dim2=-1).add_(prior_precision)
        residual = pulls - weights * intercept[:, None]  # (C, N)
        shift = (design.mT @ residual.unsqueeze(-1)).squeeze(-1)
        draw = gaussian_draw(precision, shift, generator)
        return draw.reshape(params[k].shape), (design @ draw.unsqueeze(-1)).squeeze(-1)

    def _draw_intercept(self, linear: torch.Tensor, weights: torch.Tensor, pulls: torch.Tensor,
                        generator: torch.Generator) -> torch.Tensor:
        """The intercept ``(C,)`` given the linear predictors ``(C, N)``."""
        precision = weights.sum(-1) + self.intercept_precision
        mean = (pulls - weights * linear).sum(-1) / precision
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

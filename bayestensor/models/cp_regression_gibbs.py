"""Exact redraws of a Gaussian CP regression's factors and intercept from their full conditionals.

Given the other factors, the slice variances ``v``, the intercept ``c`` and the noise precision
``tau``, the linear predictor is linear in one whole factor ``U`` (``I x R``): ``eta = D vec(U)
+ c``, with ``D`` (``N x I R``) each input contracted with the other factors. So the factor's
full conditional is Gaussian (the blocked Gibbs sampler of Bayesian tensor regression,
Guhaniyogi, Qamar & Dunson, JMLR 2017, with the ARD variances as the prior):

    precision  P = tau * D^T D + diag(1 / v) (per row),    mean  m = P^{-1} tau D^T (y - c),

and the intercept's, under its ``Normal(0, s)`` prior, is Gaussian with precision ``tau N +
s^-2`` and mean ``tau sum(y - D vec(U)) / (tau N + s^-2)``. One redraw sweeps the factors in
turn, then the intercept; each factor is drawn as the rows of a CP completion are
(:func:`~bayestensor.models.cp_row_gibbs.gaussian_draw`).

Why inside SGHMC: every input meets every coefficient, so the coefficients' posterior is
correlated across the whole factor, a shape SGHMC's diagonal preconditioner cannot follow.
Without the redraws, on the three problems of ``benchmarks/regression_mixing.py`` (3 seeds,
4 x 1000 draws), the largest R-hat of 200 held-out predictions was 1.047-1.122 with a smallest
bulk ESS of 26-158; with them (and the slice precisions redrawn from their Gamma
conditionals, :meth:`~bayestensor.models.regression.TensorRegression.gibbs_sites`), a median
1.021 and 375 (``docs/benchmarks.md``, "Tensor regression: exact factor redraws").
Why by hand: Pyro has no conditional sampler for this structure; the design matrices are those
of the MAP's block ascent (:class:`~bayestensor.models.cp_block_ascent.CPRegressionBlockAscent`).
"""

from __future__ import annotations

import torch

from bayestensor.models.cp_block_ascent import regression_design
from bayestensor.models.cp_row_gibbs import gaussian_draw


class CPRegressionGibbs:
    """Factor and intercept redraws of a Gaussian, scalar-response CP
    :class:`~bayestensor.models.regression.TensorRegression`, under any rank prior.

    Parameters
    ----------
    inputs, values, shape, intercept_site, intercept_scale
        The standardized inputs ``(N, P)`` and responses ``(N,)``, the coefficient tensor's
        shape and the intercept's site and prior scale, as for
        :class:`~bayestensor.models.cp_block_ascent.CPRegressionBlockAscent`.
    factor_sites, hyper_site, variance, noise_site
        The CP factor sites, the slice precisions' (or scales') site, the slice variances
        from its values and the noise precision's site, as for
        :class:`~bayestensor.models.cp_row_gibbs.CPRowGibbs`.
    """

    def __init__(self, inputs: torch.Tensor, values: torch.Tensor, shape, *, factor_sites,
                 hyper_site: str, variance, noise_site: str, intercept_site: str,
                 intercept_scale: float):
        self.y = values.detach().cpu().double()
        self.X = inputs.detach().cpu().double().reshape((-1,) + tuple(shape))
        self.factor_sites, self.hyper_site = list(factor_sites), hyper_site
        self.variance, self.noise_site = variance, noise_site
        self.intercept_site = intercept_site
        self.intercept_precision = intercept_scale ** -2

    def redraw(self, values: dict, generator: torch.Generator) -> dict:
        """Batched constrained ``values`` (``(C, ...)`` per site) with every factor, then the
        intercept, redrawn from its full conditional."""
        sites = self.factor_sites + [self.intercept_site]
        out = {s: values[s].clone() for s in sites}
        for c in range(values[self.noise_site].shape[0]):
            factors = [values[s][c].detach().cpu().double() for s in self.factor_sites]
            variance = self.variance(values[self.hyper_site][c])
            prior_precision = 1.0 / variance.detach().cpu().double()
            tau = float(values[self.noise_site][c])
            intercept = float(values[self.intercept_site][c])
            for mode in range(len(factors)):
                factors[mode], linear = self._draw_factor(factors, mode, prior_precision, tau,
                                                          intercept, generator)
            intercept = self._draw_intercept(linear, tau, generator)
            for s, f in zip(self.factor_sites, factors):
                out[s][c] = f.to(out[s])
            out[self.intercept_site][c] = intercept
        return {**values, **out}

    def _draw_factor(self, factors, mode: int, prior_precision: torch.Tensor, tau: float,
                     intercept: float, generator: torch.Generator):
        """Factor ``mode`` drawn from its conditional; returns it and the linear predictor
        (without the intercept) at the new factor."""
        design = regression_design(self.X, factors, mode)  # (N, I R), row-major (I, R)
        precision = tau * (design.T @ design)
        precision.diagonal().add_(prior_precision.repeat(factors[mode].shape[0]))
        draw = gaussian_draw(precision, tau * (design.T @ (self.y - intercept)), generator)
        return draw.reshape(factors[mode].shape), design @ draw

    def _draw_intercept(self, linear: torch.Tensor, tau: float,
                        generator: torch.Generator) -> float:
        precision = tau * self.y.shape[0] + self.intercept_precision
        mean = tau * float((self.y - linear).sum()) / precision
        z = float(torch.randn((), generator=generator, dtype=torch.float64))
        return mean + z / precision ** 0.5

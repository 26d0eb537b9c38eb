"""Closed-form block-coordinate ascent of the CP models' log joint under the gamma prior.

The MAP of a CP completion or a Gaussian CP regression with the gamma/ARD prior maximizes, on
the standardized data::

    log p = sum_r [(n / 2 + a - 1) log lambda_r - lambda_r (b + S_r / 2)]
            + (N / 2 + noise_a - 1) log tau - tau (noise_b + RSS / 2)
            [- c^2 / (2 s^2)]         (a regression's intercept or a completion's offset c)
            + const

(``S_r`` the squared norms of slice ``r``'s factor columns, ``n`` their entries, ``N`` the
observations, ``RSS`` the residual sum of squares). Every block has a closed-form maximizer
given the others:

* a factor is linear in the model's mean, so it solves normal equations with ridge
  ``diag(lambda) / tau``: one ``R x R`` system per factor row for completion (each row meets
  its own observations), one ``I R x I R`` system per factor for regression (every input
  meets every row);
* a slice precision and the noise precision are Gamma modes, ``(n / 2 + a - 1) / (b + S_r /
  2)`` and ``(N / 2 + noise_a - 1) / (noise_b + RSS / 2)``;
* a regression's intercept, or a completion's offset, is the precision-weighted mean
  residual.

A sweep over the blocks never lowers ``log p``, and its fixed points are stationary points.

Why by hand: no library solves these MAPs (TensorLy's masked ALS and ``CPRegressor`` have no
ARD prior and no noise model). The MAP fit uses the sweeps after its Adam phase in place of
L-BFGS (see :func:`bayestensor.infer.baselines.map_fit`): the Adam phase, with its small
steps, picks the basin (the noise precision rises gradually while the prior prunes); a sweep
costs about one gradient evaluation, and 3-20 sweeps reach what 97-190 L-BFGS evaluations and
a 50-step drift check did (``docs/benchmarks.md``). From the start itself, without the Adam
phase, the sweeps raise the noise precision to its conditional mode at once and settle in
worse optima in 8 of 21 completion runs of the rank study (log joint lower by 260-950, higher
held-out error in all 8, extra slices in 4; scratch runs at no hold). With the noise precision
held at its start for the first sweeps (``hold_noise_sweeps``, the ``map_hold`` continuation)
they need no Adam phase: in the rank study they reach what 200 held Adam steps and then sweeps
reach, at the same errors and ranks.
"""

from __future__ import annotations

import math

import torch

from bayestensor.formats.cp import CPTensor
from bayestensor.formats.design import linear_design
from bayestensor.formats.entry_start import RowGroups, row_fitted, row_normal_equations

#: From this sweep on, each sweep is followed by a try at extrapolating the factors (and the
#: intercept or offset) along the sweep's change, ``sweeps ** (1 / 3)`` times as far, kept when
#: it raises ``log p`` (with the precisions at their modes given the factors). Bro's line
#: search for CP-ALS (Bro 1998, "Multi-way analysis in the food industry", ch. 4; TensorLy's
#: ``parafac(linesearch=True)`` jumps the same way): it crosses the "swamps" where the slices
#: trade scale slowly, and only an improvement is kept, so the ascent stays monotone.
EXTRAPOLATE_FROM = 3


def sites_and_priors(prior, noise_a: float, noise_b: float,
                     kinds: tuple = ("gamma",)) -> dict | None:
    """The site names and prior parameters the closed forms take, from a model's
    :class:`~bayestensor.priors.LowRankPrior` and noise prior; ``None`` unless the prior is CP
    under one of the hyperpriors ``kinds`` (the block ascents: gamma; the VI of
    :mod:`bayestensor.models.cp_variational`: all three). The hyperprior's parameters are
    ``a, b`` (gamma), ``half_cauchy_scale`` or ``log_uniform_bounds``."""
    kind, params = prior.prior.kind, prior.prior.params
    if prior.format_cls.format_name != "cp" or kind not in kinds:
        return None
    if kind == "gamma":
        law = {"a": float(params["a"]), "b": float(params["b"])}
    elif kind == "half_cauchy":
        law = {"half_cauchy_scale": float(params["scale"])}
    else:
        law = {"log_uniform_bounds": (float(params["low"]), float(params["high"]))}
    site = prior.hyper_sites[0]
    return dict(factor_sites=prior.param_sites, precision_site=site,
                slice_count=prior.slice_counts()[site], noise_site="noise_precision",
                noise_a=noise_a, noise_b=noise_b, **law)


class _GammaBlockAscent:
    """The sweeps, slice and noise precisions shared by the CP models; subclasses update the
    factors (and any other block) in :meth:`_update_blocks`."""

    def __init__(self, num_obs: int, *, factor_sites: list[str], precision_site: str,
                 slice_count: int, noise_site: str, a: float, b: float, noise_a: float,
                 noise_b: float):
        self.factor_sites = list(factor_sites)
        self.precision_site, self.noise_site = precision_site, noise_site
        # numerator and prior rate of lambda's mode; slice_count entries per slice
        # (LowRankPrior.slice_counts: the factor rows of every mode)
        self.slice_shape = (slice_count / 2 + a - 1, b)
        self.noise_shape = (num_obs / 2 + noise_a - 1, noise_b)
        self.num_obs = num_obs
        # a scalar block with a Normal(0, 1 / precision) prior: a regression's intercept or a
        # completion's offset (set by the subclass; None: none)
        self.scalar_site, self.scalar_precision = None, 0.0

    def __call__(self, values: dict, *, max_sweeps: int, tol: float,
                 hold_noise_sweeps: int = 0) -> tuple[dict, int, bool]:
        """Sweep from batched constrained ``values`` (``(C, ...)`` per site).

        Stops when a sweep changes ``log p`` by at most ``tol`` times ``|log p| + N`` (the
        size of its terms; ``log p`` is known up to a constant) or after ``max_sweeps``.
        ``hold_noise_sweeps``: the noise precision stays at its value in ``values`` for that
        many sweeps (the ``map_hold`` continuation in sweeps: the slice precisions prune
        while the fit cannot yet chase the noise), with no convergence test before it is
        released. Returns the values in the input's dtype and device, the sweeps of the
        slowest chain and whether every chain converged.
        """
        chains = values[self.noise_site].shape[0]
        results = [self._ascend({k: v[c].detach().cpu().double() for k, v in values.items()},
                                max_sweeps, tol, hold_noise_sweeps) for c in range(chains)]
        out = {k: torch.stack([r[0][k] for r in results]).to(values[k]) for k in results[0][0]}
        return ({**values, **out}, max(r[1] for r in results), all(r[2] for r in results))

    def _ascend(self, point: dict, max_sweeps: int, tol: float,
                hold_noise_sweeps: int = 0) -> tuple[dict, int, bool]:
        factors = [point[s] for s in self.factor_sites]
        lam, tau = point[self.precision_site], float(point[self.noise_site])
        held_tau = tau
        previous, sweeps, converged = -math.inf, 0, False
        while sweeps < max_sweeps and not converged:
            if sweeps + 1 >= EXTRAPOLATE_FROM:
                before = [f.clone() for f in factors], self._scalar(point)
            rss = self._update_blocks(factors, lam, tau, point)
            current, lam, tau = self._profile(factors, rss, self._scalar_log_prior(point))
            sweeps += 1
            if sweeps <= hold_noise_sweeps:
                tau = held_tau
                continue
            if sweeps >= EXTRAPOLATE_FROM:
                step = sweeps ** (1 / 3)
                jump = [b + step * (f - b) for b, f in zip(before[0], factors)]
                jump_point = dict(point)
                if self.scalar_site is not None:
                    jump_point[self.scalar_site] = before[1] + step * (self._scalar(point)
                                                                       - before[1])
                value, jump_lam, jump_tau = self._profile(jump, self._rss(jump, jump_point),
                                                          self._scalar_log_prior(jump_point))
                if value > current:
                    factors[:] = jump
                    point.update(jump_point)
                    current, lam, tau = value, jump_lam, jump_tau
            converged = abs(current - previous) <= tol * (abs(current) + self.num_obs)
            previous = current
        out = {**point, **dict(zip(self.factor_sites, factors))}
        out[self.precision_site] = lam
        out[self.noise_site] = torch.tensor(tau, dtype=torch.float64)
        return out, sweeps, converged

    def _profile(self, factors: list, rss: float, extra: float) -> tuple[float, torch.Tensor, float]:
        """``log p`` (up to a constant) with the slice and noise precisions at their modes
        given the factors and residual, and those modes."""
        squares = sum(f.pow(2).sum(0) for f in factors)
        lam = self.slice_shape[0] / (self.slice_shape[1] + squares / 2)
        tau = self.noise_shape[0] / (self.noise_shape[1] + rss / 2)
        slices = self.slice_shape[0] * lam.log() - lam * (self.slice_shape[1] + squares / 2)
        noise = self.noise_shape[0] * math.log(tau) - tau * (self.noise_shape[1] + rss / 2)
        return float(slices.sum()) + noise + extra, lam, tau

    def _update_blocks(self, factors: list, lam: torch.Tensor, tau: float,
                       point: dict) -> float:
        """Maximize the factors in place (and the scalar block in ``point``); return the
        residual sum of squares after them."""
        raise NotImplementedError

    def _scalar(self, point: dict) -> torch.Tensor | float:
        """The scalar block's value in ``point`` (zero without one)."""
        return 0.0 if self.scalar_site is None else point[self.scalar_site]

    def _scalar_log_prior(self, point: dict) -> float:
        """``log Normal(c | 0, 1 / scalar_precision)`` of the scalar block, up to a constant."""
        return -0.5 * self.scalar_precision * float(self._scalar(point)) ** 2

    def _rss(self, factors: list, point: dict) -> float:
        """The residual sum of squares at ``factors`` (other blocks as in ``point``)."""
        raise NotImplementedError


class CPGammaBlockAscent(_GammaBlockAscent):
    """Block ascent of :class:`~bayestensor.models.completion.TensorCompletion` (CP, gamma).

    Parameters
    ----------
    indices : torch.Tensor
        Observed index tuples ``(N, ndim)``.
    values : torch.Tensor
        Standardized observed values ``(N,)``.
    shape : tuple of int
        Tensor shape.
    rank : int
        CP rank (the number of slices).
    factor_sites : list of str
        Site names of the factors, one per mode.
    precision_site, noise_site : str
        Site names of the slice precisions ``(R,)`` and of the noise precision.
    slice_count : int
        Entries per slice (``LowRankPrior.slice_counts``).
    a, b : float
        Gamma prior of the slice precisions.
    noise_a, noise_b : float
        Gamma prior of the noise precision.
    offset_site : str, optional
        Site of the offset added to every entry, whose prior is ``Normal(0, offset_scale)``;
        ``None``: the model has none.
    offset_scale : float
    """

    def __init__(self, indices: torch.Tensor, values: torch.Tensor, shape, rank: int, *,
                 offset_site: str | None = None, offset_scale: float = 1.0,
                 **sites_and_priors):
        y = values.detach().cpu().double()
        super().__init__(y.shape[0], **sites_and_priors)
        idx = indices.detach().cpu().long()
        self.shape = tuple(shape)
        self.groups = [RowGroups(idx, y, mode, size, rank) for mode, size in enumerate(shape)]
        if offset_site is not None:
            self.scalar_site, self.scalar_precision = offset_site, offset_scale ** -2

    def _update_blocks(self, factors, lam, tau, point):
        if self.scalar_site is not None:
            return self._update_with_offset(factors, lam, tau, point)
        for mode, groups in enumerate(self.groups):
            gram, rhs, design = row_normal_equations(factors, groups)
            system = gram + torch.diag_embed(lam / tau).expand_as(gram)
            factors[mode] = torch.linalg.solve(system, rhs.unsqueeze(-1)).squeeze(-1)
        return float((groups.values - row_fitted(design, factors[-1], groups)).pow(2).sum())

    def _update_with_offset(self, factors, lam, tau, point):
        """Each mode's rows and the offset ``c`` maximized jointly. Given ``c`` every row
        solves ``A_i u_i = r_i - c g_i`` (``g_i`` its entries' designs summed); substituting
        that into ``c``'s own equation leaves one scalar equation. Alternating the two blocks
        instead crawls along the ridge where ``c`` and the slices trade the data's mean: on
        IL-2 at max rank 10 the sweeps then stopped 12 nats below what Adam reaches."""
        sum_y = float(self.groups[0].values.sum())
        for mode, groups in enumerate(self.groups):
            gram, rhs, design = row_normal_equations(factors, groups)
            summed = torch.zeros_like(rhs).index_add_(0, groups.rows, design)  # g_i
            system = gram + torch.diag_embed(lam / tau).expand_as(gram)
            both = torch.linalg.solve(system, torch.stack([rhs, summed], -1))
            from_data, per_offset = both[..., 0], both[..., 1]
            denominator = (self.num_obs + self.scalar_precision / tau
                           - float((summed * per_offset).sum()))
            c = (sum_y - float((summed * from_data).sum())) / denominator
            factors[mode] = from_data - c * per_offset
        point[self.scalar_site] = torch.tensor(c, dtype=torch.float64)
        residual = groups.values - row_fitted(design, factors[-1], groups) - c
        return float(residual.pow(2).sum())

    def _rss(self, factors, point):
        groups = self.groups[0]
        fitted = CPTensor(self.shape, factors).entries(groups.indices, check=False)
        return float((groups.values - fitted - float(self._scalar(point))).pow(2).sum())


#: Most multiply-adds of one regression sweep (about a second on one core): each factor's
#: normal equations cost ``N (I R)^2`` to form and ``(I R)^3 / 3`` to solve, dense. Past it
#: (large inputs and many observations) the MAP keeps L-BFGS. The test problems need 1e6-4e7.
MAX_REGRESSION_SWEEP_FLOPS = 1e9


def regression_sweep_flops(shape, rank: int, num_obs: int) -> float:
    """Multiply-adds of one sweep of :class:`CPRegressionBlockAscent` (the normal equations)."""
    return sum(num_obs * (size * rank) ** 2 + (size * rank) ** 3 / 3 for size in shape)


class CPRegressionBlockAscent(_GammaBlockAscent):
    """Block ascent of a Gaussian, scalar-response
    :class:`~bayestensor.models.regression.TensorRegression` (CP, gamma).

    Parameters
    ----------
    inputs : torch.Tensor
        Standardized inputs ``(N, P)``, ``P`` the product of ``shape``.
    values : torch.Tensor
        Standardized responses ``(N,)``.
    shape : tuple of int
        Shape of the coefficient tensor (of one input).
    intercept_site : str
        Site name of the intercept, whose prior is ``Normal(0, intercept_scale)``.
    intercept_scale : float
    **sites_and_priors
        As for :class:`CPGammaBlockAscent`.
    """

    def __init__(self, inputs: torch.Tensor, values: torch.Tensor, shape, *,
                 intercept_site: str, intercept_scale: float, **sites_and_priors):
        self.y = values.detach().cpu().double()
        super().__init__(self.y.shape[0], **sites_and_priors)
        self.X = inputs.detach().cpu().double().reshape((-1,) + tuple(shape))
        self.scalar_site, self.scalar_precision = intercept_site, intercept_scale ** -2

    def _update_blocks(self, factors, lam, tau, point):
        c = point[self.scalar_site]
        for mode in range(len(factors)):
            design = linear_design(self.X, CPTensor(self.X.shape[1:], factors), mode)  # (N, I R)
            target = self.y - c
            system = design.T @ design
            system.diagonal().add_(lam.repeat(factors[mode].shape[0]) / tau)
            solution = torch.linalg.solve(system, design.T @ target)
            factors[mode] = solution.reshape(factors[mode].shape)
        linear = design @ solution
        c = tau * (self.y - linear).sum() / (tau * self.y.shape[0] + self.scalar_precision)
        point[self.scalar_site] = c
        return float((self.y - linear - c).pow(2).sum())

    def _rss(self, factors, point):
        weight = CPTensor(self.X.shape[1:], factors).reconstruct().reshape(-1)
        linear = self.X.reshape(self.X.shape[0], -1) @ weight
        return float((self.y - linear - point[self.scalar_site]).pow(2).sum())

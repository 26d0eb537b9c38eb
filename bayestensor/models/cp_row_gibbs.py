"""Exact redraws of a CP completion's factor rows from their Gaussian full conditionals.

Given the other factors, the slice variances ``v`` and the noise precision ``tau``, the
entries observed in row ``i`` of mode ``n`` are linear in that row, so the row's full
conditional is Gaussian (the Gibbs sampler of Bayesian probabilistic tensor factorization,
Xiong et al., SDM 2010, with the ARD variances in place of a Wishart prior):

    precision  P_i = tau * G_i + diag(1 / v),      mean  m_i = P_i^{-1} tau r_i,

``G_i`` and ``r_i`` the Gram matrix and right-hand side of the row's observed entries (the
normal equations of :class:`~bayestensor.models.cp_block_ascent.CPGammaBlockAscent`, shared
through :class:`~bayestensor.formats.entry_start.RowGroups`). One redraw sweeps the modes in
turn, each row drawn as ``m_i + L_i^{-T} z`` with ``P_i = L_i L_i^T`` (:func:`gaussian_draw`).
The offset ``c ~ Normal(0, s_c)`` added to every entry is redrawn after the rows from its own
Gaussian conditional, precision ``tau N + 1 / s_c^2`` and mean ``tau sum_j (y_j - x_j)`` over
that precision.

Why inside SGHMC: a slice the data barely need has a factor pattern that small gradient steps
turn over slowly, while its scale wanders along a funnel
(:mod:`bayestensor.infer.scale_moves`). An exact row redraw turns the pattern over in one step.
Why by hand: Pyro has no conditional sampler for this structure, and the sums over the
observed entries per row are those the block ascent already forms.
"""

from __future__ import annotations

import torch

from bayestensor.formats.entry_start import RowGroups, row_fitted, row_normal_equations


class CPRowGibbs:
    """Factor-row redraws of :class:`~bayestensor.models.completion.TensorCompletion` (CP).

    Parameters
    ----------
    indices, values, shape, rank, factor_sites
        The observed indices, standardized values, tensor shape, CP rank and factor sites,
        as for :class:`~bayestensor.models.cp_block_ascent.CPGammaBlockAscent`.
    hyper_site : str
        Site of the slice precisions or scales.
    variance : callable
        Slice variances from the hyper site's values (``RankPrior.variance``).
    noise_site : str
        Site of the noise precision.
    offset_site : str, optional
        Site of the offset added to every entry, prior ``Normal(0, offset_scale)``; ``None``:
        the model has none.
    offset_scale : float
    """

    def __init__(self, indices, values, shape, rank: int, *, factor_sites, hyper_site: str,
                 variance, noise_site: str, offset_site: str | None = None,
                 offset_scale: float = 1.0):
        y = values.detach().cpu().double()
        idx = indices.detach().cpu().long()
        self.groups = [RowGroups(idx, y, mode, size, rank) for mode, size in enumerate(shape)]
        self.factor_sites, self.hyper_site = list(factor_sites), hyper_site
        self.variance, self.noise_site = variance, noise_site
        self.offset_site, self.offset_precision = offset_site, offset_scale ** -2

    def redraw(self, values: dict, generator: torch.Generator) -> dict:
        """Batched constrained ``values`` (``(C, ...)`` per site) with every factor redrawn,
        mode after mode, from its full conditional, and then the offset."""
        sites = self.factor_sites + ([] if self.offset_site is None else [self.offset_site])
        out = {s: values[s].clone() for s in sites}
        for c in range(values[self.noise_site].shape[0]):
            factors = [values[s][c].detach().cpu().double() for s in self.factor_sites]
            variance = self.variance(values[self.hyper_site][c])
            prior_precision = 1.0 / variance.detach().cpu().double()
            tau = float(values[self.noise_site][c])
            offset = 0.0 if self.offset_site is None else float(values[self.offset_site][c])
            for mode, groups in enumerate(self.groups):
                factors[mode], design = self._draw_rows(factors, groups, prior_precision, tau,
                                                        offset, generator)
            for s, f in zip(self.factor_sites, factors):
                out[s][c] = f.to(out[s])
            if self.offset_site is not None:
                residual = groups.values - row_fitted(design, factors[-1], groups)
                out[self.offset_site][c] = self._draw_offset(residual, tau, generator)
        return {**values, **out}

    @staticmethod
    def _draw_rows(factors, groups: RowGroups, prior_precision: torch.Tensor, tau: float,
                   offset: float, generator: torch.Generator):
        """The mode's new factor and the design of its rows."""
        gram, rhs, design = row_normal_equations(factors, groups, offset)
        precision = tau * gram + torch.diag_embed(prior_precision).expand_as(gram)
        return gaussian_draw(precision, tau * rhs, generator), design

    def _draw_offset(self, residual: torch.Tensor, tau: float,
                     generator: torch.Generator) -> float:
        precision = tau * len(residual) + self.offset_precision
        noise = torch.randn((), generator=generator, dtype=torch.float64,
                            device=generator.device)
        return float(tau * residual.sum() / precision + noise.cpu() / precision ** 0.5)


#: Diagonal jitters tried, in units of the dtype's machine epsilon times a matrix's mean
#: diagonal entry, on a precision that rounding left without a Cholesky factor
#: (:func:`precision_cholesky`): from the size of that rounding up.
CHOLESKY_JITTERS = (10.0, 1e3, 1e5, 1e7)


def precision_cholesky(precision: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L, factored)``: the Cholesky factors of a batch of precisions ``(..., D, D)`` and
    whether each was factored (a boolean of the batch shape).

    A precision ``tau G + diag(1 / v)`` is positive definite in exact arithmetic, but where
    ``tau G`` outgrows a slice's ``1 / v`` by 1e16 (a fit that nearly interpolates few data,
    with a slice deep in its prior's funnel) rounding loses its smallest eigenvalue and
    ``torch.linalg.cholesky`` fails. Such a matrix is factored again with a diagonal jitter
    relative to its own mean diagonal, growing through ``CHOLESKY_JITTERS`` (the remedy of
    GPyTorch's ``psd_safe_cholesky``); the first is of the size of the rounding that broke it.
    A matrix no jitter mends (non-finite entries) is not factored and its ``L`` is NaN.
    """
    lower, info = torch.linalg.cholesky_ex(precision)
    failed = info > 0
    if not bool(failed.any()):
        return lower, ~failed
    size = precision.shape[-1]
    flat, lower, failed = (precision.reshape(-1, size, size), lower.reshape(-1, size, size),
                           failed.reshape(-1))
    mean_diagonal = flat.diagonal(dim1=-2, dim2=-1).mean(-1) * torch.finfo(flat.dtype).eps
    eye = torch.eye(size, dtype=flat.dtype, device=flat.device)
    for jitter in CHOLESKY_JITTERS:
        idx = failed.nonzero().squeeze(-1)
        shifted = flat[idx] + (jitter * mean_diagonal[idx])[:, None, None] * eye
        mended, info = torch.linalg.cholesky_ex(shifted)
        lower[idx] = mended
        failed[idx] = info > 0
        if not bool(failed.any()):
            break
    lower[failed] = torch.nan
    return lower.reshape(precision.shape), ~failed.reshape(precision.shape[:-2])


def gaussian_draw(precision: torch.Tensor, shift: torch.Tensor,
                  generator: torch.Generator) -> torch.Tensor:
    """One draw of ``Normal(P^-1 b, P^-1)`` per batch entry, from its precision ``P``
    (``(..., D, D)``) and shift ``b = P m`` (``(..., D)``): ``m + L^-T z`` with ``P = L L^T``
    (the row redraws here, the factor redraws of
    :mod:`~bayestensor.models.regression_gibbs`). A precision that cannot be factored even
    with a jitter (:func:`precision_cholesky`) gives a NaN draw, which the sampler's driver
    reports as a divergence, keeping the draws made before it."""
    lower = precision_cholesky(precision)[0]
    mean = torch.cholesky_solve(shift.unsqueeze(-1), lower).squeeze(-1)
    return mean + precision_spread(lower, generator)


def precision_spread(lower: torch.Tensor, generator: torch.Generator,
                     sample_shape: tuple = ()) -> torch.Tensor:
    """Draws of ``Normal(0, P^-1)`` from the Cholesky factor ``L`` of ``P = L L^T``
    (``(..., D, D)``): ``L^-T z``, shape ``sample_shape + (..., D)`` (:func:`gaussian_draw`, and
    the closed-form VI's draws, :mod:`~bayestensor.models.cp_variational`)."""
    sample_shape = tuple(sample_shape)
    noise = torch.randn(sample_shape + lower.shape[:-1] + (1,), generator=generator,
                        dtype=lower.dtype, device=generator.device)
    # The draws as the right-hand sides' columns: broadcasting L over the sample dims would
    # copy it once per draw (5 GB and 22 s for 1,000 draws of 1,000 rows of rank 25; 0.4 GB
    # and 0.9 s this way).
    rest = lower.shape[:-1]  # batch dims and D
    columns = noise.reshape((-1,) + rest).movedim(0, -1)
    spread = torch.linalg.solve_triangular(lower.transpose(-1, -2), columns, upper=True)
    return spread.movedim(-1, 0).reshape(sample_shape + rest)

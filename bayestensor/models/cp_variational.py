"""Closed-form mean-field VI of a CP completion under any of its three rank priors.

The variational family is that of Bayesian CP factorization by variational Bayes (Zhao, Zhang
& Cichocki, "Bayesian CP Factorization of Incomplete Tensors with Automatic Rank
Determination", TPAMI 2015), on this library's model (standardized data, its hyperpriors)::

    q = prod_{modes n, rows i} Normal(u_i^(n); m_i, S_i)          (R x R covariance per row)
        * prod_r Gamma(lambda_r; alpha_r, beta_r) * Gamma(tau; alpha_tau, beta_tau)
        * Normal(c; m_c, v_c)                               (the offset added to every entry)

Each block's optimal factor given the others is closed-form. For row ``i`` of mode ``n``,
with ``E[G_i]`` the sum over its observed entries of the Hadamard product of the other
modes' second moments ``m m^T + S`` and ``r_i`` the sum of ``y - m_c`` times their means'
product::

    S_i = (E[tau] E[G_i] + diag(E[lambda]))^-1,    m_i = E[tau] S_i r_i,
    alpha_r = a + n_r / 2,   beta_r = b + sum over modes and rows of (m_ir^2 + S_i,rr) / 2,
    v_c = 1 / (E[tau] N + 1 / s_c^2),   m_c = v_c E[tau] sum_j (y_j - E[x_j]),
    alpha_tau = a_tau + N / 2,   beta_tau = b_tau + E[RSS] / 2,

with ``c ~ Normal(0, s_c)`` the offset's prior and ``x_j`` the CP entry of observation ``j``.

Under the half-Cauchy prior on a slice's scale ``s_r = lambda_r^(-1/2)`` the same family
holds with one more factor: ``s_r ~ HalfCauchy(A)`` is ``lambda_r | kappa_r ~ Gamma(1/2,
kappa_r)`` with ``kappa_r ~ Gamma(1/2, 1 / A^2)`` (Wand, Ormerod, Padoan & Fruhwirth, "Mean
field variational Bayes for elaborate distributions", Bayesian Analysis 2011), so ``q`` gains
``prod_r Gamma(kappa_r; 1, 1 / A^2 + E[lambda_r])`` and the slice precisions' update reads
``alpha_r = 1/2 + n_r / 2, beta_r = E[kappa_r] + ...``: the prior's rate is learnt per slice.
Under the log-uniform prior on the scale over ``[low, high]``, ``p(lambda_r) ∝ 1 /
lambda_r`` on ``[high^-2, low^-2]``, and ``q(lambda_r)`` is the Gamma of ``a = b = 0``
truncated to that interval (its moments from the regularized incomplete gamma function).

Against the MAP's block ascent (:mod:`bayestensor.models.cp_block_ascent`) the only change in
a row's system is the covariance terms in ``E[G_i]``: the other factors' uncertainty adds to
the ridge and shrinks the row. That is what the joint mode lacks at low signal to noise: on
the rank study's 0 dB setting (30^3, rank 3, 10% observed) the MAP's held-out predictions are
6-10% too large (the least-squares scale onto the truth is 0.90-0.94, against 0.98-1.07 for
SGHMC's posterior mean and for VB; ``benchmarks/point_estimate_scale.py``), and a noise
precision held at its true value does not change that.

A sweep updates the modes in turn, then the slice precisions, the offset and the noise
precision; each
step maximizes the evidence lower bound (ELBO) in its block, so the bound never falls. Started
at a MAP point (``S = 0``, the MAP's precisions as the first expectations), the slices the MAP
switched off stay off: their precisions grow by about ``E[tau] E[G]`` each sweep.

Why by hand: Pyro's SVI fits a fully factorized Gaussian by stochastic gradients (3,000 Adam
steps, 30 s on that case; :func:`bayestensor.infer.baselines.vi_fit`); these updates are
exact and converge in tens of sweeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.distributions import Gamma

from bayestensor.checks import positive_int, real_number
from bayestensor.formats.cp import CPTensor
from bayestensor.models.cp_row_gibbs import precision_cholesky, precision_spread
from bayestensor.priors.hyperpriors import INSIDE_BOUNDS

#: Most per-entry second moments (upper triangles, ``entries x R (R + 1) / 2``) held at once.
CHUNK_ELEMENTS = 1 << 22
#: A slice whose mean (the product of its columns' norms) falls below this fraction of the
#: largest slice's is pruned. Without it a switched-off slice never settles: with its mean at
#: zero its precision's rate is ``b + n / (2 lambda)`` and falls each sweep, the ELBO creeping
#: up for hundreds of sweeps (BCPF prunes such slices at machine precision).
PRUNE_BELOW = 1e-8
#: A second fit of :meth:`CPGammaVariational.fit` starts the noise precision at the point's
#: residual when that precision exceeds the first fit's ``E[tau]`` by more than this factor.
#: On the rank study's 42 runs the ratio is 0.90-1.41 and the first fit keeps the exact rank
#: in 41; where the first fit switched off a real component it was 6.7 and 27
#: (``benchmarks/vi_noise_start.py``; the tensor of ``tests/test_gibbs.py``'s chains from the
#: starting values).
SECOND_START_RATIO = 2.0
#: Floor of the point's mean squared residual (standardized units): a start that fits the
#: observed entries exactly.
MIN_START_RESIDUAL = 1e-6


@dataclass
class CPVariational:
    """The fitted ``q`` of :class:`CPGammaVariational` (float64, CPU).

    ``means[n]`` ``(I_n, R)`` (zero in the pruned slices), ``lowers[n]`` ``(I_n, A, A)`` (the
    Cholesky factors of the rows' precisions over the ``A`` slices still ``active``, ``(R,)``
    bool; ``None`` before the first sweep, when the rows are points), the Gamma shapes and
    rates of the slice precisions (``(R,)``) and of the noise precision, the rates of the
    half-Cauchy prior's auxiliary ``q(kappa_r) = Gamma(1, aux_rate_r)`` (``None`` under the
    gamma prior), the offset's mean and variance (zero without an offset), the ELBO after
    each sweep, the sweeps run, whether the ELBO settled, and the final ELBO from each start
    :meth:`CPGammaVariational.fit` tried (``noise_starts``).
    """

    means: list
    lowers: list | None
    active: torch.Tensor
    slice_shape: torch.Tensor
    slice_rate: torch.Tensor
    noise_shape: float
    noise_rate: float
    aux_rate: torch.Tensor | None = None
    offset_mean: float = 0.0
    offset_var: float = 0.0
    elbo: list = field(default_factory=list)
    sweeps: int = 0
    converged: bool = False
    noise_starts: dict = field(default_factory=dict)

    @property
    def precisions(self) -> list:
        """Row precisions ``S_i^-1`` per mode, ``(I_n, A, A)``."""
        return [low @ low.transpose(-1, -2) for low in self.lowers]

    @property
    def covariances(self) -> list:
        """Row covariances ``S_i`` per mode, ``(I_n, A, A)`` (zero before the first sweep)."""
        if self.lowers is None:
            size = int(self.active.sum())
            return [torch.zeros(m.shape[0], size, size, dtype=torch.float64)
                    for m in self.means]
        return [torch.cholesky_inverse(low) for low in self.lowers]


class Interrupted(Exception):
    """Ctrl-C during :meth:`CPGammaVariational.fit`; carries ``q`` as it was."""

    def __init__(self, q: CPVariational):
        super().__init__(f"interrupted after {q.sweeps} sweeps")
        self.q = q


class CPGammaVariational:
    """Coordinate-ascent VI of :class:`~bayestensor.models.completion.TensorCompletion` (CP,
    gamma, half-Cauchy or log-uniform prior; in each ``q`` of a slice precision is a Gamma,
    truncated under the log-uniform prior).

    Parameters
    ----------
    indices, values, shape, rank, factor_sites, precision_site, noise_site, slice_count, a, b,
    noise_a, noise_b
        The observed index tuples ``(N, ndim)``, standardized values ``(N,)``, tensor shape, CP
        rank, site names and prior parameters, as for
        :class:`~bayestensor.models.cp_block_ascent.CPGammaBlockAscent`; ``a, b`` (the
        gamma prior) only without either of the two below.
    half_cauchy_scale : float, optional
        ``A`` of the half-Cauchy prior on the slice scales; ``precision_site`` then holds
        scales ``lambda^(-1/2)``, as the model's site does.
    log_uniform_bounds : tuple of float, optional
        ``(low, high)`` of the log-uniform prior on the slice scales (``precision_site``
        holds scales too).
    offset_site, offset_scale
        The offset's site and prior sd, as for ``CPGammaBlockAscent``; ``None``: no offset.

    Raises
    ------
    ValueError
        Unless exactly one hyperprior is given (both ``a`` and ``b``, or one of the two
        above).
    """

    def __init__(self, indices: torch.Tensor, values: torch.Tensor, shape, rank: int, *,
                 factor_sites, precision_site: str, noise_site: str, slice_count: int,
                 noise_a: float, noise_b: float, a: float | None = None,
                 b: float | None = None, half_cauchy_scale: float | None = None,
                 log_uniform_bounds: tuple | None = None, offset_site: str | None = None,
                 offset_scale: float = 1.0):
        laws = [name for name, given in (("a and b", a is not None or b is not None),
                                         ("half_cauchy_scale", half_cauchy_scale is not None),
                                         ("log_uniform_bounds", log_uniform_bounds is not None))
                if given]
        if len(laws) != 1 or (laws == ["a and b"] and (a is None or b is None)):
            raise ValueError("CPGammaVariational: expected one hyperprior, a and b (gamma), "
                             f"half_cauchy_scale or log_uniform_bounds; got {laws or 'none'}")
        self.idx = indices.detach().cpu().long()
        self.y = values.detach().cpu().double()
        self.shape, self.rank = tuple(int(s) for s in shape), int(rank)
        self.factor_sites = list(factor_sites)
        self.precision_site, self.noise_site = precision_site, noise_site
        self.half_cauchy = half_cauchy_scale is not None
        self.bounds = None  # of lambda, under the log-uniform prior
        if self.half_cauchy:  # lambda | kappa ~ Gamma(1/2, kappa); b is E[kappa], per slice
            self.a, self.b, self.aux_prior_rate = 0.5, None, float(half_cauchy_scale) ** -2
        elif log_uniform_bounds is not None:  # p(lambda) ∝ 1 / lambda on the bounds
            self.scale_bounds = tuple(float(v) for v in log_uniform_bounds)
            self.bounds = (self.scale_bounds[1] ** -2, self.scale_bounds[0] ** -2)
            self.a, self.b = 0.0, 0.0
        else:
            self.a, self.b = float(a), float(b)
        self.site_is_scale = self.half_cauchy or self.bounds is not None
        self.slice_count = slice_count
        self.noise_a, self.noise_b = float(noise_a), float(noise_b)
        self.sum_y, self.sum_y2 = float(self.y.sum()), float(self.y.pow(2).sum())
        self.offset_site, self.offset_precision = offset_site, float(offset_scale) ** -2

    # --- fitting ---------------------------------------------------------------------------
    def fit(self, point: dict, *, max_sweeps: int = 500, tol: float = 1e-6) -> CPVariational:
        """Sweep from one point until the ELBO settles; from a second start of the noise level
        where the first fit's disagrees with the point's residual.

        The rows start at the point's factors with zero covariance, and the first sweep uses
        the point's slice and noise precisions as their expectations. When the point fits the
        observed entries much more closely than the fitted ``q`` says the noise allows (the
        reciprocal of its mean squared residual above ``SECOND_START_RATIO`` times the fitted
        ``E[tau]``), a second fit starts ``E[tau]`` at that reciprocal, and the ``q`` with the
        higher ELBO is kept. The model's starting values put the noise precision at ``1 /
        Var(y)``, and with few observations the first sweeps can shrink a weak real component
        to zero before ``E[tau]`` has risen: on a 20 x 15 x 10 rank-3 tensor at 20% observed
        the first fit kept rank 2 (held-out error 0.355, ELBO -401), the second rank 3 (0.064,
        ELBO -19). Started at the residual always, the fit keeps a surplus slice more often
        (the rank study's exact rank in 34 of 42 runs against 41), hence the ELBO's choice
        (``benchmarks/vi_noise_start.py``). Last, the model without a low-rank part is fitted
        too (:meth:`_null_fit`: the offset and noise alone, a few scalar updates) and kept
        where its ELBO is higher: on data without low-rank structure the sweeps from the
        point can settle with slices that fit noise (``benchmarks/vi_null_start.py``).

        Parameters
        ----------
        point : dict of str to torch.Tensor
            Constrained values of the factor, slice-precision and noise sites, without a
            chain axis (a MAP point, or the model's starting values).
        max_sweeps : int
            Most sweeps of each fit.
        tol : float
            Converged when a sweep (with the same slices as the one before) changes the ELBO
            by at most ``tol`` times ``|ELBO| + N``. In a CP model the slices trade scale
            between modes slowly (the ALS "swamp"), and the ELBO creeps up by a few 1e-4 nats
            a sweep for hundreds of sweeps while the predictions no longer move; ``1e-6``
            stops there.

        Returns
        -------
        CPVariational
            The fitted ``q``; ``converged`` false after ``max_sweeps``; ``noise_starts`` the
            final ELBO from each start (``"point"``, ``"null"``, and ``"residual"`` where it
            ran).

        Raises
        ------
        ValueError
            If ``max_sweeps`` is not a positive integer or ``tol`` is negative.
        Interrupted
            On Ctrl-C, carrying ``q`` as it was after the last whole sweep (during a later
            fit: the best of the fits done).
        """
        positive_int("max_sweeps", max_sweeps)
        real_number("tol", tol, low_open=False)
        q = self._ascend(self._start(point, float(point[self.noise_site])), max_sweeps, tol)
        fits = {"point": q}
        residual_precision = 1 / self._residual(self._point_means(point), self._offset(point))
        try:
            if residual_precision > SECOND_START_RATIO * q.noise_shape / q.noise_rate:
                fits["residual"] = self._ascend(self._start(point, residual_precision),
                                                max_sweeps, tol)
            fits["null"] = self._null_fit(point, max_sweeps, tol)
        except (Interrupted, KeyboardInterrupt):
            raise Interrupted(max(fits.values(), key=lambda f: f.elbo[-1])) from None
        kept = max(fits.values(), key=lambda f: f.elbo[-1])
        kept.noise_starts = {name: f.elbo[-1] for name, f in fits.items()}
        return kept

    def _null_fit(self, point: dict, max_sweeps: int, tol: float) -> CPVariational:
        """``q`` of the model without a low-rank part: every slice pruned, only the offset and
        the noise precision fitted (by the same updates and stopping rule as the sweeps),
        scored by the same ELBO, in which a pruned slice leaves the model.

        From the model's start the sweeps can settle with two or three slices fitting noise
        (a 20^3 tensor of pure noise, 30% observed: three slices, a low-rank part at 0.26 of
        the data's sd, ELBO -3475, where this fit reaches -3418): a local optimum of the
        coordinate ascent, since a sweep never prunes its last slices all at once.
        """
        q = self._start(point, float(point[self.noise_site]))
        q.active = torch.zeros(self.rank, dtype=torch.bool)
        for m in q.means:
            m.zero_()
        q.slice_rate = self._prior_rate(q).clone()  # a pruned slice's, as in _prune
        q.lowers = []
        n, no_slices = len(self.y), torch.zeros(0, dtype=torch.float64)
        while q.sweeps < max_sweeps and not q.converged:
            self._update_offset(q, q.noise_shape / q.noise_rate, fitted_sum=0.0)
            e_rss = self._offset_rss(q)
            q.noise_rate = self.noise_b + e_rss / 2
            q.elbo.append(self._elbo(q, [], no_slices, e_rss))
            q.sweeps += 1
            q.converged = len(q.elbo) > 1 and abs(q.elbo[-1] - q.elbo[-2]) <= tol * (
                abs(q.elbo[-1]) + n)
        return q

    def _start(self, point: dict, noise_precision: float) -> CPVariational:
        """``q`` at the point: the rows at its factors, the slice precisions' expectations at
        its values and ``E[tau]`` at ``noise_precision``."""
        R = self.rank
        q = CPVariational(means=self._point_means(point), lowers=None,
                          active=torch.ones(R, dtype=torch.bool),
                          slice_shape=torch.full((R,), self.a + self.slice_count / 2,
                                                 dtype=torch.float64),
                          slice_rate=torch.ones(R, dtype=torch.float64),
                          noise_shape=self.noise_a + len(self.y) / 2, noise_rate=1.0,
                          offset_mean=self._offset(point))
        lam = point[self.precision_site].detach().cpu().double().reshape(R)
        if self.site_is_scale:
            lam = lam.pow(-2)
        if self.half_cauchy:
            q.aux_rate = self.aux_prior_rate + lam
        q.slice_rate = q.slice_shape / lam
        q.noise_rate = q.noise_shape / noise_precision
        return q

    def _point_means(self, point: dict) -> list:
        return [point[s].detach().cpu().double().clone() for s in self.factor_sites]

    def _offset(self, point: dict) -> float:
        return 0.0 if self.offset_site is None else float(point[self.offset_site])

    def _ascend(self, q: CPVariational, max_sweeps: int, tol: float) -> CPVariational:
        """Sweeps from ``q`` until the ELBO settles or ``max_sweeps`` have run."""
        try:
            same_slices = False
            while q.sweeps < max_sweeps and not q.converged:
                self._sweep(q)
                q.sweeps += 1
                if same_slices:
                    q.converged = abs(q.elbo[-1] - q.elbo[-2]) <= tol * (abs(q.elbo[-1])
                                                                        + len(self.y))
                same_slices = not self._prune(q)
        except KeyboardInterrupt:
            raise Interrupted(q) from None
        return q

    def _residual(self, means: list, offset: float) -> float:
        """The mean squared residual of factors ``means`` and ``offset`` on the observed
        entries, floored at ``MIN_START_RESIDUAL``; the entries ``CHUNK_ELEMENTS`` gathered
        numbers at a time (at once, 1e7 entries of rank 40 would gather 3 GB)."""
        cp = CPTensor(self.shape, means)
        step = max(CHUNK_ELEMENTS // self.rank, 1)
        fitted = torch.cat([cp.entries(self.idx[begin:begin + step], check=False)
                            for begin in range(0, len(self.y), step)])
        return max(float((self.y - offset - fitted).pow(2).mean()), MIN_START_RESIDUAL)

    def _sweep(self, q: CPVariational) -> None:
        """One sweep over the active slices: the rows of every mode, the slice precisions, the
        noise precision; the ELBO appended."""
        act = q.active
        e_lam = self._lambda_moments(q)[0]
        e_tau = q.noise_shape / q.noise_rate
        means = [m[:, act] for m in q.means]
        covs = q.covariances
        lowers = []
        for mode in range(len(self.shape)):
            gram, rhs, design_sum = self._row_moments(mode, means, covs)
            precision = e_tau * gram + torch.diag_embed(e_lam).expand_as(gram)
            lowers.append(_factor(precision, mode))
            shift = rhs - q.offset_mean * design_sum  # the right-hand side of y - E[c]
            means[mode] = e_tau * torch.cholesky_solve(shift.unsqueeze(-1),
                                                       lowers[-1]).squeeze(-1)
            covs[mode] = torch.cholesky_inverse(lowers[-1])
        # E[RSS] from the last mode's sums: E[sum of fitted^2] = sum_i <E[u_i u_i^T], E[G_i]>,
        # sum of E[fitted] = sum_i <m_i, design_sum_i>
        fitted_sum = float((means[-1] * design_sum).sum())
        second = means[-1].unsqueeze(-1) * means[-1].unsqueeze(-2) + covs[-1]
        fitted_terms = (float((means[-1] * rhs).sum()), float((second * gram).sum()))
        means, covs, lowers, squares = self._balance(means, covs, lowers, e_lam)
        # q changes only here, so a sweep cut short by Ctrl-C leaves the previous one's q
        q.lowers = lowers
        for full, mean in zip(q.means, means):
            full[:, act] = mean
        q.slice_rate[act] = self._prior_rate(q)[act] + squares / 2
        if self.half_cauchy:
            q.aux_rate[act] = self.aux_prior_rate + self._lambda_moments(q)[0]
        self._update_offset(q, e_tau, fitted_sum)
        e_rss = (self._offset_rss(q) - 2 * (fitted_terms[0] - q.offset_mean * fitted_sum)
                 + fitted_terms[1])
        q.noise_rate = self.noise_b + e_rss / 2
        q.elbo.append(self._elbo(q, covs, squares, e_rss))

    def _balance(self, means: list, covs: list, lowers: list,
                 e_lam: torch.Tensor) -> tuple[list, list, list, torch.Tensor]:
        """The rows of every mode rescaled per slice, ``u -> c_n u`` with ``prod_n c_n = 1``,
        to the scales that maximize the ELBO at the current ``q(lambda)``; with the rescaled
        rows' expected squared norms summed over modes, ``(A,)``.

        The rescaling leaves every product of one row per mode, and so the likelihood term,
        unchanged; of the ELBO it moves the factors' prior term ``-E[lambda_r] / 2 sum_n c_n^2
        s_n`` (``s_n`` the expected squared norm of column ``r`` of mode ``n``) and the rows'
        entropy ``sum_n I_n log c_n``. Their maximum under the constraint has ``I_n -
        E[lambda_r] c_n^2 s_n = mu`` for one ``mu`` per slice, found by bisection. The sweeps
        alone move along this direction slowly (the slices trade scale between modes, the
        ALS "swamp"): on a 40 x 30 x 6 tensor the ELBO still rose by 0.005 nats a sweep after
        500 sweeps, 11 nats in all, while the predictions stood still.
        """
        squares = torch.stack([m.pow(2).sum(0) + torch.diagonal(s, dim1=-2, dim2=-1).sum(0)
                               for m, s in zip(means, covs)])  # (N, A)
        weights = (e_lam * squares).numpy()
        if not np.all(weights > 0):
            return means, covs, lowers, squares.sum(0)
        # a few numbers per slice: NumPy, whose operations cost a microsecond, not torch's ten
        sizes = np.asarray(self.shape, dtype=float)[:, None]  # (N, 1)
        target = np.log(weights).sum(0)  # sum_n log(I_n - mu) must equal this
        # mu = smallest - exp(x): sum_n log(I_n - smallest + exp(x)) rises with x
        low, high = np.full_like(target, -60.0), np.full_like(target, 60.0)
        for _ in range(80):
            mid = (low + high) / 2
            above = np.log(sizes - sizes.min() + np.exp(mid)).sum(0) > target
            high, low = np.where(above, mid, high), np.where(above, low, mid)
        mu = sizes.min() - np.exp((low + high) / 2)
        log_scale = 0.5 * (np.log(sizes - mu) - np.log(weights))
        log_scale -= log_scale.mean(0)  # the product exactly 1 after rounding
        scale = torch.from_numpy(np.exp(log_scale))  # (N, A)
        means = [m * c for m, c in zip(means, scale)]
        covs = [s * c[:, None] * c[None, :] for s, c in zip(covs, scale)]
        lowers = [low_ / c[:, None] for low_, c in zip(lowers, scale)]
        return means, covs, lowers, (squares * scale ** 2).sum(0)

    def _update_offset(self, q: CPVariational, e_tau: float, fitted_sum: float) -> None:
        """``q(c)`` given ``E[tau]`` and the sum of the low-rank part's means over the observed
        entries (0 without slices); nothing without an offset."""
        if self.offset_site is not None:
            q.offset_var = 1 / (e_tau * len(self.y) + self.offset_precision)
            q.offset_mean = q.offset_var * e_tau * (self.sum_y - fitted_sum)

    def _offset_rss(self, q: CPVariational) -> float:
        """``E_q[sum_i (y_i - c)^2]``: the expected residual sum of squares without the
        low-rank part, to which a sweep adds that part's terms."""
        m_c, n = q.offset_mean, len(self.y)
        return self.sum_y2 - 2 * m_c * self.sum_y + n * (m_c ** 2 + q.offset_var)

    def _prior_rate(self, q: CPVariational) -> torch.Tensor:
        """The rate of each slice precision's prior: ``b``, or under the half-Cauchy prior
        ``E[kappa_r]``."""
        if self.half_cauchy:
            return 1 / q.aux_rate
        return torch.full((self.rank,), self.b, dtype=torch.float64)

    def _lambda_moments(self, q: CPVariational) -> tuple[torch.Tensor, torch.Tensor,
                                                          torch.Tensor]:
        """``E[lambda]``, ``E[log lambda]`` and the entropy of ``q(lambda)`` of the active
        slices: a Gamma, truncated to the bounds under the log-uniform prior."""
        shape, rate = q.slice_shape[q.active], q.slice_rate[q.active]
        if self.bounds is not None:
            return truncated_gamma_moments(shape, rate, *self.bounds)
        return shape / rate, torch.digamma(shape) - rate.log(), Gamma(shape, rate).entropy()

    def _prune(self, q: CPVariational) -> bool:
        """Switch off the active slices whose mean is below ``PRUNE_BELOW`` of the largest
        (the product of their columns' norms); whether any was. A pruned slice's rows are
        zero and its precision's ``q`` is its conditional given them, ``Gamma(a + n / 2,
        b)`` (under the half-Cauchy prior ``b = E[kappa_r]`` as it was)."""
        size = torch.stack([m.norm(dim=0) for m in q.means]).prod(0)
        off = q.active & (size < PRUNE_BELOW * size.max())
        if not bool(off.any()) or int((q.active & ~off).sum()) == 0:
            return False
        keep = ~off[q.active]
        # a sub-block of P has its own Cholesky factor (not the sub-block of P's factor)
        q.lowers = [_factor(p[:, keep][:, :, keep], mode) for mode, p in enumerate(q.precisions)]
        q.active = q.active & ~off
        for m in q.means:
            m[:, off] = 0.0
        q.slice_rate[off] = self._prior_rate(q)[off]
        return True

    def _row_moments(self, mode: int, means: list, covs: list) -> tuple[torch.Tensor,
                                                                         torch.Tensor,
                                                                         torch.Tensor]:
        """``E[G_i]`` ``(I, R, R)``, ``r_i`` ``(I, R)`` (of ``y``) and the sum of the other
        modes' means' products ``(I, R)`` (the right-hand side of a constant 1) of every row of
        ``mode``.

        The per-entry products are symmetric, so only their upper triangles are gathered,
        multiplied and summed, in buffers reused by every chunk: the sweep is a few passes
        over ``N x R (R + 1) / 2`` numbers, memory-bound (3.5x faster than full ``R x R``
        blocks in fresh tensors, with the same sums).
        """
        R, size = means[0].shape[1], self.shape[mode]
        others = [k for k in range(len(self.shape)) if k != mode]
        upper = torch.triu_indices(R, R)
        packed = upper.shape[1]
        seconds = {k: (means[k].unsqueeze(-1) * means[k].unsqueeze(-2) + covs[k])[
            :, upper[0], upper[1]].contiguous() for k in others}
        gram = torch.zeros(size, packed, dtype=torch.float64)
        rhs = torch.zeros(size, R, dtype=torch.float64)
        design_sum = torch.zeros(size, R, dtype=torch.float64)
        step = max(1, min(len(self.y), CHUNK_ELEMENTS // packed))
        second, second_k = (torch.empty(step, packed, dtype=torch.float64) for _ in range(2))
        mean, mean_k = (torch.empty(step, R, dtype=torch.float64) for _ in range(2))
        for start in range(0, len(self.y), step):
            idx = self.idx[start:start + step]
            n = len(idx)
            torch.index_select(seconds[others[0]], 0, idx[:, others[0]], out=second[:n])
            torch.index_select(means[others[0]], 0, idx[:, others[0]], out=mean[:n])
            for k in others[1:]:
                second[:n].mul_(torch.index_select(seconds[k], 0, idx[:, k], out=second_k[:n]))
                mean[:n].mul_(torch.index_select(means[k], 0, idx[:, k], out=mean_k[:n]))
            rows = idx[:, mode]
            gram.index_add_(0, rows, second[:n])
            design_sum.index_add_(0, rows, mean[:n])
            rhs.index_add_(0, rows, mean[:n].mul_(self.y[start:start + n].unsqueeze(-1)))
        full = torch.empty(size, R, R, dtype=torch.float64)
        full[:, upper[0], upper[1]] = gram
        full[:, upper[1], upper[0]] = gram
        return full, rhs, design_sum

    def _elbo(self, q: CPVariational, covs: list, squares: torch.Tensor, e_rss: float) -> float:
        """The evidence lower bound of ``q`` over the active slices (a pruned slice leaves
        the model, as in BCPF), with every constant."""
        n, R, act = len(self.y), int(q.active.sum()), q.active
        e_lam, e_log_lam, slice_entropy = self._lambda_moments(q)
        e_tau = q.noise_shape / q.noise_rate
        # float64 throughout: torch.tensor of a Python float is float32, whose digamma and
        # Gamma entropy put noise of 1e-5 nats into the ELBO (n / 2 = 200 times the rounding)
        e_log_tau = float(torch.digamma(_f64(q.noise_shape))) - math.log(q.noise_rate)
        log2pi = math.log(2 * math.pi)
        likelihood = n / 2 * (e_log_tau - log2pi) - e_tau * e_rss / 2
        factors = float((self.slice_count / 2 * (e_log_lam - log2pi) - e_lam * squares / 2).sum())
        slices = float(self._slice_prior_terms(q, e_lam, e_log_lam).sum())
        noise = float(_gamma_log_prior(self.noise_a, self.noise_b, _f64(e_tau),
                                       _f64(e_log_tau)))
        rows = sum(R / 2 * (1 + log2pi) * low.shape[0]
                   - float(low.diagonal(dim1=-2, dim2=-1).log().sum()) for low in q.lowers)
        entropy = float(slice_entropy.sum()) + float(
            Gamma(_f64(q.noise_shape), _f64(q.noise_rate)).entropy())
        return likelihood + factors + slices + noise + rows + entropy + self._offset_terms(q)

    def _offset_terms(self, q: CPVariational) -> float:
        """``E_q[log p(c)]`` plus the entropy of ``q(c)``; zero without an offset."""
        if self.offset_site is None:
            return 0.0
        prior = 0.5 * (math.log(self.offset_precision / (2 * math.pi))
                       - self.offset_precision * (q.offset_mean ** 2 + q.offset_var))
        return prior + 0.5 * math.log(2 * math.pi * math.e * q.offset_var)

    def _slice_prior_terms(self, q: CPVariational, e_lam: torch.Tensor,
                           e_log_lam: torch.Tensor) -> torch.Tensor:
        """Per active slice, ``E_q[log p(lambda_r)]`` (gamma, log-uniform); under the
        half-Cauchy prior ``E_q[log p(lambda_r | kappa_r) + log p(kappa_r)]`` plus the
        entropy of ``q(kappa_r)`` (``Gamma(1, aux_rate)``; ``E[log kappa]``'s terms
        cancel)."""
        if self.bounds is not None:  # p(lambda) = 1 / (2 lambda log(high / low))
            low, high = self.scale_bounds
            return -e_log_lam - math.log(2 * math.log(high / low))
        if not self.half_cauchy:
            return _gamma_log_prior(self.a, self.b, e_lam, e_log_lam)
        rate = q.aux_rate[q.active]
        e_kappa = 1 / rate
        half = 0.5 * math.log(self.aux_prior_rate) - 2 * math.lgamma(0.5)
        return (half - 0.5 * e_log_lam - e_kappa * e_lam - e_kappa * self.aux_prior_rate
                + 1 - rate.log())

    # --- draws -----------------------------------------------------------------------------
    def draw(self, q: CPVariational, num: int, generator: torch.Generator) -> dict:
        """Independent draws from ``q``.

        The Gamma draws use a NumPy generator seeded from ``generator`` (torch's Gamma
        sampler takes no generator), so a seeded fit repeats its draws.

        Parameters
        ----------
        q : CPVariational
            A fitted ``q`` (:meth:`fit`).
        num : int
            Number of draws.
        generator : torch.Generator
            Source of the normal draws and of the NumPy generator's seed.

        Returns
        -------
        dict of str to torch.Tensor
            ``{site: (num,) + site shape}``, constrained, float64 on the CPU; a pruned
            slice's factor columns are zero in every draw.
        """
        out = {s: m.expand((num,) + tuple(m.shape)).clone()
               for s, m in zip(self.factor_sites, q.means)}
        for site, lower in zip(self.factor_sites, q.lowers or []):  # None: the point itself
            out[site][..., q.active] += precision_spread(lower, generator, (num,)).cpu()
        seed = torch.randint(2 ** 62, (1,), generator=generator, device=generator.device)
        rng = np.random.default_rng(int(seed))
        if self.bounds is None:
            lam = torch.from_numpy(rng.gamma(q.slice_shape.numpy(), 1 / q.slice_rate.numpy(),
                                             size=(num, self.rank)))
        else:  # a pruned slice (zero rows, rate 0) at the bound of its smallest scale
            lam = torch.full((num, self.rank), self.bounds[1], dtype=torch.float64)
            lam[:, q.active] = truncated_gamma_draws(q.slice_shape[q.active],
                                                     q.slice_rate[q.active], *self.bounds,
                                                     num, rng)
        if self.site_is_scale:
            lam = lam.pow(-0.5)
            if self.bounds is not None:  # strictly inside, where the site's transform is finite
                low, high = self.scale_bounds
                lam = lam.clamp(low * INSIDE_BOUNDS, high / INSIDE_BOUNDS)
        out[self.precision_site] = lam
        out[self.noise_site] = torch.from_numpy(
            rng.gamma(q.noise_shape, 1 / q.noise_rate, size=num))
        if self.offset_site is not None:
            out[self.offset_site] = torch.from_numpy(
                rng.normal(q.offset_mean, math.sqrt(q.offset_var), size=num))
        return out


def _log_lower_gamma(shape: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``log P(shape, x)``, the regularized lower incomplete gamma function, by its power
    series ``x^a e^-x / Gamma(a + 1) * sum_k x^k / ((a + 1) ... (a + k))``, which keeps its
    digits where ``P`` itself underflows (``x`` far below ``a``). For ``x <= a``."""
    from scipy import special

    total, term = np.ones_like(x), np.ones_like(x)
    for k in range(1, 100_000):
        term = term * x / (shape + k)
        total = total + term
        if np.all(term <= 1e-17 * total):
            break
    with np.errstate(divide="ignore"):
        return shape * np.log(x) - x - special.gammaln(shape + 1) + np.log(total)


def _log_mass(shape: np.ndarray, rate: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``log P(lo < x < hi)`` under ``Gamma(shape, rate)``: from the lower tails in log space
    where the mode is above ``hi`` (a slice being switched off), else as a difference of the
    upper tails (``-inf`` where that underflows: the mode far below ``lo``)."""
    from scipy import special  # on first use: no other fit needs it

    beyond = rate * hi < shape
    with np.errstate(all="ignore"):
        at_hi = _log_lower_gamma(shape, np.where(beyond, rate * hi, 0.0))
        at_lo = _log_lower_gamma(shape, np.where(beyond, rate * lo, 0.0))
        lower = at_hi + np.log1p(-np.exp(at_lo - at_hi))
        upper = np.log(special.gammaincc(shape, rate * lo) - special.gammaincc(shape, rate * hi))
    return np.where(beyond, lower, upper)


def truncated_gamma_moments(shape: torch.Tensor, rate: torch.Tensor, lo: float,
                            hi: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``E[x]``, ``E[log x]`` and the entropy of ``Gamma(shape, rate)`` truncated to ``[lo,
    hi]``. With ``Z = Gamma(a) b^-a M(a)`` and ``M(a)`` the mass inside, ``E[x] = a / b *
    M(a + 1) / M(a)``, ``E[log x] = digamma(a) - log b + d log M / da`` (a central
    difference) and ``H = log Z - (a - 1) E[log x] + b E[x]``; far from the bounds ``M = 1``
    and these are the Gamma's own. Where ``M`` underflows (the mode many sds below ``lo``, a
    slice scale above the prior's ``high``), the density inside is an exponential off ``lo``,
    and its moments are used."""
    from scipy import special

    a, b = shape.numpy(), rate.numpy()
    with np.errstate(all="ignore"):
        log_m = _log_mass(a, b, lo, hi)
        step = 1e-6 * np.maximum(a, 1.0)
        slope = (_log_mass(a + step, b, lo, hi) - _log_mass(a - step, b, lo, hi)) / (2 * step)
        mean = a / b * np.exp(_log_mass(a + 1, b, lo, hi) - log_m)
        mean_log = special.digamma(a) - np.log(b) + slope
        entropy = special.gammaln(a) - a * np.log(b) + log_m - (a - 1) * mean_log + b * mean
        # the exponential tail off lo, at decay rate b - (a - 1) / lo
        decay = b - (a - 1) / lo
        tail = ~(np.isfinite(log_m) & np.isfinite(mean) & np.isfinite(mean_log)
                 & np.isfinite(entropy))
        mean = np.where(tail, lo + 1 / decay, mean)
        mean_log = np.where(tail, np.log(lo) + 1 / (decay * lo), mean_log)
        entropy = np.where(tail, 1 - np.log(decay), entropy)
    return tuple(torch.from_numpy(np.asarray(v, dtype=np.float64))
                 for v in (mean, mean_log, entropy))


def truncated_gamma_draws(shape: torch.Tensor, rate: torch.Tensor, lo: float, hi: float,
                          num: int, rng: np.random.Generator) -> torch.Tensor:
    """``(num, len(shape))`` draws of ``Gamma(shape, rate)`` truncated to ``[lo, hi]`` by its
    inverse distribution function, in the tail on the mode's far side (as
    :func:`_log_mass`); a slice whose mass underflows is drawn at the nearer bound."""
    from scipy import special

    a, b = shape.numpy(), rate.numpy()
    beyond = b * hi < a
    u = rng.uniform(size=(num, len(a)))
    with np.errstate(all="ignore"):
        low_p, high_p = special.gammainc(a, b * lo), special.gammainc(a, b * hi)
        top, bottom = special.gammaincc(a, b * lo), special.gammaincc(a, b * hi)
        from_lower = special.gammaincinv(a, low_p + u * (high_p - low_p)) / b
        from_upper = special.gammainccinv(a, bottom + u * (top - bottom)) / b
        x = np.where(beyond, from_lower, from_upper)
        mass = np.where(beyond, high_p - low_p, top - bottom)
    nearer = np.where(a / np.maximum(b, 1e-300) > hi, hi, lo)
    x = np.where(np.isfinite(x) & (mass > 0), x, nearer)
    return torch.from_numpy(np.clip(x, lo, hi))


def _f64(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


def _gamma_log_prior(a: float, b: float, mean: torch.Tensor,
                     mean_log: torch.Tensor) -> torch.Tensor:
    """``E_q[log Gamma(x; a, b)]`` from ``E[x]`` and ``E[log x]``."""
    return a * math.log(b) - math.lgamma(a) + (a - 1) * mean_log - b * mean


def _factor(precision: torch.Tensor, mode: int) -> torch.Tensor:
    """The Cholesky factors of mode ``mode``'s row precisions (:func:`precision_cholesky`:
    with a jitter where rounding broke one), or a ``FloatingPointError`` naming the mode."""
    lower, factored = precision_cholesky(precision)
    if not bool(factored.all()):
        rows = (~factored).nonzero().squeeze(-1)[:5].tolist()
        raise FloatingPointError(f"closed-form VI: the row precisions of mode {mode} (rows "
                                 f"{rows}) have no Cholesky factor (non-finite entries)")
    return lower

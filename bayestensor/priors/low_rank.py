"""Rank-revealing priors: a shrinkage scale per rank slice, written as Pyro sample sites.

Every entry of a low-rank parameter is ``Normal(0, sqrt(prod_a v_{d(a)}[k_a]))``, where the
product runs over the parameter's rank axes ``a`` (each indexing rank dimension ``d(a)`` at
slice ``k_a``) and ``v_d`` holds one variance per slice of rank dimension ``d``. A CP factor
column ``k`` therefore has variance ``v[k]``; a TT core entry ``G_k[a, i, b]`` has variance
``v_{k-1}[a] * v_k[b]``; a Tucker core entry has the product of one variance per mode.

The hyperprior on the slice variances decides how hard unused slices are switched off:

``"gamma"``
    ARD on the precision, ``1 / v[k] ~ Gamma(a, b)`` (Bayesian CP factorization, Zhao et al.
    2015). Sites ``{name}.precision{d}``.
``"half_cauchy"``
    ``sqrt(v[k]) ~ HalfCauchy(scale)`` (Carvalho, Polson & Scott's global-local shrinkage).
    Sites ``{name}.scale{d}``.
``"log_uniform"``
    Jeffreys' ``p(s) ∝ 1/s`` on ``s = sqrt(v[k])``, truncated to ``[low, high]`` so that it is
    proper and MAP is well defined (Hawkins & Zhang 2021 use the same prior for tensorized
    networks). Sites ``{name}.scale{d}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import pyro
import pyro.distributions as dist
import torch

from bayestensor.checks import check_shape, real_number
from bayestensor.formats import LowRankTensor, ParamSpec, get_format
from bayestensor.formats.ranks import cap_ranks, check_param_count
from bayestensor.priors.conditionals import (GammaConditional, HalfCauchyConditional,
                                             LogUniformConditional)
from bayestensor.priors.densities import centered_normal_log_density
from bayestensor.priors.hyperpriors import get_prior

#: Floor on a starting slice variance: an all-zero slice would start at infinite precision.
MIN_START_VARIANCE = 1e-8
#: Floor on a starting hyper-parameter (a precision or a scale), so that its logarithm, the
#: samplers' unconstrained coordinate, stays finite in float32.
MIN_START_HYPER = 1e-6
#: Coordinate-ascent sweeps over the rank dimensions when the slice variances start
#: (one is exact for CP, whose entries have a single rank axis).
START_SWEEPS = 30


def slice_product(spec: ParamSpec, per_dim: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """Product over a parameter's rank axes of one per-slice vector each, broadcastable against
    ``batch_shape + spec.shape`` but not expanded to it (``None`` for no rank axis).

    ``per_dim[d]`` has shape ``batch_shape + (R_d,)`` (a slice variance or precision).
    """
    nd = len(spec.shape)
    out = None
    for axis, d in spec.rank_axes.items():
        v = per_dim[d]
        v = v.reshape(v.shape[:-1] + tuple(v.shape[-1] if a == axis else 1 for a in range(nd)))
        out = v if out is None else out * v
    return out


def param_std(spec: ParamSpec, variances: Sequence[torch.Tensor]) -> torch.Tensor:
    """Prior std of every entry of a parameter, ``batch_shape + spec.shape`` (broadcastable).

    ``variances[d]`` has shape ``batch_shape + (R_d,)``.

    Parameters
    ----------
    spec : ParamSpec
        The parameter: its shape and which of its axes index which rank dimension.
    variances : sequence of torch.Tensor
        Slice variances, one tensor per rank dimension ``d`` of shape
        ``batch_shape + (R_d,)``.

    Returns
    -------
    torch.Tensor
        The square root of the product of the slice variances over the parameter's rank
        axes, expanded (not copied) to ``batch_shape + spec.shape``; ones of shape
        ``spec.shape`` for a parameter without rank axes.
    """
    var = slice_product(spec, variances)
    if var is None:
        return torch.ones(spec.shape)
    # Expand to the parameter's full shape: a std that only broadcasts (size 1 along the
    # non-rank axes) would make ``pyro.sample`` draw parameters of the wrong shape when the
    # site is not conditioned (prior sampling, user models, Predictive).
    return var.sqrt().expand(var.shape[: var.ndim - len(spec.shape)] + spec.shape)


@dataclass(frozen=True)
class SliceGroup:
    """The slices of one rank dimension (what SGHMC's scale moves rescale together, see
    :mod:`bayestensor.infer.scale_moves`): its hyper site, the exponent ``e`` of ``variance =
    hyper^e`` (``-1`` for a precision, ``2`` for a scale), the ``(site, axis)`` pairs whose
    index along ``axis`` is the slice, and the entries per slice."""

    hyper: str
    exponent: float
    members: tuple[tuple[str, int], ...]
    count: int
    size: int


class LowRankPrior:
    """The prior of one low-rank tensor: hyper sites per rank dimension plus its parameters.

    Used two ways that give identical numbers: ``sample()`` inside a Pyro model registers the
    sites, and ``log_prob(values)`` evaluates the same densities on batched values directly
    (the fast path of the built-in models).

    Parameters
    ----------
    name : str
        Prefix of the site names (``{name}.factor0``, ``{name}.precision0``, ...).
    shape : sequence of int
        Shape of the represented tensor.
    rank : int or sequence of int
        Maximum rank(s); the prior switches off the slices the data do not need.
    format : {"cp", "tucker", "tt", "ttm"}
        Low-rank format.
    prior : str or RankPrior
        Hyperprior on the slice variances.
    prior_params : dict, optional
        Hyperprior parameters.
    rank_name : str
        Name of the rank argument in the caller's API (``"max_rank"`` for the models), used
        in warnings and errors.
    max_params : int, optional
        Refuse (``ValueError`` naming ``rank_name``) a tensor with more parameters than this;
        ``None`` for no limit.

    Notes
    -----
    Tucker with ``prior_params={"core_variance": c}``: the core's entries are
    ``Normal(0, c)`` and the slice variances scale the factor columns alone, so a slice's
    variance governs its ``I_d`` factor entries whatever the other modes' ranks. Under the
    default product prior it also governs its core slab, ``prod_{e != d} R_e`` entries: at a
    MAP the slabs of slices switched off in other modes count at zero energy, and the pull
    on every slice grows with the other modes' caps (``docs/benchmarks.md``, "Why Tucker
    follows the cap").

    A rank above what the shape supports (see :func:`bayestensor.formats.ranks.rank_caps`)
    is capped there with a ``UserWarning``: it would add parameters, never expressive power.
    """

    def __init__(self, name: str, shape, rank, format: str = "cp", prior="gamma",
                 prior_params: dict | None = None, *, rank_name: str = "rank",
                 max_params: int | None = None):
        self.name = name
        self.format_cls = get_format(format)
        self.shape = check_shape(shape)
        fmt = self.format_cls.format_name
        self.requested_ranks = self.format_cls.normalize_rank(self.shape, rank,
                                                              name=rank_name)
        self.ranks = cap_ranks(fmt, self.shape, self.requested_ranks, rank, name=rank_name,
                               stacklevel=4)
        self.specs = self.format_cls.specs(self.shape, self.ranks)
        check_param_count(sum(s.numel() for s in self.specs),
                          f"a {fmt} tensor of shape {self.shape} with ranks {self.ranks}",
                          rank, max_params, name=rank_name)
        self.prior = get_prior(prior, prior_params)
        self.core_variance = self.prior.params.get("core_variance")
        if self.core_variance is not None:
            if fmt != "tucker":
                raise ValueError(f"prior_params: core_variance applies to the Tucker format "
                                 f"(its core), got format {fmt!r}")
            # the core keeps no rank axes: its entries are Normal(0, core_variance)
            self.specs = [ParamSpec(s.name, s.shape, {}) if s.name == "core" else s
                          for s in self.specs]

    @property
    def hyper_sites(self) -> list[str]:
        """Pyro site names of the hyper-parameters, one per rank dimension
        (``"<name>.precision<d>"`` or ``"<name>.scale<d>"``)."""
        return [f"{self.name}.{self.prior.site_prefix}{d}" for d in range(len(self.ranks))]

    def slice_counts(self) -> dict[str, int]:
        """Per hyper site, the number of parameter entries whose prior variance has one given
        slice variance of that rank dimension as a factor (the slice entries of every factor
        or core with that rank dimension)."""
        return {site: sum(spec.numel() // size for spec in self.specs
                          if d in spec.rank_axes.values())
                for d, (site, size) in enumerate(zip(self.hyper_sites, self.ranks))}

    def conditionals(self, start_at_mode: bool = True) -> dict:
        """Hyper sites whose full conditional SGHMC can redraw exactly: ``{site: conditional}``.

        ``start_at_mode``: whether SGHMC's chains start at a mode (the MAP, the default) or at
        the starting values, which sets when Tucker's are first redrawn (below).

        Under the gamma prior a slice precision ``lambda`` enters its parameters' log density
        as ``(count / 2) log lambda - lambda * (weighted squares) / 2`` (``count`` from
        :meth:`slice_counts`); with its ``Gamma(a, b)`` prior the full conditional is
        ``Gamma(a + count / 2, .)``. Under the half-Cauchy prior a slice scale has a
        conditional through an auxiliary variable
        (:class:`~bayestensor.priors.conditionals.HalfCauchyConditional`). The rates depend on
        the current parameters (see :class:`~bayestensor.infer.sghmc.SGHMC`'s ``gibbs``). Under
        the log-uniform prior a slice scale's precision has a truncated Gamma conditional
        (:class:`~bayestensor.priors.conditionals.LogUniformConditional`), redrawn when the
        half-Cauchy's are.

        Each conditional carries its rank dimension's stage (:meth:`redraw_stages`).
        TT's and TT-matrix's precisions and scales are redrawn from the first burn-in step, and
        Tucker's when the chains start at a mode, so that the step sizes and the mass adapted
        in burn-in are those of the chain that then draws. Tucker's, redrawn only after
        burn-in, let its chains reach states burn-in never saw (where the data barely
        determine the tensor, a core slab large where its factor column is small, that
        column's curvature far above the adapted mass) and overflow: 7 of 18 runs on pure noise
        at max rank 6 and 1 of 24 on few observations, against 3 of 18 and 0 of 24 from the
        first step (``benchmarks/pure_noise_sghmc.py``, ``benchmarks/sparse_sghmc.py``;
        docs/benchmarks.md, "Tucker's redraws from the first burn-in step"). From the
        starting values they still wait for the end of burn-in: there the start's surplus
        slices are at full size, redrawn precisions keep them on, and burn-in's gradient steps
        are what shrinks them (a 20 x 15 x 10 completion from its starting values kept ranks
        (10, 10, 10) after 300 burn-in steps, error 0.156, against 0.08 waiting).
        TT's half-Cauchy scales only after burn-in gave the 26 x 24 x 22 TT case of
        ``benchmarks/sghmc_mixing.py`` R-hat 1.129, 1.319, 1.011 and bulk ESS 25, 11, 491 (3
        seeds); from the first step 1.022, 1.093, 1.013 and 347, 39, 478. A CP prior's
        half-Cauchy scales (a regression's, with its factor redraws) wait for the end of
        burn-in, as measured when that was every format's rule.
        """
        counts, stages = self.slice_counts(), self.redraw_stages()
        fmt = self.format_cls.format_name
        if self.prior.kind == "gamma":
            a = float(self.prior.params["a"])
            in_warmup = fmt != "tucker" or start_at_mode
            return {site: GammaConditional(a + count / 2, during_warmup=in_warmup, stage=stage)
                    for (site, count), stage in zip(counts.items(), stages)}
        in_warmup = fmt in ("tt", "ttm") or (fmt == "tucker" and start_at_mode)
        if self.prior.kind == "half_cauchy":
            scale = float(self.prior.params["scale"])
            return {site: HalfCauchyConditional(count, scale, stage=stage,
                                                during_warmup=in_warmup)
                    for (site, count), stage in zip(counts.items(), stages)}
        low, high = float(self.prior.params["low"]), float(self.prior.params["high"])
        return {site: LogUniformConditional(count, low, high, stage=stage,
                                            during_warmup=in_warmup)
                for (site, count), stage in zip(counts.items(), stages)}

    def redraw_stages(self) -> list[int]:
        """Per rank dimension, the stage in which its hyper site is redrawn: two dimensions
        that share a parameter (the axes of a Tucker core, the two bonds of an inner TT core)
        get different stages, as each one's conditional depends on the other's value.

        A greedy colouring of the dimensions: CP needs one stage, TT and TT-matrix two, an
        N-way Tucker N. Redrawing coupled sites together from one gradient is not a Gibbs
        step: on pure noise (a 20^3 Tucker, half-Cauchy) the three scales of a core entry
        jumped up together and down together by e^7 every redraw, until the log density
        overflowed in float32 (:mod:`bayestensor.infer.gibbs`).
        """
        stages: list[int] = []
        for d in range(len(self.ranks)):
            taken = {stages[e] for spec in self.specs for e in spec.rank_axes.values()
                     if e < d and d in spec.rank_axes.values()}
            stages.append(min(set(range(len(taken) + 1)) - taken))
        return stages

    def slice_groups(self) -> list[SliceGroup]:
        """Per rank dimension, what SGHMC's scale moves rescale together
        (:mod:`bayestensor.infer.scale_moves`): the hyper site, the exponent ``e`` of
        ``variance = hyper^e``, each parameter site with the axis that indexes the slice, and
        the entries per slice (:meth:`slice_counts`)."""
        exponent = self.prior.variance_exponent
        counts = self.slice_counts()
        groups = []
        for d, (site, size) in enumerate(zip(self.hyper_sites, self.ranks)):
            members = []
            for param, spec in zip(self.param_sites, self.specs):
                axes = [a for a, dim in spec.rank_axes.items() if dim == d]
                members += [(param, axes[0])] if axes else []
            groups.append(SliceGroup(site, exponent, tuple(members), counts[site], size))
        return groups

    @property
    def one_scale_per_entry(self) -> bool:
        """Whether every parameter entry's prior variance is one slice variance (CP), not a
        product of several (a Tucker core, inner TT cores). Products couple the slices being
        switched off into a long curved valley of the log density."""
        return all(len(spec.rank_axes) <= 1 for spec in self.specs)

    def standardizing_log_jacobian(self, values: dict) -> torch.Tensor:
        """``sum_d count_d / 2 * sum_r log v_d[r]`` of batched values: the log Jacobian of the
        map from standardized entries (entry / prior sd) to entries. Added to the log joint it
        gives the log density of the non-centred parametrization (a model's
        :attr:`~bayestensor.models.BayesModel.sghmc_start_noncentred`). A Tucker core at a fixed
        ``core_variance`` counts for nothing."""
        log_variances = [self.prior.variance(values[s]).log().sum(-1) for s in self.hyper_sites]
        total = 0.0
        for spec in self.specs:
            if self.fixed_variance(spec) is None:
                total = total + sum(log_variances[d] * (spec.numel() // self.ranks[d])
                                    for d in spec.rank_axes.values())
        return total / 2

    def fixed_variance(self, spec: ParamSpec) -> float | None:
        """The fixed prior variance of a parameter without rank axes (a Tucker core under
        ``core_variance``), else ``None``."""
        return self.core_variance if not spec.rank_axes else None

    def entry_std(self, spec: ParamSpec, variances: Sequence[torch.Tensor]) -> torch.Tensor:
        """:func:`param_std`, with a Tucker core's fixed ``core_variance`` where set.

        Parameters
        ----------
        spec : ParamSpec
            One of :attr:`specs`.
        variances : sequence of torch.Tensor
            Slice variances per rank dimension, ``batch_shape + (R_d,)`` each.

        Returns
        -------
        torch.Tensor
            Prior std of every entry, ``batch_shape + spec.shape`` (``spec.shape`` and equal
            to ``sqrt(core_variance)`` for a core under a fixed ``core_variance``).
        """
        std = param_std(spec, variances)
        fixed = self.fixed_variance(spec)
        return std if fixed is None else std * math.sqrt(fixed)

    def entry_stds(self, values: dict) -> dict[str, torch.Tensor]:
        """Prior std of every entry of every parameter at batched slice hyper-parameters.

        Parameters
        ----------
        values : dict of str to torch.Tensor
            At least the hyper sites' values, ``batch_shape + (R_d,)`` each.

        Returns
        -------
        dict of str to torch.Tensor
            ``{parameter site: std}``, each ``batch_shape + spec.shape`` (:meth:`entry_std`,
            expanded along the batch where it has no rank axes).
        """
        variances = [self.prior.variance(values[h]) for h in self.hyper_sites]
        batch = variances[0].shape[:-1]
        return {site: self.entry_std(spec, variances).expand(batch + spec.shape)
                for site, spec in zip(self.param_sites, self.specs)}

    @property
    def param_sites(self) -> list[str]:
        """Pyro site names of the format's parameters (``"<name>.factor0"``, ...), in the
        format's parameter order."""
        return [f"{self.name}.{s.name}" for s in self.specs]

    def sample(self) -> LowRankTensor:
        """Register the sites in the running Pyro model and return the low-rank tensor."""
        # switch_off: a slice the prior switches off has its scale at 0 by design (see
        # bayestensor.infer.log_density.Site)
        hypers = [pyro.sample(site, self.prior.hyper_dist(r), infer={"switch_off": True})
                  for site, r in zip(self.hyper_sites, self.ranks)]
        variances = [self.prior.variance(h) for h in hypers]
        params = [
            pyro.sample(site, dist.Normal(0.0, self.entry_std(spec, variances))
                        .to_event(len(spec.shape)))
            for site, spec in zip(self.param_sites, self.specs)
        ]
        return self.format_cls(self.shape, params)

    def log_prob(self, values: dict) -> torch.Tensor:
        """Log prior density of batched values (``batch_shape + site shape`` per site).

        The same density as the sites of :meth:`sample`, in closed form: a parameter's
        precision is the product of its slice precisions broadcast along its rank axes (never
        expanded), and the sum of its log variances is the count of entries per slice times
        the slice log variances.
        """
        hypers = [values[s] for s in self.hyper_sites]
        total = sum(self.prior.log_density(h) for h in hypers)
        variances = [self.prior.variance(h) for h in hypers]
        precisions = [v.reciprocal() for v in variances]
        # per slice, the log variance counts once for every entry of the slice
        log_variances = [v.log().sum(-1) for v in variances]
        for site, spec in zip(self.param_sites, self.specs):
            log_variance_sum = sum(log_variances[d] * (spec.numel() // self.ranks[d])
                                   for d in spec.rank_axes.values())
            precision = slice_product(spec, precisions)
            fixed = self.fixed_variance(spec)
            if fixed is not None:
                precision, log_variance_sum = 1.0 / fixed, spec.numel() * math.log(fixed)
            total = total + centered_normal_log_density(
                values[site], precision, log_variance_sum, len(spec.shape))
        return total

    def build(self, values: dict) -> LowRankTensor:
        """The low-rank tensor from (batched) site values."""
        return self.format_cls(self.shape, [values[s] for s in self.param_sites])

    def init_values(self, tensor: LowRankTensor, sweeps: int = START_SWEEPS) -> dict:
        """Site values that start at ``tensor``, with slice variances that explain its size.

        Each slice variance is the maximum-likelihood value given the parameters and the other
        rank dimensions' variances, found by coordinate ascent. For CP this is the mean square
        of the slice; where an entry's variance is a product over rank dimensions (Tucker
        core, TT cores) a pooled mean square would be far too small for the core (measured:
        Tucker MAP then pruned a rank-3 fit to (1, 1, 1)).

        Parameters
        ----------
        tensor : LowRankTensor
            A tensor of this prior's format, shape and ranks, without a batch dim.
        sweeps : int
            Coordinate-ascent sweeps over the rank dimensions when there are several (one
            pass for a single rank dimension, where it is exact).

        Returns
        -------
        dict of str to torch.Tensor
            Detached copies of ``tensor``'s parameters under :attr:`param_sites`, and one
            ``(R_d,)`` hyper-parameter vector (precision or scale, at least
            ``MIN_START_HYPER``) per rank dimension under :attr:`hyper_sites`, in the
            parameters' dtype.
        """
        values = {site: p.detach().clone() for site, p in zip(self.param_sites, tensor.params)}
        params = [p.detach().double() for p in tensor.params]
        variances = [torch.ones(r, dtype=torch.float64) for r in self.ranks]
        for _ in range(sweeps if len(self.ranks) > 1 else 1):
            for d, size in enumerate(self.ranks):
                total = torch.zeros(size, dtype=torch.float64)
                count = 0
                for spec, p in zip(self.specs, params):
                    axes = [a for a, dim in spec.rank_axes.items() if dim == d]
                    if not axes:
                        continue
                    others = [torch.ones_like(v) if k == d else v for k, v in enumerate(variances)]
                    scaled = p.pow(2) / param_std(spec, others).pow(2)
                    flat = scaled.movedim(axes[0], -1).reshape(-1, size)
                    total = total + flat.sum(0)
                    count += flat.shape[0]
                variances[d] = (total / max(count, 1)).clamp_min(MIN_START_VARIANCE)
        for site, var in zip(self.hyper_sites, variances):
            hyper = self.prior.hyper_of(var).clamp_min(MIN_START_HYPER)
            values[site] = hyper.to(tensor.params[0].dtype)
        return values


def low_rank_tensor(name: str, shape, rank, format: str = "cp", prior="gamma",
                    prior_params: dict | None = None) -> LowRankTensor:
    """Register a whole low-rank tensor with a rank-revealing prior in a Pyro model.

    Parameters
    ----------
    name, shape, rank, format, prior, prior_params
        See :class:`LowRankPrior`.

    Returns
    -------
    LowRankTensor
        The sampled tensor; call ``reconstruct()`` or ``entries(indices)`` on it.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist
    >>> def model(y):
    ...     w = low_rank_tensor("W", (8, 8), rank=4, format="cp", prior="half_cauchy")
    ...     pyro.sample("y", dist.Normal(w.reconstruct(), 0.1).to_event(2), obs=y)
    """
    return LowRankPrior(name, shape, rank, format, prior, prior_params).sample()


def noise_prior(a: float = 1.0, b: float = 1e-2) -> dist.Gamma:
    """The prior ``Gamma(a, b)`` of a Gaussian noise precision.

    Parameters
    ----------
    a : float
        Shape, a positive finite number.
    b : float
        Rate, a positive finite number; the prior mean is ``a / b``.

    Returns
    -------
    pyro.distributions.Gamma
        A scalar distribution (float tensors ``a`` and ``b``).

    Raises
    ------
    ValueError
        When ``a`` or ``b`` is not a positive finite number.
    """
    a, b = real_number("a", a), real_number("b", b)
    return dist.Gamma(torch.tensor(a), torch.tensor(b))


def noise_precision(name: str = "noise_precision", a: float = 1.0, b: float = 1e-2):
    """Register a Gaussian noise precision ``tau ~ Gamma(a, b)`` and return it.

    Call it inside a Pyro model.

    Parameters
    ----------
    name : str
        Name of the sample site.
    a, b : float
        Shape and rate of the Gamma prior (see :func:`noise_prior`).

    Returns
    -------
    torch.Tensor
        The site's scalar value (drawn from the prior, or the conditioned value).

    Raises
    ------
    ValueError
        When ``a`` or ``b`` is not a positive finite number.
    """
    return pyro.sample(name, noise_prior(a, b))

"""The log joint of any Pyro model over a flat unconstrained vector, batched over chains.

Pyro's ``initialize_model`` builds a potential for one chain and refuses sub-sampled plates.
Samplers here need both: a ``(C, D)`` batch of unconstrained points (chains or particles) and
mini-batches scaled by N/B. :class:`LogDensity` does this for any model with continuous latents:

1. one prototype trace finds the latent sites, their supports and shapes, and the plates the
   model sub-samples (``pyro.plate(name, N, subsample_size=B)``);
2. each site maps from unconstrained space through ``biject_to(support)`` with its
   log-Jacobian, for all chains at once;
3. the log joint of the constrained values is either the model's own vectorized fast path or the
   Pyro trace evaluated under ``torch.func.vmap`` over chains, with the likelihoods whose code
   ``vmap`` refuses made batchable (:mod:`bayestensor.batchable`; one Python loop over
   chains is the fallback for models ``vmap`` still cannot trace). Sub-sampled plates are
   conditioned on index vectors drawn here, so every chain sees the same mini-batch and Pyro's
   plate applies N/B.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.distributions.util import is_identically_zero
from torch.distributions import biject_to
from torch.distributions.transforms import IndependentTransform, identity_transform

from bayestensor.batchable import batchable_distributions

#: Sites without a starting value start uniformly in (-INIT_RADIUS, INIT_RADIUS), unconstrained:
#: finite under every bijection, unlike prior draws of vague hyperpriors.
INIT_RADIUS = 2.0
#: An unconstrained coordinate whose round trip through its site's transform lands farther
#: than this (relative, at least absolute) is saturated: the transform's clamp at the
#: boundary of the support, where float32 ends (a sigmoid at ``tiny``, ``exp`` at 0).
SATURATION_TOL = 1e-3


@dataclass
class Site:
    """A latent site: its constrained shape, unconstrained shape and bijection.

    ``free`` (flat, over the unconstrained coordinates) marks the coordinates that are
    inferred where some are not (see :func:`_discarded_positions`); the others stay at
    ``held`` (their unconstrained start, flat, the same length). ``None``: every coordinate.
    """

    name: str
    shape: tuple[int, ...]
    unconstrained_shape: tuple[int, ...]
    transform: torch.distributions.Transform
    offset: int
    free: torch.Tensor | None = None
    held: torch.Tensor | None = None
    free_index: torch.Tensor | None = None  # positions of ``free``, made once
    #: A shrinkage scale whose optimum is 0 by design (a switched-off slice of a
    #: ``bt.low_rank_tensor``): the sample site's ``infer={"switch_off": True}``.
    switch_off: bool = False

    @property
    def on_real_line(self) -> bool:
        """Whether the site's values are its unconstrained ones (the identity map)."""
        transform = self.transform
        while isinstance(transform, IndependentTransform):
            transform = transform.base_transform
        return transform == identity_transform

    @property
    def size(self) -> int:
        if self.free is not None:
            return int(self.free_index.numel())
        return math.prod(self.unconstrained_shape)


def _discarded_positions(trace, name: str, node) -> torch.Tensor | None:
    """Where a latent site's value is thrown away by construction: Pyro's ``obs_mask``.

    ``pyro.sample(y, fn, obs=..., obs_mask=m)`` samples ``y_unobserved`` over every position
    under ``poutine.mask(~m)`` and keeps it only where ``m`` is False: at the observed
    positions it has no density and no use, a flat direction in which samplers random-walk
    and VI's scales grow without bound. Returns a boolean tensor of the value's shape, True
    at those positions, for a site of that pattern; else ``None``. They are held only where
    the site's transform is elementwise and no plate sub-samples the data (the positions
    would change with the mini-batch).
    """
    base = name[:-len("_unobserved")] if name.endswith("_unobserved") else None
    mask = node.get("mask")
    if base is None or f"{base}_observed" not in trace.nodes or not torch.is_tensor(mask):
        return None
    value = node["value"]
    event = node["fn"].event_dim
    shape = mask.shape + (1,) * event
    try:
        kept = mask.reshape(shape).expand(value.shape)
    except RuntimeError:
        return None
    return None if bool(kept.all()) else ~kept


def _check_observed(name: str, node: dict) -> None:
    """Refuse an observed value that is NaN or infinite. Pyro's log-likelihood is NaN there,
    and a mask does not help: where an ``obs_mask`` or ``poutine.mask`` leaves the position
    out, the masked log-probability is still computed and its NaN reaches the gradient
    (0 x NaN), so every method would fail later with a message about the log density."""
    value = node["value"]
    if not torch.is_tensor(value) or not value.is_floating_point():
        return
    bad = ~torch.isfinite(value)
    count = int(bad.sum())
    if count:
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"model: observed site {name!r} has {count} value(s) that are NaN or infinite "
            f"(the first at index {first if len(first) != 1 else first[0]}): the "
            "log-likelihood is not a number there, and a mask leaving them out does not keep "
            "their NaN out of the gradient. Drop those observations from the model's "
            "arguments, or set them to any finite number (0, say) and leave them out with "
            "obs_mask=torch.isfinite(...) on that pyro.sample")


def site_dtype(fn) -> torch.dtype:
    """The floating dtype of a distribution's values (its first floating parameter's), so a
    float64 model is sampled in float64; the default dtype when it has no tensor parameter."""
    inner = []
    for value in vars(fn).values():
        if torch.is_tensor(value) and value.is_floating_point():
            return value.dtype
        if isinstance(value, torch.distributions.Distribution):
            inner.append(value)  # e.g. an Independent's or a LogNormal's base distribution
    for dist in inner:
        dtype = site_dtype(dist)
        if dtype != torch.get_default_dtype():
            return dtype
    return torch.get_default_dtype()


class _InitValues(poutine.messenger.Messenger):
    """Sets latent values in the prototype trace without sampling from the prior.

    Prior draws of vague hyperpriors underflow in float32, so missing sites start at a value
    drawn uniformly in (-2, 2) in unconstrained space (Pyro's ``init_to_uniform`` idea).
    """

    def __init__(self, values: dict, generator: torch.Generator, device: torch.device):
        super().__init__()
        self.values = values
        self.generator = generator
        self.device = device
        #: The first given value that does not fit its site (raised after the trace, so that
        #: Pyro does not append its trace's shapes to the message); the site starts as if
        #: no value were given.
        self.error: ValueError | None = None

    def _pyro_sample(self, msg):
        if msg["is_observed"] or type(msg["fn"]).__name__ == "_Subsample":
            return
        if msg["fn"].support.is_discrete:
            value = msg["fn"].sample()  # rejected by LogDensity right after the trace
            msg["value"], msg["done"] = value.detach(), True
            return
        fn = msg["fn"]
        dtype = site_dtype(fn)
        given = self._given_value(msg["name"], fn, dtype) if msg["name"] in self.values else None
        if given is not None:
            value = given
        else:
            shape = fn.batch_shape + fn.event_shape
            t = biject_to(fn.support)
            u_shape = t.inverse_shape(shape)
            u = (torch.rand(u_shape, generator=self.generator, dtype=dtype, device=self.device)
                 * (2 * INIT_RADIUS) - INIT_RADIUS)
            value = t(u)
        msg["value"] = value.detach()
        msg["done"] = True

    def _given_value(self, name: str, fn, dtype) -> torch.Tensor | None:
        """The caller's value of site ``name`` as a tensor, or ``None`` (and ``self.error``
        set) when it is not numbers of the site's shape inside its support."""
        shape = tuple(fn.batch_shape + fn.event_shape)
        try:
            value = torch.as_tensor(self.values[name], dtype=dtype, device=self.device)
        except (TypeError, ValueError, RuntimeError):
            problem = f"expected numbers, got {type(self.values[name]).__name__}"
        else:
            if tuple(value.shape) != shape:
                problem = f"expected shape {shape}, got {tuple(value.shape)}"
            elif not bool(torch.isfinite(value).all() & fn.support.check(value).all()):
                problem = f"a value outside the site's support ({fn.support})"
            else:
                return value
        self.error = self.error or ValueError(f"init: site {name!r}: {problem}")
        return None


def _warn_params(trace) -> None:
    """Say that a model's ``pyro.param`` sites stay at their values: the methods here infer
    sample sites (as Pyro's MCMC does, which holds them silently)."""
    params = [name for name, node in trace.nodes.items() if node["type"] == "param"]
    if params:
        warnings.warn(f"model: pyro.param sites {params} are held at their current values; "
                      "fit infers pyro.sample sites only (give a parameter a prior with "
                      "pyro.sample to infer it)", UserWarning, stacklevel=3)


class LogDensity:
    """Unconstrained log joint ``log p(x, z) + log|J|`` of a Pyro model, batched over chains.

    Parameters
    ----------
    model : callable
        A Pyro model with continuous latent sites.
    model_args, model_kwargs
        Arguments the model is called with.
    init_values : dict, optional
        Constrained starting values for some or all latent sites (others start uniformly in
        (-2, 2) in unconstrained space).
    fast_log_joint : callable, optional
        ``f(values, subsample) -> (C,)`` giving the same log joint as the Pyro model on
        batched constrained values; used instead of tracing when present.
    seed : int
        Seed of the prototype initialization and of the mini-batch draws.
    device : str or torch.device, optional
        Where the chains live; default: the device of the first tensor in ``model_args``. The
        random generator lives there too, so sampling loops never copy to the host.

    Warns
    -----
    UserWarning
        When the model has ``pyro.param`` sites: they stay at their values.

    Raises
    ------
    ValueError
        If the model has a discrete latent site or no latent site at all, or an observed
        value that is NaN or infinite (masked or not: see ``_check_observed``), or
        ``init_values`` names a site that is not one of its latent sites, or gives a site a
        value that is not numbers of its shape inside its support.
    """

    def __init__(self, model: Callable, model_args=(), model_kwargs=None, *,
                 init_values: dict | None = None, fast_log_joint: Callable | None = None,
                 seed: int = 0, device=None):
        self.model = model
        self.model_args = tuple(model_args)
        self.model_kwargs = dict(model_kwargs or {})
        self.fast_log_joint = fast_log_joint
        self.device = torch.device(device) if device is not None else _args_device(self.model_args)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        init_values = dict(init_values or {})
        start = _InitValues(init_values, self.generator, self.device)
        with pyro.validation_enabled(False):
            proto = poutine.trace(start(model)).get_trace(*self.model_args, **self.model_kwargs)
        if start.error is not None:
            raise start.error
        _warn_params(proto)
        self.sites: list[Site] = []
        self.subsample_plates: dict[str, tuple[int, int]] = {}
        self.init_constrained: dict[str, torch.Tensor] = {}
        discarded: dict[str, torch.Tensor | None] = {}
        offset = 0
        for name, node in proto.nodes.items():
            if node["type"] != "sample":
                continue
            fn = node["fn"]
            if type(fn).__name__ == "_Subsample":
                size, sub = int(fn.size), int(fn.subsample_size or fn.size)
                if sub < size:
                    self.subsample_plates[name] = (size, sub)
                continue
            if node["is_observed"]:
                _check_observed(name, node)
                continue
            support = fn.support
            if support.is_discrete or getattr(fn, "has_enumerate_support", False):
                raise ValueError(
                    f"model: latent site {name!r} is discrete ({type(fn).__name__}); the "
                    "samplers need continuous latents: observe it or marginalize it out"
                )
            value = node["value"]
            transform = biject_to(support)
            u_shape = tuple(transform.inverse_shape(value.shape))
            switch_off = bool((node.get("infer") or {}).get("switch_off", False))
            self.sites.append(Site(name, tuple(value.shape), u_shape, transform, 0,
                                   switch_off=switch_off))
            self.init_constrained[name] = value.detach()
            discarded[name] = _discarded_positions(proto, name, node)
        for site in self.sites:
            # under mini-batches the discarded positions change with the batch: none held then
            if discarded[site.name] is not None and not self.subsample_plates \
                    and site.unconstrained_shape == site.shape:
                site.free = ~discarded[site.name].reshape(-1).to(self.device)
                site.free_index = site.free.nonzero().squeeze(-1)
            site.offset = offset
            offset += site.size
        if not self.sites:
            raise ValueError("model: no latent sample site found; nothing to infer")
        unknown = sorted(set(init_values) - set(self.site_names), key=str)
        if unknown:
            raise ValueError(f"init: {unknown} are not latent sites of the model; its latent "
                             f"sites are {self.site_names}")
        self.dim = offset
        #: One dtype for the flat vector: float64 when any site is float64.
        self.dtype = functools.reduce(torch.promote_types,
                                      (v.dtype for v in self.init_constrained.values()))
        for site in self.sites:
            if site.free is not None:
                start = torch.as_tensor(self.init_constrained[site.name], dtype=self.dtype)
                site.held = site.transform.inv(start).reshape(-1).to(self.device)
        self._vmap_ok: bool | None = None

    # --- layout -----------------------------------------------------------------------------
    @property
    def site_names(self) -> list[str]:
        """Names of the model's latent sites, in the order their coordinates occupy the flat
        unconstrained vector (the order the model samples them)."""
        return [s.name for s in self.sites]

    def unconstrain(self, values: dict) -> torch.Tensor:
        """Flat unconstrained vector(s) ``batch + (D,)`` from constrained values."""
        parts = []
        batch = None
        for s in self.sites:
            v = torch.as_tensor(values[s.name], dtype=self.dtype)
            u = s.transform.inv(v)
            b = u.shape[: u.ndim - len(s.unconstrained_shape)]
            batch = b if batch is None else batch
            u = u.reshape(tuple(b) + (-1,))
            parts.append(u if s.free is None else u[..., s.free])
        return torch.cat(parts, -1)

    def constrain(self, theta: torch.Tensor, with_log_jacobian: bool = False):
        """Constrained values (dict) from ``theta`` of shape ``(C, D)``.

        With ``with_log_jacobian`` also returns ``log|d constrained / d theta|`` per chain.

        Parameters
        ----------
        theta : tensor, shape (C, D)
            Unconstrained parameters of ``C`` chains, laid out as ``self.sites`` (any leading
            batch shape in place of ``(C,)`` works the same way).
        with_log_jacobian : bool
            Also return the log absolute determinant of the Jacobian of the map from
            ``theta`` to the constrained values, summed over all sites.

        Returns
        -------
        values : dict of str to tensor
            Per latent site, its constrained value of shape ``(C,) + site.shape``.
        log_jacobian : tensor, shape (C,)
            Only with ``with_log_jacobian``: the log-Jacobian per chain (a site with an
            unconstrained support adds zero). The pair ``(values, log_jacobian)`` is returned then.
        """
        values = {}
        ladj = theta.new_zeros(theta.shape[:-1])
        batch = tuple(theta.shape[:-1])
        for s in self.sites:
            u = theta[..., s.offset: s.offset + s.size]
            if s.free is not None:  # the held coordinates around the free ones
                full = s.held.to(theta.dtype).expand(batch + s.held.shape)
                u = full.index_copy(-1, s.free_index, u)
            u = u.reshape(batch + s.unconstrained_shape)
            x = s.transform(u)
            values[s.name] = x
            if with_log_jacobian:
                j = s.transform.log_abs_det_jacobian(u, x)
                if not is_identically_zero(j):
                    ladj = ladj + j.reshape(batch + (-1,)).sum(-1)
        return (values, ladj) if with_log_jacobian else values

    def off_real_line(self) -> torch.Tensor:
        """Boolean ``(D,)``: the coordinates of sites whose support is not the real line (an
        ``exp``, a sigmoid or another map between them and the site's value)."""
        mask = torch.zeros(self.dim, dtype=torch.bool, device=self.device)
        for s in self.sites:
            if not s.on_real_line:
                mask[s.offset:s.offset + s.size] = True
        return mask

    def saturated(self, theta: torch.Tensor, tol: float = SATURATION_TOL,
                  exempt=()) -> torch.Tensor:
        """Boolean ``theta.shape``: the unconstrained coordinates whose site's transform is
        saturated there, in the target's float precision.

        The transforms map every real to the support in exact arithmetic, but not in float:
        ``exp`` of an unconstrained value below about -104 is 0 in float32, a sigmoid rounds to
        0 or 1 past about +-17. Such a constrained value maps back to another unconstrained one
        (``-inf`` for the 0 of ``exp``), farther than ``tol`` relative (at least absolute); the
        gradient there is zero, so an optimizer or a sampler that got there stays. Sites on the
        real line (the identity map) never saturate and are not computed.

        Parameters
        ----------
        theta : torch.Tensor
            ``batch + (D,)`` unconstrained points.
        tol : float
            Relative (at least absolute) round-trip error from which a coordinate counts as
            saturated.
        exempt : sequence of str
            Sites not computed (left False).
        """
        off = torch.zeros(theta.shape, dtype=torch.bool, device=theta.device)
        batch = tuple(theta.shape[:-1])
        with torch.no_grad():
            for s in self.sites:
                if s.on_real_line or s.name in exempt:
                    continue
                u = theta[..., s.offset: s.offset + s.size]
                full = u
                if s.free is not None:
                    full = s.held.to(theta.dtype).expand(batch + s.held.shape)
                    full = full.index_copy(-1, s.free_index, u)
                back = s.transform.inv(s.transform(full.reshape(batch + s.unconstrained_shape)))
                back = back.reshape(batch + (-1,))
                if s.free is not None:
                    back = back[..., s.free]
                off[..., s.offset: s.offset + s.size] = \
                    ~((back - u).abs() <= tol * u.abs().clamp_min(1.0))
        return off

    def saturated_sites(self, theta: torch.Tensor, exempt=()) -> dict[str, torch.Tensor]:
        """The points of ``theta`` where some coordinate of a site is :meth:`saturated`.

        A sampler's draws there are rounded onto the boundary of the support, most often
        because a chain went down a funnel (a hierarchical scale gone to 0) and stayed.

        Parameters
        ----------
        theta : torch.Tensor
            ``batch + (D,)`` unconstrained points.
        exempt : sequence of str
            Sites not checked (a built-in model's slice scales, at 0 by design).

        Returns
        -------
        dict of str to torch.Tensor
            ``{name: mask}``, a boolean ``batch`` mask per site where any point is saturated.
        """
        off = self.saturated(theta, exempt=exempt)
        out = {}
        for s in self.sites:
            hit = off[..., s.offset:s.offset + s.size].any(-1)
            if bool(hit.any()):
                out[s.name] = hit
        return out

    def init_theta(self, num_chains: int, jitter: float = 0.0) -> torch.Tensor:
        """``(C, D)`` starting points: the initial values plus Gaussian jitter (unconstrained).

        Parameters
        ----------
        num_chains : int
            Number of chains ``C``.
        jitter : float
            Standard deviation of the independent Gaussian noise added to every element, in
            unconstrained units, drawn from ``self.generator``; 0 (the default) gives every
            chain the same point and draws nothing.

        Returns
        -------
        torch.Tensor
            Shape ``(C, D)``, dtype ``self.dtype``: the unconstrained image of the starting
            values (``init_values`` where given, otherwise the prototype's uniform draws), one
            row per chain plus the jitter.
        """
        theta0 = self.unconstrain(self.init_constrained)
        theta = theta0.expand(num_chains, self.dim).clone()
        if jitter > 0:
            theta = theta + jitter * torch.randn(theta.shape, generator=self.generator,
                                                 dtype=theta.dtype,
                                                 device=self.device)
        return theta

    # --- mini-batches -----------------------------------------------------------------------
    def draw_subsample(self, batch_size: int | None = None) -> dict[str, torch.Tensor]:
        """Index vectors for every sub-sampled plate (same for all chains)."""
        out = {}
        for name, (size, sub) in self.subsample_plates.items():
            b = sub if batch_size is None else min(int(batch_size), size)
            out[name] = self._sample_without_replacement(size, b)
        return out

    def _sample_without_replacement(self, size: int, b: int) -> torch.Tensor:
        """``b`` distinct indices below ``size``, drawn from ``self.generator``.

        On the CPU, NumPy's ``choice(replace=False, shuffle=False)`` costs about ``b`` where
        ``torch.randperm`` costs ``size``: at a million observations and batches of a tenth,
        the permutation took 35 ms a step, a quarter of a mini-batch step. Its seed comes
        from ``self.generator``, so runs and resumed checkpoints repeat. On a GPU the
        permutation runs there instead: NumPy's draw would stay on the CPU (45 ms for 1e6 of
        1e7 indices on a 2-core machine, ``benchmarks/minibatch_draws.py``) and then be
        copied over, every step.
        """
        if self.device.type != "cpu":
            return torch.randperm(size, generator=self.generator, device=self.device)[:b]
        seed = int(torch.randint(2 ** 62, (1,), generator=self.generator, device=self.device))
        picked = np.random.default_rng(seed).choice(size, b, replace=False, shuffle=False)
        return torch.as_tensor(picked, dtype=torch.long, device=self.device)

    # --- densities --------------------------------------------------------------------------
    def log_joint(self, values: dict, subsample: dict | None = None, model_args=None) -> torch.Tensor:
        """Log joint of batched constrained values, shape ``(C,)``.

        Uses ``fast_log_joint`` when one was given and ``model_args`` is ``None``;
        otherwise the model's Pyro trace, conditioned on the values, under
        ``torch.func.vmap`` over chains (``Multinomial`` and ``OrderedLogistic`` made batchable
        by :func:`~bayestensor.batchable.batchable_distributions`; one chain at a time,
        with a ``RuntimeWarning`` the first time, for a model ``vmap`` still cannot trace; a
        single chain, as NUTS and the MAP evaluate, without ``vmap``). Distribution argument
        validation is off, so a bad point gives a non-finite value rather than an exception.

        Parameters
        ----------
        values : dict of str to tensor
            Constrained value of every latent site, shape ``(C,) + site.shape`` (as
            :meth:`constrain` returns).
        subsample : dict of str to tensor, optional
            Index vector per sub-sampled plate (as :meth:`draw_subsample` returns), the same
            for all chains; Pyro's plate scales the likelihood by N/B. ``None`` is the same
            as an empty dict.
        model_args : tuple, optional
            Arguments to call the model with instead of ``self.model_args`` (a user's
            mini-batch). When given, the model's trace is evaluated even if a
            ``fast_log_joint`` was supplied.

        Returns
        -------
        torch.Tensor
            Shape ``(C,)``: the log prior plus log-likelihood of each chain's values; without
            the log-Jacobian of the unconstrained parametrization.
        """
        subsample = subsample or {}
        if self.fast_log_joint is not None and model_args is None:
            # No argument validation: a bad point must give NaN/inf (which the samplers report
            # with its step and sites), not an exception from a distribution's constructor.
            with pyro.validation_enabled(False):
                return self.fast_log_joint(values, subsample)
        args = self.model_args if model_args is None else tuple(model_args)

        def single(vals):
            data = dict(vals)
            data.update(subsample)
            cond = poutine.condition(self.model, data=data)
            tr = poutine.trace(cond).get_trace(*args, **self.model_kwargs)
            return tr.log_prob_sum()

        n = next(iter(values.values())).shape[0]
        with pyro.validation_enabled(False):
            if self._vmap_ok is not False and n > 1:  # one chain: a plain call costs 0.7x vmap's
                try:
                    with batchable_distributions():
                        out = torch.func.vmap(single, randomness="same")(values)
                    self._vmap_ok = True
                    return out
                except Exception as err:  # a model vmap cannot trace: loop over chains
                    if self._vmap_ok:
                        raise
                    warnings.warn(f"model is not vmap-compatible ({type(err).__name__}: {err}); "
                                  "evaluating chains one by one", RuntimeWarning, stacklevel=2)
                    self._vmap_ok = False
            return torch.stack([single({k: v[i] for k, v in values.items()}) for i in range(n)])

    def log_density(self, theta: torch.Tensor, subsample: dict | None = None,
                    model_args=None) -> torch.Tensor:
        """Unconstrained log density (log joint plus log-Jacobian), shape ``(C,)``.

        Parameters
        ----------
        theta : tensor, shape (C, D)
            Unconstrained parameters of ``C`` chains.
        subsample : dict of str to tensor, optional
            Index vector per sub-sampled plate (as :meth:`draw_subsample` returns), the same
            for all chains; Pyro's plate scales the likelihood by N/B. ``None`` is the same
            as an empty dict.
        model_args : tuple, optional
            Arguments to call the model with instead of ``self.model_args`` (a user's
            mini-batch). When given, the model's trace is evaluated even if a
            ``fast_log_joint`` was supplied.

        Returns
        -------
        torch.Tensor
            Shape ``(C,)``: :meth:`log_joint` at ``constrain(theta)`` plus the log-Jacobian.
            Differentiable with respect to ``theta``.
        """
        values, ladj = self.constrain(theta, with_log_jacobian=True)
        return self.log_joint(values, subsample, model_args) + ladj

    def value_and_grad(self, theta: torch.Tensor, subsample: dict | None = None,
                       model_args=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Log density ``(C,)`` and its gradient ``(C, D)`` with respect to ``theta``.

        Parameters
        ----------
        theta : tensor, shape (C, D)
            Unconstrained parameters of ``C`` chains; it is detached, so no graph is kept
            through it.
        subsample : dict of str to tensor, optional
            Index vector per sub-sampled plate (as :meth:`draw_subsample` returns), the same
            for all chains; Pyro's plate scales the likelihood by N/B. ``None`` is the same
            as an empty dict.
        model_args : tuple, optional
            Arguments to call the model with instead of ``self.model_args`` (a user's
            mini-batch). When given, the model's trace is evaluated even if a
            ``fast_log_joint`` was supplied.

        Returns
        -------
        log_density : torch.Tensor
            Shape ``(C,)``, detached: :meth:`log_density` at ``theta``.
        grad : torch.Tensor
            Shape ``(C, D)``: each chain's gradient with respect to its own row of ``theta``
            (one backward pass through the sum over chains).
        """
        theta = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            logp = self.log_density(theta, subsample, model_args)
            (grad,) = torch.autograd.grad(logp.sum(), theta)
        return logp.detach(), grad

    def gradient_of(self, log_joint, theta: torch.Tensor) -> torch.Tensor:
        """Gradient ``(C, D)`` with respect to ``theta`` of ``log_joint`` (a function of the
        batched constrained values, ``(C,)``) plus the log-Jacobian of the parametrization:
        :meth:`value_and_grad`'s gradient with another log joint in place of the model's
        (a part of it, such as a prior, whose gradient is the full one on some sites).

        Parameters
        ----------
        log_joint : callable
            ``{site: (C,) + site shape} -> (C,)``, on constrained values.
        theta : tensor, shape (C, D)
            Unconstrained parameters of ``C`` chains; detached.

        Returns
        -------
        torch.Tensor
            Shape ``(C, D)``.
        """
        point = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            values, log_jacobian = self.constrain(point, with_log_jacobian=True)
            (grad,) = torch.autograd.grad((log_joint(values) + log_jacobian).sum(), point)
        return grad

    def hessian_diag(self, theta: torch.Tensor, num_probes: int = 4, subsample: dict | None = None,
                     model_args=None) -> torch.Tensor:
        """Hutchinson estimate of ``diag(-Hessian of log density)``, averaged over chains.

        ``E_z[z * (H z)]`` with Rademacher probes ``z``. Each probe is one batch of
        Hessian-vector products over all chains; probes run one after another so that memory
        stays that of a single batched double-backward. Returns ``(D,)``.

        Parameters
        ----------
        theta : tensor, shape (C, D)
            Unconstrained parameters of ``C`` chains, the points the curvature is measured at.
        num_probes : int
            Number of Rademacher probes (each drawn from ``self.generator``, one per chain
            and element).
        subsample : dict of str to tensor, optional
            Index vector per sub-sampled plate (as :meth:`draw_subsample` returns), the same
            for all chains; Pyro's plate scales the likelihood by N/B. ``None`` is the same
            as an empty dict.
        model_args : tuple, optional
            Arguments to call the model with instead of ``self.model_args`` (a user's
            mini-batch). When given, the model's trace is evaluated even if a
            ``fast_log_joint`` was supplied.

        Returns
        -------
        torch.Tensor
            Shape ``(D,)``, detached: the estimate of the diagonal of the negative Hessian,
            averaged over the ``num_probes`` probes and the ``C`` chains. It may be negative
            where the density is not concave.
        """
        total = torch.zeros(theta.shape[-1], dtype=theta.dtype, device=theta.device)
        for _ in range(num_probes):
            points = theta.detach().clone().requires_grad_(True)
            z = torch.randint(0, 2, points.shape, generator=self.generator,
                              device=self.device).to(points.dtype) * 2 - 1
            with torch.enable_grad():
                logp = self.log_density(points, subsample, model_args)
                (grad,) = torch.autograd.grad(logp.sum(), points, create_graph=True)
                (hz,) = torch.autograd.grad((grad * z).sum(), points)
            total -= (z * hz).detach().sum(0)
        return total / (num_probes * theta.shape[0])

    def hessian(self, theta: torch.Tensor, subsample: dict | None = None,
                model_args=None) -> torch.Tensor:
        """Exact ``-Hessian`` of the log density ``(D, D)``, averaged over the chains.

        One Hessian-vector product per coordinate (``D`` backward passes through one batched
        graph), so it is meant for small models (the dense SGHMC metric); symmetrized.

        Parameters
        ----------
        theta : tensor, shape (C, D)
            Unconstrained parameters of ``C`` chains, the points the Hessian is taken at.
        subsample : dict of str to tensor, optional
            Index vector per sub-sampled plate (as :meth:`draw_subsample` returns), the same
            for all chains; Pyro's plate scales the likelihood by N/B. ``None`` is the same
            as an empty dict.
        model_args : tuple, optional
            Arguments to call the model with instead of ``self.model_args`` (a user's
            mini-batch). When given, the model's trace is evaluated even if a
            ``fast_log_joint`` was supplied.

        Returns
        -------
        torch.Tensor
            Shape ``(D, D)``, detached and symmetric: the negative Hessian of the log density,
            the mean over chains of each chain's own. All zeros when the gradient does not
            depend on ``theta``.
        """
        points = theta.detach().clone().requires_grad_(True)
        dim = theta.shape[-1]
        rows = []
        with torch.enable_grad():
            logp = self.log_density(points, subsample, model_args)
            (grad,) = torch.autograd.grad(logp.sum(), points, create_graph=True)
            if not grad.requires_grad:  # a log density linear in theta
                return torch.zeros(dim, dim, dtype=theta.dtype, device=theta.device)
            for i in range(dim):
                (row,) = torch.autograd.grad(grad[:, i].sum(), points, retain_graph=i < dim - 1,
                                             allow_unused=True)
                rows.append(torch.zeros_like(points) if row is None else row)
        hess = -torch.stack(rows, 1).detach().mean(0)  # (D, D)
        return 0.5 * (hess + hess.T)

    def locate_nonfinite(self, theta: torch.Tensor) -> str:
        """Describe which sites hold non-finite constrained values (for error messages)."""
        values = self.constrain(theta.detach())
        bad = [name for name, v in values.items() if not bool(torch.isfinite(v).all())]
        if bad:
            return "non-finite values at sites " + ", ".join(repr(b) for b in bad)
        return "all site values are finite; the log density itself overflowed"


def _args_device(args) -> torch.device:
    """Device of the first tensor among the model arguments (CPU when there is none)."""
    for a in args:
        if isinstance(a, torch.Tensor):
            return a.device
    return torch.device("cpu")

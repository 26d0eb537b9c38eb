"""Bayesian tensorized layers: low-rank weights with per-rank-slice priors and particle dims.

A :class:`TensorizedLinear` stores the weight matrix ``W`` (``in_features x out_features``,
``y = x W + b``) as a bayestensor low-rank format over the tensor of shape
``in_shape + out_shape``:

``"ttm"``  TT-matrix cores ``(r_{k-1}, I_k, J_k, r_k)`` (Novikov et al. 2015);
``"cp"``   CP factors ``(I_n, R)`` and ``(J_m, R)``;
``"tucker"`` a core ``(R_1, ..., R_{N+M})`` and one factor per mode;
``"tt"``   a tensor train over the ``N + M`` modes.

The forward pass contracts the input with the cores/factors one mode at a time and never
forms the dense weight. Every parameter (and the bias) carries a leading *particle* dimension
``P``: SVGD particles, SGHMC chains or draws of a variational posterior run as one batched
forward.

Inputs follow one broadcasting rule (for a convolution read ``(C, H, W)`` for ``in``):

* ``layer(x)`` with ``x`` of shape ``(..., in)``, any leading dims as for ``nn.Linear``. With one
  particle the output is ``(..., out)``, exactly as ``nn.Linear``; with ``P > 1`` particles the
  input is shared by all of them and the output is ``(P, ..., out)``.
* ``layer.particle_forward(x)`` with ``x`` of shape ``(P, ..., in)``: particle ``p`` gets
  ``x[p]``; the output is ``(P, ..., out)``. Chains of particle layers use it.
* Inside :class:`bayestensor.nets.BayesianNet` the batch arrives stacked, ``(P * B, ..., in)``
  (``P`` copies of the batch, so that layers that are not tensorized act per example); the
  layer splits it into ``(P, B, ..., in)`` and returns ``(P * B, ..., out)``.

``weight`` and ``bias`` read the dense ``(out, in)`` weight and the ``(out,)`` bias as
``nn.Linear`` has them (with a leading ``P`` when there are several particles).

Every rank slice has a learnable prior scale ``s = exp(u)`` (unconstrained ``u``) under a
hyperprior (``"gamma"`` ARD on the precision ``1/s^2``, ``"half_cauchy"`` or ``"log_uniform"``
on ``s``); :meth:`log_prior` evaluates :class:`bayestensor.priors.LowRankPrior` on the current
values plus the log-Jacobian of ``u``, per particle. ``prune`` removes the slices the prior
switched off (weight norm collapsed).
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bayestensor.checks import choice, positive_int, rank_value, real_number, seed_value
from bayestensor.formats import TuckerTensor, get_format
from bayestensor.formats.decompose import cp_als
from bayestensor.formats.ranks import MAX_PARAMS, rank_caps
from bayestensor.nets.shapes import tensorized_shape
from bayestensor.priors import LowRankPrior, get_prior
from bayestensor.seeds import legacy_seed

LINEAR_FORMATS = ("ttm", "cp", "tucker", "tt")
INITS = ("decompose", "random")
# Tucker's core grows as the product of its ranks, so it gets fewer (larger) modes per side.
DEFAULT_MODES = {"ttm": 3, "cp": 3, "tucker": 2, "tt": 3}
# Nets need a much lower floor than completion: a slice at the floor must not change outputs.
NET_PRIOR_PARAMS = {"log_uniform": {"low": 1e-8, "high": 1e2}}
#: A Tucker linear layer's core prior: ``Normal(0, 0.03)``, the slice variances on the factor
#: columns alone (``LowRankPrior``'s ``core_variance``). Under the product prior a slice also
#: governs its core slab, and at a MAP its pull grows with the other modes' caps: on the
#: mnist10k MLP, 92.55% -> 78.95% accuracy from max rank 12 to 24. With this prior: 96.65% ->
#: 96.50%, every median rank within 20% (0.01: 96.45% -> 95.40%, one mode +40%; 0.1: 96.60% ->
#: 96.25%); at max rank 6, MAP / SVGD / SGHMC 95.80 / 96.40 / 96.40% at 130-134x (medians of
#: 3 seeds, docs/benchmarks.md, "Tucker's core prior").
TUCKER_CORE_VARIANCE = 0.03
#: Default prune threshold: a slice goes when its scale is below this fraction of the largest.
PRUNE_THRESHOLD = 1e-2
#: An ensemble keeps a slice when at least this share of its particles keep it: the
#: slice's posterior activity probability is at least 1/2 (the median probability model of
#: Barbieri & Berger, 2004). The union (share 0) keeps every slice any particle uses, so an
#: ensemble whose particles switch off different slices compresses far less than its MAP.
KEEP_SHARE = 0.5
#: How an exported linear layer may compute ``x W`` (see :class:`CompressedLinear`).
IMPLEMENTATIONS = ("auto", "factorized", "reconstructed")
#: ``implementation="auto"`` contracts through the factors only when that costs at most this
#: share of the dense matmul's FLOPs: on CPU a chain of small matmuls runs at a fraction of
#: one large matmul's FLOP rate, so a factorized form with a small FLOP saving is slower.
FACTORIZED_MAX_FLOP_SHARE = 0.5
#: Relative jitter that spreads particles started from one decomposition (else SVGD's
#: repulsion and SGHMC's chains start from identical points).
PARTICLE_SPREAD = 0.05
#: Initial posterior std of VI's mean-field Gaussian: small, so training starts near the mean.
VI_INIT_STD = 1e-3
#: CP-ALS sweeps of the starting decomposition: a start only, a rough fit is enough.
CP_ALS_ITERATIONS = 30
#: Most low-rank parameters (all particles together) a tensorized layer may have unless the
#: caller passes ``max_params=None``: 50 million float32 numbers are 200 MB, and training
#: keeps several copies (gradients, optimizer moments, SGHMC velocities). The same bound
#: applies to the working array of a CP-ALS start (see :func:`layer_ranks`). One budget for
#: layers and completion/regression models.
MAX_LAYER_PARAMS = MAX_PARAMS


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------


def linear_shape(fmt: str, in_features: int, out_features: int, num_modes: int | None = None,
                 shape=None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Tensorized ``(in_shape, out_shape)`` of a linear layer in ``fmt``: at most ``num_modes``
    modes per side (default :data:`DEFAULT_MODES`), none of size 1 unless a side has too few
    prime factors; a TT-matrix gets the same number (at least 2) on both sides."""
    num_modes = DEFAULT_MODES[fmt] if num_modes is None else positive_int("num_modes", num_modes)
    return tensorized_shape(in_features, out_features, num_modes, shape,
                            min_modes=2 if fmt == "ttm" else 1, same_count=fmt == "ttm")


def max_params_arg(value) -> int | None:
    """The parameter budget of a layer: a positive integer, or ``None`` for no limit."""
    return None if value is None else positive_int("max_params", value)


def layer_ranks(fmt: str, tensor_shape: Sequence[int], ranks: Sequence[int], max_rank,
                num_particles: int, max_params: int | None, warn: bool = True,
                decompose: bool = False) -> tuple[int, ...]:
    """``ranks`` capped at what ``tensor_shape`` supports, checked against ``max_params``.

    Runs before any parameter is allocated. A CP start decomposed by ALS also needs a
    Khatri-Rao product of ``R`` times the size of the tensor over its smallest mode numbers,
    which must fit the same budget (the SVD-based starts of the other formats need a few
    copies of the dense weight only).

    Parameters
    ----------
    fmt : str
        Low-rank format.
    tensor_shape : sequence of int
        Shape of the tensorized weight.
    ranks : sequence of int
        Requested rank of each rank dimension (from ``max_rank``).
    max_rank
        The user's argument, for the messages.
    num_particles : int
        Particles the parameters are stored for.
    max_params : int or None
        Parameter budget (all particles together); ``None`` for none.
    warn : bool
        Warn (``UserWarning``) when a rank is capped (see
        :func:`bayestensor.formats.ranks.rank_caps`).
    decompose : bool
        The layer starts from a decomposition of a dense weight.

    Returns
    -------
    tuple of int
        The capped ranks.

    Raises
    ------
    ValueError
        Naming ``max_rank``, when the layer would have more than ``max_params`` parameters
        (or, with ``decompose``, a CP-ALS workspace of more than ``max_params`` numbers).
    """
    capped = tuple(min(int(r), c) for r, c in zip(ranks, rank_caps(fmt, tensor_shape)))
    if warn and capped != tuple(ranks):
        warnings.warn(f"max_rank: {max_rank!r} is more than the {fmt} shape {tuple(tensor_shape)} "
                      f"supports; ranks capped at {capped}", UserWarning, stacklevel=3)
    if max_params is None:
        return capped
    where = f"a {fmt} layer of shape {tuple(tensor_shape)} with ranks {capped}"
    count = num_particles * sum(s.numel() for s in get_format(fmt).specs(tensor_shape, capped))
    if count > max_params:
        raise ValueError(f"max_rank: {max_rank!r} gives {where} and {num_particles} particle(s) "
                         f"{count:,} parameters, above max_params={max_params:,}; lower "
                         f"max_rank or pass max_params=None to allow it")
    workspace = math.prod(tensor_shape) // min(tensor_shape) * capped[0]
    if decompose and fmt == "cp" and workspace > max_params:
        raise ValueError(f"max_rank: the CP-ALS start of {where} needs {workspace:,} numbers, "
                         f"above max_params={max_params:,}; lower max_rank, use "
                         f"init='random', or pass max_params=None to allow it")
    return capped


# --------------------------------------------------------------------------------------------
# contractions (functional, batched over the particle dim P)
# --------------------------------------------------------------------------------------------
def _mode_cycle(t: torch.Tensor, mats: Sequence[torch.Tensor]) -> torch.Tensor:
    """Multiply ``t`` ``(P, B, a_1 ... a_K)`` by ``mats[k]`` ``(P, a_k, c_k)`` along each mode.

    The leading mode is contracted and the new one appended at the end, so after K steps the
    modes are back in order: ``(P, B, c_1 ... c_K)`` (flattened).
    """
    p, b = t.shape[:2]
    for m in mats:
        t = torch.einsum("pbam,pac->pbmc", t.reshape(p, b, m.shape[-2], -1), m)
    return t.reshape(p, b, -1)


def _khatri_rao(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Column-wise Kronecker product ``(P, I_1 ... I_K, R)`` of factors ``(P, I_k, R)``, rows in
    C order (the first mode slowest), as ``x.reshape(P, B, I_1, ..., I_K)`` flattens."""
    out = factors[0]
    p = out.shape[0]
    for f in factors[1:]:
        out = (out.unsqueeze(2) * f.unsqueeze(1)).reshape(p, -1, f.shape[-1])
    return out


def contract_linear(fmt: str, x: torch.Tensor, params: Sequence[torch.Tensor],
                    in_shape: Sequence[int], out_shape: Sequence[int]) -> torch.Tensor:
    """``x W`` for ``x`` ``(P, B, in)`` and the low-rank ``W`` given by ``params`` (each ``(P, ...)``).

    The dense weight is never formed.

    Parameters
    ----------
    fmt : {"ttm", "cp", "tucker", "tt"}
        Low-rank format of ``params``.
    x : torch.Tensor
        Inputs ``(P, B, ...)``, one batch per particle; the trailing dims hold
        ``in = prod(in_shape)`` numbers per example.
    params : sequence of torch.Tensor
        The format's parameters over the tensor of shape ``in_shape + out_shape``, each with a
        leading particle dim ``P``: TT-matrix cores ``(P, r_{k-1}, I_k, J_k, r_k)``; CP factors
        ``(P, I_n, R)`` for the input modes, then ``(P, J_m, R)`` for the output modes; a
        Tucker core ``(P, R_1, ..., R_{N+M})`` followed by one factor ``(P, size, R)`` per
        mode; TT cores ``(P, r_{k-1}, n_k, r_k)`` over the ``N + M`` modes.
    in_shape, out_shape : sequence of int
        Tensorized input modes ``(I_1, ..., I_N)`` and output modes ``(J_1, ..., J_M)``.

    Returns
    -------
    torch.Tensor
        ``(P, B, out)`` with ``out = prod(out_shape)``; no bias added.

    Raises
    ------
    ValueError
        When ``fmt`` is not one of :data:`LINEAR_FORMATS`.
    """
    p, b = x.shape[:2]
    n_in = len(in_shape)
    if fmt == "ttm":
        t = x.reshape(p, b, -1, 1)
        for k, core in enumerate(params):
            t = t.reshape(p, b, in_shape[k], -1, core.shape[-4])
            t = torch.einsum("pbimr,prijs->pbmjs", t, core)
            t = t.reshape(p, b, -1, core.shape[-1])
        return t.reshape(p, b, -1)
    if fmt == "cp":
        # x W = (x K_in) K_out^T with K the Khatri-Rao products of the factors: two matmuls
        # of R columns, which beat contracting mode by mode (bmm's over R) at every batch size
        k_in = _khatri_rao(params[:n_in])                        # (P, in, R)
        k_out = _khatri_rao(params[n_in:])                       # (P, out, R)
        return torch.bmm(torch.bmm(x.reshape(p, b, -1), k_in), k_out.transpose(1, 2))
    if fmt == "tucker":
        core, factors = params[0], params[1:]
        t = _mode_cycle(x, factors[:n_in])                        # (P, B, R_in)
        r_in = t.shape[-1]
        t = torch.bmm(t, core.reshape(p, r_in, -1))               # (P, B, R_out)
        return _mode_cycle(t, [f.transpose(-1, -2) for f in factors[n_in:]])
    if fmt == "tt":
        c0 = params[0][:, 0]                                      # (P, I_1, r_1)
        t = torch.einsum("pbim,pis->pbms", x.reshape(p, b, in_shape[0], -1), c0)
        for k in range(1, n_in):
            c = params[k]
            t = t.reshape(p, b, in_shape[k], -1, c.shape[-3])
            t = torch.einsum("pbimr,pris->pbms", t, c)
        t = t.reshape(p, b, -1)                                   # (P, B, r_N)
        out = params[n_in]                                        # (P, r_N, J_1, r)
        for c in params[n_in + 1:]:
            out = torch.einsum("pajr,prks->pajks", out, c)
            out = out.reshape(p, out.shape[1], -1, c.shape[-1])
        return torch.einsum("pba,pao->pbo", t, out[..., 0])
    raise ValueError(f"format: expected one of {LINEAR_FORMATS}, got {fmt!r}")


def contract_conv(x: torch.Tensor, params: Sequence[torch.Tensor], stride, padding,
                  dilation) -> torch.Tensor:
    """Tucker-2 convolution of ``x`` ``(P, B, C, H, W)`` with particle-wise factors.

    ``params = [core (P, R_o, R_i, R_h, R_w), U_out (P, O, R_o), U_in (P, C, R_i),
    U_h (P, kh, R_h), U_w (P, kw, R_w)]``: a 1x1 convolution to ``R_i`` channels, a
    ``kh x kw`` convolution with the core kernel to ``R_o`` channels, a 1x1 convolution to
    ``O``. Particles run as groups of one grouped convolution each.
    """
    core, u_out, u_in, u_h, u_w = params
    p, b, c = x.shape[:3]
    h = x.transpose(0, 1).reshape(b, p * c, *x.shape[-2:])
    w1 = u_in.transpose(-1, -2).reshape(-1, c, 1, 1)
    h = F.conv2d(h, w1, groups=p)
    kernel = torch.einsum("poihw,pkh,plw->poikl", core, u_h, u_w)
    h = F.conv2d(h, kernel.reshape(-1, *kernel.shape[2:]), stride=stride, padding=padding,
                 dilation=dilation, groups=p)
    h = F.conv2d(h, u_out.reshape(-1, u_out.shape[-1], 1, 1), groups=p)
    return h.reshape(b, p, -1, *h.shape[-2:]).transpose(0, 1)


# --------------------------------------------------------------------------------------------
# shared machinery
# --------------------------------------------------------------------------------------------
def _particle_start(params: Sequence[torch.Tensor], num_particles: int,
                    seed: int | None) -> list[torch.Tensor]:
    """``num_particles`` copies of single-sample ``params`` ``(1, ...)``, jittered by
    :data:`PARTICLE_SPREAD` (relative) when there are several and ``seed`` is given."""
    out = [p.float().expand(num_particles, *p.shape[1:]).clone() for p in params]
    if num_particles > 1 and seed is not None:
        gen = torch.Generator().manual_seed(seed)
        out = [p * (1 + PARTICLE_SPREAD * torch.randn(p.shape, generator=gen)) for p in out]
    return out


def _layer_prior_params(fmt: str, prior, prior_params: dict | None,
                        core_default: float | None) -> dict | None:
    """A layer's prior parameters: as given (or ``NET_PRIOR_PARAMS``). ``core_variance``
    concerns Tucker cores only (other formats drop it, so one ``prior_params`` serves a whole
    network); a Tucker layer without it takes ``core_default``, and ``None`` asks for the
    product prior."""
    if hasattr(prior, "kind"):
        return prior_params
    params = dict(NET_PRIOR_PARAMS.get(str(prior), {}) if prior_params is None else prior_params)
    if fmt != "tucker":
        params.pop("core_variance", None)
    elif core_default is not None:
        params.setdefault("core_variance", core_default)
    if params.get("core_variance", 1.0) is None:
        del params["core_variance"]
    return params


def _gather_slices(value: torch.Tensor, order: torch.Tensor, axis: int) -> torch.Tensor:
    """``value`` with its ``axis`` permuted per particle (leading dim) by ``order`` ``(P, R)``."""
    shape = [1] * value.ndim
    shape[0], shape[axis] = order.shape
    return value.gather(axis, order.reshape(shape).expand(value.shape))


class _BayesLowRank(nn.Module):
    """Parameters, priors, particles, pruning and the VI mode shared by the layers."""

    fmt: str
    tensor_shape: tuple[int, ...]

    def _setup(self, fmt, prior, prior_params, params, out_size, bias, bias_init):
        self.fmt = fmt
        self.format_cls = get_format(fmt)
        self.prior_spec = get_prior(prior, prior_params if prior_params is not None
                                    else NET_PRIOR_PARAMS.get(str(prior), {})
                                    if not hasattr(prior, "kind") else None)
        self.variational = False
        self.num_draws = 1
        self._last = None
        self.stacked_input = False  # set by BayesianNet while it runs: (P * B, ...) inputs
        self.factors = nn.ParameterList([nn.Parameter(p.contiguous()) for p in params])
        tensor = self.tensor()
        self._build_prior()
        init = self.prior.init_values(tensor.sample(0) if tensor.batch_shape else tensor)
        p = self.num_particles
        self.log_scales = nn.ParameterList()
        for site in self.prior.hyper_sites:
            h = init[site].float()
            u = -0.5 * h.log() if self.prior_spec.kind == "gamma" else h.log()
            self.log_scales.append(nn.Parameter(u.expand(p, -1).clone()))
        if bias:
            b = torch.zeros(p, out_size) if bias_init is None else \
                torch.as_tensor(bias_init, dtype=torch.float32).expand(p, -1).clone()
            self.particle_bias = nn.Parameter(b)
        else:
            self.register_parameter("particle_bias", None)

    def _build_prior(self):
        self.prior = LowRankPrior("W", self.tensor_shape, self.tensor().ranks, self.fmt,
                                  self.prior_spec)

    # --- particles / draws -------------------------------------------------------------------
    @property
    def num_particles(self) -> int:
        """Leading particle (chain, draw) size of the forward pass."""
        return self.num_draws if self.variational else int(self.factors[0].shape[0])

    def current_params(self) -> list[torch.Tensor]:
        """Low-rank parameters of this forward pass, each ``(P, ...)`` (a draw under VI)."""
        if not self.variational:
            return list(self.factors)
        if self._last is None or self.training:
            self._last = [mu + F.softplus(rho) * torch.randn((self.num_draws,) + mu.shape[1:],
                                                              dtype=mu.dtype, device=mu.device)
                          for mu, rho in zip(self.factors, self.rhos)]
        return self._last

    def resample(self):
        """Draw fresh weights at the next forward (VI mode)."""
        self._last = None

    def make_variational(self, num_draws: int = 4, init_std: float = VI_INIT_STD):
        """Switch to mean-field Gaussian VI: ``w = mu + softplus(rho) * eps``, ``num_draws`` per pass.

        The slice scales and the bias stay point estimates (type-II MAP). Needs one particle.
        """
        num_draws = positive_int("num_draws", num_draws)
        if int(self.factors[0].shape[0]) != 1:
            raise ValueError(f"num_particles: VI needs a single particle, got {self.num_particles}")
        rho0 = math.log(math.expm1(real_number("init_std", init_std)))
        self.rhos = nn.ParameterList([nn.Parameter(torch.full_like(p, rho0)) for p in self.factors])
        self.variational, self.num_draws, self._last = True, num_draws, None
        return self

    @property
    def bias(self) -> torch.Tensor | None:
        """The bias as ``nn.Linear`` / ``nn.Conv2d`` have it: ``(out,)``, or ``(P, out)`` when
        the particles have their own (``None`` without a bias). A view of ``particle_bias``."""
        b = self.particle_bias
        return None if b is None else (b[0] if b.shape[0] == 1 else b)

    def tensor(self):
        """The low-rank weight tensor (a bayestensor format with batch dim ``(P,)``)."""
        return self.format_cls(self.tensor_shape, list(self.factors))

    def scales(self) -> list[torch.Tensor]:
        """Prior std of every rank slice, one ``(P, R_d)`` tensor per rank dimension."""
        return [u.exp() for u in self.log_scales]

    def _hyper(self, u):
        return (-2 * u).exp() if self.prior_spec.kind == "gamma" else u.exp()

    def prior_variances(self) -> list[torch.Tensor]:
        """Prior variance of every low-rank parameter entry, one ``(P, ...)`` tensor per factor
        (a Tucker-core or TT-core entry's variance is the product over its rank slices)."""
        variances = [self.prior.prior.variance(self._hyper(u.detach())) for u in self.log_scales]
        return [self.prior.entry_std(spec, variances) ** 2 for spec in self.prior.specs]

    def log_prior(self) -> torch.Tensor:
        """Log prior of the current values per particle ``(P,)``, with the log-Jacobian of ``u``.

        Under VI this is ``log p(w) + H[q(w)]`` averaged over draws (the ELBO's prior terms).
        """
        params = self.current_params()
        values = {site: p for site, p in zip(self.prior.param_sites, params)}
        jac = 0.0
        for site, u in zip(self.prior.hyper_sites, self.log_scales):
            values[site] = self._hyper(u)
            jac = jac + (u.sum(-1) * (-2 if self.prior_spec.kind == "gamma" else 1)
                         + (math.log(2) * u.shape[-1] if self.prior_spec.kind == "gamma" else 0))
        lp = self.prior.log_prob(values) + jac
        if self.variational:
            entropy = sum(F.softplus(r).log().sum() for r in self.rhos)
            lp = lp.mean().reshape(1) + entropy
        return lp

    # --- sizes -------------------------------------------------------------------------------
    @property
    def ranks(self) -> tuple[int, ...]:
        return self.tensor().ranks

    def n_params(self) -> int:
        """Parameters of one particle: low-rank weight plus bias."""
        nb = 0 if self.particle_bias is None else int(self.particle_bias.shape[-1])
        return self.tensor().n_params() + nb

    def dense_params(self) -> int:
        """Parameters of the dense layer it replaces (weight plus bias)."""
        nb = 0 if self.particle_bias is None else int(self.particle_bias.shape[-1])
        return math.prod(self.tensor_shape) + nb

    def compression_ratio(self) -> float:
        return self.dense_params() / self.n_params()

    # --- pruning -----------------------------------------------------------------------------
    def particle_keep_masks(self, threshold: float = PRUNE_THRESHOLD) -> list[torch.Tensor]:
        """Per particle, the slices to keep: weight norm (``slice_norms``) above ``threshold``
        times the largest of its rank dim; one ``(P, R_d)`` mask per dim.

        The norm of a slice is the product of its norms in every factor that carries it, so it
        measures what the slice adds to the weight whatever the rescaling between TT/Tucker
        rank dims (gauge freedom). The prior scale is not used: at the MAP a switched-off
        slice's scale settles at a floor set by the hyperprior (``sqrt(2 b / (n + 2 a))`` for
        the gamma prior), whose ratio to the live scales depends on the size of the weights,
        not on whether the slice is used (measured: slices of norm 0 at 1.1% of the largest
        scale).
        """
        if not (isinstance(threshold, (int, float)) and 0 <= threshold < 1):
            raise ValueError(f"threshold: expected a number in [0, 1), got {threshold!r}")
        return [nrm.detach() > threshold * nrm.detach().max(-1, keepdim=True).values
                for nrm in self.tensor().slice_norms()]

    def keep_masks(self, threshold: float = PRUNE_THRESHOLD,
                   share: float = KEEP_SHARE) -> list[torch.Tensor]:
        """Slices kept by at least ``share`` of the particles (see :meth:`particle_keep_masks`);
        ``share=0``: by any particle. One ``(R_d,)`` mask per rank dim, shared by all particles.
        """
        if not (isinstance(share, (int, float)) and 0 <= share <= 1):
            raise ValueError(f"share: expected a number in [0, 1], got {share!r}")
        active = [m.double().mean(0) for m in self.particle_keep_masks(threshold)]
        return [a >= share if share > 0 else a > 0 for a in active]

    def live_masks(self, threshold: float = PRUNE_THRESHOLD) -> list[torch.Tensor]:
        """Per :meth:`particle_params` entry, a mask of the elements in slices its particle
        keeps (bias always live); SGHMC freezes the rest at their collapsed values."""
        keep = self.particle_keep_masks(threshold)
        masks = []
        for spec, f in zip(self.tensor().param_specs, self.factors):
            m = torch.ones_like(f, dtype=torch.bool)
            for axis, dim in spec.rank_axes.items():
                shape = [f.shape[0]] + [1] * (f.ndim - 1)
                shape[1 + axis] = f.shape[1 + axis]
                m = m & keep[dim].reshape(shape)
            masks.append(m)
        masks += [k.clone() for k in keep]
        if self.particle_bias is not None:
            masks.append(torch.ones_like(self.particle_bias, dtype=torch.bool))
        return masks

    @torch.no_grad()
    def align_slices(self) -> None:
        """Order every particle's slices by decreasing norm (:meth:`particle_keep_masks`).

        Rank slices are exchangeable: moving slice ``k`` of a rank dim to another index in
        every factor that carries the dim, and its prior scale with it, changes neither the
        weight nor the prior. Particles that switched off different indices (label switching)
        then agree on which positions are live, so :meth:`keep_masks` counts slices, not
        indices. The network's outputs are unchanged.
        """
        if self.num_particles < 2:  # nothing to agree on (VI has one particle)
            return
        orders = [n.argsort(dim=-1, descending=True) for n in self.tensor().slice_norms()]
        for spec, p in zip(self.tensor().param_specs, self.factors):
            value = p.data
            for axis, dim in spec.rank_axes.items():
                value = _gather_slices(value, orders[dim], 1 + axis)
            p.data.copy_(value)
        for u, order in zip(self.log_scales, orders):
            u.data.copy_(u.data.gather(-1, order))

    @torch.no_grad()
    def prune(self, threshold: float = PRUNE_THRESHOLD, share: float = KEEP_SHARE) -> dict:
        """Remove the rank slices that were switched off, in every particle.

        The particles' slices are first aligned (:meth:`align_slices`); a slice position then
        goes when fewer than ``share`` of the particles keep it (see :meth:`keep_masks`). A
        particle that used more slices than the shared mask keeps loses its weakest ones, which
        is what lets an ensemble reach its MAP's compression. Returns ``{"ranks_before",
        "ranks_after"}``.
        """
        before = self.ranks
        if share > 0:
            self.align_slices()
        masks = self.keep_masks(threshold, share)
        pruned = self.tensor().prune(masks)
        kept = []
        for d, m in enumerate(masks):
            if not bool(m.any()):  # formats keep the largest slice; mirror that choice
                norms = self.tensor().slice_norms()[d].reshape(-1, m.numel()).mean(0)
                m = torch.zeros_like(m)
                m[int(norms.argmax())] = True
            kept.append(m.nonzero().flatten())
        self.factors = nn.ParameterList([nn.Parameter(p.contiguous()) for p in pruned.params])
        self.log_scales = nn.ParameterList(
            [nn.Parameter(u.index_select(-1, k).contiguous()) for u, k in zip(self.log_scales, kept)])
        if self.variational:
            nb = 1
            new_rhos = []
            for spec, rho in zip(self.tensor().param_specs, self.rhos):
                for axis, dim in spec.rank_axes.items():
                    rho = rho.index_select(nb + axis, kept[dim])
                new_rhos.append(nn.Parameter(rho.contiguous()))
            self.rhos = nn.ParameterList(new_rhos)
            self._last = None
        self._build_prior()
        return {"ranks_before": list(before), "ranks_after": list(self.ranks)}

    def particle_params(self) -> list[nn.Parameter]:
        """Parameters with a leading particle dim (all of them except VI's ``rho``)."""
        ps = list(self.factors) + list(self.log_scales)
        return ps + ([self.particle_bias] if self.particle_bias is not None else [])

    def select_particle(self, i: int) -> list[torch.Tensor]:
        """Low-rank parameters of particle ``i`` (the mean under VI), each ``(1, ...)``."""
        return [p.detach()[i:i + 1].clone() for p in self.factors]

    # --- inputs ------------------------------------------------------------------------------
    #: Trailing dims of one example: 1 for a linear layer, 3 (C, H, W) for a convolution.
    feature_dims = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in) -> (..., out)`` with one particle, ``(P, ..., out)`` with several (the
        input shared by all particles); see the module docstring for stacked inputs."""
        return self._run(x, per_particle=False)

    def particle_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(P, ..., in) -> (P, ..., out)``: particle ``p`` maps ``x[p]``."""
        return self._run(x, per_particle=True)

    def _run(self, x: torch.Tensor, per_particle: bool) -> torch.Tensor:
        xs, lead = self._batched_input(x, per_particle)
        y = self._contract(xs)
        return y.reshape(*lead, *y.shape[2:])

    def _batched_input(self, x, per_particle: bool) -> tuple[torch.Tensor, tuple[int, ...]]:
        """``(P, N, *features)`` from the input, and the leading dims of the output."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        k = self.feature_dims
        if x.ndim < k:
            raise ValueError(f"x: expected at least {k} dim(s) (..., {self._feature_text()}), "
                             f"got shape {tuple(x.shape)}")
        self._check_features(x.shape[x.ndim - k:])
        p = self.num_particles
        lead, features = tuple(x.shape[:x.ndim - k]), x.shape[x.ndim - k:]
        if per_particle or self.stacked_input:
            if not lead or lead[0] % p or (per_particle and lead[0] != p):
                what = "a leading particle dim" if per_particle else "a stacked batch (P * B)"
                raise ValueError(f"x: expected {what} for num_particles={p}, got shape "
                                 f"{tuple(x.shape)}")
            return x.reshape(p, -1, *features), lead
        xs = x.reshape(1, -1, *features)
        if p == 1:
            return xs, lead
        return xs.expand(p, *xs.shape[1:]), (p,) + lead


def _gain_scale(fan_in: int) -> float:
    """Kaiming (He) std for a ReLU layer: ``sqrt(2 / fan_in)``."""
    return math.sqrt(2.0 / fan_in)


class TensorizedLinear(_BayesLowRank):
    """Bayesian tensorized linear layer ``y = x W + b`` with a low-rank ``W``.

    Parameters
    ----------
    in_features, out_features : int
        Layer sizes.
    format : {"ttm", "cp", "tucker", "tt"}
        Low-rank format of ``W`` (over the tensor ``in_shape + out_shape``).
    max_rank : int or sequence of int
        Maximum rank(s); the prior switches off the slices the data do not need. A rank above
        what the tensorized shape supports (:func:`bayestensor.formats.ranks.rank_caps`) adds
        nothing and is capped, with a warning.
    prior : {"gamma", "half_cauchy", "log_uniform"} or RankPrior
        Hyperprior on the slice scales.
    prior_params : dict, optional
        Hyperprior parameters (log-uniform defaults to ``low=1e-8, high=1e2`` here). Tucker
        layers also take ``core_variance``: the core's fixed prior variance, default
        :data:`TUCKER_CORE_VARIANCE`; ``None`` gives the product prior (each core entry's
        variance the product of its slice variances).
    shape : pair of sequences, optional
        ``(in_shape, out_shape)``; by default each size is factored into ``num_modes`` modes.
    num_modes : int, optional
        Modes per side (default 3, Tucker 2).
    num_particles : int
        Leading particle dim (SVGD particles, SGHMC chains).
    bias : bool
    init_std : float, optional
        Std of the entries of the dense-equivalent weight at initialization (default
        ``sqrt(2 / in_features)``, He initialization).
    seed : int, optional
        Seed of the random initialization.
    max_params : int or None
        Most low-rank parameters the layer may have, all particles together (default
        :data:`MAX_LAYER_PARAMS`); checked before anything is allocated. ``None`` lifts it.

    Examples
    --------
    >>> layer = TensorizedLinear(64, 32, format="ttm", max_rank=4, seed=0)
    >>> layer(torch.randn(5, 64)).shape
    torch.Size([5, 32])
    """

    def __init__(self, in_features: int, out_features: int, format: str = "ttm", max_rank=8,
                 prior="gamma", prior_params: dict | None = None, shape=None,
                 num_modes: int | None = None, num_particles: int = 1, bias: bool = True,
                 init_std: float | None = None, seed: int | None = None,
                 max_params: int | None = MAX_LAYER_PARAMS, _params=None, _bias=None):
        super().__init__()
        if format not in LINEAR_FORMATS:
            raise ValueError(f"format: expected one of {LINEAR_FORMATS}, got {format!r}")
        num_particles = positive_int("num_particles", num_particles)
        seed = seed_value(seed, optional=True)
        max_params = max_params_arg(max_params)
        requested = rank_value("max_rank", max_rank)
        self.in_features = positive_int("in_features", in_features)
        self.out_features = positive_int("out_features", out_features)
        self.in_shape, self.out_shape = linear_shape(format, in_features, out_features, num_modes,
                                                     shape)
        if format == "ttm" and len(self.in_shape) != len(self.out_shape):
            raise ValueError(f"shape: TT-matrix needs as many input as output modes, got "
                             f"{self.in_shape} and {self.out_shape}")
        if format in ("ttm", "tt") and len(self.in_shape) + len(self.out_shape) < (4 if format == "ttm" else 2):
            raise ValueError(f"num_modes: {format} needs at least 2 modes per side")
        self.tensor_shape = self.in_shape + self.out_shape
        cls = get_format(format)
        ranks = layer_ranks(format, self.tensor_shape, cls.normalize_rank(self.tensor_shape,
                                                                          requested),
                            max_rank, num_particles, max_params)
        if _params is None:
            std = (_gain_scale(in_features) if init_std is None
                   else real_number("init_std", init_std))
            params = cls.random(self.tensor_shape, ranks, scale=std, batch_shape=(num_particles,),
                                seed=seed).params
        else:
            params = _particle_start(_params, num_particles, seed)
        self._setup(format, prior,
                    _layer_prior_params(format, prior, prior_params, TUCKER_CORE_VARIANCE),
                    params, out_features, bias, _bias)

    def _feature_text(self) -> str:
        return f"in_features={self.in_features}"

    def _check_features(self, features):
        if features[-1] != self.in_features:
            raise ValueError(f"x: expected {self.in_features} features in the last dim, got "
                             f"{features[-1]}")

    def _contract(self, xs: torch.Tensor) -> torch.Tensor:
        y = contract_linear(self.fmt, xs, self.current_params(), self.in_shape, self.out_shape)
        if self.particle_bias is not None:
            y = y + self.particle_bias.unsqueeze(1)
        return y

    def dense_weight(self) -> torch.Tensor:
        """Reconstructed ``W`` ``(P, in, out)`` (for tests and export only)."""
        return self.format_cls(self.tensor_shape, self.current_params()).reconstruct().reshape(
            -1, self.in_features, self.out_features)

    @property
    def weight(self) -> torch.Tensor:
        """The dense weight as ``nn.Linear`` has it, ``(out, in)`` (``(P, out, in)`` with several
        particles), reconstructed from the low-rank parameters (differentiable)."""
        w = self.dense_weight().transpose(-1, -2)
        return w[0] if w.shape[0] == 1 else w

    @classmethod
    def from_linear(cls, linear: nn.Linear, format: str = "ttm", max_rank=8, prior="gamma",
                    prior_params=None, shape=None, num_modes=None, num_particles: int = 1,
                    init: str = "decompose", seed: int = 0,
                    max_params: int | None = MAX_LAYER_PARAMS) -> "TensorizedLinear":
        """Replace an ``nn.Linear``; ``init="decompose"`` starts from its trained weight.

        The weight is decomposed with TensorLy (TT-matrix SVD, TT-SVD, HOSVD/Tucker, CP-ALS)
        at ``max_rank`` (capped as in :class:`TensorizedLinear`, before the decomposition);
        ``init="random"`` uses He initialization instead. The bias is copied.

        Parameters
        ----------
        linear : nn.Linear
            The layer to replace; its sizes become ``in_features`` and ``out_features``.
        format : {"ttm", "cp", "tucker", "tt"}
            Low-rank format of the weight.
        max_rank, prior, prior_params, shape, num_modes, num_particles, max_params
            As in :class:`TensorizedLinear`.
        init : {"decompose", "random"}
            ``"decompose"`` (default) starts every particle from the decomposition of
            ``linear.weight``; ``"random"`` draws a He-initialized low-rank weight per particle.
        seed : int
            Seed passed to the decomposition (CP-ALS starts from a random guess) and to the
            layer: the random initialization under ``init="random"``, else the relative jitter
            (:data:`PARTICLE_SPREAD`) that sets several particles apart.

        Returns
        -------
        TensorizedLinear
            A new layer with the capped ranks; ``linear`` itself is left unchanged.
        """
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"linear: expected an nn.Linear, got {type(linear).__name__}")
        choice("format", format, LINEAR_FORMATS)
        choice("init", init, INITS)
        seed = seed_value(seed)
        num_particles = positive_int("num_particles", num_particles)
        requested = rank_value("max_rank", max_rank)
        in_shape, out_shape = linear_shape(format, linear.in_features, linear.out_features,
                                           num_modes, shape)
        tensor_shape = in_shape + out_shape
        ranks = layer_ranks(format, tensor_shape,
                            get_format(format).normalize_rank(tensor_shape, requested), max_rank,
                            num_particles, max_params_arg(max_params),
                            decompose=init == "decompose")
        params = None
        if init == "decompose":
            w = linear.weight.detach().double().T.reshape(tensor_shape).numpy()
            params = [p.unsqueeze(0) for p in decompose_weight(w, format, ranks, seed=seed)]
        b = None if linear.bias is None else linear.bias.detach()
        return cls(linear.in_features, linear.out_features, format, ranks, prior, prior_params,
                   (in_shape, out_shape), num_modes, num_particles, linear.bias is not None,
                   seed=seed, max_params=max_params, _params=params, _bias=b)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, format={self.fmt!r}, "
                f"shape={self.in_shape}x{self.out_shape}, ranks={self.ranks}, "
                f"num_particles={self.num_particles}")


def decompose_weight(tensor: np.ndarray, fmt: str, rank, seed: int = 0) -> list[torch.Tensor]:
    """Single-sample low-rank parameters of a dense tensor in ``fmt`` (TensorLy decompositions)."""
    cls = get_format(fmt)
    seed = legacy_seed(seed)
    if fmt == "cp":
        (r,) = cls.normalize_rank(tensor.shape, rank)
        factors = cp_als(tensor, r, init="random", n_iter_max=CP_ALS_ITERATIONS, seed=seed)
        return [torch.as_tensor(f, dtype=torch.float32) for f in factors]
    ranks = cls.normalize_rank(tensor.shape, rank)
    if fmt == "tucker":
        ranks = [min(r, s) for r, s in zip(ranks, tensor.shape)]
    return cls.from_tensor(tensor, ranks, seed=seed).params


def conv_ranks(tensor_shape: Sequence[int], max_rank, num_particles: int,
               max_params: int | None, warn: bool = True) -> tuple[int, int, int, int]:
    """Tucker-2 ranks ``(R_out, R_in, kh, kw)`` of a ``(out, in, kh, kw)`` kernel from
    ``max_rank`` (an int or a pair), capped and checked as in :func:`layer_ranks`."""
    requested = rank_value("max_rank", max_rank)
    if isinstance(requested, int):
        requested = (requested, requested)
    if len(requested) != 2:
        raise ValueError(f"max_rank: expected an integer or a pair (R_out, R_in), "
                         f"got {max_rank!r}")
    return layer_ranks("tucker", tensor_shape, requested + tuple(tensor_shape[2:]), max_rank,
                       num_particles, max_params, warn)


class TensorizedConv2d(_BayesLowRank):
    """Bayesian Tucker-2 convolution: ``W[o, c, h, w]`` as a Tucker tensor of ranks
    ``(R_out, R_in, kh, kw)`` (the spatial factors are full rank at start but pruned too).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or pair
    stride, padding, dilation : int or pair
    max_rank : int or pair
        Maximum ``(R_out, R_in)``, capped at what the kernel's shape supports (with a warning).
    prior, prior_params, num_particles, bias, init_std, seed, max_params
        As in :class:`TensorizedLinear`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, max_rank=8, prior="gamma", prior_params=None, num_particles: int = 1,
                 bias: bool = True, init_std: float | None = None, seed: int | None = None,
                 max_params: int | None = MAX_LAYER_PARAMS, _params=None, _bias=None):
        super().__init__()
        self.in_channels = positive_int("in_channels", in_channels)
        self.out_channels = positive_int("out_channels", out_channels)
        num_particles = positive_int("num_particles", num_particles)
        seed = seed_value(seed, optional=True)
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        kh, kw = positive_int("kernel_size", kh), positive_int("kernel_size", kw)
        self.kernel_size = (kh, kw)
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.tensor_shape = (out_channels, in_channels, kh, kw)
        ranks = conv_ranks(self.tensor_shape, max_rank, num_particles, max_params_arg(max_params))
        if _params is None:
            std = (_gain_scale(in_channels * kh * kw) if init_std is None
                   else real_number("init_std", init_std))
            params = TuckerTensor.random(self.tensor_shape, ranks, scale=std,
                                         batch_shape=(num_particles,), seed=seed).params
        else:
            params = _particle_start(_params, num_particles, seed)
        self._setup("tucker", prior, _layer_prior_params("tucker", prior, prior_params, None),
                    params, out_channels, bias, _bias)

    feature_dims = 3

    def _feature_text(self) -> str:
        return f"in_channels={self.in_channels}, H, W"

    def _check_features(self, features):
        if features[0] != self.in_channels:
            raise ValueError(f"x: expected {self.in_channels} channels in dim -3, got "
                             f"{features[0]}")

    def _contract(self, xs: torch.Tensor) -> torch.Tensor:
        y = contract_conv(xs, self.current_params(), self.stride, self.padding, self.dilation)
        if self.particle_bias is not None:
            y = y + self.particle_bias[:, None, :, None, None]
        return y

    def dense_weight(self) -> torch.Tensor:
        """Reconstructed kernel ``(P, out, in, kh, kw)``."""
        return TuckerTensor(self.tensor_shape, self.current_params()).reconstruct()

    @property
    def weight(self) -> torch.Tensor:
        """The kernel as ``nn.Conv2d`` has it, ``(out, in, kh, kw)`` (``(P, ...)`` with several
        particles), reconstructed from the Tucker-2 parameters (differentiable)."""
        w = self.dense_weight()
        return w[0] if w.shape[0] == 1 else w

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, max_rank=8, prior="gamma", prior_params=None,
                  num_particles: int = 1, init: str = "decompose", seed: int = 0,
                  max_params: int | None = MAX_LAYER_PARAMS):
        """Replace an ``nn.Conv2d`` (groups=1); ``init="decompose"`` uses its Tucker-2 HOSVD.

        The ranks are capped and checked against ``max_params`` before the decomposition.

        Parameters
        ----------
        conv : nn.Conv2d
            The layer to replace: ``groups=1`` and a numeric (not a string) ``padding``. Its
            channels, kernel size, stride, padding, dilation and bias carry over.
        max_rank : int or pair
            Maximum ``(R_out, R_in)``, as in :class:`TensorizedConv2d`; the spatial ranks start
            at the kernel size.
        prior, prior_params, num_particles, max_params
            As in :class:`TensorizedLinear`.
        init : {"decompose", "random"}
            ``"decompose"`` (default) starts every particle from the Tucker-2 decomposition of
            ``conv.weight``; ``"random"`` draws a He-initialized kernel per particle.
        seed : int
            Seed passed to the decomposition and to the layer: the random initialization under
            ``init="random"``, else the relative jitter (:data:`PARTICLE_SPREAD`) that sets
            several particles apart.

        Returns
        -------
        TensorizedConv2d
            A new layer with the capped ranks; ``conv`` itself is left unchanged.
        """
        if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
            raise ValueError(f"conv: expected an nn.Conv2d with groups=1, got {conv!r}")
        choice("init", init, INITS)
        seed = seed_value(seed)
        if isinstance(conv.padding, str):
            raise ValueError(f"conv: string padding {conv.padding!r} is not supported")
        num_particles = positive_int("num_particles", num_particles)
        shape = tuple(conv.weight.shape)
        ranks = conv_ranks(shape, max_rank, num_particles, max_params_arg(max_params))
        params = None
        if init == "decompose":
            w = conv.weight.detach().double().numpy()
            params = [p.unsqueeze(0) for p in TuckerTensor.from_tensor(
                w, ranks, seed=legacy_seed(seed)).params]
        b = None if conv.bias is None else conv.bias.detach()
        return cls(shape[1], shape[0], shape[2:], conv.stride, conv.padding, conv.dilation,
                   ranks[:2], prior, prior_params, num_particles, conv.bias is not None,
                   seed=seed, max_params=max_params, _params=params, _bias=b)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"ranks={self.ranks}, num_particles={self.num_particles}")


# --------------------------------------------------------------------------------------------
# plain deterministic exports
# --------------------------------------------------------------------------------------------
class CompressedLinear(nn.Module):
    """Deterministic low-rank linear layer (no priors, no particles): the exported form.

    Parameters
    ----------
    in_shape, out_shape : sequence of int
        Tensorized shapes of the input and output features.
    format : {"ttm", "cp", "tucker", "tt"}
    ranks : sequence of int
    bias : bool
    implementation : {"auto", "factorized", "reconstructed"}
        How ``forward`` computes ``x W``: ``"factorized"`` contracts ``x`` with the factors
        (:func:`contract_linear`); ``"reconstructed"`` forms the dense weight once, caches it
        while the factors are unchanged and gradients are off, and runs one matmul (the
        storage stays compressed; the memory at run time is the dense layer's). ``"auto"``
        (default) takes the factorized form when it costs at most
        :data:`FACTORIZED_MAX_FLOP_SHARE` of the dense matmul's FLOPs per example (counted by
        :func:`factorized_flops`), else the reconstructed one: a TT-matrix of three or more
        modes at moderate rank can cost more than the dense layer.
    """

    def __init__(self, in_shape, out_shape, format: str, ranks, bias: bool = True,
                 implementation: str = "auto"):
        super().__init__()
        self.implementation = choice("implementation", implementation, IMPLEMENTATIONS)
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.in_features, self.out_features = math.prod(self.in_shape), math.prod(self.out_shape)
        self.fmt, self.ranks = format, tuple(ranks)
        specs = get_format(format).specs(self.in_shape + self.out_shape, self.ranks)
        self.factors = nn.ParameterList([nn.Parameter(torch.zeros(s.shape)) for s in specs])
        self.bias = nn.Parameter(torch.zeros(self.out_features)) if bias else None
        self.runs_as = self._resolve(implementation)
        self._cache, self._cache_key = None, None

    def _resolve(self, implementation: str) -> str:
        if implementation != "auto":
            return implementation
        dense = 2 * self.in_features * self.out_features
        cheap = factorized_flops(self) <= FACTORIZED_MAX_FLOP_SHARE * dense
        return "factorized" if cheap else "reconstructed"

    def config(self) -> dict:
        """Plain settings that rebuild an empty copy of the layer (:func:`build_compressed`):
        ``type`` ``"linear"``, ``in_shape``, ``out_shape``, ``format``, ``ranks``, ``bias``,
        ``implementation``."""
        return {"type": "linear", "in_shape": list(self.in_shape), "out_shape": list(self.out_shape),
                "format": self.fmt, "ranks": list(self.ranks), "bias": self.bias is not None,
                "implementation": self.implementation}

    def factorized(self, x: torch.Tensor) -> torch.Tensor:
        """``x W`` (no bias) through the factors, ``x`` of shape ``(B, in)``."""
        return contract_linear(self.fmt, x.reshape(1, -1, self.in_features),
                               [p.unsqueeze(0) for p in self.factors], self.in_shape,
                               self.out_shape)[0]

    def forward(self, x):
        lead = x.shape[:-1]
        if self.runs_as == "reconstructed":
            return F.linear(x, self._dense_weight(), self.bias)
        y = self.factorized(x.reshape(-1, self.in_features))
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def _dense_weight(self) -> torch.Tensor:
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.factors):
            return self.weight                    # differentiable: a fine-tune of the export
        key = tuple((id(p), p._version) for p in self.factors)
        if key != self._cache_key:
            self._cache, self._cache_key = self.weight.detach().contiguous(), key
        return self._cache

    def n_params(self) -> int:
        """Parameters stored by the layer: the low-rank factors plus the bias."""
        return sum(p.numel() for p in self.parameters())

    def dense_params(self) -> int:
        """Parameters of the dense layer it replaces (weight plus bias)."""
        return self.in_features * self.out_features + (0 if self.bias is None else self.out_features)

    @property
    def weight(self) -> torch.Tensor:
        """The dense ``(out, in)`` weight, as ``nn.Linear`` has it (reconstructed)."""
        w = get_format(self.fmt)(self.in_shape + self.out_shape, list(self.factors)).reconstruct()
        return w.reshape(self.in_features, self.out_features).T

    def to_dense(self) -> nn.Linear:
        """The equivalent ``nn.Linear`` (dense weight reconstructed)."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(self.weight)
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin


class CompressedConv2d(nn.Module):
    """Deterministic Tucker-2 convolution (the exported form of :class:`TensorizedConv2d`).

    The core, the factors and the bias start at zero: :func:`export_layer` copies a particle
    into them (or load a state dict).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : pair of int
        ``(kh, kw)``.
    stride, padding, dilation : int or pair
        Passed to ``F.conv2d`` as given.
    ranks : sequence of 4 int
        Tucker ranks ``(R_out, R_in, R_h, R_w)`` of the ``(out, in, kh, kw)`` kernel.
    bias : bool
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, ranks,
                 bias: bool = True):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = tuple(kernel_size)
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.ranks = tuple(ranks)
        specs = TuckerTensor.specs((out_channels, in_channels) + self.kernel_size, self.ranks)
        self.factors = nn.ParameterList([nn.Parameter(torch.zeros(s.shape)) for s in specs])
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def config(self) -> dict:
        """Plain settings that rebuild an empty copy of the layer (:func:`build_compressed`):
        ``type`` ``"conv2d"``, the channels, kernel size, stride, padding, dilation, ranks,
        ``bias``."""
        as_list = lambda v: list(v) if isinstance(v, (tuple, list)) else v  # noqa: E731
        return {"type": "conv2d", "in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": as_list(self.stride),
                "padding": as_list(self.padding), "dilation": as_list(self.dilation),
                "ranks": list(self.ranks), "bias": self.bias is not None}

    def forward(self, x):
        lead = x.shape[:-3]
        y = contract_conv(x.reshape(1, -1, *x.shape[-3:]), [p.unsqueeze(0) for p in self.factors],
                          self.stride, self.padding, self.dilation)[0]
        y = y if self.bias is None else y + self.bias[:, None, None]
        return y.reshape(*lead, *y.shape[1:])

    def n_params(self) -> int:
        """Parameters stored by the layer: the Tucker-2 core and factors plus the bias."""
        return sum(p.numel() for p in self.parameters())

    def dense_params(self) -> int:
        """Parameters of the dense convolution it replaces (kernel plus bias)."""
        kernel = self.out_channels * self.in_channels * math.prod(self.kernel_size)
        return kernel + (0 if self.bias is None else self.out_channels)


def factorized_flops(layer: CompressedLinear) -> int:
    """FLOPs per example of ``layer``'s factorized forward.

    Counted by PyTorch's ``FlopCounterMode`` (matmuls, which is where the work is) at batches
    of 2 and 1, so that the work independent of the batch (forming Khatri-Rao products) drops
    out. Depends on the shapes and ranks only, not on the values.

    Parameters
    ----------
    layer : CompressedLinear

    Returns
    -------
    int
        Compare with ``2 * in_features * out_features``, the dense matmul's.
    """
    counts = []
    with torch.no_grad():
        for batch in (1, 2):
            with FlopCounterMode(display=False) as counter:
                layer.factorized(torch.zeros(batch, layer.in_features))
            counts.append(counter.get_total_flops())
    return counts[1] - counts[0]


def export_layer(layer: _BayesLowRank, particle: int = 0) -> nn.Module:
    """Plain deterministic copy of one particle (the variational mean under VI)."""
    params = layer.select_particle(particle)
    if isinstance(layer, TensorizedLinear):
        out = CompressedLinear(layer.in_shape, layer.out_shape, layer.fmt, layer.ranks,
                               layer.bias is not None)
    else:
        out = CompressedConv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                               layer.stride, layer.padding, layer.dilation, layer.ranks,
                               layer.bias is not None)
    with torch.no_grad():
        for dst, src in zip(out.factors, params):
            dst.copy_(src[0])
        if layer.particle_bias is not None:
            b = layer.particle_bias.detach()
            out.bias.copy_(b[min(particle, b.shape[0] - 1)])
    return out


def build_compressed(config: dict) -> nn.Module:
    """An empty exported layer from its ``config()`` (to load a saved state dict)."""
    if config.get("type") == "linear":
        return CompressedLinear(config["in_shape"], config["out_shape"], config["format"],
                                config["ranks"], config["bias"],
                                config.get("implementation", "auto"))
    if config.get("type") == "conv2d":
        return CompressedConv2d(config["in_channels"], config["out_channels"],
                                config["kernel_size"], config["stride"], config["padding"],
                                config["dilation"], config["ranks"], config["bias"])
    raise ValueError(f"config: unknown layer type {config.get('type')!r}")

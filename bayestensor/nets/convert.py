"""Convert a user's ``nn.Module``: Bayesian tensorized layers in, plain compressed module out.

An exported model is saved as tensors plus plain configuration (:func:`save_exported`) and read
back with PyTorch's weights-only loader (:func:`load_exported`): loading a model file never
runs code from it.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Iterable

import torch
from torch import nn

from bayestensor.checks import choice, positive_int, rank_value, seed_value
from bayestensor.formats import get_format
from bayestensor.io import load_tensors, save_tensors
from bayestensor.nets.layers import (INITS, KEEP_SHARE, LINEAR_FORMATS, MAX_LAYER_PARAMS,
                                     PRUNE_THRESHOLD, CompressedConv2d, CompressedLinear,
                                     TensorizedConv2d, TensorizedLinear, _BayesLowRank,
                                     build_compressed, conv_ranks, export_layer, layer_ranks,
                                     linear_shape, max_params_arg)
from bayestensor.seeds import MAX_SEED

#: Passes of fresh VI draws averaged per prediction (each pass draws ``num_draws`` weights).
VI_PREDICT_PASSES = 4
#: How ``BayesianNet.forward`` combines its particles.
REDUCTIONS = ("log_mean_prob", "mean", "none")


def _set_module(root: nn.Module, name: str, new: nn.Module):
    parent = root
    parts = name.split(".")
    for p in parts[:-1]:
        parent = getattr(parent, p)
    setattr(parent, parts[-1], new)


class BayesianNet(nn.Module):
    """A network whose tensorized layers carry ``P`` particles, run as one batched forward.

    :meth:`particle_outputs` stacks the input ``(B, ...)`` ``P`` times along the batch; layers
    that are not tensorized act per example (and are shared by all particles: they are point
    estimates); tensorized layers split the stacked batch into ``(P, B, ...)``. It returns one
    output per particle, ``(P, B, ...)``.

    ``forward`` returns one output per example, like the network it replaces, so that
    ``F.cross_entropy(bnet(x), y)`` works in any PyTorch training loop. How the particles are
    combined is ``reduce``:

    ``"log_mean_prob"`` (default, classifiers): ``log((1/P) sum_p softmax(logits_p))``, the log
    of the ensemble's predictive probabilities ``(B, classes)``. They are normalized
    log-probabilities, hence valid logits: ``softmax`` returns the predictive mean and
    ``F.cross_entropy`` its negative log-likelihood. With one particle they equal
    ``log_softmax(logits)``.
    ``"mean"``: the average output over particles (regression heads).
    ``"none"``: the per-particle outputs ``(P, B, ...)``.

    Parameters
    ----------
    net : nn.Module
        A module containing :class:`TensorizedLinear` / :class:`TensorizedConv2d` layers.
    reduce : {"log_mean_prob", "mean", "none"}
        How ``forward`` combines the particles.
    """

    def __init__(self, net: nn.Module, reduce: str = "log_mean_prob"):
        super().__init__()
        self.net = net
        self.reduce = choice("reduce", reduce, REDUCTIONS)
        if not self.tensorized():
            raise ValueError("net: contains no tensorized layer")
        self.samples: list[dict] = []  # SGHMC snapshots of the particle parameters

    def tensorized(self) -> dict[str, _BayesLowRank]:
        """The tensorized layers of the inner network, ``{name: layer}`` with the names of
        ``named_modules`` and in its order."""
        return {n: m for n, m in self.net.named_modules() if isinstance(m, _BayesLowRank)}

    @property
    def num_particles(self) -> int:
        """``P``, the particle count all tensorized layers share (``ValueError`` if not)."""
        ps = {m.num_particles for m in self.tensorized().values()}
        if len(ps) != 1:
            raise ValueError(f"net: tensorized layers disagree on num_particles: {sorted(ps)}")
        return ps.pop()

    def particle_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output for every particle, ``(P, B, ...)``, from a batch ``(B, ...)``."""
        if not isinstance(x, torch.Tensor) or x.ndim < 1:
            raise ValueError(f"x: expected a batch tensor (B, ...), got {type(x).__name__}")
        p = self.num_particles
        b = x.shape[0]
        layers = list(self.tensorized().values())
        for m in layers:
            m.stacked_input = True
        try:
            out = self.net(x.repeat(p, *([1] * (x.ndim - 1))) if p > 1 else x)
        finally:
            for m in layers:
                m.stacked_input = False
        return out.reshape(p, b, *out.shape[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One output per example, the particles combined by ``reduce`` (see the class)."""
        out = self.particle_outputs(x)
        if self.reduce == "none":
            return out
        if self.reduce == "mean":
            return out.mean(0)
        return torch.logsumexp(out.log_softmax(-1), 0) - math.log(out.shape[0])

    def is_variational(self) -> bool:
        """Whether the tensorized layers are in VI mode (see ``make_variational``)."""
        return any(m.variational for m in self.tensorized().values())

    def log_prior(self) -> torch.Tensor:
        """Sum of the layers' log priors per particle ``(P,)``."""
        return sum(m.log_prior() for m in self.tensorized().values())

    def particle_params(self) -> list[nn.Parameter]:
        """Every tensorized layer's parameters with a leading particle dim, layer by layer (see
        ``TensorizedLinear.particle_params``)."""
        return [p for m in self.tensorized().values() for p in m.particle_params()]

    def live_masks(self, threshold: float = PRUNE_THRESHOLD) -> list[torch.Tensor]:
        """Masks aligned with :meth:`particle_params` (see ``TensorizedLinear.live_masks``)."""
        return [m for layer in self.tensorized().values() for m in layer.live_masks(threshold)]

    def shared_params(self) -> list[nn.Parameter]:
        """The parameters outside the tensorized layers: point estimates shared by all
        particles."""
        own = {id(p) for m in self.tensorized().values() for p in m.parameters()}
        return [p for p in self.net.parameters() if id(p) not in own]

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Posterior predictive probabilities ``(B, classes)``: the softmax averaged over
        particles (and stored SGHMC samples, or several VI draws).

        Runs in eval mode without gradients and restores the training mode afterwards; with
        stored SGHMC samples the last one is left loaded. Under VI every prediction averages
        :data:`VI_PREDICT_PASSES` passes of fresh draws.

        Parameters
        ----------
        x : torch.Tensor
            Inputs ``(B, ...)``.
        batch_size : int
            Examples per forward pass (default 1000).

        Returns
        -------
        torch.Tensor
            ``(B, classes)``; each row sums to one.
        """
        was = self.training
        self.eval()
        snapshots = self.samples or [None]
        out = []
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size]
            acc = 0.0
            count = 0
            for snap in snapshots:
                if snap is not None:
                    self._load_snapshot(snap)
                reps = VI_PREDICT_PASSES if self.is_variational() else 1
                for _ in range(reps):
                    for m in self.tensorized().values():
                        m.resample()
                    acc = acc + self.particle_outputs(xb).softmax(-1).sum(0)
                    count += self.num_particles
            out.append(acc / count)
        if self.samples:
            self._load_snapshot(self.samples[-1])
        self.train(was)
        return torch.cat(out)

    def snapshot(self) -> dict:
        """Detached copies of :meth:`particle_params`, keyed by each parameter's ``id`` (an
        SGHMC sample, as stored in ``samples``)."""
        return {id(p): p.detach().clone() for p in self.particle_params()}

    def _load_snapshot(self, snap: dict):
        with torch.no_grad():
            for p in self.particle_params():
                if id(p) in snap:
                    p.copy_(snap[id(p)])

    def prune(self, threshold: float = PRUNE_THRESHOLD, share: float = KEEP_SHARE) -> dict:
        """Prune every tensorized layer to the slices at least ``share`` of the particles keep
        (see ``TensorizedLinear.prune``).

        Clears the stored SGHMC samples (they have the unpruned shapes).

        Parameters
        ----------
        threshold : float
            A particle keeps a slice whose weight norm is above ``threshold`` (in [0, 1)) times
            the largest of its rank dim (default :data:`PRUNE_THRESHOLD`).
        share : float
            Share (in [0, 1]) of the particles that must keep a slice for it to stay; ``0``
            keeps every slice any particle keeps (default :data:`KEEP_SHARE`).

        Returns
        -------
        dict
            ``{layer name: {"ranks_before": [...], "ranks_after": [...]}}``.

        Raises
        ------
        ValueError
            When ``threshold`` is outside [0, 1) or ``share`` outside [0, 1].
        """
        self.samples = []  # snapshots refer to the unpruned shapes
        return {n: m.prune(threshold, share) for n, m in self.tensorized().items()}

    def export(self, particle: int = 0) -> nn.Module:
        """A plain deterministic copy of the network with one particle's compressed layers."""
        out = copy.deepcopy(self.net)
        for name, m in self.tensorized().items():
            _set_module(out, name, export_layer(m, particle))
        return out

    def compression(self) -> dict:
        """Per-layer and whole-model compression (see :func:`compression_table`)."""
        return compression_table(self.net)


def _is_target(name, module, layers, min_features):
    if layers is None:
        if isinstance(module, nn.Linear):
            return module.in_features * module.out_features >= min_features
        return False
    if callable(layers):
        return bool(layers(name, module))
    return name in layers


def _check_budget(targets, format, max_rank, conv_rank, num_modes, num_particles, max_params,
                  init):
    """Check every target layer's ranks against ``max_params`` before any is built."""
    for _, m in targets:
        if isinstance(m, nn.Linear):
            in_shape, out_shape = linear_shape(format, m.in_features, m.out_features, num_modes)
            shape = in_shape + out_shape
            ranks = get_format(format).normalize_rank(shape, max_rank)
            layer_ranks(format, shape, ranks, max_rank, num_particles, max_params, warn=False,
                        decompose=init == "decompose")
        else:
            conv_ranks(tuple(m.weight.shape), conv_rank, num_particles, max_params, warn=False)


def tensorize(model: nn.Module, layers: Iterable[str] | Callable | None = None,
              format: str = "ttm", max_rank=8, prior: str = "gamma", prior_params=None,
              num_particles: int = 1, init: str = "decompose", num_modes: int | None = None,
              conv_rank=None, min_features: int = 256, seed: int = 0,
              max_params: int | None = MAX_LAYER_PARAMS,
              reduce: str = "log_mean_prob") -> BayesianNet:
    """Replace chosen ``nn.Linear`` / ``nn.Conv2d`` layers of a copy of ``model``.

    Parameters
    ----------
    model : nn.Module
        The user's network (left unchanged).
    layers : list of str or callable, optional
        Names (as in ``named_modules``) of the layers to replace, or ``f(name, module) -> bool``.
        By default every ``nn.Linear`` with at least ``min_features`` weights.
    format : {"ttm", "cp", "tucker", "tt"}
        Format of the linear layers (convolutions are Tucker-2).
    max_rank : int
        Maximum rank of the linear layers, capped per layer at what its tensorized shape
        supports (with a warning, see :func:`bayestensor.nets.shapes.rank_caps`).
    prior, prior_params
        Hyperprior on the slice scales. ``prior_params`` may also hold ``core_variance``,
        the fixed prior variance of Tucker cores (layers in other formats ignore it): Tucker
        linear layers default to :data:`~bayestensor.nets.layers.TUCKER_CORE_VARIANCE`,
        the Tucker-2 convolutions to the product prior; ``None`` asks for the product prior.
    num_particles : int
        Particles/chains of every tensorized layer.
    init : {"decompose", "random"}
        Start from the dense weights' decomposition or from He initialization.
    num_modes : int, optional
        Modes per side of the tensorized shapes.
    conv_rank : int, optional
        Maximum Tucker-2 ranks of the convolutions (default ``max_rank``).
    min_features : int
        Smallest weight (``in * out``) replaced when ``layers`` is not given.
    seed : int
        Layer ``k`` (in module order) starts from seed ``seed + k``.
    max_params : int or None
        Most low-rank parameters per layer (all particles together), default
        :data:`bayestensor.nets.layers.MAX_LAYER_PARAMS`; every layer is checked before any is
        built. ``None`` lifts the limit.
    reduce : {"log_mean_prob", "mean", "none"}
        How the network's ``forward`` combines the particles (see :class:`BayesianNet`): by
        default ``(B, classes)`` log predictive probabilities, which ``F.cross_entropy`` takes.

    Returns
    -------
    BayesianNet

    Examples
    --------
    >>> import torch.nn.functional as F
    >>> net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    >>> bnet = tensorize(net, num_particles=3, min_features=1000)
    >>> x, y = torch.randn(5, 64), torch.tensor([0, 1, 2, 3, 4])
    >>> bnet(x).shape, bnet.particle_outputs(x).shape
    (torch.Size([5, 10]), torch.Size([3, 5, 10]))
    >>> F.cross_entropy(bnet(x), y).ndim
    0
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected an nn.Module, got {type(model).__name__}")
    choice("format", format, LINEAR_FORMATS)
    choice("init", init, INITS)
    max_rank = rank_value("max_rank", max_rank)
    conv_rank = max_rank if conv_rank is None else rank_value("conv_rank", conv_rank)
    num_particles = positive_int("num_particles", num_particles)
    num_modes = None if num_modes is None else positive_int("num_modes", num_modes)
    min_features = positive_int("min_features", min_features)
    seed = seed_value(seed)
    max_params = max_params_arg(max_params)
    choice("reduce", reduce, REDUCTIONS)
    if layers is not None and not callable(layers):
        layers = list(layers)
        names = dict(model.named_modules())
        for n in layers:
            if n not in names:
                raise ValueError(f"layers: no module named {n!r} in the model")
            if not isinstance(names[n], (nn.Linear, nn.Conv2d)):
                raise ValueError(f"layers: {n!r} is a {type(names[n]).__name__}, expected "
                                 f"nn.Linear or nn.Conv2d")
    net = copy.deepcopy(model)
    targets = [(n, m) for n, m in net.named_modules()
               if isinstance(m, (nn.Linear, nn.Conv2d)) and _is_target(n, m, layers, min_features)]
    if not targets:
        raise ValueError("layers: no nn.Linear/nn.Conv2d layer selected for tensorization")
    _check_budget(targets, format, max_rank, conv_rank, num_modes, num_particles, max_params,
                  init)
    for k, (name, m) in enumerate(targets):
        layer_seed = (seed + k) % (MAX_SEED + 1)
        if isinstance(m, nn.Linear):
            new = TensorizedLinear.from_linear(m, format, max_rank, prior, prior_params,
                                               num_modes=num_modes, num_particles=num_particles,
                                               init=init, seed=layer_seed, max_params=max_params)
        else:
            new = TensorizedConv2d.from_conv(m, conv_rank, prior, prior_params,
                                             num_particles=num_particles, init=init,
                                             seed=layer_seed, max_params=max_params)
        _set_module(net, name, new)
    return BayesianNet(net, reduce)


def compression_table(net: nn.Module) -> dict:
    """Parameter counts: per compressed layer and for the whole model.

    Works on a :class:`BayesianNet`'s inner network (per particle) and on exported modules.
    Returns ``{"layers": [...], "linear_ratio", "model_ratio", "dense_params",
    "compressed_params"}``; ``linear_ratio`` covers the tensorized layers only.
    """
    rows = []
    own = set()
    for name, m in net.named_modules():
        if not isinstance(m, (_BayesLowRank, CompressedLinear, CompressedConv2d)):
            continue
        dense, comp = m.dense_params(), m.n_params()
        fmt = "tucker2" if isinstance(m, (TensorizedConv2d, CompressedConv2d)) else m.fmt
        own |= {id(p) for p in m.parameters()}
        rows.append({"name": name, "format": fmt, "ranks": list(m.ranks),
                     "dense_params": int(dense), "compressed_params": int(comp),
                     "ratio": dense / comp})
    other = sum(p.numel() for p in net.parameters() if id(p) not in own)
    dense_l = sum(r["dense_params"] for r in rows)
    comp_l = sum(r["compressed_params"] for r in rows)
    return {"layers": rows, "linear_ratio": dense_l / max(comp_l, 1),
            "model_ratio": (dense_l + other) / max(comp_l + other, 1),
            "dense_params": int(dense_l + other), "compressed_params": int(comp_l + other)}


def save_exported(module: nn.Module, path, config: dict | None = None):
    """Save an exported module: its tensors, its compressed layers' configs and ``config``.

    Parameters
    ----------
    module : nn.Module
        An exported network (see :meth:`BayesianNet.export`).
    path : str or path-like
        Destination file (written atomically).
    config : dict, optional
        Extra plain values (numbers, strings, lists, dicts) stored beside the weights.
    """
    layers = {n: m.config() for n, m in module.named_modules()
              if isinstance(m, (CompressedLinear, CompressedConv2d))}
    save_tensors(path, {"state_dict": dict(module.state_dict()), "layers": layers,
                        "config": config or {}})


def load_exported(path, skeleton: nn.Module) -> nn.Module:
    """Load :func:`save_exported` output into a copy of the dense ``skeleton`` architecture.

    Only tensors and plain values are read (no code in the file runs).

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save_exported`.
    skeleton : nn.Module
        The dense network the model was exported from (or one of the same architecture); it
        is left unchanged.

    Returns
    -------
    nn.Module
        A copy of ``skeleton`` whose saved layers are replaced by empty
        :class:`CompressedLinear` / :class:`CompressedConv2d` layers built from their
        configs, with the saved state dict loaded. The extra ``config`` stored beside the
        weights is not returned.

    Raises
    ------
    ValueError
        When the file is missing, holds anything but tensors and plain values, or does not
        fit ``skeleton``.
    """
    blob = load_tensors(path, what="model file")
    if not (isinstance(blob, dict) and isinstance(blob.get("layers"), dict)
            and isinstance(blob.get("state_dict"), dict)):
        raise ValueError(f"model file: {str(path)!r} was not written by save_exported")
    net = copy.deepcopy(skeleton)
    try:
        for name, cfg in blob["layers"].items():
            _set_module(net, name, build_compressed(cfg))
        net.load_state_dict(blob["state_dict"])
    except (AttributeError, KeyError, TypeError, RuntimeError) as err:
        raise ValueError(f"skeleton: does not fit the model in {str(path)!r} ({err})") from None
    return net

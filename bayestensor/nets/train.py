"""Training loops for Bayesian tensorized networks: MAP, VI, SVGD and SGHMC.

All methods minimize or sample the same posterior over the tensorized layers' parameters
(cores/factors, slice log-scales ``u`` and biases), with the mini-batch log-likelihood scaled
by ``N / B``::

    log p(theta | D) ~= (N / B) sum_{i in batch} log p(y_i | x_i, theta) + w log prior(theta)

(``w`` = ``prior_weight``, 1 for the Bayes posterior).

``"map"``    Adam on ``-log p / N`` (the mean cross-entropy plus the prior as a penalty),
             cosine-decayed learning rate. Every particle is an independent MAP fit.
``"vi"``     mean-field Gaussian on the low-rank parameters (reparameterized draws, analytic
             entropy); slice scales and biases are point estimates (type-II MAP).
``"svgd"``   Stein variational gradient descent over the particle dim:
             :func:`bayestensor.infer.kernels.svgd_direction` on the flattened parameters of
             all particles (RBF kernel, median bandwidth), applied with Adam. At
             ``svgd_prune_at`` of the steps the ensemble is pruned to the slices most of its
             particles keep (``svgd_prune``, :meth:`BayesianNet.prune`) and SVGD goes on
             over the kept slices: a particle that lost slices it used re-fits the rest.
             Pruned only at the end, such an ensemble is under-confident (measured on the
             LeNet-5 benchmark, medians of 3 seeds: NLL 0.133 and ECE 0.076 against 0.078 /
             0.026 with the last quarter of the epochs spent after the prune).
``"sghmc"``  a MAP warm-up (``burnin`` fraction of the epochs) and then SGHMC chains (one per
             particle) in the SGD-with-momentum form of Chen, Fox & Guestrin (2014), applied
             per parameter tensor by :func:`bayestensor.infer.sghmc.sghmc_update` (the update
             :class:`bayestensor.infer.sghmc.SGHMC` uses)::

                 v     <- (1 - alpha) v + eta * grad log p(theta) + N(0, 2 alpha eta T)
                 theta <- theta + v

             with ``eta = lr / N`` (``lr`` is the per-datum step), ``alpha = friction``, noise
             per element from a generator seeded by ``seed`` and no gradient-noise correction
             (``beta_hat = 0``). The mass is 1 except where the prior alone is too stiff for
             the step: entries whose prior variance ``v`` is below ``eta / c`` get the diagonal
             preconditioner ``c v / eta`` (``c`` = :data:`PRECONDITIONER_BOUND` = 0.5; fixed for
             the whole sampling phase, so the stationary law is unchanged). Tucker-core entries
             carry the product of four slice variances and need it.
             Snapshots are collected evenly over the sampling phase. The slices the warm-up
             switched off are pruned before sampling (``sghmc_prune``), and a slice kept
             for one chain but collapsed in another is frozen in the latter: a slice whose
             prior variance sits at the floor makes the potential so stiff (curvature
             ``1 / v``) that a step tuned for the live slices diverges (measured: Tucker on
             MNIST diverged three steps into sampling). Each chain thus samples within the
             slices its warm-up kept.

Layers that are not tensorized are shared point estimates trained by Adam in every method.
"""

from __future__ import annotations

import math
import time
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from bayestensor.checks import choice, positive_int
from bayestensor.infer.driver import RunInterrupted
from bayestensor.infer.kernels import BlockLayout, get_kernel, svgd_direction
from bayestensor.infer.sghmc import sghmc_update
from bayestensor.nets.convert import BayesianNet
from bayestensor.checks import real_number, seed_value
from bayestensor.nets.layers import PRUNE_THRESHOLD
from bayestensor.seeds import derive_seed, rng

METHODS = ("map", "vi", "svgd", "sghmc")
#: Default training epochs of :func:`fit_net`.
EPOCHS = 20
#: Share of the SVGD steps after which the ensemble is pruned and SVGD continues.
SVGD_PRUNE_AT = 0.75
#: Default per-datum SGHMC step. Chosen on validation splits of mnist10k (10% of the training
#: digits, 3 seeds x TT-matrix, CP, Tucker MLPs, ``benchmarks/nets_mnist.py --sghmc-settings
#: validation``): among the untempered settings with half the epochs of warm-up, 0.001 had the
#: lowest mean excess over each run's best validation NLL (0.009, against 0.010 at 0.005 and
#: 0.017 at 0.02, the former default, whose discretization spread the chains wider than the
#: posterior: validation ECE 0.034 against 0.019).
SGHMC_LR = 1e-3
#: Default share of the epochs in SGHMC's MAP warm-up (``burnin=None``), chosen by the same
#: validation scores with the step: among the untempered settings at step 0.001, warm-ups of
#: 0.5 / 0.75 / 0.9 of the epochs had mean excess validation NLL 0.0087 / 0.0083 / 0.0047 over
#: the 9 validated runs. TT-matrix MLPs need it most: after half of 40 epochs their chains are
#: not yet trained, and sampling does not finish the training.
BURNIN = 0.9
#: Bound ``c`` on ``eta P / v`` for stiff low-rank entries: SGHMC's momentum step is stable for
#: ``eta P / v`` well below 1, and 0.5 leaves room for the likelihood's curvature.
PRECONDITIONER_BOUND = 0.5


def _check_data(x, y, where: str = "example {}"):
    """``x, y`` as training data; ``where`` names row ``{}`` of ``x`` in errors."""
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ValueError("x: expected torch tensors for x and y")
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"x: expected a batch of at least one example, got shape {tuple(x.shape)}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        row = int((~torch.isfinite(x)).reshape(x.shape[0], -1).any(1).nonzero()[0])
        raise ValueError(f"x: {where.format(row)} holds NaN or infinite values; remove or "
                         f"impute them before training")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y: expected {x.shape[0]} labels (1-D), got shape {tuple(y.shape)}")
    if y.dtype == torch.bool or y.dtype.is_floating_point or y.dtype.is_complex:
        raise ValueError(f"y: expected integer class labels, got dtype {y.dtype}")


def _check_label_range(y, num_classes):
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"y: class labels must lie in [0, {num_classes}) (the network's output "
                         f"width), got labels from {lo} to {hi}")


def _check_schedule(epochs, batch_size, lr, seed):
    positive_int("epochs", epochs)
    positive_int("batch_size", batch_size)
    real_number("lr", lr)
    seed_value(seed)


@torch.no_grad()
def _output_width(model: nn.Module, x: torch.Tensor) -> int:
    """Number of classes a model scores: its output width on one example (in eval mode, so
    batch statistics and running averages are left alone)."""
    was = model.training
    model.eval()
    try:
        out = model(x[:1])
    finally:
        model.train(was)
    return int(out.shape[-1])


def _batches(n, batch_size, gen):
    perm = torch.randperm(n, generator=gen)
    return [perm[i:i + batch_size] for i in range(0, n, batch_size)]


class TrainingData:
    """Training batches from tensors ``x, y`` (reshuffled every epoch by a generator seeded
    with ``seed``, ``batch_size`` examples each) or from a ``DataLoader`` of ``(inputs,
    labels)`` pairs (its own batches and order; ``y`` must then be ``None``).

    ``num_data`` is the number of training examples (``N`` of the ``N / B`` likelihood scale)
    and ``steps_per_epoch`` the batches per epoch. The labels are checked against
    ``num_classes`` (the model's output width): all at once for tensors, batch by batch for a
    loader (its first batch before any training).
    """

    def __init__(self, x, y, batch_size: int, seed: int):
        self.loader = x if isinstance(x, DataLoader) else None
        self.num_classes = None
        if self.loader is None:
            _check_data(x, y)
            self.x, self.y = x, y
            self.num_data = x.shape[0]
            self.batch_size = positive_int("batch_size", batch_size)
            self.steps_per_epoch = math.ceil(self.num_data / self.batch_size)
            self.first = (x, y)
        else:
            if y is not None:
                raise ValueError("y: a DataLoader yields the labels itself; pass y=None")
            try:
                self.num_data, self.steps_per_epoch = len(x.dataset), len(x)
            except TypeError:
                raise ValueError("x: expected a DataLoader over a dataset with a length "
                                 "(the likelihood is scaled by the number of examples)") from None
            if self.steps_per_epoch < 1:
                raise ValueError("x: the DataLoader yields no batch")
            self.first = self._pair(next(iter(x)))
        self.gen = rng(seed)

    def check_labels(self, model: nn.Module):
        """Check the (first) labels against the output width of ``model``."""
        self.num_classes = _output_width(model, self.first[0])
        _check_label_range(self.first[1], self.num_classes)

    @staticmethod
    def _pair(batch):
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError(f"x: expected the DataLoader to yield (inputs, labels) pairs, got "
                             f"{type(batch).__name__}")
        _check_data(batch[0], batch[1], where="row {} of a DataLoader batch")
        return batch[0], batch[1]

    def epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches ``(x, y)`` of one epoch."""
        if self.loader is None:
            for idx in _batches(self.num_data, self.batch_size, self.gen):
                yield self.x[idx], self.y[idx]
            return
        for batch in self.loader:
            xb, yb = self._pair(batch)
            if self.num_classes is not None:
                _check_label_range(yb, self.num_classes)
            yield xb, yb


def progress_bar(total: int, desc: str, progress: bool | None):
    """A tqdm bar on stderr; ``progress=None`` shows it only when stderr is a terminal."""
    return tqdm(total=total, desc=desc, disable=None if progress is None else not progress,
                leave=False, unit="step")


def particle_nll(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per particle, ``(P,)`` from logits ``(P, B, C)``."""
    p, b, c = logits.shape
    return F.cross_entropy(logits.reshape(-1, c), y.repeat(p), reduction="none").view(p, b).mean(1)


def train_dense(model: nn.Module, x, y=None, epochs: int = 10, batch_size: int = 128,
                lr: float = 1e-3, weight_decay: float = 0.0, seed: int = 0,
                progress: bool | None = None) -> dict:
    """Baseline: Adam with cosine decay on the mean cross-entropy of a plain network.

    The optimizer, schedule and batches are those of :func:`fit_net`'s MAP, so that a dense
    baseline and a tensorized network given the same ``epochs``, ``batch_size``, ``lr`` and
    ``seed`` get the same training budget. ``x`` may be a ``DataLoader`` (then ``y=None``);
    ``progress`` as in :func:`fit_net`.

    Parameters
    ----------
    model : nn.Module
        A classifier returning logits ``(B, C)``; trained in place and left in eval mode.
    x : tensor or DataLoader
        Training inputs ``(N, ...)``, or a ``torch.utils.data.DataLoader`` yielding
        ``(inputs, labels)`` batches (its batches then replace ``batch_size``).
    y : tensor, optional
        Integer labels ``(N,)`` in ``[0, C)``, ``C`` the model's output width; ``None`` with a
        ``DataLoader``.
    epochs, batch_size : int
        Passes over the data and examples per batch (defaults 10 and 128).
    lr : float
        Adam learning rate at the start of the cosine schedule (default 1e-3).
    weight_decay : float
        Adam's L2 weight decay (>= 0, default 0).
    seed : int
        Seeds the batch order and ``torch.manual_seed``.
    progress : bool or None
        Progress bar on stderr; ``None`` (default) shows it when stderr is a terminal.

    Returns
    -------
    dict
        ``{"loss": per-step mean cross-entropy, "seconds": wall time}``.

    Raises
    ------
    ValueError
        Naming the argument, before any training, for a bad argument: ``model`` not an
        ``nn.Module``, a non-positive ``epochs`` / ``batch_size`` / ``lr``, a negative
        ``weight_decay``, a seed outside ``[0, 2**63 - 1]``, labels that are not integers in
        ``[0, C)``.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected an nn.Module, got {type(model).__name__}")
    _check_schedule(epochs, batch_size, lr, seed)
    real_number("weight_decay", weight_decay, low_open=False)
    data = TrainingData(x, y, batch_size, seed)
    data.check_labels(model)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * data.steps_per_epoch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    t0, losses = time.perf_counter(), []
    model.train()
    with progress_bar(steps, "dense", progress) as bar:
        for _ in range(epochs):
            for xb, yb in data.epoch():
                loss = F.cross_entropy(model(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
                bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.3g}")
    model.eval()
    return {"loss": losses, "seconds": time.perf_counter() - t0}


@torch.no_grad()
def predict_dense(model: nn.Module, x, batch_size: int = 1000) -> torch.Tensor:
    """Softmax probabilities of a plain network.

    Puts ``model`` in eval mode (and leaves it there) and runs without gradients.

    Parameters
    ----------
    model : nn.Module
        A classifier returning logits ``(B, C)``.
    x : torch.Tensor
        Inputs ``(N, ...)``.
    batch_size : int
        Examples per forward pass (default 1000).

    Returns
    -------
    torch.Tensor
        ``(N, C)`` probabilities, the softmax over the last dim.
    """
    model.eval()
    return torch.cat([model(x[i:i + batch_size]).softmax(-1) for i in range(0, x.shape[0], batch_size)])


def _prior_preconditioner(bnet: BayesianNet, eta: float,
                          prior_weight: float) -> list[torch.Tensor]:
    """Diagonal SGHMC preconditioner aligned with ``bnet.particle_params()``: ``min(1, c v /
    (w eta))`` for low-rank entries of prior variance ``v`` under a prior of weight ``w`` (so
    the prior's curvature times the step, ``eta P w / v``, is at most ``c``), 1 elsewhere."""
    bound = PRECONDITIONER_BOUND / (prior_weight * eta)
    out = []
    for layer in bnet.tensorized().values():
        variances = layer.prior_variances()
        out += [(bound * v).clamp(max=1.0).expand_as(f).detach()
                for v, f in zip(variances, layer.factors)]
        out += [torch.ones_like(u) for u in layer.log_scales]
        if layer.particle_bias is not None:
            out.append(torch.ones_like(layer.particle_bias))
    return out


def _sghmc_start(bnet: BayesianNet, eta: float, prior_weight: float, prune: float | None,
                 gen: torch.Generator):
    """Parameters, live masks, preconditioner and initial velocities ``N(0, eta P)``."""
    pp = bnet.particle_params()
    live = bnet.live_masks(prune) if prune is not None else \
        [torch.ones_like(p, dtype=torch.bool) for p in pp]
    precond = _prior_preconditioner(bnet, eta, prior_weight)
    velocity = [torch.randn(p.shape, generator=gen, dtype=p.dtype, device=p.device)
                * (eta * c).sqrt() * m for p, m, c in zip(pp, live, precond)]
    return pp, live, precond, velocity


@torch.no_grad()
def _sghmc_step(params, velocity, live, precond, *, lr, friction, temperature, gen):
    """One SGHMC update of every parameter tensor in place, from the gradients of
    ``U = -log p`` in ``.grad``; returns the new velocities, zero outside the live masks."""
    out = []
    for p, v, m, c in zip(params, velocity, live, precond):
        _, v = sghmc_update(p, v, -p.grad, lr=lr, friction=friction, precond=c,
                            temperature=temperature, generator=gen)
        v = v * m
        p.add_(v)
        out.append(v)
    return out


def _adam(bnet: BayesianNet, lr: float, scale_lr: float, steps: int, start: int = 0,
          previous: torch.optim.Optimizer | None = None):
    """Adam over ``bnet``'s parameters with a cosine decay to 0 over ``steps``, at step
    ``start`` of it; the state of the parameters ``previous`` also held carries over."""
    # slice log-scales move in log space: a larger step lets collapsed slices reach the floor
    scale_ids = {id(u) for m in bnet.tensorized().values() for u in m.log_scales}
    opt = torch.optim.Adam([
        {"params": [p for p in bnet.parameters() if id(p) not in scale_ids], "lr": lr},
        {"params": [p for p in bnet.parameters() if id(p) in scale_ids], "lr": scale_lr * lr}])
    if previous is not None:
        for p in bnet.parameters():
            if p in previous.state:
                opt.state[p] = previous.state[p]
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k + start, steps) / steps)))
    return opt, sched


def warmup_steps(burnin: float | None, epochs: int, steps_per_epoch: int) -> int:
    """Steps of SGHMC's MAP warm-up: ``burnin`` of the epochs (rounded), at least one step
    unless ``burnin`` is 0 (then the chains start from the network as given, e.g. from a
    warm-up already run). ``None``: :data:`BURNIN` of the epochs, rounded, but at most all of
    them but one, so that a short run still samples for an epoch."""
    if burnin is None:
        return max(1, min(int(round(BURNIN * epochs)), epochs - 1) * steps_per_epoch)
    return 0 if burnin == 0 else max(1, int(round(burnin * epochs)) * steps_per_epoch)


def _one_block(pp) -> BlockLayout:
    """SVGD's kernel over all of a particle's parameters ``pp`` as one block."""
    return BlockLayout(torch.zeros(sum(p[0].numel() for p in pp), dtype=torch.long),
                       device=pp[0].device)


def _svgd_step(pp, shared, num_data, kern, layout):
    """Set the gradients of ``pp`` to minus the SVGD direction and scale the shared layers'.

    On entry ``.grad`` holds the gradients of ``-log p`` (summed over particles); on exit
    both are per datum (divided by ``num_data``), the shared layers' also per particle."""
    num_particles = pp[0].shape[0]
    xs = torch.cat([p.detach().reshape(num_particles, -1) for p in pp], 1)
    gs = torch.cat([-p.grad.reshape(num_particles, -1) for p in pp], 1)
    phi, _ = svgd_direction(xs, gs, kern, layout)
    off = 0
    for p in pp:
        k = p[0].numel()
        p.grad = -phi[:, off:off + k].reshape(p.shape) / num_data
        off += k
    for p in shared:
        if p.grad is not None:
            p.grad /= num_data * num_particles


def _check_particles(bnet, method):
    p = bnet.num_particles
    if method == "svgd" and p < 2:
        raise ValueError(f"num_particles: SVGD needs at least 2 particles, got {p} (set "
                         f"tensorize(num_particles=...))")
    if method == "vi" and not bnet.is_variational() and p != 1:
        raise ValueError(f"num_particles: VI needs a single particle, got {p} (set "
                         f"tensorize(num_particles=1); num_draws sets the draws per step)")


def _check_fit_args(bnet, x, y, method, epochs, batch_size, lr, seed, num_draws, kernel,
                    sghmc_lr, friction, burnin, num_samples, temperature, scale_lr,
                    sghmc_prune, svgd_prune, svgd_prune_at, prior_weight) -> TrainingData:
    choice("method", method, METHODS)
    if not isinstance(bnet, BayesianNet):
        raise ValueError(f"bnet: expected a BayesianNet (see tensorize), got {type(bnet).__name__}")
    _check_schedule(epochs, batch_size, lr, seed)
    positive_int("num_draws", num_draws)
    positive_int("num_samples", num_samples)
    get_kernel(kernel)
    real_number("sghmc_lr", sghmc_lr)
    real_number("friction", friction, high=1.0)
    if burnin is not None:
        real_number("burnin", burnin, high=1.0, low_open=False, high_open=True)
    real_number("temperature", temperature, low_open=False)
    real_number("scale_lr", scale_lr)
    real_number("prior_weight", prior_weight)
    if sghmc_prune is not None:
        real_number("sghmc_prune", sghmc_prune, high=1.0, low_open=False, high_open=True)
    if svgd_prune is not None:
        real_number("svgd_prune", svgd_prune, high=1.0, low_open=False, high_open=True)
    real_number("svgd_prune_at", svgd_prune_at, high=1.0, high_open=True)
    _check_particles(bnet, method)
    data = TrainingData(x, y, batch_size, seed)
    data.check_labels(bnet)
    total = epochs * data.steps_per_epoch
    warm = warmup_steps(burnin, epochs, data.steps_per_epoch)
    if method == "sghmc" and warm >= total:
        given = (f"{burnin}" if burnin is not None
                 else f"None (the default: {BURNIN}, at most all epochs but one)")
        raise ValueError(f"burnin: {given} makes a warm-up of {warm} of the run's {total} "
                         f"steps ({epochs} epochs of {data.steps_per_epoch}), leaving none to "
                         f"sample; give more epochs, a smaller batch_size or a smaller burnin")
    return data


def fit_net(bnet: BayesianNet, x, y: torch.Tensor | None = None, method: str = "map",
            epochs: int = EPOCHS, batch_size: int = 128, lr: float = 1e-2, seed: int = 0,
            num_draws: int = 4, kernel: str = "rbf", sghmc_lr: float = SGHMC_LR,
            friction: float = 0.1, burnin: float | None = None, num_samples: int = 10,
            temperature: float = 1.0, scale_lr: float = 10.0,
            sghmc_prune: float | None = PRUNE_THRESHOLD,
            svgd_prune: float | None = PRUNE_THRESHOLD, svgd_prune_at: float = SVGD_PRUNE_AT,
            prior_weight: float = 1.0, progress: bool | None = None) -> dict:
    """Train or sample a :class:`BayesianNet` in place.

    Parameters
    ----------
    bnet : BayesianNet
    x : tensor or DataLoader
        Training inputs ``(N, ...)``, or a ``torch.utils.data.DataLoader`` yielding
        ``(inputs, labels)`` batches (then ``y=None`` and the loader's batches replace
        ``batch_size``; ``N`` is the length of its dataset).
    y : tensor, optional
        Integer labels ``(N,)`` in ``[0, C)``, ``C`` the network's output width.
    method : {"map", "vi", "svgd", "sghmc"}
        ``"svgd"`` needs at least 2 particles, ``"vi"`` one (``tensorize(num_particles=...)``).
    epochs, batch_size : int
    lr : float
        Adam learning rate (MAP, VI, SVGD, the SGHMC warm-up and shared layers).
    seed : int
    num_draws : int
        VI draws per step.
    kernel : {"rbf", "imq"}
        SVGD kernel.
    sghmc_lr, friction, burnin, num_samples, temperature
        SGHMC per-datum step ``lr`` (``eta = lr / N``; default :data:`SGHMC_LR`, 1e-3,
        chosen on validation splits), friction ``alpha``, fraction of the epochs spent in the
        MAP warm-up (``0``: sample from the network as given, for all ``epochs``; ``None``,
        the default: :data:`BURNIN`, 0.9, chosen on the same splits, leaving at least one
        epoch to sample), snapshots kept, and posterior temperature (noise variance times
        ``T``).
        :func:`~bayestensor.nets.calibration.choose_sghmc_settings` chooses the step, the
        temperature and the warm-up on a validation split.
    scale_lr : float
        Learning-rate multiplier of the slice log-scales ``u``.
    sghmc_prune : float or None
        SGHMC only: prune threshold (see :meth:`BayesianNet.prune`) applied once, at the end of
        the warm-up; ``None`` samples every slice.
    svgd_prune : float or None
        SVGD only: prune threshold applied once, after ``svgd_prune_at`` (in (0, 1)) of the
        steps, with the shared slice mask; SVGD then continues on the kept slices. ``None``
        keeps every slice during training.
    svgd_prune_at : float
        Share of the SVGD steps before that prune (default :data:`SVGD_PRUNE_AT`).
    prior_weight : float
        Weight ``w > 0`` of the log prior in every method's objective: ``log p(D | theta) + w
        log p(theta)``, the likelihood counted ``1 / w`` times against the prior (under VI the
        prior terms of the ELBO, the entropy with them). ``1`` is the Bayes posterior; a
        smaller weight shrinks less (sharper predictions, less pruning).
        :func:`~bayestensor.nets.calibration.choose_prior_weight` chooses it on a validation
        split.
    progress : bool or None
        Progress bar on stderr; ``None`` (default) shows it when stderr is a terminal.

    Returns
    -------
    dict
        ``{"loss": per-step loss, "seconds": wall time, "method": method}``.

    Raises
    ------
    ValueError
        Naming the argument, before any training, for a bad argument: a number given as a
        string, out of range or beyond float32 (``lr=1e39``), a seed outside
        ``[0, 2**63 - 1]``, labels that are not integers in ``[0, C)``, SVGD with one particle.
    RunInterrupted
        On Ctrl-C (or SIGTERM under the command line): the network keeps the weights it had
        reached (and SGHMC's snapshots so far), in evaluation mode, ready to predict.
    """
    data = _check_fit_args(bnet, x, y, method, epochs, batch_size, lr, seed, num_draws, kernel,
                           sghmc_lr, friction, burnin, num_samples, temperature, scale_lr,
                           sghmc_prune, svgd_prune, svgd_prune_at, prior_weight)
    torch.manual_seed(seed)
    n = data.num_data
    if method == "vi":
        for m in bnet.tensorized().values():
            if not m.variational:
                m.make_variational(num_draws)
    bnet.samples = []
    steps_per_epoch = data.steps_per_epoch
    total = epochs * steps_per_epoch
    adam_steps = total if method != "sghmc" else warmup_steps(burnin, epochs, steps_per_epoch)
    opt, sched = _adam(bnet, lr, scale_lr, max(adam_steps, 1))
    svgd_prune_step = (int(svgd_prune_at * total) if method == "svgd" and svgd_prune is not None
                       else None)
    shared = bnet.shared_params()
    shared_opt = torch.optim.Adam(shared, lr=lr) if shared else None
    pp = bnet.particle_params()
    layout = kern = None
    if method == "svgd":
        layout = _one_block(pp)
        kern = get_kernel(kernel)
    eta = sghmc_lr / n
    noise_gen = None
    velocity = None
    sample_every = None
    history = {"loss": [], "method": method}
    t0 = time.perf_counter()
    bnet.train()
    step = 0
    bar = progress_bar(total, f"fit_net {method}", progress)
    try:
        for _ in range(epochs):
            for xb, yb in data.epoch():
                if step == svgd_prune_step:  # the shapes change: new optimizer over the kept slices
                    bnet.prune(svgd_prune)
                    opt, sched = _adam(bnet, lr, scale_lr, adam_steps, step, opt)
                    pp = bnet.particle_params()
                    layout = _one_block(pp)
                nll = particle_nll(bnet.particle_outputs(xb), yb)        # (P,)
                lp = prior_weight * bnet.log_prior()                     # (P,)
                loss_p = nll - lp / n                                    # (P,) per-datum scale
                sampling = method == "sghmc" and step >= adam_steps
                if method == "svgd":
                    bnet.zero_grad()
                    (loss_p.sum() * n).backward()                    # grad of -log p per particle
                    _svgd_step(pp, shared, n, kern, layout)
                    opt.step()
                    sched.step()
                elif sampling:
                    if velocity is None:
                        if sghmc_prune is not None:  # the shapes change: recompute this batch
                            bnet.prune(sghmc_prune)
                            loss_p = particle_nll(bnet.particle_outputs(xb), yb) \
                                - prior_weight * bnet.log_prior() / n
                        noise_gen = torch.Generator(device=loss_p.device).manual_seed(
                            derive_seed(seed, "sghmc"))
                        pp, live, precond, velocity = _sghmc_start(bnet, eta, prior_weight,
                                                                   sghmc_prune, noise_gen)
                        sample_every = max(1, (total - step) // num_samples)
                    bnet.zero_grad()
                    (loss_p.sum() * n).backward()                        # U = -log p
                    velocity = _sghmc_step(pp, velocity, live, precond, lr=eta, friction=friction,
                                           temperature=temperature, gen=noise_gen)
                    if shared_opt is not None:
                        shared_opt.step()
                    if (total - 1 - step) % sample_every == 0:
                        bnet.samples.append(bnet.snapshot())
                else:
                    opt.zero_grad()
                    loss_p.sum().backward()
                    opt.step()
                    sched.step()
                if not torch.isfinite(loss_p).all():
                    bar.close()
                    raise FloatingPointError(f"{method}: loss became non-finite at step {step}")
                history["loss"].append(float(loss_p.detach().mean()))
                step += 1
                bar.update()
            bar.set_postfix(loss=f"{history['loss'][-1]:.3g}")
    except KeyboardInterrupt:
        _finish(bnet, method, num_samples, bar, history, t0)
        kept = f" and {len(bnet.samples)} SGHMC snapshots" if method == "sghmc" else ""
        raise RunInterrupted(f"fit_net {method}: interrupted at step {step} of {total}; the "
                             f"network holds the weights reached{kept}") from None
    _finish(bnet, method, num_samples, bar, history, t0)
    return history


def _finish(bnet: BayesianNet, method: str, num_samples: int, bar, history: dict,
            t0: float) -> None:
    """End of training, or where it was interrupted: the last ``num_samples`` SGHMC
    snapshots kept, the network in evaluation mode, the seconds recorded."""
    bar.close()
    bnet.samples = bnet.samples[-num_samples:] if method == "sghmc" else []
    bnet.eval()
    history["seconds"] = time.perf_counter() - t0

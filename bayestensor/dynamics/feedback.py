r"""Feedback alignment as a reusable PyTorch piece, and FA-style training of CP / TT tensors.

:class:`FeedbackAlignmentFunction` is a linear map ``y = x W^T + b`` whose backward pass sends
the error to the input through a fixed feedback matrix ``B`` (same shape as ``W``) instead of
``W`` (Lillicrap et al. 2016)::

    grad_x = grad_y @ B          (backprop would use grad_y @ W)
    grad_W = grad_y^T @ x        (the true gradient: the layer's own weights learn normally)
    grad_b = sum(grad_y)

:class:`FALinear` wraps it as an ``nn.Module`` (a drop-in ``nn.Linear``), so any network built
from it trains by FA with an ordinary optimizer. :func:`fa_matmul` is the same for ``Z @ W``:
with the loss ``0.5 ||Z W - Y||^2`` and plain SGD it reproduces the hand-written FA updates of
:mod:`bayestensor.dynamics.factorization` (``Z += lr (Y - ZW) B^T``, ``W += lr Z^T (Y - ZW)``).

FA for tensor formats (:func:`fa_gradients`, :func:`train_decomposition`). Read a CP or TT
tensor as a chain whose mode order is the layer order: factor (core) ``k`` receives forward
"activations" from factors ``< k`` and error feedback from factors ``> k``. Its FA update is the
true gradient with every later factor replaced by a fixed random feedback tensor of the same
shape::

    grad_k^FA = d/dP_k < G, X(P_1, ..., P_k, F_{k+1}, ..., F_N) >,   G = dL/dX (at the true X)

The last factor keeps its exact gradient. For two factors this is exactly matrix FA (CP:
``X = A_1 A_2^T``, ``Z = A_1``, ``W = A_2^T``, ``B = F_2^T``; TT: ``Z = G_1``, ``W = G_2``).
Because ``X`` is multilinear in the factors, all ``N`` FA gradients come from one backward pass
through ``sum_k <G, X_k>``, where ``X_k`` uses the detached true factors before ``k``, the live
factor ``k`` and the feedback after ``k``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from bayestensor.formats import CPTensor, TTTensor
from bayestensor import checks as _checks
from bayestensor.seeds import derive_seed, rng
from bayestensor.dynamics.factorization import record_schedule


class FeedbackAlignmentFunction(torch.autograd.Function):
    """``y = x W^T + b`` with the backward pass to ``x`` through the fixed feedback ``B``.

    ``forward(ctx, x, weight, feedback, bias=None)``: ``x`` is ``(..., in)``, ``weight`` and
    ``feedback`` are ``(out, in)``, ``bias`` is ``(out,)`` or ``None``. The feedback receives no
    gradient.
    """

    @staticmethod
    def forward(ctx, x, weight, feedback, bias=None):
        """``x W^T + b``; saves what the FA backward needs.

        Parameters
        ----------
        ctx : torch.autograd.function.FunctionCtx
            Autograd context: receives ``x``, ``weight`` and ``feedback`` (saved tensors) and
            whether a bias was given, for :meth:`backward`.
        x : torch.Tensor
            Inputs ``(..., in)``.
        weight : torch.Tensor
            Weight ``(out, in)``.
        feedback : torch.Tensor
            Fixed feedback ``(out, in)``, used in place of ``weight`` by the backward pass.
        bias : torch.Tensor, optional
            Bias ``(out,)``.

        Returns
        -------
        torch.Tensor
            ``(..., out)``.
        """
        ctx.save_for_backward(x, weight, feedback)
        ctx.has_bias = bias is not None
        out = x.matmul(weight.transpose(-1, -2))
        if bias is not None:
            out = out + bias
        return out

    @staticmethod
    def backward(ctx, grad_out):
        """Input gradient through the feedback, weight and bias gradients exact.

        Parameters
        ----------
        ctx : torch.autograd.function.FunctionCtx
            The context :meth:`forward` filled (saved ``x``, ``weight``, ``feedback``; whether
            a bias was given), with autograd's ``needs_input_grad``.
        grad_out : torch.Tensor
            Gradient of the loss with respect to the output, ``(..., out)``.

        Returns
        -------
        tuple
            Gradients for ``(x, weight, feedback, bias)``: ``grad_out @ feedback`` ``(..., in)``,
            ``grad_out^T x`` summed over the leading dims ``(out, in)``, ``None`` (the feedback
            gets no gradient), and ``grad_out`` summed over the leading dims ``(out,)``. An
            entry is ``None`` where autograd needs no gradient (and for the bias when there is
            none).
        """
        x, weight, feedback = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_out.matmul(feedback)
        if ctx.needs_input_grad[1]:
            g2 = grad_out.reshape(-1, grad_out.shape[-1])
            x2 = x.reshape(-1, x.shape[-1])
            grad_w = g2.transpose(0, 1).matmul(x2)
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_b = grad_out.reshape(-1, grad_out.shape[-1]).sum(0)
        return grad_x, grad_w, None, grad_b


def fa_linear(x: torch.Tensor, weight: torch.Tensor, feedback: torch.Tensor,
              bias: torch.Tensor | None = None) -> torch.Tensor:
    """Functional FA linear map ``x W^T + b`` (backward to ``x`` through ``feedback``).

    Parameters
    ----------
    x : (..., in) tensor
    weight, feedback : (out, in) tensors
    bias : (out,) tensor, optional

    Raises
    ------
    ValueError
        When ``feedback`` does not have ``weight``'s shape or ``x`` does not end in ``in``.
    """
    if tuple(feedback.shape) != tuple(weight.shape):
        raise ValueError(f"feedback: expected the weight's shape {tuple(weight.shape)}, got "
                         f"{tuple(feedback.shape)}")
    if x.shape[-1] != weight.shape[-1]:
        raise ValueError(f"x: expected last dimension {weight.shape[-1]}, got {tuple(x.shape)}")
    return FeedbackAlignmentFunction.apply(x, weight, feedback.detach(), bias)


def fa_matmul(z: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Z @ W`` whose backward pass gives ``Z`` the FA signal ``grad @ B^T``.

    Parameters
    ----------
    z : (n, r) tensor
    w : (r, m) tensor
        Receives its true gradient ``Z^T grad``.
    b : (r, m) tensor
        Fixed feedback in place of ``W``.
    """
    if tuple(b.shape) != tuple(w.shape):
        raise ValueError(f"b: expected the shape of w {tuple(w.shape)}, got {tuple(b.shape)}")
    if z.shape[-1] != w.shape[0]:
        raise ValueError(f"z: expected last dimension {w.shape[0]}, got {tuple(z.shape)}")
    return fa_linear(z, w.transpose(0, 1), b.transpose(0, 1))


class FALinear(nn.Module):
    """A linear layer trained by feedback alignment: ``nn.Linear`` forward, FA backward.

    Parameters
    ----------
    in_features, out_features : int
        Sizes.
    bias : bool
        Learn an additive bias.
    feedback_scale : float, optional
        Entries of the fixed feedback are ``N(0, feedback_scale^2 / in_features)``; default
        ``1`` (the scale of a Kaiming-like forward init).
    seed : int
        Seeds the weight initialization and the feedback matrix.
    dtype : torch.dtype
        Parameter dtype.

    Attributes
    ----------
    weight : nn.Parameter
        ``(out_features, in_features)``.
    feedback : torch.Tensor
        Buffer of the same shape; never trained.

    Examples
    --------
    >>> net = nn.Sequential(FALinear(4, 8, seed=0), nn.Tanh(), FALinear(8, 1, seed=1))
    >>> net(torch.randn(5, 4)).shape
    torch.Size([5, 1])
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 feedback_scale: float | None = None, seed: int = 0, dtype=torch.float32):
        super().__init__()
        self.in_features = _checks.positive_int("in_features", in_features)
        self.out_features = _checks.positive_int("out_features", out_features)
        scale = 1.0 if feedback_scale is None else _checks.positive_float("feedback_scale",
                                                                           feedback_scale)
        gen = rng(_checks.seed_value(seed))
        bound = 1.0 / math.sqrt(self.in_features)
        w = (torch.rand(self.out_features, self.in_features, generator=gen, dtype=dtype) * 2 - 1) * bound
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.zeros(self.out_features, dtype=dtype)) if bias else None
        fb = torch.randn(self.out_features, self.in_features, generator=gen, dtype=dtype)
        self.register_buffer("feedback", fb * (scale / math.sqrt(self.in_features)))

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, feedback_scale: float | None = None,
                    seed: int = 0) -> "FALinear":
        """An FA layer with the weights of an existing ``nn.Linear`` and a fresh feedback.

        Parameters
        ----------
        linear : nn.Linear
            Source of the sizes, the dtype, and the weight and bias (copied; ``linear`` is
            left unchanged).
        feedback_scale : float, optional
            As in :class:`FALinear` (default ``1``).
        seed : int
            Seeds the feedback matrix, the same as :class:`FALinear` with these sizes, dtype
            and ``seed`` draws.

        Returns
        -------
        FALinear
            With a bias exactly when ``linear`` has one.
        """
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"linear: expected an nn.Linear, got {type(linear).__name__}")
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None,
                    feedback_scale=feedback_scale, seed=seed, dtype=linear.weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(linear.weight)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x W^T + b`` with the FA backward pass."""
        return fa_linear(x, self.weight, self.feedback, self.bias)

    def alignment(self) -> float:
        """Cosine between the forward weight and the feedback (rises during FA training)."""
        w, b = self.weight.detach(), self.feedback
        return float((w * b).sum() / (w.norm() * b.norm()).clamp_min(1e-300))

    def extra_repr(self) -> str:
        """Sizes, for ``repr``."""
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def train_factorization_autograd(y, rank: int, *, lr: float, steps: int, feedback,
                                 z0=None, w0=None, rule: str = "fa") -> tuple[torch.Tensor, torch.Tensor]:
    """Train ``Z W ≈ Y`` by ``torch.optim.SGD`` through :func:`fa_matmul` (or plain ``@``).

    The loss is ``0.5 ||Z W - Y||_F^2``, so with ``rule="fa"`` each SGD step is exactly the
    hand-written FA update; this is the autograd side of the agreement test.

    Parameters
    ----------
    y : (n, m) array
    rank : int
    lr : float
    steps : int
    feedback : (r, m) array
    z0, w0 : arrays, optional
        Starting factors (default zeros).
    rule : {"fa", "gd"}

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        Final ``Z`` and ``W`` (float64).
    """
    y = _checks.matrix("y", y)
    n, m = y.shape
    r = _checks.positive_int("rank", rank)
    lr = _checks.positive_float("lr", lr)
    steps = _checks.positive_int("steps", steps)
    rule = _checks.choice("rule", rule, ("fa", "gd"))
    b = _checks.matrix("feedback", feedback)
    if tuple(b.shape) != (r, m):
        raise ValueError(f"feedback: expected shape {(r, m)}, got {tuple(b.shape)}")
    z = nn.Parameter(torch.zeros(n, r, dtype=torch.float64) if z0 is None else _checks.matrix("z0", z0).clone())
    w = nn.Parameter(torch.zeros(r, m, dtype=torch.float64) if w0 is None else _checks.matrix("w0", w0).clone())
    opt = torch.optim.SGD([z, w], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        out = fa_matmul(z, w, b) if rule == "fa" else z @ w
        loss = 0.5 * (out - y).pow(2).sum()
        loss.backward()
        opt.step()
    return z.detach(), w.detach()


# --- tensor formats ---------------------------------------------------------------------------
DECOMP_FORMATS = {"cp": CPTensor, "tt": TTTensor}


def _format_cls(format):
    key = str(format).lower()
    if key not in DECOMP_FORMATS:
        raise ValueError(f"format: expected one of {tuple(DECOMP_FORMATS)}, got {format!r}")
    return DECOMP_FORMATS[key]


def fa_gradients(format: str, shape, params: list[torch.Tensor], feedback: list[torch.Tensor],
                 grad_output: torch.Tensor) -> list[torch.Tensor]:
    """FA update signals of every factor / core of a CP or TT tensor.

    Parameters
    ----------
    format : {"cp", "tt"}
    shape : tuple of int
        Tensor shape.
    params : list of tensors
        Current factors (CP) or cores (TT), in mode order.
    feedback : list of tensors
        Fixed feedback tensors, one per parameter (``feedback[0]`` is never used: the first
        factor has no earlier layer that would need it, and the last factor uses no feedback).
    grad_output : tensor
        ``dL/dX`` at the current reconstruction, the shape of the tensor.

    Returns
    -------
    list of tensors
        ``d/dP_k <G, X(P_1..P_k, F_{k+1}..F_N)>`` for each ``k`` (module docstring); the last
        entry is the exact gradient.
    """
    cls = _format_cls(format)
    if len(feedback) != len(params):
        raise ValueError(f"feedback: expected {len(params)} tensors, got {len(feedback)}")
    for k, (p, f) in enumerate(zip(params, feedback)):
        if tuple(p.shape) != tuple(f.shape):
            raise ValueError(f"feedback[{k}]: expected shape {tuple(p.shape)}, got {tuple(f.shape)}")
    live = [p.detach().clone().requires_grad_(True) for p in params]
    g = grad_output.detach()
    total = 0.0
    for k in range(len(params)):
        mixed = [p.detach() for p in params[:k]] + [live[k]] + [f.detach() for f in feedback[k + 1:]]
        total = total + (g * cls(shape, mixed).reconstruct()).sum()
    grads = torch.autograd.grad(total, live)
    return [gr.detach() for gr in grads]


@dataclass
class DecompositionRun:
    """A CP / TT tensor trained by GD or FA.

    Attributes
    ----------
    rule : str
        ``"gd"`` or ``"fa"``.
    tensor : LowRankTensor
        Final factors.
    feedback : list of tensors
        Feedback tensors (drawn for GD too, so runs with one seed share them).
    steps : np.ndarray
        Recorded step numbers.
    trajectory : dict
        ``error`` (relative Frobenius error) and ``alignment`` (cosine between the
        concatenated non-last factors and their feedback tensors) per recorded step.
    final : dict
        Last values.
    settings : dict
    """

    rule: str
    tensor: object
    feedback: list
    steps: np.ndarray
    trajectory: dict
    final: dict
    settings: dict = field(default_factory=dict)
    diverged: bool = False


def train_decomposition(target, rank, format: str = "cp", rule: str = "fa", *,
                        lr: float | None = None, steps: int = 2000, init_scale: float = 0.0,
                        feedback_scale: float = 1.0, seed: int = 0,
                        record_every: int | None = None, init=None) -> DecompositionRun:
    """Fit a CP or TT tensor to a dense target by GD or FA-style updates.

    The loss is ``0.5 ||X - T||_F^2``; each step ``P_k -= lr * grad_k`` with ``grad_k`` the exact
    gradient (``"gd"``) or the FA signal of :func:`fa_gradients` (``"fa"``), all factors updated
    simultaneously.

    Parameters
    ----------
    target : array
        Dense tensor (order >= 2).
    rank : int or sequence of int
        CP rank or TT ranks.
    format : {"cp", "tt"}
    rule : {"gd", "fa"}
    lr : float, optional
        Step size; default ``0.2 / ||T||_F^{2 (N-1) / N}`` (dimensionless for balanced factors).
    steps : int
    init_scale : float
        Initial reconstruction scale, relative to ``||T||_F / sqrt(numel)`` (entry scale); 0
        starts every factor at zero (FA still moves: factor 1 receives ``G`` through the
        feedback; GD does not).
    feedback_scale : float
        Feedback tensors are random with reconstruction entries of this scale relative to the
        target's entry scale.
    seed : int
        Seeds the feedback and the initialization (streams derived from it).
    record_every : int, optional
    init : LowRankTensor, optional
        Explicit starting point.

    Returns
    -------
    DecompositionRun
    """
    cls = _format_cls(format)
    rule = _checks.choice("rule", rule, ("gd", "fa"))
    t = torch.as_tensor(np.asarray(target) if not isinstance(target, torch.Tensor) else target)
    if t.ndim < 2:
        raise ValueError(f"target: expected a tensor of order >= 2, got shape {tuple(t.shape)}")
    t = t.to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError("target: contains NaN or infinite values")
    tnorm = float(t.norm())
    if tnorm == 0:
        raise ValueError("target: all zeros; nothing to fit")
    steps = _checks.positive_int("steps", steps)
    seed = _checks.seed_value(seed)
    init_scale = _checks.positive_float("init_scale", init_scale, allow_zero=True)
    feedback_scale = _checks.positive_float("feedback_scale", feedback_scale)
    order = t.ndim
    if lr is None:
        lr = 0.2 / tnorm ** (2.0 * (order - 1) / order)
    lr = _checks.positive_float("lr", lr)
    cls.normalize_rank(tuple(t.shape), rank)  # validates the rank (ValueError naming "rank")
    entry = tnorm / math.sqrt(t.numel())
    fb = cls.random(tuple(t.shape), rank, scale=feedback_scale * entry,
                    seed=derive_seed(seed, "feedback"), dtype=torch.float64).params
    if init is not None:
        params = [p.detach().to(torch.float64).clone() for p in init.params]
    elif init_scale > 0:
        params = cls.random(tuple(t.shape), rank, scale=init_scale * entry,
                            seed=derive_seed(seed, "init"), dtype=torch.float64).params
    else:
        params = [torch.zeros_like(f) for f in fb]
    sched = record_schedule(steps, record_every)
    traj = {"error": np.full(len(sched), np.nan), "alignment": np.full(len(sched), np.nan)}
    shape = tuple(t.shape)
    rec, diverged = 0, False
    for step in range(steps + 1):
        x = cls(shape, params).reconstruct()
        if rec < len(sched) and step == sched[rec]:
            traj["error"][rec] = float((x - t).norm()) / tnorm
            front = torch.cat([p.reshape(-1) for p in params[1:]])
            back = torch.cat([f.reshape(-1) for f in fb[1:]])
            den = float(front.norm() * back.norm())
            traj["alignment"][rec] = float((front * back).sum()) / den if den > 0 else float("nan")
            rec += 1
        if step == steps:
            break
        g = x - t
        if rule == "fa":
            grads = fa_gradients(format, shape, params, fb, g)
        else:
            live = [p.clone().requires_grad_(True) for p in params]
            grads = list(torch.autograd.grad((g.detach() * cls(shape, live).reconstruct()).sum(), live))
        params = [p - lr * gr for p, gr in zip(params, grads)]
        if not all(bool(torch.isfinite(p).all()) for p in params):
            diverged = True
            break
    final = {k: float(v[~np.isnan(v)][-1]) if np.any(~np.isnan(v)) else float("nan")
             for k, v in traj.items()}
    settings = {"lr": lr, "steps": steps, "init_scale": init_scale,
                "feedback_scale": feedback_scale, "seed": seed, "format": str(format).lower(),
                "rank": rank}
    return DecompositionRun(rule, cls(shape, params), fb, sched, traj, final, settings, diverged)


__all__ = ["FeedbackAlignmentFunction", "fa_linear", "fa_matmul", "FALinear",
           "train_factorization_autograd", "fa_gradients", "DecompositionRun",
           "train_decomposition", "DECOMP_FORMATS"]

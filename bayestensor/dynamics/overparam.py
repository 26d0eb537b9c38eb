r"""Over-parameterized symmetric tensor decomposition: rich (GD from scale alpha) versus lazy.

Target: an order-``l`` symmetric tensor of rank ``r`` in ``(R^d)^{⊗l}``,
``T = sum_{i<=r} a_i^{⊗l}`` with random unit vectors ``a_i``. Model: ``m >= r`` components, the
rows ``w_j`` of ``W`` (``m x d``), loss ``L(W) = 0.5 ||T_hat(W) - T||_F^2``:

``variant="plain"``
    ``T_hat(W) = sum_j w_j^{⊗l}``.
``variant="wang2020"``
    ``T_hat(W) = sum_j ||w_j||^{2-l} w_j^{⊗l}``: every component is 2-homogeneous in its
    parameters, as in a two-layer network (Wang, Wu, Lee, Ma & Ge, NeurIPS 2020, "Beyond Lazy
    Training for Over-parameterized Tensor Decomposition"). Small components then grow
    exponentially (in ``log(1/alpha)`` time) instead of blowing up after a ``1/alpha`` delay.
    Optional ``weight_decay`` adds ``lambda/2 ||W||_F^2`` and ``reinit_every`` periodically
    re-draws components whose norm stayed below ``alpha`` (at scale ``alpha``), two ingredients of
    their modified gradient descent; their step-size and epoch schedule is not reproduced.

Learners:

* **rich**: gradient descent on ``L`` from ``W_0`` with rows ``N(0, alpha^2 rho^2 / d)``
  (``rho`` is the typical component norm ``(||T||_F / sqrt(r))^{1/l}``), step size
  ``lr = lr_scale / (l rho^{2(l-1)} max(1, alpha)^{2(l-1)})``.
* **lazy** (linearized / NTK model): ``T_lin(W) = T_hat(W_0) + J (W - W_0)`` with
  ``J = dT_hat/dW`` at ``W_0``, trained by GD from ``W_0`` with step ``1 / ||J||_2^2``; its limit,
  reported as the final error, is the least-squares fit ``W_0 + J^+ (T - T_hat(W_0))``. Whatever
  the initialization scale, the lazy model can only move ``T_hat`` inside the ``m d``-dimensional
  tangent space at ``W_0``, while the symmetric tensors span ``binom(d + l - 1, l)`` dimensions;
  Wang et al. show ``m = Omega(d^{l-1})`` is needed.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass

import numpy as np
import torch

from bayestensor import checks as _checks
from bayestensor.seeds import derive_seed, rng
from bayestensor.dynamics.factorization import RecordedRun, record_schedule

VARIANTS = ("plain", "wang2020")
_DT = torch.float64


def symmetric_low_rank_tensor(d: int, rank: int, order: int = 3, *, seed: int = 0,
                              orthogonal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """A random symmetric tensor ``sum_i a_i^{⊗order}`` with unit-norm components.

    Parameters
    ----------
    d : int
        Dimension of each mode.
    rank : int
        Number of components ``r``.
    order : int
        Tensor order ``l >= 2``.
    seed : int
    orthogonal : bool
        Orthonormal components (needs ``rank <= d``) instead of independent random directions.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        The tensor ``(d,)*order`` and the components ``(rank, d)``.
    """
    d = _checks.positive_int("d", d)
    rank = _checks.positive_int("rank", rank)
    order = _checks.positive_int("order", order, minimum=2)
    gen = rng(_checks.seed_value(seed))
    a = torch.randn(rank, d, generator=gen, dtype=_DT)
    if orthogonal:
        if rank > d:
            raise ValueError(f"rank: orthogonal components need rank <= d = {d}, got {rank}")
        q, _ = torch.linalg.qr(a.T)
        a = q.T
    a = a / a.norm(dim=1, keepdim=True)
    return symmetric_reconstruct(a, order), a


def symmetric_reconstruct(w: torch.Tensor, order: int, variant: str = "plain") -> torch.Tensor:
    """``sum_j c_j w_j^{⊗order}`` with ``c_j = 1`` (plain) or ``||w_j||^{2-order}`` (wang2020).

    Parameters
    ----------
    w : torch.Tensor
        Components ``(m, d)``, one per row.
    order : int
        Tensor order ``l`` (one einsum letter per mode, so at most 26).
    variant : {"plain", "wang2020"}
        Scaling of the components (module docstring); any value other than ``"wang2020"``
        gives the plain sum. Zero rows contribute nothing under either variant.

    Returns
    -------
    torch.Tensor
        The symmetric tensor of shape ``(d,) * order``, of ``w``'s dtype.
    """
    letters = string.ascii_lowercase[:order]
    if variant == "wang2020" and order != 2:
        c = w.norm(dim=-1).clamp_min(1e-300).pow(2 - order)
        w_first = w * c.unsqueeze(-1)
    else:
        w_first = w
    operands = [w_first] + [w] * (order - 1)
    expr = ",".join(f"z{c}" for c in letters) + "->" + letters
    return torch.einsum(expr, *operands)


def _component_match(w: torch.Tensor, a: torch.Tensor, order: int, variant: str) -> float:
    """Smallest over true components of the best |cosine| with a learned component that carries
    at least 10% of the largest component magnitude."""
    mags = w.norm(dim=1) ** (order if variant == "plain" else 2)
    keep = mags >= 0.1 * mags.max()
    if not bool(keep.any()):
        return float("nan")
    wn = w[keep] / w[keep].norm(dim=1, keepdim=True).clamp_min(1e-300)
    cos = (a @ wn.T).abs()
    return float(cos.max(1).values.min())


@dataclass
class TensorFitRun(RecordedRun):
    """One rich or lazy fit of the over-parameterized decomposition.

    Attributes
    ----------
    kind : str
        ``"rich"`` or ``"lazy"``.
    w : torch.Tensor
        Final ``(m, d)`` components (for lazy: ``W_0 + delta``, the linear model's parameters).
    steps : np.ndarray
    trajectory : dict
        ``error`` (relative), ``movement`` (``||W - W_0||_F / ||W_0||_F``) and, for rich,
        ``component_match``.
    final : dict
        Last values; the lazy model's ``error`` is its least-squares limit, with
        ``error_gd`` the error after the recorded GD steps. Also ``tangent_rank`` for lazy.
    settings : dict
    """

    kind: str
    w: torch.Tensor


def _check_common(target, components, m, alpha, steps, seed, variant):
    t = torch.as_tensor(target, dtype=_DT)
    if t.ndim < 2 or len(set(t.shape)) != 1:
        raise ValueError(f"target: expected a symmetric tensor with equal mode sizes, got shape "
                         f"{tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()) or float(t.norm()) == 0:
        raise ValueError("target: expected a finite, non-zero tensor")
    m = _checks.positive_int("m", m)
    alpha = _checks.positive_float("alpha", alpha)
    steps = _checks.positive_int("steps", steps)
    seed = _checks.seed_value(seed)
    variant = _checks.choice("variant", variant, VARIANTS)
    a = None if components is None else torch.as_tensor(components, dtype=_DT)
    return t, a, m, alpha, steps, seed, variant


def _init(t: torch.Tensor, m: int, alpha: float, seed: int, n_true: int | None):
    order, d = t.ndim, t.shape[0]
    r = n_true or 1
    rho = (float(t.norm()) / math.sqrt(r)) ** (1.0 / order)
    gen = rng(derive_seed(seed, "init"))
    w0 = torch.randn(m, d, generator=gen, dtype=_DT) * (alpha * rho / math.sqrt(d))
    return w0, rho


def fit_rich(target, m: int, *, alpha: float = 0.03, steps: int = 2000, lr: float | None = None,
             lr_scale: float = 0.3, variant: str = "plain", weight_decay: float = 0.0,
             reinit_every: int | None = None, components=None, seed: int = 0,
             record_every: int | None = None) -> TensorFitRun:
    """Gradient descent on the over-parameterized decomposition from initialization scale ``alpha``.

    Parameters
    ----------
    target : tensor
        Symmetric order-``l`` tensor ``(d, ..., d)``.
    m : int
        Number of components.
    alpha : float
        Initialization scale relative to the typical component norm (small: rich regime).
    steps : int
    lr : float, optional
        Step size; default from ``lr_scale`` (module docstring).
    lr_scale : float
    variant : {"plain", "wang2020"}
    weight_decay : float
        ``lambda`` of the optional ``lambda/2 ||W||^2`` term.
    reinit_every : int, optional
        Re-draw components with norm below ``alpha * rho`` every this many steps (wang2020
        ingredient; off by default).
    components : (r, d) tensor, optional
        True components, for ``component_match`` and the scale ``rho``.
    seed : int
        Seeds the initialization (and re-initializations).
    record_every : int, optional

    Returns
    -------
    TensorFitRun
    """
    t, a, m, alpha, steps, seed, variant = _check_common(target, components, m, alpha, steps,
                                                         seed, variant)
    weight_decay = _checks.positive_float("weight_decay", weight_decay, allow_zero=True)
    if reinit_every is not None:
        reinit_every = _checks.positive_int("reinit_every", reinit_every)
    order = t.ndim
    w0, rho = _init(t, m, alpha, seed, None if a is None else a.shape[0])
    if lr is None:
        lr_scale = _checks.positive_float("lr_scale", lr_scale)
        lr = lr_scale / (order * rho ** (2 * (order - 1)) * max(1.0, alpha) ** (2 * (order - 1)))
    lr = _checks.positive_float("lr", lr)
    sched = record_schedule(steps, record_every)
    keys = ["error", "movement"] + (["component_match"] if a is not None else [])
    traj = {k: np.full(len(sched), np.nan) for k in keys}
    tnorm, w0norm = float(t.norm()), float(w0.norm())
    w = w0.clone()
    gen = rng(derive_seed(seed, "reinit"))
    rec, diverged = 0, False
    for step in range(steps + 1):
        wr = w.clone().requires_grad_(True)
        resid = symmetric_reconstruct(wr, order, variant) - t
        if rec < len(sched) and step == sched[rec]:
            traj["error"][rec] = float(resid.detach().norm()) / tnorm
            traj["movement"][rec] = float((w - w0).norm()) / w0norm
            if a is not None:
                traj["component_match"][rec] = _component_match(w, a, order, variant)
            rec += 1
        if step == steps:
            break
        loss = 0.5 * resid.pow(2).sum()
        (grad,) = torch.autograd.grad(loss, wr)
        w = w - lr * (grad + weight_decay * w)
        if reinit_every is not None and (step + 1) % reinit_every == 0 and step + 1 < steps:
            small = w.norm(dim=1) < alpha * rho
            if bool(small.any()):
                fresh = torch.randn(int(small.sum()), t.shape[0], generator=gen, dtype=_DT)
                w[small] = fresh * (alpha * rho / math.sqrt(t.shape[0]))
        if not bool(torch.isfinite(w).all()):
            diverged = True
            break
    final = {k: float(v[~np.isnan(v)][-1]) if np.any(~np.isnan(v)) else float("nan")
             for k, v in traj.items()}
    settings = {"m": m, "alpha": alpha, "steps": steps, "lr": lr, "variant": variant,
                "weight_decay": weight_decay, "reinit_every": reinit_every, "seed": seed,
                "order": order, "d": int(t.shape[0])}
    return TensorFitRun("rich", w, steps=sched, trajectory=traj, final=final, settings=settings,
                        diverged=diverged)


def tangent_jacobian(w0: torch.Tensor, order: int, variant: str = "plain") -> torch.Tensor:
    """``J = d vec(T_hat) / d vec(W)`` at ``w0``, shape ``(d^order, m d)`` (forward mode)."""
    m, d = w0.shape

    def f(flat):
        return symmetric_reconstruct(flat.reshape(m, d), order, variant).reshape(-1)

    return torch.func.jacfwd(f)(w0.reshape(-1))


def fit_lazy(target, m: int, *, alpha: float = 0.03, steps: int = 2000,
             variant: str = "plain", components=None, seed: int = 0,
             record_every: int | None = None) -> TensorFitRun:
    """The linearized (lazy / NTK) model around the same initialization as :func:`fit_rich`.

    Parameters
    ----------
    target : tensor
    m : int
    alpha : float
        Initialization scale (same meaning and same draw as :func:`fit_rich` with this seed).
    steps : int
        GD steps on the linear model (step ``1 / ||J||_2^2``) for the trajectory.
    variant : {"plain", "wang2020"}
    components : (r, d) tensor, optional
        Only sets the scale ``rho`` (as in :func:`fit_rich`).
    seed : int
    record_every : int, optional

    Returns
    -------
    TensorFitRun
        ``final["error"]`` is the least-squares limit of the linear model.
    """
    t, a, m, alpha, steps, seed, variant = _check_common(target, components, m, alpha, steps,
                                                         seed, variant)
    order = t.ndim
    w0, _ = _init(t, m, alpha, seed, None if a is None else a.shape[0])
    jac = tangent_jacobian(w0, order, variant)
    f0 = symmetric_reconstruct(w0, order, variant).reshape(-1)
    res0 = t.reshape(-1) - f0
    tnorm, w0norm = float(t.norm()), float(w0.norm())
    smax = float(torch.linalg.matrix_norm(jac, ord=2))
    lr = 1.0 / smax**2
    sched = record_schedule(steps, record_every)
    traj = {"error": np.full(len(sched), np.nan), "movement": np.full(len(sched), np.nan)}
    delta = torch.zeros(jac.shape[1], dtype=_DT)
    rec = 0
    for step in range(steps + 1):
        resid = res0 - jac @ delta
        if rec < len(sched) and step == sched[rec]:
            traj["error"][rec] = float(resid.norm()) / tnorm
            traj["movement"][rec] = float(delta.norm()) / w0norm
            rec += 1
        if step == steps:
            break
        delta = delta + lr * (jac.T @ resid)
    sol = torch.linalg.lstsq(jac, res0.unsqueeze(1), driver="gelsd").solution[:, 0]
    lim = float((res0 - jac @ sol).norm()) / tnorm
    tangent_rank = int(torch.linalg.matrix_rank(jac))
    final = {"error": lim, "error_gd": float(traj["error"][-1]),
             "movement": float(sol.norm()) / w0norm, "tangent_rank": float(tangent_rank)}
    settings = {"m": m, "alpha": alpha, "steps": steps, "lr": lr, "variant": variant,
                "seed": seed, "order": order, "d": int(t.shape[0])}
    return TensorFitRun("lazy", w0 + sol.reshape(w0.shape), steps=sched, trajectory=traj, final=final,
                        settings=settings)


__all__ = ["VARIANTS", "symmetric_low_rank_tensor", "symmetric_reconstruct", "TensorFitRun",
           "fit_rich", "fit_lazy", "tangent_jacobian"]

r"""Depth-``D`` diagonal linear networks on sparse regression: the rich-to-kernel transition.

Model (Woodworth, Gunasekar, Lee, Moroshko, Savarese, Golan, Soudry & Srebro, COLT 2020, "Kernel
and Rich Regimes in Overparametrized Models"): a linear predictor ``<beta, x>`` with
``beta = w_+^D - w_-^D`` (elementwise powers), both ``w_+`` and ``w_-`` initialized at
``alpha * 1`` so that ``beta(0) = 0``. Loss on an under-determined problem ``X beta = y``
(``n < d``)::

    L(w_+, w_-) = 1/(2n) ||X beta - y||^2
    grad_{w_+} = D w_+^{D-1} * g,   grad_{w_-} = -D w_-^{D-1} * g,   g = X^T (X beta - y) / n

Gradient descent from this initialization interpolates (``X beta = y``) and which interpolant
it reaches depends on ``alpha``: as ``alpha -> 0`` the minimum-l1 interpolant (rich regime), as
``alpha -> inf`` the minimum-l2 interpolant (kernel regime: the tangent kernel at
``w_± = alpha 1`` is isotropic). For ``D = 2`` gradient flow gives exactly
``beta = 2 alpha^2 sinh(nu)`` with ``nu`` in the row space of ``X``, so
``arcsinh(beta / (2 alpha^2))`` lies in ``row(X)`` (:func:`kkt_residual` measures this).

Step size, scaled so that every ``alpha`` converges: near a solution of size
``b = max(||beta_l1||_inf, ||beta_l2||_inf)`` the curvature in ``w`` is about
``D^2 lambda_max(X^T X / n) s^{2(D-1)}`` with ``s = max(alpha, b^{1/D})``, so each network uses
``lr = lr_scale / (D^2 lambda_max s^{2(D-1)})``. Large ``alpha`` get proportionally smaller steps
(no divergence); small ``alpha`` keep the step set by the solution's scale and escape the origin
after about ``log(1/alpha)`` (``D = 2``) or ``alpha^{2-D}`` (deeper) time: deep networks at tiny
``alpha`` need many steps (the run reports its final loss, never hides it). A fixed step per
network stays close to gradient flow, whose limit the theory describes (an adaptive step with
larger early steps was measured to move the depth-2 limit further from the flow's).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linprog

from bayestensor import checks as _checks
from bayestensor.seeds import derive_seed, rng

_DT = torch.float64


def sparse_regression(n: int, d: int, k: int, *, seed: int = 0, noise: float = 0.0,
                      positive: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gaussian design ``X`` (``n x d``), a ``k``-sparse ``beta*`` and ``y = X beta* (+ noise)``.

    Parameters
    ----------
    n, d : int
        Samples and features (``n < d`` for an under-determined problem).
    k : int
        Non-zeros of ``beta*`` (values ``±1``, or ``+1`` with ``positive``).
    seed : int
    noise : float
        Standard deviation of Gaussian label noise.
    positive : bool

    Returns
    -------
    (X, y, beta_star)
    """
    n = _checks.positive_int("n", n)
    d = _checks.positive_int("d", d)
    k = _checks.positive_int("k", k)
    if k > d:
        raise ValueError(f"k: expected at most d = {d} non-zeros, got {k}")
    noise = _checks.positive_float("noise", noise, allow_zero=True)
    gen = rng(_checks.seed_value(seed))
    x = torch.randn(n, d, generator=gen, dtype=_DT)
    beta = torch.zeros(d, dtype=_DT)
    support = torch.randperm(d, generator=gen)[:k]
    signs = torch.ones(k, dtype=_DT) if positive else torch.randint(0, 2, (k,), generator=gen).to(_DT) * 2 - 1
    beta[support] = signs
    y = x @ beta
    if noise > 0:
        y = y + noise * torch.randn(n, generator=gen, dtype=_DT)
    return x, y, beta


def _check_xy(x, y):
    x = _checks.matrix("x", x)
    yt = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).to(_DT)
    if yt.ndim != 1 or yt.shape[0] != x.shape[0]:
        raise ValueError(f"y: expected a vector of length {x.shape[0]}, got shape {tuple(yt.shape)}")
    if not bool(torch.isfinite(yt).all()):
        raise ValueError("y: contains NaN or infinite values")
    return x, yt


def min_l2_interpolant(x, y) -> torch.Tensor:
    """``argmin ||beta||_2`` subject to ``X beta = y`` (``X^+ y``).

    Parameters
    ----------
    x : (n, d) array
        Finite design matrix.
    y : (n,) array
        Finite labels.

    Returns
    -------
    torch.Tensor
        The float64 ``(d,)`` vector ``pinv(X) y`` (the least-squares solution of minimum norm
        when the system has no exact solution).

    Raises
    ------
    ValueError
        When ``x`` is not a finite 2-D array or ``y`` not a finite vector of length ``n``.
    """
    x, y = _check_xy(x, y)
    return torch.linalg.pinv(x) @ y


def min_l1_interpolant(x, y) -> torch.Tensor:
    """``argmin ||beta||_1`` subject to ``X beta = y``, by linear programming (HiGHS).

    ``beta = u - v`` with ``u, v >= 0``; minimize ``sum(u + v)``.

    Parameters
    ----------
    x : (n, d) array
        Finite design matrix.
    y : (n,) array
        Finite labels.

    Returns
    -------
    torch.Tensor
        The float64 ``(d,)`` interpolant the HiGHS solver returns.

    Raises
    ------
    ValueError
        When the system has no solution, ``x`` is not a finite 2-D array or ``y`` not a finite
        vector of length ``n``.
    """
    x, y = _check_xy(x, y)
    xn = x.numpy()
    d = xn.shape[1]
    res = linprog(np.ones(2 * d), A_eq=np.hstack([xn, -xn]), b_eq=y.numpy(),
                  bounds=[(0, None)] * (2 * d), method="highs")
    if not res.success:
        raise ValueError(f"x, y: no interpolating solution found ({res.message})")
    return torch.as_tensor(res.x[:d] - res.x[d:], dtype=_DT)


def kkt_residual(x, beta, alpha: float) -> float:
    """How far ``arcsinh(beta / (2 alpha^2))`` is from ``row(X)`` (relative; depth 2 only).

    Zero for the gradient-flow limit of the depth-2 network at scale ``alpha`` (module
    docstring), i.e. ``beta`` minimizes Woodworth et al.'s ``Q_alpha`` among interpolants.

    Parameters
    ----------
    x : (n, d) array
        Finite design matrix; the columns of the Q factor of ``X^T``'s reduced QR stand for
        ``row(X)``.
    beta : (d,) array
        Predictor to test.
    alpha : float
        Initialization scale (> 0).

    Returns
    -------
    float
        ``||nu - P nu|| / ||nu||`` with ``nu = arcsinh(beta / (2 alpha^2))`` and ``P`` the
        projector onto that span; ``0.0`` when ``nu`` is zero.
    """
    x = _checks.matrix("x", x)
    alpha = _checks.positive_float("alpha", alpha)
    b = torch.as_tensor(beta, dtype=_DT)
    nu = torch.asinh(b / (2 * alpha**2))
    q, _ = torch.linalg.qr(x.T)  # (d, n) basis of row(X)
    resid = nu - q @ (q.T @ nu)
    den = float(nu.norm())
    return float(resid.norm()) / den if den > 0 else 0.0


@dataclass
class DiagonalRun:
    """Gradient descent on a diagonal network for one or several ``alpha``.

    Attributes
    ----------
    alphas : np.ndarray
        Initialization scales.
    beta : torch.Tensor
        ``(len(alphas), d)`` final predictors.
    steps : np.ndarray
        Recorded steps.
    trajectory : dict
        ``loss`` (``1/(2n) ||X beta - y||^2`` relative to ``||y||^2 / (2n)``) and ``l1``
        (``||beta||_1``), each ``(len(alphas), len(steps))``.
    final : dict
        Per-alpha arrays: ``loss``, ``l1``, ``l2``, ``dist_l1`` / ``dist_l2`` (relative distance
        to the minimum-l1 / minimum-l2 interpolants), ``l1_position`` (``(||beta||_1 - l1_min) /
        (||beta_l2||_1 - l1_min)``: 0 at the l1 end, 1 at the l2 end), ``kkt`` (depth 2), ``lr``.
    reference : dict
        ``l1_min`` and ``l1_of_l2`` (the l1 norms of the two interpolants) and the interpolants.
    settings : dict
    """

    alphas: np.ndarray
    beta: torch.Tensor
    steps: np.ndarray
    trajectory: dict
    final: dict
    reference: dict
    settings: dict = field(default_factory=dict)


def train_diagonal(x, y, alphas, *, depth: int = 2, steps: int = 20000, lr_scale: float = 0.5,
                   tol: float = 1e-12, seed: int = 0, jitter: float = 0.0,
                   record_every: int | None = None) -> DiagonalRun:
    """Gradient descent on depth-``D`` diagonal networks, all ``alphas`` at once (vectorized).

    Parameters
    ----------
    x : (n, d) array
    y : (n,) array
    alphas : float or sequence of float
        Initialization scales (each its own network and step size).
    depth : int
        ``D >= 2``.
    steps : int
        Maximum steps; a network stops once its relative loss is below ``tol``.
    lr_scale : float
        Dimensionless step size (module docstring).
    tol : float
        Relative loss at which a network counts as converged (it stops updating).
    seed : int
        Seeds the optional multiplicative ``jitter`` of the initialization.
    jitter : float
        Relative random perturbation of ``alpha * 1`` (0: Woodworth's deterministic start).
    record_every : int, optional

    Returns
    -------
    DiagonalRun
    """
    x, y = _check_xy(x, y)
    alist = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    if alist.ndim != 1 or alist.size == 0 or not np.all(np.isfinite(alist)) or np.any(alist <= 0):
        raise ValueError(f"alphas: expected positive finite numbers, got {np.asarray(alphas).tolist()}")
    depth = _checks.positive_int("depth", depth, minimum=2)
    steps = _checks.positive_int("steps", steps)
    lr_scale = _checks.positive_float("lr_scale", lr_scale)
    tol = _checks.positive_float("tol", tol)
    seed = _checks.seed_value(seed)
    jitter = _checks.positive_float("jitter", jitter, allow_zero=True)
    n, d = x.shape
    b_l2 = min_l2_interpolant(x, y)
    b_l1 = min_l1_interpolant(x, y)
    lam = float(torch.linalg.eigvalsh(x.T @ x / n)[-1])
    b_scale = max(float(b_l1.abs().max()), float(b_l2.abs().max()), 1e-12)
    a_t = torch.as_tensor(alist, dtype=_DT).unsqueeze(1)  # (A, 1)
    s = torch.maximum(a_t, torch.full_like(a_t, b_scale ** (1.0 / depth)))
    lr = lr_scale / (depth**2 * lam * s ** (2 * (depth - 1)))  # (A, 1)
    gen = rng(derive_seed(seed, "init"))
    wp = a_t.expand(-1, d).clone()
    wm = a_t.expand(-1, d).clone()
    if jitter > 0:
        wp = wp * (1 + jitter * torch.randn(wp.shape, generator=gen, dtype=_DT))
        wm = wm * (1 + jitter * torch.randn(wm.shape, generator=gen, dtype=_DT))
    k = max(1, steps // 200) if record_every is None else _checks.positive_int("record_every", record_every)
    sched = list(range(0, steps + 1, k))
    if sched[-1] != steps:
        sched.append(steps)
    y_scale = float(y.pow(2).sum()) / (2 * n)
    loss_tr = np.full((len(alist), len(sched)), np.nan)
    l1_tr = np.full((len(alist), len(sched)), np.nan)
    active = torch.ones(len(alist), 1, dtype=torch.bool)
    rec = 0
    for step in range(steps + 1):
        beta = wp.pow(depth) - wm.pow(depth)
        resid = beta @ x.T - y  # (A, n)
        rel_loss = resid.pow(2).sum(1, keepdim=True) / (2 * n) / max(y_scale, 1e-300)
        if rec < len(sched) and step == sched[rec]:
            loss_tr[:, rec] = rel_loss[:, 0].numpy()
            l1_tr[:, rec] = beta.abs().sum(1).numpy()
            rec += 1
        active = active & (rel_loss > tol)
        if step == steps or not bool(active.any()):
            break
        g = resid @ x / n  # (A, d)
        upd = lr * active.to(_DT)
        wp = wp - upd * depth * wp.pow(depth - 1) * g
        wm = wm + upd * depth * wm.pow(depth - 1) * g
    # fill the remaining records with the final values (converged networks stay put)
    for j in range(rec, len(sched)):
        loss_tr[:, j] = rel_loss[:, 0].numpy()
        l1_tr[:, j] = beta.abs().sum(1).numpy()
    l1_min, l1_of_l2 = float(b_l1.abs().sum()), float(b_l2.abs().sum())
    span = l1_of_l2 - l1_min
    l1 = beta.abs().sum(1).numpy()
    final = {
        "loss": rel_loss[:, 0].numpy(),
        "l1": l1,
        "l2": beta.norm(dim=1).numpy(),
        "dist_l1": ((beta - b_l1).norm(dim=1) / b_l1.norm()).numpy(),
        "dist_l2": ((beta - b_l2).norm(dim=1) / b_l2.norm()).numpy(),
        "l1_position": (l1 - l1_min) / span if span > 0 else np.zeros_like(l1),
        "kkt": np.array([kkt_residual(x, beta[i], float(alist[i])) for i in range(len(alist))])
        if depth == 2 else np.full(len(alist), np.nan),
        "lr": lr[:, 0].numpy(),
        "steps_run": np.full(len(alist), step, dtype=np.float64),
    }
    reference = {"l1_min": l1_min, "l1_of_l2": l1_of_l2, "beta_l1": b_l1, "beta_l2": b_l2}
    settings = {"depth": depth, "steps": steps, "lr_scale": lr_scale, "tol": tol, "seed": seed,
                "jitter": jitter, "n": n, "d": d}
    return DiagonalRun(alist, beta, np.asarray(sched), {"loss": loss_tr, "l1": l1_tr}, final,
                       reference, settings)


__all__ = ["sparse_regression", "min_l1_interpolant", "min_l2_interpolant", "kkt_residual",
           "DiagonalRun", "train_diagonal"]

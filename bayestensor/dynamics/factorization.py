r"""Low-rank matrix factorization ``min ||Z W - Y||_F`` trained by GD, feedback alignment and FA*.

Shapes: ``Y`` is ``(n, m)``, ``Z`` is ``(n, r)``, ``W`` is ``(r, m)`` and the fixed random feedback
matrix ``B`` has the shape of ``W``. With ``E_t = Y - Z_t W_t`` and step size ``lr`` (``eta``),
the loss ``L = 0.5 ||Z W - Y||_F^2`` has gradients ``-E W^T`` (for ``Z``) and ``-Z^T E`` (for
``W``). The three learners:

``"gd"`` (gradient descent)::

    Z_{t+1} = Z_t + eta * E_t W_t^T
    W_{t+1} = W_t + eta * Z_t^T E_t

``"fa"`` (feedback alignment; Lillicrap et al. 2016, in the matrix-factorization form analysed
by Garg & Vempala, AISTATS 2022): the error reaches ``Z`` through the fixed ``B`` instead of
``W``; ``W`` (the "last layer") keeps its true gradient::

    Z_{t+1} = Z_t + eta * E_t B^T
    W_{t+1} = W_t + eta * Z_t^T E_t

``"fa_star"`` (FA*): the same ``Z`` update, and ``W`` updated with the midpoint of the old and
new ``Z``::

    Z_{t+1} = Z_t + eta * E_t B^T
    W_{t+1} = W_t + eta * ((Z_t + Z_{t+1}) / 2)^T E_t

Under FA gradient flow from ``Z = 0, W = 0``, ``d(Z^T Z)/dt = Z^T E B^T + B E^T Z =
d(W B^T + B W^T)/dt``, so ``Z^T Z = W B^T + B W^T`` for all time: the symmetric part of
``W B^T`` is ``Z^T Z / 2``, positive semidefinite; this is the alignment mechanism Garg & Vempala
derive. Plain discrete FA breaks the identity by ``eta^2 B E^T E B^T`` per step; the midpoint
``W`` update of FA* keeps it exactly (``Z_{t+1}^T Z_{t+1} - Z_t^T Z_t`` equals the change of
``W B^T + B W^T``, term for term). Garg & Vempala call their analysed variant FA*; this module's
FA* is defined by the equations above (see ``docs/dynamics.md`` for what was and was not checked
against the paper).

From zero initialization every FA iterate has ``Z_t = Y B^T M_t`` for some ``r x r`` matrix
``M_t`` (induction on the ``Z`` update), so ``ZW`` can never do better than projecting ``Y`` on
the column space of ``Y B^T``: :func:`fa_projection_error`. For ``r >= rank(Y)`` that projection
is exact and FA reaches zero error; for ``r < rank(Y)`` it is generally above the Eckart-Young
optimum that GD reaches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from bayestensor import checks as _checks
from bayestensor.seeds import derive_seed, rng

RULES = ("gd", "fa", "fa_star")

#: Metrics recorded along a trajectory (see :func:`factorization_metrics`).
METRICS = ("error", "excess", "ey_ratio", "alignment", "alignment_row", "sym_min_eig",
           "update_angle", "angle_col", "angle_row", "conservation")

_DT = torch.float64


# --- data -------------------------------------------------------------------------------------
def low_rank_matrix(n: int, m: int, rank: int, *, seed: int = 0, singular_values=None,
                    smallest: float = 0.2, noise: float = 0.0) -> torch.Tensor:
    """A random ``(n, m)`` float64 matrix of a given rank with known singular values.

    Parameters
    ----------
    n, m : int
        Shape.
    rank : int
        Rank, at most ``min(n, m)``.
    seed : int
        Seed of the random singular vectors (and noise).
    singular_values : sequence of float, optional
        The ``rank`` singular values; default evenly spaced from 1 down to ``smallest``.
    smallest : float
        Smallest singular value of the default spectrum (in (0, 1]).
    noise : float
        Standard deviation of i.i.d. Gaussian noise added to every entry (makes the matrix
        full rank).

    Returns
    -------
    torch.Tensor
        ``U diag(s) V^T (+ noise)`` with Haar-random orthonormal ``U, V``.

    Examples
    --------
    >>> y = low_rank_matrix(30, 20, 3, seed=0)
    >>> int(torch.linalg.matrix_rank(y))
    3
    """
    n = _checks.positive_int("n", n)
    m = _checks.positive_int("m", m)
    rank = _checks.positive_int("rank", rank)
    if rank > min(n, m):
        raise ValueError(f"rank: expected at most min(n, m) = {min(n, m)}, got {rank}")
    seed = _checks.seed_value(seed)
    noise = _checks.positive_float("noise", noise, allow_zero=True)
    if singular_values is None:
        smallest = _checks.positive_float("smallest", smallest)
        if smallest > 1:
            raise ValueError(f"smallest: expected a number in (0, 1], got {smallest}")
        s = torch.linspace(1.0, smallest, rank, dtype=_DT)
    else:
        s = torch.as_tensor(np.asarray(singular_values, dtype=np.float64))
        if s.shape != (rank,) or not bool((s > 0).all()) or not bool(torch.isfinite(s).all()):
            raise ValueError(f"singular_values: expected {rank} positive finite numbers, got "
                             f"{np.asarray(singular_values).tolist()}")
    gen = rng(seed)
    u, _ = torch.linalg.qr(torch.randn(n, rank, generator=gen, dtype=_DT))
    v, _ = torch.linalg.qr(torch.randn(m, rank, generator=gen, dtype=_DT))
    y = u @ torch.diag(s) @ v.T
    if noise > 0:
        y = y + noise * torch.randn(n, m, generator=gen, dtype=_DT)
    return y


def feedback_matrix(r: int, m: int, *, scale: float = 1.0, seed: int = 0) -> torch.Tensor:
    """A fixed random feedback matrix ``B`` of shape ``(r, m)``, entries ``N(0, scale^2 / m)``.

    With this variance ``||B x|| ≈ scale * ||x||`` for a unit ``x`` in general position, the
    same scale as a balanced ``W`` whose singular values are ``sqrt`` of those of ``Y`` when
    ``scale = sqrt(||Y||_2)``.

    Parameters
    ----------
    r, m : int
        Shape (that of ``W``).
    scale : float
        Overall scale (> 0).
    seed : int
        Seed.
    """
    r = _checks.positive_int("r", r)
    m = _checks.positive_int("m", m)
    scale = _checks.positive_float("scale", scale)
    gen = rng(_checks.seed_value(seed))
    return torch.randn(r, m, generator=gen, dtype=_DT) * (scale / math.sqrt(m))


# --- reference quantities ---------------------------------------------------------------------
def numerical_rank(y: torch.Tensor, rtol: float = 1e-10) -> int:
    """Number of singular values above ``rtol`` times the largest."""
    s = torch.linalg.svdvals(torch.as_tensor(y, dtype=_DT))
    if s.numel() == 0 or float(s[0]) == 0.0:
        return 0
    return int((s > rtol * s[0]).sum())


def eckart_young_error(y, r: int) -> float:
    """``min_{rank <= r} ||Y - X||_F`` (Eckart-Young): the norm of the trailing singular values.

    Parameters
    ----------
    y : (n, m) array
        Finite target matrix (converted to float64).
    r : int
        Rank bound (>= 1); ``0.0`` is returned once ``r >= min(n, m)``.

    Returns
    -------
    float
        ``sqrt(sum_{i > r} s_i^2)`` over the singular values ``s_1 >= s_2 >= ...`` of ``y``
        (absolute, not relative to ``||Y||_F``).

    Raises
    ------
    ValueError
        When ``y`` is not a non-empty finite 2-D numeric array or ``r`` is not a positive integer.
    """
    y = _checks.matrix("y", y)
    r = _checks.positive_int("r", r)
    s = torch.linalg.svdvals(y)
    return float(torch.sqrt((s[r:] ** 2).sum()))


def orthonormal_basis(a: torch.Tensor, rtol: float = 1e-10) -> torch.Tensor:
    """Orthonormal basis of the column space of ``a`` (numerical rank by ``rtol``)."""
    a = torch.as_tensor(a, dtype=_DT)
    u, s, _ = torch.linalg.svd(a, full_matrices=False)
    if s.numel() == 0 or float(s[0]) == 0.0:
        return a.new_zeros(a.shape[0], 0)
    k = int((s > rtol * s[0]).sum())
    return u[:, :k]


def projection_error(y, a) -> float:
    """``||Y - P_A Y||_F`` with ``P_A`` the orthogonal projector onto the column space of ``A``."""
    y = _checks.matrix("y", y)
    a = _checks.matrix("a", a)
    if a.shape[0] != y.shape[0]:
        raise ValueError(f"a: expected {y.shape[0]} rows like y, got shape {tuple(a.shape)}")
    q = orthonormal_basis(a)
    return float(torch.linalg.norm(y - q @ (q.T @ y)))


def fa_projection_error(y, b) -> float:
    """The error FA from zero initialization converges to: projecting ``Y`` on ``col(Y B^T)``.

    Parameters
    ----------
    y : (n, m) array
    b : (r, m) array
        Feedback matrix.
    """
    y = _checks.matrix("y", y)
    b = _checks.matrix("b", b)
    if b.shape[1] != y.shape[1]:
        raise ValueError(f"b: expected {y.shape[1]} columns like y, got shape {tuple(b.shape)}")
    return projection_error(y, y @ b.T)


def principal_angles(a, b, rtol: float = 1e-10) -> np.ndarray:
    """Principal angles (radians, ascending) between the column spaces of ``a`` and ``b``.

    There are ``min(dim col(a), dim col(b))`` of them (numerical ranks by ``rtol``).

    Parameters
    ----------
    a, b : (n, k_a) and (n, k_b) arrays
        Matrices with the same number of rows (converted to float64).
    rtol : float
        Singular values at most ``rtol`` times the largest do not count toward a column space
        (default 1e-10).

    Returns
    -------
    np.ndarray
        Float64 angles in ``[0, pi/2]``, ascending; empty when either column space is ``{0}``.
    """
    qa = orthonormal_basis(torch.as_tensor(a, dtype=_DT), rtol)
    qb = orthonormal_basis(torch.as_tensor(b, dtype=_DT), rtol)
    if qa.shape[1] == 0 or qb.shape[1] == 0:
        return np.zeros(0)
    s = torch.linalg.svdvals(qa.T @ qb).clamp(-1.0, 1.0)
    return np.sort(np.arccos(s.numpy()))


def largest_angle_to(learned: torch.Tensor, optimal: torch.Tensor, rtol: float = 1e-10) -> float:
    """Largest principal angle (degrees) from the orthonormal ``optimal`` basis to ``col(learned)``.

    When ``col(learned)`` has fewer dimensions than ``optimal``, a direction of the optimal
    subspace is missing and the angle is 90 degrees.
    """
    q = orthonormal_basis(learned, rtol)
    if q.shape[1] < optimal.shape[1]:
        return 90.0
    s = torch.linalg.svdvals(optimal.T @ q)
    return float(np.degrees(np.arccos(min(1.0, max(-1.0, float(s.min()))))))


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of the Frobenius angle ``<a, b> / (||a|| ||b||)`` (NaN when either is zero)."""
    na, nb = float(torch.linalg.norm(a)), float(torch.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return float("nan")
    return float((a * b).sum()) / (na * nb)


@dataclass
class FactorizationReference:
    """What the metrics compare against, computed once per ``(Y, r)``.

    Attributes
    ----------
    y : torch.Tensor
        The target.
    r : int
        Model rank.
    norm : float
        ``||Y||_F``.
    ey_error : float
        Eckart-Young optimum ``min_{rank <= r} ||Y - X||_F``.
    u_opt, v_opt : torch.Tensor
        Orthonormal bases of the optimal column / row subspaces (top ``q = min(r, rank Y)``
        singular vectors).
    row_projector : torch.Tensor
        ``(m, m)`` projector onto ``Y``'s row space.
    """

    y: torch.Tensor
    r: int
    norm: float
    ey_error: float
    u_opt: torch.Tensor
    v_opt: torch.Tensor
    row_projector: torch.Tensor

    @classmethod
    def build(cls, y, r: int) -> "FactorizationReference":
        """Reference quantities for target ``y`` and model rank ``r``."""
        y = _checks.matrix("y", y)
        r = _checks.positive_int("r", r)
        u, s, vh = torch.linalg.svd(y, full_matrices=False)
        k = numerical_rank(y)
        q = min(r, k)
        v_row = vh[:k].T
        return cls(y=y, r=r, norm=float(torch.linalg.norm(y)),
                   ey_error=float(torch.sqrt((s[r:] ** 2).sum())), u_opt=u[:, :q],
                   v_opt=vh[:q].T, row_projector=v_row @ v_row.T)


def factorization_metrics(ref: FactorizationReference, z: torch.Tensor, w: torch.Tensor,
                          b: torch.Tensor) -> dict[str, float]:
    """All trajectory metrics at one point ``(Z, W)`` with feedback ``B``.

    Parameters
    ----------
    ref : FactorizationReference
        Reference quantities of the target ``Y`` ``(n, m)`` and model rank ``r``
        (:meth:`FactorizationReference.build`).
    z : torch.Tensor
        Current left factor ``(n, r)``.
    w : torch.Tensor
        Current right factor ``(r, m)``.
    b : torch.Tensor
        Feedback matrix ``(r, m)``.

    Returns
    -------
    dict
        ``error``: ``||Y - ZW||_F / ||Y||_F``. ``excess``: ``(||Y - ZW||^2 - EY^2) / ||Y||^2``
        (>= 0; zero at the Eckart-Young optimum ``EY``). ``ey_ratio``: ``||Y - ZW|| / EY`` (NaN
        when ``EY`` is zero). ``alignment``: cosine between ``W`` and ``B``. ``alignment_row``:
        the same after projecting both on ``Y``'s row space. ``sym_min_eig``: smallest
        eigenvalue of ``(W B^T + B W^T) / 2``. ``update_angle``: angle in degrees between the FA
        signal ``E B^T`` and the gradient signal ``E W^T`` for ``Z``. ``angle_col`` /
        ``angle_row``: largest principal angle in degrees between ``col(Z)`` / ``row(W)`` and the
        optimal subspaces (90 when the learned subspace has fewer dimensions; NaN when the
        optimal one is empty). ``conservation``: ``||Z^T Z - W B^T - B W^T||_F / ||Z^T Z||_F``
        (zero for FA gradient flow and FA* from zero initialization; NaN when ``Z^T Z`` is
        zero). The keys are those of :data:`METRICS`; the relative metrics are NaN when
        ``Y`` is zero.
    """
    e = ref.y - z @ w
    err = float(torch.linalg.norm(e))
    rel = err / ref.norm if ref.norm > 0 else float("nan")
    excess = (err**2 - ref.ey_error**2) / ref.norm**2 if ref.norm > 0 else float("nan")
    ey_ratio = err / ref.ey_error if ref.ey_error > 1e-12 * max(ref.norm, 1e-300) else float("nan")
    p = ref.row_projector
    sym = 0.5 * (w @ b.T + b @ w.T)
    fa_sig, gd_sig = e @ b.T, e @ w.T
    c = cosine(fa_sig, gd_sig)
    angle = float(np.degrees(np.arccos(min(1.0, max(-1.0, c))))) if math.isfinite(c) else float("nan")
    ztz = z.T @ z
    nz = float(torch.linalg.norm(ztz))
    cons = float(torch.linalg.norm(ztz - 2 * sym)) / nz if nz > 0 else float("nan")
    return {
        "error": rel,
        "excess": excess,
        "ey_ratio": ey_ratio,
        "alignment": cosine(w, b),
        "alignment_row": cosine(w @ p, b @ p),
        "sym_min_eig": float(torch.linalg.eigvalsh(sym)[0]),
        "update_angle": angle,
        "angle_col": largest_angle_to(z, ref.u_opt) if ref.u_opt.shape[1] else float("nan"),
        "angle_row": largest_angle_to(w.T, ref.v_opt) if ref.v_opt.shape[1] else float("nan"),
        "conservation": cons,
    }


# --- updates ----------------------------------------------------------------------------------
def factorization_step(z: torch.Tensor, w: torch.Tensor, y: torch.Tensor, b: torch.Tensor | None,
                       lr: float, rule: str = "fa") -> tuple[torch.Tensor, torch.Tensor]:
    """One step of ``rule`` (see the module docstring for the equations).

    Parameters
    ----------
    z, w : torch.Tensor
        Current ``(n, r)`` and ``(r, m)`` factors.
    y : torch.Tensor
        Target ``(n, m)``.
    b : torch.Tensor or None
        Feedback ``(r, m)``; unused (may be ``None``) for ``"gd"``.
    lr : float
        Step size.
    rule : {"gd", "fa", "fa_star"}

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        The new ``Z`` and ``W``.
    """
    e = y - z @ w
    if rule == "gd":
        return z + lr * (e @ w.T), w + lr * (z.T @ e)
    if rule == "fa":
        return z + lr * (e @ b.T), w + lr * (z.T @ e)
    if rule == "fa_star":
        z_new = z + lr * (e @ b.T)
        return z_new, w + lr * (0.5 * (z + z_new)).T @ e
    raise ValueError(f"rule: expected one of {RULES}, got {rule!r}")


@dataclass(kw_only=True)
class RecordedRun:
    """What every trained run records: the steps, the metrics along them, the last values."""

    steps: np.ndarray
    trajectory: dict
    final: dict
    settings: dict = field(default_factory=dict)
    diverged: bool = False


@dataclass
class FactorizationRun(RecordedRun):
    """A trained factorization and its trajectory.

    Attributes
    ----------
    rule : str
        ``"gd"``, ``"fa"`` or ``"fa_star"``.
    z, w, b : torch.Tensor
        Final factors and the feedback matrix (drawn for every rule, so GD and FA with the same
        seed share it and the initialization).
    steps : np.ndarray
        Step numbers at which the trajectory was recorded (0 and the last step included).
    trajectory : dict of str to np.ndarray
        One array per metric in :data:`METRICS`, aligned with ``steps``.
    final : dict of str to float
        Metrics at the last step, plus ``fa_projection_error`` (relative error of projecting
        ``Y`` on ``col(Y B^T)``), ``ey_error`` (relative Eckart-Young error) and
        ``projection_gap`` (``error - fa_projection_error``; zero for FA from zero init).
    settings : dict
        ``lr``, ``steps``, ``init_scale``, ``feedback_scale``, ``seed``.
    diverged : bool
        True when the iterates became non-finite; the trajectory stops there (NaN after).
    """

    rule: str
    z: torch.Tensor
    w: torch.Tensor
    b: torch.Tensor

    def __repr__(self) -> str:
        return (f"FactorizationRun(rule={self.rule!r}, error={self.final.get('error', float('nan')):.3e}, "
                f"excess={self.final.get('excess', float('nan')):.3e}, steps={int(self.steps[-1])})")


def record_schedule(steps: int, record_every: int | None) -> np.ndarray:
    """Recorded step numbers: ``0, k, 2k, ...`` and always the last step."""
    k = max(1, steps // 200) if record_every is None else _checks.positive_int("record_every", record_every)
    sched = list(range(0, steps + 1, k))
    if sched[-1] != steps:
        sched.append(steps)
    return np.asarray(sched, dtype=np.int64)


def train_factorization(y, rank: int, rule: str = "fa", *, lr: float | None = None,
                        steps: int = 3000, init_scale: float | None = None, feedback=None,
                        feedback_scale: float | None = None, seed: int = 0,
                        record_every: int | None = None, z0=None, w0=None) -> FactorizationRun:
    """Train ``Z W ≈ Y`` with GD, FA or FA* and record the metrics along the way.

    Parameters
    ----------
    y : (n, m) array
        Target matrix.
    rank : int
        Inner dimension ``r``.
    rule : {"gd", "fa", "fa_star"}
        Update rule (module docstring).
    lr : float, optional
        Step size; default ``0.5 / ||Y||_2``.
    steps : int
        Number of updates.
    init_scale : float, optional
        Entries of ``Z_0`` and ``W_0`` are ``N(0, init_scale^2 ||Y||_2 / r)``. Default 0 (exact
        zero start) for FA and FA*, ``1e-3`` for GD (zero is a stationary point of GD).
    feedback : (r, m) array, optional
        Feedback matrix; default :func:`feedback_matrix` with ``feedback_scale``.
    feedback_scale : float, optional
        Scale of the default feedback; default ``sqrt(||Y||_2)``.
    seed : int
        Seeds the feedback matrix and the initialization (two streams derived from it, distinct
        from the stream :func:`low_rank_matrix` uses with the same seed).
    record_every : int, optional
        Record metrics every this many steps (default ``steps // 200``).
    z0, w0 : array, optional
        Explicit starting factors (override ``init_scale``).

    Returns
    -------
    FactorizationRun

    Raises
    ------
    ValueError
        Bad shapes, ranks, step sizes or an unknown rule.

    Examples
    --------
    >>> y = low_rank_matrix(30, 20, 3, seed=0)
    >>> run = train_factorization(y, 3, "fa", steps=3000, seed=0)
    >>> run.final["error"] < 1e-8
    True
    """
    y = _checks.matrix("y", y)
    n, m = y.shape
    r = _checks.positive_int("rank", rank)
    rule = _checks.choice("rule", rule, RULES)
    steps = _checks.positive_int("steps", steps)
    seed = _checks.seed_value(seed)
    sigma1 = float(torch.linalg.matrix_norm(y, ord=2))
    if sigma1 == 0.0:
        raise ValueError("y: the target is all zeros; nothing to factorize")
    lr = 0.5 / sigma1 if lr is None else _checks.positive_float("lr", lr)
    if init_scale is None:
        init_scale = 1e-3 if rule == "gd" else 0.0
    init_scale = _checks.positive_float("init_scale", init_scale, allow_zero=True)
    fscale = math.sqrt(sigma1) if feedback_scale is None else _checks.positive_float(
        "feedback_scale", feedback_scale)
    sched = record_schedule(steps, record_every)

    if feedback is None:
        b = feedback_matrix(r, m, scale=fscale, seed=derive_seed(seed, "feedback"))
    else:
        b = _checks.matrix("feedback", feedback)
        if tuple(b.shape) != (r, m):
            raise ValueError(f"feedback: expected shape {(r, m)}, got {tuple(b.shape)}")
    gen = rng(derive_seed(seed, "init"))
    std = init_scale * math.sqrt(sigma1 / r)
    z = torch.randn(n, r, generator=gen, dtype=_DT) * std
    w = torch.randn(r, m, generator=gen, dtype=_DT) * std
    if z0 is not None:
        z = _checks.matrix("z0", z0)
        if tuple(z.shape) != (n, r):
            raise ValueError(f"z0: expected shape {(n, r)}, got {tuple(z.shape)}")
    if w0 is not None:
        w = _checks.matrix("w0", w0)
        if tuple(w.shape) != (r, m):
            raise ValueError(f"w0: expected shape {(r, m)}, got {tuple(w.shape)}")

    ref = FactorizationReference.build(y, r)
    traj = {k: np.full(len(sched), np.nan) for k in METRICS}
    diverged = False
    rec = 0
    for t in range(steps + 1):
        if rec < len(sched) and t == sched[rec]:
            for key, val in factorization_metrics(ref, z, w, b).items():
                traj[key][rec] = val
            rec += 1
        if t == steps:
            break
        z, w = factorization_step(z, w, y, b, lr, rule)
        if not (bool(torch.isfinite(z).all()) and bool(torch.isfinite(w).all())):
            diverged = True
            break
    final = {k: float(v[-1]) for k, v in traj.items()}
    final["fa_projection_error"] = fa_projection_error(y, b) / ref.norm
    final["ey_error"] = ref.ey_error / ref.norm
    final["projection_gap"] = final["error"] - final["fa_projection_error"]
    settings = {"lr": lr, "steps": steps, "init_scale": init_scale, "feedback_scale": fscale,
                "seed": seed, "rank": r, "shape": [n, m]}
    return FactorizationRun(rule, z, w, b, steps=sched, trajectory=traj, final=final,
                            settings=settings, diverged=diverged)


__all__ = ["RULES", "METRICS", "low_rank_matrix", "feedback_matrix", "numerical_rank",
           "eckart_young_error", "orthonormal_basis", "projection_error", "fa_projection_error",
           "principal_angles", "largest_angle_to", "cosine", "FactorizationReference",
           "factorization_metrics", "factorization_step", "FactorizationRun", "record_schedule",
           "train_factorization"]

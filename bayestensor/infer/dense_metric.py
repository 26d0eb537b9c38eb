"""SGHMC's dense metric for small models: the inverse of the chains' averaged Hessian.

A diagonal preconditioner leaves a correlated posterior's flat directions to diffuse at the
step of its steep ones: on a Gaussian whose correlations reach 0.8 the effective sample size
falls to 1-2% of the draws. For a model of a few hundred coordinates the exact Hessian costs
``D`` Hessian-vector products, so SGHMC can move in whitened coordinates ``u = L^{-1} theta``
with ``L L^T = P = |H|^{-1}``, the mass matrix of Riemannian HMC at a fixed point (Girolami &
Calderhead, 2011) made positive definite by taking eigenvalue magnitudes, as the SoftAbs metric
of Betancourt (2013) does. For a Gaussian posterior the whitened curvature is the identity,
so the step that meets SGHMC's temperature target is known without measuring it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: SGHMC floors every curvature here, diagonal or dense: a step scale of at most 10
#: unconstrained units. In the tails of a density the curvature vanishes (the logit of a
#: Beta(0.3, 0.7)), and an unbounded ``P`` would throw a chain to where its constrained value
#: rounds to the support's boundary and stays.
MIN_CURVATURE = 1e-2
#: ``metric="auto"`` makes the metric dense for a user's model with at most this many
#: unconstrained coordinates and full-batch gradients: ``D`` Hessian-vector products per
#: estimate and ``D x D`` matrix products per step stay cheap against the model's own cost.
DENSE_MAX_DIM = 200
METRICS = ("auto", "diag", "dense")


def choose_metric(metric: str, dim: int, stochastic: bool, builtin: bool,
                  precondition: bool) -> str:
    """``"dense"`` or ``"diag"`` for ``metric`` (``"auto"``, ``"diag"`` or ``"dense"``).

    ``"auto"`` is dense for a user's model (``builtin`` False) of at most ``DENSE_MAX_DIM``
    coordinates sampled on full-batch gradients with ``precondition``, unless the Hessian at
    the start is not :func:`identified` (decided there, by the sampler). Built-in low-rank models
    keep the diagonal: their factors' posteriors are invariant to slice rotations and
    permutations, so one averaged Hessian describes none of their modes well.
    """
    if metric not in METRICS:
        raise ValueError(f"metric: expected one of {METRICS}, got {metric!r}")
    if metric == "dense":
        if stochastic:
            raise ValueError("metric: 'dense' needs full-batch gradients (no batch_size, no "
                             "batches, no sub-sampled plate); use 'diag' or 'auto'")
        if not precondition:
            raise ValueError("metric: 'dense' is a preconditioner; it needs precondition=True")
        return "dense"
    if metric == "auto" and precondition and not stochastic and not builtin \
            and dim <= DENSE_MAX_DIM:
        return "dense"
    return "diag"


def identified(hessian: torch.Tensor, min_curvature: float = MIN_CURVATURE) -> bool:
    """Whether ``-Hessian`` is positive definite with every eigenvalue above ``min_curvature``
    (no direction with a Laplace sd over ``min_curvature ** -0.5``).

    ``metric="auto"`` keeps the diagonal metric where this fails: a direction flatter than
    that is a symmetry of the model (the rotations and scalings of a low-rank factorization,
    or a site the data do not inform), and a Laplace step along it can throw a chain past
    where the density is finite.
    """
    h64 = torch.nan_to_num(hessian.double(), nan=0.0, posinf=0.0, neginf=0.0)
    lam = torch.linalg.eigvalsh(0.5 * (h64 + h64.T))
    return bool(lam.min() > min_curvature)


@dataclass(frozen=True)
class DenseRoot:
    """A square root ``L`` of the metric ``P = L L^T`` and its inverse, for rows of vectors."""

    root: torch.Tensor     # (D, D) L
    inverse: torch.Tensor  # (D, D) L^{-1}

    @classmethod
    def from_hessian(cls, hessian: torch.Tensor, min_curvature: float) -> "DenseRoot":
        """``P = V diag(1 / max(|lambda|, min_curvature)) V^T`` from ``-Hessian = V lambda V^T``.

        The eigen-decomposition runs in float64 whatever the model's dtype, so a float32
        model's weakly curved directions are not lost beside steep ones. A non-finite entry
        (a chain where the density is undefined) counts as no curvature.
        """
        h64 = torch.nan_to_num(hessian.double(), nan=0.0, posinf=0.0, neginf=0.0)
        lam, vecs = torch.linalg.eigh(0.5 * (h64 + h64.T))
        lam = lam.abs().clamp_min(min_curvature)
        root = vecs * lam.rsqrt()
        inverse = (vecs * lam.sqrt()).T
        return cls(root.to(hessian.dtype), inverse.to(hessian.dtype))

    def whiten(self, x: torch.Tensor) -> torch.Tensor:
        """``L^{-1} x`` for each row of ``x`` ``(C, D)``."""
        return x @ self.inverse.T

    def color(self, u: torch.Tensor) -> torch.Tensor:
        """``L u`` for each row of ``u`` ``(C, D)``."""
        return u @ self.root.T

    def pull_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        """``L^T g``: the gradient in whitened coordinates, for each row of ``grad``."""
        return grad @ self.root

    def diagonal(self) -> torch.Tensor:
        """``diag(P)`` ``(D,)``: each coordinate's marginal step scale."""
        return self.root.pow(2).sum(1)

"""CP starts from observed entries alone, for tensors too large to hold densely.

A 1000^3 tensor has 1e9 entries (4 GB in float32), so the dense starts of ``decompose`` cannot
run on it. Here everything works on the ``n_obs`` observed entries:

1. **Spectral start** (Montanari and Sun, "Spectral algorithms for tensor completion", Comm.
   Pure Appl. Math. 2018, section 2): for each mode, the top eigenvectors of the mode's
   unfolding times its transpose with the diagonal deleted. The diagonal holds each row's sum
   of squared observations, noise included, and would dominate at low sampling; the
   off-diagonal part is an unbiased estimate (up to the factor ``p^2``) of the true
   unfolding's Gram matrix. The tensor projected onto those subspaces (the observed entries
   scaled by ``1 / p``) gives a small ``R^n`` core, which TensorLy's CP-ALS decomposes; the
   factors are the subspaces times the core's factors.
2. **ALS refinement**: ridge-regularized alternating least squares over the observed entries,
   each factor row solving its ``R x R`` normal equations.

Why: at 1e6 observations of a 1000^3 rank-20 tensor (about 1.6 ``n^1.5 r``, near where
polynomial-time completion becomes possible), ALS from random factors stays at relative error
1.0; from the spectral start it reaches 0.03 in three sweeps (``benchmarks/scale_probe.py``).
Written by hand because neither TensorLy nor PyTorch completes a tensor from a list of entries
without its dense array.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from bayestensor.checks import choice, positive_float, positive_int, seed_value
from bayestensor.formats.decompose import ALS_JITTER, balance_cp_factors, cp_als

#: Padded elements (rows x most entries in a row x rank) per block of rows in an ALS update:
#: bounds the extra memory to 2^24 doubles (128 MiB) whatever the data's skew.
ALS_BLOCK_ELEMENTS = 2 ** 24
#: Elements of the Khatri-Rao block in the core projection (entries x core size / first rank).
CORE_BLOCK_ELEMENTS = 2 ** 23
#: Largest mode whose Gram matrix is decomposed densely; above it, ARPACK's sparse ``eigsh``.
DENSE_EIGH_SIZE = 4096
STARTS = ("spectral", "random")


def cp_from_entries(indices, values, shape: Sequence[int], rank: int, *,
                    start: str = "spectral", n_sweeps: int = 50, tol: float = 1e-4,
                    ridge: float = 1e-2, seed: int = 0) -> list[torch.Tensor]:
    """CP factors from observed entries alone (see ``CPTensor.from_entries``).

    ALS stops after ``n_sweeps`` sweeps, or once a sweep changes the root-mean-square
    residual on the observed entries by less than a relative ``tol``. Returns balanced
    float32 factors ``(I_n, rank)``.
    """
    choice("start", start, STARTS)
    positive_int("n_sweeps", n_sweeps)
    positive_float("tol", tol, allow_zero=True)
    positive_float("ridge", ridge, allow_zero=True)
    seed = seed_value(seed)
    idx, y = _entry_arrays(indices, values, shape)
    if start == "spectral":
        factors = spectral_cp_start(idx, y, shape, rank, seed=seed)
    else:
        factors = _random_factors(y, shape, rank, seed)
    groups = [RowGroups(idx, y, n, size, rank) for n, size in enumerate(shape)]
    previous = math.inf
    for _ in range(n_sweeps):
        for n in range(len(shape)):
            factors[n], fitted = als_rows(factors, groups[n], ridge)
        rms = float((groups[-1].values - fitted).pow(2).mean().sqrt())
        if abs(previous - rms) <= tol * rms:
            break
        previous = rms
    balanced = balance_cp_factors([f.numpy() for f in factors])
    return [torch.as_tensor(f, dtype=torch.float32) for f in balanced]


def _entry_arrays(indices, values, shape: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``indices`` as an ``(n, ndim)`` long tensor within ``shape`` and ``values`` as ``(n,)``
    float64, ``n >= 1``; a ``ValueError`` naming the argument otherwise."""
    idx = torch.as_tensor(np.asarray(indices))
    if idx.ndim != 2 or idx.shape[1] != len(shape) or idx.shape[0] < 1 or idx.is_floating_point():
        raise ValueError(f"indices: expected an (n, {len(shape)}) integer array with n >= 1, "
                         f"got shape {tuple(idx.shape)} of {idx.dtype}")
    idx = idx.long()
    if bool((idx < 0).any()) or bool((idx >= torch.as_tensor(tuple(shape))).any()):
        raise ValueError(f"indices: expected entries within the shape {tuple(shape)}")
    y = torch.as_tensor(np.asarray(values), dtype=torch.float64)
    if y.shape != (idx.shape[0],):
        raise ValueError(f"values: expected one value per index, shape ({idx.shape[0]},), got "
                         f"{tuple(y.shape)}")
    return idx, y


def _random_factors(y: torch.Tensor, shape: Sequence[int], rank: int,
                    seed: int) -> list[torch.Tensor]:
    """Gaussian factors whose reconstruction has the data's mean square."""
    gen = torch.Generator().manual_seed(seed)
    scale = (float(y.pow(2).mean()) / rank) ** (1.0 / (2 * len(shape)))
    return [torch.randn(s, rank, generator=gen, dtype=torch.float64) * scale for s in shape]


def spectral_cp_start(idx: torch.Tensor, y: torch.Tensor, shape: Sequence[int], rank: int, *,
                      seed: int = 0) -> list[torch.Tensor]:
    """CP factors ``(I_n, rank)`` float64 from the spectral subspaces and projected core.

    A mode smaller than ``rank`` gives all its ``I_n`` directions; the core's CP then carries
    the rank.
    """
    p = idx.shape[0] / math.prod(shape)
    bases = [unfolding_subspace(idx, y, shape, n, min(rank, shape[n])) for n in range(len(shape))]
    core = projected_core(idx, y, bases) / p
    core_factors = cp_als(core.numpy(), rank, init="random" if rank > min(core.shape) else "svd",
                          seed=seed)
    return [u @ torch.as_tensor(w) for u, w in zip(bases, core_factors)]


def unfolding_subspace(idx: torch.Tensor, y: torch.Tensor, shape: Sequence[int], mode: int,
                       k: int) -> torch.Tensor:
    """Top-``k`` eigenvectors ``(I_mode, k)`` of ``M M^T`` with its diagonal deleted, ``M``
    the mode's unfolding of the observed entries (zeros elsewhere)."""
    column = _unfolding_columns(idx, shape, mode)
    unfolding = _scipy_sparse().csr_matrix((y.numpy(), (idx[:, mode].numpy(), column)),
                                           shape=(shape[mode], int(column.max()) + 1))
    gram = (unfolding @ unfolding.T).tocsr()
    gram.setdiag(0.0)
    if shape[mode] <= DENSE_EIGH_SIZE or k >= shape[mode] - 1:
        eigenvalues, vectors = np.linalg.eigh(gram.toarray())
    else:
        eigenvalues, vectors = _scipy_sparse().linalg.eigsh(gram, k=k, which="LA")
    top = np.argsort(eigenvalues)[::-1][:k]
    return torch.as_tensor(np.ascontiguousarray(vectors[:, top]))


def _unfolding_columns(idx: torch.Tensor, shape: Sequence[int], mode: int) -> np.ndarray:
    """Column of each entry in the mode's unfolding: the flat index of its other modes, or,
    where that could overflow int64, the rank of their index tuple among the observed ones."""
    others = np.delete(idx.numpy(), mode, axis=1)
    other_shape = [s for n, s in enumerate(shape) if n != mode]
    if math.prod(other_shape) < 2 ** 62:
        return np.ravel_multi_index(tuple(others.T), other_shape)
    return np.unique(others, axis=0, return_inverse=True)[1].reshape(-1)


def _scipy_sparse():
    """SciPy's sparse module, imported on first use: no other fit needs it (0.3 s)."""
    import scipy.sparse
    import scipy.sparse.linalg

    return scipy.sparse


def projected_core(idx: torch.Tensor, y: torch.Tensor, bases: list[torch.Tensor]) -> torch.Tensor:
    """``sum_e y_e (U_1[i_e1] outer ... outer U_N[i_eN])``: the observed entries projected onto
    the bases (``(k_1, ..., k_N)``), computed in blocks of entries as one matrix product of
    the first mode's rows with the Khatri-Rao product of the others'."""
    ks = [b.shape[1] for b in bases]
    rest = math.prod(ks[1:])
    block = max(1, CORE_BLOCK_ELEMENTS // max(rest, 1))
    core = torch.zeros(ks[0], rest, dtype=torch.float64)
    for start in range(0, idx.shape[0], block):
        rows = idx[start:start + block]
        khatri_rao = torch.ones(rows.shape[0], 1, dtype=torch.float64)
        for n in range(1, len(bases)):
            khatri_rao = (khatri_rao.unsqueeze(2) * bases[n][rows[:, n]].unsqueeze(1)).flatten(1)
        first = bases[0][rows[:, 0]] * y[start:start + block].unsqueeze(1)
        core += first.T @ khatri_rao
    return core.reshape(ks)


class RowGroups:
    """The observed entries sorted by their index in one mode, and that mode's blocks of rows.

    An ALS update needs, for every row, the Gram matrix of the other factors' products over
    that row's entries. Summing outer products with ``index_add`` moves ``R^2`` numbers per
    entry through memory; packing each row's entries into a zero-padded ``(rows, most
    entries, R)`` block and taking one batched product is about 5x faster at 1e6 entries.
    Blocks of rows keep the padding within ``ALS_BLOCK_ELEMENTS / R`` slots whatever the skew.
    The sort and the blocks depend only on the data, so they are made once for all sweeps.
    """

    def __init__(self, indices: torch.Tensor, values: torch.Tensor, mode: int, size: int,
                 rank: int):
        self.mode, self.size = mode, size
        order = torch.argsort(indices[:, mode], stable=True)
        self.indices, self.values = indices[order], values[order]
        self.rows = self.indices[:, mode]
        self.counts = torch.bincount(self.rows, minlength=size)
        self.entry_starts = torch.cumsum(self.counts, 0) - self.counts
        self.position = torch.arange(self.rows.shape[0]) - self.entry_starts[self.rows]
        self.blocks = list(self._blocks(rank))

    def _blocks(self, rank: int):
        """``(first row, end row, first entry, end entry, most entries in a row)`` per block."""
        budget = max(1, ALS_BLOCK_ELEMENTS // rank)
        counts = self.counts.tolist()
        first, widest = 0, 0
        for row, count in enumerate(counts):
            if row > first and (row - first + 1) * max(widest, count) > budget:
                yield self._block(first, row, widest)
                first, widest = row, count
            else:
                widest = max(widest, count)
        yield self._block(first, self.size, widest)

    def _block(self, first: int, end: int, widest: int):
        begin = int(self.entry_starts[first])
        stop = int(self.entry_starts[end - 1] + self.counts[end - 1])
        return first, end, begin, stop, widest


def als_rows(factors: list[torch.Tensor], groups: RowGroups,
             ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge least-squares update of every row of factor ``groups.mode`` given the others.

    ``ridge`` is relative to the mean diagonal of the per-row Gram matrices; rows without
    observations are shrunk to zero. Returns the new factor and the fitted entries (in the
    order of ``groups.values``), which give the residual of the sweep for free.
    """
    gram, rhs, design = row_normal_equations(factors, groups)
    lam = ridge * float(gram.diagonal(dim1=-2, dim2=-1).mean())
    eye = torch.eye(gram.shape[-1], dtype=torch.float64)
    factor = torch.linalg.solve(gram + (lam + ALS_JITTER) * eye, rhs.unsqueeze(-1)).squeeze(-1)
    return factor, row_fitted(design, factor, groups)


def row_fitted(design: torch.Tensor, factor: torch.Tensor, groups: RowGroups) -> torch.Tensor:
    """The fitted entries ``(n,)`` of factor ``groups.mode`` with the design of
    :func:`row_normal_equations`, a block of entries at a time: at once, the gathered rows
    and their product with the design are two more ``(n, R)`` arrays (4 GB at 1e7 entries of
    rank 25)."""
    fitted = torch.empty(design.shape[0], dtype=torch.float64)
    for _, _, begin, stop, _ in groups.blocks:
        rows = factor.index_select(0, groups.rows[begin:stop])
        fitted[begin:stop] = rows.mul_(design[begin:stop]).sum(1)
    return fitted


def row_normal_equations(factors: list[torch.Tensor], groups: RowGroups, offset: float = 0.0
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row of factor ``groups.mode``, the least-squares system given the other factors.

    Returns the Gram matrices ``(I, R, R)`` and right-hand sides ``(I, R)`` of the rows (zero
    for a row without observations; the right-hand sides of the values minus ``offset``), and
    the design ``(n, R)``: each entry's product of the other factors' rows, in the order of
    ``groups.values``. Float64 factors.
    """
    n, idx = groups.mode, groups.indices
    rank = factors[0].shape[1]
    others = [m for m in range(len(factors)) if m != n]
    design = torch.empty(idx.shape[0], rank, dtype=torch.float64)
    gram = torch.zeros(groups.size, rank, rank, dtype=torch.float64)
    rhs = torch.zeros(groups.size, rank, dtype=torch.float64)
    for first, end, begin, stop, widest in groups.blocks:
        # the design a block at a time: gathered whole, each factor's rows are (n, R) more
        part = factors[others[0]].index_select(0, idx[begin:stop, others[0]])
        for m in others[1:]:
            part.mul_(factors[m].index_select(0, idx[begin:stop, m]))
        design[begin:stop] = part
        rows = groups.rows[begin:stop] - first
        pos = groups.position[begin:stop]
        packed = torch.zeros(end - first, widest, rank, dtype=torch.float64)
        packed[rows, pos] = part
        packed_y = torch.zeros(end - first, widest, dtype=torch.float64)
        packed_y[rows, pos] = groups.values[begin:stop] - offset
        gram[first:end] = packed.transpose(1, 2) @ packed
        rhs[first:end] = (packed.transpose(1, 2) @ packed_y.unsqueeze(-1)).squeeze(-1)
    return gram, rhs, design

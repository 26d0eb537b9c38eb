"""CP (CANDECOMP/PARAFAC) format: a sum of R rank-one tensors."""

from __future__ import annotations

import string

import numpy as np
import tensorly as tl
import torch

from bayestensor.formats.base import LowRankTensor, ParamSpec, check_modes
from bayestensor.formats.decompose import cp_from_entries, cp_start


class CPTensor(LowRankTensor):
    """CP tensor ``X[i_1..i_N] = sum_r prod_n A_n[i_n, r]`` with factors ``A_n`` of shape (I_n, R).

    There is one rank dimension; rank slice ``r`` is column ``r`` of every factor. Weights are
    absorbed into the factors.

    Examples
    --------
    >>> x = CPTensor.random((4, 5, 6), rank=3, seed=0)
    >>> x.reconstruct().shape
    torch.Size([4, 5, 6])
    """

    format_name = "cp"

    @classmethod
    def normalize_rank(cls, shape, rank):
        check_modes("CP", shape)
        if isinstance(rank, (list, tuple)):
            if len(rank) != 1:
                raise ValueError(f"rank: CP has one rank dimension, got {rank}")
            rank = rank[0]
        rank = int(rank)
        if rank < 1:
            raise ValueError(f"rank: expected a positive integer, got {rank}")
        return (rank,)

    @classmethod
    def specs(cls, shape, rank):
        (r,) = cls.normalize_rank(shape, rank)
        return [ParamSpec(f"factor{n}", (int(s), r), {1: 0}) for n, s in enumerate(shape)]

    def _specs_from_params(self):
        r = self.params[0].shape[-1]
        return self.specs(self.shape, r)

    @property
    def factors(self) -> list[torch.Tensor]:
        return self.params

    def reconstruct(self):
        letters = string.ascii_lowercase[: self.ndim]
        expr = ",".join(f"...{c}z" for c in letters) + f"->...{letters}"
        return torch.einsum(expr, *self.params)

    def _entries(self, idx):
        # Sample dims go last so each gathered factor row is one contiguous block of
        # R * samples numbers: the gather and its backward (index_add) are row copies.
        nb = len(self.batch_shape)
        prod = None
        for n, f in enumerate(self.params):
            rows_by_sample = f.movedim(tuple(range(nb)), tuple(range(-nb, 0))) if nb else f
            flat = rows_by_sample.reshape(f.shape[-2], -1)
            rows = flat.index_select(0, idx[:, n])
            prod = rows if prod is None else prod * rows
        out = prod.reshape((idx.shape[0], self.params[0].shape[-1]) + self.batch_shape).sum(1)
        return out.movedim(0, -1) if nb else out

    @classmethod
    def from_tensor(cls, tensor, rank, *, mask=None, seed=0, n_iter_max=100):
        (r,) = cls.normalize_rank(np.shape(tensor), rank)
        return cls(np.shape(tensor), cp_start(tensor, r, mask=mask, n_iter_max=n_iter_max,
                                              seed=seed))

    @classmethod
    def from_entries(cls, indices, values, shape, rank, *, n_sweeps: int = 10, ridge: float = 1e-2,
                     seed: int = 0, chunk: int = 65536) -> "CPTensor":
        """Initialize from observed entries alone by ridge-regularized alternating least squares.

        For tensors too large to hold densely (where ``from_tensor`` cannot run): each sweep
        solves, for every row of every factor, the R x R normal equations over that row's
        observed entries, accumulated with ``index_add`` in O(n_obs R^2). Rows without
        observations are shrunk to zero by the ridge term. The outer products are accumulated
        ``chunk`` observations at a time, so the extra memory is ``chunk * R^2`` doubles
        (not ``n_obs * R^2``: 5 GB at a million entries and rank 25).

        Parameters
        ----------
        indices : (n, ndim) integer array
        values : (n,) array
        shape : tuple of int
        rank : int
        n_sweeps : int
            ALS sweeps over all modes.
        ridge : float
            Ridge penalty, relative to the mean diagonal of the per-row Gram matrices.
        seed : int
        chunk : int
            Observations per accumulation block.
        """
        (r,) = cls.normalize_rank(shape, rank)
        return cls(tuple(shape), cp_from_entries(indices, values, shape, r, n_sweeps=n_sweeps,
                                                 ridge=ridge, seed=seed, chunk=chunk))

    def _to_tensorly(self, factors):
        return tl.cp_tensor.CPTensor((np.ones(factors[0].shape[1]), factors))

"""TT-matrix (TTM, matrix product operator) format."""

from __future__ import annotations

import numpy as np
import tensorly as tl
import torch

from bayestensor.formats.base import as_float_tensor
from bayestensor.formats.decompose import ttm_start
from bayestensor.formats.tt import (CoreTrain, normalize_tt_rank, tt_chain_dense, tt_chain_entries,
                                    tt_core_specs)


class TTMatrix(CoreTrain):
    """TT-matrix: a (prod I_k) x (prod J_k) matrix stored as cores of shape (r_{k-1}, I_k, J_k, r_k).

    As a tensor it has shape ``(I_1, ..., I_N, J_1, ..., J_N)`` (TensorLy's
    ``tt_matrix_to_tensor`` layout); ``to_matrix()`` reshapes it to (prod I, prod J). Rank
    dimensions and slices are those of the tensor train.
    """

    format_name = "ttm"
    start_cores = staticmethod(ttm_start)
    core_modes = 2

    @classmethod
    def normalize_rank(cls, shape, rank):
        if len(shape) % 2 or len(shape) < 4:
            raise ValueError(
                f"shape: TT-matrix needs (I_1..I_N, J_1..J_N) with N >= 2, got {tuple(shape)}"
            )
        return normalize_tt_rank(len(shape) // 2, rank)

    @classmethod
    def specs(cls, shape, rank):
        ranks = cls.normalize_rank(shape, rank)
        n = len(shape) // 2
        return tt_core_specs([(int(shape[k]), int(shape[n + k])) for k in range(n)], ranks)

    @property
    def n_cores(self) -> int:
        return len(self.shape) // 2

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.shape[: self.n_cores]

    @property
    def col_shape(self) -> tuple[int, ...]:
        return self.shape[self.n_cores:]

    @property
    def matrix_shape(self) -> tuple[int, int]:
        return (int(np.prod(self.row_shape)), int(np.prod(self.col_shape)))

    def reconstruct(self):
        flat = [c.reshape(c.shape[:-4] + (c.shape[-4], c.shape[-3] * c.shape[-2], c.shape[-1]))
                for c in self.params]
        dense = tt_chain_dense(flat)
        n = self.n_cores
        inter = sum(([i, j] for i, j in zip(self.row_shape, self.col_shape)), [])
        dense = dense.reshape(self.batch_shape + tuple(inter))
        nb = len(self.batch_shape)
        order = list(range(nb)) + [nb + 2 * k for k in range(n)] + [nb + 2 * k + 1 for k in range(n)]
        return dense.permute(order)

    def to_matrix(self) -> torch.Tensor:
        """Dense matrix of shape ``batch_shape + (prod I, prod J)``."""
        return self.reconstruct().reshape(self.batch_shape + self.matrix_shape)

    def _entries(self, idx):
        n = self.n_cores
        slices = []
        for k, c in enumerate(self.params):
            i_size, j_size = c.shape[-3], c.shape[-2]
            merged = c.reshape(c.shape[:-3] + (i_size * j_size, c.shape[-1]))
            slices.append(merged.index_select(-2, idx[:, k] * j_size + idx[:, n + k]))
        return tt_chain_entries(slices)

    @classmethod
    def from_matrix(cls, matrix, row_shape, col_shape, rank, *, seed=0):
        """Decompose a dense matrix whose rows factor as ``row_shape`` and columns as ``col_shape``.

        The cores have the matrix's float dtype (float64 stays float64).
        """
        m = as_float_tensor("matrix", matrix)
        if m.shape != (int(np.prod(row_shape)), int(np.prod(col_shape))):
            raise ValueError(f"matrix: shape {tuple(m.shape)} does not match row_shape "
                             f"{tuple(row_shape)} x col_shape {tuple(col_shape)}")
        tensor = m.reshape(tuple(row_shape) + tuple(col_shape))
        return cls.from_tensor(tensor, rank, seed=seed)

    def _mode_dot_matrix(self, params, matrix, mode):
        n = self.n_cores
        k = mode % n
        expr = "ji,...aibs->...ajbs" if mode < n else "ji,...abis->...abjs"
        params[k] = torch.einsum(expr, matrix, params[k])
        shape = self.shape[:mode] + (matrix.shape[0],) + self.shape[mode + 1:]
        return TTMatrix(shape, params)

    def _to_tensorly(self, cores):
        return tl.tt_matrix.TTMatrix(cores)

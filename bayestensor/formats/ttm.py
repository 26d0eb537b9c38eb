"""TT-matrix (TTM, matrix product operator) format."""

from __future__ import annotations

import numpy as np
import tensorly as tl
import torch

from bayestensor.formats.base import as_float_tensor
from bayestensor.formats.decompose import ttm_start
from bayestensor.formats.tt import CoreTrain, normalize_tt_rank, tt_chain_dense, tt_core_specs


class TTMatrix(CoreTrain):
    """TT-matrix: a (prod I_k) x (prod J_k) matrix stored as cores of shape (r_{k-1}, I_k, J_k, r_k).

    As a tensor it has shape ``(I_1, ..., I_N, J_1, ..., J_N)`` (TensorLy's
    ``tt_matrix_to_tensor`` layout); ``to_matrix()`` reshapes it to (prod I, prod J). Rank
    dimensions and slices are those of the tensor train.

    Parameters
    ----------
    shape : tuple of int
        Shape ``(I_1, ..., I_N, J_1, ..., J_N)`` of the tensor, row modes then column modes.
    params : list of arrays
        One core ``batch_shape + (r_{k-1}, I_k, J_k, r_k)`` per (row, column) pair, in train
        order, the first core's leading rank and the last core's trailing rank 1 and
        neighbouring ranks equal (NumPy arrays are converted).
    """

    format_name = "ttm"
    start_cores = staticmethod(ttm_start)
    core_modes = 2

    @classmethod
    def normalize_rank(cls, shape, rank, *, name="rank"):
        """The internal ranks ``(r_1, ..., r_{N-1})`` of a train of ``N = len(shape) // 2``
        cores.

        Parameters
        ----------
        shape : sequence of int
            Shape ``(I_1, ..., I_N, J_1, ..., J_N)`` with ``N >= 2``: an even number of at
            least four modes (the sizes are not checked here).
        rank : int or sequence of int
            One integer for every bond, the ``N - 1`` internal ranks, or all ``N + 1`` ranks
            with the boundary ones (which must be 1) at both ends.
        name : str
            The argument's name in error messages.

        Returns
        -------
        tuple of int
            ``N - 1`` internal ranks.

        Raises
        ------
        ValueError
            If ``shape`` has an odd number of modes or fewer than four, ``rank`` is not a
            positive integer or a sequence of them of one of those lengths, or a given
            boundary rank is not 1.
        """
        if len(shape) % 2 or len(shape) < 4:
            raise ValueError(
                f"shape: TT-matrix needs (I_1..I_N, J_1..J_N) with N >= 2, got {tuple(shape)}"
            )
        return normalize_tt_rank(len(shape) // 2, rank, name)

    @classmethod
    def specs(cls, shape, rank):
        """One core ``core{k}`` of shape ``(r_{k-1}, I_k, J_k, r_k)`` per (row, column) pair,
        ``r_0 = r_N = 1``.

        Axis 0 of core ``k`` belongs to rank dimension ``k - 1`` and its last axis to rank
        dimension ``k`` (counting from 0); the boundary axes of size 1 belong to none.

        Parameters
        ----------
        shape : sequence of int
            Shape ``(I_1, ..., I_N, J_1, ..., J_N)`` of the tensor.
        rank : int or sequence of int
            The TT ranks, as :meth:`normalize_rank` accepts them.

        Returns
        -------
        list of ParamSpec
            ``N`` specs, ``"core0"`` ... ``"core{N-1}"``.
        """
        ranks = cls.normalize_rank(shape, rank)
        n = len(shape) // 2
        return tt_core_specs([(int(shape[k]), int(shape[n + k])) for k in range(n)], ranks)

    @classmethod
    def index_axes(cls, shape):
        """Core ``k``'s row axis is tensor mode ``k``, its column axis mode ``N + k``."""
        n = len(shape) // 2
        return [{1: k, 2: n + k} for k in range(n)]

    @property
    def n_cores(self) -> int:
        """Number ``N`` of cores: half the number of modes."""
        return len(self.shape) // 2

    @property
    def row_shape(self) -> tuple[int, ...]:
        """Row modes ``(I_1, ..., I_N)``: the first half of ``shape``."""
        return self.shape[: self.n_cores]

    @property
    def col_shape(self) -> tuple[int, ...]:
        """Column modes ``(J_1, ..., J_N)``: the second half of ``shape``."""
        return self.shape[self.n_cores:]

    @property
    def matrix_shape(self) -> tuple[int, int]:
        """Shape ``(prod I, prod J)`` of the represented matrix (see :meth:`to_matrix`)."""
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

    def _core_index(self, idx):
        n = self.n_cores
        return [idx[:, k] * int(c.shape[-2]) + idx[:, n + k] for k, c in enumerate(self.params)]

    @classmethod
    def from_matrix(cls, matrix, row_shape, col_shape, rank, *, seed=0):
        """Decompose a dense matrix whose rows factor as ``row_shape`` and columns as ``col_shape``.

        The cores have the matrix's float dtype (float64 stays float64).

        Parameters
        ----------
        matrix : array_like, shape (prod(row_shape), prod(col_shape))
            The dense matrix; integer arrays become the default float dtype.
        row_shape : sequence of int
            Row modes ``(I_1, ..., I_N)``.
        col_shape : sequence of int
            Column modes ``(J_1, ..., J_N)``, as many as ``row_shape``.
        rank : int or sequence of int
            The TT ranks, as :meth:`normalize_rank` accepts them.
        seed : int
            Seed for the random parts of the start (the padding of ranks the decomposition
            cannot fill).

        Returns
        -------
        TTMatrix
            Of shape ``row_shape + col_shape``, from :meth:`from_tensor` of the matrix reshaped
            to that shape (TensorLy's ``tensor_train_matrix``, padded and balanced).

        Raises
        ------
        ValueError
            If ``matrix`` is not a real numeric array, its shape is not
            ``(prod(row_shape), prod(col_shape))``, or the shape or ``rank`` is refused by
            :meth:`normalize_rank`.
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

"""Tensor-train (TT, matrix product state) format."""

from __future__ import annotations

import math

import numpy as np
import tensorly as tl
import torch

from bayestensor.checks import rank_value
from bayestensor.formats.base import LowRankTensor, ParamSpec, check_modes, data_dtype, to_numpy
from bayestensor.formats.decompose import tt_start
from bayestensor.formats.prefix_entries import (batch_last_to_front, flat_index, gather_rows,
                                                train_prefix_modes, train_step)


def normalize_tt_rank(n_cores: int, rank, name: str = "rank") -> tuple[int, ...]:
    """Internal TT ranks (r_1, ..., r_{N-1}) from an int, N-1 values or N+1 values (ends 1)."""
    rank = rank_value(name, rank)
    if isinstance(rank, tuple):
        ranks = list(rank)
        if len(ranks) == n_cores + 1:
            if ranks[0] != 1 or ranks[-1] != 1:
                raise ValueError(f"{name}: boundary TT ranks must be 1, got {rank}")
            ranks = ranks[1:-1]
        elif len(ranks) != n_cores - 1:
            raise ValueError(
                f"{name}: expected {n_cores - 1} internal TT ranks (or {n_cores + 1} with the "
                f"boundary ones), got {rank}"
            )
    else:
        ranks = [rank] * (n_cores - 1)
    return tuple(ranks)


def tt_core_specs(mode_shapes: list[tuple[int, ...]], ranks: tuple[int, ...]) -> list[ParamSpec]:
    """Specs of TT cores (r_{k-1}, *mode_shape_k, r_k); boundary ranks are 1 and not rank dims."""
    full = (1,) + tuple(ranks) + (1,)
    specs = []
    for k, ms in enumerate(mode_shapes):
        shape = (full[k],) + tuple(ms) + (full[k + 1],)
        axes = {}
        if k > 0:
            axes[0] = k - 1
        if k < len(mode_shapes) - 1:
            axes[len(shape) - 1] = k
        specs.append(ParamSpec(f"core{k}", shape, axes))
    return specs


def tt_chain_prefix(cores_flat: list[torch.Tensor]) -> torch.Tensor:
    """Contract the leading cores ``(..., r_{k-1}, m_k, r_k)`` of a train (the first one's
    ``r_0 = 1``) into ``(..., m_1 * ... * m_k, r_k)``."""
    res = cores_flat[0][..., 0, :, :]  # (..., m_1, r_1)
    for c in cores_flat[1:]:
        res = torch.einsum("...pr,...rms->...pms", res, c)
        res = res.reshape(res.shape[:-3] + (res.shape[-3] * res.shape[-2], res.shape[-1]))
    return res


def tt_chain_dense(cores_flat: list[torch.Tensor]) -> torch.Tensor:
    """Contract cores ``(..., r_{k-1}, m_k, r_k)`` into ``(..., m_1 * ... * m_N)``."""
    return tt_chain_prefix(cores_flat)[..., 0]


def tt_transfer(left: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Carry the ``(..., r_a, r_b)`` partial inner product of two trains through one pair of
    cores ``(..., r_a, m, r_a')`` and ``(..., r_b, m, r_b')``."""
    return torch.einsum("...ab,...amc,...bmd->...cd", left, a, b)


class CoreTrain(LowRankTensor):
    """What TT and TT-matrix share: the parameters are a train of cores whose last axes are
    the internal ranks."""

    #: Mode axes of one core (1 for TT, 2 for TT-matrix).
    core_modes = 1

    def _n_params_expected(self):
        return self.ndim // self.core_modes

    def _param_layout(self):
        return "one core per mode" if self.core_modes == 1 else "one core per (row, column) pair"

    def _param_ndim(self, k):
        return 2 + self.core_modes

    def _specs_from_params(self):
        ranks = tuple(int(p.shape[-1]) for p in self.params[:-1])
        for k, p in enumerate(self.params[1:], start=1):
            if int(p.shape[-2 - self.core_modes]) != ranks[k - 1]:
                raise ValueError(
                    f"core{k}: its first rank {int(p.shape[-2 - self.core_modes])} does not "
                    f"match the last rank {ranks[k - 1]} of core{k - 1}")
        return self.specs(self.shape, ranks)

    def _flat_cores(self) -> list[torch.Tensor]:
        """Cores with their mode axes merged: ``(..., r_{k-1}, m_k, r_k)``."""
        lead = -2 - self.core_modes
        return [c.reshape(c.shape[:lead] + (c.shape[lead], -1, c.shape[-1])) for c in self.params]

    def _core_index(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Each core's position along its merged mode axis for the index rows ``idx``."""
        raise NotImplementedError

    def _entries(self, idx):
        """Entries at ``idx``: the leading cores contracted into a dense prefix (at least the
        first core; see :mod:`bayestensor.formats.prefix_entries`), its rows gathered, then
        each entry's slices of the trailing cores multiplied along the train."""
        cores = self._flat_cores()
        sizes = [int(c.shape[-2]) for c in cores]
        ranks = tuple(int(c.shape[-1]) for c in cores[:-1])
        nb = len(self.batch_shape)
        positions = self._core_index(idx)
        m = train_prefix_modes(sizes, ranks, idx.shape[0], math.prod(self.batch_shape))
        prefix = tt_chain_prefix(cores[:m])  # batch + (I_1 * ... * I_m, r_m)
        flat = flat_index(torch.stack(positions[:m], 1), sizes[:m])
        out = gather_rows(prefix, nb, flat)  # (n, r_m, b)
        for core, position in zip(cores[m:], positions[m:]):
            piece = gather_rows(core.movedim(-2, -3), nb, position)  # (n, r_{k-1}, r_k, b)
            out = train_step(out, piece)
        return batch_last_to_front(out[:, 0], self.batch_shape)

    def _inner_same(self, other):
        # Transfer matrices along the train: O(N m r^3), no dense tensor.
        mine, theirs = self._flat_cores(), other._flat_cores()
        left = None
        for a, b in zip(mine, theirs):
            b = b.to(a.dtype)
            if left is None:
                left = torch.einsum("...amc,...bmd->...cd", a, b)
            else:
                left = tt_transfer(left, a, b)
        return left[..., 0, 0]

    @classmethod
    def from_tensorly(cls, obj):
        cores = [to_numpy(c) for c in (obj.factors if hasattr(obj, "factors") else obj)]
        want = 2 + cls.core_modes
        if not cores or any(np.ndim(c) != want for c in cores):
            raise ValueError(f"obj: expected {want}-D cores, got shapes "
                             f"{[np.shape(c) for c in cores]}")
        for name, end in (("first", cores[0].shape[0]), ("last", cores[-1].shape[-1])):
            if end != 1:
                raise ValueError(f"obj: the {name} core's boundary rank must be 1, got {end}")
        modes = [c.shape[1:-1] for c in cores]
        shape = tuple(m[0] for m in modes) + tuple(m[1] for m in modes if len(m) == 2)
        return cls(shape, cores)

    @property
    def cores(self) -> list[torch.Tensor]:
        """The cores in train order (the ``params`` list itself)."""
        return self.params

    #: ``f(tensor, ranks, mask=, seed=) -> cores``: the decomposition ``from_tensor`` starts from.
    start_cores = None

    @classmethod
    def from_tensor(cls, tensor, rank, *, mask=None, seed=0, n_iter_max=100, dtype=None):
        shape = np.shape(tensor)
        ranks = cls.normalize_rank(shape, rank)
        cores = cls.start_cores(tensor, ranks, mask=mask, seed=seed)
        return cls(shape, [c.to(data_dtype(tensor, dtype)) for c in cores])


class TTTensor(CoreTrain):
    """Tensor train ``X[i_1..i_N] = G_1[:, i_1, :] G_2[:, i_2, :] ... G_N[:, i_N, :]``.

    Core ``G_k`` has shape (r_{k-1}, I_k, r_k) with r_0 = r_N = 1. The N-1 internal ranks are
    the rank dimensions; slice ``j`` of rank dimension ``k`` is ``G_k[..., j]`` together with
    ``G_{k+1}[j, ...]``.

    Parameters
    ----------
    shape : tuple of int
        Shape ``(I_1, ..., I_N)`` of the tensor.
    params : list of arrays
        One core ``batch_shape + (r_{k-1}, I_k, r_k)`` per mode, in train order, the first
        core's leading rank and the last core's trailing rank 1 and neighbouring ranks equal
        (NumPy arrays are converted).
    """

    format_name = "tt"
    start_cores = staticmethod(tt_start)

    @classmethod
    def normalize_rank(cls, shape, rank, *, name="rank"):
        """The internal TT ranks ``(r_1, ..., r_{N-1})``.

        Parameters
        ----------
        shape : sequence of int
            Shape of the tensor: at least two modes, each a positive integer size.
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
            If ``shape`` has fewer than two modes or a size that is not a positive integer,
            ``rank`` is not a positive integer or a sequence of them of one of those
            lengths, or a given boundary rank is not 1.
        """
        check_modes("TT", shape)
        return normalize_tt_rank(len(shape), rank, name)

    @classmethod
    def specs(cls, shape, rank):
        """One core ``core{k}`` of shape ``(r_{k-1}, I_k, r_k)`` per mode, ``r_0 = r_N = 1``.

        Axis 0 of core ``k`` belongs to rank dimension ``k - 1`` and its last axis to rank
        dimension ``k`` (counting from 0); the boundary axes of size 1 belong to none.

        Parameters
        ----------
        shape : sequence of int
            Shape ``(I_1, ..., I_N)`` of the tensor.
        rank : int or sequence of int
            The TT ranks, as :meth:`normalize_rank` accepts them.

        Returns
        -------
        list of ParamSpec
            ``N`` specs, ``"core0"`` ... ``"core{N-1}"``.
        """
        ranks = cls.normalize_rank(shape, rank)
        return tt_core_specs([(int(s),) for s in shape], ranks)

    @classmethod
    def index_axes(cls, shape):
        """Slice ``G_k[:, i, :]`` is read by the entries with ``i_k = i``."""
        return [{1: k} for k in range(len(shape))]

    def reconstruct(self):
        flat = tt_chain_dense(self.params)
        return flat.reshape(self.batch_shape + self.shape)

    def _core_index(self, idx):
        return [idx[:, k] for k in range(self.ndim)]

    def _mode_dot_matrix(self, params, matrix, mode):
        params[mode] = torch.einsum("ji,...ais->...ajs", matrix, params[mode])
        shape = self.shape[:mode] + (matrix.shape[0],) + self.shape[mode + 1:]
        return TTTensor(shape, params)

    def _to_tensorly(self, cores):
        return tl.tt_tensor.TTTensor(cores)


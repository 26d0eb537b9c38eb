"""Tucker format: a core tensor multiplied by a factor matrix along every mode."""

from __future__ import annotations

import math
import string

import numpy as np
import tensorly as tl
import torch

from bayestensor.checks import rank_value
from bayestensor.formats.base import (LowRankTensor, ParamSpec, check_modes, data_dtype,
                                     tensorly_pair, to_numpy)
from bayestensor.formats.decompose import tucker_start
from bayestensor.formats.prefix_entries import (batch_last_to_front, flat_index, gather_rows,
                                                tucker_prefix_modes)


class TuckerTensor(LowRankTensor):
    """Tucker tensor ``X = G x_1 U_1 x_2 ... x_N U_N``.

    The core ``G`` has shape (R_1, ..., R_N) and factor ``U_n`` shape (I_n, R_n). Rank dimension
    ``n`` has slices ``U_n[:, k]`` and ``G`` sliced at ``k`` along axis ``n``.

    Parameters
    ----------
    shape : tuple of int
        Shape ``(I_1, ..., I_N)`` of the tensor.
    params : list of arrays
        The core ``batch_shape + (R_1, ..., R_N)`` first, then one factor
        ``batch_shape + (I_n, R_n)`` per mode (NumPy arrays are converted).
    """

    format_name = "tucker"

    def _n_params_expected(self):
        return 1 + self.ndim

    def _param_layout(self):
        return "the core, then one factor per mode"

    def _param_ndim(self, k):
        return self.ndim if k == 0 else 2

    @classmethod
    def normalize_rank(cls, shape, rank, *, name="rank"):
        """The Tucker ranks ``(R_1, ..., R_N)``, one per mode.

        Parameters
        ----------
        shape : sequence of int
            Shape of the tensor: at least two modes, each a positive integer size.
        rank : int or sequence of int
            One integer for every mode, or a sequence of one integer per mode.
        name : str
            The argument's name in error messages.

        Returns
        -------
        tuple of int
            ``N`` ranks.

        Raises
        ------
        ValueError
            If ``shape`` has fewer than two modes or a size that is not a positive integer,
            or ``rank`` is not a positive integer or a sequence of ``N`` of them.
        """
        check_modes("Tucker", shape)
        rank = rank_value(name, rank)
        if isinstance(rank, tuple):
            if len(rank) != len(shape):
                raise ValueError(f"{name}: Tucker needs one rank per mode ({len(shape)}), got {rank}")
            return rank
        return tuple(rank for _ in shape)

    @classmethod
    def specs(cls, shape, rank):
        """The core ``(R_1, ..., R_N)`` (axis ``n`` belongs to rank dimension ``n``), then
        ``factor{n}`` of shape ``(I_n, R_n)`` (axis 1 belongs to rank dimension ``n``).

        Parameters
        ----------
        shape : sequence of int
            Shape ``(I_1, ..., I_N)`` of the tensor.
        rank : int or sequence of int
            The Tucker ranks, as :meth:`normalize_rank` accepts them.

        Returns
        -------
        list of ParamSpec
            ``N + 1`` specs: ``"core"``, then ``"factor0"`` ... ``"factor{N-1}"``.
        """
        ranks = cls.normalize_rank(shape, rank)
        core = ParamSpec("core", ranks, {n: n for n in range(len(ranks))})
        factors = [ParamSpec(f"factor{n}", (int(s), r), {1: n})
                   for n, (s, r) in enumerate(zip(shape, ranks))]
        return [core] + factors

    @classmethod
    def index_axes(cls, shape):
        """Every entry reads the whole core; row ``i`` of factor ``n`` only those with
        ``i_n = i``."""
        return [{}] + [{0: n} for n in range(len(shape))]

    def _specs_from_params(self):
        ranks = tuple(int(p.shape[-1]) for p in self.params[1:])
        return self.specs(self.shape, ranks)

    @property
    def core(self) -> torch.Tensor:
        """The core tensor, ``batch_shape + (R_1, ..., R_N)`` (``params[0]``)."""
        return self.params[0]

    @property
    def factors(self) -> list[torch.Tensor]:
        """The factor matrices, ``batch_shape + (I_n, R_n)`` each (``params[1:]``)."""
        return self.params[1:]

    def normalize(self) -> "TuckerTensor":
        """The same tensor with unit-norm factor columns, their norms moved into the core
        (as ``tl.tucker_normalize``; a zero column stays zero)."""
        core, factors = self.core, []
        for n, f in enumerate(self.factors):
            scales = f.norm(dim=-2)
            safe = torch.where(scales == 0, torch.ones_like(scales), scales)
            factors.append(f / safe.unsqueeze(-2))
            view = self.batch_shape + tuple(-1 if k == n else 1 for k in range(self.ndim))
            core = core * scales.reshape(view)
        return TuckerTensor(self.shape, [core] + factors)

    def _inner_same(self, other):
        # <G x_n U_n, H x_n V_n> = <G x_n (U_n^T V_n), H>: core-sized work only.
        n = self.ndim
        ranks = string.ascii_uppercase[:n]
        others = string.ascii_lowercase[:n]
        grams = [u.transpose(-1, -2) @ v.to(u.dtype) for u, v in zip(self.factors, other.factors)]
        expr = (f"...{ranks}," + ",".join(f"...{r}{o}" for r, o in zip(ranks, others))
                + f",...{others}->...")
        return torch.einsum(expr, self.core, *grams, other.core.to(self.core.dtype))

    def _mode_dot_matrix(self, params, matrix, mode):
        params[1 + mode] = matrix @ params[1 + mode]
        shape = self.shape[:mode] + (matrix.shape[0],) + self.shape[mode + 1:]
        return TuckerTensor(shape, params)

    @classmethod
    def from_tensorly(cls, obj):
        core, factors = tensorly_pair(obj, "core", "factors")
        core, factors = to_numpy(core), [to_numpy(f) for f in factors]
        if any(np.ndim(f) != 2 for f in factors):
            raise ValueError("obj: expected 2-D Tucker factors (I_n, R_n), got shapes "
                             f"{[np.shape(f) for f in factors]}")
        if len(factors) != np.ndim(core):
            raise ValueError(f"obj: a core of {np.ndim(core)} modes needs {np.ndim(core)} "
                             f"factors, got {len(factors)}")
        return cls(tuple(f.shape[0] for f in factors), [core] + factors)

    def reconstruct(self):
        n = self.ndim
        ranks = string.ascii_uppercase[:n]
        modes = string.ascii_lowercase[:n]
        expr = f"...{ranks}," + ",".join(f"...{m}{r}" for m, r in zip(modes, ranks))
        return torch.einsum(expr + f"->...{modes}", self.core, *self.factors)

    def _entries(self, idx):
        """Entries at ``idx``, through a dense prefix of the leading modes where that is
        cheaper (see :mod:`bayestensor.formats.prefix_entries`), else by contracting the core
        with each entry's factor rows."""
        ranks = tuple(int(r) for r in self.core.shape[-self.ndim:])
        batch = math.prod(self.batch_shape)
        m = tucker_prefix_modes(self.shape, ranks, idx.shape[0], batch)
        if m == 0:
            return self._entries_per_row(idx)
        nb = len(self.batch_shape)
        prefix = self._dense_prefix(m)
        prefix = prefix.reshape(self.batch_shape + (-1,) + ranks[m:])
        out = gather_rows(prefix, nb, flat_index(idx[:, :m], self.shape[:m]))
        for k in range(m, self.ndim):
            rows = gather_rows(self.factors[k], nb, idx[:, k])  # (n, R_k, b)
            view = rows.shape[:2] + (1,) * (self.ndim - k - 1) + rows.shape[2:]
            out = (out * rows.reshape(view)).sum(1)
        return batch_last_to_front(out, self.batch_shape)

    def _dense_prefix(self, m: int) -> torch.Tensor:
        """``G x_1 U_1 ... x_m U_m``: ``batch_shape + (I_1..I_m, R_{m+1}..R_N)``."""
        ranks = string.ascii_uppercase[:self.ndim]
        modes = string.ascii_lowercase[:self.ndim]
        prefix = self.core
        for k in range(m):
            before = f"...{modes[:k]}{ranks[k:]}"
            after = f"...{modes[:k + 1]}{ranks[k + 1:]}"
            prefix = torch.einsum(f"{before},...{modes[k]}{ranks[k]}->{after}", prefix,
                                  self.factors[k])
        return prefix

    def _entries_per_row(self, idx):
        n = self.ndim
        ranks = string.ascii_uppercase[:n]
        rows0 = self.factors[0].index_select(-2, idx[:, 0])
        out = torch.einsum(f"...{ranks},...z{ranks[0]}->...z{ranks[1:]}", self.core, rows0)
        for k in range(1, n):
            rows = self.factors[k].index_select(-2, idx[:, k])
            rest = ranks[k + 1:]
            out = torch.einsum(f"...z{ranks[k]}{rest},...z{ranks[k]}->...z{rest}", out, rows)
        return out

    @classmethod
    def from_tensor(cls, tensor, rank, *, mask=None, seed=0, n_iter_max=100, dtype=None):
        shape = np.shape(tensor)
        ranks = cls.normalize_rank(shape, rank)
        params = tucker_start(tensor, ranks, mask=mask, n_iter_max=n_iter_max, seed=seed)
        return cls(shape, [p.to(data_dtype(tensor, dtype)) for p in params])

    def _to_tensorly(self, params):
        return tl.tucker_tensor.TuckerTensor((params[0], params[1:]))

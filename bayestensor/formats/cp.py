"""CP (CANDECOMP/PARAFAC) format: a sum of R rank-one tensors."""

from __future__ import annotations

import math

import numpy as np
import tensorly as tl
import torch

from bayestensor.checks import rank_value
from bayestensor.formats.base import (LowRankTensor, ParamSpec, as_float_tensor, check_modes,
                                      backend_array, data_dtype, tensorly_pair, to_numpy)
from bayestensor.formats.decompose import cp_start
from bayestensor.formats.entry_start import cp_from_entries
from bayestensor.formats.prefix_entries import (PREFIX_MAX, batch_last_to_front, flat_index,
                                                gather_rows)

#: ``entries`` reconstructs the dense tensor and picks from it when the tensor has at most this
#: many entries per index asked for (see ``CPTensor._entries``) and the dense tensors of the
#: whole batch have at most ``prefix_entries.PREFIX_MAX`` elements.
DENSE_PICK_RATIO = 16


class CPTensor(LowRankTensor):
    """CP tensor ``X[i_1..i_N] = sum_r prod_n A_n[i_n, r]`` with factors ``A_n`` of shape (I_n, R).

    There is one rank dimension; rank slice ``r`` is column ``r`` of every factor. Weights are
    absorbed into the factors, except where a TensorLy user asks for them: ``weights``
    (optional, ``batch_shape + (R,)``) multiplies component ``r`` by ``weights[r]``. The models
    and priors use the factors alone, so their tensors have no weights (``weights`` then reads
    as ones); :meth:`absorb_weights` moves weights into the first factor.

    Parameters
    ----------
    shape : tuple of int
    params : list of arrays
        One factor ``batch_shape + (I_n, R)`` per mode (NumPy arrays are converted).
    weights : array_like, optional
        ``batch_shape + (R,)`` component weights.

    Examples
    --------
    >>> x = CPTensor.random((4, 5, 6), rank=3, seed=0)
    >>> x.reconstruct().shape
    torch.Size([4, 5, 6])
    """

    format_name = "cp"

    def __init__(self, shape, params, weights=None):
        super().__init__(shape, params)
        self._weights = None
        if weights is not None:
            w = as_float_tensor("weights", weights).to(device=self.params[0].device,
                                                       dtype=self.params[0].dtype)
            expected = self.batch_shape + self.ranks
            if tuple(w.shape) != expected:
                raise ValueError(f"weights: expected shape {expected} (one weight per "
                                 f"component), got {tuple(w.shape)}")
            self._weights = w

    def _n_params_expected(self):
        return self.ndim

    def _param_layout(self):
        return "one factor per mode"

    def _param_ndim(self, k):
        return 2

    @classmethod
    def normalize_rank(cls, shape, rank, *, name="rank"):
        """The CP rank as a one-entry tuple ``(R,)``.

        Parameters
        ----------
        shape : sequence of int
            Shape of the tensor: at least two modes, each a positive integer size.
        rank : int or sequence of int
            The number of components ``R``, as an integer or a sequence of one integer.
        name : str
            The argument's name in error messages.

        Returns
        -------
        tuple of int
            ``(R,)``.

        Raises
        ------
        ValueError
            If ``shape`` has fewer than two modes or a size that is not a positive integer,
            or ``rank`` is not a positive integer or a one-entry sequence of one.
        """
        check_modes("CP", shape)
        rank = rank_value(name, rank)
        if isinstance(rank, tuple):
            if len(rank) != 1:
                raise ValueError(f"{name}: CP has one rank dimension, got {rank}")
            rank = rank[0]
        return (rank,)

    @classmethod
    def specs(cls, shape, rank):
        """One factor per mode: ``factor{n}`` of shape ``(I_n, R)``, its axis 1 the rank axis.

        Parameters
        ----------
        shape : sequence of int
            Shape ``(I_1, ..., I_N)`` of the tensor.
        rank : int or sequence of int
            The CP rank, as :meth:`normalize_rank` accepts it.

        Returns
        -------
        list of ParamSpec
            ``N`` specs, all columns belonging to the single rank dimension 0.
        """
        (r,) = cls.normalize_rank(shape, rank)
        return [ParamSpec(f"factor{n}", (int(s), r), {1: 0}) for n, s in enumerate(shape)]

    @classmethod
    def index_axes(cls, shape):
        """Row ``i`` of factor ``n`` is read by the entries with ``i_n = i``."""
        return [{0: n} for n in range(len(shape))]

    def _specs_from_params(self):
        r = self.params[0].shape[-1]
        return self.specs(self.shape, r)

    @property
    def factors(self) -> list[torch.Tensor]:
        """The factor matrices, ``batch_shape + (I_n, R)`` each (the ``params`` list itself,
        without the weights)."""
        return self.params

    @property
    def weights(self) -> torch.Tensor:
        """Component weights ``batch_shape + (R,)`` (ones when they are absorbed)."""
        if self._weights is not None:
            return self._weights
        ref = self.params[0]
        return torch.ones(self.batch_shape + self.ranks, dtype=ref.dtype, device=ref.device)

    def _weighted_factors(self) -> list[torch.Tensor]:
        if self._weights is None:
            return self.params
        return [self.params[0] * self._weights.unsqueeze(-2)] + self.params[1:]

    def absorb_weights(self) -> "CPTensor":
        """The same tensor with the weights multiplied into the first factor."""
        return CPTensor(self.shape, self._weighted_factors())

    def normalize(self) -> "CPTensor":
        """The same tensor with unit-norm factor columns and the scale in ``weights``.

        As ``tl.cp_normalize``: a zero column stays zero (its norm counts as 1 when dividing
        and as 0 in the weight). Returns a new tensor; this one is unchanged.
        """
        weights = torch.ones_like(self.weights)
        factors = []
        for f in self._weighted_factors():
            scales = f.norm(dim=-2)
            weights = weights * scales
            factors.append(f / torch.where(scales == 0, torch.ones_like(scales),
                                           scales).unsqueeze(-2))
        return CPTensor(self.shape, factors, weights=weights)

    def _new(self, params, edit_extra):
        weights = None if self._weights is None else edit_extra(self._weights)
        return CPTensor(self.shape, params, weights=weights)

    def slice_norms(self):
        (norms,) = super().slice_norms()
        return [norms if self._weights is None else norms * self._weights.abs()]

    def reconstruct(self):
        # The largest mode's factor times the Khatri-Rao product of the others: one batched
        # matmul. The product is built transposed, (R, prod(others)) and contiguous: matmul
        # with it and its backward took 5.8 ms for 100 samples of 30^3 rank 8, against 12 ms
        # with the transpose of a (prod(others), R) product. Building it over the smaller
        # modes keeps it small next to the result: for a 2 x 145 x 200 slab at rank 15 it is
        # 200 times smaller than over the 145 x 200 modes, and the slab about 2x faster.
        factors = self._weighted_factors()
        lead = max(range(self.ndim), key=lambda m: (self.shape[m], -m))  # mode 0 on ties
        rest = factors[:lead] + factors[lead + 1:]
        khatri_rao_t = rest[0].transpose(-1, -2).contiguous()
        for f in rest[1:]:  # columns in the C-order flattening of the other modes
            f_t = f.transpose(-1, -2).contiguous()
            khatri_rao_t = (khatri_rao_t.unsqueeze(-1) * f_t.unsqueeze(-2)).reshape(
                f_t.shape[:-1] + (-1,))
        dense = torch.matmul(factors[lead], khatri_rao_t)
        others = self.shape[:lead] + self.shape[lead + 1:]
        dense = dense.reshape(self.batch_shape + (self.shape[lead],) + others)
        nb = len(self.batch_shape)
        return dense.movedim(nb, nb + lead).reshape(self.batch_shape + self.shape)

    def _inner_same(self, other):
        # <X, Y> = sum_{r,s} prod_n (A_n^T B_n)_{rs}: R x S Gram matrices, no dense tensor.
        gram = None
        for a, b in zip(self._weighted_factors(), other._weighted_factors()):
            g = a.transpose(-1, -2) @ b.to(a.dtype)
            gram = g if gram is None else gram * g
        return gram.sum((-1, -2))

    def _mode_dot_matrix(self, params, matrix, mode):
        params[mode] = matrix @ params[mode]
        shape = self.shape[:mode] + (matrix.shape[0],) + self.shape[mode + 1:]
        weights = None if self._weights is None else self._weights.to(matrix.dtype)
        return CPTensor(shape, params, weights=weights)

    @classmethod
    def from_tensorly(cls, obj):
        weights, factors = tensorly_pair(obj, "weights", "factors")
        factors = [to_numpy(f) for f in factors]
        shape = tuple(f.shape[0] for f in factors) if all(np.ndim(f) == 2 for f in factors) \
            else ()
        if len(factors) < 2:
            raise ValueError(f"obj: expected a CP tensor with at least 2 factors, got "
                             f"{len(factors)}")
        if not shape:
            raise ValueError("obj: expected 2-D CP factors (I_n, R), got shapes "
                             f"{[np.shape(f) for f in factors]}")
        weights = None if weights is None else to_numpy(weights)
        return cls(shape, factors, weights=weights)

    def _entries(self, idx):
        """Entries at ``idx``: from the dense tensor where it is small next to ``idx``, else
        by gathering factor rows.

        A gathered product moves ``len(idx) * R * ndim`` numbers per sample in elementwise
        passes (and as many in its backward), the dense tensor ``prod(shape) * R`` in batched
        matrix products. For 100 samples of a 30^3 rank-8 tensor at 5,400 entries (20%), the
        log density and gradient took 77 ms from the dense tensor against 165 ms by gathering;
        at 5% they were about even (46 ms against 52 ms).
        """
        size = math.prod(self.shape)  # exact: NumPy's int64 product wraps past 9.2e18 entries
        if (size <= DENSE_PICK_RATIO * idx.shape[0]
                and size * math.prod(self.batch_shape) <= PREFIX_MAX):
            return self._entries_from_dense(idx)
        return self._gathered_entries(idx)

    def _entries_from_dense(self, idx):
        dense = self.reconstruct()
        return dense.reshape(self.batch_shape + (-1,)).index_select(-1, flat_index(idx, self.shape))

    def _gathered_entries(self, idx):
        # Sample dims go last so each gathered factor row is one contiguous block of
        # R * samples numbers: the gather and its backward (index_add) are row copies.
        nb = len(self.batch_shape)
        prod = None
        for n, f in enumerate(self._weighted_factors()):
            rows = gather_rows(f, nb, idx[:, n])  # (n, R, b)
            prod = rows if prod is None else prod * rows
        return batch_last_to_front(prod.sum(1), self.batch_shape)

    @classmethod
    def from_tensor(cls, tensor, rank, *, mask=None, seed=0, n_iter_max=100, dtype=None):
        (r,) = cls.normalize_rank(np.shape(tensor), rank)
        factors = cp_start(tensor, r, mask=mask, n_iter_max=n_iter_max, seed=seed)
        return cls(np.shape(tensor), [f.to(data_dtype(tensor, dtype)) for f in factors])

    @classmethod
    def from_entries(cls, indices, values, shape, rank, *, start: str = "spectral",
                     n_sweeps: int = 50, tol: float = 1e-4, ridge: float = 1e-2,
                     seed: int = 0) -> "CPTensor":
        """Initialize from observed entries alone: a spectral start refined by ridge ALS.

        For tensors too large to hold densely (where ``from_tensor`` cannot run). The spectral
        start (Montanari and Sun 2018) takes each mode's subspace from the unfolding's Gram
        matrix with its diagonal deleted and decomposes the observed entries projected onto
        those subspaces; each ALS sweep then solves, for every row of every factor, the
        R x R normal equations over that row's observed entries, in O(n_obs R^2) time and
        memory bounded by blocks of rows (see ``bayestensor.formats.entry_start``).

        Parameters
        ----------
        indices : (n, ndim) integer array
        values : (n,) array
        shape : tuple of int
        rank : int
        start : {"spectral", "random"}
            Where the ALS starts. ``"random"``: Gaussian factors, which at low sampling
            (1e6 entries of a 1000^3 rank-20 tensor) stay at relative error 1.0.
        n_sweeps : int
            ALS sweeps over all modes at most.
        tol : float
            Stop once a sweep changes the root-mean-square residual on the observed entries
            by less than this fraction. Near the sample size where completion becomes
            possible, ALS can cross a plateau (a "swamp") for tens of sweeps before it
            converges, so the budget is generous.
        ridge : float
            Ridge penalty, relative to the mean diagonal of the per-row Gram matrices.
        seed : int

        Examples
        --------
        >>> import torch
        >>> truth = CPTensor.random((40, 40, 40), 3, seed=0)
        >>> idx = torch.randint(0, 40, (6000, 3), generator=torch.Generator().manual_seed(0))
        >>> fit = CPTensor.from_entries(idx, truth.entries(idx), truth.shape, 3)
        >>> bool((fit.reconstruct() - truth.reconstruct()).norm() < 0.05 * truth.reconstruct().norm())
        True
        """
        (r,) = cls.normalize_rank(shape, rank)
        return cls(tuple(shape), cp_from_entries(indices, values, shape, r, start=start,
                                                 n_sweeps=n_sweeps, tol=tol, ridge=ridge,
                                                 seed=seed))

    def _to_tensorly(self, factors):
        weights = self._weights
        if weights is None:
            weights = torch.ones(self.ranks[0], dtype=self.params[0].dtype)
        return tl.cp_tensor.CPTensor((backend_array(weights), factors))

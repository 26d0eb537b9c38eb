"""Shared machinery of the low-rank formats: parameters, rank slices, pruning.

Every format stores a list of parameter tensors. Each parameter may carry any number of
leading *sample* dimensions (particles, chains, draws); the trailing dimensions are the
parameter's own shape. A parameter also declares which of its own axes are *rank axes* and to
which rank dimension each belongs. That single declaration drives the prior (a per-slice
variance multiplies along every rank axis), the slice scales used for the effective rank, and
``prune()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class ParamSpec:
    """Shape and rank axes of one parameter of a low-rank format.

    Parameters
    ----------
    name : str
        Parameter name, e.g. ``"factor0"`` or ``"core"``.
    shape : tuple of int
        Shape of the parameter without sample dimensions.
    rank_axes : dict of int to int
        Map from an axis of ``shape`` to the rank dimension it indexes.
    """

    name: str
    shape: tuple[int, ...]
    rank_axes: dict[int, int]

    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def as_index_tensor(indices, ndim: int, shape: Sequence[int] | None = None) -> torch.Tensor:
    """Validate an (n, ndim) integer index array and return it as a ``LongTensor``.

    Raises
    ------
    ValueError
        If the array is not two-dimensional with ``ndim`` columns, or an index is out of range.
    """
    idx = torch.as_tensor(indices)
    if idx.dtype.is_floating_point or idx.dtype == torch.bool:
        raise ValueError(f"indices: expected an integer array, got dtype {idx.dtype}")
    idx = idx.long()
    if idx.ndim != 2 or idx.shape[1] != ndim:
        raise ValueError(f"indices: expected shape (n, {ndim}), got {tuple(idx.shape)}")
    if shape is not None and idx.numel() > 0:
        upper = torch.as_tensor(list(shape), dtype=torch.long)
        bad = (idx < 0) | (idx >= upper)
        if bool(bad.any()):
            row, col = (int(v) for v in bad.nonzero()[0])
            raise ValueError(
                f"indices: entry {tuple(idx[row].tolist())} at row {row} is out of range for "
                f"mode {col} of size {shape[col]} (tensor shape {tuple(shape)})"
            )
    return idx


def check_modes(fmt: str, shape: Sequence[int]) -> None:
    """Raise ``ValueError`` naming ``shape`` unless it has at least two modes.

    A 1-D tensor (a vector) has no low-rank structure to find.
    """
    if len(shape) < 2:
        raise ValueError(f"shape: {fmt} needs at least 2 modes (a 1-D tensor has no low-rank "
                         f"structure), got {tuple(shape)}")


class LowRankTensor:
    """Base class of the low-rank formats (CP, Tucker, TT, TT-matrix).

    Subclasses define ``specs`` (the parameter layout for a shape and rank), ``reconstruct``
    and ``entries``. Parameters may carry leading sample dimensions, shared by all of them.
    """

    format_name = "base"

    def __init__(self, shape: Sequence[int], params: Sequence[torch.Tensor]):
        self.shape = tuple(int(s) for s in shape)
        self.params = list(params)
        specs = self._specs_from_params()
        self.param_specs = specs
        for spec, p in zip(specs, self.params):
            if tuple(p.shape[p.ndim - len(spec.shape):]) != spec.shape:
                raise ValueError(
                    f"{spec.name}: expected trailing shape {spec.shape}, got {tuple(p.shape)}"
                )
        batch = {tuple(p.shape[: p.ndim - len(s.shape)]) for s, p in zip(specs, self.params)}
        if len(batch) != 1:
            raise ValueError(f"params: all parameters need the same sample dims, got {batch}")
        self.batch_shape = batch.pop()

    # --- layout -----------------------------------------------------------------------------
    @classmethod
    def specs(cls, shape: Sequence[int], rank) -> list[ParamSpec]:
        """Parameter layout for a tensor ``shape`` and ``rank`` (see each format)."""
        raise NotImplementedError

    @classmethod
    def normalize_rank(cls, shape: Sequence[int], rank) -> tuple[int, ...]:
        """Return the rank as a tuple with one entry per rank dimension."""
        raise NotImplementedError

    def _specs_from_params(self) -> list[ParamSpec]:
        raise NotImplementedError

    @property
    def ranks(self) -> tuple[int, ...]:
        """Size of each rank dimension."""
        return tuple(self._rank_sizes(self.param_specs))

    @property
    def ndim(self) -> int:
        """Order of the represented tensor."""
        return len(self.shape)

    @property
    def param_names(self) -> list[str]:
        return [s.name for s in self.param_specs]

    def n_params(self) -> int:
        """Number of scalar parameters of one sample (sample dims excluded)."""
        return sum(s.numel() for s in self.param_specs)

    def dense_size(self) -> int:
        """Number of entries of the dense tensor."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    def compression_ratio(self) -> float:
        """Dense entries divided by low-rank parameters."""
        return self.dense_size() / self.n_params()

    # --- values -----------------------------------------------------------------------------
    def reconstruct(self) -> torch.Tensor:
        """Dense tensor of shape ``batch_shape + shape``."""
        raise NotImplementedError

    def entries(self, indices, check: bool = True) -> torch.Tensor:
        """Entries at an (n, ndim) index array, shape ``batch_shape + (n,)``.

        Only the factor rows (core slices) named by the indices are gathered; the dense
        tensor is never formed. ``check=False`` skips validating the indices (for inner loops
        that validated them once).
        """
        if check:
            indices = as_index_tensor(indices, self.ndim, self.shape)
        return self._entries(torch.as_tensor(indices).to(self.params[0].device))

    def _entries(self, idx: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # --- rank slices ------------------------------------------------------------------------
    def slice_norms(self) -> list[torch.Tensor]:
        """Scale of every rank slice, one tensor ``batch_shape + (R_d,)`` per rank dimension.

        The scale of slice ``k`` of rank dimension ``d`` is the product, over the parameters
        with a rank axis of dimension ``d``, of the Frobenius norm of that parameter's slice
        ``k``. For CP this is the magnitude ``prod_n ||a_n[:, k]||`` of component ``k``.
        """
        nb = len(self.batch_shape)
        out = []
        for d, size in enumerate(self.ranks):
            total = torch.ones(self.batch_shape + (size,), dtype=self.params[0].dtype,
                               device=self.params[0].device)
            for spec, p in zip(self.param_specs, self.params):
                for axis, dim in spec.rank_axes.items():
                    if dim != d:
                        continue
                    moved = p.movedim(nb + axis, -1)
                    flat = moved.reshape(self.batch_shape + (-1, size))
                    total = total * flat.norm(dim=-2)
            out.append(total)
        return out

    def prune(self, keep: Sequence) -> "LowRankTensor":
        """Drop rank slices.

        Parameters
        ----------
        keep : sequence of boolean arrays
            One mask of length ``R_d`` per rank dimension; ``True`` keeps the slice. A rank
            dimension keeps at least one slice (the largest one is kept if the mask is empty).

        Returns
        -------
        LowRankTensor
            A new tensor of the same format with fewer parameters.
        """
        if len(keep) != len(self.ranks):
            raise ValueError(f"keep: expected {len(self.ranks)} masks, got {len(keep)}")
        norms = self.slice_norms()
        kept_idx = []
        for d, mask in enumerate(keep):
            mask = torch.as_tensor(mask, dtype=torch.bool)
            if mask.shape != (self.ranks[d],):
                raise ValueError(
                    f"keep[{d}]: expected a mask of length {self.ranks[d]}, got {tuple(mask.shape)}"
                )
            if not bool(mask.any()):
                mask = torch.zeros_like(mask)
                mean_norm = norms[d].reshape(-1, self.ranks[d]).mean(0)
                mask[int(mean_norm.argmax())] = True
            kept_idx.append(mask.nonzero().flatten().to(self.params[0].device))
        nb = len(self.batch_shape)
        new_params = []
        for spec, p in zip(self.param_specs, self.params):
            for axis, dim in spec.rank_axes.items():
                p = p.index_select(nb + axis, kept_idx[dim])
            new_params.append(p)
        return type(self)(self.shape, new_params)

    def sample(self, i) -> "LowRankTensor":
        """The tensor at index ``i`` of the (flattened) sample dims."""
        nb = len(self.batch_shape)
        params = [p.reshape((-1,) + tuple(p.shape[nb:]))[i] for p in self.params]
        return type(self)(self.shape, params)

    def to(self, *args, **kwargs) -> "LowRankTensor":
        """Move or cast every parameter (``torch.Tensor.to`` semantics)."""
        return type(self)(self.shape, [p.to(*args, **kwargs) for p in self.params])

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def random(cls, shape, rank, *, scale: float = 1.0, batch_shape=(), seed: int | None = None,
               dtype=torch.float32) -> "LowRankTensor":
        """Random parameters whose reconstruction has entries of standard deviation ``scale``.

        Each parameter is standard normal times a per-parameter factor chosen so that the
        variance of a reconstructed entry equals ``scale**2`` (the product of the parameter
        variances times the number of rank terms summed).
        """
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        specs = cls.specs(shape, rank)
        stds = cls._random_stds(specs, scale)
        params = [
            torch.randn(tuple(batch_shape) + s.shape, generator=gen, dtype=dtype) * std
            for s, std in zip(specs, stds)
        ]
        return cls(shape, params)

    @classmethod
    def _random_stds(cls, specs: list[ParamSpec], scale: float) -> list[float]:
        """Per-parameter std giving reconstructed entries of std ``scale``."""
        n_terms = 1
        for size in cls._rank_sizes(specs):
            n_terms *= size
        # Every term of every format multiplies one entry of each parameter, and there are
        # prod(ranks) terms, so Var(entry) = n_terms * prod_p std_p**2.
        per = (scale**2 / n_terms) ** (1.0 / (2 * len(specs)))
        return [per for _ in specs]

    @staticmethod
    def _rank_sizes(specs: list[ParamSpec]) -> list[int]:
        sizes: dict[int, int] = {}
        for spec in specs:
            for axis, dim in spec.rank_axes.items():
                sizes[dim] = spec.shape[axis]
        return [sizes[d] for d in sorted(sizes)]

    @classmethod
    def from_tensor(cls, tensor, rank, *, mask=None, seed: int = 0, n_iter_max: int = 100):
        """Initialize by an SVD-based decomposition of a dense tensor (TensorLy).

        Parameters
        ----------
        tensor : array_like
            Dense data.
        rank : int or sequence of int
            Target rank; slices beyond what the decomposition can give are filled with small
            random values.
        mask : array_like of bool, optional
            Observed entries. Missing entries are filled with the mean of the observed ones
            before decomposing.
        seed : int
            Seed for the random parts of the initialization.
        n_iter_max : int
            Iterations of the ALS (CP) or HOOI (Tucker); TT-SVD is not iterative and
            ignores it.

        See Also
        --------
        bayestensor.formats.decompose : the decompositions themselves.
        """
        raise NotImplementedError

    def to_tensorly(self):
        """The same tensor as a TensorLy decomposition object (single sample only).

        Raises
        ------
        ValueError
            When the tensor holds several samples.
        """
        if self.batch_shape:
            raise ValueError("to_tensorly: expected a single sample, got batch_shape "
                             f"{self.batch_shape}; use .sample(i)")
        return self._to_tensorly([p.detach().cpu().numpy() for p in self.params])

    def _to_tensorly(self, params: list[np.ndarray]):
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(shape={self.shape}, ranks={self.ranks}, "
                f"batch_shape={self.batch_shape})")


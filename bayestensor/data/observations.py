"""Observed entries of a tensor in coordinate (COO) form, validated once at the door."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from bayestensor.checks import check_shape, not_complex
from bayestensor.formats import as_index_tensor


@dataclass
class Observations:
    """Observed entries ``values[i]`` at ``indices[i]`` of a tensor of shape ``shape``.

    Build with :meth:`from_coo` or :meth:`from_dense`; both validate the input.

    Attributes
    ----------
    indices : torch.LongTensor
        ``(n, ndim)`` index tuples.
    values : torch.Tensor
        ``(n,)`` observed values (float32).
    shape : tuple of int
        Shape of the full tensor.
    """

    indices: torch.Tensor
    values: torch.Tensor
    shape: tuple[int, ...]

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def ndim(self) -> int:
        """Number of modes of the full tensor."""
        return len(self.shape)

    @property
    def observed_fraction(self) -> float:
        """Share of the full tensor's entries that are observed."""
        return len(self) / math.prod(self.shape)  # exact, as NumPy's int64 product is not

    @classmethod
    def from_coo(cls, indices, values, shape) -> "Observations":
        """Validate index tuples and values.

        An entry observed more than once (the same index tuple in several rows) is kept once,
        at the mean of its values, with a ``UserWarning`` saying how many were merged: each
        entry then counts once in the likelihood and in ``observed_fraction``. The merged
        entries come sorted by index tuple; without duplicates the order is the caller's.

        Parameters
        ----------
        indices : array_like of int, shape (n, ndim)
            One index tuple per observed entry.
        values : array_like of float, shape (n,)
            The observed values (stored as float32).
        shape : sequence of int
            Shape of the full tensor; every index must lie inside it.

        Returns
        -------
        Observations

        Raises
        ------
        ValueError
            Empty observations, wrong index shape, indices out of range, a length mismatch or
            non-finite values.
        """
        shape = check_shape(shape)
        idx = as_index_tensor(indices, len(shape), shape)
        not_complex("values", values)
        vals = torch.as_tensor(np.asarray(values, dtype=np.float32)).reshape(-1)
        if idx.shape[0] == 0:
            raise ValueError("indices: no observed entries (empty observations)")
        if vals.shape[0] != idx.shape[0]:
            raise ValueError(f"values: expected {idx.shape[0]} values (one per index row), "
                             f"got {vals.shape[0]}")
        bad = ~torch.isfinite(vals)
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            raise ValueError(f"values: observed value {vals[i].item()} at index "
                             f"{tuple(idx[i].tolist())} is not finite; mark missing entries "
                             "by leaving them out (COO) or by the mask")
        return cls(*average_duplicates(idx, vals), shape)

    @classmethod
    def from_dense(cls, data, mask=None) -> "Observations":
        """Observed entries of a dense array.

        Parameters
        ----------
        data : array_like
            The tensor. Without ``mask``, NaN marks a missing entry.
        mask : array_like of bool, optional
            ``True`` where observed. Observed entries must be finite.
        """
        not_complex("data", data)
        arr = np.asarray(data, dtype=np.float64)
        if arr.ndim < 1 or arr.size == 0:
            raise ValueError(f"data: expected a non-empty array, got shape {arr.shape}")
        if mask is None:
            if np.isinf(arr).any():
                raise ValueError("data: contains inf; use NaN or a mask for missing entries")
            m = ~np.isnan(arr)
        else:
            m = np.asarray(mask)
            if m.shape != arr.shape:
                raise ValueError(f"mask: expected shape {arr.shape} (the data's), got {m.shape}")
            if m.dtype != bool:
                raise ValueError(f"mask: expected a boolean array, got dtype {m.dtype}")
        idx = np.argwhere(m)
        if idx.shape[0] == 0:
            raise ValueError("data: no observed entries (the mask is all False / data all NaN)")
        return cls.from_coo(idx, arr[m], arr.shape)

    def split(self, test_fraction: float, seed: int = 0) -> tuple["Observations", "Observations"]:
        """Random train/test split of the observed entries.

        Parameters
        ----------
        test_fraction : float in (0, 1)
            Share of the entries held out; the test part has ``round(test_fraction * n)``
            entries, at least one.
        seed : int
            Seed of the random permutation; the same seed gives the same split.

        Returns
        -------
        train, test : Observations
            Disjoint parts of these observations, with the same ``shape``, each in the
            permutation's (random) order.

        Raises
        ------
        ValueError
            When ``test_fraction`` is not in (0, 1).
        """
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction}")
        gen = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(self), generator=gen)
        n_test = max(1, int(round(test_fraction * len(self))))
        test, train = perm[:n_test], perm[n_test:]
        return (Observations(self.indices[train], self.values[train], self.shape),
                Observations(self.indices[test], self.values[test], self.shape))

    def to_dense(self, fill=np.nan) -> np.ndarray:
        """Dense array with ``fill`` at unobserved entries."""
        out = np.full(self.shape, fill, dtype=np.float64)
        out[tuple(self.indices.T.numpy())] = self.values.double().numpy()
        return out

    def mask(self) -> np.ndarray:
        """Boolean mask of observed entries."""
        m = np.zeros(self.shape, dtype=bool)
        m[tuple(self.indices.T.numpy())] = True
        return m


def average_duplicates(idx: torch.Tensor, vals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index tuples made unique, each with the mean of its values (warns when any repeat)."""
    unique, inverse = torch.unique(idx, dim=0, return_inverse=True)
    if unique.shape[0] == idx.shape[0]:
        return idx, vals
    sums = torch.zeros(unique.shape[0], dtype=torch.float64).index_add_(0, inverse, vals.double())
    counts = torch.bincount(inverse, minlength=unique.shape[0]).double()
    merged = idx.shape[0] - unique.shape[0]
    warnings.warn(f"indices: {merged} duplicate index row(s) merged: {int((counts > 1).sum())} "
                  "entries observed more than once are kept once, at the mean of their values",
                  UserWarning, stacklevel=3)
    return unique, (sums / counts).to(vals.dtype)


def as_observations(data, shape=None) -> Observations:
    """Accept ``Observations``, ``(indices, values)``, ``(dense, mask)`` or a dense array with NaN.

    Parameters
    ----------
    data
        The observations in one of the accepted forms; ``indices`` an ``(n, N)`` array, or
        NumPy's tuple of ``N`` per-mode arrays (``np.nonzero(mask)``).
    shape : tuple of int, optional
        Tensor shape; required for ``(indices, values)``, checked otherwise.
    """
    if isinstance(data, Observations):
        obs = data
    elif isinstance(data, dict):
        if "indices" in data:
            obs = Observations.from_coo(data["indices"], data["values"], shape or data["shape"])
        else:
            obs = Observations.from_dense(data["data"], data.get("mask"))
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        first, second = data[0], np.asarray(data[1])  # first may be np.nonzero's tuple
        if second.dtype == bool:
            # (dense, mask): a boolean second element is a mask, never COO values;
            # from_dense reports a mask whose shape differs from the data's.
            obs = Observations.from_dense(np.asarray(first), second)
        else:
            if shape is None:
                raise ValueError("shape: needed with (indices, values) observations")
            obs = Observations.from_coo(first, second, shape)
    else:
        obs = Observations.from_dense(data)
    if shape is not None and tuple(obs.shape) != tuple(int(s) for s in shape):
        raise ValueError(f"data: tensor shape {obs.shape} differs from the model's {tuple(shape)}")
    return obs

"""Effective rank: which rank slices the posterior keeps, and how sure it is.

The rule: slice ``k`` of rank dimension ``d`` is *active* in a sample when its scale (the
product of the Frobenius norms of its parameter slices, see
:meth:`bayestensor.formats.LowRankTensor.slice_norms`) exceeds ``threshold`` times the largest
slice scale of that dimension in the same sample. The effective rank of a sample is the number
of active slices; over samples it is a distribution (the rank posterior).

The rule is relative, so it needs a floor: where a sample's low-rank part is negligible as a
whole (data with nothing but an offset and noise), its slices are equally negligible and the
relative rule would count every one. Given each sample's *signal*, the size of its low-rank
part in units of the data's sd (``TensorCompletion.rank_signal``,
``TensorRegression.rank_signal``), a sample whose signal is at most ``threshold`` has no
active slice: effective rank 0.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from bayestensor.checks import is_integer, real_number

#: Default relative threshold on slice scales.
DEFAULT_THRESHOLD = 0.05
#: Points (a completion's entries, a regression's rows) at which a model measures each
#: sample's low-rank part for the floor, and samples per batch of that measurement (memory
#: ``SIGNAL_CHUNK x SIGNAL_POINTS x rank``).
SIGNAL_POINTS = 1024
SIGNAL_CHUNK = 128


def signal_rms(samples: dict, low_rank_part) -> torch.Tensor:
    """``(S,)`` root mean square of ``low_rank_part(chunk)`` (``(s, ...)`` per chunk of ``s``
    samples) for each of the ``S`` samples, taken ``SIGNAL_CHUNK`` samples at a time.

    Parameters
    ----------
    samples : dict of str to torch.Tensor
        Site values with one flat leading sample dim ``S``.
    low_rank_part : callable
        Maps a chunk of ``samples`` to the sample's low-rank part at its points, leading
        dim the chunk's samples.
    """
    total = next(iter(samples.values())).shape[0]
    rms = []
    for start in range(0, total, SIGNAL_CHUNK):
        part = low_rank_part({k: v[start:start + SIGNAL_CHUNK] for k, v in samples.items()})
        rms.append(part.reshape(part.shape[0], -1).square().mean(-1).sqrt())
    return torch.cat(rms)



def active_slices(scales: torch.Tensor, threshold: float = DEFAULT_THRESHOLD) -> torch.Tensor:
    """Boolean ``(..., R)``: slices whose scale exceeds ``threshold`` times the largest.

    Parameters
    ----------
    scales : torch.Tensor
        ``(..., R)`` slice scales of one rank dimension; the last axis holds the slices of
        one sample.
    threshold : float in [0, 1)
        Relative threshold on a slice's scale.

    Returns
    -------
    torch.Tensor
        Boolean, the shape of ``scales``.

    Raises
    ------
    ValueError
        When ``threshold`` is not a number in [0, 1).
    """
    threshold = real_number("threshold", threshold, high=1.0, low_open=False, high_open=True)
    top = scales.max(dim=-1, keepdim=True).values
    return scales > threshold * top


def active_per_dim(scales: list[torch.Tensor], threshold: float = DEFAULT_THRESHOLD,
                   signal: torch.Tensor | None = None) -> list[torch.Tensor]:
    """The effective-rank rule in full: per rank dimension, boolean ``(..., R_d)`` active slices.

    Parameters
    ----------
    scales : list of torch.Tensor
        Slice scales of each rank dimension ``d``, ``(..., R_d)``.
    threshold : float in [0, 1)
        Relative threshold of :func:`active_slices`, and the floor on ``signal``.
    signal : torch.Tensor, optional
        ``(...)`` size of each sample's low-rank part in units of the data's sd (a model's
        ``rank_signal``); a sample at or below ``threshold`` has no active slice.

    Returns
    -------
    list of torch.Tensor
        One boolean tensor per rank dimension, the shape of its scales.

    Raises
    ------
    ValueError
        When ``scales`` is empty, ``threshold`` is not a number in [0, 1), or ``signal``'s
        shape is not the scales' leading shape.
    """
    if not len(scales):
        raise ValueError("scales: expected one tensor per rank dimension, got none")
    active = [active_slices(s, threshold) for s in scales]
    if signal is None:
        return active
    leading = tuple(scales[0].shape[:-1])
    if tuple(signal.shape) != leading:
        raise ValueError(f"signal: expected shape {leading} (the scales' leading shape), "
                         f"got {tuple(signal.shape)}")
    above = (signal.to(active[0].device) > threshold).unsqueeze(-1)
    return [a & above for a in active]


@dataclass
class RankPosterior:
    """Distribution of the effective rank over posterior samples.

    Attributes
    ----------
    ranks : np.ndarray
        ``(chain, draw, n_rank_dims)`` effective rank of every sample.
    scales : list of np.ndarray
        ``(chain, draw, R_d)`` slice scales per rank dimension.
    threshold : float
        The relative threshold used.
    signal : np.ndarray, optional
        ``(chain, draw)`` size of each sample's low-rank part in units of the data's sd;
        samples at or below ``threshold`` have no active slice. ``None``: the relative rule
        alone.
    """

    ranks: np.ndarray
    scales: list
    threshold: float
    signal: np.ndarray | None = None

    @property
    def n_rank_dims(self) -> int:
        """Number of rank dimensions (1 for CP, one per mode for Tucker, ``N - 1`` for a TT)."""
        return self.ranks.shape[-1]

    def flat(self) -> np.ndarray:
        """``(n_samples, n_rank_dims)``."""
        return self.ranks.reshape(-1, self.n_rank_dims)

    def mode(self) -> np.ndarray:
        """Most frequent effective rank per rank dimension."""
        flat = self.flat()
        return np.array([Counter(flat[:, d].tolist()).most_common(1)[0][0]
                         for d in range(self.n_rank_dims)])

    def mean(self) -> np.ndarray:
        """Posterior mean effective rank per rank dimension."""
        return self.flat().mean(0)

    def _dim(self, dim) -> int:
        """``dim`` checked against the rank dimensions."""
        if not is_integer(dim) or not 0 <= dim < self.n_rank_dims:
            raise ValueError(f"dim: expected a rank dimension in [0, {self.n_rank_dims}), "
                             f"got {dim!r}")
        return int(dim)

    def distribution(self, dim: int = 0) -> dict[int, float]:
        """``{rank: probability}`` for rank dimension ``dim``."""
        flat = self.flat()[:, self._dim(dim)]
        counts = Counter(flat.tolist())
        return {int(r): c / len(flat) for r, c in sorted(counts.items())}

    def activity(self, dim: int = 0) -> np.ndarray:
        """Posterior probability that each slice of rank dimension ``dim`` is active."""
        scales = torch.from_numpy(self.scales[self._dim(dim)])
        signal = None if self.signal is None else torch.from_numpy(self.signal)
        active = active_per_dim([scales], self.threshold, signal)[0]
        return active.reshape(-1, active.shape[-1]).double().mean(0).numpy()

    def keep_mask(self, dim: int = 0, min_prob: float = 0.5) -> np.ndarray:
        """Slices active in at least ``min_prob`` of the samples (what ``prune`` keeps).

        Parameters
        ----------
        dim : int
            Rank dimension.
        min_prob : float
            Smallest posterior probability of being active (see :meth:`activity`) for a
            slice to be kept.

        Returns
        -------
        np.ndarray
            ``(R_dim,)`` boolean, ``True`` for a kept slice.

        Raises
        ------
        ValueError
            When ``dim`` is not a rank dimension or ``min_prob`` not a number in [0, 1].
        """
        min_prob = real_number("min_prob", min_prob, high=1.0, low_open=False)
        return self.activity(dim) >= min_prob

    def __repr__(self) -> str:
        return (f"RankPosterior(mode={self.mode().tolist()}, mean={np.round(self.mean(), 2).tolist()}, "
                f"threshold={self.threshold})")


def rank_posterior(scales: list[torch.Tensor], threshold: float = DEFAULT_THRESHOLD,
                   signal: torch.Tensor | None = None) -> RankPosterior:
    """Build a :class:`RankPosterior` from slice scales ``(chain, draw, R_d)`` per rank dim.

    Parameters
    ----------
    scales : list of torch.Tensor
        Slice scales of each rank dimension ``d``, ``(chain, draw, R_d)``.
    threshold : float in [0, 1)
        Relative threshold of :func:`active_slices`, and the floor on ``signal``.
    signal : torch.Tensor, optional
        ``(chain, draw)`` size of each sample's low-rank part in units of the data's sd (a
        model's ``rank_signal``); a sample at or below ``threshold`` has rank 0.

    Returns
    -------
    RankPosterior
        Effective ranks ``(chain, draw, n_rank_dims)`` and the scales as NumPy arrays.

    Raises
    ------
    ValueError
        When ``threshold`` is not a number in [0, 1).
    """
    if signal is not None:
        signal = signal.detach().cpu()
    active = active_per_dim([s.cpu() for s in scales], threshold, signal)
    ranks = torch.stack([a.sum(-1) for a in active], -1)
    return RankPosterior(
        ranks=ranks.cpu().numpy(),
        scales=[s.detach().cpu().numpy() for s in scales],
        threshold=threshold,
        signal=None if signal is None else signal.numpy(),
    )

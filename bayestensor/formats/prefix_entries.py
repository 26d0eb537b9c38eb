"""Entries of Tucker and tensor-train tensors through a dense prefix.

An entry of a Tucker tensor costs ``prod(R)`` multiply-adds when the core is contracted with
one gathered factor row per mode, and an entry of a tensor train ``sum r_{k-1} r_k``. When
many entries are asked for (the observations of a completion), most of that work repeats:
the core contracted with the first factor is the same for every entry in the same row. So
the leading ``m`` modes are contracted once into a dense *prefix* (Tucker:
``G x_1 U_1 ... x_m U_m``, shape ``(I_1, ..., I_m, R_{m+1}, ..., R_N)``; TT: the first ``m``
cores, ``(I_1 * ... * I_m, r_m)``), its rows are gathered at the entries' leading indices, and
only the trailing modes are contracted per entry. ``m`` comes from a cost model
(:func:`tucker_prefix_modes`, :func:`train_prefix_modes`); ``m = N`` is the whole dense
tensor, read at the entries.

PyTorch has no fused "gather, then contract" (TensorLy's and ``torch.einsum``'s contractions
work on dense tensors), hence these few lines by hand. Gathers (:func:`gather_rows`, which
CP's gathered entries use too) put the sample dimensions last, so each gathered row is one
contiguous block (its backward, an ``index_add``, copies rows); a table with more rows than
are read is gathered first and only the rows read are moved.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

#: The dense prefixes of a whole batch of samples have at most this many elements (CP's dense
#: tensor read at the entries likewise).
PREFIX_MAX = 2**24
#: One gathered number (the gather and its ``index_add`` in the backward) costs about as much as
#: this many multiply-adds of a batched matrix product (2-core CPU, torch 2.13: a
#: 1000^3 rank-20 Tucker at 100,000 entries took 227 ms the old way, 8e8 multiply-adds,
#: against 284 ms gathering 400 numbers an entry from the first mode's prefix).
GATHER_COST = 25


def cheapest_prefix(costs: Sequence[tuple[int, float]]) -> int:
    """The number of leading modes ``m`` with the lowest cost among ``(m, cost)`` pairs."""
    return min(costs, key=lambda pair: (pair[1], pair[0]))[0]


def tucker_prefix_modes(shape: Sequence[int], ranks: Sequence[int], n: int, batch: int) -> int:
    """How many leading modes of a Tucker tensor to contract densely for ``n`` entries.

    ``0`` is the per-entry contraction of the whole core. For ``m >= 1`` the cost is the
    prefix's build (one mode product per mode), the gathered numbers (prefix rows and factor
    rows, at :data:`GATHER_COST` each) and the per-entry contraction of the trailing modes;
    a prefix of the whole batch above :data:`PREFIX_MAX` elements is not considered.
    """
    N = len(shape)
    costs = [(0, n * (sum(math.prod(ranks[k:]) for k in range(N))
                      + GATHER_COST * sum(ranks)))]
    for m in range(1, N + 1):
        if math.prod(shape[:m]) * math.prod(ranks[m:]) * batch > PREFIX_MAX:
            break
        build = sum(math.prod(shape[:k + 1]) * math.prod(ranks[k:]) for k in range(m))
        gathered = math.prod(ranks[m:]) + sum(ranks[m:])
        contract = sum(math.prod(ranks[k:]) for k in range(m, N))
        costs.append((m, build + n * (GATHER_COST * gathered + contract)))
    return cheapest_prefix(costs)


def train_prefix_modes(mode_sizes: Sequence[int], ranks: Sequence[int], n: int,
                       batch: int) -> int:
    """How many leading cores of a train to contract densely for ``n`` entries (at least 1).

    ``mode_sizes`` are the cores' (merged) mode sizes, ``ranks`` the internal ranks
    ``r_1..r_{N-1}``. The cost is the prefix's build, the gathered numbers (prefix rows and
    the trailing cores' slices, at :data:`GATHER_COST` each) and the per-entry products of
    the trailing slices.
    """
    full = (1,) + tuple(ranks) + (1,)
    N = len(mode_sizes)
    costs = []
    for m in range(1, N + 1):
        if m > 1 and math.prod(mode_sizes[:m]) * full[m] * batch > PREFIX_MAX:
            break
        build = sum(math.prod(mode_sizes[:k + 1]) * full[k] * full[k + 1]
                    for k in range(1, m))
        slices = sum(full[k] * full[k + 1] for k in range(m, N))
        costs.append((m, build + n * (GATHER_COST * (full[m] + slices) + slices)))
    return cheapest_prefix(costs)


def gather_rows(t: torch.Tensor, n_batch: int, index: torch.Tensor) -> torch.Tensor:
    """Rows of ``t`` (``batch + (M,) + rest``, ``n_batch`` batch dims) at ``index``, returned
    as ``(n,) + rest + (b,)`` with the batch flattened last (``b = prod(batch)``).

    With more than one sample, moving the batch last copies: the table, before the gather,
    when it has at most as many rows as are read (factor rows, read many times each); else
    only the rows read, after the gather (a dense prefix read at fewer entries than it has).
    One sample needs no copy. ``benchmarks/gather_speed.py`` measures the two orders.
    """
    size, rest = t.shape[n_batch], tuple(t.shape[n_batch + 1:])
    b = math.prod(t.shape[:n_batch])
    n = index.shape[0]
    if b > 1 and n < size:
        rows = t.reshape(b, size, -1).index_select(1, index)  # (b, n, prod(rest))
        return rows.permute(1, 2, 0).reshape((n,) + rest + (b,))
    moved = t.movedim(tuple(range(n_batch)), tuple(range(-n_batch, 0))) if n_batch else t
    return moved.reshape(size, -1).index_select(0, index).reshape((n,) + rest + (b,))


#: From this many numbers per slice (``r * s``) a train step multiplies by ``einsum`` (batched
#: matrix products), below it elementwise (forward and backward, 2 cores): rank 20 at 100,000
#: entries 92-124 against 248-275 ms, rank 10 at 11,468 entries 6.0 against 4.5 ms, and a last
#: core (``s = 1``) 6.5 against 2.2 ms over four samples.
TRAIN_STEP_EINSUM = 256


def train_step(vector: torch.Tensor, piece: torch.Tensor) -> torch.Tensor:
    """``(n, r, b)`` row vectors times gathered ``(n, r, s, b)`` core slices: ``(n, s, b)``."""
    if piece.shape[1] * piece.shape[2] >= TRAIN_STEP_EINSUM:
        return torch.einsum("zrb,zrsb->zsb", vector, piece)
    return (vector.unsqueeze(2) * piece).sum(1)


def flat_index(idx: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Row-major position of ``idx``'s columns in a tensor of shape ``sizes``."""
    flat = idx[:, 0]
    for k in range(1, len(sizes)):
        flat = flat * sizes[k] + idx[:, k]
    return flat


def batch_last_to_front(out: torch.Tensor, batch_shape: tuple[int, ...]) -> torch.Tensor:
    """``(n, b)`` entries with the flattened batch last as ``batch_shape + (n,)``."""
    return out.transpose(0, 1).reshape(tuple(batch_shape) + (out.shape[0],))

"""Tensorized shapes: factor a layer's sizes into a given number of balanced modes."""

from __future__ import annotations

import math
from typing import Sequence


def prime_factors(n: int) -> list[int]:
    """Prime factors of ``n`` in decreasing order (``[]`` for 1)."""
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return sorted(out, reverse=True)


def factorize(n: int, k: int) -> tuple[int, ...]:
    """Factor ``n`` into ``k`` integer factors as balanced as possible.

    Prime factors are assigned, largest first, to the currently smallest factor; the result is
    sorted in decreasing order and padded with 1 where ``n`` has fewer than ``k`` prime factors.

    Parameters
    ----------
    n : int
        Positive integer to factor.
    k : int
        Number of factors (>= 1).

    Examples
    --------
    >>> factorize(784, 4)
    (7, 7, 4, 4)
    >>> factorize(512, 3)
    (8, 8, 8)
    """
    if not isinstance(n, (int,)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n: expected a positive integer, got {n!r}")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k: expected a positive integer number of modes, got {k!r}")
    bins = [1] * k
    for p in prime_factors(n):
        i = min(range(k), key=lambda j: bins[j])
        bins[i] *= p
    return tuple(sorted(bins, reverse=True))


def tensorized_shape(in_features: int, out_features: int, n_modes: int = 3,
                     shape: Sequence | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Input and output mode shapes of a tensorized linear layer.

    Parameters
    ----------
    in_features, out_features : int
        Layer sizes.
    n_modes : int
        Number of modes per side when ``shape`` is not given.
    shape : pair of sequences, optional
        User-given ``(in_shape, out_shape)``; their products must equal the layer sizes.

    Returns
    -------
    (in_shape, out_shape) : tuple of tuples
    """
    for name, v in (("in_features", in_features), ("out_features", out_features)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    if shape is None:
        return factorize(in_features, n_modes), factorize(out_features, n_modes)
    try:
        in_shape, out_shape = (tuple(int(s) for s in part) for part in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape: expected a pair (in_shape, out_shape) of integer sequences, "
                         f"got {shape!r}") from None
    if math.prod(in_shape) != in_features or any(s < 1 for s in in_shape):
        raise ValueError(f"shape: in_shape {in_shape} does not multiply to in_features={in_features}")
    if math.prod(out_shape) != out_features or any(s < 1 for s in out_shape):
        raise ValueError(f"shape: out_shape {out_shape} does not multiply to "
                         f"out_features={out_features}")
    return in_shape, out_shape

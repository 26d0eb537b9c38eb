"""Tensorized shapes: factor a layer's sizes into balanced modes (the ranks a shape supports are
:func:`bayestensor.formats.ranks.rank_caps`)."""

from __future__ import annotations

import math
from typing import Sequence

from bayestensor.checks import positive_int
# Re-exported: rank_caps, the rule the formats share, for nets' public API.
from bayestensor.formats.ranks import rank_caps  # noqa: F401


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
    n, k = positive_int("n", n), positive_int("k", k)
    bins = [1] * k
    for p in prime_factors(n):
        i = min(range(k), key=lambda j: bins[j])
        bins[i] *= p
    return tuple(sorted(bins, reverse=True))


def tensorized_shape(in_features: int, out_features: int, num_modes: int = 3,
                     shape: Sequence | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Input and output mode shapes of a tensorized linear layer.

    Parameters
    ----------
    in_features, out_features : int
        Layer sizes.
    num_modes : int
        Number of modes per side when ``shape`` is not given.
    shape : pair of sequences, optional
        User-given ``(in_shape, out_shape)``; their products must equal the layer sizes.

    Returns
    -------
    (in_shape, out_shape) : tuple of tuples
    """
    in_features = positive_int("in_features", in_features)
    out_features = positive_int("out_features", out_features)
    if shape is None:
        num_modes = positive_int("num_modes", num_modes)
        return factorize(in_features, num_modes), factorize(out_features, num_modes)
    try:
        in_shape, out_shape = (tuple(int(s) for s in part) for part in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape: expected a pair (in_shape, out_shape) of integer sequences, "
                         f"got {shape!r}") from None
    for side, modes, size in (("in", in_shape, in_features), ("out", out_shape, out_features)):
        if math.prod(modes) != size or any(s < 1 for s in modes):
            raise ValueError(f"shape: {side}_shape {modes} does not multiply to "
                             f"{side}_features={size}")
    return in_shape, out_shape

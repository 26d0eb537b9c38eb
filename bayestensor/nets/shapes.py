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


def mode_count(n: int, num_modes: int, min_modes: int = 1) -> int:
    """Modes a side of size ``n`` gets: ``num_modes``, fewer when ``n`` has fewer prime factors
    (a size-1 mode adds a core and no structure), but at least ``min_modes``."""
    return min(num_modes, max(min_modes, len(prime_factors(n))))


def tensorized_shape(in_features: int, out_features: int, num_modes: int = 3,
                     shape: Sequence | None = None, *, min_modes: int = 1,
                     same_count: bool = False) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Input and output mode shapes of a tensorized linear layer.

    By default each size is factored by :func:`factorize` into at most ``num_modes`` modes,
    and into fewer when it has fewer prime factors, so no mode has size 1 unless ``min_modes``
    asks for more modes than the size has prime factors (``10`` in 3 modes is ``(5, 2)``).

    Parameters
    ----------
    in_features, out_features : int
        Layer sizes.
    num_modes : int
        Most modes per side when ``shape`` is not given.
    shape : pair of sequences, optional
        User-given ``(in_shape, out_shape)``; their products must equal the layer sizes.
    min_modes : int
        Fewest modes per side (a TT-matrix needs 2).
    same_count : bool
        Give both sides the same number of modes (a TT-matrix pairs them).

    Returns
    -------
    (in_shape, out_shape) : tuple of tuples

    Examples
    --------
    >>> tensorized_shape(784, 10, 3)
    ((14, 8, 7), (5, 2))
    >>> tensorized_shape(784, 10, 3, same_count=True)
    ((28, 28), (5, 2))
    """
    in_features = positive_int("in_features", in_features)
    out_features = positive_int("out_features", out_features)
    if shape is None:
        num_modes = positive_int("num_modes", num_modes)
        min_modes = min(positive_int("min_modes", min_modes), num_modes)
        k_in = mode_count(in_features, num_modes, min_modes)
        k_out = mode_count(out_features, num_modes, min_modes)
        if same_count:
            k_in = k_out = min(k_in, k_out)
        return factorize(in_features, k_in), factorize(out_features, k_out)
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

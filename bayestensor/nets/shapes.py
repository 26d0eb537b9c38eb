"""Tensorized shapes: factor a layer's sizes into balanced modes; the ranks a shape supports."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from bayestensor.checks import positive_int


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


def rank_value(name: str, value) -> int | tuple[int, ...]:
    """A rank argument: a positive integer or a sequence of them (floats and strings refused)."""
    def is_rank(v):
        return not isinstance(v, bool) and isinstance(v, (int, np.integer)) and v >= 1

    if is_rank(value):
        return int(value)
    if isinstance(value, (list, tuple)) and value and all(is_rank(v) for v in value):
        return tuple(int(v) for v in value)
    raise ValueError(f"{name}: expected a positive integer or a sequence of them, got {value!r}")


def rank_caps(fmt: str, tensor_shape: Sequence[int]) -> tuple[int, ...]:
    """Largest useful rank of each rank dimension of ``fmt`` over ``tensor_shape``.

    A larger rank adds parameters but no expressive power (the format already represents
    every tensor of that shape along that dimension):

    ``"cp"``     the product of all modes but the largest;
    ``"tucker"`` rank ``n``: ``min(dim_n, product of the other dims)``;
    ``"tt"``     bond ``k``: ``min(product of the modes left of it, product of those right)``;
    ``"ttm"``    as TT over the merged modes ``I_k J_k`` (``tensor_shape`` is
    ``in_shape + out_shape``).

    Examples
    --------
    >>> rank_caps("ttm", (4, 4, 4, 4, 4, 2))
    (16, 8)
    >>> rank_caps("tucker", (6, 5, 4))
    (6, 5, 4)
    """
    shape = tuple(int(s) for s in tensor_shape)
    total = math.prod(shape)
    if fmt == "cp":
        return (total // max(shape),)
    if fmt == "tucker":
        return tuple(min(s, total // s) for s in shape)
    if fmt == "ttm":
        n = len(shape) // 2
        modes = [shape[k] * shape[n + k] for k in range(n)]
    elif fmt == "tt":
        modes = list(shape)
    else:
        raise ValueError(f"format: expected one of ('ttm', 'cp', 'tucker', 'tt'), got {fmt!r}")
    return tuple(min(math.prod(modes[:k]), math.prod(modes[k:])) for k in range(1, len(modes)))

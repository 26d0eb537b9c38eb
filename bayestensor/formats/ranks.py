"""The ranks a tensor shape supports, and the parameter budget of a low-rank tensor.

A rank above what the shape supports adds parameters but no expressive power: the format
already represents every tensor of that shape along that rank dimension. Models and network
layers cap requested ranks here (with a warning) and refuse, before allocating anything, a
tensor whose parameter count is above a stated limit unless the caller lifts it.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

#: Most parameters of one low-rank tensor (one sample) unless the caller passes
#: ``max_params=None``: 50 million float32 numbers are 200 MB, and fitting keeps several
#: copies (gradients, optimizer moments, chains or particles).
MAX_PARAMS = 50_000_000


def rank_caps(fmt: str, tensor_shape: Sequence[int]) -> tuple[int, ...]:
    """Largest useful rank of each rank dimension of ``fmt`` over ``tensor_shape``.

    ``"cp"``     the product of all modes but the largest;
    ``"tucker"`` rank ``n``: ``min(dim_n, product of the other dims)``;
    ``"tt"``     bond ``k``: ``min(product of the modes left of it, product of those right)``;
    ``"ttm"``    as TT over the merged modes ``I_k J_k`` (``tensor_shape`` is
    ``in_shape + out_shape``).

    Parameters
    ----------
    fmt : {"cp", "tucker", "tt", "ttm"}
        Name of the low-rank format.
    tensor_shape : sequence of int
        Shape of the represented tensor (each size is converted with ``int``). For
        ``"ttm"`` it is the input modes followed by the output modes, two halves of equal
        length.

    Returns
    -------
    tuple of int
        One cap per rank dimension of the format: a single entry for CP, one per mode for
        Tucker, one per bond (the number of merged modes less one) for TT and TT-matrix.

    Raises
    ------
    ValueError
        If ``fmt`` is not one of the four format names.

    Examples
    --------
    >>> rank_caps("ttm", (4, 4, 4, 4, 4, 2))
    (16, 8)
    >>> rank_caps("tucker", (6, 5, 4))
    (6, 5, 4)
    >>> rank_caps("cp", (6, 5, 4))
    (20,)
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
        raise ValueError(f"format: expected one of ('cp', 'tucker', 'tt', 'ttm'), got {fmt!r}")
    return tuple(min(math.prod(modes[:k]), math.prod(modes[k:])) for k in range(1, len(modes)))


def cap_ranks(fmt: str, tensor_shape: Sequence[int], ranks: Sequence[int], requested,
              name: str = "max_rank", stacklevel: int = 3) -> tuple[int, ...]:
    """``ranks`` capped at :func:`rank_caps`, with a ``UserWarning`` naming ``name`` if any was.

    Parameters
    ----------
    fmt : str
        Format name.
    tensor_shape : sequence of int
        Shape of the represented tensor.
    ranks : sequence of int
        Normalized ranks, one per rank dimension.
    requested
        The caller's argument, quoted in the warning.
    name : str
        The argument's name, first in the warning.
    stacklevel : int
        Passed to ``warnings.warn``.
    """
    capped = tuple(min(int(r), c) for r, c in zip(ranks, rank_caps(fmt, tensor_shape)))
    if capped != tuple(ranks):
        warnings.warn(f"{name}: {requested!r} is more than the {fmt} shape "
                      f"{tuple(tensor_shape)} supports; ranks capped at {capped}",
                      UserWarning, stacklevel=stacklevel)
    return capped


def check_param_count(count: int, what: str, requested, max_params: int | None,
                      name: str = "max_rank") -> None:
    """Raise ``ValueError`` naming ``name`` when ``count`` parameters exceed ``max_params``.

    ``what`` describes the tensor (format, shape, ranks) for the message; ``None`` for
    ``max_params`` lifts the limit.
    """
    if max_params is not None and count > max_params:
        raise ValueError(f"{name}: {requested!r} gives {what} {count:,} parameters, above "
                         f"max_params={max_params:,}; lower {name} or pass max_params=None "
                         "to allow it")

"""The design matrix of a low-rank tensor's parameter: inputs contracted with every other one.

A low-rank tensor is linear in each of its parameters, so ``<X_n, W>`` for inputs ``X_n`` is
``D vec(p_k) `` with ``D`` (``N x numel(p_k)``) each input contracted with every parameter but
``p_k``. The block ascent and the exact Gibbs redraws of a tensor regression solve with it
(:mod:`bayestensor.models.regression_gibbs`). The contraction is read off the format's own
layout (:meth:`~bayestensor.formats.base.LowRankTensor.specs` and
:meth:`~bayestensor.formats.base.LowRankTensor.index_axes`), so one function serves every
format; ``torch.einsum`` contracts it, left to right: the inputs first, then the parameters
that share a mode with them, then the rest (a Tucker core), so that no intermediate is larger
than the inputs times a rank.
"""

from __future__ import annotations

import string
from typing import Sequence

import torch

from bayestensor.formats.base import LowRankTensor, ParamSpec


def subscripts(format_cls: type[LowRankTensor], shape: Sequence[int],
               specs: Sequence[ParamSpec]) -> tuple[list[str], str]:
    """Einsum subscripts of each parameter and of the tensor: one letter per tensor mode, one
    per rank dimension, a letter of its own for each axis that is neither (a TT boundary of
    size 1)."""
    letters = iter(string.ascii_letters[:-1])  # "Z" is the inputs' batch letter
    modes = "".join(next(letters) for _ in shape)
    rank_dims = sorted({d for spec in specs for d in spec.rank_axes.values()})
    ranks = {d: next(letters) for d in rank_dims}
    out = []
    for spec, index in zip(specs, format_cls.index_axes(shape)):
        out.append("".join(modes[index[a]] if a in index
                           else ranks[spec.rank_axes[a]] if a in spec.rank_axes
                           else next(letters) for a in range(len(spec.shape))))
    return out, modes


def linear_design(inputs: torch.Tensor, tensor: LowRankTensor, k: int) -> torch.Tensor:
    """``batch_shape + (N, numel(p_k))``: each input ``(N, *shape)`` contracted with every
    parameter of ``tensor`` but the ``k``-th, so that ``<X_n, W> = design @ vec(p_k)`` (``vec``
    row-major), per sample of ``tensor``'s batch.

    Parameters
    ----------
    inputs : torch.Tensor
        ``(N, *tensor.shape)``.
    tensor : LowRankTensor
        With any sample dimensions (``tensor.batch_shape``).
    k : int
        Which parameter is left out.

    Returns
    -------
    torch.Tensor
        The design, in the inputs' dtype.

    Raises
    ------
    ValueError
        If ``k`` is not a parameter's index or the inputs are not ``(N, *tensor.shape)``.
    """
    if not 0 <= k < len(tensor.params):
        raise ValueError(f"k: expected a parameter index in [0, {len(tensor.params)}), got {k!r}")
    if tuple(inputs.shape[1:]) != tensor.shape:
        raise ValueError(f"inputs: expected shape (N, *{tensor.shape}), got "
                         f"{tuple(inputs.shape)}")
    subs, modes = subscripts(type(tensor), tensor.shape, tensor.param_specs)
    index = type(tensor).index_axes(tensor.shape)
    others = sorted((j for j in range(len(subs)) if j != k), key=lambda j: not index[j])
    shared = modes + "".join(subs[j] for j in others)
    # a size-1 boundary axis of p_k (TT) meets nothing: left out, the size is the same
    expr = (",".join(["Z" + modes] + ["..." + subs[j] for j in others]) + "->...Z"
            + "".join(c for c in subs[k] if c in shared))
    operands = [inputs] + [tensor.params[j].to(inputs.dtype) for j in others]
    return torch.einsum(expr, *operands).reshape(tensor.batch_shape + (inputs.shape[0], -1))

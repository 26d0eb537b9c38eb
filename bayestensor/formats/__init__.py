"""Low-rank tensor formats with a leading sample dimension: CP, Tucker, TT and TT-matrix.

Each format stores a list of parameters, reconstructs the dense tensor (``reconstruct``),
evaluates entries at index tuples without forming it (``entries``), exposes its rank slices
(``slice_norms``, ``prune``) and initializes from data by TensorLy's SVD-based decompositions
(``from_tensor``, computed in :mod:`bayestensor.formats.decompose`) or at random (``random``).

For TensorLy users: ``from_tensorly`` / ``to_tensorly`` convert, and ``norm``, ``inner``,
``unfold``, ``mode_dot``, ``copy`` (plus CP ``weights`` / ``normalize`` and Tucker
``normalize``) follow TensorLy's functions of the same names.
"""

from bayestensor.formats.base import LowRankTensor, ParamSpec, as_index_tensor
from bayestensor.formats.cp import CPTensor
from bayestensor.formats.ranks import MAX_PARAMS, rank_caps
from bayestensor.formats.tt import TTTensor
from bayestensor.formats.ttm import TTMatrix
from bayestensor.formats.tucker import TuckerTensor

FORMATS: dict[str, type[LowRankTensor]] = {
    "cp": CPTensor,
    "tucker": TuckerTensor,
    "tt": TTTensor,
    "ttm": TTMatrix,
}


def get_format(name: str) -> type[LowRankTensor]:
    """Format class for ``"cp" | "tucker" | "tt" | "ttm"``.

    Raises
    ------
    ValueError
        For an unknown name.
    """
    if isinstance(name, type) and issubclass(name, LowRankTensor):
        return name
    key = str(name).lower()
    if key not in FORMATS:
        raise ValueError(f"format: expected one of {sorted(FORMATS)}, got {name!r}")
    return FORMATS[key]


__all__ = ["LowRankTensor", "ParamSpec", "CPTensor", "TuckerTensor", "TTTensor", "TTMatrix",
           "FORMATS", "get_format", "as_index_tensor", "rank_caps", "MAX_PARAMS"]

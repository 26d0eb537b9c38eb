"""Plain JSON values from the numbers the library produces (one converter for every writer)."""

from __future__ import annotations

import math

import numpy as np


def to_jsonable(obj):
    """Dicts, lists, numpy / torch arrays and scalars to plain JSON values.

    Keys become strings, arrays and tensors nested lists, non-finite floats ``None`` (strict JSON
    has no NaN), and anything else unknown its ``str``.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if hasattr(obj, "tolist") and not isinstance(obj, str):  # numpy arrays, torch tensors
        return to_jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)

"""Argument checks for the whole package.

Each check returns the value in its checked type or raises ``ValueError`` whose message starts
with the argument's name (``"num_chains: expected an integer >= 1, got 0"``): the command line
turns such a message into a usage error naming the option. Checks run before any work starts.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int, at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def positive_float(name: str, value, allow_zero: bool = False) -> float:
    """``value`` as a finite float, > 0 (or >= 0 with ``allow_zero``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a finite number {bound}, got {value!r}")
    return v


def seed_value(value, name: str = "seed") -> int:
    """A non-negative integer seed."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    return int(value)


def choice(name: str, value, options) -> str:
    """``value`` as one of ``options`` (strings)."""
    if value not in options:
        raise ValueError(f"{name}: expected one of {tuple(options)}, got {value!r}")
    return value


def matrix(name: str, value, dtype=torch.float64) -> torch.Tensor:
    """A finite 2-D float tensor."""
    try:
        t = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a 2-D numeric array, got {type(value).__name__}") from None
    if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"{name}: expected a non-empty 2-D array, got shape {tuple(t.shape)}")
    if not (t.dtype.is_floating_point or t.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"{name}: expected a numeric array, got dtype {t.dtype}")
    t = t.to(dtype)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return t

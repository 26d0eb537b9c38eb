"""Argument checks for the whole package.

Each check returns the value in its checked type or raises ``ValueError`` whose message starts
with the argument's name (``"num_chains: expected an integer >= 1, got 0"``): the command line
turns such a message into a usage error naming the option. Checks run before any work starts.

The checks are strict: a number given as a string (``"0.1"``) or a boolean is refused, never
converted, and a message prints the value as the caller gave it (``1e+39``, never ``inf``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from bayestensor.seeds import MAX_SEED

#: Largest float32: a larger number (``lr=1e39``) becomes ``inf`` in a float32 tensor.
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def is_integer(value) -> bool:
    """Whether ``value`` is a Python or NumPy integer (booleans are not)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value) -> bool:
    """Whether ``value`` is a Python or NumPy real number (booleans and strings are not)."""
    return is_integer(value) or isinstance(value, (float, np.floating))


def check_shape(shape, name: str = "shape") -> tuple[int, ...]:
    """``shape`` as a non-empty tuple of positive ints; ``ValueError`` naming ``name`` otherwise
    (a size given as a float, ``3.5`` or ``3.0``, is refused, not truncated)."""
    try:
        sizes = tuple(shape)
    except TypeError:
        sizes = ()
    if not sizes or not all(is_integer(s) and s >= 1 for s in sizes):
        raise ValueError(f"{name}: expected a sequence of positive integers, got {shape!r}")
    return tuple(int(s) for s in sizes)


def positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int, at least ``minimum``."""
    if not is_integer(value) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def real_number(name: str, value, low: float = 0.0, high: float = FLOAT32_MAX, *,
                low_open: bool = True, high_open: bool = False) -> float:
    """``value`` as a finite float between ``low`` and ``high`` (ends open or closed).

    The default interval, ``(0, FLOAT32_MAX]``, fits a positive rate or scale that ends up in
    a float32 tensor.

    Strings and booleans are refused, not converted. The message prints the value as given
    and the interval, e.g. ``"lr: expected a number in (0, 3.40282e+38], got 1e+39"``.

    Parameters
    ----------
    name : str
        The argument's name, first in the message.
    value
        What the caller passed.
    low, high : float
        The interval's ends.
    low_open, high_open : bool
        Whether the end itself is excluded.
    """
    opens = "(" if low_open or math.isinf(low) else "["
    closes = ")" if high_open or math.isinf(high) else "]"
    interval = f"{opens}{low:g}, {high:g}{closes}"
    bad = f"{name}: expected a finite number in {interval}, got {value!r}"
    if not is_real(value):
        raise ValueError(bad)
    try:
        v = float(value)
    except OverflowError:  # an int beyond the float range
        raise ValueError(bad) from None
    if not math.isfinite(v) or v < low or v > high or (low_open and v == low) \
            or (high_open and v == high):
        raise ValueError(bad)
    return v


def positive_float(name: str, value, allow_zero: bool = False,
                   max_value: float = math.inf) -> float:
    """``value`` as a finite float, > 0 (or >= 0 with ``allow_zero``), at most ``max_value``.

    Pass ``max_value=FLOAT32_MAX`` for a number that ends up in a float32 tensor.
    """
    return real_number(name, value, 0.0, max_value, low_open=not allow_zero)


def seed_value(value, name: str = "seed", optional: bool = False) -> int | None:
    """A seed: an integer in ``[0, seeds.MAX_SEED]`` (or ``None`` when ``optional``)."""
    if optional and value is None:
        return None
    if not is_integer(value) or not 0 <= value <= MAX_SEED:
        raise ValueError(f"{name}: expected an integer in [0, 2**63 - 1], got {value!r}")
    return int(value)


def flag(name: str, value) -> bool:
    """``value`` as a bool: only ``True`` or ``False`` (``"no"`` is truthy, so it is refused)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def rank_value(name: str, value) -> int | tuple[int, ...]:
    """A rank argument: a positive integer or a non-empty sequence of them.

    Floats (``2.5``), strings (``"3"``) and booleans are refused, not rounded or converted.
    """
    def is_rank(v):
        return is_integer(v) and v >= 1

    if is_rank(value):
        return int(value)
    if isinstance(value, (list, tuple)) and value and all(is_rank(v) for v in value):
        return tuple(int(v) for v in value)
    raise ValueError(f"{name}: expected a positive integer or a sequence of them, got {value!r}")


def choice(name: str, value, options) -> str:
    """``value`` as one of ``options`` (strings)."""
    if value not in options:
        raise ValueError(f"{name}: expected one of {tuple(options)}, got {value!r}")
    return value


def not_complex(name: str, value) -> None:
    """Refuse complex numbers before a cast to float: NumPy and torch would drop the imaginary
    part with only a ``ComplexWarning``."""
    complex_ = (value.is_complex() if isinstance(value, torch.Tensor)
                else np.iscomplexobj(value))
    if complex_:
        raise ValueError(f"{name}: expected real numbers, got complex values")


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

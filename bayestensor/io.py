"""Reading and writing the library's files: JSON values, atomic writes, tensor files, versions.

Every file the package writes goes through :func:`atomic_write` (temporary file, ``fsync``,
rename), so an interrupted write leaves the previous file intact. Every tensor file it reads
goes through :func:`load_tensors`, which never unpickles code: PyTorch's weights-only loader
accepts tensors, numbers, strings and plain containers only.
"""

from __future__ import annotations

import functools
import io as bytes_io
import math
import os
import pickle
import platform
from importlib import metadata
from pathlib import Path

import numpy as np
import torch


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


def atomic_write(path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a synced temporary file and a rename.

    Parameters
    ----------
    path : str or path-like
        Destination; its folder is created when missing.
    data : bytes or str
        Contents (``str`` is written as UTF-8).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        When ``path`` is a folder (before anything is written).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path: {str(path)!r} is a folder; expected a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a failed or interrupted write leaves neither file half-written
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_tensors(path, payload) -> Path:
    """Save tensors, numbers, strings and plain containers with ``torch.save``, atomically.

    Only what :func:`load_tensors` can read back belongs in ``payload``: no custom classes.
    """
    buffer = bytes_io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write(path, buffer.getvalue())


def load_tensors(path, *, what: str = "file"):
    """Load a file written by :func:`save_tensors` without running any code from it.

    Parameters
    ----------
    path : str or path-like
        The file.
    what : str
        The argument or kind of file, named in error messages (``"resume"``, ``"model file"``).

    Raises
    ------
    ValueError
        When the file is missing, empty, truncated, not a PyTorch file, or holds objects other
        than tensors and plain values (a pickle that would run code is refused, not loaded).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what}: file {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"{what}: file {str(path)!r} is empty")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        raise ValueError(f"{what}: {str(path)!r} holds objects other than tensors and plain values; "
                         "it was not written by bayestensor and was not loaded") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as err:
        raise ValueError(f"{what}: {str(path)!r} is not a readable bayestensor file "
                         f"(corrupt or truncated: {type(err).__name__})") from None


def versions() -> dict:
    """Versions of Python and the libraries a run depends on (``None`` when not importable)."""
    return dict(_installed_versions())


@functools.cache
def _installed_versions() -> dict:
    """Read once per process: the package metadata lookups take about 6 ms, which a small MAP
    fit (about 0.1 s on a 30^3 tensor) would otherwise pay every time."""
    out = {"python": platform.python_version()}
    try:
        out["bayestensor"] = metadata.version("bayestensor")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        out["bayestensor"] = None
    # read from the installed distributions: importing ArviZ only to ask takes seconds
    for name, distribution in (("torch", "torch"), ("pyro", "pyro-ppl"), ("numpy", "numpy"),
                               ("tensorly", "tensorly"), ("arviz", "arviz")):
        try:
            out[name] = metadata.version(distribution)
        except metadata.PackageNotFoundError:  # pragma: no cover - optional in odd environments
            out[name] = None
    return out

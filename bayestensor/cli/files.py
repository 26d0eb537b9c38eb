"""Reading the commands' input files: arrays from ``.npy`` / ``.npz``, never pickled objects.

Every failure is a ``ValueError`` whose message starts with the file's path (or the argument
it came from), so the command prints one line naming it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from bayestensor import checks


def read_tensor(path, mask_path=None) -> np.ndarray:
    """The tensor in a ``.npy`` / ``.npz`` file with NaN at missing entries.

    An ``.npz`` holds ``data`` (or a single other array) and optionally ``mask`` (True where
    observed); a separate ``.npy`` mask file overrides it. Pickled objects are never loaded.

    Raises
    ------
    ValueError
        Naming the file when it is not a readable array file or when an ``.npz`` without
        ``data`` holds several arrays besides ``mask``, or ``mask`` when the mask is
        not boolean (integer 0/1 is accepted; a float mask is refused as ambiguous) or does not
        match the data's shape.
    """
    path = Path(path)
    if path.suffix not in (".npy", ".npz"):
        raise ValueError(f"{path}: expected a .npy or .npz file, got {path.name}")
    arrays = load_arrays(path)
    data = _data_array(path, arrays)
    mask = arrays.get("mask")
    if mask_path is not None:
        mask = next(iter(load_arrays(Path(mask_path)).values()), None)
    if mask is not None:
        mask = np.asarray(mask)
        if not (mask.dtype == bool or (mask.dtype.kind in "iu" and np.isin(mask, (0, 1)).all())):
            raise ValueError(f"mask: expected a boolean array (True where observed), got dtype "
                             f"{mask.dtype}")
        if np.shape(mask) != np.shape(data):
            raise ValueError(f"mask: expected shape {np.shape(data)} like the data, got "
                             f"{np.shape(mask)}")
        data = np.where(mask.astype(bool), data, np.nan)
    checks.not_complex(str(path), data)
    try:
        return np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: expected a numeric array, got dtype {data.dtype}") from None


def _data_array(path: Path, arrays: dict) -> np.ndarray:
    """``data``, or the one array that is not ``mask``: never a guess between several."""
    if "data" in arrays:
        return arrays["data"]
    candidates = [k for k in arrays if k != "mask"]
    if len(candidates) != 1:
        found = f"arrays {sorted(arrays)}" if arrays else "no array"
        raise ValueError(f"{path}: expected an array named 'data' (or a single array besides "
                         f"'mask'), found {found}")
    return arrays[candidates[0]]


def load_arrays(path: Path) -> dict:
    """``{"data": array}`` of a ``.npy`` file, or every array of an ``.npz`` file."""
    try:
        with open(path, "rb") as f:
            loaded = np.load(f, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return {"data": loaded}
            with loaded:
                return {k: loaded[k] for k in loaded.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable {path.suffix} file (empty, truncated, corrupt "
                         f"or pickled: {type(err).__name__})") from None


def read_xy(path) -> dict:
    """The arrays of a regression ``.npz`` file: ``X`` (n, ...), ``y`` and optional test arrays."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: expected an .npz file with arrays X and y, got {path.name}")
    arrays = load_arrays(path)
    missing = [k for k in ("X", "y") if k not in arrays]
    if missing:
        raise ValueError(f"{path}: has arrays {sorted(arrays)}; missing {missing} "
                         "(X: inputs (n, ...), y: responses (n,) or (n, k))")
    if arrays["X"].ndim < 2:
        raise ValueError(f"{path}: X: expected shape (n, I_1, ..., I_N), got {arrays['X'].shape}")
    if "y_test" in arrays:
        n_test = len(arrays["X_test"]) if "X_test" in arrays else None
        if n_test is None or len(arrays["y_test"]) != n_test:
            raise ValueError(f"{path}: y_test: expected one response per row of X_test "
                             f"({n_test} rows), got {len(arrays['y_test'])}")
    return arrays

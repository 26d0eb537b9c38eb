"""Backend-free figures: a ``Figure`` with its own Agg canvas, PNG bytes and PNG files.

Library code draws on ``matplotlib.figure.Figure`` objects made here, never through pyplot's
global state, so importing or running the package leaves the user's backend alone.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Resolution of figures embedded in reports (small files, sharp enough on screen).
REPORT_DPI = 80
#: Resolution of figures saved as PNG files beside a run.
FILE_DPI = 100


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=(6.0, 4.0), squeeze: bool = True,
             **kwargs):
    """A ``(Figure, axes)`` pair like ``pyplot.subplots``, without pyplot.

    Parameters
    ----------
    nrows, ncols : int
    figsize : (float, float)
        Inches.
    squeeze : bool
        As in ``pyplot.subplots``: a single Axes, or a 1-D array for one row or column.
    **kwargs
        Passed to ``Figure.subplots`` (``sharex``, ``gridspec_kw``, ...).
    """
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, **kwargs)
    return fig, axes


def png_bytes(fig, dpi: int = REPORT_DPI) -> bytes:
    """PNG bytes of ``fig``, cropped to its content; a pyplot figure is closed afterwards."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    close(fig)
    return buf.getvalue()


def save_png(fig, path, dpi: int = FILE_DPI) -> Path:
    """Write ``fig`` as a PNG at ``path`` (parent folders created); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    close(fig)
    return path


def close(fig) -> None:
    """Release a figure that pyplot manages (ArviZ draws through pyplot); others need nothing."""
    manager = getattr(fig.canvas, "manager", None)
    if manager is not None:
        # lazy on purpose: only a figure pyplot made has a manager, so pyplot is loaded already;
        # the package itself never imports pyplot
        import matplotlib.pyplot as plt

        plt.close(fig)


def finite(values) -> np.ndarray:
    """``values`` as floats with ``None`` turned into NaN (JSON-loaded numbers)."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


#: Values spread over less than this fraction of their magnitude are binned as one bar.
CONSTANT_SPREAD = 1e-9


def hist_bins(values, bins: int) -> int:
    """``bins`` for a histogram of ``values``, or 1 where they are equal to within float
    rounding: numpy refuses to cut a spread of 1e-17 at a value of 0.06 (the entries' sd of a
    fit without a low-rank part, which is the offset's alone) into finite-sized bins."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return bins
    return bins if np.ptp(v) > CONSTANT_SPREAD * np.abs(v).max() else 1

"""Matplotlib figures of tensor-regression results: the coefficient matrix ``W``."""

from __future__ import annotations

import numpy as np

from bayestensor.viz.figures import save_png, subplots

#: Width (inches) of one panel; the height is PANEL_HEIGHT.
PANEL_WIDTH = 3.2
PANEL_HEIGHT = 3.0
#: Colour-bar width as a fraction of the axes: makes the bar about as tall as a square image.
COLORBAR_FRACTION = 0.046


def plot_weights(mean, sd=None, truth=None, path=None, title: str | None = None):
    """Draw a 2-D coefficient matrix: truth (if known), posterior mean and posterior sd.

    Parameters
    ----------
    mean : array_like, 2-D
        Posterior mean of ``W`` (e.g. from :meth:`TensorRegression.weight_posterior`).
    sd : array_like, 2-D, optional
        Posterior sd of ``W``.
    truth : array_like, 2-D, optional
        The true ``W`` of a synthetic problem, drawn on the same colour scale as the mean.
    path : path, optional
        Write a PNG here.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        When ``mean`` is not 2-D.
    """
    mean = np.asarray(mean, dtype=np.float64)
    if mean.ndim != 2:
        raise ValueError(f"mean: expected a 2-D array (an image-shaped W), got shape {mean.shape}")
    # (name, values, colour map, symmetric colour scale around 0)
    panels = []
    if truth is not None:
        panels.append(("true W", np.asarray(truth, dtype=np.float64), "RdBu_r", True))
    panels.append(("posterior mean", mean, "RdBu_r", True))
    if sd is not None:
        panels.append(("posterior sd", np.asarray(sd, dtype=np.float64), "viridis", False))
    lim = max(float(np.abs(p[1]).max()) for p in panels if p[3]) or 1.0
    fig, axes = subplots(1, len(panels), figsize=(PANEL_WIDTH * len(panels), PANEL_HEIGHT),
                         squeeze=False)
    for ax, (name, arr, cmap, symmetric) in zip(axes[0], panels):
        kw = {"vmin": -lim, "vmax": lim} if symmetric else {"vmin": 0.0}
        im = ax.imshow(arr, cmap=cmap, **kw)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=COLORBAR_FRACTION, pad=0.04)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        save_png(fig, path)
    return fig

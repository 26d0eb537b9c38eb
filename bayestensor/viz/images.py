"""Matplotlib figures of completion results."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bayestensor.viz.figures import save_png, subplots

#: Size (inches) of one image panel.
PANEL_INCHES = 4
#: Colour-bar width as a fraction of the axes: makes the bar about as tall as a square image.
COLORBAR_FRACTION = 0.046


def is_image(shape) -> bool:
    """True for an (H, W, 3) colour image (a 2-D array is taken as a matrix, not an image)."""
    return len(shape) == 3 and shape[-1] == 3


def _show(ax, img, title, cmap=None, vmin=None, vmax=None):
    im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
    return im


def image_completion_figures(observed, mean, sd, out_dir, *, truth=None, prefix: str = "image"):
    """Write PNGs of the observed image, the posterior mean and the posterior sd map.

    Parameters
    ----------
    observed : array (H, W, 3) or (H, W)
        Data with NaN at missing pixels (shown black).
    mean, sd : arrays of the same shape
        Posterior mean and predictive sd.
    out_dir : path
    truth : array, optional
        Ground truth, shown beside the others when given.
    prefix : str
        File name prefix.

    Returns
    -------
    dict of str to Path
        ``observed``, ``mean``, ``sd`` and ``panel`` (all side by side) PNG paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    obs = np.nan_to_num(np.asarray(observed, dtype=float), nan=0.0)
    lo, hi = np.nanmin(observed), np.nanmax(observed)
    scale = (lambda x: np.clip((np.asarray(x) - lo) / (hi - lo or 1.0), 0, 1))
    sd_map = np.asarray(sd).mean(-1) if np.ndim(sd) == 3 else np.asarray(sd)
    panels = [("observed", scale(obs), None), ("posterior mean", scale(mean), None),
              ("posterior sd", sd_map, "magma")]
    if truth is not None:
        panels.insert(0, ("truth", scale(truth), None))
    paths = {}
    for title, img, cmap in panels:
        fig, ax = subplots(figsize=(PANEL_INCHES, PANEL_INCHES))
        _panel(fig, ax, title, img, cmap)
        key = title.split()[-1] if title != "posterior mean" else "mean"
        paths[key] = save_png(fig, out / f"{prefix}_{key}.png")
    fig, axes = subplots(1, len(panels), figsize=(PANEL_INCHES * len(panels), PANEL_INCHES))
    for ax, (title, img, cmap) in zip(axes, panels):
        _panel(fig, ax, title, img, cmap)
    paths["panel"] = save_png(fig, out / f"{prefix}_panel.png")
    return paths


def _panel(fig, ax, title, img, cmap):
    im = _show(ax, img, title, cmap=cmap if np.ndim(img) == 2 else None)
    if cmap is not None:
        fig.colorbar(im, ax=ax, fraction=COLORBAR_FRACTION)


def matrix_figure(values, title: str, cmap: str = "viridis", vmin: float | None = 0.0,
                  size=(3.4, 3.0)):
    """One 2-D array as a colour map with a colour bar (e.g. a posterior sd map)."""
    fig, ax = subplots(figsize=size)
    im = ax.imshow(np.asarray(values), cmap=cmap, vmin=vmin)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, fraction=COLORBAR_FRACTION, pad=0.04)
    fig.tight_layout()
    return fig

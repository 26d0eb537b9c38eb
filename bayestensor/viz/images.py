"""Matplotlib figures of completion results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.patches import Patch, Rectangle

from bayestensor.viz.figures import save_png, subplots

#: Size (inches) of one image panel.
PANEL_INCHES = 4
#: Colour-bar width as a fraction of the axes: makes the bar about as tall as a square image.
COLORBAR_FRACTION = 0.046
#: Face and hatch colours of missing pixels: the hatching tells them from grey image pixels.
MISSING_FACE = "#d9d9d9"
MISSING_HATCH = "#8c8c8c"
#: A 3-way cube is drawn band by band only when both image sides have at least this many pixels.
MIN_BAND_PIXELS = 8
#: Most bands :func:`band_figures` draws (one row each).
MAX_BAND_ROWS = 8
#: File-name key of each panel.
KEYS = {"truth": "truth", "observed": "observed", "posterior mean": "mean", "entry sd": "sd"}


def is_image(shape) -> bool:
    """True for an (H, W, 3) colour image (a 2-D array is taken as a matrix, not an image)."""
    return len(shape) == 3 and shape[-1] == 3


def _show(ax, img, title, cmap=None, vmin=None, vmax=None):
    im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def with_missing_transparent(rgb, missing):
    """An RGBA copy of ``rgb`` (values in [0, 1]) that is transparent where ``missing``."""
    rgba = np.ones(rgb.shape[:2] + (4,))
    rgba[..., :3] = np.where(missing[..., None], 0.0, rgb)
    rgba[..., 3] = np.where(missing, 0.0, 1.0)
    return rgba


def _hatch_background(ax, shape) -> None:
    """Hatched light-grey patch behind an image: it shows through at transparent (missing) pixels."""
    h, w = shape[:2]
    ax.add_patch(Rectangle((-0.5, -0.5), w, h, facecolor=MISSING_FACE, edgecolor=MISSING_HATCH,
                           hatch="///", linewidth=0, zorder=0))


def image_completion_figures(observed, mean, sd, out_dir, *, truth=None, prefix: str = "image"):
    """Write PNGs of the observed image, the posterior mean and the posterior sd map.

    Parameters
    ----------
    observed : array (H, W, 3)
        Data with NaN at missing entries. A pixel with any channel missing is drawn hatched
        light grey (never black, which is a colour images have), with a legend entry.
    mean, sd : arrays of the same shape
        Posterior mean and posterior sd of each entry's noise-free value (``Prediction.mean``
        and ``Prediction.sd_mean``); the predictive sd would add the same noise sd to every
        pixel and hide where the model is unsure. The sd map averages the channels.
    out_dir : path
    truth : array, optional
        Ground truth, shown beside the others when given.
    prefix : str
        File name prefix.

    Returns
    -------
    dict of str to Path
        ``observed``, ``mean``, ``sd`` and ``panel`` (all side by side) PNG paths, and
        ``truth`` when given.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    observed = np.asarray(observed, dtype=float)
    missing = np.isnan(observed).any(-1) if observed.ndim == 3 else np.isnan(observed)
    lo, hi = np.nanmin(observed), np.nanmax(observed)
    scale = (lambda x: np.clip((np.asarray(x, dtype=float) - lo) / (hi - lo or 1.0), 0, 1))
    sd_map = np.asarray(sd).mean(-1) if np.ndim(sd) == 3 else np.asarray(sd)
    obs_img = with_missing_transparent(scale(np.nan_to_num(observed, nan=0.0)), missing)
    panels = [("observed", obs_img, None), ("posterior mean", scale(mean), None),
              ("entry sd", sd_map, "magma")]
    if truth is not None:
        panels.insert(0, ("truth", scale(truth), None))
    paths = {}
    for title, img, cmap in panels:
        fig, ax = subplots(figsize=(PANEL_INCHES, PANEL_INCHES))
        _panel(fig, ax, title, img, cmap, missing)
        paths[KEYS[title]] = save_png(fig, out / f"{prefix}_{KEYS[title]}.png")
    fig, axes = subplots(1, len(panels), figsize=(PANEL_INCHES * len(panels), PANEL_INCHES))
    for ax, (title, img, cmap) in zip(axes, panels):
        _panel(fig, ax, title, img, cmap, missing)
    paths["panel"] = save_png(fig, out / f"{prefix}_panel.png")
    return paths


def _panel(fig, ax, title, img, cmap, missing):
    if title == "observed":
        _hatch_background(ax, img.shape)
        ax.legend(handles=[Patch(facecolor=MISSING_FACE, edgecolor=MISSING_HATCH, hatch="///",
                                 label=f"missing ({int(missing.sum())} px)")],
                  loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=8, frameon=False)
    im = _show(ax, img, title, cmap=cmap if np.ndim(img) == 2 else None)
    if cmap is not None:
        fig.colorbar(im, ax=ax, fraction=COLORBAR_FRACTION)


def is_band_cube(shape) -> bool:
    """True for a 3-way cube (H, W, bands) that is not an RGB image: drawn band by band."""
    return len(shape) == 3 and shape[-1] != 3 and min(shape[:2]) >= MIN_BAND_PIXELS


def default_bands(n_bands_total: int, n: int = 3) -> list:
    """``n`` bands evenly inside ``range(n_bands_total)`` (the ends left out)."""
    if n < 1:
        raise ValueError(f"n: expected a positive number of bands, got {n}")
    picks = np.linspace(0, n_bands_total - 1, n + 2)[1:-1].round().astype(int)
    return sorted(set(int(b) for b in picks))


def band_figures(observed, mean, sd, out_dir, *, labels=None, prefix: str = "bands"):
    """Write a PNG of a few bands of a cube: observed, posterior mean and entry sd per band.

    One row per band of the given (H, W, k) arrays: pass the chosen bands of the cube (e.g.
    ``cube[..., default_bands(cube.shape[-1])]``), so only they need predicting. Observed and
    mean share a grey scale per band (the observed entries' range); missing entries of the
    observed panel are hatched light grey.

    Parameters
    ----------
    observed : array (H, W, k)
        The bands' data with NaN at missing entries (``1 <= k <= MAX_BAND_ROWS``).
    mean, sd : arrays of the same shape
        Posterior mean and posterior sd of each entry's noise-free value (``Prediction.mean``
        and ``Prediction.sd_mean``; zero everywhere for a MAP fit).
    out_dir : path
    labels : sequence of int, optional
        The bands' indices in the full cube, for the titles (default ``0 .. k-1``).
    prefix : str
        File name prefix.

    Returns
    -------
    dict of str to Path
        ``panel``: the PNG path.

    Raises
    ------
    ValueError
        When ``observed`` is not (H, W, k) with H, W >= ``MIN_BAND_PIXELS`` and
        ``1 <= k <= MAX_BAND_ROWS``, ``mean`` / ``sd`` do not match its shape, or ``labels``
        has not one entry per band.
    """
    observed = np.asarray(observed, dtype=float)
    if (observed.ndim != 3 or min(observed.shape[:2]) < MIN_BAND_PIXELS
            or not 1 <= observed.shape[-1] <= MAX_BAND_ROWS):
        raise ValueError(f"observed: expected (H, W, k) bands with H, W >= {MIN_BAND_PIXELS} "
                         f"and 1 <= k <= {MAX_BAND_ROWS}, got shape {observed.shape}")
    mean, sd = np.asarray(mean, dtype=float), np.asarray(sd, dtype=float)
    for name, arr in (("mean", mean), ("sd", sd)):
        if arr.shape != observed.shape:
            raise ValueError(f"{name}: expected shape {observed.shape}, got {arr.shape}")
    k = observed.shape[-1]
    labels = list(range(k)) if labels is None else [int(b) for b in labels]
    if len(labels) != k:
        raise ValueError(f"labels: expected {k} band indices, got {len(labels)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    grey = colormaps["gray"].with_extremes(bad=(0, 0, 0, 0))  # missing: see-through to the hatching
    sd_max = float(np.max(sd)) or 1.0
    # A point estimate (MAP) has one draw: its entry sd is 0 everywhere; say so in the title.
    sd_title = "entry sd" if np.max(sd) > 0 else "entry sd (0: one draw)"
    size = 0.8 * PANEL_INCHES
    fig, axes = subplots(k, 3, figsize=(3 * size, k * size), squeeze=False)
    for j, (row, b) in enumerate(zip(axes, labels)):
        band = observed[..., j]
        missing = np.isnan(band)
        lo, hi = (np.nanmin(band), np.nanmax(band)) if not missing.all() else (0.0, 1.0)
        _hatch_background(row[0], band.shape)
        _show(row[0], np.ma.masked_invalid(band), f"band {b}: observed ({missing.mean():.0%} "
              "missing)", cmap=grey, vmin=lo, vmax=hi)
        _show(row[1], mean[..., j], f"band {b}: posterior mean", cmap="gray", vmin=lo, vmax=hi)
        im = _show(row[2], sd[..., j], f"band {b}: {sd_title}", cmap="magma", vmin=0, vmax=sd_max)
        fig.colorbar(im, ax=row[2], fraction=COLORBAR_FRACTION)
    return {"panel": save_png(fig, out / f"{prefix}_panel.png")}


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

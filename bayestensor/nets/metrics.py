"""Predictive metrics: accuracy, NLL, expected calibration error, reliability, entropy, shift."""

from __future__ import annotations

import numpy as np
import torch


def _check(probs, labels):
    p = torch.as_tensor(probs, dtype=torch.float64)
    y = torch.as_tensor(labels).long()
    if p.ndim != 2:
        raise ValueError(f"probs: expected shape (n, classes), got {tuple(p.shape)}")
    if y.shape != (p.shape[0],):
        raise ValueError(f"labels: expected shape ({p.shape[0]},), got {tuple(y.shape)}")
    return p, y


def accuracy(probs, labels) -> float:
    """Fraction of argmax predictions equal to the labels."""
    p, y = _check(probs, labels)
    return float((p.argmax(-1) == y).double().mean())


def nll(probs, labels, eps: float = 1e-12) -> float:
    """Mean negative log predictive probability of the labels."""
    p, y = _check(probs, labels)
    return float(-p.gather(1, y[:, None]).clamp_min(eps).log().mean())


def reliability(probs, labels, n_bins: int = 15) -> dict:
    """Reliability-diagram data with equal-width confidence bins on [0, 1].

    Returns ``{"bin_edges", "accuracy", "confidence", "counts"}``; empty bins have accuracy and
    confidence ``nan`` (``None`` after JSON conversion is left to the caller).
    """
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins: expected a positive integer, got {n_bins!r}")
    p, y = _check(probs, labels)
    conf, pred = p.max(-1)
    correct = (pred == y).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    # bin i holds (edges[i], edges[i+1]]; confidence 0 goes to bin 0
    idx = (torch.bucketize(conf, edges, right=False) - 1).clamp(0, n_bins - 1)
    counts = torch.bincount(idx, minlength=n_bins).double()
    acc_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, idx, correct)
    conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, idx, conf)
    safe = counts.clamp_min(1)
    nan = torch.full_like(counts, float("nan"))
    return {"bin_edges": edges.tolist(),
            "accuracy": torch.where(counts > 0, acc_sum / safe, nan).tolist(),
            "confidence": torch.where(counts > 0, conf_sum / safe, nan).tolist(),
            "counts": [int(c) for c in counts.tolist()]}


def ece(probs, labels, n_bins: int = 15) -> float:
    """Expected calibration error ``sum_b (n_b / n) |acc_b - conf_b|`` over equal-width bins."""
    r = reliability(probs, labels, n_bins)
    n = sum(r["counts"])
    return float(sum(c / n * abs(a - f) for a, f, c in zip(r["accuracy"], r["confidence"],
                                                            r["counts"]) if c > 0))


def entropy(probs) -> torch.Tensor:
    """Predictive entropy (nats) per row."""
    p = torch.as_tensor(probs, dtype=torch.float64)
    return -(p * p.clamp_min(1e-12).log()).sum(-1)


def rotate(images, degrees: float) -> torch.Tensor:
    """Rotate images ``(n, C, H, W)`` (or ``(n, H, W)``) by ``degrees`` about their centre.

    Uses ``affine_grid``/``grid_sample`` (bilinear, zero padding).
    """
    x = torch.as_tensor(images, dtype=torch.float32)
    squeeze = x.ndim == 3
    if squeeze:
        x = x.unsqueeze(1)
    if x.ndim != 4:
        raise ValueError(f"images: expected (n, C, H, W) or (n, H, W), got {tuple(x.shape)}")
    t = np.deg2rad(float(degrees))
    theta = torch.tensor([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0]],
                         dtype=torch.float32).expand(x.shape[0], 2, 3)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    out = torch.nn.functional.grid_sample(x, grid, align_corners=False)
    return out.squeeze(1) if squeeze else out


def summarize(probs, labels, n_bins: int = 15) -> dict:
    """``{"accuracy", "nll", "ece"}``."""
    return {"accuracy": accuracy(probs, labels), "nll": nll(probs, labels),
            "ece": ece(probs, labels, n_bins)}


def plot_reliability(curves: dict, path, title: str = "Reliability diagram"):
    """Save a reliability diagram (one line per method) as PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    for name, r in curves.items():
        conf = np.array(r["confidence"], dtype=float)
        acc = np.array(r["accuracy"], dtype=float)
        ok = np.isfinite(conf)
        ax.plot(conf[ok], acc[ok], "o-", ms=3, label=name)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

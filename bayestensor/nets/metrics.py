"""Predictive metrics: accuracy, NLL, reliability and calibration error (with the ECE a
calibrated predictor would show by chance, and the signed confidence gap), entropy, shift.

Reliability-diagram data has one implementation, :func:`reliability_bins`, over confidences
and correctness flags; :func:`reliability` (multiclass probabilities) and
:func:`binary_reliability` (probabilities of the positive class) are thin adapters to it.
"""

from __future__ import annotations

import numpy as np
import torch

from bayestensor import checks

#: Default confidence bins of multiclass reliability: 15 equal-width bins on [0, 1] (the common
#: choice for image classifiers, e.g. Guo et al. 2017).
MULTICLASS_BINS = 15
#: Default confidence bins of binary reliability: 10 equal-width bins on [0.5, 1], where
#: ``max(p, 1 - p)`` lives.
BINARY_BINS = 10
#: Floor of probabilities under a logarithm, so that a zero probability gives a large finite loss.
LOG_FLOOR = 1e-12


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


def nll(probs, labels, eps: float = LOG_FLOOR) -> float:
    """Mean negative log predictive probability of the labels."""
    p, y = _check(probs, labels)
    return float(-p.gather(1, y[:, None]).clamp_min(eps).log().mean())


def reliability_bins(confidence, correct, n_bins: int = MULTICLASS_BINS, low: float = 0.0) -> dict:
    """Reliability-diagram data and expected calibration error.

    Bins split ``[low, 1]`` into ``n_bins`` equal parts; bin ``i`` holds confidences in
    ``(edges[i], edges[i+1]]`` and the lowest bin also holds ``low`` itself.

    Parameters
    ----------
    confidence : array (n,)
        Probability the model gives its own prediction, in ``[low, 1]``.
    correct : array (n,)
        Whether each prediction was right (bool or 0/1).
    n_bins : int
    low : float
        Smallest possible confidence: 0 for multiclass, 0.5 for binary predictions.

    Returns
    -------
    dict
        ``bin_edges``, ``counts``, ``accuracy`` and ``confidence`` per bin (``None`` for an
        empty bin), ``ece`` (``sum_b n_b / n |accuracy_b - confidence_b|``) and
        ``accuracy_overall`` (``None`` without data).
    """
    n_bins = checks.positive_int("n_bins", n_bins)
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    ok = np.asarray(correct, dtype=np.float64).reshape(-1)
    if conf.shape != ok.shape:
        raise ValueError(f"correct: expected {conf.size} values like confidence, got {ok.size}")
    edges = np.linspace(low, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    acc_sum = np.bincount(which, weights=ok, minlength=n_bins)
    conf_sum = np.bincount(which, weights=conf, minlength=n_bins)
    acc = [float(a / c) if c else None for a, c in zip(acc_sum, counts)]
    cf = [float(f / c) if c else None for f, c in zip(conf_sum, counts)]
    ece = sum(c * abs(a - f) for a, f, c in zip(acc, cf, counts) if c) / max(conf.size, 1)
    return {"bin_edges": edges.tolist(), "counts": [int(c) for c in counts], "accuracy": acc,
            "confidence": cf, "ece": float(ece),
            "accuracy_overall": float(ok.mean()) if conf.size else None}


def reliability(probs, labels, n_bins: int = MULTICLASS_BINS) -> dict:
    """Reliability data of multiclass probabilities ``(n, classes)`` against integer labels.

    Confidence is the largest class probability, correctness ``argmax == label``; bins are
    equal-width on ``[0, 1]`` (see :func:`reliability_bins`).
    """
    p, y = _check(probs, labels)
    conf, pred = p.max(-1)
    return reliability_bins(conf.numpy(), (pred == y).numpy(), n_bins, low=0.0)


def binary_reliability(prob, labels, n_bins: int = BINARY_BINS) -> dict:
    """Reliability data of probabilities of the positive class against 0/1 labels.

    Confidence is ``max(p, 1 - p)``, correctness ``(p > 0.5) == label``; bins are equal-width
    on ``[0.5, 1]`` (see :func:`reliability_bins`).
    """
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if labels.shape != prob.shape:
        raise ValueError(f"labels: expected {prob.size} values, got {labels.size}")
    conf = np.maximum(prob, 1 - prob)
    return reliability_bins(conf, (prob > 0.5) == (labels > 0.5), n_bins, low=0.5)


def ece(probs, labels, n_bins: int = MULTICLASS_BINS) -> float:
    """Expected calibration error of multiclass probabilities (see :func:`reliability_bins`)."""
    return reliability(probs, labels, n_bins)["ece"]


def confidence_gap(probs, labels) -> float:
    """Mean confidence minus accuracy: positive when the predictions are over-confident on
    average, negative when under-confident (ECE counts both as error and cannot tell which)."""
    p, y = _check(probs, labels)
    conf, pred = p.max(-1)
    return float(conf.double().mean() - (pred == y).double().mean())


def ece_floor(probs, n_bins: int = MULTICLASS_BINS, draws: int = 200, seed: int = 0) -> dict:
    """The ECE a perfectly calibrated predictor with these confidences would show by chance.

    On a finite test set the ECE of a calibrated predictor is not 0: each bin's accuracy is a
    sample mean. Each of ``draws`` simulations marks every prediction right with probability
    equal to its confidence (the max of its row of ``probs``) and computes the ECE of
    :func:`reliability_bins`; an observed ECE inside that spread is not evidence of
    miscalibration. Monte Carlo because the bins' sampling errors add in absolute value.

    Parameters
    ----------
    probs : array (n, classes)
        Predictive probabilities on the test set.
    n_bins : int
        Bins of :func:`reliability_bins`, as for the ECE compared with it.
    draws : int
        Simulated test sets.
    seed : int
        Seed of the simulation.

    Returns
    -------
    dict
        ``{"mean", "sd", "q95"}`` of the simulated ECEs.
    """
    p = torch.as_tensor(probs, dtype=torch.float64)
    if p.ndim != 2:
        raise ValueError(f"probs: expected shape (n, classes), got {tuple(p.shape)}")
    draws = checks.positive_int("draws", draws)
    conf = p.max(-1).values.numpy()
    gen = np.random.default_rng(checks.seed_value(seed))
    eces = np.array([reliability_bins(conf, gen.random(conf.shape) < conf, n_bins)["ece"]
                     for _ in range(draws)])
    return {"mean": float(eces.mean()), "sd": float(eces.std()),
            "q95": float(np.quantile(eces, 0.95))}


def entropy(probs) -> torch.Tensor:
    """Predictive entropy (nats) per row."""
    p = torch.as_tensor(probs, dtype=torch.float64)
    return -(p * p.clamp_min(LOG_FLOOR).log()).sum(-1)


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


def summarize(probs, labels, n_bins: int = MULTICLASS_BINS) -> dict:
    """``{"accuracy", "nll", "ece"}``."""
    return {"accuracy": accuracy(probs, labels), "nll": nll(probs, labels),
            "ece": ece(probs, labels, n_bins)}

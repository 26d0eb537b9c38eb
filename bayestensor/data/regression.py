"""Regression data: synthetic tensor-input problems with a known low-rank ``W``, and real data.

``y_i = <W, X_i> + b + noise`` with iid standard normal inputs ``X_i`` (the design of Zhou, Li
& Zhu 2013, *Tensor regression with applications in neuroimaging data analysis*, JASA). The
real example is scikit-learn's bundled 8x8 digits as a two-class problem; nothing downloads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from bayestensor.checks import positive_int, real_number, seed_value
from bayestensor.formats import CPTensor
from bayestensor.seeds import MAX_SEED

SHAPES = ("square", "cross", "T", "disc")


@dataclass
class RegressionData:
    """A regression problem split into training and held-out data.

    Attributes
    ----------
    X_train, y_train : np.ndarray
        ``(n, *input_shape)`` inputs and ``(n,)`` responses (what a model sees).
    X_test, y_test : np.ndarray
        Held-out inputs and *noisy* responses (labels for a two-class problem).
    mean_test : np.ndarray or None
        Noise-free held-out means ``<W, X> + b`` (probabilities for a synthetic Bernoulli
        problem); ``None`` for real data.
    weight : np.ndarray or None
        The true coefficient tensor (``input_shape``); ``None`` for real data.
    intercept : float or None
    rank : int or None
        True rank of ``weight`` (matrix rank for an image, CP rank for a CP array).
    noise_sd : float or None
        Sd of the Gaussian noise.
    likelihood : {"gaussian", "bernoulli"}
    name : str
    info : dict
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    mean_test: np.ndarray | None
    weight: np.ndarray | None
    intercept: float | None
    rank: int | None
    noise_sd: float | None
    likelihood: str
    name: str
    info: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.X_train.shape[1:])

    @property
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        """``(X_train, y_train)``, ready for ``fit(model, data.train)``."""
        return self.X_train, self.y_train

    @property
    def test(self) -> tuple[np.ndarray, np.ndarray]:
        return self.X_test, self.y_test

    def weight_relative_error(self, estimate) -> float:
        """``||W_hat - W|| / ||W||`` (Frobenius)."""
        if self.weight is None:
            raise ValueError("estimate: this data set has no known W")
        est = np.asarray(estimate, dtype=np.float64)
        if est.shape != self.weight.shape:
            raise ValueError(f"estimate: expected shape {self.weight.shape}, got {est.shape}")
        return float(np.linalg.norm(est - self.weight) / np.linalg.norm(self.weight))

    def relative_error(self, predicted) -> float:
        """``||pred - mean|| / ||mean - mean(mean)||`` on held-out inputs (noise-free target).

        The denominator is the spread of the true means, so 0 is perfect and 1 is no better
        than predicting their average.
        """
        if self.mean_test is None:
            raise ValueError("predicted: this data set has no noise-free held-out means")
        p = np.asarray(predicted, dtype=np.float64).reshape(self.mean_test.shape)
        t = self.mean_test
        return float(np.linalg.norm(p - t) / np.linalg.norm(t - t.mean()))


def shape_image(name: str = "cross", size: int = 32) -> np.ndarray:
    """A 0/1 image of a simple shape, the true ``W`` of the synthetic image problem.

    ``"square"`` has rank 1, ``"cross"`` and ``"T"`` rank 2; ``"disc"`` is not exactly low
    rank (its numerical rank grows with ``size``) and tests a mis-specified model.
    """
    if name not in SHAPES:
        raise ValueError(f"name: expected one of {SHAPES}, got {name!r}")
    if int(size) < 8:
        raise ValueError(f"size: expected an integer >= 8, got {size}")
    size = int(size)
    img = np.zeros((size, size))
    q, h = size // 4, size // 2
    bar = max(2, size // 6)
    lo, hi = h - bar // 2, h - bar // 2 + bar
    if name == "square":
        img[q:size - q, q:size - q] = 1.0
    elif name == "cross":
        img[lo:hi, q - q // 2:size - q + q // 2] = 1.0
        img[q - q // 2:size - q + q // 2, lo:hi] = 1.0
    elif name == "T":
        img[q - q // 2:q - q // 2 + bar, q - q // 2:size - q + q // 2] = 1.0
        img[q - q // 2:size - q + q // 2, lo:hi] = 1.0
    else:
        yy, xx = np.mgrid[:size, :size]
        img[(yy - (size - 1) / 2) ** 2 + (xx - (size - 1) / 2) ** 2 <= (size / 4) ** 2] = 1.0
    return img


def _simulate(weight: np.ndarray, n_train: int, n_test: int, snr_db: float, intercept: float,
              likelihood: str, seed: int, name: str, rank: int, info: dict) -> RegressionData:
    positive_int("n_train", n_train)
    positive_int("n_test", n_test)
    real_number("snr_db", snr_db, -math.inf, math.inf)
    real_number("intercept", intercept, -math.inf, math.inf)
    if likelihood not in ("gaussian", "bernoulli"):
        raise ValueError(f"likelihood: expected 'gaussian' or 'bernoulli', got {likelihood!r}")
    rng = np.random.default_rng(seed_value(seed))
    n = n_train + n_test
    X = rng.standard_normal((n,) + weight.shape)
    signal = X.reshape(n, -1) @ weight.reshape(-1)
    if likelihood == "gaussian":
        # SNR in the completion convention: 20 log10(sd(signal) / noise_sd).
        noise_sd = float(np.linalg.norm(weight)) / 10 ** (snr_db / 20)
        mean = signal + intercept
        y = mean + noise_sd * rng.standard_normal(n)
    else:
        noise_sd = None
        mean = 1.0 / (1.0 + np.exp(-(signal + intercept)))
        y = (rng.random(n) < mean).astype(np.float64)
    return RegressionData(
        X_train=X[:n_train], y_train=y[:n_train], X_test=X[n_train:], y_test=y[n_train:],
        mean_test=mean[n_train:], weight=weight, intercept=float(intercept), rank=int(rank),
        noise_sd=noise_sd, likelihood=likelihood, name=name,
        info={**info, "n_train": int(n_train), "n_test": int(n_test), "snr_db": snr_db,
              "seed": int(seed)})


def synthetic_image_regression(shape: str = "cross", size: int = 32, n_train: int = 500,
                               n_test: int = 1000, snr_db: float = 10.0, intercept: float = 1.0,
                               amplitude: float = 1.0, likelihood: str = "gaussian",
                               seed: int = 0) -> RegressionData:
    """Image-input regression whose true ``W`` is a 0/1 shape (see :func:`shape_image`).

    Inputs are iid standard normal ``size x size`` images; ``y = <W, X> + b + noise``.

    Parameters
    ----------
    shape : {"square", "cross", "T", "disc"}
    size : int
        Image side.
    n_train, n_test : int
    snr_db : float
        ``20 log10(sd(<W, X>) / noise_sd)`` (Gaussian only).
    intercept : float
    amplitude : float
        Value of ``W`` inside the shape. For ``likelihood="bernoulli"`` the linear predictor
        is ``<W, X> + b`` (so ``amplitude`` sets how separable the classes are).
    likelihood : {"gaussian", "bernoulli"}
    seed : int

    Examples
    --------
    >>> data = synthetic_image_regression("cross", n_train=400, seed=0)
    >>> data.X_train.shape, data.rank
    ((400, 32, 32), 2)
    """
    weight = amplitude * shape_image(shape, size)
    rank = int(np.linalg.matrix_rank(weight))
    return _simulate(weight, n_train, n_test, snr_db, intercept, likelihood, seed,
                     f"image-{shape}-{size}", rank, {"shape": shape, "size": int(size)})


def synthetic_cp_regression(shape=(10, 10, 10), rank: int = 3, n_train: int = 500,
                            n_test: int = 1000, snr_db: float = 10.0, intercept: float = 1.0,
                            likelihood: str = "gaussian", seed: int = 0) -> RegressionData:
    """Tensor-input regression whose true ``W`` is a random CP tensor of rank ``rank``.

    ``W``'s entries have unit sd (:meth:`CPTensor.random`); inputs are iid standard normal.
    For ``likelihood="bernoulli"`` ``W`` is rescaled so that ``<W, X>`` has unit sd times 3.

    Parameters
    ----------
    shape : tuple of int
        Input shape (at least two modes).
    rank : int
        True CP rank.
    n_train, n_test : int
    snr_db : float
    intercept : float
    likelihood : {"gaussian", "bernoulli"}
    seed : int
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ValueError(f"shape: expected at least two positive sizes, got {shape}")
    seed = seed_value(seed)
    weight = CPTensor.random(shape, rank, scale=1.0, seed=seed).reconstruct().double().numpy()
    if likelihood == "bernoulli":
        weight = 3.0 * weight / np.linalg.norm(weight)
    data_seed = (seed + 1) % (MAX_SEED + 1)  # the inputs' own stream, as before
    return _simulate(weight, n_train, n_test, snr_db, intercept, likelihood, data_seed,
                     f"cp-{'x'.join(map(str, shape))}-rank{rank}", rank,
                     {"shape": list(shape)})


def load_digits_binary(classes=(0, 1), test_fraction: float = 0.3,
                       seed: int = 0) -> RegressionData:
    """scikit-learn's 8x8 handwritten digits as a two-class problem (bundled, no download).

    Parameters
    ----------
    classes : pair of int
        The two digits; ``y = 1`` for ``classes[1]``.
    test_fraction : float in (0, 1)
        Share of the images held out (stratified by a seeded shuffle).
    seed : int

    Returns
    -------
    RegressionData
        ``X`` of shape ``(n, 8, 8)`` with pixel intensities 0..16 and binary ``y``;
        ``likelihood="bernoulli"``.

    Raises
    ------
    ImportError
        Without scikit-learn.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("load_digits_binary needs scikit-learn (it ships the digits data): "
                          "pip install scikit-learn  (or pip install 'bayestensor[test]')") from err
    a, b = (int(c) for c in classes)
    if a == b or not (0 <= a <= 9 and 0 <= b <= 9):
        raise ValueError(f"classes: expected two different digits in 0..9, got {classes!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction}")
    digits = load_digits()
    keep = np.isin(digits.target, (a, b))
    X = digits.images[keep].astype(np.float64)
    y = (digits.target[keep] == b).astype(np.float64)
    rng = np.random.default_rng(seed_value(seed))
    test = np.zeros(len(y), dtype=bool)
    for label in (0.0, 1.0):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        test[idx[: int(round(test_fraction * len(idx)))]] = True
    return RegressionData(
        X_train=X[~test], y_train=y[~test], X_test=X[test], y_test=y[test], mean_test=None,
        weight=None, intercept=None, rank=None, noise_sd=None, likelihood="bernoulli",
        name=f"digits-{a}-vs-{b}",
        info={"classes": [a, b], "test_fraction": test_fraction, "seed": int(seed),
              "source": "sklearn.datasets.load_digits (UCI optical recognition of handwritten "
                        "digits)"})

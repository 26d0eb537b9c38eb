"""Image-classification data: scikit-learn digits, mnist10k .npz, MNIST IDX files."""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bayestensor.checks import seed_value

#: Largest value of 8-bit pixel intensities (MNIST): images above 1 are divided by it.
MAX_BYTE_PIXEL = 255.0
#: Largest value of scikit-learn's 8x8 digits (4-bit intensities, 0..16).
MAX_DIGITS_PIXEL = 16.0
#: Share of a single-array .npz used for training when no sizes are given.
TRAIN_FRACTION = 0.8
#: mnist10k's split: the first 8,000 images train, the last 2,000 test.
MNIST10K_SPLIT = (8000, 2000)


@dataclass
class ImageData:
    """Train/test images ``(n, 1, H, W)`` in [0, 1] and integer labels."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def info(self) -> dict:
        return {"name": self.name, "n_train": int(self.x_train.shape[0]),
                "n_test": int(self.x_test.shape[0]), "input_shape": list(self.input_shape),
                "classes": self.classes}


def _from_arrays(name, images, labels, n_train, n_test=None, scale=None) -> ImageData:
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim not in (3, 4):
        raise ValueError(f"images: expected (n, H, W) or (n, C, H, W), got shape {images.shape}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels: expected shape ({images.shape[0]},), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError(f"labels: expected non-negative integers, got dtype {labels.dtype}")
    x = images.astype(np.float32)
    if scale is None:
        scale = MAX_BYTE_PIXEL if x.max() > 1.0 else 1.0
    x = x / scale
    if x.ndim == 3:
        x = x[:, None]
    n = x.shape[0]
    n_test = n - n_train if n_test is None else n_test
    if not 0 < n_train < n or n_train + n_test > n or n_test < 1:
        raise ValueError(f"n_train: {n_train} train and {n_test} test do not fit {n} images")
    xt, yt = torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))
    return ImageData(name, xt[:n_train], yt[:n_train], xt[n - n_test:], yt[n - n_test:])


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> ImageData:
    """scikit-learn's 8x8 digits (1,797 images), shuffled with ``seed`` and split."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction}")
    from sklearn.datasets import load_digits as sk_digits  # optional (test extra): lazy
    d = sk_digits()
    perm = np.random.default_rng(seed_value(seed)).permutation(len(d.target))
    n_test = int(round(len(perm) * test_fraction))
    return _from_arrays("digits", d.images[perm], d.target[perm], len(perm) - n_test, n_test,
                        scale=MAX_DIGITS_PIXEL)


def load_npz(path, n_train: int | None = None, n_test: int | None = None) -> ImageData:
    """A ``.npz`` with ``images`` and ``labels`` (or ``x_train, y_train, x_test, y_test``).

    Without explicit sizes, mnist10k's split applies: the first 80% train, the rest test
    (8,000 / 2,000 for ``mnist10k.npz``).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: no such file {str(path)!r}")
    with np.load(path) as z:
        keys = set(z.files)
        if {"x_train", "y_train", "x_test", "y_test"} <= keys:
            images = np.concatenate([z["x_train"], z["x_test"]])
            labels = np.concatenate([z["y_train"], z["y_test"]])
            n_train = len(z["y_train"]) if n_train is None else n_train
            n_test = len(z["y_test"]) if n_test is None else n_test
        elif {"images", "labels"} <= keys:
            images, labels = z["images"], z["labels"]
        else:
            raise ValueError(f"path: {path.name} needs arrays 'images' and 'labels' (or "
                             f"x_train/y_train/x_test/y_test), has {sorted(keys)}")
    if n_train is None:
        n_train = int(round(TRAIN_FRACTION * len(labels)))
    return _from_arrays(path.stem, images, labels, n_train, n_test)


def load_mnist10k(path) -> ImageData:
    """mnist10k: first 8,000 images train, last 2,000 test.

    Parameters
    ----------
    path : path
        The ``mnist10k.npz`` file (10,000 MNIST images with arrays ``images`` and ``labels``);
        nothing is downloaded.

    Raises
    ------
    ValueError
        When ``path`` is not a file.
    """
    if not Path(path).is_file():
        raise ValueError(f"path: expected the mnist10k.npz file (10,000 MNIST images, arrays "
                         f"'images' and 'labels'), got {str(path)!r}, which is not a file")
    return load_npz(path, *MNIST10K_SPLIT)


def read_idx(path) -> np.ndarray:
    """Read an IDX file (optionally gzipped), as used by the MNIST distribution."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: no such file {str(path)!r}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"path: {path.name} is not an IDX file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise ValueError(f"path: {path.name} has unknown IDX type code {raw[2]:#x}")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=dtypes[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"path: {path.name} holds {data.size} values, header says {dims}")
    return data.reshape(dims)


def load_mnist_idx(directory, n_train: int | None = None, n_test: int | None = None) -> ImageData:
    """MNIST from the four standard IDX files (``.gz`` or not) in ``directory``."""
    d = Path(directory)
    if not d.is_dir():
        raise ValueError(f"directory: no such directory {str(d)!r}")

    def find(stem):
        for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
                     stem.replace("-idx", ".idx") + ".gz"):
            if (d / name).is_file():
                return d / name
        raise ValueError(f"directory: {str(d)!r} lacks {stem}[.gz]")

    xtr, ytr = read_idx(find("train-images-idx3-ubyte")), read_idx(find("train-labels-idx1-ubyte"))
    xte, yte = read_idx(find("t10k-images-idx3-ubyte")), read_idx(find("t10k-labels-idx1-ubyte"))
    if n_train is not None:
        xtr, ytr = xtr[:n_train], ytr[:n_train]
    if n_test is not None:
        xte, yte = xte[:n_test], yte[:n_test]
    return _from_arrays("mnist", np.concatenate([xtr, xte]), np.concatenate([ytr, yte]),
                        len(ytr), len(yte))


def load_dataset(source) -> ImageData:
    """``"digits"``, a ``.npz`` file, or a directory of MNIST IDX files."""
    if str(source) == "digits":
        return load_digits()
    p = Path(source)
    if p.is_dir():
        return load_mnist_idx(p)
    if p.suffix == ".npz":
        if not p.is_file():
            raise ValueError(f"data: no such file {str(source)!r}")
        return load_npz(p)
    raise ValueError(f"data: expected 'digits', a .npz file or a directory of MNIST IDX files, "
                     f"got {str(source)!r}")

"""Data: synthetic low-rank tensors with known truth, and real data bundled with installed packages.

Nothing here downloads: TensorLy ships the kinetic fluorescence tensor, the Indian Pines
hyperspectral cube and the IL-2 response tensor (as ``.npy`` files read from its package folder),
scikit-image ships the colour images (optional extra ``images``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tensorly.datasets import data_imports as tensorly_data
from tensorly.datasets import load_kinetic as tensorly_kinetic

from bayestensor.checks import check_shape, is_integer, real_number, seed_value
from bayestensor.formats import LowRankTensor, get_format
from bayestensor.data.observations import Observations

IMAGES = ("astronaut", "chelsea", "coffee")
#: Folder of the data files TensorLy installs with its package (read, never downloaded).
TENSORLY_DATA = Path(tensorly_data.__file__).parent / "data"
#: Up to this many entries, index tuples are drawn from one random permutation of all of
#: them (400 MB of int64); larger tensors draw and reject duplicates.
MAX_PERMUTED_ENTRIES = 50_000_000
#: Entries of the true tensor computed at once.
ENTRY_CHUNK = 1 << 20


@dataclass
class SyntheticTensor:
    """A synthetic completion problem with its ground truth.

    Attributes
    ----------
    shape : tuple of int
    truth : LowRankTensor
        The noise-free low-rank tensor.
    train : Observations
        Noisy observed entries (what a model sees).
    test : Observations
        Held-out unobserved entries with their *noise-free* values.
    test_noisy : Observations
        The same held-out entries with noise added (for predictive coverage).
    noise_sd : float
        Standard deviation of the Gaussian noise.
    rank : int or tuple
        True rank.
    """

    shape: tuple
    truth: LowRankTensor
    train: Observations
    test: Observations
    test_noisy: Observations
    noise_sd: float
    rank: object
    info: dict = field(default_factory=dict)

    def relative_error(self, predicted) -> float:
        """``||pred - truth|| / ||truth||`` on the held-out entries."""
        t = self.test.values.double().numpy()
        p = np.asarray(predicted, dtype=np.float64)
        return float(np.linalg.norm(p - t) / np.linalg.norm(t))


def _sample_indices(shape, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` distinct index tuples, uniformly, without forming the dense tensor when it is large."""
    total = math.prod(shape)
    if total <= MAX_PERMUTED_ENTRIES:
        flat = torch.randperm(total, generator=gen)[:n]
    else:
        chosen: set = set()
        while len(chosen) < n:
            # Twice the draws still missing (plus a few): collisions are rare in a big tensor.
            cand = torch.randint(0, total, (2 * (n - len(chosen)) + 16,), generator=gen).tolist()
            for c in cand:
                if c not in chosen:
                    chosen.add(c)
                    if len(chosen) == n:
                        break
        flat = torch.tensor(sorted(chosen))
        flat = flat[torch.randperm(len(flat), generator=gen)]
    return torch.stack(torch.unravel_index(flat, tuple(shape)), -1)


def _entries(truth: LowRankTensor, idx: torch.Tensor) -> torch.Tensor:
    """``truth`` at ``idx``, ``ENTRY_CHUNK`` indices at a time: all at once, the gathered
    float64 factor rows of 1e7 entries at rank 20 held 5 GB."""
    return torch.cat([truth.entries(idx[i:i + ENTRY_CHUNK])
                      for i in range(0, len(idx), ENTRY_CHUNK)] or [truth.entries(idx)])


def synthetic_tensor(shape=(30, 30, 30), rank=3, format: str = "cp", snr_db: float = 10.0,
                     observed: float = 0.2, n_test: int = 20_000, seed: int = 0) -> SyntheticTensor:
    """A random low-rank tensor, noisy observations of a fraction of it, and held-out entries.

    Parameters
    ----------
    shape : tuple of int
    rank : int or sequence
        True rank in the format's convention.
    format : {"cp", "tucker", "tt", "ttm"}
    snr_db : float
        Signal-to-noise ratio ``20 log10(std(signal) / noise_sd)``.
    observed : float in (0, 1)
        Fraction of entries observed.
    n_test : int
        Held-out unobserved entries kept for evaluation (at most all unobserved ones).
    seed : int

    Examples
    --------
    >>> data = synthetic_tensor((30, 30, 30), rank=3, snr_db=10, observed=0.2, seed=0)
    >>> len(data.train)
    5400
    """
    if not 0 < observed < 1:
        raise ValueError(f"observed: expected a fraction in (0, 1), got {observed}")
    if not is_integer(n_test) or n_test < 1:
        raise ValueError(f"n_test: expected a positive integer (held-out entries to score "
                         f"fits by), got {n_test!r}")
    real_number("snr_db", snr_db, -math.inf, math.inf)
    seed = seed_value(seed)
    cls = get_format(format)
    shape = check_shape(shape)
    gen = torch.Generator().manual_seed(seed)
    truth = cls.random(shape, rank, scale=1.0, seed=seed)
    truth = cls(shape, [p.double() for p in truth.params])
    total = math.prod(shape)
    n_obs = max(1, int(round(observed * total)))
    n_test = min(int(n_test), total - n_obs)
    if n_test < 1:
        raise ValueError(f"observed: {observed} of the {total} entries leaves no entry to "
                         "hold out")
    idx_all = _sample_indices(shape, n_obs + n_test, gen)
    idx_obs, idx_test = idx_all[:n_obs], idx_all[n_obs:]
    clean_obs, clean_test = _entries(truth, idx_obs), _entries(truth, idx_test)
    signal_sd = float(torch.cat([clean_obs, clean_test]).std())
    noise_sd = signal_sd / 10 ** (snr_db / 20)
    noisy_obs = clean_obs + noise_sd * torch.randn(clean_obs.shape, generator=gen, dtype=torch.float64)
    noisy_test = clean_test + noise_sd * torch.randn(clean_test.shape, generator=gen, dtype=torch.float64)
    return SyntheticTensor(
        shape=shape, truth=truth,
        train=Observations(idx_obs, noisy_obs.float(), shape),
        test=Observations(idx_test, clean_test.float(), shape),
        test_noisy=Observations(idx_test, noisy_test.float(), shape),
        noise_sd=noise_sd, rank=rank,
        info={"format": cls.format_name, "snr_db": snr_db, "observed": observed, "seed": seed},
    )


@dataclass
class RealTensor:
    """A real tensor with its own missing-value mask.

    Attributes
    ----------
    data : ndarray
        The tensor with NaN where not observed (``mask`` False).
    mask : ndarray of bool
        True where observed (what a model may fit).
    name : str
    info : dict
        Source, reference and licence; ``truth`` (when present) is the tensor before entries
        were hidden, NaN where the value is unknown: the held-out entries are those with
        ``mask`` False and a finite ``truth`` (see :meth:`heldout`).
    """

    data: np.ndarray
    mask: np.ndarray
    name: str
    info: dict = field(default_factory=dict)

    def observations(self) -> Observations:
        """The observed entries (``mask`` True) as :class:`Observations`."""
        return Observations.from_dense(self.data, self.mask)

    def heldout(self) -> Observations | None:
        """The hidden entries whose true value is known (for scoring), or None without truth."""
        truth = self.info.get("truth")
        if truth is None:
            return None
        known = ~self.mask & ~np.isnan(truth)
        idx = np.argwhere(known)
        return Observations(torch.as_tensor(idx, dtype=torch.long),
                            torch.as_tensor(truth[known], dtype=torch.float32), self.data.shape)


def load_kinetic() -> RealTensor:
    """TensorLy's kinetic fluorescence tensor (64 x 12 x 10 x 60) with its real missing mask.

    Nikolajsen, Booksh, Hansen & Bro (2003), Analytica Chimica Acta 475, 137-150. ``mask`` is
    ``True`` where observed.
    """
    bunch = tensorly_kinetic()
    data = np.asarray(bunch.tensor, dtype=np.float64)
    missing = np.asarray(bunch.missing_values_position, dtype=bool)
    data = data.copy()
    data[missing] = np.nan
    return RealTensor(data, ~missing, "kinetic",
                      {"modes": list(bunch.dims), "reference": bunch.reference})


def _tensorly_file(name: str) -> np.ndarray:
    """A data file installed with TensorLy (never downloaded)."""
    path = TENSORLY_DATA / name
    if not path.is_file():  # pragma: no cover - depends on the TensorLy install
        raise FileNotFoundError(f"{path}: not installed with TensorLy (needs tensorly >= 0.8)")
    return np.load(path, allow_pickle=False)


def load_indian_pines(missing: float = 0.9, seed: int = 0) -> RealTensor:
    """The Indian Pines hyperspectral cube (145 x 145 pixels x 200 bands) with missing entries.

    AVIRIS sensor data of June 12, 1992 over the Purdue University Agronomy farm (Indiana),
    the 200 water-absorption corrected bands, as bundled with TensorLy
    (``tensorly/datasets/data/Indian_pines_corrected.npy``, read directly, no download).
    Reference: Baumgardner, M. F., Biehl, L. L., Landgrebe, D. A. (2015). 220 Band AVIRIS
    Hyperspectral Image Data Set: June 12, 1992 Indian Pine Test Site 3. Purdue University
    Research Repository. doi:10.4231/R7RX991C. Licence: Creative Commons Attribution 3.0
    Unported (https://creativecommons.org/licenses/by/3.0/legalcode).

    Parameters
    ----------
    missing : float in (0, 1)
        Fraction of the entries hidden, chosen uniformly at random (each entry on its own,
        not whole pixels).
    seed : int
        Seed of the hidden entries.

    Returns
    -------
    RealTensor
        ``data`` in raw sensor counts (about 1e3 to 1e4) with NaN at the hidden entries,
        ``mask`` True where observed, ``info["truth"]`` the full cube (the held-out truth is
        every hidden entry), ``info["modes"]`` (rows, columns, band).

    Examples
    --------
    >>> pines = load_indian_pines(missing=0.9, seed=0)
    >>> pines.data.shape, round(float(pines.mask.mean()), 3)
    ((145, 145, 200), 0.1)
    """
    if not 0 < missing < 1:
        raise ValueError(f"missing: expected a fraction in (0, 1), got {missing}")
    seed = seed_value(seed)
    truth = _tensorly_file("Indian_pines_corrected.npy").astype(np.float64)
    n_missing = int(round(missing * truth.size))
    rng = np.random.default_rng(seed)
    hidden = np.zeros(truth.size, dtype=bool)
    hidden[rng.permutation(truth.size)[:n_missing]] = True
    mask = ~hidden.reshape(truth.shape)
    data = np.where(mask, truth, np.nan)
    return RealTensor(data, mask, "indian_pines",
                      {"truth": truth, "missing": missing, "seed": seed,
                       "modes": ["row", "column", "band"], "band_mode": 2,
                       "reference": "Baumgardner, Biehl & Landgrebe (2015), 220 Band AVIRIS "
                                    "Hyperspectral Image Data Set: June 12, 1992 Indian Pine "
                                    "Test Site 3, Purdue University Research Repository, "
                                    "doi:10.4231/R7RX991C",
                       "licence": "CC BY 3.0 Unported"})


def load_il2(holdout: float = 0.1, seed: int = 0) -> RealTensor:
    """The IL-2 mutein response tensor (13 ligands x 4 times x 12 doses x 8 cell types).

    Signalling responses of eight cell types to 13 IL-2 muteins at 12 concentrations and four
    time points, as bundled with TensorLy (``tensorly/datasets/data/IL2_Response_Tensor.npy``,
    read directly, no download). Its NaN entries are its own missing values (192 of 4,992).
    Reference: Orcutt-Jahns, B., Emmel, P. C., Snyder, E. M., Posner, C., Carlson, S. M., &
    Meyer, A. S. (2021). Multivalency enhances the specificity of Fc-cytokine fusions. BioRxiv.
    Licence: MIT-style (Copyright 2021 The Regents of the University of California).

    Parameters
    ----------
    holdout : float in [0, 1)
        Fraction of the *observed* entries hidden as well (drawn at ``seed``) and kept in
        ``info["truth"]`` for scoring.
    seed : int

    Returns
    -------
    RealTensor
        ``data`` with NaN at the tensor's own missing entries and at the held-out ones,
        ``mask`` True where fitted, ``info["truth"]`` the tensor as shipped (NaN at its own
        missing entries), ``info["modes"]`` (ligands, times, doses, cells).
    """
    if not 0 <= holdout < 1:
        raise ValueError(f"holdout: expected a fraction in [0, 1), got {holdout}")
    seed = seed_value(seed)
    truth = _tensorly_file("IL2_Response_Tensor.npy").astype(np.float64)
    observed = np.flatnonzero(~np.isnan(truth))
    n_held = int(round(holdout * len(observed)))
    held = np.random.default_rng(seed).permutation(observed)[:n_held]
    mask = ~np.isnan(truth)
    mask.flat[held] = False
    data = np.where(mask, truth, np.nan)
    return RealTensor(data, mask, "il2",
                      {"truth": truth, "holdout": holdout, "seed": seed,
                       "modes": ["ligands", "times", "doses", "cells"],
                       "reference": "Orcutt-Jahns, Emmel, Snyder, Posner, Carlson & Meyer (2021), "
                                    "Multivalency enhances the specificity of Fc-cytokine "
                                    "fusions, BioRxiv",
                       "licence": "MIT (Copyright 2021 The Regents of the University of "
                                  "California)"})


def load_image(name: str = "astronaut", size: int | None = 128, missing: float = 0.7,
               seed: int = 0) -> RealTensor:
    """A scikit-image colour image (H x W x 3, values in [0, 1]) with missing pixels.

    Parameters
    ----------
    name : {"astronaut", "chelsea", "coffee"}
    size : int, optional
        Resize the longer side to this many pixels (None keeps the original).
    missing : float in [0, 1)
        Fraction of pixels removed (all three channels of a pixel together).
    seed : int

    Raises
    ------
    ImportError
        Without scikit-image (install the ``images`` extra).
    """
    if name not in IMAGES:
        raise ValueError(f"name: expected one of {IMAGES}, got {name!r}")
    if not 0 <= missing < 1:
        raise ValueError(f"missing: expected a fraction in [0, 1), got {missing}")
    try:
        import skimage.data
        from skimage.transform import resize
    except ImportError as err:  # pragma: no cover - depends on the extra
        raise ImportError("load_image needs scikit-image: pip install 'bayestensor[images]'") from err
    img = getattr(skimage.data, name)().astype(np.float64) / 255.0
    if size is not None:
        h, w = img.shape[:2]
        scale = size / max(h, w)
        img = resize(img, (max(1, round(h * scale)), max(1, round(w * scale)), 3), anti_aliasing=True)
    rng = np.random.default_rng(seed_value(seed))
    pixel_mask = rng.random(img.shape[:2]) >= missing
    mask = np.repeat(pixel_mask[..., None], 3, axis=-1)
    data = img.copy()
    data[~mask] = np.nan
    return RealTensor(data, mask, name, {"truth": img, "missing": missing})

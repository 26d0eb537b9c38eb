"""Synthetic completion problems and the bundled real tensors."""

import math

import numpy as np
import pytest
import torch

from bayestensor.data import tensors as datasets
from bayestensor.data.regression import synthetic_cp_regression


@pytest.mark.parametrize("fmt,shape,rank,snr_db,observed", [
    ("cp", (10, 11, 12), 3, 10.0, 0.2),
    ("tucker", (8, 9, 10), (2, 3, 2), 0.0, 0.35),
    ("tt", (6, 7, 8, 5), (2, 3, 2), 25.0, 0.1),
    ("ttm", (3, 4, 5, 3, 4, 2), 2, -5.0, 0.3),
])
def test_synthetic_tensor(fmt, shape, rank, snr_db, observed):
    n_test = 300
    d = datasets.synthetic_tensor(shape, rank=rank, format=fmt, snr_db=snr_db, observed=observed,
                                  n_test=n_test, seed=3)
    total = math.prod(shape)
    assert d.shape == shape and d.truth.shape == shape and d.truth.format_name == fmt
    assert d.truth.ranks == type(d.truth).normalize_rank(shape, rank)
    assert len(d.train) == round(observed * total)
    assert len(d.test) == n_test and len(d.test_noisy) == n_test
    assert d.train.shape == d.test.shape == shape

    # train and test entries are distinct and disjoint
    tr = {tuple(r) for r in d.train.indices.tolist()}
    te = {tuple(r) for r in d.test.indices.tolist()}
    assert len(tr) == len(d.train) and len(te) == n_test
    assert not tr & te
    assert torch.equal(d.test.indices, d.test_noisy.indices)

    # SNR: std of the clean signal over all sampled entries / noise_sd, in dB
    clean_train = d.truth.entries(d.train.indices).double()
    clean_test = d.truth.entries(d.test.indices).double()
    signal_sd = np.std(np.concatenate([clean_train.numpy(), clean_test.numpy()]), ddof=1)
    assert 20 * np.log10(signal_sd / d.noise_sd) == pytest.approx(snr_db, abs=1e-6)

    # train values are noisy around the truth with sd noise_sd; test values are clean
    resid = np.concatenate([d.train.values.double().numpy() - clean_train.numpy(),
                            d.test_noisy.values.double().numpy() - clean_test.numpy()])
    assert np.std(resid) == pytest.approx(d.noise_sd, rel=0.15)
    np.testing.assert_allclose(d.test.values.numpy(), clean_test.numpy(),
                               rtol=1e-6, atol=1e-6 * signal_sd)
    assert d.relative_error(clean_test.numpy()) == pytest.approx(0.0, abs=1e-6)
    assert d.relative_error(d.test_noisy.values.numpy()) > 0.05 * min(1.0, d.noise_sd / signal_sd)


def test_synthetic_tensor_reproducible_and_caps_test():
    a = datasets.synthetic_tensor((5, 6, 7), rank=2, observed=0.5, n_test=10_000, seed=1)
    b = datasets.synthetic_tensor((5, 6, 7), rank=2, observed=0.5, n_test=10_000, seed=1)
    c = datasets.synthetic_tensor((5, 6, 7), rank=2, observed=0.5, n_test=10_000, seed=2)
    assert len(a.train) == 105 and len(a.test) == 210 - 105  # all unobserved entries held out
    assert torch.equal(a.train.indices, b.train.indices)
    assert torch.equal(a.train.values, b.train.values)
    assert not torch.equal(a.train.values, c.train.values)


@pytest.mark.parametrize("kwargs,match", [
    ({"observed": 0.0}, "observed"),
    ({"observed": 1.0}, "observed"),
    ({"snr_db": float("nan")}, "snr_db"),
    ({"format": "ht"}, "format"),
    ({"rank": 0}, "rank"),
    ({"snr_db": "10"}, "snr_db"),
    ({"seed": 2**70}, "seed"),
    ({"seed": -1}, "seed"),
    ({"seed": "3"}, "seed"),
])
def test_synthetic_tensor_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.synthetic_tensor((4, 5, 6), **{"rank": 2, **kwargs})


def test_load_kinetic():
    from tensorly.datasets import load_kinetic as tl_load

    k = datasets.load_kinetic()
    assert k.data.shape == (64, 12, 10, 60) and k.mask.shape == (64, 12, 10, 60)
    assert k.mask.dtype == bool
    ref = tl_load()
    missing = np.asarray(ref.missing_values_position, dtype=bool)
    np.testing.assert_array_equal(k.mask, ~missing)
    assert 0 < (~k.mask).sum() < k.mask.size
    np.testing.assert_array_equal(np.isnan(k.data), ~k.mask)
    np.testing.assert_array_equal(k.data[k.mask], np.asarray(ref.tensor, dtype=np.float64)[k.mask])
    obs = k.observations()
    assert len(obs) == int(k.mask.sum()) and obs.shape == k.data.shape


@pytest.mark.parametrize("name,size,missing", [
    ("astronaut", 128, 0.7),
    ("chelsea", 96, 0.3),
    ("coffee", 100, 0.5),
])
def test_load_image(name, size, missing):
    img = datasets.load_image(name, size=size, missing=missing, seed=1)
    h, w, ch = img.data.shape
    assert ch == 3 and max(h, w) == size
    assert img.mask.shape == img.data.shape
    truth = img.info["truth"]
    assert truth.shape == img.data.shape
    assert truth.min() >= 0.0 and truth.max() <= 1.0 and truth.max() > 0.5
    observed = img.data[img.mask]
    assert observed.min() >= 0.0 and observed.max() <= 1.0
    np.testing.assert_array_equal(np.isnan(img.data), ~img.mask)
    np.testing.assert_array_equal(observed, truth[img.mask])
    # whole pixels are missing: the mask is the same in every channel
    assert (img.mask == img.mask[..., :1]).all()
    assert abs((~img.mask).mean() - missing) < 0.02


def test_load_image_bad_input():
    with pytest.raises(ValueError, match="name"):
        datasets.load_image("lena")
    with pytest.raises(ValueError, match="missing"):
        datasets.load_image("astronaut", missing=1.0)


@pytest.mark.parametrize("kwargs,match", [
    ({"seed": 2**70}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"n_train": "100"}, "n_train"),
    ({"n_test": True}, "n_test"),
    ({"snr_db": "10"}, "snr_db"),
])
def test_synthetic_regression_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthetic_cp_regression((4, 3), rank=2, **kwargs)

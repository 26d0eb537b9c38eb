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


def test_synthetic_entries_in_chunks_are_the_entries(monkeypatch):
    whole = datasets.synthetic_tensor((5, 6, 7), rank=2, observed=0.5, seed=1)
    monkeypatch.setattr(datasets, "ENTRY_CHUNK", 7)
    chunked = datasets.synthetic_tensor((5, 6, 7), rank=2, observed=0.5, seed=1)
    assert torch.equal(whole.train.values, chunked.train.values)
    assert torch.equal(whole.test.values, chunked.test.values)


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
    ({"shape": (4, -1, 6)}, "shape: expected a sequence of positive integers"),
    ({"shape": ()}, "shape"),
    ({"n_test": 0}, "n_test: expected a positive integer"),
    ({"n_test": 2.5}, "n_test: expected a positive integer"),
    ({"observed": 0.999}, "observed: 0.999 of the 120 entries leaves no entry to hold out"),
])
def test_synthetic_tensor_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.synthetic_tensor(**{"shape": (4, 5, 6), "rank": 2, **kwargs})


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


# --- real tensors bundled with TensorLy: Indian Pines and IL-2 (issue 15) --------------------
def test_load_indian_pines():
    from bayestensor.data.tensors import TENSORLY_DATA

    missing = 0.9
    p = datasets.load_indian_pines(missing=missing, seed=0)
    assert p.data.shape == p.mask.shape == (145, 145, 200) and p.mask.dtype == bool
    assert (~p.mask).sum() == round(missing * p.mask.size)
    np.testing.assert_array_equal(np.isnan(p.data), ~p.mask)
    truth = np.load(TENSORLY_DATA / "Indian_pines_corrected.npy")
    np.testing.assert_array_equal(p.info["truth"], truth)
    np.testing.assert_array_equal(p.data[p.mask], truth[p.mask])
    # the held-out entries are exactly the hidden ones, with their true values
    test, train = p.heldout(), p.observations()
    assert len(test) == (~p.mask).sum() and len(train) == p.mask.sum()
    assert not p.mask[tuple(test.indices.T.numpy())].any()
    np.testing.assert_array_equal(test.values.numpy(),
                                  truth[tuple(test.indices.T.numpy())].astype(np.float32))


def test_load_indian_pines_seeds():
    a = datasets.load_indian_pines(missing=0.95, seed=1)
    b = datasets.load_indian_pines(missing=0.95, seed=1)
    c = datasets.load_indian_pines(missing=0.95, seed=2)
    assert (~a.mask).sum() == (~c.mask).sum() == round(0.95 * a.mask.size)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert (a.mask != c.mask).any()


@pytest.mark.parametrize("missing", [0.0, 1.0, -0.1, 1.5])
def test_load_indian_pines_bad_missing(missing):
    with pytest.raises(ValueError, match="missing"):
        datasets.load_indian_pines(missing=missing)


def test_load_il2():
    from bayestensor.data.tensors import TENSORLY_DATA

    shipped = np.load(TENSORLY_DATA / "IL2_Response_Tensor.npy")
    own_missing = np.isnan(shipped)
    il2 = datasets.load_il2(seed=0)
    assert il2.data.shape == il2.mask.shape == (13, 4, 12, 8)
    # its NaNs are missing (never fitted, never scored); 10% of the observed ones are held out
    assert own_missing.sum() == 192 and not il2.mask[own_missing].any()
    np.testing.assert_array_equal(np.isnan(il2.data), ~il2.mask)
    test = il2.heldout()
    at = tuple(test.indices.T.numpy())
    assert len(test) == round(0.1 * (~own_missing).sum())
    assert not own_missing[at].any() and not il2.mask[at].any()  # no entry both train and test
    assert len(test) + il2.mask.sum() + own_missing.sum() == shipped.size
    np.testing.assert_array_equal(test.values.numpy(), shipped[at].astype(np.float32))
    np.testing.assert_array_equal(il2.data[il2.mask], shipped[il2.mask])
    np.testing.assert_array_equal(datasets.load_il2(seed=0).mask, il2.mask)
    assert (datasets.load_il2(seed=1).mask != il2.mask).any()
    with pytest.raises(ValueError, match="holdout"):
        datasets.load_il2(holdout=1.0)


def test_band_figures(tmp_path):
    from bayestensor.viz.images import band_figures, default_bands, is_band_cube

    assert default_bands(200) == [50, 100, 149]
    assert is_band_cube((145, 145, 200)) and not is_band_cube((64, 64, 3))
    rng = np.random.default_rng(0)
    obs = rng.random((12, 10, 3))
    obs[rng.random(obs.shape) < 0.5] = np.nan
    paths = band_figures(obs, np.ones(obs.shape), np.zeros(obs.shape), tmp_path, labels=[5, 9, 20])
    assert paths["panel"].read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="mean"):
        band_figures(obs, np.ones((12, 10, 2)), np.zeros(obs.shape), tmp_path)
    with pytest.raises(ValueError, match="labels"):
        band_figures(obs, np.ones(obs.shape), np.zeros(obs.shape), tmp_path, labels=[1])


def test_complete_builtin_il2(tmp_path):
    import json

    from click.testing import CliRunner

    from bayestensor.cli.main import main

    out = tmp_path / "il2"
    res = CliRunner().invoke(main, ["complete", "il2", "--method", "map", "--steps", "30",
                                    "--map-hold", "none", "--max-rank", "3", "--quiet",
                                    "--no-report", "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "il2" and summary["heldout"]["n"] == 480
    assert 0 <= summary["heldout"]["coverage"] <= 1 and summary["heldout"]["relative_error"] > 0
    # its own defaults: SGHMC (calibrated intervals) at max rank 60
    res = CliRunner().invoke(main, ["complete", "il2", "--num-samples", "20", "--num-warmup",
                                    "20", "--map-hold", "none", "--quiet", "--no-report",
                                    "--out", str(tmp_path / "il2_defaults")])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "il2_defaults" / "summary.json").read_text())
    assert summary["method"] == "sghmc" and summary["max_rank"] == 60
    # ... with 4 chains started at the starting values (NUTS keeps every slice on IL-2)
    assert summary["init_from"] == "init" and summary["map_hold"] is None
    from bayestensor import Posterior

    assert Posterior.load(tmp_path / "il2_defaults" / "posterior.pt").num_chains == 4
    for args, hint in ((["il2", "--missing", "0.9"], "--missing"),
                       (["il2", "--holdout", "0.1"], "--holdout"),
                       (["no_such_data"], "FILE")):
        res = CliRunner().invoke(main, ["complete", *args, "--out", str(tmp_path / "x")])
        assert res.exit_code != 0 and hint in res.output, res.output

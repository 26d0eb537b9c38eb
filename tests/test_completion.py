"""Tensor completion end to end: every format and method, calibration, real data, images."""

import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import bayestensor as bt
from bayestensor.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.baselines.bcpf import bcpf  # noqa: E402

FORMAT_CASES = {
    "cp": ((12, 11, 10), 2, 5),
    "tucker": ((12, 11, 10), (2, 2, 2), 4),
    "tt": ((12, 11, 10), (2, 2), 4),
    "ttm": ((4, 3, 4, 3, 4, 3), (2, 2), 4),
}
METHOD_KWARGS = {
    "map": {},
    "vi": {"num_samples": 100, "num_steps": 1500},
    "sghmc": {"num_samples": 100, "num_warmup": 200, "num_chains": 2},
    "svgd": {"num_samples": 20, "num_steps": 150},
}


@pytest.mark.parametrize("method", list(METHOD_KWARGS))
@pytest.mark.parametrize("fmt", list(FORMAT_CASES))
def test_every_format_completes_under_every_method(fmt, method):
    shape, rank, max_rank = FORMAT_CASES[fmt]
    prior = {"cp": "gamma", "tucker": "half_cauchy", "tt": "log_uniform", "ttm": "gamma"}[fmt]
    data = bt.data.synthetic_tensor(shape, rank=rank, format=fmt, snr_db=20, observed=0.4, seed=1)
    model = bt.TensorCompletion(shape, fmt, max_rank=max_rank, prior=prior)
    post = bt.fit(model, data.train, method=method, seed=0, progress=False, **METHOD_KWARGS[method])
    pred = post.predict(data.test.indices)
    assert data.relative_error(pred.mean) < 0.3, (fmt, method)
    ranks = post.effective_rank()
    assert ranks.ranks.shape[-1] == len(model.tensor_prior.ranks)
    lower, upper = pred.interval(0.9)
    assert np.all(lower <= pred.mean + 1e-9) and np.all(pred.mean <= upper + 1e-9)


@pytest.mark.parametrize("fmt", ["tucker", "tt"])
def test_map_finds_the_rank_of_each_rank_dimension(fmt):
    rank = (3, 2, 3) if fmt == "tucker" else (3, 2)
    data = bt.data.synthetic_tensor((20, 20, 20), rank=rank, format=fmt, snr_db=20,
                                        observed=0.3, seed=0)
    model = bt.TensorCompletion(data.shape, fmt, max_rank=6)
    post = bt.fit(model, data.train, method="map", seed=0, progress=False)
    assert post.effective_rank().mode().tolist() == list(rank)


def test_sghmc_intervals_are_calibrated():
    """Coverage of 50/80/90/95% predictive intervals within 3 points of nominal."""
    data = bt.data.synthetic_tensor((30, 30, 30), rank=3, snr_db=10, observed=0.2, seed=3,
                                        n_test=5000)
    model = bt.TensorCompletion(data.shape, "cp", max_rank=8)
    post = bt.fit(model, data.train, method="sghmc", num_chains=2, num_samples=300,
                  num_warmup=300, seed=0, progress=False)
    pred = post.predict(data.test.indices)
    noisy = data.test_noisy.values.numpy()
    for level in (0.5, 0.8, 0.9, 0.95):
        assert abs(pred.coverage(noisy, level) - level) < 0.03, level


def test_kinetic_completion_matches_the_vb_baseline():
    kin = bt.data.load_kinetic()
    # The first 12 of 64 measurements keep the test short (the full tensor is in benchmarks/).
    data, mask = kin.data[:12], kin.mask[:12]
    train, test = bt.Observations.from_dense(data, mask).split(0.1, seed=0)
    model = bt.TensorCompletion(data.shape, "cp", max_rank=8)
    post = bt.fit(model, train, method="map", seed=0, progress=False)
    truth = test.values.double().numpy()
    ours = post.predict(test.indices).mean
    vb = bcpf(train.indices, train.values, data.shape, 8).predict(test.indices)[0]
    err = lambda p: np.linalg.norm(p - truth) / np.linalg.norm(truth)  # noqa: E731
    assert err(ours) < 1.05 * err(vb), (err(ours), err(vb))


def test_predict_dense_refuses_what_does_not_fit():
    data = bt.data.synthetic_tensor((10, 10, 10), rank=2, observed=0.3, seed=0)
    post = bt.fit(bt.TensorCompletion(data.shape, "cp", max_rank=3), data.train, progress=False)
    mean, sd = post.predict_dense()
    assert mean.shape == sd.shape == (10, 10, 10)
    with pytest.raises(ValueError, match="max_entries"):
        post.predict_dense(max_entries=100)


def test_image_completion_cli_writes_uncertainty_map(tmp_path):
    img = bt.data.load_image("chelsea", size=32, missing=0.7, seed=0)
    np.save(tmp_path / "img.npy", img.data)
    result = CliRunner().invoke(main, [
        "complete", str(tmp_path / "img.npy"), "--method", "sghmc", "--max-rank", "10",
        "--num-samples", "40", "--num-warmup", "60", "--quiet", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    for name in ("image_observed.png", "image_mean.png", "image_sd.png", "image_panel.png"):
        assert (tmp_path / "out" / name).stat().st_size > 1000
    pred = np.load(tmp_path / "out" / "predictions.npz")
    sd = pred["sd"]
    assert sd.shape == img.data.shape
    # A sampler gives an uncertainty map that varies over the image (MAP would be constant).
    assert sd.std() > 0.05 * sd.mean()
    missing = ~img.mask
    assert np.mean(np.abs(pred["mean"][missing] - img.info["truth"][missing])) < 0.2


def test_map_hold_on_noise_recovers_rank_at_0db():
    """At 0 dB, 10% observed, the joint MAP fits noise with all slices; holding the noise
    precision for the first tenth of the steps lets the prior prune first (measured 5/5 seeds
    in benchmarks/completion_study.py)."""
    data = bt.data.synthetic_tensor((30, 30, 30), rank=3, snr_db=0, observed=0.1, seed=0,
                                        n_test=2000)
    model = bt.TensorCompletion(data.shape, "cp", max_rank=8)
    plain = bt.fit(model, data.train, method="map", seed=0, progress=False, map_hold=None)
    held = bt.fit(model, data.train, method="map", seed=0, progress=False,
                  map_hold={"noise_precision": 0.1})
    assert int(plain.effective_rank().mode()[0]) == 8
    assert int(held.effective_rank().mode()[0]) == 3
    err = data.relative_error(held.predict(data.test.indices).mean)
    assert err < 0.5 * data.relative_error(plain.predict(data.test.indices).mean)
    with pytest.raises(ValueError, match="hold"):
        bt.fit(model, data.train, method="map", progress=False, map_hold={"noise": 0.1})


def test_map_hold_auto_chooses_by_validation_error():
    noisy = bt.data.synthetic_tensor((30, 30, 30), rank=3, snr_db=0, observed=0.1, seed=0,
                                         n_test=2000)
    model = bt.TensorCompletion(noisy.shape, "cp", max_rank=8)
    post = bt.fit(model, noisy.train, method="map", seed=0, progress=False, map_hold="auto")
    choice = post.info["map_hold_auto"]
    assert choice["chosen"] == {"noise_precision": 0.1}
    assert choice["validation_mse"]["hold"] < choice["validation_mse"]["none"]
    assert int(post.effective_rank().mode()[0]) == 3
    # a noise-free tensor with a weak component: holding prunes it, validation says no
    from bayestensor.formats import CPTensor
    truth = CPTensor.random((8, 8, 8), 2, seed=1).reconstruct().double().numpy()
    mask = np.random.default_rng(1).random(truth.shape) >= 0.5
    small = bt.TensorCompletion((8, 8, 8), "cp", max_rank=4)
    post = bt.fit(small, bt.Observations.from_dense(truth, mask), method="map", seed=0,
                  progress=False, map_hold="auto")
    assert post.info["map_hold_auto"]["chosen"] is None
    assert post.effective_rank().mode().tolist() == [2]
    with pytest.raises(ValueError, match="map_hold"):
        bt.fit(lambda: None, method="map", progress=False, map_hold="auto")

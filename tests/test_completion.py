"""Tensor completion end to end: every format and method, calibration, real data, images."""

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import bayestensor as bt
from bayestensor.cli import main
from bayestensor.models import completion as completion_mod

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


def _offset_and_noise(shape, noise_sd, seed=0):
    """A tensor with nothing but an offset and noise, 30% observed (NaN elsewhere)."""
    rng = np.random.default_rng(seed)
    x = 3.0 + noise_sd * rng.normal(size=shape)
    return np.where(rng.random(shape) < 0.3, x, np.nan)


@pytest.mark.parametrize("fmt,method,noise_sd", [("cp", "vi", 0.0), ("cp", "vi", 1.0),
                                                 ("tt", "map", 1.0)])
def test_data_without_low_rank_structure_have_rank_zero(fmt, method, noise_sd):
    """No structure beyond the offset: the relative rule alone counts the TT MAP's negligible
    slices (the largest is always on), the floor on each sample's low-rank part gives rank 0,
    and that part is what the rule says: below 5% of the data's sd, computed here from the
    dense reconstruction (NumPy) over every entry. The closed-form VI keeps its fit without a
    low-rank part, so no slice is on by either rule."""
    data = _offset_and_noise((16, 15, 14), noise_sd)
    model = bt.TensorCompletion(data.shape, fmt, max_rank=8)
    post = bt.fit(model, data, method=method, seed=0, progress=False)
    ranks = post.effective_rank()
    assert ranks.mode().tolist() == [0] * len(model.tensor_prior.ranks)
    assert ranks.activity(0).max() == 0.0
    dense = np.stack([post.model.low_rank(post.flat_samples()).sample(i).reconstruct().numpy()
                      for i in range(min(post.num_chains * post.num_draws, 50))])
    assert np.sqrt(np.mean(dense ** 2, axis=(1, 2, 3))).max() < 0.05
    relative = bt.priors.rank_posterior(post.slice_scales())  # the relative rule alone
    if method == "vi":  # the closed form kept its fit without a low-rank part: no slice at all
        assert post.info["vi_noise_starts"]["null"] == post.info["final_elbo"]
        assert relative.mode().tolist() == [0]
    else:
        assert min(relative.mode().tolist()) >= 1


def test_map_that_fits_noise_worse_than_the_mean_says_so():
    """Pure noise: the CP MAP's validation fits predict the held-out tenth worse than the
    training mean (NumPy: the mean squared error of that mean, recomputed here), and the fit
    warns; the Tucker MAP, whose fits match the mean, and a signal at 0 dB do not."""
    from bayestensor.infer.continuation import worse_than_the_mean

    data = bt.data.synthetic_tensor((20, 20, 20), rank=3, snr_db=0, observed=0.3, seed=0)
    noise = torch.randn(len(data.train), generator=torch.Generator().manual_seed(0))
    pure = bt.Observations(data.train.indices, noise, data.train.shape)
    with pytest.warns(UserWarning, match=r"every MAP fit predicted the validation split worse "
                                         r"than the training split's mean does"):
        post = bt.fit(bt.TensorCompletion(pure.shape, max_rank=8), pure, method="map",
                      progress=False)
    choice = post.info["map_hold_auto"]
    train, val = pure.split(choice["validation"], seed=0)
    mean_mse = np.mean((train.values.double().mean().item() - val.values.double().numpy()) ** 2)
    assert choice["mean_mse"] == pytest.approx(mean_mse, rel=1e-12)
    assert min(choice["validation_mse"].values()) > 1.2 * mean_mse and worse_than_the_mean(choice)
    for model, observed in [(bt.TensorCompletion(pure.shape, "tucker", max_rank=8), pure),
                            (bt.TensorCompletion(pure.shape, max_rank=8), data.train)]:
        post = bt.fit(model, observed, method="map", progress=False)
        assert not worse_than_the_mean(post.info["map_hold_auto"])


def _pure_noise_20(seed: int = 0):
    """Standard normal noise at the cells of a 20^3 tensor's 30%, and 1,000 cells not seen."""
    data = bt.data.synthetic_tensor((20, 20, 20), rank=3, snr_db=0, observed=0.3, n_test=1000,
                                    seed=seed)
    noise = torch.randn(len(data.train), generator=torch.Generator().manual_seed(seed))
    return bt.Observations(data.train.indices, noise, data.train.shape), data.test.indices


def test_svgd_from_a_map_that_fits_noise_says_so():
    """SVGD's particles started at the MAP (``init_from="map"``) keep its slices on pure noise
    (20^3 at 30%, seed 0: held-out predictions with an rms of 0.37 where the truth is 0;
    ``benchmarks/svgd_start.py``), so SVGD warns as the MAP does."""
    pure, _ = _pure_noise_20()
    with pytest.warns(UserWarning, match=r"SVGD's particles start there \(init_from='map'\)"):
        bt.fit(bt.TensorCompletion(pure.shape, max_rank=8), pure, method="svgd", num_samples=4,
               num_steps=5, init_from="map", progress=False)


def test_svgd_starts_a_cp_completion_from_the_closed_form_vi():
    """By default a CP completion's particles are draws of the closed-form VI, which keeps no
    low-rank part on pure noise: rank 0 and predictions at unseen cells at the offset (their
    rms 0.003 of the data's sd at the defaults; 0.37 from the MAP). Other models start at the
    MAP, and ``init_from="vi"`` where the closed form does not run is refused before any work."""
    pure, unseen = _pure_noise_20()
    post = bt.fit(bt.TensorCompletion(pure.shape, max_rank=8), pure, method="svgd",
                  num_samples=8, num_steps=50, seed=0, progress=False)
    assert post.info["init_from"] == "vi" and post.info["vi_noise_starts"]["null"] == \
        post.info["start_vi_elbo"]
    assert post.effective_rank().mode().tolist() == [0]
    assert float(np.sqrt(np.mean(post.predict(unseen).mean ** 2))) < 0.05
    small = bt.data.synthetic_tensor((8, 7, 6), rank=2, observed=0.5, seed=0)
    tt = bt.TensorCompletion(small.shape, "tt", max_rank=3)
    post = bt.fit(tt, small.train, method="svgd", num_samples=4, num_steps=5, map_steps=50,
                  map_hold=None, progress=False)
    assert post.info["init_from"] == "map"
    with pytest.raises(ValueError, match="init_from: 'vi' starts the particles from the "
                                         "closed-form VI"):
        bt.fit(tt, small.train, method="svgd", init_from="vi", progress=False)


def test_rank_signal_is_the_rms_of_each_samples_low_rank_part():
    """Against NumPy: the RMS over every entry of each sample's dense reconstruction, on the
    standardized scale (256 entries drawn uniformly estimate it to within a few percent)."""
    data = bt.data.synthetic_tensor((16, 15, 14), rank=3, snr_db=10, observed=0.3, seed=0)
    model = bt.TensorCompletion(data.shape, "tucker", max_rank=5)
    post = bt.fit(model, data.train, method="vi", num_samples=20, num_steps=300, seed=0,
                  progress=False)
    samples = post.flat_samples()
    signal = model.rank_signal(samples).numpy()
    dense = np.stack([model.low_rank(samples).sample(i).reconstruct().numpy()
                      for i in range(post.num_chains * post.num_draws)])
    np.testing.assert_allclose(signal, np.sqrt(np.mean(dense ** 2, axis=(1, 2, 3))), rtol=0.1)
    assert post.effective_rank().mode().tolist() == [3, 3, 3]


def test_vi_does_not_wait_on_the_hyper_parameters_of_slices_it_switched_off():
    """Under the gamma prior a switched-off slice's precision climbs a funnel towards its
    optimum ``q`` by about Adam's lr a step: the former rule ran 4 x 3,000 steps on this TT
    and warned, with the error of the first run (0.0819 both; ``benchmarks/vi_rounds.py``).
    The drift of those precisions does not count: one run, converged, the true ranks."""
    data = bt.data.synthetic_tensor((12, 9, 12), rank=3, snr_db=20, observed=0.3,
                                    n_test=2000, seed=0)
    model = bt.TensorCompletion(data.shape, "tt", max_rank=6, prior="gamma")
    with warnings.catch_warnings():
        warnings.simplefilter("error", bt.infer.NotConvergedWarning)
        post = bt.fit(model, data.train, method="vi", seed=0, progress=False)
    assert post.info["vi_steps"] == 3000 and post.info["vi_converged"]
    assert post.effective_rank().mode().tolist() == [3, 3]
    assert data.relative_error(post.predict(data.test.indices).mean) < 0.09


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


@pytest.mark.slow  # a real tensor against the VB baseline: ~40 s on two cores
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
    from bayestensor.infer.baselines import HOLD_SWEEPS

    # the held fit on all the data retraces its continuation, in sweeps
    assert post.info["map_steps"] == 0 and post.info["map_quasi_newton_evals"] > HOLD_SWEEPS
    # a noise-free tensor with a weak component: holding prunes it, validation says no
    from bayestensor.formats import CPTensor
    truth = CPTensor.random((8, 8, 8), 2, seed=1).reconstruct().double().numpy()
    mask = np.random.default_rng(1).random(truth.shape) >= 0.5
    small = bt.TensorCompletion((8, 8, 8), "cp", max_rank=4)
    post = bt.fit(small, bt.Observations.from_dense(truth, mask), method="map", seed=0,
                  progress=False, map_hold="auto")
    assert post.info["map_hold_auto"]["chosen"] is None
    assert post.effective_rank().mode().tolist() == [2]
    # no continuation chosen: the fit on all the data is the plain fit, from the model's start
    plain = bt.fit(small, bt.Observations.from_dense(truth, mask), method="map", seed=0,
                   progress=False, map_hold=None)
    assert post.info["map_steps"] == plain.info["map_steps"] > 0
    everywhere = np.argwhere(np.ones(truth.shape, dtype=bool))
    np.testing.assert_array_equal(post.predict(everywhere).mean, plain.predict(everywhere).mean)
    with pytest.raises(ValueError, match="map_hold"):
        bt.fit(lambda: None, method="map", progress=False, map_hold="auto")


def test_map_hold_auto_fits_all_the_data_from_the_models_start(monkeypatch):
    """Whatever ``auto`` chooses, the fit on all the data takes the model's start (a start at
    a validation fit's end cannot revive the slices pruned on 90% of the data); chains that
    start at the starting values themselves (``init_from="init"``) run no validation fits."""
    from bayestensor.infer import api

    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("init"))
        return real(*args, **kwargs)

    real = api.run_method
    monkeypatch.setattr(api, "run_method", spy)
    data = bt.data.synthetic_tensor((10, 10, 10), rank=2, observed=0.5, seed=0)
    model = bt.TensorCompletion(data.shape, "cp", max_rank=4)
    for init_from, auto in (("map", True), ("init", False)):
        post = bt.fit(model, data.train, method="sghmc", num_samples=5, num_warmup=5,
                      init_from=init_from, progress=False)
        assert seen[-1] == "svd" and ("map_hold_auto" in post.info) is auto
    assert post.info["options"]["map_hold"] is None
    noisy = bt.data.synthetic_tensor((30, 30, 30), rank=3, snr_db=0, observed=0.1, seed=0)
    post = bt.fit(bt.TensorCompletion(noisy.shape, "cp", max_rank=8), noisy.train,
                  method="map", progress=False)
    assert post.info["map_hold_auto"]["chosen"] == {"noise_precision": 0.1}
    assert seen[-1] == "svd"


def test_residual_noise_start_is_the_starts_residual_precision():
    """``noise_start="residual"``: 1 / (mean squared residual of the start on the observed
    entries, standardized), checked against TensorLy's TT reconstruction of the start."""
    import tensorly as tl
    from tensorly.tt_tensor import tt_to_tensor

    data = bt.data.synthetic_tensor((12, 10, 8), rank=2, observed=0.5, seed=0)
    model = bt.TensorCompletion(data.shape, "tt", max_rank=4)
    model.set_data(data.train)
    plain = model.init_values(seed=0)
    start = model.init_values(seed=0, noise_start="residual")
    cores = [plain[f"X.core{k}"].double().numpy() for k in range(3)]
    with tl.backend_context("numpy"):
        dense = tt_to_tensor(cores)
    idx = tuple(data.train.indices.numpy().T)
    y = (data.train.values.double().numpy() - model.center) / model.scale
    expected = 1 / np.mean((dense[idx] - y) ** 2)
    assert float(start["noise_precision"]) == pytest.approx(expected, rel=1e-5)
    assert float(plain["noise_precision"]) == pytest.approx(1 / np.var(y, ddof=1), rel=1e-5)
    assert expected > 5 * float(plain["noise_precision"])  # the start fits far better (7x)
    for name in plain:  # only the noise precision differs
        if name != "noise_precision":
            assert torch.equal(plain[name], start[name])
    with pytest.raises(ValueError, match="noise_start"):
        model.init_values(seed=0, noise_start="residuals")


def test_map_hold_auto_starts_a_small_tt_fit_at_the_residual_noise():
    """On a small TT tensor the MAP from ``1 / Var(y)`` switches off a real component; the
    auto choice sees it on the validation split and starts the noise at the residual."""
    data = bt.data.synthetic_tensor((20, 15, 10), rank=3, snr_db=20, observed=0.5, seed=1)
    model = bt.TensorCompletion(data.shape, "tt", max_rank=10)
    plain = bt.fit(model, data.train, method="map", seed=1, progress=False, map_hold=None)
    post = bt.fit(model, data.train, seed=1, progress=False)
    choice = post.info["map_hold_auto"]
    assert post.info["method"] == "map" and choice["noise_start"] == "residual"
    mse = choice["validation_mse"]
    assert mse["residual"] < 0.5 * min(mse["none"], mse["hold"])
    assert min(plain.effective_rank().mode().tolist()) == 2  # a real component switched off
    assert post.effective_rank().mode().tolist() == [3, 3]
    errors = [data.relative_error(p.predict(data.test.indices).mean) for p in (plain, post)]
    assert errors[0] > 0.2 and errors[1] < 0.06
    # a CP model is not offered the residual start: its default fit is the closed-form VI
    cp = bt.fit(bt.TensorCompletion(data.shape, "cp", max_rank=6), data.train,
                method="map", seed=1, progress=False)
    assert set(cp.info["map_hold_auto"]["validation_mse"]) == {"none", "hold"}
    assert cp.info["map_hold_auto"]["noise_start"] == "variance"


@pytest.mark.parametrize("fmt", ["tt", "tucker"])
def test_validation_fits_run_as_one_batch_as_each_would_alone(fmt):
    """Where the MAP runs on Adam alone (TT, Tucker), ``map_hold="auto"``'s three validation
    fits run as rows of one batch; each row is the fit ``run_method`` makes alone from its
    start with its hold (the oracle), though the rows stop at different steps."""
    from bayestensor.infer.runners import MAP, run_map_rows, run_method

    data = bt.data.synthetic_tensor((12, 10, 8), rank=2, snr_db=20, observed=0.5, seed=0)
    model = bt.TensorCompletion(data.shape, fmt, max_rank=4)
    model.set_data(data.train)
    plain = model.init_values(seed=0)
    starts = [plain, plain, model.init_values(seed=0, noise_start="residual")]
    holds = [None, model.map_hold_candidate, None]
    rows = run_map_rows(model, data.train, starts, holds, options={}, seed=0)
    steps = []
    for row, start, hold in zip(rows, starts, holds):
        alone = run_method(MAP, model, data.train, options={"map_hold": hold},
                           seed=0, init=start, progress=False)
        steps.append(alone.info["map_steps"])
        for name, value in alone.samples.items():
            np.testing.assert_allclose(row.samples[name], value, rtol=1e-3, atol=1e-4,
                                       err_msg=name)
        assert row.predict(data.test.indices).mean == pytest.approx(
            alone.predict(data.test.indices).mean, rel=1e-3, abs=1e-4)
    assert len(set(steps)) > 1  # each row stopped at its own stall
    assert not np.allclose(rows[0].samples["noise_precision"], rows[1].samples["noise_precision"])
    with pytest.raises(ValueError, match="one hold per start"):
        run_map_rows(model, data.train, starts, holds[:2], options={})
    cp = bt.TensorCompletion(data.shape, "cp", max_rank=4)
    with pytest.raises(ValueError, match="hands over"):
        run_map_rows(cp, data.train, starts[:1], [None], options={})


def test_a_small_tucker_fit_starts_from_one_pass_at_its_residual_noise():
    """Tucker's start from 30 masked HOOI passes fits a small tensor's entries nearly exactly;
    the residual start takes one pass, whose residual is nearer the noise, and the default
    fit (auto) chooses it where the plain MAP switches off a real component."""
    data = bt.data.synthetic_tensor((20, 15, 10), rank=3, snr_db=20, observed=0.3, seed=0)
    model = bt.TensorCompletion(data.shape, "tucker", max_rank=10)
    model.set_data(data.train)
    many = model.init_values(seed=0)
    one = model.init_values(seed=0, noise_start="residual")
    assert not torch.equal(many["X.core"], one["X.core"])
    residual = {**many, "noise_precision": model._residual_precision(many)}
    assert float(residual["noise_precision"]) > 100  # 30 passes: near interpolation
    assert float(one["noise_precision"]) < 0.25 * float(residual["noise_precision"])
    plain = bt.fit(model, data.train, method="map", seed=0, progress=False, map_hold=None)
    post = bt.fit(model, data.train, seed=0, progress=False)
    assert post.info["map_hold_auto"]["noise_start"] == "residual"
    assert plain.effective_rank().mode().tolist() == [2, 2, 2]
    assert post.effective_rank().mode().tolist() == [3, 3, 3]
    errors = [data.relative_error(p.predict(data.test.indices).mean) for p in (plain, post)]
    assert errors[0] > 0.2 and errors[1] < 0.08


# --- degenerate data, ranks that cannot fit (issue 14) -----------------------------------------

SMALL = (6, 5, 4)


def _half_observed(value=None, seed=0):
    rng = np.random.default_rng(seed)
    mask = rng.random(SMALL) < 0.5
    full = rng.normal(size=SMALL) if value is None else np.full(SMALL, value)
    return np.where(mask, full, np.nan)


@pytest.mark.parametrize("fmt", ["cp", "tucker", "tt"])
def test_constant_data_fits_to_the_constant(fmt):
    model = bt.TensorCompletion(SMALL, fmt, max_rank=3)
    post = bt.fit(model, _half_observed(3.25), method="map", num_steps=30, seed=0,
                  progress=False, map_hold=None)
    assert float(post.samples["noise_precision"].min()) > 0  # started at 1, not at 1 / 0
    mean = post.predict(np.indices(SMALL).reshape(3, -1).T).mean
    np.testing.assert_allclose(mean, 3.25, rtol=0, atol=1e-3)


@pytest.mark.parametrize("n_obs", [1, 2])
def test_one_or_two_observations_fit(n_obs):
    idx = np.array([[0, 0, 0], [5, 4, 3]])[:n_obs]
    vals = np.array([1.5, -0.5])[:n_obs]
    model = bt.TensorCompletion(SMALL, "cp", max_rank=3)
    post = bt.fit(model, bt.Observations.from_coo(idx, vals, SMALL), method="map",
                  num_steps=30, seed=0, progress=False)
    assert np.all(np.isfinite(post.predict(idx).mean))


def test_a_tensor_of_one_entry_fits():
    shape = (1,) * 8
    with pytest.warns(UserWarning, match="max_rank: 2 .* capped at \\(1,\\)"):
        model = bt.TensorCompletion(shape, "cp", max_rank=2)
    post = bt.fit(model, np.full(shape, 2.0), method="map", num_steps=30, seed=0, progress=False)
    assert post.predict(np.zeros((1, 8), dtype=np.int64)).mean == pytest.approx(2.0, abs=1e-3)


@pytest.mark.parametrize("fmt", ["cp", "tucker", "tt"])
def test_a_one_dimensional_tensor_is_refused(fmt):
    with pytest.raises(ValueError, match="shape: .*at least 2 modes"):
        bt.TensorCompletion((10,), fmt, max_rank=2)


def test_huge_tucker_max_rank_is_capped_and_recorded():
    with pytest.warns(UserWarning, match=r"max_rank: 1000 .* capped at \(6, 5, 4\)"):
        model = bt.TensorCompletion(SMALL, "tucker", max_rank=1000)
    assert model.tensor_prior.ranks == (6, 5, 4)
    assert model.config()["max_rank"] == [6, 5, 4]  # a reloaded model needs no cap
    post = bt.fit(model, _half_observed(), method="map", num_steps=5, seed=0, progress=False,
                  map_hold=None)
    assert post.samples["X.core"].shape[-3:] == (6, 5, 4)


def test_a_model_above_max_params_is_refused_unless_lifted():
    shape = (400, 400, 400)
    with pytest.raises(ValueError, match=r"max_rank: 400 gives .*parameters, above "
                                         r"max_params=50,000,000"):
        bt.TensorCompletion(shape, "tucker", max_rank=400)
    model = bt.TensorCompletion((40, 40, 40), "tucker", max_rank=40, max_params=None)
    assert model.config()["max_params"] is None


def test_predict_on_no_indices_says_so():
    model = bt.TensorCompletion(SMALL, "cp", max_rank=2)
    post = bt.fit(model, _half_observed(), method="map", num_steps=5, seed=0, progress=False,
                  map_hold=None)
    with pytest.raises(ValueError, match="indices: no entries to predict"):
        post.predict(np.zeros((0, 3), dtype=np.int64))


def test_predict_reads_numpys_per_mode_index_arrays():
    """``np.nonzero(mask)``'s tuple of per-mode arrays names the same entries as its stacked
    ``(n, 3)`` rows; with three hits in a 3-way tensor (a square array either way) it was
    taken as rows, that is transposed, without an error."""
    model = bt.TensorCompletion(SMALL, "cp", max_rank=2)
    post = bt.fit(model, _half_observed(), method="map", num_steps=5, seed=0, progress=False,
                  map_hold=None)
    mask = np.zeros(SMALL, dtype=bool)
    mask[0, 1, 2] = mask[3, 0, 1] = mask[1, 2, 0] = True
    rows = np.argwhere(mask)
    per_mode = np.nonzero(mask)
    np.testing.assert_array_equal(post.predict(per_mode).mean, post.predict(rows).mean)
    assert not np.array_equal(post.predict(rows.T).mean, post.predict(rows).mean)
    tensors = tuple(torch.from_numpy(a) for a in per_mode)
    np.testing.assert_array_equal(post.predict(tensors).mean, post.predict(rows).mean)
    with pytest.raises(ValueError, match="needs 3 arrays of one length, got lengths"):
        post.predict(per_mode[:2])


@pytest.mark.parametrize("fmt, shape", [("cp", (8, 9, 10)), ("tucker", (8, 9, 10)),
                                        ("tt", (8, 9, 10)), ("ttm", (4, 6, 4, 6))])
def test_dense_prediction_routes_equal_gathered_entries(fmt, shape):
    """Predictions read from each sample's dense tensor, from the box that a run of
    consecutive entries fills, or from whole slabs (the box itself, in order), equal the
    factor-row gather (oracle)."""
    data = bt.data.synthetic_tensor(shape, rank=2, snr_db=10, observed=0.3, seed=0)
    model = bt.TensorCompletion(shape, format=fmt, max_rank=4)
    post = bt.fit(model, data.train, method="svgd", num_samples=5, num_steps=20, progress=False)
    flat = post.flat_samples()
    size, slab = int(np.prod(shape)), int(np.prod(shape[1:]))
    run = np.stack(np.unravel_index(np.arange(size // 3, size // 2), shape), -1)
    slabs = np.stack(np.unravel_index(np.arange(slab, 3 * slab), shape), -1)
    for idx, volume in ((data.test.indices, size), (torch.as_tensor(run), None),
                        (torch.as_tensor(slabs), 2 * slab)):
        _, box = model._dense_box(idx)
        assert np.prod(box) == volume if volume else np.prod(box) < size
        via_box, _ = model.predict_entries(flat, idx)
        gathered = ((model.low_rank(flat).entries(idx) + flat["offset"][:, None]) * model.scale
                    + model.center)
        np.testing.assert_allclose(via_box.numpy(), gathered.numpy(), rtol=0, atol=1e-5)
    assert model._dense_box(data.test.indices[: len(data.test) // 10]) is None  # scattered: gather


def test_box_route_reconstructs_samples_in_passes(monkeypatch):
    """A box too large for every sample's reconstruction at once is read in passes over the
    samples, with the same entries as the gather."""
    shape = (6, 7, 8)
    data = bt.data.synthetic_tensor(shape, rank=2, snr_db=10, observed=0.5, seed=1)
    model = bt.TensorCompletion(shape, "cp", max_rank=3)
    post = bt.fit(model, data.train, method="svgd", num_samples=5, num_steps=10, progress=False)
    monkeypatch.setattr(completion_mod, "DENSE_PREDICT_ELEMENTS", 2 * 7 * 8 * 2)  # 2 per pass
    idx = torch.as_tensor(np.stack(np.unravel_index(np.arange(60, 150), shape), -1))
    assert model._dense_box(idx) == ([1, 0, 0], [2, 7, 8])
    via_box, _ = model.predict_entries(post.flat_samples(), idx)
    flat = post.flat_samples()
    gathered = (model.low_rank(flat).entries(idx) + flat["offset"][:, None]) * model.scale \
        + model.center
    np.testing.assert_allclose(via_box.numpy(), gathered.numpy(), rtol=0, atol=1e-5)


def test_faithful_bcpf_finds_rank_10_at_half_observed():
    # BCPF as its authors' code runs it (no centring, sd/N scaling, unit start for the noise
    # precision, covariance-only first sweep, machine-precision pruning, lower-bound stopping)
    # keeps all ten components here; this module's earlier variant kept 7 (error 0.48).
    # Measured: rank 10, relative error 0.0275 (issue 15 reports 0.028).
    data = bt.data.synthetic_tensor((30, 30, 30), rank=10, snr_db=20, observed=0.5, seed=0)
    vb = bcpf(data.train.indices, data.train.values, data.shape, 20)
    mean, sd = vb.predict(data.test.indices)
    assert vb.rank == 10
    assert data.relative_error(mean) < 0.04, data.relative_error(mean)
    assert np.all(sd > 0)
    assert np.all(np.diff(vb.lower_bound) > -1e-6 * abs(vb.lower_bound[1]))


def test_fits_on_the_same_data_share_the_start(monkeypatch):
    data = bt.data.synthetic_tensor((8, 9, 10), rank=2, observed=0.3, seed=0)
    model = bt.TensorCompletion((8, 9, 10), "cp", max_rank=3)
    calls = []
    compute = model._start_values
    monkeypatch.setattr(model, "_start_values", lambda *a: calls.append(a) or compute(*a))
    model.set_data(data.train)
    first = model.init_values()
    first["noise_precision"].fill_(123.0)  # callers get copies
    model.to("cpu")
    again = model.init_values()
    assert len(calls) == 1 and float(again["noise_precision"]) != 123.0
    model.init_values(seed=1)
    model.set_data(data.test_noisy)
    model.init_values(seed=1)
    assert len(calls) == 3


def test_saved_posterior_keeps_its_offset_and_older_files_load_without_one(tmp_path):
    """The offset is a site like any other: a saved and loaded posterior predicts the same
    numbers. A file written before the site existed has no ``offset_scale`` in its model
    config; it is rebuilt without the site, as it was fitted."""
    from bayestensor.models import model_from_config

    data = bt.data.synthetic_tensor((8, 7, 6), rank=2, snr_db=20, observed=0.5, seed=0)
    model = bt.TensorCompletion(data.shape, "cp", max_rank=3)
    post = bt.fit(model, data.train, method="map", seed=0, progress=False)
    assert "offset" in post.samples
    back = bt.Posterior.load(post.save(tmp_path / "posterior.pt"))
    np.testing.assert_allclose(back.predict(data.test.indices).mean,
                               post.predict(data.test.indices).mean, rtol=0, atol=0)
    old_config = {k: v for k, v in model.config().items() if k != "offset_scale"}
    assert model_from_config("TensorCompletion", old_config).offset_scale is None
    assert model_from_config("TensorCompletion", model.config()).offset_scale == 10.0


@pytest.mark.parametrize("fmt, sites", [("tt", ["X.core0"]), ("tucker", ["X.factor1", "X.factor2"])])
def test_sghmc_start_of_a_small_tucker_or_tt_completion_converges_at_the_defaults(fmt, sites):
    """A 40 x 30 x 6 completion (rank 3, 30% observed, 10 dB, seed 1): SGHMC's MAP start at
    its default budget stops on a flat objective, where at the former 1,000 steps it ended
    with the named sites still moving and warned (``benchmarks/sghmc_map_start.py``)."""
    data = bt.data.synthetic_tensor((40, 30, 6), rank=3, snr_db=10, observed=0.3, n_test=10,
                                    seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bt.TensorCompletion((40, 30, 6), fmt, max_rank=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post = bt.fit(model, data.train, method="sghmc", num_samples=10, num_warmup=10, seed=1,
                      progress=False)
    assert not [w for w in caught if "MAP start" in str(w.message)]
    assert post.info["map_converged"] and post.info["map_steps"] < 2000
    with pytest.warns(bt.infer.NotConvergedWarning, match=r"MAP start did not converge.*"
                      + r".*".join(sites)):
        bt.fit(model, data.train, method="sghmc", num_samples=10, num_warmup=10, seed=1,
               progress=False, map_steps=1000)

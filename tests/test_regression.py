"""Low-rank tensor regression: fast path vs Pyro, bad input, recovery, coverage, digits, CLI."""

import json
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import bayestensor as bt
from bayestensor.infer import LogDensity
from bayestensor.models.regression_gibbs import RegressionGibbs
from bayestensor.priors import LowRankPrior
from bayestensor.viz.regression import plot_weights
from bayestensor.cli.regress import regress
from bayestensor.data.regression import (load_digits_binary, shape_image, synthetic_cp_regression,
                                         synthetic_image_regression)
from test_formats import tensorly_dense


@pytest.fixture(scope="module")
def cross():
    """The issue's example: a rank-2 cross in a 32x32 image, n=500, SNR 10 dB."""
    return synthetic_image_regression("cross", size=32, n_train=500, n_test=1000, seed=0)


@pytest.fixture(scope="module")
def cross_fits(cross):
    model = bt.TensorRegression(cross.input_shape, format="cp", max_rank=6)
    map_post = bt.fit(model, cross.train, method="map", seed=0, progress=False)
    # fit's SGHMC starts its chains at the MAP (init_from="map", its default).
    sghmc_post = bt.fit(model, cross.train, method="sghmc", num_samples=400,
                        num_warmup=400, num_chains=2, seed=0, progress=False)
    return model, map_post, sghmc_post


# --- fast path == Pyro trace ------------------------------------------------------------------
@pytest.mark.parametrize("fmt,prior,likelihood,n_outputs", [
    ("cp", "gamma", "gaussian", None),
    ("tucker", "half_cauchy", "bernoulli", None),
    ("tt", "log_uniform", "gaussian", 2),
    ("cp", "gamma", "bernoulli", 3),
])
def test_fast_path_matches_pyro_trace(fmt, prior, likelihood, n_outputs):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 6, 5)) * 3 + 1
    y_shape = (60,) if n_outputs is None else (60, n_outputs)
    y = rng.normal(size=y_shape) * 2 + 5 if likelihood == "gaussian" else \
        (rng.random(y_shape) < 0.4).astype(float)
    model = bt.TensorRegression((6, 5), format=fmt, max_rank=3, prior=prior,
                                likelihood=likelihood, n_outputs=n_outputs)
    model.set_data((X, y))
    init = model.init_values(seed=0)
    for kwargs in ({"subsample_size": 25}, {}):
        fast = LogDensity(model.pyro_model, model.model_args(), kwargs, init_values=init,
                         fast_log_joint=model.fast_log_joint, seed=0)
        slow = LogDensity(model.pyro_model, model.model_args(), kwargs, init_values=init, seed=0)
        assert fast.subsample_plates == ({"obs": (60, 25)} if kwargs else {})
        theta = fast.init_theta(3, jitter=0.1)
        sub = fast.draw_subsample()
        v1, g1 = fast.value_and_grad(theta, sub)
        v2, g2 = slow.value_and_grad(theta, sub)
        torch.testing.assert_close(v1, v2, rtol=1e-5, atol=1e-3)
        torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-3)


# --- bad input --------------------------------------------------------------------------------
def _fit(model, data):
    return bt.fit(model, data, method="map", num_steps=5, progress=False)


@pytest.mark.parametrize("case,match", [
    ("x_shape", r"X: expected shape \(n, 8, 8\) matching input_shape"),
    ("y_length", r"y: expected shape \(30,\)"),
    ("y_matrix", "n_outputs=2"),
    ("x_nan", "X: value nan at position"),
    ("y_inf", "y: value inf"),
    ("not_binary", r"y: likelihood='bernoulli' needs binary labels"),
    ("not_pair", "data: expected a pair"),
    ("x_constant", r"X: no input varies between its rows \(n=30\)"),
    ("x_one_row", r"X: no input varies between its rows \(n=1\)"),
])
def test_bad_data_raises_value_error_naming_the_argument(case, match):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 8, 8)), rng.normal(size=30)
    lik = "gaussian"
    if case == "x_shape":
        X = rng.normal(size=(30, 8, 9))
    elif case == "y_length":
        y = y[:-1]
    elif case == "y_matrix":
        y = rng.normal(size=(30, 2))
    elif case == "x_nan":
        X[3, 2, 1] = np.nan
    elif case == "y_inf":
        y[4] = np.inf
    elif case == "not_binary":
        lik, y = "bernoulli", np.r_[np.zeros(15), np.full(15, 2.0)]
    elif case == "x_constant":  # the same image in every row: only the intercept is informed
        X = np.broadcast_to(X[0], X.shape)
    elif case == "x_one_row":
        X, y = X[:1], y[:1]
    data = X if case == "not_pair" else (X, y)
    model = bt.TensorRegression((8, 8), max_rank=2, likelihood=lik)
    with pytest.raises(ValueError, match=match):
        _fit(model, data)


@pytest.mark.parametrize("kwargs,match", [
    ({"input_shape": (8,)}, "input_shape: a low-rank coefficient tensor needs at least two"),
    ({"input_shape": (0, 3)}, "input_shape"),
    ({"likelihood": "poisson"}, "likelihood"),
    ({"format": "ttm"}, "format"),
    ({"format": "svd"}, "format"),
    ({"max_rank": 0}, "max_rank"),
    ({"n_outputs": 0}, "n_outputs"),
    ({"intercept_scale": -1.0}, "intercept_scale"),
    ({"prior": "laplace"}, "prior"),
    ({"max_rank": 2.5}, "max_rank"),
    ({"max_rank": "3"}, "max_rank"),
    ({"max_rank": True}, "max_rank"),
    ({"format": "tucker", "max_rank": [2.5, 2]}, "max_rank"),
    ({"standardize": "no"}, "standardize"),
    ({"standardize": 0}, "standardize"),
    ({"max_params": -1}, "max_params"),
])
def test_bad_constructor_arguments(kwargs, match):
    args = {"input_shape": (8, 8), **kwargs}
    with pytest.raises(ValueError, match=match):
        bt.TensorRegression(**args)


def test_predict_checks_inputs(cross_fits):
    _, map_post, _ = cross_fits
    with pytest.raises(ValueError, match=r"X: expected shape \(n, 32, 32\).*X\[None\]"):
        map_post.predict(np.zeros((32, 32)))
    bad = np.zeros((2, 32, 32))
    bad[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="X: value nan"):
        map_post.predict(bad)


# --- recovery, coverage -----------------------------------------------------------------------
#: NUTS's effective-rank posterior on the cross at seed 0 (2 x 300 draws after 300 warm-up
#: steps): benchmarks/results/regression_rank_reference.json, docs/benchmarks.md.
CROSS_NUTS_RANKS = {2: 0.027, 3: 0.198, 4: 0.383, 5: 0.297, 6: 0.095}


def test_map_and_sghmc_recover_rank_and_weight(cross, cross_fits):
    """Cross (rank 2) in 32x32, n=500, 10 dB, max rank 6: ||W_hat - W|| / ||W|| < 0.25, MAP
    rank 2, and SGHMC's rank posterior within 0.3 (total variation) of NUTS's.

    NUTS, the reference, gives this posterior rank 4 as its mode and rank 2 a probability of
    0.03 (``CROSS_NUTS_RANKS``): two or more further slices carry 5-14% of the largest slice's
    scale. Measured at this seed (2 chains x 400 draws, with the default redraws of the factors
    and slice precisions): W error 0.161, rank distribution 2: 0.005, 3: 0.15, 4: 0.26, 5: 0.38,
    6: 0.20, 0.19 from NUTS's; without the redraws the chains stayed near the MAP's switched-off
    slices (rank 2: 0.78, 3: 0.23; 0.78 from NUTS's).
    """
    model, map_post, sghmc_post = cross_fits
    assert map_post.effective_rank().mode().tolist() == [2]
    for post in (map_post, sghmc_post):
        w_mean, w_sd = model.weight_posterior(post)
        assert w_mean.shape == w_sd.shape == (32, 32)
        assert cross.weight_relative_error(w_mean) < 0.25
        assert abs(float(model.intercepts(post.flat_samples()).mean()) - cross.intercept) < 0.6
    ranks = sghmc_post.effective_rank()
    ours = ranks.distribution(0)
    distance = 0.5 * sum(abs(ours.get(r, 0.0) - CROSS_NUTS_RANKS.get(r, 0.0))
                         for r in set(ours) | set(CROSS_NUTS_RANKS))
    assert distance < 0.3, ours
    # the two slices of the cross are always active
    assert np.sort(ranks.activity(0))[-2] >= 0.95
    _, w_sd = model.weight_posterior(sghmc_post)
    assert (w_sd > 0).all()


def test_predictive_coverage_within_three_points_of_nominal(cross, cross_fits):
    _, map_post, sghmc_post = cross_fits
    pred = sghmc_post.predict(cross.X_test)
    cov = pred.coverage(cross.y_test, 0.9)
    assert abs(cov - 0.9) <= 0.03, cov
    assert cross.relative_error(pred.mean) < 0.25
    lo, hi = pred.interval(0.9)
    lo5, hi5 = pred.interval(0.5)
    assert ((lo < lo5) & (hi5 < hi)).all()
    # the predictive sd is close to the true noise sd plus a little parameter uncertainty
    assert cross.noise_sd * 0.85 < float(np.median(pred.sd)) < cross.noise_sd * 1.2
    # MAP intervals carry the noise only: narrower than SGHMC's
    assert np.median(map_post.predict(cross.X_test).sd_mean) == 0.0


def test_a_response_the_inputs_do_not_explain_has_rank_zero():
    """Pure-noise response: the MAP's slices are all negligible and the relative rule alone
    counts every one; the floor on <X, W> (the rows' root mean square, against NumPy on the
    standardized inputs) gives rank 0."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 6, 5)), rng.normal(size=300)
    model = bt.TensorRegression((6, 5), max_rank=4)
    post = bt.fit(model, (X, y), method="map", seed=0, progress=False)
    samples = post.flat_samples()
    xs = ((X - X.mean(0)) / model.x_scale).reshape(300, -1)
    w = model.weight_prior.build(samples).reconstruct().double().numpy().reshape(1, -1)
    np.testing.assert_allclose(model.rank_signal(samples).numpy(),
                               np.sqrt(np.mean((w @ xs.T) ** 2, axis=1)), rtol=1e-4, atol=1e-9)
    assert float(model.rank_signal(samples)[0]) < 0.05
    assert post.effective_rank().mode().tolist() == [0]
    assert bt.priors.rank_posterior(post.slice_scales()).mode().tolist() == [4]


def test_predictions_are_in_data_units(cross, cross_fits):
    """predict == <W, X> + b from weights()/intercepts(), whatever the internal scaling."""
    model, _, sghmc_post = cross_fits
    flat = {k: v[:7] for k, v in sghmc_post.flat_samples().items()}
    X = cross.X_test[:20] * 3.0 + 2.0
    mu, noise_sd = model.predict_entries(flat, torch.as_tensor(X))
    w = model.weights(flat).double().reshape(7, -1)
    b = model.intercepts(flat)
    direct = torch.as_tensor(X.reshape(20, -1)) @ w.T + b
    torch.testing.assert_close(mu.double(), direct.T, rtol=1e-4, atol=1e-3)
    assert noise_sd.shape == (7,)


def test_scaled_data_gives_scaled_weights():
    data = synthetic_image_regression("square", size=12, n_train=300, n_test=100, snr_db=15,
                                      seed=2)
    Xs, ys = data.X_train * 0.01 + 5.0, data.y_train * 1000.0 - 40.0
    model = bt.TensorRegression((12, 12), format="tucker", max_rank=3)
    post = bt.fit(model, (Xs, ys), method="map", seed=0, progress=False)
    w_mean, _ = model.weight_posterior(post)
    rel = np.linalg.norm(w_mean - data.weight * 1e5) / np.linalg.norm(data.weight * 1e5)
    assert rel < 0.2, rel
    assert post.effective_rank().mode().tolist() == [1, 1]
    pred = post.predict(data.X_test * 0.01 + 5.0)
    target = data.mean_test * 1000.0 - 40.0
    assert np.linalg.norm(pred.mean - target) / np.linalg.norm(target - target.mean()) < 0.2


def test_three_way_cp_and_minibatch_sghmc():
    data = synthetic_cp_regression((8, 7, 6), rank=2, n_train=400, n_test=300, seed=1)
    model = bt.TensorRegression(data.input_shape, format="cp", max_rank=5)
    post = bt.fit(model, data.train, method="sghmc", init="map", batch_size=100, num_samples=200,
                  num_warmup=200, lr=0.003, noise_estimate="auto", seed=0, progress=False)
    assert post.info["batch_size"] == 100
    assert post.effective_rank().mode().tolist() == [2]
    w_mean, _ = model.weight_posterior(post)
    assert data.weight_relative_error(w_mean) < 0.2
    assert abs(post.predict(data.X_test).coverage(data.y_test) - 0.9) < 0.06


@pytest.mark.parametrize("format,rank,k,likelihood", [
    ("cp", 2, 0, "gaussian"), ("tucker", (2, 3, 2), 0, "gaussian"),
    ("tucker", (2, 3, 2), 3, "gaussian"), ("tt", (2, 3), 1, "gaussian"),
    ("cp", 2, 1, "bernoulli")])
def test_regression_factor_draws_follow_their_gaussian_conditional(format, rank, k, likelihood):
    """One parameter of a regression (a CP or Tucker factor, the Tucker core, an inner TT core;
    the others fixed), given per-observation precisions ``w`` and pulls ``b`` (Gaussian:
    ``tau`` and ``tau y``; binary labels: Polya-Gamma draws and ``y - 1/2``): 5,000 redraws
    have the mean ``P^-1 D^T (b - w c)`` and covariance ``P^-1``, ``P = D^T diag(w) D + diag(1 /
    v)`` (``v`` each entry's product of slice variances), with the design ``D`` built
    independently: each column the inputs' inner product with TensorLy's tensor at a unit
    parameter; the intercept's draws have the mean and variance of its Gaussian conditional.
    Within 5 standard errors (means) and 10% (covariances)."""
    gen = torch.Generator().manual_seed(0)
    shape, n, draws = (4, 3, 5), 60, 5_000  # as many chains, all at the same values
    prior = LowRankPrior("W", shape, rank, format=format)
    X = torch.randn((n,) + shape, generator=gen, dtype=torch.float64)
    params = [torch.randn(spec.shape, generator=gen, dtype=torch.float64) + 1.0
              for spec in prior.specs]
    variances = [torch.linspace(0.5, 2.0, r, dtype=torch.float64) for r in prior.ranks]
    c = 0.7
    if likelihood == "gaussian":
        y = torch.randn(n, generator=gen, dtype=torch.float64)
        w, b = torch.full((n,), 3.0, dtype=torch.float64), 3.0 * y
    else:
        y = (torch.rand(n, generator=gen, dtype=torch.float64) < 0.5).double()
        w, b = 0.05 + 0.25 * torch.rand(n, generator=gen, dtype=torch.float64), y - 0.5
    gibbs = RegressionGibbs(X.reshape(n, -1), y, prior, likelihood=likelihood,
                            noise_site="t" if likelihood == "gaussian" else None,
                            intercept_site="b", intercept_scale=2.0)
    prior_precision = prior.entry_std(prior.specs[k], variances).pow(-2).reshape(-1)
    batch = [p.expand((draws,) + p.shape) for p in params]
    drawn, linears = gibbs._draw_param(batch, k, prior_precision.expand(draws, -1),
                                       w.expand(draws, n), b.expand(draws, n),
                                       torch.full((draws,), c, dtype=torch.float64), gen)
    got = drawn.reshape(draws, -1).numpy()           # row-major
    flat, size = X.reshape(n, -1).numpy(), params[k].numel()
    design = np.zeros((n, size))
    cls = type(prior.build(dict(zip(prior.param_sites, params))))
    for j in range(size):
        unit = torch.zeros(size, dtype=torch.float64)
        unit[j] = 1.0
        basis = params[:k] + [unit.reshape(params[k].shape)] + params[k + 1:]
        design[:, j] = flat @ tensorly_dense(cls, basis).reshape(-1)
    w_np, b_np = w.numpy(), b.numpy()
    precision = design.T @ (w_np[:, None] * design) + np.diag(prior_precision.numpy())
    cov = np.linalg.inv(precision)
    mean = cov @ (design.T @ (b_np - w_np * c))
    assert np.all(np.abs(got.mean(0) - mean) < 5 * np.sqrt(np.diag(cov) / len(got)))
    np.testing.assert_allclose(np.cov(got.T), cov, rtol=0.1, atol=0.1 * np.diag(cov).max())
    np.testing.assert_allclose(linears[0].numpy(), design @ got[0], rtol=1e-10, atol=1e-10)
    linear = design @ mean
    intercepts = gibbs._draw_intercept(torch.as_tensor(linear).expand(draws, -1),
                                       w.expand(draws, n), b.expand(draws, n), gen).numpy()
    b_precision = w_np.sum() + 2.0 ** -2
    b_mean = (b_np - w_np * linear).sum() / b_precision
    assert abs(intercepts.mean() - b_mean) < 5 * np.sqrt(1 / b_precision / draws)
    assert abs(intercepts.var() / (1 / b_precision) - 1) < 0.1


def test_polya_gamma_draws_at_the_linear_predictor():
    """Binary labels: the precisions of the augmented likelihood are Polya-Gamma ``PG(1,
    eta)`` draws at each observation's current linear predictor (``eta`` from TensorLy's
    tensor and the intercept): their mean over 4,000 chains is ``tanh(eta / 2) / (2 eta)``
    within 5 standard errors (the variance ``(sinh eta - eta) / (4 eta^3 cosh^2(eta / 2))``,
    Polson, Scott & Windle 2013), and the pulls are ``y - 1/2``."""
    gen = torch.Generator().manual_seed(1)
    shape, n, chains = (4, 3), 30, 4_000
    prior = LowRankPrior("W", shape, 2, format="cp")
    X = torch.randn((n,) + shape, generator=gen, dtype=torch.float64)
    y = (torch.rand(n, generator=gen, dtype=torch.float64) < 0.5).double()
    params = [torch.randn(spec.shape, generator=gen, dtype=torch.float64)
              for spec in prior.specs]
    gibbs = RegressionGibbs(X.reshape(n, -1), y, prior, likelihood="bernoulli",
                            noise_site=None, intercept_site="b", intercept_scale=2.0)
    batch = [p.expand((chains,) + p.shape) for p in params]
    weights, pulls = gibbs._gaussian_terms({}, batch, torch.full((chains,), 0.3,
                                                                  dtype=torch.float64), gen)
    eta = X.reshape(n, -1).numpy() @ tensorly_dense(type(prior.build(
        dict(zip(prior.param_sites, params)))), params).reshape(-1) + 0.3
    mean = np.tanh(eta / 2) / (2 * eta)
    var = (np.sinh(eta) - eta) / (4 * eta ** 3 * np.cosh(eta / 2) ** 2)
    assert np.all(np.abs(weights.numpy().mean(0) - mean) < 5 * np.sqrt(var / chains))
    np.testing.assert_array_equal(pulls.numpy(), np.broadcast_to(y.numpy() - 0.5, (chains, n)))


#: NUTS's effective-rank posterior for the 6x5x4 rank-2 problem below (data seed 0, max rank
#: 4; 4 chains x 400 draws after 400 warm-up steps, ``max_tree_depth=8``, 196 s): rank 3 is
#: the mode, the third slice at a median 0.084 of the largest. SGHMC at 4 x 1000 draws with
#: the default redraws gave 2: 0.38, 3: 0.52, 4: 0.11 (third slice 0.080); without them 2:
#: 0.98, 3: 0.02 (0.009). docs/benchmarks.md, "Tensor regression: exact factor redraws".
SMALL_NUTS_RANKS = {2: 0.32, 3: 0.58, 4: 0.10}


def test_sghmc_with_regression_factor_redraws():
    """A Gaussian CP regression's SGHMC runs the exact redraws by default
    (``factor_redraws="auto"``: the factors, the intercept and the slice precisions), and its
    rank posterior is within 0.3 (total variation) of NUTS's, where chains without them
    (0.68 away at this seed) keep the surplus slice switched off; mini-batches run without
    them by default, Tucker regression with them, and a vector response refuses ``True``,
    naming the option."""
    data = synthetic_cp_regression((6, 5, 4), rank=2, n_train=300, n_test=200, seed=0)
    model = bt.TensorRegression(data.input_shape, format="cp", max_rank=4)
    settings = dict(method="sghmc", num_samples=300, num_warmup=300, num_chains=2, seed=0,
                    progress=False)
    redrawn = bt.fit(model, data.train, **settings)
    plain = bt.fit(model, data.train, factor_redraws=False, **settings)
    assert redrawn.info["factor_redraws"] is True and plain.info["factor_redraws"] is False
    # with the factors, the slice precisions are redrawn too (the blocked Gibbs sampler)
    precision = model.low_rank_prior.hyper_sites[0]
    assert set(redrawn.info["gibbs_sites"]) == {precision, "noise_precision"}
    assert plain.info["gibbs_sites"] == ["noise_precision"]

    def distance_to_nuts(post):
        ours = post.effective_rank().distribution(0)
        return 0.5 * sum(abs(ours.get(r, 0.0) - SMALL_NUTS_RANKS.get(r, 0.0))
                         for r in set(ours) | set(SMALL_NUTS_RANKS))

    assert distance_to_nuts(redrawn) < 0.3 < distance_to_nuts(plain)
    assert abs(redrawn.predict(data.X_test).coverage(data.y_test) - 0.9) < 0.06
    batched = bt.fit(model, data.train, method="sghmc", num_samples=20, num_warmup=20,
                     batch_size=100, seed=0, progress=False, map_steps=50)
    assert batched.info["factor_redraws"] is False
    tucker = bt.TensorRegression(data.input_shape, format="tucker", max_rank=3)
    assert bt.fit(tucker, data.train, method="sghmc", num_samples=20, num_warmup=20, seed=0,
                  progress=False, map_steps=50).info["factor_redraws"] is True
    with pytest.raises(ValueError, match="factor_redraws: expected True or False"):
        bt.fit(model, data.train, method="sghmc", factor_redraws="yes", progress=False)
    pairs = (data.train[0], np.stack([data.train[1], -data.train[1]], 1))
    vector = bt.TensorRegression(data.input_shape, max_rank=3, n_outputs=2)
    with pytest.raises(ValueError, match="factor_redraws: True needs"):
        bt.fit(vector, pairs, method="sghmc", factor_redraws=True, progress=False)


def test_vector_response():
    rng = np.random.default_rng(3)
    W = np.stack([shape_image("cross", 10), 2 * shape_image("square", 10)], -1)  # (10, 10, 2)
    X = rng.normal(size=(400, 10, 10))
    y = np.einsum("nij,ijk->nk", X, W) + np.array([1.0, -2.0]) + rng.normal(size=(400, 2))
    model = bt.TensorRegression((10, 10), format="cp", max_rank=6, n_outputs=2)
    post = bt.fit(model, (X, y), method="map", seed=0, progress=False)
    w_mean, _ = model.weight_posterior(post)
    assert w_mean.shape == (10, 10, 2)
    assert np.linalg.norm(w_mean - W) / np.linalg.norm(W) < 0.1
    np.testing.assert_allclose(model.intercepts(post.flat_samples())[0].numpy(), [1, -2],
                               atol=0.3)
    pred = post.predict(X[:5])
    assert pred.mean.shape == (10,)  # (n * k,), row-major in (n, k)
    truth = np.einsum("nij,ijk->nk", X[:5], W) + np.array([1.0, -2.0])
    assert np.abs(pred.mean.reshape(5, 2) - truth).max() < 1.5


# --- Bernoulli: digits ------------------------------------------------------------------------
def test_bernoulli_digits_zero_vs_one():
    data = load_digits_binary((0, 1), seed=0)
    assert data.X_train.shape[1:] == (8, 8) and set(np.unique(data.y_train)) == {0.0, 1.0}
    model = bt.TensorRegression((8, 8), format="cp", max_rank=4, likelihood="bernoulli")
    post = bt.fit(model, data.train, method="sghmc", num_samples=100,
                  num_warmup=100, num_chains=2, seed=0, progress=False)
    pred = post.predict(data.X_test)
    assert ((pred.mean >= 0) & (pred.mean <= 1)).all()
    accuracy = np.mean((pred.mean > 0.5) == (data.y_test == 1))
    assert accuracy >= 0.97, accuracy
    lo, hi = pred.interval(0.9, kind="mean")  # credible interval of the probability
    assert ((lo >= 0) & (lo <= hi) & (hi <= 1)).all()
    np.testing.assert_allclose(pred.sd, pred.sd_mean)  # no noise term for labels
    w_mean, w_sd = model.weight_posterior(post)
    assert w_mean.shape == (8, 8)


def test_digits_loader_explains_missing_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="scikit-learn"):
        load_digits_binary()


def test_shapes_have_the_stated_ranks():
    for name, rank in (("square", 1), ("cross", 2), ("T", 2)):
        assert np.linalg.matrix_rank(shape_image(name, 32)) == rank
    assert synthetic_image_regression("disc", size=32, n_train=5, n_test=5).rank > 3
    a = synthetic_image_regression("cross", n_train=20, n_test=5, seed=4)
    b = synthetic_image_regression("cross", n_train=20, n_test=5, seed=4)
    np.testing.assert_array_equal(a.y_train, b.y_train)


# --- persistence, plotting, CLI ---------------------------------------------------------------
def test_save_load_round_trip(tmp_path, cross, cross_fits):
    model, map_post, _ = cross_fits
    path = map_post.save(tmp_path / "post.pt")
    back = bt.Posterior.load(path)
    assert isinstance(back.model, bt.TensorRegression)
    np.testing.assert_allclose(back.predict(cross.X_test[:50]).mean,
                               map_post.predict(cross.X_test[:50]).mean, rtol=1e-5, atol=1e-5)


def test_plot_weights_writes_png(tmp_path, cross, cross_fits):
    model, _, sghmc_post = cross_fits
    mean, sd = model.weight_posterior(sghmc_post)
    fig = plot_weights(mean, sd, truth=cross.weight, path=tmp_path / "w.png")
    assert len(fig.axes) == 6  # three panels with colour bars
    assert (tmp_path / "w.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="mean"):
        plot_weights(np.zeros((2, 3, 4)))


def test_cli_regress(tmp_path):
    data = synthetic_image_regression("cross", size=12, n_train=200, n_test=100, seed=1)
    f = tmp_path / "data.npz"
    np.savez(f, X=data.X_train, y=data.y_train, X_test=data.X_test, y_test=data.y_test)
    out = tmp_path / "out"
    res = CliRunner().invoke(regress, [str(f), "--method", "sghmc", "--num-samples", "100",
                                       "--num-warmup", "100", "--max-rank", "4", "--out",
                                       str(out), "--quiet", "--seed", "3"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    saved = bt.Posterior.load(out / "posterior.pt")
    assert summary["found_rank_mode"] == saved.effective_rank().mode().tolist()
    assert 2 <= summary["found_rank_mode"][0] <= 4
    assert summary["metrics"]["test"]["coverage"] > 0.8
    with np.load(out / "predictions.npz") as z:
        assert z["mean"].shape == (200,) and z["test_upper"].shape == (100,)
        assert (z["test_lower"] < z["test_mean"]).all() and (z["test_mean"] < z["test_upper"]).all()
    assert np.load(out / "W_mean.npy").shape == (12, 12)
    for name in ("W_mean.png", "W_sd.png", "W.png", "posterior.pt"):
        assert (out / name).exists()
    bad = tmp_path / "bad.npz"
    np.savez(bad, X=data.X_train, y=data.y_train, X_test=data.X_test[:, :, :11])
    res = CliRunner().invoke(regress, [str(bad), "--out", str(tmp_path / "o2"), "--quiet"])
    assert res.exit_code == 2 and "bad.npz: X_test: expected shape (n, 12, 12)" in res.output
    res = CliRunner().invoke(regress, [str(f), "--likelihood", "bernoulli", "--quiet"])
    assert res.exit_code == 2 and "binary labels" in res.output
    noy = tmp_path / "noy.npz"
    np.savez(noy, X=data.X_train)
    res = CliRunner().invoke(regress, [str(noy), "--quiet"])
    assert res.exit_code == 2 and "missing ['y']" in res.output


def test_regress_cli_writes_a_report_with_the_weight_images(tmp_path):
    from click.testing import CliRunner

    from bayestensor.cli import main
    from bayestensor.data.regression import synthetic_image_regression

    data = synthetic_image_regression(shape="cross", size=12, n_train=150, n_test=50, seed=0)
    np.savez(tmp_path / "d.npz", X=data.X_train, y=data.y_train, X_test=data.X_test,
             y_test=data.y_test)
    res = CliRunner().invoke(main, ["regress", str(tmp_path / "d.npz"), "--method", "map",
                                    "--max-rank", "4", "--quiet", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["sections"]["weights"]["numbers"]["weight_shape"] == [12, 12]
    assert "weights.png" in " ".join(rep["sections"]["weights"]["figures"])


def test_regress_cli_checks_the_chains_as_its_report_does(tmp_path):
    """An SGHMC run's summary.json and console line carry the check of its report's
    diagnostics section: the same held-out inputs, the same R-hat."""
    from click.testing import CliRunner

    from bayestensor.cli import main
    from bayestensor.data.regression import synthetic_image_regression

    data = synthetic_image_regression(shape="cross", size=8, n_train=120, n_test=30, seed=0)
    np.savez(tmp_path / "d.npz", X=data.X_train, y=data.y_train, X_test=data.X_test,
             y_test=data.y_test)
    res = CliRunner().invoke(main, ["regress", str(tmp_path / "d.npz"), "--method", "sghmc",
                                    "--max-rank", "3", "--num-samples", "60", "--num-warmup",
                                    "60", "--quiet", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    check = json.loads((tmp_path / "o" / "summary.json").read_text())["convergence"]
    diag = json.loads((tmp_path / "o" / "report.json").read_text())["sections"]["diagnostics"]
    assert {r["var"] for r in diag["numbers"]["key_variables"]} == {"noise_precision",
                                                                    "tensor_norm", "entry"}
    assert check["max_rhat"] == pytest.approx(diag["numbers"]["max_rhat"], rel=1e-9)
    assert f"max R-hat {check['max_rhat']:.3f}" in res.output


# --- ranks a shape cannot use, degenerate responses (issue 14) --------------------------------

def _small_xy(n=30, constant_y=None):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4, 3))
    y = X[:, 0, 0] - X[:, 1, 2] + 0.1 * rng.normal(size=n)
    return X, (np.full(n, constant_y) if constant_y is not None else y)


def test_max_rank_above_the_input_shape_is_capped_with_a_warning():
    with pytest.warns(UserWarning, match=r"max_rank: 5 .*cp shape \(4, 3\).*capped at \(3,\)"):
        model = bt.TensorRegression((4, 3), "cp", max_rank=5)
    assert model.weight_prior.ranks == (3,) and model.config()["max_rank"] == [3]
    post = bt.fit(model, _small_xy(), method="map", num_steps=50, seed=0, progress=False)
    assert np.all(np.isfinite(post.predict(_small_xy()[0]).mean))


def test_a_model_above_max_params_is_refused():
    with pytest.raises(ValueError, match="max_rank: 40 gives .*above max_params=1,000"):
        bt.TensorRegression((40, 40), "tucker", max_rank=40, max_params=1000)


def test_constant_response_fits_to_the_constant():
    X, y = _small_xy(constant_y=-2.5)
    model = bt.TensorRegression((4, 3), "cp", max_rank=2)
    post = bt.fit(model, (X, y), method="map", num_steps=500, seed=0, progress=False)
    np.testing.assert_allclose(post.predict(X).mean, -2.5, rtol=0, atol=1e-3)

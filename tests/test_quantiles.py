"""Quantiles of normal mixtures against a brute-force oracle: brentq on SciPy's mixture CDF."""

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import norm

from bayestensor.results.posterior import Prediction
from bayestensor.results.quantiles import normal_mixture_cdf, normal_mixture_quantiles

PROBS = [1e-9, 0.025, 0.05, 0.25, 0.5, 0.75, 0.95, 0.975, 1 - 1e-7]


def mixture_cdf(x, mu, sd):
    """SciPy's CDF of ``mean_s Normal(mu[s], sd[s])``; a zero sd is a point mass."""
    with np.errstate(divide="ignore", invalid="ignore"):
        parts = np.where(sd > 0, norm.cdf((x - mu) / np.where(sd > 0, sd, 1.0)), x >= mu)
    return parts.mean()


def oracle(mu, sd, probs):
    """``(len(probs), n)`` quantiles by brentq, one column and level at a time."""
    mu = np.asarray(mu, dtype=np.float64)
    sd = np.broadcast_to(np.asarray(sd, dtype=np.float64).reshape(len(mu), -1), mu.shape)
    out = np.empty((len(probs), mu.shape[1]))
    for j in range(mu.shape[1]):
        m, s = mu[:, j], sd[:, j]
        a, b = (m - 12 * s).min() - 1, (m + 12 * s).max() + 1
        for k, p in enumerate(probs):
            out[k, j] = brentq(lambda x: mixture_cdf(x, m, s) - p, a, b, xtol=1e-15, rtol=1e-15)
    return out


def ours(mu, sd, probs, **kw):
    return torch.stack(normal_mixture_quantiles(torch.as_tensor(mu), torch.as_tensor(sd), probs, **kw)).numpy()


def assert_close_in_sd(got, want, sd_unit):
    err = np.abs(got - want) / sd_unit
    assert err.max() < 1e-8, f"max error {err.max():.2e} sd"


def test_unimodal_with_shared_sd_matches_brentq():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(60, 1)) + 0.4 * rng.normal(size=(60, 30))
    sd = rng.uniform(0.2, 0.5, size=60)
    assert_close_in_sd(ours(mu, sd, PROBS), oracle(mu, sd, PROBS), sd.min())


def test_bimodal_with_per_entry_sd_matches_brentq():
    rng = np.random.default_rng(1)
    centres = np.where(np.arange(40) < 25, -3.0, 4.0)[:, None]  # unequal modes, a deep valley
    mu = centres + 0.1 * rng.normal(size=(40, 20))
    sd = rng.uniform(0.1, 0.6, size=(40, 20))
    got, want = ours(mu, sd, PROBS), oracle(mu, sd, PROBS)
    assert_close_in_sd(got, want, sd.min())
    # 25 of 40 draws near -3: the median lies in the left mode, not near the mixture mean -0.4
    assert np.all(got[4] < -2.5)


def test_one_draw_is_the_normal_quantile():
    mu, sd = np.array([[0.3, -2.0, 7.5]]), np.array([[0.1, 2.0, 1e-3]])
    want = mu + sd * norm.ppf(np.array(PROBS))[:, None]
    np.testing.assert_allclose(ours(mu, sd, PROBS), want, rtol=1e-15, atol=0)


def test_point_masses_give_the_inverse_empirical_cdf():
    rng = np.random.default_rng(2)
    mu = rng.normal(size=(7, 10))
    probs = [0.1, 0.5, 0.9]
    want = np.quantile(mu, probs, axis=0, method="inverted_cdf")
    assert_close_in_sd(ours(mu, np.zeros(7), probs), want, 1.0)


def test_some_zero_sd_components_match_brentq():
    rng = np.random.default_rng(3)
    mu = rng.normal(size=(9, 12))
    sd = np.where(np.arange(9)[:, None] % 3 == 0, 0.0, rng.uniform(0.2, 0.4, size=(9, 12)))
    probs = [0.05, 0.3, 0.5, 0.95]
    assert_close_in_sd(ours(mu, sd, probs), oracle(mu, sd, probs), 0.2)


def test_chunks_do_not_change_the_result():
    rng = np.random.default_rng(4)
    mu, sd = rng.normal(size=(30, 50)), rng.uniform(0.5, 1.0, size=(30, 50))
    np.testing.assert_allclose(ours(mu, sd, [0.1, 0.9], chunk_elements=70),
                               ours(mu, sd, [0.1, 0.9]), rtol=0, atol=1e-12)


def test_prediction_interval_uses_the_mixture():
    rng = np.random.default_rng(5)
    draws = torch.as_tensor(rng.normal(size=(50, 8)))
    noise = torch.as_tensor(rng.uniform(0.3, 0.6, size=50))
    pred = Prediction(mean=draws.mean(0).numpy(), sd=np.ones(8), sd_mean=np.ones(8), draws=draws,
                      noise_sd=noise)
    lo, hi = pred.interval(0.9)
    want = oracle(draws.numpy(), noise.numpy(), [0.05, 0.95])
    assert_close_in_sd(np.stack([lo, hi]), want, 0.3)


def test_cdf_matches_scipy_and_inverts_the_quantiles():
    rng = np.random.default_rng(6)
    mu = rng.normal(size=(40, 25))
    sd = rng.uniform(0.1, 0.6, size=(40, 25))
    x = rng.normal(size=25)
    want = [mixture_cdf(x[j], mu[:, j], sd[:, j]) for j in range(25)]
    got = normal_mixture_cdf(mu, sd, x, chunk_elements=90).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-14)
    q = ours(mu, sd, [0.1, 0.9])
    np.testing.assert_allclose(normal_mixture_cdf(mu, sd, q[1]).numpy(), 0.9, atol=1e-9)


def test_coverage_from_pit_equals_coverage_from_the_interval():
    rng = np.random.default_rng(7)
    draws = torch.as_tensor(rng.normal(size=(30, 500)))
    noise = torch.as_tensor(rng.uniform(0.3, 0.6, size=30))
    pred = Prediction(mean=draws.mean(0).numpy(), sd=np.ones(500), sd_mean=np.ones(500),
                      draws=draws, noise_sd=noise)
    truth = rng.normal(scale=1.3, size=500)
    levels = [0.5, 0.8, 0.9, 0.95]
    want = []
    for lv in levels:
        lo, hi = pred.interval(lv)
        want.append(np.mean((truth >= lo) & (truth <= hi)))
    assert pred.coverage(truth, levels) == pytest.approx(want, abs=0)
    assert pred.coverage(truth, 0.9) == want[2]
    with pytest.raises(ValueError, match="level"):
        pred.coverage(truth, [0.5, 1.0])


def test_cdf_bad_x_names_the_argument():
    with pytest.raises(ValueError, match="x"):
        normal_mixture_cdf(np.zeros((3, 2)), np.ones(3), np.zeros(3))


@pytest.mark.parametrize("mu, sd, probs, name", [
    (np.zeros(5), np.ones(5), [0.5], "mu"),
    (np.zeros((5, 2)), np.ones(4), [0.5], "sd"),
    (np.zeros((5, 2)), -np.ones(5), [0.5], "sd"),
    (np.zeros((5, 2)), np.ones(5), [0.0, 0.5], "probs"),
    (np.zeros((5, 2)), np.ones(5), "0.5", "probs"),
])
def test_bad_input_names_the_argument(mu, sd, probs, name):
    with pytest.raises(ValueError, match=name):
        normal_mixture_quantiles(torch.as_tensor(mu), torch.as_tensor(sd), probs)


@pytest.mark.parametrize("bad, match", [
    (np.zeros(3), r"truth: expected shape \(500,\), one value per predicted entry, got \(3,\)"),
    (np.zeros((500, 1)), r"truth: expected shape \(500,\)"),
    (np.full(500, np.nan), "truth: expected finite values, got 500 NaN or infinite"),
    ("abc", "truth: expected 500 real numbers"),
])
def test_coverage_refuses_truth_that_does_not_match_the_predictions(bad, match):
    draws = torch.zeros(4, 500, dtype=torch.float64)
    pred = Prediction(mean=np.zeros(500), sd=np.ones(500), sd_mean=np.zeros(500),
                      draws=draws, noise_sd=torch.ones(4, dtype=torch.float64))
    with pytest.raises(ValueError, match=match):
        pred.coverage(bad, 0.9)
    with pytest.raises(ValueError, match=match.replace("truth", "values")):
        pred.pit(bad)
    with pytest.raises(ValueError, match="kind: expected one of"):
        pred.coverage(np.zeros(500), 0.9, kind="noisy")

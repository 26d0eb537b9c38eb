"""Vectorized rank-normalized R-hat and bulk ESS against ArviZ, quantity by quantity."""

import arviz as az
import numpy as np
import pytest

from bayestensor.results.rank_normalized import rhat_and_bulk_ess


def autoregressive(rng, rho, chains, draws, quantities):
    noise = rng.standard_normal((chains, draws, quantities))
    x = np.empty_like(noise)
    x[:, 0] = noise[:, 0]
    for t in range(1, draws):
        x[:, t] = rho * x[:, t - 1] + noise[:, t]
    return x


def arviz_values(x):
    rhat = [float(az.rhat(x[:, :, i])) for i in range(x.shape[2])]
    ess = [float(az.ess(x[:, :, i], method="bulk")) for i in range(x.shape[2])]
    return np.array(rhat), np.array(ess)


@pytest.mark.parametrize("rho,chains,draws", [
    (0.0, 4, 400), (0.9, 4, 301), (-0.5, 2, 100), (0.99, 3, 40), (0.3, 2, 5), (0.5, 1, 40),
])
def test_equal_to_arviz(rho, chains, draws):
    rng = np.random.default_rng(7)
    x = autoregressive(rng, rho, chains, draws, 12)
    x[0] += 0.5 * (rho > 0.95)  # one chain apart
    x[:, :, 0] = np.round(x[:, :, 0], 1)  # ties: average ranks
    if chains > 1:
        x[:, :, 1] = 2.5  # constant: R-hat NaN, ESS the number of draws
    x[:, :, 2] = np.nan  # a position a model discards (obs_mask): R-hat and ESS NaN
    x[0, -1, 3] = np.nan  # one NaN draw makes the quantity's values NaN too
    rhat, ess = arviz_values(x)
    ours_rhat, ours_ess = rhat_and_bulk_ess(x)
    np.testing.assert_allclose(ours_rhat, rhat, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(ours_ess, ess, rtol=1e-12, equal_nan=True)


def test_trailing_dimensions_are_quantities():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 50, 3, 2))
    rhat, ess = rhat_and_bulk_ess(x)
    assert rhat.shape == ess.shape == (6,)
    np.testing.assert_allclose(ess, rhat_and_bulk_ess(x.reshape(4, 50, 6))[1])
    assert all(np.isnan(v).all() for v in rhat_and_bulk_ess(x[:, :3]))

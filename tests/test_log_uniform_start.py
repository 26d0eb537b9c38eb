"""SGHMC's start under the log-uniform and half-Cauchy priors: the non-centred
parametrization's mode.

Its objective is the joint log density plus the standardizing log Jacobian, checked against
the non-centred density written out in NumPy; a regression's SGHMC starts there and keeps a
slice the joint mode switches off; completion, SVGD and the gamma prior keep the joint mode.
"""

from unittest import mock

import numpy as np
import pytest
import torch

import bayestensor as bt
from bayestensor.data.regression import synthetic_cp_regression
from bayestensor.priors import LowRankPrior


def _normal_log_density(z):
    return float((-0.5 * z ** 2 - 0.5 * np.log(2 * np.pi)).sum())


@pytest.mark.parametrize("fmt", ["cp", "tucker"])
def test_noncentred_objective_is_the_standardized_density(fmt):
    """log p(entries | scales) + log J = log p(standardized entries): N(0, 1) entries, each
    divided by its prior sd (CP: its column's scale; Tucker: the core entry by the product of
    its modes' scales), the hyperprior unchanged."""
    prior = LowRankPrior("X", (6, 7), 3 if fmt == "cp" else (2, 3), fmt, "log_uniform")
    gen = torch.Generator().manual_seed(0)
    scales = [torch.rand(1, r, generator=gen, dtype=torch.float64) + 0.2 for r in prior.ranks]
    values = {site: s for site, s in zip(prior.hyper_sites, scales)}
    for site, spec in zip(prior.param_sites, prior.specs):
        values[site] = torch.randn((1,) + tuple(spec.shape), generator=gen, dtype=torch.float64)
    total = float(prior.log_prob(values) + prior.standardizing_log_jacobian(values))
    s = [sc[0].numpy() for sc in scales]
    hyper = float(sum(prior.prior.log_density(sc) for sc in scales))
    if fmt == "cp":
        z = [values[f"X.factor{n}"][0].numpy() / s[0] for n in range(2)]
    else:
        z = [values["X.factor0"][0].numpy() / s[0], values["X.factor1"][0].numpy() / s[1],
             values["X.core"][0].numpy() / (s[0][:, None] * s[1][None, :])]
    assert total == pytest.approx(hyper + sum(_normal_log_density(x) for x in z), rel=1e-10)


def _weak_slice_regression(seed: int):
    """cp3-like data on which the joint mode switches off one of three slices (the rank
    study's 10^3 rank-3 problem: benchmarks/log_uniform_start.py)."""
    return synthetic_cp_regression((10, 10, 10), rank=3, n_train=600, n_test=10, seed=seed)


def _first_draws(model, data, noncentred: bool):
    with mock.patch.object(bt.TensorRegression, "sghmc_start_noncentred",
                           property(lambda self: noncentred)):
        return bt.fit(model, data.train, method="sghmc", num_samples=20, num_warmup=10,
                      num_chains=2, max_samples=None, seed=1, progress=False)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("prior, seed", [("log_uniform", 1), ("half_cauchy", 2)])
def test_regression_sghmc_starts_noncentred_and_keeps_the_weak_slice(prior, seed):
    """Joint start: rank 2 in every early draw (the joint mode switched the third slice off);
    the default, non-centred start: rank 3 or more, the run records it."""
    data = _weak_slice_regression(seed)
    model = bt.TensorRegression(data.input_shape, prior=prior, max_rank=6)
    assert model.sghmc_start_noncentred
    joint = _first_draws(model, data, noncentred=False)
    default = _first_draws(model, data, noncentred=True)
    assert "start_objective" not in joint.info
    assert default.info["start_objective"] == "non-centred"
    assert set(joint.effective_rank().distribution()) == {2}
    assert min(default.effective_rank().distribution()) >= 3


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_joint_mode_stays_the_start_elsewhere():
    """The gamma prior's regression, binary labels, a log-uniform completion and a log-uniform
    regression's SVGD start at the joint mode."""
    data = synthetic_cp_regression((5, 6), rank=2, n_train=80, n_test=5, seed=0)
    short = dict(num_samples=5, num_warmup=5, num_chains=2, max_samples=None, seed=0,
                 progress=False)
    gamma = bt.fit(bt.TensorRegression(data.input_shape, max_rank=3), data.train,
                   method="sghmc", **short)
    assert not bt.TensorRegression(data.input_shape).sghmc_start_noncentred
    for prior in ("log_uniform", "half_cauchy"):  # binary labels: the joint mode
        assert not bt.TensorRegression(data.input_shape, prior=prior,
                                       likelihood="bernoulli").sghmc_start_noncentred
    assert "start_objective" not in gamma.info
    svgd = bt.fit(bt.TensorRegression(data.input_shape, prior="log_uniform", max_rank=3),
                  data.train, method="svgd", num_steps=5, num_samples=4, seed=0,
                  progress=False)
    assert "start_objective" not in svgd.info
    tensor = bt.data.synthetic_tensor((8, 7, 6), rank=2, observed=0.5, seed=0)
    completion = bt.TensorCompletion(tensor.shape, "tt", max_rank=3, prior="log_uniform")
    assert not completion.sghmc_start_noncentred
    post = bt.fit(completion, tensor.train, method="sghmc", **short)
    assert "start_objective" not in post.info

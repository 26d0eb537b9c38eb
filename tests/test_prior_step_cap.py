"""SGHMC's step cap on entries whose Gaussian prior alone makes a step unstable."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from test_sghmc_adaptation import variance_bias

import bayestensor as bt
from bayestensor.infer import SGHMC, LogDensity
from bayestensor.infer.prior_step_cap import PRIOR_STEP_MAX, PriorStepCap

DIM, PRECISION, LR, FRICTION = 400, 1e4, 0.01, 0.1


def stiff_normal():
    with pyro.plate("d", DIM):
        pyro.sample("x", dist.Normal(0.0, PRECISION ** -0.5))


def stiff_prior(values):
    return {"x": torch.full_like(values["x"], PRECISION)}


def run_chains(prior_precisions, steps=3000, keep=2000):
    """Unpreconditioned SGHMC (``lr * k = 100``, 25 times the stable limit) from the prior's
    sd, on ``DIM`` independent entries; the last ``keep`` positions."""
    target = LogDensity(stiff_normal, (), seed=0)
    sampler = SGHMC(target, lr=LR, friction=FRICTION, precondition=False,
                    prior_precisions=prior_precisions)
    state = sampler.init_state(torch.full((2, DIM), PRECISION ** -0.5))
    draws = []
    for t in range(steps):
        state = sampler.step(state, t)
        if t >= steps - keep:
            draws.append(state.theta)
    return torch.stack(draws), sampler


def test_without_the_cap_the_stiff_prior_overflows():
    draws, _ = run_chains(None, steps=40, keep=1)
    assert not torch.isfinite(draws).all() or draws.abs().max() > 1e10


def test_capped_chains_sample_at_the_caps_step():
    """Capped at ``h = PRIOR_STEP_MAX`` the update is the linear one whose stationary variance
    the discrete Lyapunov equation gives (the oracle), ``1 + variance_bias(1)`` times the
    prior's; 2 chains x 400 entries x 2,000 correlated draws pin it to about 2%."""
    draws, sampler = run_chains(stiff_prior)
    assert torch.isfinite(draws).all()
    expected = (1 + variance_bias(PRIOR_STEP_MAX, FRICTION)) / PRECISION
    assert float(draws.double().var()) == pytest.approx(expected, rel=0.05)
    assert sampler.prior_cap.caps == 3000 * 2 * DIM  # every entry, every step


def test_the_cap_binds_only_where_the_prior_alone_is_unstable():
    target = LogDensity(stiff_normal, (), seed=0)
    cap = PriorStepCap(target, stiff_prior)
    theta = torch.zeros(3, DIM)
    precond = torch.tensor([1e-6, 1e-4, 1e-2]).repeat_interleave(DIM // 3 + 1)[:DIM]
    out = cap.apply(precond, LR, theta)
    limit = PRIOR_STEP_MAX / (LR * PRECISION)  # 0.01
    assert torch.equal(out[:, precond <= limit], precond[precond <= limit].expand(3, -1))
    assert torch.allclose(out[:, precond > limit], torch.tensor(limit))


def test_prior_precisions_that_are_not_a_function_are_refused():
    with pytest.raises(ValueError, match="prior_precisions: expected a function"):
        SGHMC(LogDensity(stiff_normal, (), seed=0), prior_precisions={"x": 1.0})


def test_a_models_prior_precisions_are_its_entries_inverse_variances():
    """Tucker under the gamma prior: a core entry's precision is the product of its three
    slice precisions, a factor entry's its own slice's."""
    model = bt.TensorCompletion((4, 5, 6), "tucker", max_rank=3)
    prior = model.low_rank_prior
    gen = torch.Generator().manual_seed(0)
    precisions = [torch.rand(2, 3, generator=gen) * 10 for _ in range(3)]
    out = model.prior_precisions(dict(zip(prior.hyper_sites, precisions)))
    assert prior.hyper_sites == ["X.precision0", "X.precision1", "X.precision2"]
    expected = torch.einsum("ci,cj,ck->cijk", *precisions)
    assert torch.allclose(out["X.core"], expected, rtol=1e-5)
    factor0 = out["X.factor0"]
    assert factor0.shape == (2, 4, 3)
    assert torch.allclose(factor0, precisions[0][:, None, :].expand(2, 4, 3), rtol=1e-5)


def test_a_fixed_core_variance_gives_every_chain_its_precision():
    """A Tucker core under a fixed ``core_variance`` has no rank axes: its precision is
    ``1 / core_variance`` in every chain (it once came back without the chains' dim, and
    SGHMC failed at its first step), and the capped run draws."""
    data = bt.data.synthetic_tensor((12, 11, 10), rank=2, snr_db=20, observed=0.3, seed=0)
    model = bt.TensorCompletion(data.shape, "tucker", max_rank=3,
                                prior_params={"core_variance": 0.5})
    precisions = [torch.ones(2, 3)] * 3
    out = model.prior_precisions(dict(zip(model.low_rank_prior.hyper_sites, precisions)))
    assert out["X.core"].shape == (2, 3, 3, 3)
    assert torch.allclose(out["X.core"], torch.tensor(2.0))
    post = bt.fit(model, data.train, method="sghmc", num_samples=20, num_warmup=20,
                  max_samples=None, seed=0, progress=False)
    assert post.num_draws == 20 and post.info["prior_step_caps"] >= 0


@pytest.mark.slow
def test_a_tucker_regression_from_its_starting_values_keeps_drawing():
    """The run that overflowed at step 2,034 before the cap (``prior_step_cap``'s docstring):
    it now keeps all its draws, and the cap bound on some entries."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from regression_vs_tensorly import PROBLEMS

    data = PROBLEMS["cp3"]["make"](0)
    model = bt.TensorRegression(data.input_shape, format="tucker",
                                max_rank=PROBLEMS["cp3"]["over"])
    post = bt.fit(model, data.train, method="sghmc", init_from="init", seed=0,
                  progress=False)
    assert post.num_draws >= 1000 and post.info["prior_step_caps"] > 0

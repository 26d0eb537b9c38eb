"""Exact redraws inside SGHMC (Gamma precisions, half-Cauchy and log-uniform scales): shapes and
counts from the model's structure, rates from the gradient, draws from the analytic conditional;
fit's gibbs."""

import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy.integrate import trapezoid

import bayestensor as bt
from bayestensor.infer import LogDensity
from bayestensor.infer.gibbs import GibbsRedraws
from bayestensor.infer.sghmc import SGHMC
from bayestensor.priors import LowRankPrior
from bayestensor.priors.conditionals import (GammaConditional, HalfCauchyConditional,
                                             LogUniformConditional, truncated_gamma)
from bayestensor.priors.hyperpriors import LogUniform

A, B = 2.0, 0.5


def precision_model(y):
    tau = pyro.sample("tau", dist.Gamma(A, B))
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("n", y.shape[0]):
        pyro.sample("y", dist.Normal(mu, tau.rsqrt()), obs=y)


def test_redrawn_precision_follows_its_analytic_conditional():
    """With the mean held at 0 by its chains (lr tiny), tau's draws are its full conditional
    Gamma(A + n/2, B + sum y^2 / 2): mean and sd within 3% and 5% over 4 x 1000 redraws
    (standard errors 0.16% and 1.1%)."""
    y = torch.randn(200, generator=torch.Generator().manual_seed(0)) * 0.7
    target = LogDensity(precision_model, (y,), seed=0)
    sampler = SGHMC(target, lr=1e-12, num_warmup=0, precondition=False,
                    gibbs={"tau": A + y.numel() / 2})
    state = sampler.init_state(target.unconstrain({"tau": torch.ones(4), "mu": torch.zeros(4)}))
    draws = []
    for t in range(4000):
        state = sampler.step(state, t)
        if (t + 1) % 4 == 0:
            draws.append(target.constrain(state.theta)["tau"])
    tau = torch.stack(draws).double().numpy().ravel()
    shape, rate = A + 100, B + float((y.double() ** 2).sum()) / 2
    assert tau.mean() == pytest.approx(shape / rate, rel=0.03)
    assert tau.std() == pytest.approx(np.sqrt(shape) / rate, rel=0.05)


def test_offset_and_precision_redraws_sample_their_joint_posterior():
    """A mean ``mu ~ Normal(0, 1)`` and precision redrawn in turn (SGHMC's own steps held still,
    lr tiny): the redraws are a two-block Gibbs sampler, whose draws must follow the joint
    posterior of (mu, tau). Its moments by quadrature on a grid (an independent oracle):
    means within 4 standard errors, sds within 5% over 4 x 1000 sweeps. The data's mean is 2,
    so the posterior of mu sits far from its prior and from the chains' start at 0."""
    from bayestensor.priors.conditionals import OffsetConditional

    y = torch.randn(50, generator=torch.Generator().manual_seed(1)) * 0.7 + 2.0
    n = y.numel()
    target = LogDensity(precision_model, (y,), seed=0)
    sampler = SGHMC(target, lr=1e-12, num_warmup=0, precondition=False,
                    gibbs={"tau": A + n / 2, "mu": OffsetConditional(n, 1.0, "tau")})
    state = sampler.init_state(target.unconstrain({"tau": torch.ones(4), "mu": torch.zeros(4)}))
    draws = {"mu": [], "tau": []}
    for t in range(4000):
        state = sampler.step(state, t)
        if (t + 1) % 4 == 0 and t >= 400:
            values = target.constrain(state.theta)
            for k in draws:
                draws[k].append(values[k].reshape(-1))
    got = {k: torch.cat(v).double().numpy() for k, v in draws.items()}
    mu_grid, tau_grid = np.linspace(1.0, 3.0, 801), np.linspace(0.5, 6.0, 801)
    yy = y.double().numpy()
    sq = ((yy[None, :] - mu_grid[:, None]) ** 2).sum(1)                       # (M,)
    log_post = ((A - 1 + n / 2) * np.log(tau_grid)[None, :]
                - tau_grid[None, :] * (B + sq[:, None] / 2) - mu_grid[:, None] ** 2 / 2)
    post = np.exp(log_post - log_post.max())
    post /= post.sum()
    for name, axis_values, axis in (("mu", mu_grid, 1), ("tau", tau_grid, 0)):
        marginal = post.sum(axis)
        mean = (marginal * axis_values).sum()
        sd = np.sqrt((marginal * (axis_values - mean) ** 2).sum())
        assert abs(got[name].mean() - mean) < 4 * sd / np.sqrt(len(got[name]) / 2), name
        assert got[name].std() == pytest.approx(sd, rel=0.05), name


def test_completion_rates_read_off_the_gradient_are_the_analytic_ones():
    """For CP completion under the gamma prior, (shape - g) / tau equals b + S / 2 with S the
    residual sum of squares (noise) or the slice's sum of squares over every factor."""
    data = bt.data.synthetic_tensor((6, 7, 8), rank=2, observed=0.5, seed=1)
    model = bt.TensorCompletion(data.shape, "cp", max_rank=3)
    model.set_data(data.train)
    a = model.tensor_prior.prior.params["a"]
    conds = {**model.tensor_prior.conditionals(), **model.gibbs_sites()}
    offset = conds.pop("offset")
    assert (offset.count, offset.scale, offset.noise_site) == (
        data.train.values.numel(), 10.0, "noise_precision")
    shapes = {name: getattr(c, "shape", c) for name, c in conds.items()}
    assert shapes == {"X.precision0": a + (6 + 7 + 8) / 2,
                      "noise_precision": model.noise_a + data.train.values.numel() / 2}
    target = LogDensity(model.pyro_model, model.model_args(), init_values=model.init_values(),
                        fast_log_joint=model.fast_log_joint, seed=0)
    theta = target.init_theta(2, jitter=0.3)
    _, grad = target.value_and_grad(theta)
    values = target.constrain(theta)
    factors = [values[f"X.factor{k}"].double() for k in range(3)]
    recon = np.einsum("cir,cjr,ckr->cijk", *[f.numpy() for f in factors])
    idx = model.model_args()[0].numpy()
    y = model.model_args()[1].double().numpy()
    offset = values["offset"].double().numpy()[:, None]
    rss = ((recon[:, idx[:, 0], idx[:, 1], idx[:, 2]] + offset - y) ** 2).sum(-1)
    site = {s.name: s for s in target.sites}
    for name, want_rate in (
            ("noise_precision", model.noise_b + rss / 2),
            ("X.precision0", model.tensor_prior.prior.params["b"]
             + sum((f ** 2).sum(1) for f in factors).numpy() / 2)):
        sl = slice(site[name].offset, site[name].offset + site[name].size)
        tau = values[name].double().numpy()
        rate = (shapes[name] - grad[:, sl].double().numpy().reshape(tau.shape)) / tau
        np.testing.assert_allclose(rate, want_rate, rtol=2e-3)


def test_tt_and_tucker_shapes_count_every_entry_a_slice_precision_scales():
    """TT (4, 5, 6) ranks (2, 3): precision0 scales 4 entries of core 0 and 5 x 3 of core 1 per
    slice; precision1 5 x 2 of core 1 and 6 of core 2. Tucker (4, 5) ranks (2, 3): mode 0's
    slice holds 4 factor entries and 3 core entries."""
    a = 1e-3
    tt = LowRankPrior("X", (4, 5, 6), (2, 3), "tt", "gamma", {"a": a})
    assert tt.conditionals() == {"X.precision0": GammaConditional(a + (4 + 15) / 2),
                                 "X.precision1": GammaConditional(a + (10 + 6) / 2, stage=1)}
    tucker = LowRankPrior("X", (4, 5), (2, 3), "tucker", "gamma", {"a": a})
    # Tucker's and TT's redrawn from the first burn-in step; Tucker's after it from the
    # starting values
    assert tucker.conditionals() == {
        "X.precision0": GammaConditional(a + (4 + 3) / 2),
        "X.precision1": GammaConditional(a + (5 + 2) / 2, stage=1)}
    assert tucker.conditionals(start_at_mode=False) == {
        "X.precision0": GammaConditional(a + (4 + 3) / 2, during_warmup=False),
        "X.precision1": GammaConditional(a + (5 + 2) / 2, during_warmup=False, stage=1)}
    assert all(c.during_warmup for c in tt.conditionals(start_at_mode=False).values())
    assert all(c.during_warmup for c in tt.conditionals().values())
    tucker_hc = LowRankPrior("X", (4, 5), (2, 3), "tucker", "half_cauchy", {"scale": 0.5})
    assert tucker_hc.conditionals() == {
        "X.scale0": HalfCauchyConditional(4 + 3, 0.5, during_warmup=True),
        "X.scale1": HalfCauchyConditional(5 + 2, 0.5, stage=1, during_warmup=True)}
    assert not any(c.during_warmup
                   for c in tucker_hc.conditionals(start_at_mode=False).values())
    # TT's half-Cauchy scales from the first burn-in step too; CP's (a regression's) after it
    tt_hc = LowRankPrior("X", (4, 5, 6), (2, 3), "tt", "half_cauchy")
    assert all(c.during_warmup for c in tt_hc.conditionals().values())
    cp_hc = LowRankPrior("X", (4, 5, 6), 2, "cp", "half_cauchy")
    assert not any(c.during_warmup for c in cp_hc.conditionals().values())
    # log-uniform scales: a truncated Gamma on the precision, redrawn when half-Cauchy's are
    tt_lu = LowRankPrior("X", (4, 5, 6), (2, 3), "tt", "log_uniform", {"low": 1e-3, "high": 10})
    assert tt_lu.conditionals() == {
        "X.scale0": LogUniformConditional(4 + 15, 1e-3, 10.0, during_warmup=True),
        "X.scale1": LogUniformConditional(10 + 6, 1e-3, 10.0, stage=1, during_warmup=True)}
    cp_lu = LowRankPrior("X", (4, 5, 6), 2, "cp", "log_uniform")
    assert cp_lu.conditionals() == {"X.scale0": LogUniformConditional(15, 1e-4, 1e3)}


def test_gibbs_sites_are_checked_before_sampling():
    y = torch.randn(20)
    target = LogDensity(precision_model, (y,), seed=0)
    for shapes, match in (({"sigma": 3.0}, "'sigma' is not a site"),
                          ({"mu": 3.0}, "not sampled as the log"),
                          ({"tau": -1.0}, "positive number"),
                          ({"tau": GammaConditional(3.0, stage=-1)}, "non-negative integer"),
                          ({"tau": HalfCauchyConditional(20, 1.0, stage=1.5)},
                           "non-negative integer"),
                          ({"tau": LogUniformConditional(20, 2.0, 1.0)}, "below its high"),
                          ({"tau": LogUniformConditional(20, 0.0, 1.0)}, "low of 'tau'")):
        with pytest.raises(ValueError, match=match):
            GibbsRedraws(target, shapes)


def test_fit_redraws_the_built_in_models_precisions_on_full_batches_only():
    """The noise precision and the offset always; the slice precisions (scales) where entries
    have a product of them (TT, Tucker), not for CP; nothing on mini-batches or with
    gibbs=False."""
    data = bt.data.synthetic_tensor((8, 8, 8), rank=2, observed=0.4, seed=0)
    kw = dict(method="sghmc", num_samples=8, num_warmup=8, map_steps=20, seed=0,
              progress=False)
    cp = bt.TensorCompletion(data.shape, "cp", max_rank=3)
    assert bt.fit(cp, data.train, **kw).info["gibbs_sites"] == ["noise_precision", "offset"]
    assert bt.fit(cp, data.train, gibbs=False, **kw).info["gibbs_sites"] == []
    assert bt.fit(cp, data.train, batch_size=50, **kw).info["gibbs_sites"] == []
    tt = bt.TensorCompletion(data.shape, "tt", max_rank=3)
    assert bt.fit(tt, data.train, **kw).info["gibbs_sites"] == [
        "X.precision0", "X.precision1", "noise_precision", "offset"]
    tucker = bt.TensorCompletion(data.shape, "tucker", max_rank=3, prior="half_cauchy")
    assert bt.fit(tucker, data.train, **kw).info["gibbs_sites"] == [
        "X.scale0", "X.scale1", "X.scale2", "noise_precision", "offset"]


def test_interrupted_run_with_redraws_resumes_to_the_uninterrupted_one(tmp_path, interrupted_at):
    """The redraws take their randomness from the sampler's generator, which the checkpoint
    keeps: a TT run interrupted between redraws resumes to the same draws, bit for bit."""
    from bayestensor.infer import RunInterrupted

    data = bt.data.synthetic_tensor((8, 8, 8), rank=2, observed=0.4, seed=0)
    model = bt.TensorCompletion(data.shape, "tt", max_rank=3)
    kw = dict(method="sghmc", num_samples=20, num_warmup=10, num_chains=2, map_steps=20,
              seed=3, progress=False)
    full = bt.fit(model, data.train, **kw)
    ckpt = tmp_path / "run.ckpt"
    with interrupted_at(SGHMC, 22), pytest.raises(RunInterrupted):
        bt.fit(model, data.train, checkpoint=ckpt, checkpoint_every=5, **kw)
    with pytest.raises(ValueError, match="gibbs"):  # another redraw setting: another run
        bt.fit(model, data.train, resume=ckpt, gibbs=False, **kw)
    resumed = bt.fit(model, data.train, resume=ckpt, checkpoint=ckpt, **kw)
    assert full.info["gibbs_sites"] == resumed.info["gibbs_sites"] != []
    for name in ("noise_precision", "X.precision1", "X.core1"):
        torch.testing.assert_close(resumed.samples[name], full.samples[name], rtol=0, atol=0)


SCALE = 0.8


def scale_model(x):
    s = pyro.sample("s", dist.HalfCauchy(SCALE))
    with pyro.plate("n", x.shape[0]):
        pyro.sample("x", dist.Normal(0.0, s), obs=x)


def _scale_redraws_alone(target, cond, start: float) -> np.ndarray:
    """Site ``s`` after each of 2,000 redraws in 4 chains (SGHMC's steps at ``lr`` 1e-12 move
    nothing), the first 100 dropped."""
    sampler = SGHMC(target, lr=1e-12, num_warmup=0, precondition=False, gibbs={"s": cond})
    state = sampler.init_state(target.unconstrain({"s": torch.full((4,), start)}))
    draws = []
    for t in range(8000):
        state = sampler.step(state, t)
        if (t + 1) % 4 == 0:
            draws.append(target.constrain(state.theta)["s"])
    return torch.stack(draws[100:]).double().numpy().ravel()


def _mean_and_sd(grid: np.ndarray, log_p: np.ndarray) -> tuple[float, float]:
    """Mean and sd of the density ``exp(log_p)`` (unnormalized) on ``grid``, by quadrature."""
    p = np.exp(log_p - log_p.max())
    mean = trapezoid(grid * p, grid) / trapezoid(p, grid)
    return mean, np.sqrt(trapezoid((grid - mean) ** 2 * p, grid) / trapezoid(p, grid))


def test_redrawn_half_cauchy_scale_follows_its_posterior():
    """s ~ HalfCauchy(0.8), 30 values x_i ~ N(0, s^2): the redraws alone (lr tiny) sample
    p(s | x), whose mean and sd come from a quadrature of the unnormalized density; within
    3% and 6% over 4 x 2000 redraws."""
    x = torch.randn(30, generator=torch.Generator().manual_seed(1)) * 1.7
    target = LogDensity(scale_model, (x,), seed=0)
    s = _scale_redraws_alone(target, HalfCauchyConditional(x.numel(), SCALE), 0.3)
    grid = np.linspace(1e-3, 10, 200_001)
    squares = float((x.double() ** 2).sum())
    mean, sd = _mean_and_sd(grid, -np.log1p((grid / SCALE) ** 2) - x.numel() * np.log(grid)
                            - squares / (2 * grid ** 2))
    assert s.mean() == pytest.approx(mean, rel=0.03)
    assert s.std() == pytest.approx(sd, rel=0.06)


def _at_a_random_point(model, data):
    """A completion bound to ``data``: its conditionals, log density, two jittered starting
    points ``theta``, the gradient there, the values (NumPy) and the sites by name."""
    model.set_data(data.train)
    target = LogDensity(model.pyro_model, model.model_args(), init_values=model.init_values(),
                        fast_log_joint=model.fast_log_joint, seed=0)
    theta = target.init_theta(2, jitter=0.3)
    _, grad = target.value_and_grad(theta)
    values = {k: v.double().numpy() for k, v in target.constrain(theta).items()}
    return (model.gibbs_sites(), target, theta, grad, values,
            {s.name: s for s in target.sites})


def test_tucker_squares_read_off_the_gradient_are_the_weighted_slice_squares():
    """Tucker (6, 7) with half-Cauchy slice scales: the sum of squares a scale's conditional
    reads off the gradient is its factor column's squares plus its core slice's squares over
    the other mode's variances, computed in NumPy."""
    data = bt.data.synthetic_tensor((6, 7), rank=2, observed=0.6, seed=2)
    model = bt.TensorCompletion(data.shape, "tucker", max_rank=3, prior="half_cauchy")
    conds, target, theta, grad, values, site = _at_a_random_point(model, data)
    assert set(conds) == {"X.scale0", "X.scale1", "noise_precision", "offset"}
    s0, s1 = values["X.scale0"], values["X.scale1"]
    core = values["X.core"]
    want = {"X.scale0": ((values["X.factor0"] ** 2).sum(1)
                         + (core ** 2 / s1[:, None, :] ** 2).sum(2)),
            "X.scale1": ((values["X.factor1"] ** 2).sum(1)
                         + (core ** 2 / s0[:, :, None] ** 2).sum(1))}
    for name, squares in want.items():
        cond = conds[name]
        assert cond.count == {"X.scale0": 6 + 3, "X.scale1": 7 + 3}[name]
        g = grad[:, site[name].offset: site[name].offset + site[name].size].double().numpy()
        s = values[name]
        q = s ** 2 / cond.scale ** 2
        got = s ** 2 * (g + cond.count - 1 + 2 * q / (1 + q))
        np.testing.assert_allclose(got, squares, rtol=2e-3)


def both_model(x):
    s = pyro.sample("s", dist.HalfCauchy(SCALE))
    tau = pyro.sample("tau", dist.Gamma(A, B))
    with pyro.plate("n", x.shape[0]):
        pyro.sample("x", dist.Normal(0.0, s), obs=x)
        pyro.sample("y", dist.Normal(0.0, tau.rsqrt()), obs=x)


def test_burn_in_redraws_only_the_conditionals_that_allow_it():
    """Gamma precisions are redrawn from the first burn-in step, half-Cauchy scales only after
    burn-in (see HalfCauchyConditional.during_warmup)."""
    x = torch.randn(25, generator=torch.Generator().manual_seed(3))
    target = LogDensity(both_model, (x,), seed=0)
    redraws = GibbsRedraws(target, {"s": HalfCauchyConditional(25, SCALE), "tau": A + 12.5})
    assert redraws.any_during_warmup
    theta = target.unconstrain({"s": torch.full((2,), 0.5), "tau": torch.full((2,), 2.0)})
    _, grad = target.value_and_grad(theta)
    gen = torch.Generator().manual_seed(0)
    in_burn_in = target.constrain(redraws.redraw(theta, grad, gen, warmup=True))
    after = target.constrain(redraws.redraw(theta, grad, gen, warmup=False))
    assert torch.equal(in_burn_in["s"], torch.full((2,), 0.5))
    assert not torch.allclose(in_burn_in["tau"], torch.full((2,), 2.0))
    assert not torch.allclose(after["s"], torch.full((2,), 0.5))
    assert not GibbsRedraws(target, {"s": HalfCauchyConditional(25, SCALE)}).any_during_warmup


def test_fit_takes_the_conditionals_of_a_custom_model():
    """fit(method="sghmc", gibbs={...}) redraws a user's Pyro model's sites: the precision's
    draws follow its conditional given the mean's draws (mean within 5% of the average
    conditional mean), and the run record names them."""
    y = torch.randn(300, generator=torch.Generator().manual_seed(4)) * 0.5 + 1.0
    post = bt.fit(precision_model, model_args=(y,), method="sghmc", num_samples=600,
                  num_warmup=300, num_chains=2, seed=0, progress=False,
                  gibbs={"tau": A + y.numel() / 2})
    assert post.info["gibbs_sites"] == ["tau"]
    tau, mu = post["tau"].double().reshape(-1), post["mu"].double().reshape(-1)
    rate = B + ((y.double()[None, :] - mu[:, None]) ** 2).sum(1) / 2
    assert float(tau.mean()) == pytest.approx(float(((A + 150) / rate).mean()), rel=0.05)
    without = bt.fit(precision_model, model_args=(y,), method="sghmc", num_samples=20,
                     num_warmup=20, seed=0, progress=False)
    assert without.info["gibbs_sites"] == []


@pytest.mark.parametrize("gibbs,match", [("yes", "True or False"),
                                         ({"tau": -2.0}, "positive number"),
                                         ({"tau": "many"}, "Gamma shape"),
                                         ({3: 2.0}, "site names"),
                                         ({"sigma": 2.0}, "'sigma' is not a site")])
def test_fit_refuses_a_bad_gibbs_before_sampling(gibbs, match):
    y = torch.randn(20)
    with pytest.raises(ValueError, match=match):
        bt.fit(precision_model, model_args=(y,), method="sghmc", num_samples=5, seed=0,
               progress=False, gibbs=gibbs)


def test_tucker_chains_from_the_starting_values_survive_burn_in():
    """Tucker's gamma precisions redrawn together from the first burn-in step carried
    switched-off slices' precisions to where the log density overflowed: from the starting
    values (``init_from="init"``) this 20 x 15 x 10 rank-3 completion diverged at step 132.
    From the starting values they are redrawn after burn-in (in turn, or from the first step
    the start's surplus slices stay on: ranks (10, 10, 10), error 0.156), and the chains
    complete and predict the held-out entries (noise-free truth) well; the collapsed MAP of
    the same data has error 0.30."""
    data = bt.data.synthetic_tensor((20, 15, 10), rank=3, snr_db=20, observed=0.3, seed=0)
    model = bt.TensorCompletion(data.shape, "tucker", max_rank=10)
    post = bt.fit(model, data.train, method="sghmc", init_from="init", num_warmup=300,
                  num_samples=100, seed=0, progress=False)
    assert "diverged_at_step" not in post.info
    assert data.relative_error(post.predict(data.test.indices).mean) < 0.1


def test_chains_from_the_starting_values_begin_with_the_noise_their_start_implies():
    """A 12 x 10 x 8 rank-3 CP tensor (factors N(0, 1), noise sd 0.1), 34% observed: the
    start fits its 325 entries to a residual precision of 293 (standardized) while the
    model's starting noise precision is 1 / Var(y) = 1; with the curvature measured there SGHMC
    from the starting values diverged at step 0 (at its defaults too). Redrawn from its
    conditional before the curvature is measured, the noise precision starts near the
    residual's, and the chains run and predict the held-out entries near the noise level
    (RMSE 0.126 here; 0.111 at the defaults)."""
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(12, 3)), rng.normal(size=(10, 3)), rng.normal(size=(8, 3))
    dense = np.einsum("ir,jr,kr->ijk", a, b, c) + 0.1 * rng.normal(size=(12, 10, 8))
    dense[rng.random(dense.shape) < 0.6] = np.nan
    idx = np.argwhere(~np.isnan(dense))
    vals = dense[~np.isnan(dense)]
    order = rng.permutation(len(vals))
    train, test = order[:int(0.9 * len(vals))], order[int(0.9 * len(vals)):]
    model = bt.TensorCompletion(dense.shape, "cp", max_rank=10)
    post = bt.fit(model, (torch.tensor(idx[train]), torch.tensor(vals[train])),
                  method="sghmc", init_from="init", num_warmup=500, num_samples=200, seed=0,
                  progress=False)
    assert "diverged_at_step" not in post.info
    tau = post["noise_precision"][:, 0]
    assert bool((tau > 50).all()), tau
    rmse = np.sqrt(np.mean((post.predict(torch.tensor(idx[test])).mean - vals[test]) ** 2))
    assert rmse < 0.15, rmse


CORE = 2.0
FACTOR0, FACTOR1 = (0.1, -0.05, 0.08), (0.05, 0.1)


def coupled_scales_model():
    """One entry of a 2-way Tucker core with rank 1 per mode: its prior sd is the product of
    the two modes' scales, each of which also scales its own factor column."""
    s0 = pyro.sample("s0", dist.HalfCauchy(1.0))
    s1 = pyro.sample("s1", dist.HalfCauchy(1.0))
    pyro.sample("core", dist.Normal(0.0, s0 * s1))
    pyro.sample("u0", dist.Normal(0.0, s0).expand([len(FACTOR0)]).to_event(1))
    pyro.sample("u1", dist.Normal(0.0, s1).expand([len(FACTOR1)]).to_event(1))


def coupled_scales_posterior():
    """Means and sds of ``(log s0, log s1)`` given the core entry and the factor columns, and
    their correlation, by quadrature on a grid of the unnormalized density (with the
    Jacobians of the log scale)."""
    a, b = np.meshgrid(np.linspace(-12, 6, 1201), np.linspace(-12, 6, 1201), indexing="ij")
    s0, s1 = np.exp(a), np.exp(b)
    log_p = (a - np.log1p(s0**2) + b - np.log1p(s1**2) - a - b - CORE**2 / (2 * (s0 * s1)**2)
             - len(FACTOR0) * a - np.sum(np.square(FACTOR0)) / (2 * s0**2)
             - len(FACTOR1) * b - np.sum(np.square(FACTOR1)) / (2 * s1**2))
    p = np.exp(log_p - log_p.max())
    p /= p.sum()
    means = np.array([(a * p).sum(), (b * p).sum()])
    sds = np.sqrt([((a - means[0])**2 * p).sum(), ((b - means[1])**2 * p).sum()])
    corr = ((a - means[0]) * (b - means[1]) * p).sum() / sds.prod()
    return means, sds, corr


def test_coupled_scales_are_redrawn_in_turn_and_follow_their_joint_posterior():
    """The two scales of a Tucker core entry each depend on the other's value. Redrawn in
    two stages (the second reading its rate off the gradient after the first), the redraws
    alone (lr tiny) are a Gibbs sampler of ``p(s0, s1 | core, u0, u1)``: its moments match
    the quadrature's (means within 4 standard errors at a bulk ESS of about 1,500, sds within
    8%, correlation -0.876 within 0.03). Redrawn together from one gradient, as before the
    stages, the correlation came out at -0.46, the sds 17% small."""
    chains = 32
    target = LogDensity(coupled_scales_model, (), seed=0)
    gibbs = {"s0": HalfCauchyConditional(1 + len(FACTOR0), 1.0, stage=0),
             "s1": HalfCauchyConditional(1 + len(FACTOR1), 1.0, stage=1)}
    sampler = SGHMC(target, lr=1e-12, num_warmup=0, precondition=False, gibbs=gibbs)
    start = {"s0": torch.full((chains,), 0.5), "s1": torch.full((chains,), 0.5),
             "core": torch.full((chains,), CORE),
             "u0": torch.tensor(FACTOR0).expand(chains, -1),
             "u1": torch.tensor(FACTOR1).expand(chains, -1)}
    state = sampler.init_state(target.unconstrain(start))
    draws = []
    for t in range(2000):
        state = sampler.step(state, t)
        if (t + 1) % 4 == 0:
            values = target.constrain(state.theta)
            draws.append(torch.stack([values["s0"], values["s1"]], -1))
    logs = torch.stack(draws[50:]).double().log().reshape(-1, 2).numpy()
    means, sds, corr = coupled_scales_posterior()
    np.testing.assert_allclose(logs.mean(0), means, atol=0.09)
    np.testing.assert_allclose(logs.std(0), sds, rtol=0.08)
    assert np.corrcoef(logs.T)[0, 1] == pytest.approx(corr, abs=0.03)


@pytest.mark.parametrize("fmt, shape, stages", [
    ("cp", (5, 6, 7), [0]), ("tucker", (5, 6, 7), [0, 1, 2]),
    ("tt", (5, 6, 7, 8), [0, 1, 0]), ("ttm", (3, 4, 3, 2, 3, 2), [0, 1])])
def test_rank_dimensions_sharing_a_parameter_are_redrawn_in_different_stages(fmt, shape,
                                                                            stages):
    """A Tucker core couples every pair of modes, an inner TT core its two bonds, CP none:
    the built-in conditionals carry those stages under both priors that have them."""
    for prior in ("gamma", "half_cauchy"):
        low_rank = LowRankPrior("X", shape, 3, fmt, prior)
        conds = low_rank.conditionals()
        assert [conds[site].stage for site in low_rank.hyper_sites] == stages


@pytest.mark.slow
def test_tucker_chains_on_pure_noise_do_not_diverge():
    """A 20^3 tensor of pure noise, 30% observed, Tucker under the half-Cauchy prior at
    SGHMC's defaults: with the three modes' scales redrawn together the log density
    overflowed at step 1155 (seed 0, 155 draws in); redrawn in turn the run completes."""
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(20, 20, 20))
    noise[rng.random(noise.shape) >= 0.3] = np.nan
    model = bt.TensorCompletion(noise.shape, "tucker", max_rank=8, prior="half_cauchy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = bt.fit(model, noise, method="sghmc", num_samples=200, seed=0, progress=False)
    assert "diverged_at_step" not in post.info
    assert np.isfinite(post.samples["X.scale0"].numpy()).all()


@pytest.mark.slow
def test_tucker_chains_on_few_observations_do_not_diverge():
    """130 entries of a 12 x 9 x 12 rank-3 tensor at 10 dB, Tucker under the half-Cauchy prior
    at SGHMC's defaults (``benchmarks/sparse_sghmc.py``, seed 1): with the scales redrawn only
    after burn-in the log density overflowed at step 2363, 681 draws in (burn-in had not seen
    the states those redraws open); redrawn from the first burn-in step the run completes."""
    data = bt.data.synthetic_tensor((12, 9, 12), rank=3, snr_db=10, observed=0.1,
                                    n_test=2000, seed=1)
    model = bt.TensorCompletion(data.shape, "tucker", max_rank=6, prior="half_cauchy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = bt.fit(model, data.train, method="sghmc", seed=1, progress=False)
    assert "diverged_at_step" not in post.info
    assert data.relative_error(post.predict(data.test.indices).mean) < 0.9


@pytest.mark.parametrize("fmt, prior", [("tucker", "half_cauchy"), ("tucker", "gamma"),
                                        ("tt", "gamma")])
def test_the_hyper_gradient_from_the_prior_alone_is_the_full_gradient_there(fmt, prior):
    """SGHMC's later redraw stages read their rates off ``model.hyper_gradient``, the prior's
    gradient alone: on every hyper site it equals the full log density's gradient (with the
    likelihood and the noise and offset priors), at spread points of a completion and of a
    regression."""
    data = bt.data.synthetic_tensor((8, 7, 6), rank=2, observed=0.5, seed=3)
    completion = bt.TensorCompletion(data.shape, fmt, max_rank=3, prior=prior)
    completion.set_data(data.train)
    x = torch.randn(40, 4, 5, generator=torch.Generator().manual_seed(0))
    regression = bt.TensorRegression((4, 5), fmt, max_rank=3, prior=prior)
    regression.set_data((x, x.sum((1, 2))))
    for model in (completion, regression):
        target = LogDensity(model.pyro_model, model.model_args(),
                            init_values=model.init_values(),
                            fast_log_joint=model.fast_log_joint, seed=0)
        theta = target.init_theta(3, jitter=0.5)
        _, full = target.value_and_grad(theta)
        prior_only = model.hyper_gradient(target)(theta)
        site = {s.name: s for s in target.sites}
        for name in model.low_rank_prior.hyper_sites:
            span = slice(site[name].offset, site[name].offset + site[name].size)
            torch.testing.assert_close(prior_only[:, span], full[:, span], rtol=1e-4,
                                       atol=1e-3)


def _truncated_gamma_cdf(shape, lo, hi):
    """CDF of a standard Gamma(shape) truncated to [lo, hi], by quadrature of the density of
    log z (stable however far in a tail the interval lies)."""
    w = np.linspace(np.log(lo), np.log(hi), 400_001)
    log_p = shape * w - np.exp(w)
    p = np.exp(log_p - log_p.max())
    cdf = np.concatenate([[0.0], np.cumsum((p[1:] + p[:-1]) / 2 * np.diff(w))])
    return lambda z: np.interp(np.log(z), w, cdf / cdf[-1])


@pytest.mark.parametrize("shape,lo,hi", [(12.0, 1.0, 30.0),      # the bulk, both tails cut
                                         (12.0, 11.0, 13.0),     # a narrow band at the median
                                         (0.7, 1e-6, 0.01),      # below the mode, shape < 1
                                         (50.0, 1e-12, 1e-6),    # far below: tail sampler
                                         (2.0, 800.0, 1e4),      # far above: tail sampler
                                         (9.5, 30.0, 1e8)])      # upper tail, wide
def test_truncated_gamma_follows_its_distribution(shape, lo, hi):
    """4,000 draws against the truncated CDF by quadrature: Kolmogorov-Smirnov p > 0.01, and
    every draw inside the bounds (rates 2 and 0.5 alike, the bounds scaled by them)."""
    from scipy.stats import kstest
    rng = np.random.default_rng(0)
    for rate in (2.0, 0.5):
        z = truncated_gamma(shape, np.full(4000, rate), lo / rate, hi / rate, rng) * rate
        assert np.all((z >= lo * (1 - 1e-12)) & (z <= hi * (1 + 1e-12)))
        assert kstest(z, _truncated_gamma_cdf(shape, lo, hi)).pvalue > 0.01


def test_truncated_gamma_gives_nan_for_a_rate_that_is_not_positive():
    rng = np.random.default_rng(0)
    z = truncated_gamma(3.0, np.array([1.0, 0.0, -2.0, np.nan]), 0.1, 10.0, rng)
    assert np.isfinite(z[0]) and np.all(np.isnan(z[1:]))


def log_uniform_model(x, low, high):
    s = pyro.sample("s", LogUniform(low, high))
    with pyro.plate("n", x.shape[0]):
        pyro.sample("x", dist.Normal(0.0, s), obs=x)


@pytest.mark.parametrize("x_scale,low,high", [(1.7, 1e-3, 1e2),   # posterior inside
                                              (1.7, 0.2, 1.5),    # piled at the high bound
                                              (1e-3, 0.01, 10.0)])  # at the low bound
def test_redrawn_log_uniform_scale_follows_its_posterior(x_scale, low, high):
    """s ~ LogUniform(low, high), 30 values x_i ~ N(0, s^2): the redraws alone (lr tiny), on
    the sampler's bounded coordinate, sample p(s | x) ∝ s^-31 exp(-S / 2 s^2) on the bounds;
    mean and sd within 3% and 6% of a quadrature's over 4 x 2000 redraws."""
    x = torch.randn(30, generator=torch.Generator().manual_seed(1)) * x_scale
    target = LogDensity(log_uniform_model, (x, low, high), seed=0)
    s = _scale_redraws_alone(target, LogUniformConditional(x.numel(), low, high),
                             float(np.sqrt(low * high)))
    assert np.all((s >= low) & (s <= high))
    grid = np.exp(np.linspace(np.log(low), np.log(high), 400_001))
    squares = float((x.double() ** 2).sum())
    mean, sd = _mean_and_sd(grid, -(x.numel() + 1) * np.log(grid) - squares / (2 * grid ** 2))
    assert s.mean() == pytest.approx(mean, rel=0.03)
    assert s.std() == pytest.approx(sd, rel=0.06)


@pytest.mark.parametrize("fmt", ["tucker", "tt"])
def test_log_uniform_squares_read_through_the_bounded_transform(fmt):
    """A log-uniform scale is sampled through a sigmoid onto its bounds: the squares its
    conditional reads off that coordinate's gradient are the slice's weighted squares,
    computed in NumPy from the parameters (Tucker: factor column plus core slice over the
    other mode's variances; TT: the bond's slices of the two cores it joins)."""
    from bayestensor.infer.gibbs import log_scale_gradient
    data = bt.data.synthetic_tensor((6, 7, 5), rank=2, observed=0.6, seed=2)
    model = bt.TensorCompletion(data.shape, fmt, max_rank=3, prior="log_uniform",
                                prior_params={"low": 1e-3, "high": 50.0})
    conds, target, theta, grad, v, site = _at_a_random_point(model, data)
    if fmt == "tucker":
        s0, s1, s2, core = v["X.scale0"], v["X.scale1"], v["X.scale2"], v["X.core"]
        want = {"X.scale0": (v["X.factor0"] ** 2).sum(1) + (
            core ** 2 / (s1[:, None, :, None] ** 2 * s2[:, None, None, :] ** 2)).sum((2, 3))}
    else:  # TT cores (1, 6, r0), (r0, 7, r1), (r1, 5, 1)
        s1 = v["X.scale1"]
        want = {"X.scale0": (v["X.core0"][:, 0] ** 2).sum(1)
                + (v["X.core1"] ** 2 / s1[:, None, None, :] ** 2).sum((2, 3))}
    for name, squares in want.items():
        cond = conds[name]
        assert isinstance(cond, LogUniformConditional)
        span = slice(site[name].offset, site[name].offset + site[name].size)
        x, log_grad = log_scale_gradient(site[name].transform, theta[:, span], grad[:, span])
        np.testing.assert_allclose(x.numpy(), v[name], rtol=1e-5)
        got = (x.square() * (log_grad + cond.count)).numpy()
        np.testing.assert_allclose(got, squares, rtol=2e-3)

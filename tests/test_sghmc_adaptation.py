"""SGHMC's burn-in step adaptation and spread starts against the analytic discrete dynamics."""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy.linalg import solve_discrete_lyapunov
from scipy.optimize import brentq

import bayestensor as bt
from bayestensor.infer.dense_metric import DENSE_MAX_DIM, DenseRoot, choose_metric
from bayestensor.infer.sghmc import MIN_CURVATURE, STEP_TARGET

FRICTION = 0.1
DIM = 400


def variance_bias(h: float, friction: float = FRICTION) -> float:
    """Relative bias of the stationary variance of theta for SGHMC's update on a unit Gaussian
    with step ``h``: the discrete Lyapunov equation of the linear update (the oracle)."""
    transition = np.array([[1 - h, 1 - friction], [-h, 1 - friction]])
    noise = 2 * friction * h * np.ones((2, 2))
    return solve_discrete_lyapunov(transition, noise)[0, 0] - 1


def iid_normal(scale):
    with pyro.plate("d", DIM):
        pyro.sample("x", dist.Normal(0.0, scale))


def test_adapted_step_reaches_the_variance_bias_target():
    """On N(0, s^2) in 400 dimensions the tuned step is the one whose exact variance bias is
    STEP_TARGET, whatever the scale s and the starting lr (the median of three seeds: one
    seed's step lies within 0.5-1.7x of it, the windows' temperatures being noisy); the draws'
    variance is the one the exact dynamics give at the step tuned."""
    want_h = brentq(lambda h: variance_bias(h) - STEP_TARGET, 1e-4, 2.0)
    for scale, lr in ((1.0, 0.01), (50.0, 0.3)):
        steps = []
        for seed in range(3):
            post = bt.fit(iid_normal, method="sghmc", model_args=(scale,), lr=lr, num_chains=4,
                          num_warmup=1500, num_samples=1000 if seed == 0 else 1,
                          init_from="init", seed=seed, progress=False)
            precond = 1 / max(1 / scale**2, MIN_CURVATURE)  # the preconditioner's floors
            steps.append(lr * post.info["step_scale"]["x"] * precond / scale**2)
            if seed == 0:
                h, var = steps[0], float(post["x"].double().var() / scale**2)
                # 1.6M draws, about 30,000 effective (sd of the variance ~0.008): within 3 sd
                assert var == pytest.approx(1 + variance_bias(h), abs=0.025), (scale, h, var)
        assert np.median(steps) == pytest.approx(want_h, rel=0.25), (scale, lr, steps, want_h)


def test_fixed_step_when_adaptation_is_off():
    post = bt.fit(iid_normal, method="sghmc", model_args=(1.0,), lr=0.01, adapt_step=False,
                  num_chains=2, num_warmup=100, num_samples=50, seed=0, progress=False)
    assert "step_scale" not in post.info
    assert torch.allclose(post.sample_stats["step_size"], torch.tensor(0.01))


def test_chains_start_spread_by_the_laplace_sd():
    """init_spread=1 moves each chain from the MAP point by one Laplace sd per coordinate."""
    def model():
        pyro.sample("x", dist.Normal(torch.zeros(DIM), 3.0).to_event(1))
    post = bt.fit(model, method="sghmc", num_chains=4, num_warmup=0, num_samples=1,
                  lr=1e-8, adapt_step=False, seed=0, progress=False)
    first = post["x"][:, 0].double()  # (chain, DIM): one step of size ~1e-4 from the start
    assert float(first.std()) == pytest.approx(3.0, rel=0.05)
    assert float((first[0] - first[1]).abs().mean()) > 1.0
    still = bt.fit(model, method="sghmc", num_chains=4, num_warmup=0, num_samples=1, lr=1e-8,
                   adapt_step=False, init_spread=0.0, seed=0, progress=False)
    assert float(still["x"][:, 0].double().std(0).max()) < 1e-2


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "wide"])
def test_bad_init_spread_is_named(bad):
    with pytest.raises(ValueError, match="init_spread"):
        bt.fit(iid_normal, method="sghmc", model_args=(1.0,), init_spread=bad, progress=False)


def gaussian_chain(dim, length):
    """Pyro's test_nuts.py chain: loc_1 ~ N(0, 1), loc_i ~ N(loc_{i-1}, 1), one obs of ones."""
    def model(data):
        loc = torch.zeros(dim)
        for i in range(1, length + 1):
            loc = pyro.sample(f"loc_{i}", dist.Normal(loc, 1.0).to_event(1))
        pyro.sample("obs", dist.Normal(loc, 1.0).to_event(1), obs=data)
    precision = (np.diag([2.0] * (length - 1) + [2.0]) - np.diag([1.0] * (length - 1), 1)
                 - np.diag([1.0] * (length - 1), -1))
    cov = np.linalg.inv(precision)
    mean = cov @ np.eye(length)[-1]
    return model, mean, np.sqrt(np.diag(cov))


def test_dense_metric_samples_a_correlated_gaussian_chain():
    """The chain of 9 links (correlations up to 0.82) in 5 dimensions: the diagonal metric
    left the draws' sd off by up to 0.32 (rmse) at these settings; the dense one is within
    Pyro's tolerance of 0.08 for every link, and its mean is too."""
    model, mean, sd = gaussian_chain(5, 9)
    post = bt.fit(model, method="sghmc", model_args=(torch.ones(5),), num_samples=500,
                  num_chains=4, seed=4, progress=False)
    assert post.info["metric"] == "dense"
    for i in range(9):
        draws = post[f"loc_{i + 1}"].double().reshape(-1, 5).numpy()
        assert np.sqrt(np.mean((draws.mean(0) - mean[i]) ** 2)) < 0.08, i
        assert np.sqrt(np.mean((draws.std(0) - sd[i]) ** 2)) < 0.08, i


def test_dense_root_is_a_square_root_of_the_floored_inverse_hessian():
    rng = np.random.default_rng(0)
    vecs, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    lam = np.array([4.0, 1.0, 0.5, -2.0, 1e-4, 30.0])  # one negative, one below the floor
    hessian = torch.tensor(vecs @ np.diag(lam) @ vecs.T)
    root = DenseRoot.from_hessian(hessian, MIN_CURVATURE)
    want = vecs @ np.diag(1 / np.maximum(np.abs(lam), MIN_CURVATURE)) @ vecs.T
    np.testing.assert_allclose((root.root @ root.root.T).numpy(), want, rtol=1e-10, atol=1e-12)
    u = torch.tensor(rng.normal(size=(3, 6)))
    np.testing.assert_allclose(root.whiten(root.color(u)).numpy(), u.numpy(), atol=1e-10)
    np.testing.assert_allclose(root.diagonal().numpy(), np.diag(want), rtol=1e-10)


def test_metric_choice_and_its_errors():
    assert choose_metric("auto", 45, stochastic=False, builtin=False, precondition=True) == "dense"
    assert choose_metric("auto", DENSE_MAX_DIM + 1, False, False, True) == "diag"
    assert choose_metric("auto", 45, stochastic=True, builtin=False, precondition=True) == "diag"
    assert choose_metric("auto", 45, stochastic=False, builtin=True, precondition=True) == "diag"
    with pytest.raises(ValueError, match="metric: 'dense' needs full-batch"):
        choose_metric("dense", 45, stochastic=True, builtin=False, precondition=True)
    with pytest.raises(ValueError, match="metric"):
        bt.fit(iid_normal, method="sghmc", model_args=(1.0,), metric="full", progress=False)


def test_diag_metric_is_kept_on_request():
    model, _, _ = gaussian_chain(2, 3)
    post = bt.fit(model, method="sghmc", model_args=(torch.ones(2),), num_samples=20,
                  num_warmup=20, num_chains=2, metric="diag", seed=0, progress=False)
    assert post.info["metric"] == "diag"


def _normal_mean(y, subsample_size=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 1e3))
    with pyro.plate("data", len(y), subsample_size=subsample_size) as ind:
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y[ind])


def test_preconditioner_keeps_the_gradient_noise_within_the_friction():
    """y_i ~ N(mu, 1), n = 1000 with sample sd 100, batches of 10: the batch gradient of
    ``mu`` has variance ``V = n^2 s^2 (1 - b/n) / b`` (sampling without replacement), 1e5 times
    its curvature ``n``. The preconditioner is floored at ``lr * V / friction`` so that
    ``beta_hat = lr * P * V / 2`` stays within what the friction absorbs (Chen et al., 2014);
    on full batches, where there is no gradient noise, it is the curvature ``n``."""
    from bayestensor.infer import SGHMC, LogDensity

    n, b, lr, friction = 1000, 10, 0.01, 0.1
    y = torch.randn(n, generator=torch.Generator().manual_seed(0)).double()
    y = 100 * (y - y.mean()) / y.std()
    theta = torch.zeros(4, 1, dtype=torch.float64)
    noise = n**2 * 100**2 * (1 - b / n) / b

    target = LogDensity(_normal_mean, (y, b), seed=0)
    state = SGHMC(target, lr=lr, friction=friction, noise_estimate="auto",
                  batch_size=b).init_state(theta)
    # 16 batches x 4 chains at one point: the measured V is within about 20% of V.
    assert float(state.precond) == pytest.approx(friction / (lr * noise), rel=0.5)
    assert float(state.beta_hat) == pytest.approx(friction / 2)

    full = SGHMC(LogDensity(_normal_mean, (y,), seed=0), lr=lr, friction=friction,
                 noise_estimate="auto").init_state(theta)
    assert float(full.precond) == pytest.approx(1 / (n + 1e-6), rel=1e-6)
    assert float(full.beta_hat) == 0.0


def test_mini_batch_sghmc_survives_an_under_determined_completion():
    """30,000 entries of a 300^3 rank-20 tensor (1.3 per unknown), 10% batches: with the
    preconditioner taken from one batch's Hutchinson estimate alone, every seed overflowed
    within 8 steps; floored at the gradient noise, the run keeps finite draws."""
    data = bt.data.synthetic_tensor((300,) * 3, rank=20, snr_db=20, observed=30000 / 300**3,
                                    n_test=100, seed=0)
    model = bt.TensorCompletion((300,) * 3, "cp", max_rank=25)
    post = bt.fit(model, data.train, method="sghmc", num_warmup=100, num_samples=20,
                  batch_size=3000, map_hold=None, seed=0, progress=False)
    assert post.num_draws == 20
    assert np.isfinite(post.predict(data.test.indices).mean).all()


def test_chains_away_from_a_mode_re_estimate_the_curvature_early():
    """From the starting values (no MAP) the curvature grows as the chains reach the mode: on
    IL-2, with the preconditioner measured at the start until 10% of burn-in, the chain
    overflowed at step 54 of 1,000; re-estimated at 1, 2, 4 and 7% as well, it keeps its draws.
    Chains that start at a MAP point keep the former schedule."""
    from bayestensor.infer.sghmc import Warmup

    assert Warmup(1000).adapt_steps == {100, 250, 500, 750}
    assert Warmup(1000, start_at_mode=False).adapt_steps == {10, 20, 40, 70, 100, 250, 500, 750}
    il2 = bt.data.load_il2(holdout=0.1, seed=0)
    idx = np.argwhere(il2.mask)
    post = bt.fit(bt.TensorCompletion(il2.data.shape, "cp", max_rank=20),
                  (idx, il2.data[il2.mask]), method="sghmc", init_from="init", num_warmup=1000,
                  num_samples=5, seed=0, progress=False)
    assert post.num_draws == 5 and torch.isfinite(post["noise_precision"]).all()


def test_tucker_completion_keeps_every_second_step_by_default():
    """``thin`` left out: a Tucker completion keeps every second SGHMC step (its core mixes
    slower per step), CP and a Pyro model every step; an explicit ``thin`` wins. The kept
    draws at the default equal those of an explicit ``thin=2`` (same seed: same chain)."""
    data = bt.data.synthetic_tensor((8, 7, 6), rank=2, seed=0)
    run = dict(method="sghmc", num_samples=6, num_warmup=10, seed=0, progress=False)

    def fit(fmt, **kw):
        return bt.fit(bt.TensorCompletion(data.shape, fmt, max_rank=3), data.train, **run, **kw)

    tucker = fit("tucker")
    assert tucker.info["thin"] == 2
    assert torch.equal(tucker["noise_precision"], fit("tucker", thin=2)["noise_precision"])
    assert fit("tucker", thin=1).info["thin"] == 1
    assert fit("cp").info["thin"] == 1
    assert bt.fit(iid_normal, model_args=(1.0,), **run).info["thin"] == 1
    with pytest.raises(ValueError, match="thin"):
        fit("tucker", thin=0)


def test_resuming_with_another_thin_names_thin(tmp_path):
    """A Tucker checkpoint written at ``thin=1`` (the default before Tucker's became 2): the
    resume at the default is refused naming ``thin`` (not the run length it implies), and at
    ``thin=1`` it goes on."""
    data = bt.data.synthetic_tensor((8, 7, 6), rank=2, seed=0)
    run = dict(method="sghmc", num_samples=6, num_warmup=4, seed=0, progress=False)
    ckpt = tmp_path / "run.ckpt"

    def model():
        return bt.TensorCompletion(data.shape, "tucker", max_rank=2)

    bt.fit(model(), data.train, thin=1, checkpoint=ckpt, **run)
    with pytest.raises(ValueError, match=r"\(thin: the checkpoint has 1, this run 2\)"):
        bt.fit(model(), data.train, resume=ckpt, **run)
    assert bt.fit(model(), data.train, thin=1, resume=ckpt, **run).num_draws == 6


@pytest.mark.parametrize("fmt", ["cp", "tt"])
def test_precision_curvature_is_exact_where_hutchinson_is_not(fmt):
    """On mini-batches, the preconditioner's curvature of the precision sites (slice precisions
    under the gamma prior, the noise precision) is ``shape - gradient``: given the full-data
    gradient, equal to the diagonal of autograd's
    full negative Hessian of the model's log density at each chain, averaged over chains, here
    with one slice precision at 1e6 (a switched-off slice). The case where Hutchinson's
    estimate of it failed is ``tests/test_devices.py``'s mini-batch start."""
    from bayestensor.infer import LogDensity
    from bayestensor.infer.sghmc import SGHMC

    data = bt.data.synthetic_tensor((6, 7, 8), rank=2, snr_db=20, observed=0.5, seed=0)
    model = bt.TensorCompletion(data.shape, fmt, max_rank=3)
    model.set_data(data.train)
    start = model.init_values(seed=0)
    start["X.precision0"] = torch.tensor([1.0, 2.0, 1e6])[: start["X.precision0"].numel()]
    target = LogDensity(model.pyro_model, model.model_args(), init_values=start,
                        fast_log_joint=model.fast_log_joint, seed=0)
    theta = target.init_theta(2, jitter=0.1).double()
    batched = LogDensity(model.pyro_model, model.model_args(), {"subsample_size": 40},
                         init_values=start, fast_log_joint=model.fast_log_joint, seed=0)
    sampler = SGHMC(batched, exact_curvature=model.gamma_shapes())
    assert sampler.gradients.is_stochastic
    assert not SGHMC(target, exact_curvature=model.gamma_shapes()).exact_curvature  # full batch
    grad = target.value_and_grad(theta)[1]
    got = sampler._curvature(theta, 0, None, grad)
    exact = torch.stack([-torch.autograd.functional.hessian(
        lambda x: target.log_density(x.unsqueeze(0))[0], theta[c]).diagonal()
        for c in range(2)]).mean(0)
    sites = {s.name: slice(s.offset, s.offset + s.size) for s in target.sites}
    for name in model.gamma_shapes():
        np.testing.assert_allclose(got[sites[name]].numpy(), exact[sites[name]].numpy(),
                                   rtol=1e-4, err_msg=name)


def test_exact_curvature_sites_are_checked_on_full_batches_too():
    """A site that is not sampled as the log of a positive value, or a non-positive shape, is
    refused when the sampler is made, whether or not its gradients are mini-batched."""
    from bayestensor.infer import LogDensity
    from bayestensor.infer.sghmc import SGHMC

    data = bt.data.synthetic_tensor((6, 7, 8), rank=2, snr_db=20, observed=0.5, seed=0)
    model = bt.TensorCompletion(data.shape, "cp", max_rank=3)
    model.set_data(data.train)
    target = LogDensity(model.pyro_model, model.model_args(), init_values=model.init_values(),
                        fast_log_joint=model.fast_log_joint, seed=0)
    with pytest.raises(ValueError, match="exact_curvature: 'offset' is not a site"):
        SGHMC(target, exact_curvature={"offset": 3.0})
    with pytest.raises(ValueError, match="exact_curvature: the shape of 'noise_precision'"):
        SGHMC(target, exact_curvature={"noise_precision": 0.0})

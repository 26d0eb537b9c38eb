"""Rank-revealing priors: vectorized log_prob against Pyro traces and scipy densities."""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from scipy import integrate, stats

from bayestensor.priors import (PRIORS, LogUniform, LowRankPrior, RankPrior, get_prior,
                                low_rank_tensor, noise_precision, rank_posterior)
from bayestensor.priors.effective_rank import active_per_dim

FORMAT_CASES = {
    "cp": ((4, 5, 6), 3),
    "tucker": ((3, 4, 5), (2, 3, 2)),
    "tt": ((3, 4, 5), (2, 3)),
    "ttm": ((2, 3, 2, 2), 2),
}
PRIOR_PARAMS = [None, {"a": 2.0, "b": 3.0}, {"scale": 0.5}, {"low": 0.1, "high": 10.0}]


def random_values(lrp, batch, seed):
    """Site values with a leading batch dim; hyper values in [0.5, 2] (inside every support)."""
    gen = torch.Generator().manual_seed(seed)
    values = {}
    for site, r in zip(lrp.hyper_sites, lrp.ranks):
        values[site] = (0.5 + 1.5 * torch.rand((batch, r), generator=gen, dtype=torch.float64))
    for site, spec in zip(lrp.param_sites, lrp.specs):
        values[site] = torch.randn((batch,) + spec.shape, generator=gen, dtype=torch.float64)
    return values


def pyro_log_prob(lrp, values):
    """Pyro's log density of the sites, its distributions' parameters in double precision
    (the closed form's constants are double; float32 ones differ by about 1e-7 per site)."""
    def model():
        lrp.sample()

    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        tr = poutine.trace(poutine.condition(model, data=values)).get_trace()
        assert set(tr.stochastic_nodes) == set()  # every site was conditioned
        return tr.log_prob_sum()
    finally:
        torch.set_default_dtype(default)


def prior_cases():
    for kind in PRIORS:
        for fmt in FORMAT_CASES:
            yield kind, fmt, None
    for kind, params in zip(PRIORS, PRIOR_PARAMS[1:]):
        yield kind, "cp", params
        yield kind, "tt", params


@pytest.mark.parametrize("kind,fmt,params", list(prior_cases()))
def test_vectorized_log_prob_matches_pyro_trace(kind, fmt, params):
    shape, rank = FORMAT_CASES[fmt]
    lrp = LowRankPrior("X", shape, rank, format=fmt, prior=kind, prior_params=params)
    values = random_values(lrp, batch=4, seed=11)
    fast = lrp.log_prob(values)
    assert tuple(fast.shape) == (4,)
    for i in range(4):
        ref = pyro_log_prob(lrp, {k: v[i] for k, v in values.items()})
        assert float(fast[i]) == pytest.approx(float(ref), rel=1e-9, abs=1e-9)
    # the density actually depends on the hyper-parameters (different batch rows differ)
    assert len({round(float(v), 6) for v in fast}) == 4


def test_cp_gamma_log_prob_matches_scipy():
    a, b = 2.0, 3.0
    lrp = LowRankPrior("W", (4, 5, 6), 3, format="cp", prior="gamma", prior_params={"a": a, "b": b})
    values = random_values(lrp, batch=2, seed=1)
    got = lrp.log_prob(values)
    for i in range(2):
        prec = values["W.precision0"][i].numpy()
        expected = stats.gamma(a, scale=1 / b).logpdf(prec).sum()
        for n in range(3):
            f = values[f"W.factor{n}"][i].numpy()
            expected += stats.norm(0, 1 / np.sqrt(prec)[None, :]).logpdf(f).sum()
        assert float(got[i]) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("kind", ["half_cauchy", "log_uniform"])
def test_tt_scale_log_prob_matches_scipy(kind):
    """TT core entry G_k[a, i, b] has variance s_{k-1}[a]^2 * s_k[b]^2 (boundary scale 1)."""
    params = {"half_cauchy": {"scale": 0.7}, "log_uniform": {"low": 0.05, "high": 20.0}}[kind]
    lrp = LowRankPrior("T", (3, 4, 5), (2, 3), format="tt", prior=kind, prior_params=params)
    values = random_values(lrp, batch=1, seed=2)
    s = [values["T.scale0"][0].numpy(), values["T.scale1"][0].numpy()]
    if kind == "half_cauchy":
        expected = sum(stats.halfcauchy(scale=0.7).logpdf(v).sum() for v in s)
    else:
        expected = sum(stats.loguniform(0.05, 20.0).logpdf(v).sum() for v in s)
    full = [np.ones(1), s[0], s[1], np.ones(1)]
    for k in range(3):
        core = values[f"T.core{k}"][0].numpy()
        sd = full[k][:, None, None] * full[k + 1][None, None, :]
        expected += stats.norm(0, sd).logpdf(core).sum()
    assert float(lrp.log_prob(values)[0]) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("low,high", [(1e-4, 1e3), (0.1, 10.0), (2.0, 3.0)])
def test_log_uniform_integrates_to_one(low, high):
    d = LogUniform(torch.tensor(low, dtype=torch.float64), torch.tensor(high, dtype=torch.float64))

    def pdf(s):
        return float(d.log_prob(torch.tensor(s, dtype=torch.float64)).exp())

    # integrate on a geometric grid of pieces so quad sees the 1/s shape well
    edges = np.geomspace(low, high, 20)
    total = sum(integrate.quad(pdf, lo, hi)[0] for lo, hi in zip(edges[:-1], edges[1:]))
    assert total == pytest.approx(1.0, abs=1e-8)
    mid = np.sqrt(low * high)
    assert pdf(mid) == pytest.approx(1 / (mid * np.log(high / low)), rel=1e-12)


def test_log_uniform_samples_are_log_uniform():
    low, high = 1e-3, 1e2
    d = LogUniform(low, high)
    torch.manual_seed(0)
    s = d.sample((4000,)).double().numpy()
    assert s.min() >= low * (1 - 1e-6) and s.max() <= high * (1 + 1e-6)
    ls = np.log(s)
    res = stats.kstest(ls, "uniform", args=(np.log(low), np.log(high) - np.log(low)))
    assert res.pvalue > 0.01
    # and clearly not uniform on the original scale
    assert stats.kstest(s, "uniform", args=(low, high - low)).pvalue < 1e-6
    # batch shapes broadcast and expand
    b = LogUniform(torch.tensor([0.1, 1.0]), 10.0)
    assert tuple(b.sample((5,)).shape) == (5, 2)
    assert tuple(b.expand((3, 2)).sample().shape) == (3, 2)
    assert d.has_rsample


def test_rank_prior_defaults_and_variance():
    p = RankPrior("gamma", {"a": 2.0})
    assert p.params == {"a": 2.0, "b": 1e-3}
    h = torch.tensor([0.5, 4.0])
    assert torch.allclose(p.variance(h), torch.tensor([2.0, 0.25]))
    q = RankPrior("half_cauchy")
    assert torch.allclose(q.variance(h), torch.tensor([0.25, 16.0]))
    for kind in PRIORS:
        r = RankPrior(kind)
        assert torch.allclose(r.variance(r.init_value(3, variance=0.25)), torch.full((3,), 0.25))
    lu = RankPrior("log_uniform", {"low": 1.0, "high": 5.0})
    v = lu.init_value(2, variance=1e-6)  # would be below low: clamped inside the support
    assert bool(((v > 1.0) & (v < 5.0)).all())


@pytest.mark.parametrize("prior", ["horseshoe", "Gamma", ""])
def test_unknown_prior(prior):
    with pytest.raises(ValueError, match="prior"):
        RankPrior(prior)
    with pytest.raises(ValueError, match="prior"):
        LowRankPrior("X", (3, 4), 2, prior=prior)


@pytest.mark.parametrize("kind,params", [
    ("gamma", {"scale": 1.0}),
    ("half_cauchy", {"a": 1.0}),
    ("log_uniform", {"lo": 1.0}),
    ("gamma", {"a": -1.0}),
    ("half_cauchy", {"scale": float("nan")}),
    ("log_uniform", {"low": 5.0, "high": 1.0}),
])
def test_bad_prior_params(kind, params):
    with pytest.raises(ValueError, match="prior_params"):
        RankPrior(kind, params)
    with pytest.raises(ValueError, match="prior_params"):
        get_prior(kind, params)


@pytest.mark.parametrize("params, name", [({"a": -1.0}, "a"), ({"b": 0.0}, "b"),
                                           ({"a": float("nan")}, "a")])
def test_noise_precision_prior_refuses_bad_parameters(params, name):
    with pytest.raises(ValueError, match=f"^{name}: expected a finite number in .0, "):
        noise_precision(**params)


def test_get_prior_instance_and_params_conflict():
    p = RankPrior("half_cauchy")
    assert get_prior(p) is p
    with pytest.raises(ValueError, match="prior_params"):
        get_prior(p, {"scale": 2.0})


def test_low_rank_prior_bad_shape_and_rank():
    with pytest.raises(ValueError, match="shape"):
        LowRankPrior("X", (3, 0, 2), 2)
    with pytest.raises(ValueError, match="rank"):
        LowRankPrior("X", (3, 4, 2), 0)
    with pytest.raises(ValueError, match="format"):
        LowRankPrior("X", (3, 4, 2), 2, format="block")


@pytest.mark.parametrize("fmt,prior,expected", [
    ("cp", "gamma", ["W.precision0", "W.factor0", "W.factor1", "W.factor2"]),
    ("tucker", "half_cauchy", ["W.scale0", "W.scale1", "W.scale2", "W.core", "W.factor0",
                               "W.factor1", "W.factor2"]),
    ("tt", "log_uniform", ["W.scale0", "W.scale1", "W.core0", "W.core1", "W.core2"]),
])
def test_low_rank_tensor_in_user_model(fmt, prior, expected):
    y = torch.randn(3, 4, 5)
    params = {"a": 2.0, "b": 2.0} if prior == "gamma" else None

    def model(y):
        # gamma's default a = b = 1e-3 draws precisions that underflow to 0; use a proper one
        w = low_rank_tensor("W", (3, 4, 5), rank=2, format=fmt, prior=prior, prior_params=params)
        pyro.sample("y", dist.Normal(w.reconstruct(), 0.1).to_event(3), obs=y)
        return w

    pyro.set_rng_seed(0)
    tr = poutine.trace(model).get_trace(y)
    sites = [n for n, s in tr.nodes.items() if s["type"] == "sample"]
    assert sites == expected + ["y"]
    assert tr.nodes["y"]["is_observed"]
    w = tr.nodes["_RETURN"]["value"]
    assert w.format_name == fmt and w.shape == (3, 4, 5)
    # the returned tensor is built from the sampled parameter sites
    first_param = expected[len(w.ranks)]
    assert w.params[0] is tr.nodes[first_param]["value"]
    # log_prob_sum of the trace equals LowRankPrior.log_prob of its values plus the likelihood
    lrp = LowRankPrior("W", (3, 4, 5), 2, format=fmt, prior=prior, prior_params=params)
    vals = {n: tr.nodes[n]["value"].unsqueeze(0) for n in expected}
    lik = dist.Normal(w.reconstruct(), 0.1).to_event(3).log_prob(y)
    assert float(tr.log_prob_sum()) == pytest.approx(float(lrp.log_prob(vals)[0] + lik), rel=1e-5)


@pytest.mark.parametrize("fmt", sorted(FORMAT_CASES))
def test_prior_sampling_gives_full_parameter_shapes(fmt):
    shape, rank = FORMAT_CASES[fmt]
    lrp = LowRankPrior("X", shape, rank, format=fmt, prior="half_cauchy")
    pyro.set_rng_seed(1)
    tr = poutine.trace(lrp.sample).get_trace()
    for site, spec in zip(lrp.param_sites, lrp.specs):
        assert tuple(tr.nodes[site]["value"].shape) == spec.shape
    assert tuple(tr.nodes["_RETURN"]["value"].reconstruct().shape) == shape


# --- TensorCompletion: the vectorized log joint against the Pyro model ------------------------

COMPLETION_CASES = {
    "cp": ((5, 6, 7), 3),
    "tucker": ((4, 5, 6), 2),
    "tt": ((4, 5, 6), (2, 3)),
    "ttm": ((2, 3, 3, 4), 2),
}


def completion_model(fmt, prior, n_obs=60, seed=0):
    from bayestensor import Observations, TensorCompletion

    shape, rank = COMPLETION_CASES[fmt]
    rng = np.random.default_rng(seed)
    flat = rng.choice(int(np.prod(shape)), size=n_obs, replace=False)
    idx = np.stack(np.unravel_index(flat, shape), axis=1)
    vals = 3.0 + 2.0 * rng.standard_normal(n_obs)
    model = TensorCompletion(shape, format=fmt, max_rank=rank, prior=prior)
    model.set_data(Observations.from_coo(idx, vals, shape))
    return model


def completion_values(model, batch, seed):
    values = random_values(model.tensor_prior, batch, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    values["noise_precision"] = 0.5 + 1.5 * torch.rand(batch, generator=gen, dtype=torch.float64)
    values["offset"] = torch.randn(batch, generator=gen, dtype=torch.float64)
    return values


def pyro_log_joint_and_grad(model, values, sub_idx=None):
    vals = {k: v.detach().clone().requires_grad_() for k, v in values.items()}
    data = dict(vals)
    kwargs = {}
    if sub_idx is not None:
        data["obs"] = sub_idx
        kwargs["subsample_size"] = len(sub_idx)
    tr = poutine.trace(poutine.condition(model.pyro_model, data=data)).get_trace(
        *model.model_args(), **kwargs)
    assert set(tr.stochastic_nodes) <= {"obs"}  # every latent conditioned (obs: the plate)
    if sub_idx is not None:
        assert torch.equal(tr.nodes["obs"]["value"], sub_idx)
    lp = tr.log_prob_sum()
    grads = torch.autograd.grad(lp, list(vals.values()))
    return lp.detach(), dict(zip(vals, grads))


def check_fast_against_pyro(model, sub_idx=None):
    values = completion_values(model, batch=3, seed=5)
    assert set(values) == set(model.tensor_prior.hyper_sites + model.tensor_prior.param_sites
                               + ["noise_precision", "offset"])
    leaves = {k: v.clone().requires_grad_() for k, v in values.items()}
    subsample = {} if sub_idx is None else {"obs": sub_idx}
    fast = model.fast_log_joint(leaves, subsample)
    assert tuple(fast.shape) == (3,)
    fast_grads = dict(zip(leaves, torch.autograd.grad(fast.sum(), list(leaves.values()))))
    for c in range(3):
        lp, grads = pyro_log_joint_and_grad(model, {k: v[c] for k, v in values.items()}, sub_idx)
        assert float(fast[c]) == pytest.approx(float(lp), rel=1e-6)
        for k, g in grads.items():
            np.testing.assert_allclose(fast_grads[k][c].numpy(), g.numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=k)
    return fast


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("fmt", sorted(COMPLETION_CASES))
def test_fast_log_joint_matches_pyro_full_data(fmt, prior):
    model = completion_model(fmt, prior)
    check_fast_against_pyro(model)


@pytest.mark.parametrize("fmt,prior", [("cp", "gamma"), ("tucker", "half_cauchy"),
                                       ("tt", "log_uniform"), ("ttm", "gamma")])
def test_fast_log_joint_matches_pyro_subsampled(fmt, prior):
    model = completion_model(fmt, prior)
    idx = torch.tensor([0, 17, 42, 5, 59, 33, 8])
    sub = check_fast_against_pyro(model, idx)
    full = check_fast_against_pyro(model)
    assert not torch.allclose(sub, full)  # the subsample (scaled by N/B) is a different estimate


def test_fast_log_joint_subsample_scale_by_hand():
    """A permutation of all the data (scale N/B = 1) equals the full log joint, and a half
    subsample counts its log-likelihood twice (scale N/B = 2)."""
    model = completion_model("cp", "gamma")
    values = completion_values(model, batch=2, seed=3)
    full = model.fast_log_joint(values, {})
    perm = torch.randperm(60, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(model.fast_log_joint(values, {"obs": perm}).numpy(), full.numpy(),
                               rtol=1e-10)
    idx, y = model.model_args()
    half = torch.arange(30)
    sub = model.fast_log_joint(values, {"obs": half})
    tau = values["noise_precision"]
    mu = model.low_rank(values).entries(idx) + values["offset"].unsqueeze(-1)
    ll = dist.Normal(mu, tau.rsqrt().unsqueeze(-1)).log_prob(y)
    diff = full - sub
    np.testing.assert_allclose(diff.numpy(), (ll.sum(-1) - 2 * ll[:, :30].sum(-1)).numpy(),
                               rtol=1e-8)


# --- ranks a shape cannot use (issue 14) ------------------------------------------------------

def test_low_rank_prior_caps_ranks_the_shape_cannot_use():
    with pytest.warns(UserWarning, match=r"max_rank: 1000 .*tucker.*capped at \(6, 5, 4\)"):
        lrp = LowRankPrior("X", (6, 5, 4), 1000, format="tucker", rank_name="max_rank")
    assert lrp.ranks == (6, 5, 4) and lrp.requested_ranks == (1000, 1000, 1000)
    assert [s.shape for s in lrp.specs][0] == (6, 5, 4)  # the core, never 1000^3
    with pytest.warns(UserWarning, match=r"^rank: "):
        assert LowRankPrior("X", (6, 5, 4), (7, 9), format="tt").ranks == (6, 4)


def test_low_rank_prior_refuses_more_parameters_than_max_params():
    with pytest.raises(ValueError, match=r"max_rank: \(300, 300, 300\) gives .* parameters.*"
                                         r"max_params=None"):
        LowRankPrior("X", (300, 300, 300), (300, 300, 300), format="tucker",
                     rank_name="max_rank", max_params=1_000_000)
    lrp = LowRankPrior("X", (30, 30, 30), 30, format="tucker", max_params=None)
    assert lrp.ranks == (30, 30, 30)


@pytest.mark.parametrize("fmt", ["cp", "tucker", "tt"])
def test_low_rank_prior_refuses_a_one_dimensional_shape(fmt):
    with pytest.raises(ValueError, match="shape: .*at least 2 modes"):
        LowRankPrior("X", (10,), 2, format=fmt)


# --- closed-form densities ------------------------------------------------------------------

def test_closed_form_densities_match_scipy():
    """Each closed form of bayestensor.priors.densities against SciPy's log pdf, summed over
    the event axes, on a batch of two."""
    from bayestensor.priors import densities as d

    rng = np.random.default_rng(0)
    x = rng.uniform(0.05, 3.0, size=(2, 5))
    t = torch.from_numpy(x)
    np.testing.assert_allclose(d.gamma_log_density(t, 2.5, 0.7, event_dims=1).numpy(),
                               stats.gamma(2.5, scale=1 / 0.7).logpdf(x).sum(1), rtol=1e-12)
    np.testing.assert_allclose(d.half_cauchy_log_density(t, 0.6, event_dims=1).numpy(),
                               stats.halfcauchy(scale=0.6).logpdf(x).sum(1), rtol=1e-12)
    np.testing.assert_allclose(d.log_uniform_log_density(t, 0.01, 5.0, event_dims=1).numpy(),
                               stats.loguniform(0.01, 5.0).logpdf(x).sum(1), rtol=1e-12)
    # a (2, 4, 3) parameter whose precision is a (2, 1, 3) slice precision times a (2, 4, 1) one
    w = rng.normal(size=(2, 4, 3))
    p_cols, p_rows = rng.uniform(0.5, 4, size=(2, 1, 3)), rng.uniform(0.5, 4, size=(2, 4, 1))
    log_var_sum = -(4 * np.log(p_cols).sum((1, 2)) + 3 * np.log(p_rows).sum((1, 2)))
    got = d.centered_normal_log_density(torch.from_numpy(w),
                                        torch.from_numpy(p_cols) * torch.from_numpy(p_rows),
                                        torch.from_numpy(log_var_sum), event_dims=2)
    want = stats.norm(0, 1 / np.sqrt(p_cols * p_rows)).logpdf(w).sum((1, 2))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    y, mu, tau = rng.normal(size=7), rng.normal(size=(2, 7)), np.array([0.5, 3.0])
    np.testing.assert_allclose(
        d.gaussian_log_likelihood(torch.from_numpy(y), torch.from_numpy(mu),
                                  torch.from_numpy(tau)).numpy(),
        stats.norm(mu, 1 / np.sqrt(tau)[:, None]).logpdf(y).sum(1), rtol=1e-12)


def test_tucker_core_variance_prior_matches_scipy():
    """``core_variance``: the core's entries are Normal(0, c) whatever the slice precisions,
    the factor columns keep their ARD variances, a slice governs its ``I_d`` factor entries
    (``slice_counts``), and ``sample`` draws the density ``log_prob`` evaluates (Pyro's
    trace)."""
    a, b, c = 2.0, 3.0, 0.04
    lrp = LowRankPrior("W", (4, 5, 6), (2, 3, 2), format="tucker", prior="gamma",
                       prior_params={"a": a, "b": b, "core_variance": c})
    values = random_values(lrp, batch=2, seed=3)
    got = lrp.log_prob(values)
    for i in range(2):
        expected = stats.norm(0, np.sqrt(c)).logpdf(values["W.core"][i].numpy()).sum()
        for n in range(3):
            prec = values[f"W.precision{n}"][i].numpy()
            expected += stats.gamma(a, scale=1 / b).logpdf(prec).sum()
            f = values[f"W.factor{n}"][i].numpy()
            expected += stats.norm(0, 1 / np.sqrt(prec)[None, :]).logpdf(f).sum()
        assert float(got[i]) == pytest.approx(expected, rel=1e-6)
        ref = pyro_log_prob(lrp, {k: v[i] for k, v in values.items()})
        assert float(got[i]) == pytest.approx(float(ref), rel=1e-9)
    assert lrp.slice_counts() == {"W.precision0": 4, "W.precision1": 5, "W.precision2": 6}


def test_core_variance_is_for_tucker_only():
    with pytest.raises(ValueError, match="core_variance applies to the Tucker format"):
        LowRankPrior("W", (4, 5, 6), 2, format="cp", prior_params={"core_variance": 0.1})
    with pytest.raises(ValueError, match="core_variance"):
        LowRankPrior("W", (4, 5, 6), 2, format="tucker", prior_params={"core_variance": -1.0})


def test_rank_posterior_names_a_bad_dim_or_probability():
    scales = [torch.tensor([[[4.0, 1.0, 0.01]]]), torch.tensor([[[2.0, 0.0]]])]
    ranks = rank_posterior(scales)
    assert ranks.keep_mask(1).tolist() == [True, False]
    for call in (lambda: ranks.keep_mask(2), lambda: ranks.activity(-1),
                 lambda: ranks.distribution(1.0)):
        with pytest.raises(ValueError, match=r"^dim: expected a rank dimension in \[0, 2\)"):
            call()
    for prob in (1.5, -0.1, "0.5"):
        with pytest.raises(ValueError, match="^min_prob: expected a finite number in"):
            ranks.keep_mask(0, min_prob=prob)


def test_rank_posterior_floor_zeroes_the_draws_without_signal():
    """Draws whose signal is at most the threshold have rank 0 and no active slice; the
    others keep the relative rule."""
    scales = [torch.tensor([[[4.0, 1.0, 0.01], [4.0, 1.0, 0.01]]])]
    ranks = rank_posterior(scales, 0.05, signal=torch.tensor([[0.5, 0.05]]))
    assert ranks.ranks[..., 0].tolist() == [[2, 0]]
    assert ranks.activity(0).tolist() == [0.5, 0.5, 0.0]
    assert rank_posterior(scales).ranks[..., 0].tolist() == [[2, 2]]


def test_active_per_dim_is_the_rule_the_rank_posterior_counts():
    """Against NumPy: a slice is active where its scale exceeds the threshold times the
    largest of its rank dimension and its sample's signal exceeds the threshold."""
    gen = torch.Generator().manual_seed(0)
    scales = [torch.rand(2, 5, r, generator=gen) ** 4 for r in (3, 6)]
    signal = torch.rand(2, 5, generator=gen) * 0.1
    active = active_per_dim(scales, 0.05, signal)
    for s, a in zip(scales, active):
        s = s.numpy()
        expected = (s > 0.05 * s.max(-1, keepdims=True)) & (signal.numpy() > 0.05)[..., None]
        assert a.numpy().tolist() == expected.tolist()
    ranks = rank_posterior(scales, 0.05, signal=signal)
    assert ranks.ranks.tolist() == torch.stack([a.sum(-1) for a in active], -1).tolist()
    assert ranks.activity(1).tolist() == active[1].reshape(10, 6).double().mean(0).tolist()
    with pytest.raises(ValueError, match="^scales: expected one tensor per rank dimension"):
        active_per_dim([])
    with pytest.raises(ValueError, match=r"^signal: expected shape \(2, 5\)"):
        active_per_dim(scales, 0.05, signal[0])
    with pytest.raises(ValueError, match="^threshold"):
        active_per_dim(scales, 1.5)

"""ArviZ groups (log-likelihood, observed data, predictive, dims, lp), LOO comparison, PIT."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import arviz as az
import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
import pytest
import torch
from click.testing import CliRunner
from scipy import stats

import bayestensor as bt
from bayestensor.cli.compare import compare_cmd
from bayestensor.data.regression import synthetic_image_regression
from bayestensor.report.api import save_posterior_run
from bayestensor.results import arviz_adapter
from bayestensor.results.comparison import ParetoKWarning, compare_runs
from bayestensor.viz.ppc import loo_pit_values, pit_values, plot_loo_pit

CHAINS, DRAWS = 2, 25


def _jittered(model, scale: float, seed: int) -> dict:
    """``(CHAINS, DRAWS, ...)`` draws around the model's start (positive sites stay positive)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, value in model.init_values(seed=0).items():
        value = torch.as_tensor(value, dtype=torch.float64)
        eps = scale * torch.randn((CHAINS, DRAWS) + tuple(value.shape), generator=gen,
                                  dtype=torch.float64)
        positive = "precision" in name  # the noise and the slice precisions
        out[name] = value * eps.exp() if positive else value + eps
    return out


def completion_posterior(fmt="cp", max_rank=3, seed=0, method="sghmc"):
    data = bt.data.synthetic_tensor((6, 5, 4), rank=2, observed=0.5, seed=0)
    model = bt.TensorCompletion(data.shape, fmt, max_rank=max_rank)
    model.set_data(data.train)
    samples = _jittered(model, 0.02, seed)
    potential = torch.randn(CHAINS, DRAWS, dtype=torch.float64)
    return bt.Posterior(samples, {"potential": potential}, method, model, {"seed": seed})


def regression_posterior(likelihood="gaussian", n_outputs=None, seed=0):
    gen = np.random.default_rng(0)
    X = gen.normal(size=(40, 4, 3))
    if likelihood == "bernoulli":
        y = (X[:, 0, 0] + gen.normal(size=40) > 0).astype(float)
    else:
        y = 2.0 * X[:, 0, 0] - X[:, 1, 2] + 3.0 + 0.5 * gen.normal(size=(40,))
        if n_outputs:
            y = np.stack([y, -y + gen.normal(size=40)], 1)
    model = bt.TensorRegression((4, 3), max_rank=2, likelihood=likelihood, n_outputs=n_outputs)
    model.set_data((X, y))
    return bt.Posterior(_jittered(model, 0.02, seed), {}, "vi", model)


class _MCMCLike:
    """What ``az.from_pyro`` reads from a ``pyro.infer.MCMC`` run: our draws, the model."""

    def __init__(self, model, samples, args):
        self.kernel = type("Kernel", (), {"model": staticmethod(model)})()
        self._samples, self._args, self._kwargs = samples, args, {}
        self.num_chains, self.num_samples = CHAINS, DRAWS

    def get_samples(self, group_by_chain=False):
        if group_by_chain:
            return self._samples
        return {k: v.reshape((-1,) + tuple(v.shape[2:])) for k, v in self._samples.items()}

    def diagnostics(self):
        return {"divergences": {f"chain {c}": [] for c in range(CHAINS)}}


def _from_pyro_loglik(post):
    """Pyro's pointwise log-likelihood (through ``az.from_pyro``) of the standardized model."""
    model = post.model
    inputs, y = model.model_args()
    inputs = inputs.double() if inputs.is_floating_point() else inputs
    mcmc = _MCMCLike(model.pyro_model, post.samples, (inputs, y.double()))
    # from_pyro first runs the model from its prior (only to read the observed values); the
    # vague Gamma hyperpriors underflow there, so that one run is not validated.
    # The prior's draws are made in float64 like our draws and the data.
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with pyro.validation_enabled(False):
            idata = az.from_pyro(mcmc)
    finally:
        torch.set_default_dtype(default)
    return np.asarray(idata.log_likelihood["y"])


def _traced_loglik(post):
    """Pyro's pointwise log-likelihood by one ``poutine.trace`` per draw (the regression model's
    intercept does not broadcast over a vectorized draw dimension, so ``from_pyro`` cannot
    vectorize it)."""
    model = post.model
    inputs, y = model.model_args()
    inputs = inputs.double() if inputs.is_floating_point() else inputs
    out = []
    for draw in range(CHAINS * DRAWS):
        values = {k: v[draw] for k, v in post.flat_samples().items()}
        tr = pyro.poutine.trace(pyro.poutine.condition(model.pyro_model, values)).get_trace(
            inputs, y.double())
        out.append(tr.nodes["y"]["fn"].log_prob(tr.nodes["y"]["value"]).detach().numpy())
    return np.stack(out).reshape(CHAINS, DRAWS, -1)


@pytest.mark.parametrize("make, scale", [
    (lambda: completion_posterior("cp"), lambda m: m.scale),
    (lambda: completion_posterior("tt"), lambda m: m.scale),
    (lambda: regression_posterior("gaussian"), lambda m: m.y_scale),
    (lambda: regression_posterior("gaussian", n_outputs=2), lambda m: m.y_scale),
    (lambda: regression_posterior("bernoulli"), lambda m: 1.0),
])
def test_pointwise_log_likelihood_matches_az_from_pyro(make, scale):
    post = make()
    ours = np.asarray(post.to_arviz().log_likelihood["y"])
    # ArviZ 1.x has no from_pyro: there the completion model is traced draw by draw too.
    vectorized = post.model.name == "completion" and hasattr(az, "from_pyro")
    oracle = (_from_pyro_loglik if vectorized else _traced_loglik)(post)
    n_out = post.model.n_outputs if hasattr(post.model, "n_outputs") and post.model.n_outputs else 1
    # Ours is the density of the data in its own units: the standardized density times the
    # Jacobian 1 / scale of every response value.
    expected = oracle - n_out * math.log(scale(post.model))
    assert ours.shape == (CHAINS, DRAWS, post.model.n_data())
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)


def test_completion_groups_dims_and_observed_data():
    post = completion_posterior("cp")
    idata = post.to_arviz(posterior_predictive=True, seed=1)
    for name in ("posterior", "sample_stats", "log_likelihood", "observed_data",
                 "posterior_predictive"):
        assert arviz_adapter.has_group(idata, name), name
    assert idata.posterior["X.factor0"].dims == ("chain", "draw", "mode0", "rank0")
    assert idata.posterior["X.factor2"].dims == ("chain", "draw", "mode2", "rank0")
    assert idata.posterior.sizes["mode1"] == 5 and idata.posterior.sizes["rank0"] == 3
    np.testing.assert_allclose(idata.observed_data["y"], post.model.observations.values, rtol=1e-6)
    np.testing.assert_array_equal(idata.sample_stats["lp"], -post.sample_stats["potential"].numpy())
    # Replicates are Normal(entry, noise sd) in data units: standardized residuals ~ N(0, 1).
    d = post.model.observation_distribution(post.flat_samples())
    rep = torch.as_tensor(np.asarray(idata.posterior_predictive["y"])).reshape(d.loc.shape)
    z = ((rep - d.loc) / d.scale).ravel().numpy()
    assert abs(z.mean()) < 4 / math.sqrt(z.size) and abs(z.std() - 1) < 0.05


def test_tucker_and_ttm_dims_are_consistent():
    for fmt, shape in (("tucker", (6, 5, 4)), ("ttm", (4, 3, 2, 3))):
        model = bt.TensorCompletion(shape, fmt, max_rank=2)
        dims = model.arviz_dims()
        sizes = {}
        for spec, site in zip(model.low_rank_prior.specs, model.low_rank_prior.param_sites):
            for name, size in zip(dims[site], spec.shape):
                assert sizes.setdefault(name, size) == size, (fmt, site, name)
        for k, n in enumerate(shape):
            assert sizes[f"mode{k}"] == n


def test_a_tucker_core_at_a_fixed_variance_keeps_its_rank_dims():
    # its core has no rank axes of its own prior; its dims are still the three ranks
    data = bt.data.synthetic_tensor((6, 5, 4), rank=2, seed=0)
    fixed = bt.TensorCompletion(data.shape, "tucker", max_rank=2,
                                prior_params={"core_variance": 1.0})
    product = bt.TensorCompletion(data.shape, "tucker", max_rank=2)
    assert fixed.arviz_dims() == product.arviz_dims()
    post = bt.fit(fixed, data.train, method="map", seed=0, progress=False)
    assert post.to_arviz().posterior["X.core"].dims[2:] == ("rank0", "rank1", "rank2")


def test_loo_and_compare_for_completion_and_regression():
    for make in (lambda s: completion_posterior(seed=s), lambda s: regression_posterior(seed=s)):
        a, b = make(0), make(1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # ArviZ's Pareto-k note
            loo = arviz_adapter.loo(a.to_arviz())
        ll = np.asarray(a.to_arviz().log_likelihood["y"]).reshape(CHAINS * DRAWS, -1)
        # With draws this close to one point, LOO is close to the in-sample lppd.
        lppd = np.sum(np.log(np.mean(np.exp(ll), 0)))
        assert abs(loo.elpd_loo - lppd) < 0.05 * abs(lppd) + 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ParetoKWarning)
            table = compare_runs({"a": a, "b": b})
        assert set(table.index) == {"a", "b"} and "pareto_k_bad" in table
        assert np.isclose(table.loc["a", "elpd_loo"], loo.elpd_loo)


def _user_model(x, y=None):
    w = pyro.sample("w", dist.Normal(0.0, 10.0))
    sigma = pyro.sample("sigma", dist.HalfNormal(5.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("obs", dist.Normal(w * x, sigma), obs=y)


def test_user_pyro_model_log_likelihood_loo_and_divergences(monkeypatch):
    torch.set_default_dtype(torch.float32)
    gen = torch.Generator().manual_seed(0)
    x = torch.linspace(-1, 1, 30)
    y = 1.5 * x + 0.3 * torch.randn(30, generator=gen)
    post = bt.fit(_user_model, method="nuts", num_samples=60, num_warmup=60, num_chains=2,
                  seed=0, progress=False, model_args=(x, y))
    idata = post.to_arviz()
    w = post["w"].double().numpy()[..., None]
    s = post["sigma"].double().numpy()[..., None]
    oracle = stats.norm.logpdf(y.double().numpy(), w * x.double().numpy(), s)
    np.testing.assert_allclose(np.asarray(idata.log_likelihood["obs"]), oracle, atol=1e-5)
    assert idata.sample_stats["diverging"].dtype == bool
    assert idata.sample_stats["diverging"].shape == (2, 60)
    assert int(idata.sample_stats["diverging"].sum()) == sum(post.info["divergences"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # ArviZ's Pareto-k note
        assert np.isfinite(arviz_adapter.loo(idata).elpd_loo)
    other = bt.Posterior({"w": post["w"] * 0 + 0.0, "sigma": post["sigma"]}, {}, "vi")
    other.attach_model(_user_model, (x, y))
    # Without its slope the model misfits the ends of the line: those points are influential
    # and their Pareto k is high, which the comparison must say.
    with pytest.warns(ParetoKWarning, match="'no slope'"):
        table = compare_runs({"slope": post, "no slope": other})
    assert table.index[0] == "slope"
    # a run's ArviZ data and LOO computed already (the report's own section) are reused,
    # not computed again
    known = arviz_adapter.loo(idata)
    calls = []
    real_loo = arviz_adapter.loo
    monkeypatch.setattr(arviz_adapter, "loo",
                        lambda data, *a, **k: calls.append(1) or real_loo(data, *a, **k))
    monkeypatch.setattr(post, "to_arviz", lambda *a, **k: pytest.fail("to_arviz again"))
    with pytest.warns(ParetoKWarning):
        again = compare_runs({"slope": post, "no slope": other},
                             prepared={"slope": (idata, known)})
    assert len(calls) == 1  # "no slope" only
    pd.testing.assert_frame_equal(again, table)


def test_deterministic_sites_go_to_the_posterior_not_the_likelihood():
    """``pyro.deterministic`` records a masked Delta as an observation: it is no datum. Its
    values per draw join the posterior group (as NumPyro's samples hold them); the
    log-likelihood holds the real observations alone, so ``az.loo`` needs no ``var_name``."""
    gen = torch.Generator().manual_seed(0)
    y = 2.0 + torch.randn(40, generator=gen)

    def model():
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        pyro.deterministic("twice_mu", 2 * mu)
        with pyro.plate("n", 40):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    post = bt.fit(model, method="sghmc", num_samples=100, num_chains=2, seed=0, progress=False)
    idata = post.to_arviz()
    assert list(idata.log_likelihood.data_vars) == ["y"]
    assert list(idata.observed_data.data_vars) == ["y"]
    np.testing.assert_allclose(np.asarray(idata.posterior["twice_mu"]),
                               2 * post["mu"].double().numpy(), rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # ArviZ's Pareto-k note
        assert np.isfinite(arviz_adapter.loo(idata).elpd_loo)


def test_summary_has_no_warnings_and_map_sd_is_zero():
    post = completion_posterior("cp", method="vi")
    point = bt.Posterior({k: v[:1, :1] for k, v in post.samples.items()}, {}, "map", post.model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = point.summary()
        vi = post.summary()
    assert (table["sd"] == 0).all() and not table.isna().any().any()
    assert "one point" in table.attrs["note"]
    np.testing.assert_allclose(table.loc["noise_precision", "mean"],
                               float(post["noise_precision"][0, 0]), rtol=1e-12)
    flat = post["noise_precision"].reshape(-1).numpy()
    assert np.isclose(vi.loc["noise_precision", "sd"], np.std(flat, ddof=1), rtol=0, atol=6e-4)
    assert not any(c.startswith(("r_hat", "ess")) for c in vi.columns)


def test_diagnostics_of_a_site_with_constant_elements_do_not_warn():
    """An ``LKJCholesky`` factor's first row and upper triangle are 1 and 0 in every draw:
    ArviZ's R-hat divides 0 by 0 there. Those elements are left out (NaN), without NumPy's
    warning reaching the user, and the varying elements agree with ArviZ's own numbers."""
    rng = np.random.default_rng(0)
    factor = np.zeros((4, 200, 3, 3))
    factor[..., 0, 0] = 1.0
    factor[..., 1, 0] = rng.normal(0.5, 0.05, (4, 200))
    factor[..., 1, 1] = np.sqrt(1 - factor[..., 1, 0] ** 2)
    factor[..., 2, :] = rng.dirichlet(np.ones(3), (4, 200)) ** 0.5
    post = bt.Posterior({"L": torch.as_tensor(factor)}, method="nuts")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check = post.diagnostics()
    from bayestensor.results.rank_normalized import rhat_and_bulk_ess  # ArviZ's, vectorized

    varying = np.stack([factor[..., i, j] for i, j in ((1, 0), (1, 1), (2, 0), (2, 1), (2, 2))],
                       axis=-1)
    assert check["max_rhat"] == pytest.approx(float(rhat_and_bulk_ess(varying)[0].max()),
                                              rel=1e-12)


def test_pit_figures_and_values():
    post = completion_posterior("cp")
    idata = post.to_arviz(posterior_predictive=True)
    pit = pit_values(idata)
    assert pit.shape == (post.model.n_data(),) and ((pit >= 0) & (pit <= 1)).all()
    loo_pit = loo_pit_values(idata)
    assert loo_pit.shape == pit.shape
    fig = plot_loo_pit(idata, bins=10)
    counts = [p.get_height() for p in fig.axes[0].patches if p.get_width() < 0.2]
    assert sum(counts) == post.model.n_data()


def test_loo_pit_rounding_is_set_to_the_bounds_and_the_rest_refused(monkeypatch):
    """ArviZ 1.x's LOO-PIT can exceed 1 by rounding (1 + 2.2e-16 seen with arviz-stats
    1.3.3): such values become the bound; a value truly outside [0, 1] is kept, and the
    histogram refuses it naming the range (the message once printed [nan, nan])."""
    from bayestensor.results import arviz_adapter
    from bayestensor.viz.ppc import plot_pit_histogram

    raw = np.array([1 + 2.2e-16, -1e-17, 0.5, 1.5])
    monkeypatch.setattr(arviz_adapter, "arviz_major", lambda: 1)
    monkeypatch.setattr(arviz_adapter, "_arviz",
                        lambda: type("AZ", (), {"loo_pit": staticmethod(
                            lambda data, var_names: {"y": raw})}))
    values = arviz_adapter.loo_pit(None, "y")
    assert values.tolist() == [1.0, 0.0, 0.5, 1.5]
    plot_pit_histogram(values[:3])
    with pytest.raises(ValueError, match=r"got 4 values in \[0.0, 1.5\]"):
        plot_pit_histogram(values)


def test_saved_runs_compare_from_the_command_line(tmp_path):
    dirs = []
    for seed in (0, 1):
        d = tmp_path / f"run{seed}"
        save_posterior_run(completion_posterior(seed=seed), d)
        dirs.append(str(d))
    loaded = bt.Posterior.load(tmp_path / "run0" / "posterior.pt")
    np.testing.assert_allclose(np.asarray(loaded.to_arviz().log_likelihood["y"]),
                               np.asarray(completion_posterior(seed=0).to_arviz().log_likelihood["y"]),
                               rtol=1e-6)
    out = tmp_path / "cmp"
    res = CliRunner().invoke(compare_cmd, dirs + ["--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "compare.csv").exists() and (out / "loo_pit-run0.png").exists()
    assert "| run0 |" in (out / "compare.md").read_text()


def test_compare_into_a_used_folder_needs_force_and_leaves_no_stale_figure(tmp_path):
    """A second comparison into the same --out once kept the first one's LOO-PIT figures
    beside its own; --out is now a run folder, refused when used and emptied by --force."""
    dirs = []
    for seed in (0, 1, 2):
        d = tmp_path / f"run{seed}"
        save_posterior_run(completion_posterior(seed=seed), d)
        dirs.append(str(d))
    out = tmp_path / "cmp"
    assert CliRunner().invoke(compare_cmd, dirs + ["--out", str(out)]).exit_code == 0
    again = CliRunner().invoke(compare_cmd, dirs[:2] + ["--out", str(out)])
    assert again.exit_code == 2 and "--out" in again.output and "--force" in again.output
    forced = CliRunner().invoke(compare_cmd, dirs[:2] + ["--out", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert sorted(p.name for p in out.glob("loo_pit-*.png")) == ["loo_pit-run0.png",
                                                                 "loo_pit-run1.png"]


def test_bad_input_is_named():
    post = completion_posterior()
    with pytest.raises(ValueError, match="posteriors"):
        compare_runs({"only": post})
    point = bt.Posterior({"a": torch.zeros(1, 1, 3)}, {}, "map")
    with pytest.raises(ValueError, match="one draw"):
        compare_runs({"map": point, "other": post})
    few = completion_posterior()
    few.samples = {k: v[:, :12] for k, v in few.samples.items()}  # 2 chains x 12 = 24 draws
    with pytest.raises(ValueError, match=r"posteriors\['few'\]: 24 draws; PSIS-LOO needs at least 25"):
        compare_runs({"few": few, "other": post})
    bare = bt.Posterior({"a": torch.zeros(1, 30)}, {}, "vi")
    with pytest.raises(ValueError, match="posterior_predictive"):
        bare.to_arviz(posterior_predictive=True)
    with pytest.raises(ValueError, match="no log-likelihood"):
        compare_runs({"x": bare, "y": bare})


def test_svgd_lp_and_stated_divergences():
    """SVGD's per-particle log density is ArviZ's lp; SGHMC and SVGD runs stop at a divergence,
    so their kept draws carry an all-False ``diverging`` (MAP has none recorded)."""
    data = bt.data.synthetic_tensor((6, 5, 4), rank=2, observed=0.5, seed=0)
    model = bt.TensorCompletion(data.shape, "cp", max_rank=3)
    post = bt.fit(model, data.train, method="svgd", num_samples=6, num_steps=30, progress=False)
    idata = post.to_arviz(log_likelihood=False)
    np.testing.assert_allclose(idata.sample_stats["lp"].values.ravel(),
                               post.sample_stats["log_density"].double().numpy().ravel())
    assert idata.sample_stats["diverging"].dtype == bool
    assert not idata.sample_stats["diverging"].values.any()
    sghmc = completion_posterior().to_arviz(log_likelihood=False)
    assert sghmc.sample_stats["diverging"].shape == (CHAINS, DRAWS)
    assert "diverging" not in completion_posterior(method="map").to_arviz(
        log_likelihood=False).sample_stats


def test_a_fit_and_its_predictions_do_not_import_arviz():
    """ArviZ (with xarray, pandas, matplotlib: seconds) loads on first use only."""
    code = ("import sys\n"
            "import bayestensor as bt\n"
            "data = bt.data.synthetic_tensor((6, 6, 6), rank=2, observed=0.5, seed=0)\n"
            "model = bt.TensorCompletion(data.shape, 'cp', max_rank=3)\n"
            "post = bt.fit(model, data.train, method='map', map_hold=None, progress=False)\n"
            "post.predict(data.test.indices)\n"
            "assert post.info['arviz'], post.info\n"
            "loaded = [m for m in ('arviz', 'xarray', 'pandas') if m in sys.modules]\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_arviz_import_survives_a_lost_race_on_its_daily_stamp(monkeypatch):
    """ArviZ 0.23's import renames a temporary stamp file; a process that loses that race to
    another importing at the same moment gets FileNotFoundError once. The adapter imports
    again and goes on."""
    import builtins

    real_import, calls = builtins.__import__, []

    def racing_import(name, *args, **kwargs):
        if name == "arviz":
            calls.append(name)
            if len(calls) == 1:
                raise FileNotFoundError("daily_warning.tmp -> daily_warning")
        return real_import(name, *args, **kwargs)

    arviz_adapter._arviz.cache_clear()
    monkeypatch.setattr(builtins, "__import__", racing_import)
    try:
        assert arviz_adapter._arviz() is az and calls == ["arviz", "arviz"]
    finally:
        monkeypatch.undo()
        arviz_adapter._arviz.cache_clear()

"""Hierarchical scales near 0: the eight schools (Rubin 1981) in its centred and non-centred
forms, and a prior with mass beyond float32's range.

Before these checks MAP, VI and SVGD on the centred form returned the spike at tau = 4e-8 with
every draw equal (mu's sd 0.0) and no warning, and SGHMC's chains on the non-centred form often
ended with tau = 0 in float in every draw (6 of 8 runs of 2 x 300 or 2 x 1000 draws, seeds
0-3), which R-hat skipped (its value there is NaN) and so called converged. The reference
posterior (NUTS, 4 x 500 draws of the non-centred form): mu 4.45 (sd 3.4), tau median 2.8.
"""

import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch

import bayestensor as bt
from bayestensor.infer import NotConvergedWarning, SaturatedDrawsWarning
from bayestensor.infer.log_density import LogDensity
from bayestensor.infer.mode_checks import rising_sites

Y = torch.tensor([28.0, 8, -3, 7, -1, 1, 18, 12])
SIGMA = torch.tensor([15.0, 10, 16, 11, 9, 11, 10, 18])


def centred(y=Y, sigma=SIGMA):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("school", 8):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def non_centred(y=Y, sigma=SIGMA):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("school", 8):
        eta = pyro.sample("eta", dist.Normal(0.0, 1.0))
        pyro.sample("obs", dist.Normal(mu + tau * eta, sigma), obs=y)


def test_the_map_of_the_centred_eight_schools_is_called_a_spike():
    with pytest.warns(NotConvergedWarning, match="a spike, not a mode.*'theta'.*non-centred"):
        post = bt.fit(centred, method="map", progress=False)
    assert post.info["map_converged"] is False
    assert float(post.samples["tau"]) < 1e-5  # the point is still what the optimizer found


def test_vi_does_not_start_in_the_spike():
    """VI started at the spike kept every draw there (mu's sd 0.0); from a prior draw it finds
    the posterior's region (mean-field, so narrower than NUTS's sd 3.4)."""
    with pytest.warns(NotConvergedWarning, match="the MAP start is no start"):
        post = bt.fit(centred, method="vi", progress=False, seed=1)
    mu, tau = post.samples["mu"].flatten(), post.samples["tau"].flatten()
    assert 1.0 < float(mu.mean()) < 7.0 and float(mu.std()) > 0.5
    assert float(tau.median()) > 0.5


def test_a_map_stopped_on_the_ridge_down_to_the_spike_is_not_a_mode():
    """On seed 2 Adam stopped at tau = 1.5e-4, 400 float spacings wide, and called it
    converged; VI and SVGD then kept every draw there. How far down Adam gets depends on the
    machine's float arithmetic (on one machine that ridge point, on another tau = 1e-8, the
    spike itself); either end must be flagged as no mode, and the point kept."""
    with pytest.warns(NotConvergedWarning, match="not a mode"):
        post = bt.fit(centred, method="map", progress=False, seed=2)
    assert post.info["map_converged"] is False
    assert float(post.samples["tau"]) < 1e-2  # the point is still what Adam found


def test_the_ridge_point_rises_toward_the_spike():
    """At tau = 1.5e-4 with the effects at mu, the MAP's objective, the effects re-fitted,
    still gains 8 nats per unit of log tau further down: ``rising_sites`` names tau (the
    point Adam stopped at on seed 2, set here without the optimizer)."""
    target = LogDensity(centred)
    theta = target.unconstrain({"mu": torch.tensor(4.4), "tau": torch.tensor(1.5e-4),
                                "theta": torch.full((8,), 4.4)})
    rising = rising_sites(target, theta)
    assert list(rising) == ["tau"]
    assert rising["tau"][0] == pytest.approx(8.0, abs=0.5)


def test_far_out_modes_are_modes():
    """Sites far from 0 unconstrained at a real mode: the profile falls further out."""
    def model():
        pyro.sample("scale", dist.LogNormal(5.0, 0.1))
        p = pyro.sample("p", dist.Beta(60.0, 1.0))
        pyro.sample("k", dist.Binomial(200, p), obs=torch.tensor(199.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotConvergedWarning)
        post = bt.fit(model, method="map", progress=False)
    assert post.info["map_converged"] is True
    assert float(post.samples["p"]) > 0.98 and float(post.samples["scale"]) > 100
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotConvergedWarning)
        assert bt.fit(non_centred, method="map", progress=False).info["map_converged"] is True


def test_a_narrow_float64_site_is_no_spike():
    """A posterior sd of 1e-8 at values 0-5 is 1e7 float64 spacings wide: a mode."""
    def model():
        pyro.sample("tight", dist.Normal(torch.arange(6.0, dtype=torch.float64), 1e-8)
                    .to_event(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotConvergedWarning)
        post = bt.fit(model, method="map", progress=False)
    assert post.info["map_converged"] is True


@pytest.mark.parametrize("seed", [0, 2])
def test_sghmc_chains_of_a_users_model_start_within_reach(seed):
    """A start spread by the Laplace sd at a flat MAP (10 units of log tau) sent a chain to
    tau = 1,190, whose first step moved log tau by -2,000: tau was 0 in float in all its
    draws. Spread by at most one unit (``USER_SPREAD_SD``) the chains stay in reach."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotConvergedWarning)
        post = bt.fit(non_centred, method="sghmc", num_samples=300, num_chains=2, seed=seed,
                      progress=False)
    assert "saturated_draws" not in post.info
    assert 1.0 < float(post.samples["tau"].median()) < 6.0


def test_a_positive_site_at_a_flat_map_starts_at_most_a_unit_away():
    """The mechanism behind the test above: one step of 1e-8 from the start shows where each
    chain began. At the non-centred MAP log tau's Laplace sd is 10 (the curvature floor);
    the start moves it by at most ``USER_SPREAD_SD`` = 1 sd, while a real site (mu, eta)
    keeps its Laplace spread."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotConvergedWarning)
        post = bt.fit(non_centred, method="sghmc", num_chains=8, num_warmup=0, num_samples=1,
                      lr=1e-8, adapt_step=False, seed=0, progress=False)
    log_tau = post.samples["tau"][:, 0].double().log()
    assert 0.3 < float(log_tau.std()) < 1.5  # sd 10 before the cap
    assert float(post.samples["mu"][:, 0].double().std()) > 1.5  # mu's own Laplace sd: 5


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sghmc_at_its_defaults_keeps_tau_off_zero_on_the_non_centred_form(seed):
    """At the flat MAP log tau's curvature is floored, which sets a step fit for a posterior
    sd of 10; chains that then swung out to tau = 100 before the first re-estimate (10% of
    burn-in) met a gradient of -550 and were thrown to tau = 0 in float, on each of these
    seeds at 4 x 1,000 draws. A user's chains re-estimate the curvature early, once they have
    moved (``EARLY_ADAPT_FRACTIONS``), and draw on while they fail their check (R-hat 1.03-1.12
    at 1,000 draws); chains that still fail are pointed to NUTS, which suits a model this
    small."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post = bt.fit(non_centred, method="sghmc", seed=seed, progress=False)
    assert "saturated_draws" not in post.info
    assert post.info["convergence_checks"][0]["draws"] == 1000 and post.num_draws > 1000
    told = [str(w.message) for w in caught
            if issubclass(w.category, bt.infer.ChainsNotConvergedWarning)]
    assert post.info["convergence_checks"][-1]["converged"] or (
        len(told) == 1 and "for a model of 10 parameters on its full data, method='nuts'"
        in told[0])
    assert 1.0 < float(post.samples["tau"].median()) < 6.0
    assert 3.0 < float(post.samples["mu"].mean()) < 6.0  # NUTS: 4.5 (sd 3.2)


def test_svgd_says_when_its_particles_have_not_settled():
    """SVGD has no rounds to compare; its particles settle where the pull to high density and
    their repulsion cancel (the Stein direction phi = 0). Twenty steps from prior draws end
    with phi 87% of its terms' size, and the centred form's particles, drawn down the
    spike, at 87% after 500 steps (99% after 2,000); the non-centred form at its defaults
    settles (1-2%)."""
    with pytest.warns(NotConvergedWarning, match="did not settle in 20 steps"):
        early = bt.fit(non_centred, method="svgd", num_steps=20, init_from="prior", seed=0,
                       progress=False)
    assert early.info["svgd_converged"] is False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spike = bt.fit(centred, method="svgd", seed=0, progress=False)
    assert any("did not settle" in str(w.message) for w in caught)
    assert spike.info["svgd_converged"] is False
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotConvergedWarning)
        settled = bt.fit(non_centred, method="svgd", seed=0, progress=False)
    assert settled.info["svgd_converged"] is True
    assert float(settled.info["final_kernel_stats"]["stein_ratio"]) < 0.05
    assert 3.5 < float(settled.samples["mu"].mean()) < 5.5  # NUTS: 4.53


def beta_prior():
    pyro.sample("p", dist.Beta(0.02, 0.02))


def test_draws_at_a_saturated_transform_fail_the_check_and_are_named():
    """A Beta(0.02, 0.02) puts a sixth of its mass below float32's smallest number on each
    side: the draws there are 0 or 1, which R-hat cannot assess."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post = bt.fit(beta_prior, method="sghmc", num_samples=200, num_warmup=200,
                      num_chains=2, progress=False)
    saturated = [w for w in caught if issubclass(w.category, SaturatedDrawsWarning)]
    assert len(saturated) == 1 and "site 'p' in" in str(saturated[0].message)
    assert not any(issubclass(w.category, bt.infer.ChainsNotConvergedWarning) for w in caught)
    count = post.info["saturated_draws"]["p"]
    p = post.samples["p"].flatten()
    # at Pyro's clamps [tiny, 1 - eps], or near 1 where 1 - p has too few bits left to map
    # back to its logit within 1e-3
    edge = torch.finfo(p.dtype)
    at_clamp = int(((p <= edge.tiny) | (p >= 1 - edge.eps)).sum())
    assert count >= at_clamp > 0 and count <= int(((p < 1e-30) | (p > 1 - 1e-5)).sum())
    check = post.diagnostics()
    assert check["converged"] is False and check["saturated_draws"] == {"p": count}


def test_saturation_is_where_the_round_trip_misses():
    target = LogDensity(non_centred)
    theta = torch.zeros(3, target.dim)
    tau = next(s for s in target.sites if s.name == "tau")
    theta[1, tau.offset] = -200.0  # exp(-200) is 0 in float32
    theta[2, tau.offset] = -50.0   # small, still represented
    found = target.saturated_sites(theta)
    assert list(found) == ["tau"] and found["tau"].tolist() == [False, True, False]
    assert target.saturated_sites(theta, exempt=["tau"]) == {}

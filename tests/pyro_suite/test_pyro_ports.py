"""Pyro's known-answer inference tests, ported onto ``bt.fit`` (issue 18).

``bt.fit`` promises that any Pyro model with continuous latents runs under every method. This
module re-states the known-answer models of Pyro's own test suite -- ``tests/infer/test_svgd.py``,
``tests/infer/mcmc/test_hmc.py``, ``tests/infer/mcmc/test_nuts.py`` and
``tests/infer/test_inference.py`` (read from the pyro-ppl/pyro repository; the models, exact
posteriors, data generation and assertions here are our own code) -- and checks each under
NUTS, SGHMC, VI and SVGD (and MAP where the answer is a mode).

Tolerances
----------
Pyro's ``assert_equal(actual, expected, prec)`` means: same size, largest absolute error
``<= prec``. Each case says where its tolerance comes from:

* ``pyro``: Pyro's tolerance, used as is. Pyro wrote it for the sample mean of an MCMC run
  (test_hmc.py / test_nuts.py), so it applies as is to every method.
* ``mcse``: Pyro wrote it for particles (test_svgd.py) or a guide parameter
  (test_inference.py). SVGD and MAP get Pyro's number as is; methods with random draws (NUTS,
  SGHMC, VI) get ``max(pyro_tol, 4 * MCSE)``, the MCSE from ArviZ's ``az.mcse`` of the draws
  (chains x draws). For a statistic ``g(mean, var)`` (e.g. a moment-matched Gamma's
  ``log alpha``) the MCSE is carried by a first-order (delta-method) bound
  ``|dg/dm| MCSE(m) + |dg/dv| MCSE(v)``, with ``MCSE(v)`` the MCSE of ``(x - mean)**2``; for a
  sum of squared errors over ``k`` coordinates the widened tolerance is
  ``max(pyro_tol, sum_k (4 MCSE_k)**2)``.

Where Pyro compared with the *true* parameter that generated the data, this port compares with
the exact posterior mean of the data it generates (closed form, quadrature for
``gamma_normal`` / ``gamma_beta``, importance sampling from a Laplace proposal for
``logistic_regression``), which is what a correct sampler estimates.

Ported (Pyro test -> case here)
-------------------------------
test_svgd.py: ``test_mean_variance`` (4 latents; univariate/multivariate -> our SVGD
``blocks="coordinate"`` / ``"all"``; RBF/IMQ -> ``kernel="rbf"/"imq"``), ``test_shapes`` (4
shapes; float64; our known answer: z1 = exp(mean), z2 = mean to 1e-6 for every draw, plus our own
check that the N(0, 1) ``scalar`` site has mean 0 and variance 1), ``test_conjugate`` (Pyro's
particles carry the ``rates`` plate as a leading dim, ``(200, 1, 3)``, so its ``mean(0)[0]``
is all three rates; so is the port's check).
test_nuts.py / test_hmc.py: ``test_nuts_conjugate_gaussian`` (the four GaussianChain cases, NUTS
tolerances, plus test_hmc.py's ``num_obs=100`` case; exact posterior from the chain's precision
matrix), ``test_logistic_regression``, ``test_beta_bernoulli``, ``test_gamma_normal``,
``test_dirichlet_categorical``, ``test_gamma_beta``, ``test_beta_binomial`` and
``test_gamma_poisson`` (``hyperpriors=False``, un-collapsed: the conjugate pair written out),
``test_unnormalized_normal`` (the potential as a model: z ~ N(5, 1)).
test_inference.py: ``NormalNormalTests``, ``PoissonGammaTests``, ``ExponentialGammaTests``,
``BernoulliBetaTests``, ``LogNormalNormalTests`` (incl. ``test_elbo_with_transformed_distribution``).
Discrete latents (test_nuts.py ``test_gaussian_mixture_model``, ``test_bernoulli_latent_model``,
``test_gaussian_hmm``; test_hmc.py ``test_bernoulli_latent_model``) -> a clear refusal.

Not ported: test_hmc.py's ``test_logistic_regression`` variant with a ``pyro.param`` inside the
model (a learnable prior mean, no fixed posterior); ``test_beta_binomial`` /
``test_gamma_poisson`` with ``hyperpriors=True`` (HalfCauchy hyperpriors: no closed-form
posterior, Pyro checks them through ``collapse_conjugate``); the non-reparameterized and RSVI
variants of test_inference.py (they test guide gradient estimators, the posterior is the same
as the reparameterized case); ``SafetyTests`` / ``TestFixedModelGuide`` (guides and the param
store, which ``bt.fit`` does not expose).

Pyro's own SVGD on test_svgd.py (pyro 1.9.2, that test's settings; side script
``/tmp/pyro_suite_runs/pyro_svgd_side.py``, seed 0) passes all 28 cases: the 16 of
``test_mean_variance``, the 8 of ``test_shapes`` (trivially: at ``lr=0`` its particles stay at
the prior draws it starts from) and the 4 of ``test_conjugate``. ``PYRO_SVGD_PASSES`` lists
them; our SVGD is required to pass all of them (with 200 particles like Pyro's, 7 for
``test_shapes``, otherwise our defaults: a MAP start, then 500 steps).

VI is mean-field Gaussian in unconstrained space. Cases it cannot represent are
``xfail(strict=True)`` with the reason: ``correlated posterior`` only where the optimal
mean-field Gaussian's marginal sds (``1 / sqrt(diag(precision))``) miss the test's tolerance.

Speed: the whole port is marked ``pyro_port`` (about 8 minutes on 2 cores; ``make test``, and so
CI, runs it, a plain ``pytest`` does not; every case passes, see docs/benchmarks.md); the unmarked tests at the
bottom are the fast subset (issue items 1, 2, 4, 5, 7 with one method each, the discrete refusal and the warning
checks). Set ``PYRO_SUITE_LOG=/path/file.jsonl`` to record every measured number.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import bayestensor as bt

#: The full port: about 8 minutes on 2 cores, so it is its own marker, which a plain ``pytest``
#: leaves out and ``make test`` (or ``make pyro-port``) runs.
port = pytest.mark.pyro_port

# --- run settings -------------------------------------------------------------------------------

#: Method settings of the port: defaults, with run lengths kept small and seeds fixed.
RUNS = {
    "nuts": dict(method="nuts", num_samples=300, num_chains=2),
    "sghmc": dict(method="sghmc", num_samples=500, num_chains=4),
    "vi": dict(method="vi", num_samples=1000),
    "svgd": dict(method="svgd"),
    "map": dict(method="map"),
}
MCSE_MULTIPLE = 4
RANDOM_DRAWS = {"nuts", "sghmc", "vi"}  # methods whose statistics carry Monte Carlo error


def _fit(model, method: str, args=(), seed: int = 0, **extra):
    kwargs = {**RUNS[method], **extra}
    return bt.fit(model, model_args=args, seed=seed, progress=False, **kwargs)


def _seeded(seed: int, fn: Callable):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return fn()


# --- statistics with their Monte Carlo standard errors -----------------------------------------

def _draws(post, site) -> np.ndarray:
    """``(chains, draws, k)`` float64 numpy array of a site's draws, flattened per draw."""
    x = post.samples[site].detach().double()
    return x.reshape(x.shape[0], x.shape[1], -1).numpy()


def _mcse(x: np.ndarray) -> np.ndarray:
    """Per-coordinate MCSE of the mean of ``x`` ``(chains, draws, k)``."""
    if x.shape[0] * x.shape[1] < 4:
        return np.zeros(x.shape[-1])
    return np.array([float(az.mcse(np.ascontiguousarray(x[..., j]), method="mean"))
                     for j in range(x.shape[-1])])


def _moments(post, site):
    """Mean, unbiased variance and their MCSEs, per coordinate."""
    x = _draws(post, site)
    flat = x.reshape(-1, x.shape[-1])
    m = flat.mean(0)
    v = flat.var(0, ddof=1) if flat.shape[0] > 1 else np.zeros_like(m)
    return m, v, _mcse(x), _mcse((x - m) ** 2)


def _delta_mcse(g, m, v, se_m, se_v):
    """First-order bound on the MCSE of ``g(m, v)`` (elementwise)."""
    base = g(m, v)
    return np.abs(g(m + se_m, v) - base) + np.abs(g(m, np.maximum(v + se_v, 1e-300)) - base)


@dataclass
class Check:
    """One assertion: ``measured <= tol`` (``measured`` an error), with where ``tol`` came from."""

    label: str
    measured: float
    tol: float
    source: str

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.measured) and self.measured <= self.tol)


def max_err(post, method, site, stat, exact, pyro_tol, source, label=None) -> Check:
    """``max |stat - exact|`` for ``stat`` in {"mean", "var"}; tolerance per ``source``."""
    m, v, se_m, se_v = _moments(post, site)
    exact = np.asarray(exact, dtype=np.float64).reshape(-1)
    got, se = (m, se_m) if stat == "mean" else (v, se_v)
    err = np.abs(got - exact)
    tol = pyro_tol
    if source == "mcse" and method in RANDOM_DRAWS:
        # the largest error must fit its own coordinate's widened tolerance
        tols = np.maximum(pyro_tol, MCSE_MULTIPLE * se)
        worst = int(np.argmax(err - tols))
        return Check(label or f"{site} {stat} max|err|", float(err[worst]), float(tols[worst]),
                     source)
    return Check(label or f"{site} {stat} max|err|", float(err.max()), float(tol), source)


def stat_err(post, method, site, g, exact, pyro_tol, source, label, reduce="max") -> Check:
    """Error of a moment statistic ``g(mean, var)`` against ``exact``: max abs or sum of squares."""
    m, v, se_m, se_v = _moments(post, site)
    got = g(m, v)
    exact = np.asarray(exact, dtype=np.float64).reshape(-1)
    se = _delta_mcse(g, m, v, se_m, se_v)
    wide = source == "mcse" and method in RANDOM_DRAWS
    if reduce == "sumsq":
        measured = float(np.sum((got - exact) ** 2))
        tol = max(pyro_tol, float(np.sum((MCSE_MULTIPLE * se) ** 2))) if wide else pyro_tol
        return Check(label, measured, tol, source)
    err = np.abs(got - exact)
    tols = np.maximum(pyro_tol, MCSE_MULTIPLE * se) if wide else np.full_like(err, pyro_tol)
    worst = int(np.argmax(err - tols))
    return Check(label, float(err[worst]), float(tols[worst]), source)


def rmse_check(vec, exact, tol, label) -> Check:
    vec = np.asarray(vec, dtype=np.float64).reshape(-1)
    exact = np.broadcast_to(np.asarray(exact, dtype=np.float64).reshape(-1), vec.shape)
    return Check(label, float(np.sqrt(np.mean((vec - exact) ** 2))), float(tol), "pyro")


def _record(case_id: str, method: str, checks: list[Check], seconds: float, extra: str = ""):
    path = os.environ.get("PYRO_SUITE_LOG")
    if not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps({"case": case_id, "method": method, "seconds": round(seconds, 1),
                            "ok": all(c.ok for c in checks), "extra": extra,
                            "checks": [[c.label, c.measured, c.tol, c.source, c.ok]
                                       for c in checks]}) + "\n")


def _assert_checks(case_id, method, checks, seconds, extra=""):
    _record(case_id, method, checks, seconds, extra)
    bad = [f"{c.label}: {c.measured:.4g} > tol {c.tol:.4g} ({c.source})" for c in checks
           if not c.ok]
    assert not bad, f"{case_id} [{method}]: " + "; ".join(bad)


# --- test_svgd.py -------------------------------------------------------------------------------

LATENTS = {
    "normal2": lambda: dist.Normal(torch.zeros(2), torch.ones(2)).to_event(1),
    "lognormal1": lambda: dist.LogNormal(torch.tensor([-1.0]), torch.tensor([0.7])).to_event(1),
    "lognormal0": lambda: dist.LogNormal(torch.tensor(-1.0), torch.tensor(0.7)),
    "beta1": lambda: dist.Beta(torch.tensor([0.3]), torch.tensor([0.7])).to_event(1),
}

#: test_svgd.py cases that Pyro 1.9.2's own SVGD passes with that test's settings and
#: assertions (side script /tmp/pyro_suite_runs/pyro_svgd_side.py, seed 0): all 28.
PYRO_SVGD_PASSES: set[str] = (
    {f"test_mean_variance[{n}-{m}-{k}]" for n in ("normal2", "lognormal1", "lognormal0", "beta1")
     for m in ("univariate", "multivariate") for k in ("rbf", "imq")}
    | {f"test_shapes[{s}-{k}]" for s in ((1, 1), (2, 1, 3), (4, 2), (1, 2, 1, 3))
       for k in ("rbf", "imq")}
    | {f"test_conjugate[{m}-{k}]" for m in ("univariate", "multivariate") for k in ("rbf", "imq")})


def single_site_model(name):
    def model():
        pyro.sample("z", LATENTS[name]())
    return model


def check_mean_variance(post, method, name, mode="univariate"):
    d = LATENTS[name]()
    var_tol = 0.05 if mode == "multivariate" else 0.02
    return [max_err(post, method, "z", "mean", d.mean, 0.01, "mcse"),
            max_err(post, method, "z", "var", d.variance, var_tol, "mcse")]


SVGD_MODES = {"univariate": "coordinate", "multivariate": "all"}


def _svgd_case_marks(case_id):
    # Only the cases Pyro's SVGD passes are required of ours.
    if PYRO_SVGD_PASSES and case_id not in PYRO_SVGD_PASSES:
        return [pytest.mark.xfail(strict=False, reason="Pyro's own SVGD fails this case too")]
    return []


def _svgd_params(names, builder):
    out = []
    for args in names:
        case_id = builder(*args)
        out.append(pytest.param(*args, id=case_id, marks=_svgd_case_marks(case_id)))
    return out


def _mv_id(name, mode, kernel):
    return f"test_mean_variance[{name}-{mode}-{kernel}]"


MV_PARAMS = [(n, m, k) for n in LATENTS for m in SVGD_MODES for k in ("rbf", "imq")]


#: Cases where even the optimal mean-field Gaussian (min KL(q||p) in unconstrained space)
#: misses the tolerance the port applies. At the optimum E_q[sigmoid(u)] and E_q[exp(u)] are
#: exact for Beta and Gamma posteriors, so means always pass. The Gamma/Beta *shape*
#: (test_inference.py's log alpha, log beta) is worst for Gamma(3, 6): the optimum has
#: ``sigma**2 = 1/3`` in log space, so its moment-matched log alpha is 0.17 off. Pyro wrote 0.08
#: for a guide parameter; the port checks VI's draws against 4 MCSE of the moment estimate from
#: 1000 draws (about 0.45), which the optimum meets. Beta(0.3, 0.7): mean exact, variance 0.0115
#: off (<= 0.02). So no case of the port is out of a mean-field Gaussian's reach at the port's
#: tolerances except the correlated Gaussian chains (``GaussianChain.meanfield_misses``).
VI_NOT_REPRESENTABLE: dict[str, str] = {}


@port
@pytest.mark.parametrize("name, mode, kernel", _svgd_params(MV_PARAMS, _mv_id))
def test_svgd_mean_variance(name, mode, kernel):
    t = time.perf_counter()
    post = _fit(single_site_model(name), "svgd", num_samples=200, blocks=SVGD_MODES[mode],
                kernel=kernel)
    _assert_checks(_mv_id(name, mode, kernel), "svgd",
                   check_mean_variance(post, "svgd", name, mode), time.perf_counter() - t)


@port
@pytest.mark.parametrize("method", ["nuts", "sghmc", "vi"])
@pytest.mark.parametrize("name", list(LATENTS))
def test_mean_variance_samplers(name, method):
    key = f"mean_variance[{name}]"
    if method == "vi" and key in VI_NOT_REPRESENTABLE:
        pytest.xfail(VI_NOT_REPRESENTABLE[key])
    t = time.perf_counter()
    post = _fit(single_site_model(name), method, seed=1)
    _assert_checks(key, method, check_mean_variance(post, method, name),
                   time.perf_counter() - t)


SHAPES = [(1, 1), (2, 1, 3), (4, 2), (1, 2, 1, 3)]


def shapes_problem(shape):
    shape1, shape2 = (5,) + shape, shape + (6,)
    m1 = torch.arange(math.prod(shape1), dtype=torch.float64).reshape(shape1) / 100.0
    m2 = torch.arange(math.prod(shape2), dtype=torch.float64).reshape(shape2)

    def model():
        pyro.sample("z1", dist.LogNormal(m1, 1.0e-8).to_event(len(shape1)))
        pyro.sample("scalar", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
        pyro.sample("z2", dist.Normal(m2, 1.0e-8).to_event(len(shape2)))
    return model, m1, m2


def check_shapes(post, method, shape):
    """Pyro's assertions (shapes; every draw of z1, z2 within 1e-6) plus ours on ``scalar``."""
    _, m1, m2 = shapes_problem(shape)
    checks = []
    c, s = post.samples["z1"].shape[:2]
    for site, ref in (("z1", m1.exp()), ("z2", m2)):
        x = post.samples[site]
        checks.append(Check(f"{site} shape ok", float(tuple(x.shape[2:]) != tuple(ref.shape)),
                            0.0, "pyro"))
        checks.append(Check(f"{site} is float64", float(x.dtype != torch.float64), 0.0, "ours"))
        checks.append(Check(f"{site} max|draw-exact|",
                            float((x.double() - ref).abs().max()), 1e-6, "pyro"))
    if method == "map":
        checks.append(Check("scalar |mode|", float(post.samples["scalar"].abs().max()), 0.01,
                            "ours"))
    else:
        checks.append(max_err(post, method, "scalar", "mean", 0.0, 0.15, "mcse"))
        if method != "svgd":  # 7 particles (Pyro's count) say little about a variance
            checks.append(max_err(post, method, "scalar", "var", 1.0, 0.25, "mcse"))
    return checks


def _shape_id(shape):
    return "x".join(map(str, shape))


@port
@pytest.mark.parametrize("kernel", ["rbf", "imq"])
@pytest.mark.parametrize("shape", SHAPES, ids=_shape_id)
def test_svgd_shapes(shape, kernel):
    case_id = f"test_shapes[{shape}-{kernel}]"
    if PYRO_SVGD_PASSES and case_id not in PYRO_SVGD_PASSES:
        pytest.xfail("Pyro's own SVGD fails this case too")
    t = time.perf_counter()
    model, _, _ = shapes_problem(shape)
    post = _fit(model, "svgd", num_samples=7, kernel=kernel)
    _assert_checks(case_id, "svgd", check_shapes(post, "svgd", shape), time.perf_counter() - t)


@port
@pytest.mark.parametrize("method", ["map", "vi", "nuts", "sghmc"])
@pytest.mark.parametrize("shape", SHAPES, ids=_shape_id)
def test_shapes_other_methods(shape, method):
    t = time.perf_counter()
    model, _, _ = shapes_problem(shape)
    post = _fit(model, method, seed=2)
    _assert_checks(f"shapes[{_shape_id(shape)}]", method, check_shapes(post, method, shape),
                   time.perf_counter() - t)


CONJ_DATA = torch.tensor([1.0, 2.0, 3.0, 3.0, 5.0]).unsqueeze(-1).expand(5, 3)
CONJ_A0 = torch.tensor([1.0, 1.8, 2.3])
CONJ_B0 = torch.tensor([2.3, 1.5, 1.2])


def gamma_poisson_rates_model(data):
    with pyro.plate("rates", CONJ_A0.shape[0]):
        rate = pyro.sample("latent", dist.Gamma(CONJ_A0, CONJ_B0))
        with pyro.plate("data", data.shape[0]):
            pyro.sample("obs", dist.Poisson(rate), obs=data)


def check_conjugate(post, method, mode="univariate"):
    exact = dist.Gamma(CONJ_A0 + CONJ_DATA.sum(0), CONJ_B0 + CONJ_DATA.shape[0])
    var_tol = 0.05 if mode == "multivariate" else 0.02
    return [max_err(post, method, "latent", "mean", exact.mean, 0.02, "mcse"),
            max_err(post, method, "latent", "var", exact.variance, var_tol, "mcse")]


def _conj_id(mode, kernel):
    return f"test_conjugate[{mode}-{kernel}]"


@port
@pytest.mark.parametrize("mode, kernel",
                         _svgd_params([(m, k) for m in SVGD_MODES for k in ("rbf", "imq")],
                                      _conj_id))
def test_svgd_conjugate(mode, kernel):
    t = time.perf_counter()
    post = _fit(gamma_poisson_rates_model, "svgd", args=(CONJ_DATA,), num_samples=200,
                blocks=SVGD_MODES[mode], kernel=kernel)
    _assert_checks(_conj_id(mode, kernel), "svgd", check_conjugate(post, "svgd", mode),
                   time.perf_counter() - t)


@port
@pytest.mark.parametrize("method", ["nuts", "sghmc", "vi"])
def test_conjugate_samplers(method):
    t = time.perf_counter()
    post = _fit(gamma_poisson_rates_model, method, args=(CONJ_DATA,), seed=3)
    _assert_checks("conjugate", method, check_conjugate(post, method), time.perf_counter() - t)


# --- test_nuts.py / test_hmc.py -----------------------------------------------------------------

@dataclass(frozen=True)
class GaussianChain:
    """loc_1 ~ N(0, 1), loc_i ~ N(loc_{i-1}, 1), obs ~ N(loc_L, 1) (num_obs rows of ones), per
    each of ``dim`` independent coordinates."""

    dim: int
    chain_len: int
    num_obs: int
    mean_tol: float
    std_tol: float
    pyro_samples: int = 800  # the Pyro test's own NUTS run: draws of one chain ...
    pyro_warmup: int = 200   # ... after this many warm-up steps

    @property
    def id(self):
        return f"dim={self.dim}_chain-len={self.chain_len}_num_obs={self.num_obs}"

    def model(self, data):
        loc = torch.zeros(self.dim)
        for i in range(1, self.chain_len + 1):
            loc = pyro.sample(f"loc_{i}", dist.Normal(loc, torch.ones(self.dim)).to_event(1))
        with pyro.plate("obs_plate", data.shape[0]):
            pyro.sample("obs", dist.Normal(loc, torch.ones(self.dim)).to_event(1), obs=data)

    @property
    def data(self):
        return torch.ones(self.num_obs, self.dim)

    def exact(self):
        """Posterior mean and precision matrix of one coordinate's chain (L,), (L, L)."""
        L = self.chain_len
        Q = torch.zeros(L, L, dtype=torch.float64)
        Q[0, 0] += 1.0
        for i in range(1, L):
            Q[i, i] += 1.0
            Q[i - 1, i - 1] += 1.0
            Q[i, i - 1] -= 1.0
            Q[i - 1, i] -= 1.0
        Q[L - 1, L - 1] += self.num_obs
        b = torch.zeros(L, dtype=torch.float64)
        b[L - 1] = float(self.num_obs)
        return torch.linalg.solve(Q, b), Q

    def meanfield_misses(self) -> bool:
        """Whether the optimal mean-field Gaussian (sd ``1/sqrt(Q_ii)``) misses ``std_tol``."""
        _, Q = self.exact()
        sd_true = torch.linalg.inv(Q).diag().sqrt()
        sd_mf = Q.diag().rsqrt()
        return bool((sd_mf - sd_true).abs().max() > self.std_tol)


GAUSSIAN_CHAINS = [  # test_nuts.py's four cases (NUTS tolerances and run lengths) and
    # test_hmc.py's num_obs=100 (HMC's)
    GaussianChain(10, 3, 1, 0.09, 0.09, 800, 200),
    GaussianChain(10, 4, 1, 0.07, 0.06, 1600, 200),
    GaussianChain(5, 2, 10000, 0.05, 0.05, 800, 200),
    GaussianChain(5, 9, 1, 0.08, 0.08, 1400, 200),
    GaussianChain(5, 2, 100, 0.08, 0.08, 2000, 1000),
]


def check_gaussian_chain(post, method, fx: GaussianChain):
    mean, Q = fx.exact()
    sd = torch.linalg.inv(Q).diag().sqrt()
    checks = []
    for i in range(1, fx.chain_len + 1):
        flat = post.samples[f"loc_{i}"].double().reshape(-1, fx.dim)
        checks.append(rmse_check(flat.mean(0), mean[i - 1], fx.mean_tol, f"loc_{i} rmse(mean)"))
        if method != "map":
            checks.append(rmse_check(flat.std(0), sd[i - 1], fx.std_tol, f"loc_{i} rmse(std)"))
    return checks


def _chain_params():
    reason = "correlated posterior: mean-field cannot represent"
    return [_case(fx, method, f"{fx.id}-{method}", reason if fx.meanfield_misses() else None)
            for fx in GAUSSIAN_CHAINS for method in ("nuts", "sghmc", "vi", "map")]


def _case(case, method: str, case_id: str, vi_reason: str | None):
    """One ``(case, method)`` parameter; VI is a strict xfail, with ``vi_reason``, where given."""
    marks = ([pytest.mark.xfail(strict=True, reason=vi_reason)]
             if method == "vi" and vi_reason else [])
    return pytest.param(case, method, id=case_id, marks=marks)


@port
@pytest.mark.parametrize("fx, method", _chain_params())
def test_conjugate_gaussian(fx, method):
    """NUTS runs as long as in Pyro's test (one chain); the others at the port's settings."""
    t = time.perf_counter()
    run = (dict(num_chains=1, num_samples=fx.pyro_samples, num_warmup=fx.pyro_warmup)
           if method == "nuts" else {})
    post = _fit(fx.model, method, args=(fx.data,), seed=4, **run)
    _assert_checks(f"conjugate_gaussian[{fx.id}]", method, check_gaussian_chain(post, method, fx),
                   time.perf_counter() - t)


def logistic_data(seed=3, n=2000, dim=3):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, dim, generator=g)
    true = torch.arange(1.0, dim + 1.0)
    y = torch.bernoulli(torch.sigmoid(X @ true), generator=g)
    return X, y, true


def logistic_model(X, y):
    coefs = pyro.sample("beta", dist.Normal(torch.zeros(X.shape[1]), 1.0).to_event(1))
    with pyro.plate("data", X.shape[0]):
        pyro.sample("y", dist.Bernoulli(logits=X @ coefs), obs=y)


def logistic_posterior_mean(X, y, num_draws: int = 200_000, seed: int = 0) -> torch.Tensor:
    """The posterior mean of ``logistic_model`` (prior N(0, 1)), float64, by importance sampling.

    Newton's method finds the mode; draws from the Laplace Gaussian there, its covariance
    doubled for safe tails, are weighted by posterior / proposal. Independent of ``bt.fit``.
    """
    X, y = X.double(), y.double()
    b = torch.zeros(X.shape[1], dtype=torch.float64)
    for _ in range(50):
        p = torch.sigmoid(X @ b)
        grad = -b + X.T @ (y - p)
        hess = torch.eye(len(b), dtype=torch.float64) + (X.T * (p * (1 - p))) @ X
        b = b + torch.linalg.solve(hess, grad)
    cov = 2.0 * torch.linalg.inv(hess)
    proposal = torch.distributions.MultivariateNormal(b, covariance_matrix=cov)
    draws = _seeded(seed, lambda: proposal.sample((num_draws,)))
    logits = draws @ X.T
    log_post = (-0.5 * (draws ** 2).sum(-1)
                + (y * logits - torch.nn.functional.softplus(logits)).sum(-1))
    w = torch.softmax(log_post - proposal.log_prob(draws), 0)
    return (w[:, None] * draws).sum(0)


@port
@pytest.mark.parametrize("method", ["nuts", "sghmc", "vi"])
def test_logistic_regression(method):
    """Pyro's check is the rmse to the coefficients that made the data (<= 0.1); on this data
    set the exact posterior mean itself is 0.15 from them (the N(0, 1) prior shrinks), so the
    port measures the rmse to the exact posterior mean, with Pyro's 0.1."""
    X, y, _ = logistic_data()
    t = time.perf_counter()
    post = _fit(logistic_model, method, args=(X, y), seed=5)
    mean = post.samples["beta"].double().reshape(-1, 3).mean(0)
    _assert_checks("logistic_regression", method,
                   [rmse_check(mean, logistic_posterior_mean(X, y), 0.1,
                               "rmse(posterior mean, mean)")], time.perf_counter() - t)


def beta_bernoulli_problem():
    data = _seeded(10, lambda: dist.Bernoulli(torch.tensor([0.9, 0.1])).sample((1000,)))

    def model(data):
        p = pyro.sample("p_latent", dist.Beta(torch.tensor([1.1, 1.1]),
                                              torch.tensor([1.1, 1.1])).to_event(1))
        with pyro.plate("data", data.shape[0]):
            pyro.sample("obs", dist.Bernoulli(p).to_event(1), obs=data)
    k = data.sum(0)
    exact = (1.1 + k) / (2.2 + data.shape[0])
    return model, (data,), {"p_latent": (exact, 0.02)}


def dirichlet_categorical_problem():
    data = _seeded(11, lambda: dist.Categorical(torch.tensor([0.1, 0.6, 0.3])).sample((2000,)))

    def model(data):
        p = pyro.sample("p_latent", dist.Dirichlet(torch.ones(3)))
        with pyro.plate("data", data.shape[0]):
            pyro.sample("obs", dist.Categorical(p), obs=data)
    counts = torch.bincount(data, minlength=3).double()
    return model, (data,), {"p_latent": ((1 + counts) / (3 + counts.sum()), 0.02)}


def _quad_mean_1d(logp, grid):
    lp = logp(grid)
    w = torch.exp(lp - lp.max())
    return float((w * grid).sum() / w.sum())


def gamma_normal_problem():
    data = _seeded(12, lambda: dist.Normal(3.0, torch.tensor([0.5, 2.0])).sample((2000,)))

    def model(data):
        sd = pyro.sample("p_latent", dist.Gamma(torch.ones(2), torch.ones(2)).to_event(1))
        with pyro.plate("data", data.shape[0]):
            pyro.sample("obs", dist.Normal(3.0, sd).to_event(1), obs=data)
    exact = []
    x = data.double()
    for j in range(2):
        s_hat = float(((x[:, j] - 3.0) ** 2).mean().sqrt())
        grid = torch.linspace(0.7 * s_hat, 1.4 * s_hat, 20001, dtype=torch.float64)
        lp = lambda s, j=j: (-s + torch.distributions.Normal(3.0, s.unsqueeze(-1))
                             .log_prob(x[:, j]).sum(-1))
        exact.append(_quad_mean_1d(lp, grid))
    return model, (data,), {"p_latent": (torch.tensor(exact), 0.05)}


def gamma_beta_problem():
    data = _seeded(13, lambda: dist.Beta(5.0, 1.0).sample((5000,)))
    assert bool((data < 1).all() and (data > 0).all())

    def model(data):
        a = pyro.sample("alpha", dist.Gamma(1.0, 1.0))
        b = pyro.sample("beta", dist.Gamma(1.0, 1.0))
        with pyro.plate("data", data.shape[0]):
            pyro.sample("x", dist.Beta(a, b), obs=data)
    x = data.double()
    n, s1, s2 = x.numel(), float(x.log().sum()), float(torch.log1p(-x).sum())
    A = torch.linspace(3.5, 7.0, 701, dtype=torch.float64).unsqueeze(1)
    B = torch.linspace(0.7, 1.4, 701, dtype=torch.float64).unsqueeze(0)
    lp = (n * (torch.lgamma(A + B) - torch.lgamma(A) - torch.lgamma(B)) + (A - 1) * s1
          + (B - 1) * s2 - A - B)
    w = torch.exp(lp - lp.max())
    w = w / w.sum()
    assert float(w[0].sum() + w[-1].sum() + w[:, 0].sum() + w[:, -1].sum()) < 1e-8
    return model, (data,), {"alpha": (float((w * A).sum()), 0.08),
                            "beta": (float((w * B).sum()), 0.05)}


def beta_binomial_problem():
    true = torch.tensor([[0.7, 0.4], [0.6, 0.4]])
    total = torch.tensor([[1000.0, 600.0], [400.0, 800.0]])
    data = _seeded(14, lambda: dist.Binomial(total, true).sample((10,)))

    def model(data):
        with pyro.plate("plate_0", 2, dim=-1), pyro.plate("plate_1", 2, dim=-2):
            probs = pyro.sample("probs", dist.Beta(1.0, 1.0))
            with pyro.plate("data", data.shape[0], dim=-3):
                pyro.sample("binomial", dist.Binomial(total, probs), obs=data)
    k = data.sum(0)
    n = total * data.shape[0]
    return model, (data,), {"probs": ((1 + k) / (2 + n), 0.05)}


def gamma_poisson_problem():
    data = _seeded(15, lambda: dist.Poisson(torch.tensor([3.0, 10.0])).sample((100,)))

    def model(data):
        with pyro.plate("latent_dim", 2):
            rate = pyro.sample("rate", dist.Gamma(1.0, 1.0))
            with pyro.plate("data", data.shape[0], dim=-2):
                pyro.sample("obs", dist.Poisson(rate), obs=data)
    return model, (data,), {"rate": ((1 + data.sum(0)) / (1 + data.shape[0]), 0.3)}


def unnormalized_normal_problem():
    def model():
        pyro.sample("z", dist.Normal(5.0, 1.0))
    return model, (), {"z": (5.0, 0.1)}


MCMC_PROBLEMS = {  # Pyro test name -> problem; tolerance source "pyro" (a sample mean)
    "test_beta_bernoulli": beta_bernoulli_problem,
    "test_dirichlet_categorical": dirichlet_categorical_problem,
    "test_gamma_normal": gamma_normal_problem,
    "test_gamma_beta": gamma_beta_problem,
    "test_beta_binomial[hyperpriors=False]": beta_binomial_problem,
    "test_gamma_poisson[hyperpriors=False]": gamma_poisson_problem,
    "test_unnormalized_normal": unnormalized_normal_problem,
}


@port
@pytest.mark.parametrize("method", ["nuts", "sghmc", "vi"])
@pytest.mark.parametrize("name", list(MCMC_PROBLEMS))
def test_mcmc_known_mean(name, method):
    model, args, answers = MCMC_PROBLEMS[name]()
    t = time.perf_counter()
    # Pyro's test_unnormalized_normal runs one NUTS chain of 2000 draws after 400 warm-up steps
    run = (dict(num_chains=1, num_samples=2000, num_warmup=400)
           if method == "nuts" and name == "test_unnormalized_normal" else {})
    post = _fit(model, method, args=args, seed=6, **run)
    checks = [max_err(post, method, site, "mean", exact, tol, "pyro", f"{site} mean max|err|")
              for site, (exact, tol) in answers.items()]
    if name == "test_unnormalized_normal":
        checks.append(Check("z |std-1|",
                            abs(float(post.samples["z"].double().std()) - 1.0), 0.1, "pyro"))
    _assert_checks(name, method, checks, time.perf_counter() - t)


@port
def test_unnormalized_normal_map():
    model, args, _ = unnormalized_normal_problem()
    post = _fit(model, "map", args=args)
    _assert_checks("test_unnormalized_normal", "map",
                   [Check("z |mode-5|", abs(float(post.samples["z"].reshape(-1)[0]) - 5.0), 0.1,
                          "pyro")], 0.0)


# --- test_inference.py (guide-parameter tolerances -> MCSE-aware) -------------------------------

def normal_normal_problem():
    lam0 = torch.tensor([0.1, 0.1])
    mu0 = torch.tensor([0.0, 0.5])
    lam = torch.tensor([6.0, 4.0])
    data = torch.tensor([[-0.1, 0.3], [0.00, 0.4], [0.20, 0.5], [0.10, 0.7]])

    def model(data):
        mu = pyro.sample("mu_latent", dist.Normal(mu0, lam0.rsqrt()).to_event(1))
        with pyro.plate("data", data.shape[0]):
            pyro.sample("obs", dist.Normal(mu, lam.rsqrt()).to_event(1), obs=data)
    lam_n = lam0 + data.shape[0] * lam
    mu_n = (data.sum(0) * lam + mu0 * lam0) / lam_n
    return model, (data,), mu_n.double().numpy(), (-0.5 * lam_n.log()).double().numpy()


def check_normal_normal(post, method):
    _, _, mu_n, log_sig_n = normal_normal_problem()
    checks = [stat_err(post, method, "mu_latent", lambda m, v: m, mu_n, 0.05, "mcse",
                       "mu sum sq err", reduce="sumsq")]
    if method != "map":
        checks.append(stat_err(post, method, "mu_latent", lambda m, v: 0.5 * np.log(v),
                               log_sig_n, 0.05, "mcse", "log_sig sum sq err", reduce="sumsq"))
    return checks


def poisson_gamma_model(data):
    lam = pyro.sample("lambda_latent", dist.Gamma(1.0, 1.0))
    with pyro.plate("data", data.shape[0]):
        pyro.sample("obs", dist.Poisson(lam), obs=data)


def exponential_gamma_model(data):
    lam = pyro.sample("lambda_latent", dist.Gamma(1.0, 1.0))
    with pyro.plate("data", data.shape[0]):
        pyro.sample("obs", dist.Exponential(lam), obs=data)


def bernoulli_beta_model(data):
    p = pyro.sample("p_latent", dist.Beta(1.0, 1.0))
    with pyro.plate("data", data.shape[0]):
        pyro.sample("obs", dist.Bernoulli(p), obs=data)


def _gamma_params(m, v):
    return np.log(m ** 2 / v), np.log(m / v)


def _beta_params(m, v):
    s = m * (1 - m) / v - 1
    return np.log(m * s), np.log((1 - m) * s)


TWO_PARAM = {
    # Pyro test -> (model, data, site, moment-matched (log a, log b), exact (a, b), tol)
    "PoissonGammaTests": (poisson_gamma_model, torch.tensor([1.0, 2.0, 3.0]), "lambda_latent",
                          _gamma_params, (1.0 + 6.0, 1.0 + 3.0), 0.08),
    "ExponentialGammaTests": (exponential_gamma_model, torch.tensor([3.0, 2.0]),
                              "lambda_latent", _gamma_params, (1.0 + 2.0, 1.0 + 5.0), 0.08),
    "BernoulliBetaTests": (bernoulli_beta_model, torch.tensor([0.0, 1.0, 1.0, 1.0]), "p_latent",
                           _beta_params, (1.0 + 3.0, 1.0 + 1.0), 0.08),
}


def check_two_param(post, method, name):
    _, _, site, params, (a, b), tol = TWO_PARAM[name]
    return [stat_err(post, method, site, lambda m, v: params(m, v)[0], math.log(a), tol, "mcse",
                     "|log alpha - log alpha_n|"),
            stat_err(post, method, site, lambda m, v: params(m, v)[1], math.log(b), tol, "mcse",
                     "|log beta - log beta_n|")]


def lognormal_normal_problem(transformed: bool):
    mu0, tau0, tau = 1.0, 1.0, 2.5
    data = torch.tensor([1.5, 2.2])

    def model(data):
        mu = pyro.sample("mu_latent", dist.Normal(mu0, tau0 ** -0.5))
        sigma = tau ** -0.5
        if transformed:
            obs_dist = dist.TransformedDistribution(
                dist.Normal(torch.zeros(()), torch.ones(())),
                [dist.transforms.AffineTransform(mu, sigma), dist.transforms.ExpTransform()])
        else:
            obs_dist = dist.LogNormal(mu, sigma)
        with pyro.plate("data", data.shape[0]):
            pyro.sample("obs", obs_dist, obs=data)
    tau_n = tau0 + data.shape[0] * tau
    mu_n = (mu0 * tau0 + tau * float(data.log().sum())) / tau_n
    return model, (data,), mu_n, tau_n


def check_lognormal_normal(post, method, transformed):
    _, _, mu_n, tau_n = lognormal_normal_problem(transformed)
    tol = 0.05 if transformed else 0.07
    checks = [stat_err(post, method, "mu_latent", lambda m, v: np.log(np.abs(m)), math.log(mu_n),
                       tol, "mcse", "|log mu - log mu_n|")]
    if method != "map":
        checks.append(stat_err(post, method, "mu_latent", lambda m, v: -np.log(v),
                               math.log(tau_n), tol, "mcse", "|log tau - log tau_n|"))
    return checks


def _inference_params():
    out = []
    for name in ["NormalNormalTests", *TWO_PARAM, "LogNormalNormalTests",
                 "LogNormalNormalTests.transformed"]:
        for method in ("nuts", "sghmc", "vi", "map"):
            if method == "map" and name in TWO_PARAM:
                continue  # the answer is a Gamma/Beta shape, not a mode
            out.append(_case(name, method, f"{name}-{method}", VI_NOT_REPRESENTABLE.get(name)))
    return out


@port
@pytest.mark.parametrize("name, method", _inference_params())
def test_inference_known_posterior(name, method):
    t = time.perf_counter()
    if name == "NormalNormalTests":
        model, args, _, _ = normal_normal_problem()
        post = _fit(model, method, args=args, seed=7)
        checks = check_normal_normal(post, method)
    elif name in TWO_PARAM:
        model, data, *_ = TWO_PARAM[name]
        post = _fit(model, method, args=(data,), seed=7)
        checks = check_two_param(post, method, name)
    else:
        transformed = name.endswith("transformed")
        model, args, _, _ = lognormal_normal_problem(transformed)
        post = _fit(model, method, args=args, seed=7)
        checks = check_lognormal_normal(post, method, transformed)
    _assert_checks(name, method, checks, time.perf_counter() - t)


# --- discrete latents: a clear refusal ----------------------------------------------------------

def gmm_model(data):
    K = 3
    phi = pyro.sample("phi", dist.Dirichlet(torch.ones(K)))
    with pyro.plate("num_clusters", K):
        means = pyro.sample("cluster_means", dist.Normal(torch.arange(float(K)), 1.0))
    with pyro.plate("data", data.shape[0]):
        assignments = pyro.sample("assignments", dist.Categorical(phi))
        pyro.sample("obs", dist.Normal(means[assignments], 1.0), obs=data)


def bernoulli_latent_model(data):
    y_prob = pyro.sample("y_prob", dist.Beta(1.0, 1.0))
    with pyro.plate("data", data.shape[0]):
        y = pyro.sample("y", dist.Bernoulli(y_prob))
        z = pyro.sample("z", dist.Bernoulli(0.65 * y + 0.1))
        pyro.sample("obs", dist.Normal(2.0 * z, 1.0), obs=data)


def gaussian_hmm_model(data):
    dim = 4
    init = pyro.sample("initialize", dist.Dirichlet(torch.ones(dim)))
    with pyro.plate("states", dim):
        transition = pyro.sample("transition", dist.Dirichlet(torch.ones(dim, dim)))
        loc = pyro.sample("emission_loc", dist.Normal(torch.zeros(dim), torch.ones(dim)))
        scale = pyro.sample("emission_scale", dist.LogNormal(torch.zeros(dim), torch.ones(dim)))
    x = None
    for t in pyro.markov(range(data.shape[0])):
        x = pyro.sample(f"x_{t}", dist.Categorical(init if x is None else transition[x]),
                        infer={"enumerate": "parallel"})
        pyro.sample(f"y_{t}", dist.Normal(loc[x], scale[x]), obs=data[t])


DISCRETE = {  # model -> (data, the first discrete site)
    "test_gaussian_mixture_model": (gmm_model, torch.randn(20), "assignments"),
    "test_bernoulli_latent_model": (bernoulli_latent_model, torch.randn(20), "y"),
    "test_gaussian_hmm": (gaussian_hmm_model, torch.randn(4), "x_0"),
}


@pytest.mark.parametrize("method", ["map", "vi", "nuts", "sghmc", "svgd"])
@pytest.mark.parametrize("name", list(DISCRETE))
def test_discrete_latents_are_refused(name, method):
    model, data, site = DISCRETE[name]
    with pytest.raises(ValueError, match=rf"discrete.*|'{site}'") as err:
        bt.fit(model, method=method, model_args=(data,), progress=False,
               **({} if method == "map" else {"num_samples": 2}))  # MAP takes no num_samples
    msg = str(err.value)
    assert "discrete" in msg and f"'{site}'" in msg, msg


# --- fast subset: issue items 1, 2, 4, 5, 7 with one method each ---------------------------------

def _warned(records, site) -> list[str]:
    pat = re.compile(rf"(?<![\w.]){re.escape(site)}(?![\w])")
    return [str(w.message) for w in records if pat.search(str(w.message))]


def test_item1_map_reaches_a_posterior_far_from_the_start():
    """Issue item 1 (test_shapes, MAP): z2's mode is up to 35 from the start box."""
    model, _, m2 = shapes_problem((2, 1, 3))
    t = time.perf_counter()
    post = _fit(model, "map")
    err = float((post.samples["z2"].double() - m2).abs().max())
    _assert_checks("fast:item1 shapes[2x1x3]", "map",
                   [Check("z2 max|mode-exact|", err, 1e-6, "pyro")], time.perf_counter() - t)


def test_item2_sghmc_on_a_u_shaped_beta():
    """Issue item 2 (test_mean_variance, Beta(0.3, 0.7)): chains must not stick at 0 or 1."""
    t = time.perf_counter()
    post = _fit(single_site_model("beta1"), "sghmc", seed=1, num_samples=500, num_chains=2)
    _assert_checks("fast:item2 mean_variance[beta1]", "sghmc",
                   check_mean_variance(post, "sghmc", "beta1"), time.perf_counter() - t)


_SGHMC_SHAPES: dict = {}


def _sghmc_shapes_fit():
    if "post" not in _SGHMC_SHAPES:
        model, _, _ = shapes_problem((1, 1))
        t = time.perf_counter()
        _SGHMC_SHAPES["post"] = _fit(model, "sghmc", seed=2, num_samples=500, num_chains=2)
        _SGHMC_SHAPES["seconds"] = time.perf_counter() - t
    return _SGHMC_SHAPES["post"], _SGHMC_SHAPES["seconds"]


def test_item4_sghmc_moves_the_weakly_curved_scalar():
    """Issue item 4 (test_shapes, SGHMC): the N(0, 1) ``scalar`` beside 1e-8-scale sites."""
    post, seconds = _sghmc_shapes_fit()
    _assert_checks("fast:item4 shapes[1x1] scalar", "sghmc",
                   [max_err(post, "sghmc", "scalar", "mean", 0.0, 0.15, "mcse"),
                    max_err(post, "sghmc", "scalar", "var", 1.0, 0.25, "mcse")], seconds)


def test_item5_float64_model_is_sampled_in_float64():
    """Issue item 5 (test_shapes, SGHMC): float64 sites, every draw within Pyro's 1e-6."""
    post, seconds = _sghmc_shapes_fit()
    checks = [c for c in check_shapes(post, "sghmc", (1, 1)) if not c.label.startswith("scalar")]
    _assert_checks("fast:item5 shapes[1x1] z1/z2", "sghmc", checks, seconds)


def _subsampling_model(x):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("obs_plate", x.shape[0], subsample_size=10) as idx:
        pyro.sample("obs", dist.Normal(mu, 1.0), obs=x[idx])


def test_item7_nuts_refusal_of_a_self_subsampling_model():
    """Issue item 7: the refusal names the model's plate, not a ``batch_size`` never passed."""
    with pytest.raises(ValueError) as err:
        bt.fit(_subsampling_model, method="nuts", model_args=(torch.randn(100),),
               progress=False, num_samples=5)
    msg = str(err.value)
    assert "'obs_plate'" in msg, msg
    assert "batch_size" not in msg, msg


# --- non-converged optimum / boundary-stuck start: a warning naming the site --------------------

def test_map_stopped_short_warns_naming_the_site():
    model, _, m2 = shapes_problem((1, 1))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        post = _fit(model, "map", num_steps=30)
    far = float((post.samples["z2"].double() - m2).abs().max())
    assert far < 1e-6 or _warned(rec, "z2"), \
        f"MAP ended {far:.3g} from z2's mode without a warning naming 'z2': " \
        f"{[str(w.message) for w in rec]}"


def test_vi_not_converged_warns_naming_the_site():
    X, y, true = logistic_data()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        post = _fit(logistic_model, "vi", args=(X, y), num_steps=30, num_samples=200)
    rmse = float(((post.samples["beta"].double().reshape(-1, 3).mean(0) - true) ** 2)
                 .mean().sqrt())
    assert rmse <= 0.1 or _warned(rec, "beta"), \
        f"VI (30 steps) rmse {rmse:.3f} without a warning naming 'beta': " \
        f"{[str(w.message) for w in rec]}"


def test_svgd_stopped_short_warns_naming_the_site():
    model, _, m2 = shapes_problem((1, 1))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        post = _fit(model, "svgd", num_samples=7, num_steps=20, map_steps=30)
    far = float((post.samples["z2"].double() - m2).abs().max())
    assert far < 1e-6 or _warned(rec, "z2"), \
        f"SVGD ended {far:.3g} from z2 without a warning naming 'z2': " \
        f"{[str(w.message) for w in rec]}"


def test_map_at_the_boundary_warns_naming_the_site():
    """Beta(0.3, 0.7) has no interior mode: the MAP runs to 0 or 1 and must say so."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        post = _fit(single_site_model("beta1"), "map", num_steps=500)
    z = float(post.samples["z"].reshape(-1)[0])
    assert _warned(rec, "z"), f"MAP of Beta(0.3, 0.7) at z={z:.3g} without a warning naming " \
                              f"'z': {[str(w.message) for w in rec]}"


@port
def test_sghmc_boundary_stuck_start_warns_or_mixes():
    """SGHMC starts at the MAP; for Beta(0.3, 0.7) that is the boundary."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        post = _fit(single_site_model("beta1"), "sghmc", seed=1, num_samples=300, num_chains=2)
    checks = check_mean_variance(post, "sghmc", "beta1")
    assert all(c.ok for c in checks) or _warned(rec, "z"), \
        f"SGHMC on Beta(0.3, 0.7): {[(c.label, c.measured, c.tol) for c in checks]} and no " \
        f"warning naming 'z': {[str(w.message) for w in rec]}"

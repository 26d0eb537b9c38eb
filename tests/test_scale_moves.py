"""SGHMC's scale moves of rank slices: exact Metropolis steps that leave the posterior
invariant (checked on priors whose moments are known), the slice groups of each format, and
the ``scale_moves`` option of ``fit``."""

import math

import numpy as np
import pyro
import pytest
import torch
from scipy.special import digamma

import bayestensor as bt
from bayestensor.infer import LogDensity
from bayestensor.infer.scale_moves import SliceScaleMoves
from bayestensor.priors import LowRankPrior

CHAINS, MOVES = 4000, 40


def prior_only(prior: LowRankPrior):
    def model():
        prior.sample()
    return model


def exact_prior_draws(prior: LowRankPrior, chains: int, seed: int) -> dict:
    """``chains`` independent draws of every site from the prior (Pyro's own sampler)."""
    pyro.set_rng_seed(seed)
    shapes = {**{h: (r,) for h, r in zip(prior.hyper_sites, prior.ranks)},
              **{p: spec.shape for p, spec in zip(prior.param_sites, prior.specs)}}
    # the plate sits left of every site's own dims; sites with fewer dims get singletons
    with pyro.plate("chains", chains, dim=-1 - max(len(s) for s in shapes.values())):
        trace = pyro.poutine.trace(prior_only(prior)).get_trace()
    return {n: trace.nodes[n]["value"].reshape((chains,) + tuple(shape))
            for n, shape in shapes.items()}


def moved_hypers(prior: LowRankPrior, seed: int = 0) -> torch.Tensor:
    """Hyper values after ``MOVES`` scale moves of exact prior draws (no data: the moves
    alone must keep the prior)."""
    target = LogDensity(prior_only(prior), seed=seed)
    values = exact_prior_draws(prior, CHAINS, seed)
    theta = target.unconstrain(values)
    moves = SliceScaleMoves(target, prior.slice_groups())
    gen = torch.Generator().manual_seed(seed)
    for _ in range(MOVES):
        theta = moves.move(theta, gen)
    assert 0.2 < moves.acceptance < 0.95
    return target.constrain(theta)[prior.hyper_sites[0]].double()


def test_moves_keep_a_gamma_precision_at_its_prior():
    """CP, Gamma(2, 1) precisions: after 40 moves of 4,000 exact prior draws, E[log lambda]
    = digamma(2) and E[lambda] = 2 within 4 standard errors (0.016 and 0.022). Without the
    hyper site's term of the Jacobian this test and the next fail."""
    prior = LowRankPrior("X", (4, 5, 6), 3, "cp", "gamma", {"a": 2.0, "b": 1.0})
    lam = moved_hypers(prior)
    assert abs(float(lam.log().mean()) - digamma(2.0)) < 4 * math.sqrt(0.6449 / lam.numel())
    assert abs(float(lam.mean()) - 2.0) < 4 * math.sqrt(2.0 / lam.numel())


def test_moves_keep_a_half_cauchy_scale_at_its_prior():
    """Tucker under HalfCauchy(1) slice scales (core slabs and factor columns move
    together): the median of the moved scales stays at 1 (log-symmetric prior) and
    P(s < 0.5) at 2 atan(0.5) / pi = 0.295, within 4 standard errors."""
    prior = LowRankPrior("X", (4, 5, 6), (2, 3, 2), "tucker", "half_cauchy")
    scale = moved_hypers(prior, seed=1)
    n = scale.numel()
    assert abs(float((scale < 1).double().mean()) - 0.5) < 4 * math.sqrt(0.25 / n)
    p = 2 * math.atan(0.5) / math.pi
    assert abs(float((scale < 0.5).double().mean()) - p) < 4 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("fmt, rank", [("cp", 3), ("tucker", (2, 3, 2)), ("tt", (2, 3))])
def test_slice_groups_name_every_entry_of_each_slice(fmt, rank):
    """Each group's members cover the entries its slice variance governs: their count is
    ``slice_counts``, and the exponent maps variance to the hyper site."""
    prior = LowRankPrior("X", (4, 5, 6), rank, fmt, "gamma")
    counts = prior.slice_counts()
    for group, site, size in zip(prior.slice_groups(), prior.hyper_sites, prior.ranks):
        specs = dict(zip(prior.param_sites, prior.specs))
        covered = sum(specs[s].numel() // specs[s].shape[a] for s, a in group.members)
        assert (group.hyper, group.count, group.size, covered) == (site, counts[site], size,
                                                                 counts[site])
        assert group.exponent == -1.0


def test_fit_with_scale_moves_records_their_acceptance():
    """``scale_moves=True`` on a CP completion: the run records that the moves ran and their
    acceptance (a share in (0, 1)); off by default; a non-flag is refused before any work."""
    data = bt.data.synthetic_tensor((10, 10, 10), rank=2, observed=0.3, snr_db=20, seed=0)
    model = bt.TensorCompletion(data.shape, "cp", max_rank=4)
    post = bt.fit(model, data.train, method="sghmc", num_samples=100, num_warmup=100,
                  num_chains=2, seed=0, progress=False, scale_moves=True, map_steps=100)
    assert post.info["scale_moves"] is True
    assert 0 < post.info["scale_move_acceptance"] < 1
    rows = bt.fit(model, data.train, method="sghmc", num_samples=50, num_warmup=50,
                  num_chains=2, seed=0, progress=False, factor_redraws=True, map_steps=100)
    assert rows.info["factor_redraws"] is True
    assert np.isfinite(rows["X.factor0"].numpy()).all()
    default = bt.fit(model, data.train, method="sghmc", num_samples=20, num_warmup=20,
                     num_chains=2, seed=0, progress=False, map_steps=100)
    assert default.info["scale_moves"] is False and default.info["factor_redraws"] is False
    with pytest.raises(ValueError, match="scale_moves"):
        bt.fit(model, data.train, method="sghmc", scale_moves="yes", progress=False)
    for option in ("scale_moves", "factor_redraws"):
        with pytest.raises(ValueError, match=f"{option}: True needs full-batch data"):
            bt.fit(model, data.train, method="sghmc", batch_size=50, progress=False,
                   **{option: True})


def test_factor_row_draws_follow_their_gaussian_conditional():
    """CP completion, mode 0: 5,000 redraws of the rows (others fixed) have the mean
    ``P^-1 tau r`` and covariance ``P^-1``, ``P = tau G + diag(1 / v)``, computed
    independently with NumPy from the observed entries: within 5 standard errors (mean) and
    10% (covariances; their standard error is 2%). Drawing ``L^-1 z`` instead of
    ``L^-T z`` misses the covariance by 25-110% of its largest variance."""
    from bayestensor.models.cp_row_gibbs import CPRowGibbs

    gen = torch.Generator().manual_seed(0)
    shape, rank, n = (5, 6, 7), 3, 80
    idx = torch.stack([torch.randint(0, s, (n,), generator=gen) for s in shape], 1)
    y = torch.randn(n, generator=gen, dtype=torch.float64)
    # correlated columns, so that the conditional covariance is far from diagonal
    factors = [torch.randn(s, rank, generator=gen, dtype=torch.float64)
               + 1.5 * torch.randn(s, 1, generator=gen, dtype=torch.float64) for s in shape]
    variance, tau = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64), 3.0
    gibbs = CPRowGibbs(idx, y, shape, rank, factor_sites=["f0", "f1", "f2"], hyper_site="h",
                       variance=lambda h: h, noise_site="t")
    draws = torch.stack([gibbs._draw_rows(factors, gibbs.groups[0], 1 / variance, tau, 0.7,
                                          gen)[0] for _ in range(5_000)])  # (S, I, R)
    x, f1, f2 = idx.numpy(), factors[1].numpy(), factors[2].numpy()
    for row in range(shape[0]):
        mine = x[:, 0] == row
        design = f1[x[mine, 1]] * f2[x[mine, 2]]
        precision = tau * design.T @ design + np.diag(1 / variance.numpy())
        cov = np.linalg.inv(precision)
        mean = cov @ (tau * design.T @ (y.numpy()[mine] - 0.7))
        got = draws[:, row].numpy()
        assert np.all(np.abs(got.mean(0) - mean) < 5 * np.sqrt(np.diag(cov) / len(got)))
        np.testing.assert_allclose(np.cov(got.T), cov, rtol=0.1, atol=0.1 * np.diag(cov).max())


def test_precision_cholesky_mends_rounding_and_marks_what_it_cannot():
    """A precision ``tau g g^T + diag(1 / v)`` with ``tau |g|^2`` 1e17 times a slice's
    ``1 / v``: positive definite, but plain ``torch.linalg.cholesky`` fails on it in float64.
    ``precision_cholesky`` factors it (``L L^T`` equal to it to rounding, NumPy's eigenvalues
    as the check that it is positive definite), leaves a well-conditioned neighbour in the
    batch untouched, and marks a NaN matrix as not factored with a NaN factor, which
    ``gaussian_draw`` passes on as a NaN draw."""
    from bayestensor.models.cp_row_gibbs import gaussian_draw, precision_cholesky

    g = torch.tensor([1.0, 1.0 + 1e-9, 1.0], dtype=torch.float64)
    stiff = 1e17 * torch.outer(g, g) + torch.diag(torch.tensor([1.0, 1.0, 1e-3],
                                                               dtype=torch.float64))
    assert np.linalg.eigvalsh(np.diag([1.0, 1.0, 1e-3])).min() > 0  # tau G adds a PSD term
    with pytest.raises(torch.linalg.LinAlgError):
        torch.linalg.cholesky(stiff)
    easy = torch.eye(3, dtype=torch.float64) * 2.0
    batch = torch.stack([stiff, easy, torch.full((3, 3), torch.nan, dtype=torch.float64)])
    lower, factored = precision_cholesky(batch)
    assert factored.tolist() == [True, True, False]
    torch.testing.assert_close(lower[0] @ lower[0].T, stiff, rtol=1e-9, atol=0.0)
    torch.testing.assert_close(lower[1], torch.linalg.cholesky(easy), rtol=0, atol=0)
    assert torch.isnan(lower[2]).all()
    draw = gaussian_draw(batch, torch.ones(3, 3, dtype=torch.float64),
                         torch.Generator().manual_seed(0))
    assert torch.isfinite(draw[:2]).all() and torch.isnan(draw[2]).all()


def test_offset_draws_follow_their_gaussian_conditional():
    """The offset's redraw given the factors: ``Normal(tau sum(y - x) / P, 1 / P)``, ``P = tau
    N + 1 / s^2``, with the entries ``x`` from TensorLy's CP reconstruction; 5,000 draws within
    5 standard errors (mean) and 5% (variance)."""
    import tensorly as tl
    from bayestensor.models.cp_row_gibbs import CPRowGibbs

    gen = torch.Generator().manual_seed(0)
    shape, rank, n = (5, 6, 7), 3, 80
    idx = torch.stack([torch.randint(0, s, (n,), generator=gen) for s in shape], 1)
    y = torch.randn(n, generator=gen, dtype=torch.float64) + 2.0
    factors = [torch.randn(s, rank, generator=gen, dtype=torch.float64) for s in shape]
    tau, scale = 3.0, 0.2
    gibbs = CPRowGibbs(idx, y, shape, rank, factor_sites=["f0", "f1", "f2"], hyper_site="h",
                       variance=lambda h: h, noise_site="t", offset_site="c",
                       offset_scale=scale)
    entries = tl.cp_to_tensor((None, [f.numpy() for f in factors]))[tuple(idx.numpy().T)]
    groups = gibbs.groups[0]
    order_entries = tl.cp_to_tensor((None, [f.numpy() for f in factors]))[
        tuple(groups.indices.numpy().T)]
    residual = groups.values - torch.from_numpy(order_entries)
    draws = np.array([gibbs._draw_offset(residual, tau, gen) for _ in range(5_000)])
    precision = tau * n + scale ** -2
    mean = tau * (y.numpy() - entries).sum() / precision
    assert abs(draws.mean() - mean) < 5 * np.sqrt(1 / precision / len(draws))
    np.testing.assert_allclose(draws.var(), 1 / precision, rtol=0.05)


@pytest.mark.parametrize("option", ["factor_redraws", "scale_moves"])
def test_moves_need_a_cp_completion(option):
    """``factor_redraws=True`` or ``scale_moves=True`` on a Tucker completion is refused,
    naming the option."""
    data = bt.data.synthetic_tensor((8, 8, 8), rank=2, observed=0.3, snr_db=20, seed=0)
    model = bt.TensorCompletion(data.shape, "tucker", max_rank=3)
    with pytest.raises(ValueError, match=option):
        bt.fit(model, data.train, method="sghmc", progress=False, **{option: True})

r"""The Bayesian posterior of the same factorization, as a reference beside GD / FA / FA*.

Model (a Pyro model, fitted by SGHMC through :func:`bayestensor.fit`), on the standardized target
``y = Y / sd(Y)``::

    Z[:, k], W[k, :] ~ Normal(0, v_k)     v_k: ARD slice variance, 1 / v_k ~ Gamma(a, b)
    tau              ~ Gamma(noise_a, noise_b)
    y                ~ Normal(Z W, tau^{-1/2})   entrywise

``Z W`` is the two-factor CP tensor of :func:`bayestensor.priors.low_rank_tensor` (``Z`` is
``X.factor0``, ``W^T`` is ``X.factor1``), so the rank-revealing prior is the library's own. The
chains start at the truncated SVD (balanced factors ``U sqrt(S)``, ``V sqrt(S)``), never at prior
draws (vague Gamma draws underflow in float32).

The reference reports the error of the posterior-mean matrix, the spread of the per-draw error,
the principal angle of the posterior mean's top-``r`` column space to the optimal one, the
effective rank (the rank posterior's mode), and whether the Eckart-Young matrix ``Y_r`` (the best
rank-``r`` approximation; unique when ``sigma_r > sigma_{r+1}``) lies in the posterior's
credible ball: ``||Y_r - E[ZW]||_F`` at most the :data:`CREDIBLE_LEVEL` quantile of
``||Z_s W_s - E[ZW]||_F`` over the draws ``s``.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from bayestensor.priors import effective_rank as rank_mod
from bayestensor.formats import CPTensor
from bayestensor.infer import fit
from bayestensor.priors import LowRankPrior, low_rank_tensor, noise_precision
from bayestensor import checks as _checks
from bayestensor.dynamics.factorization import FactorizationReference, largest_angle_to

#: Level of the credible ball around the posterior mean that should hold the optimum.
CREDIBLE_LEVEL = 0.9


def factorization_model(y: torch.Tensor, rank: int, prior: str = "gamma",
                        prior_params: dict | None = None, noise_a: float = 1.0,
                        noise_b: float = 1e-2):
    """Pyro model of ``y ≈ Z W`` with an ARD prior per rank slice (module docstring).

    Parameters
    ----------
    y : (n, m) tensor
        Standardized target (float32).
    rank : int
        Number of rank slices (the prior switches off the unneeded ones).
    prior : {"gamma", "half_cauchy", "log_uniform"}
        Hyperprior of the slice variances (:mod:`bayestensor.priors`).
    prior_params : dict, optional
    noise_a, noise_b : float
        Gamma prior of the noise precision.
    """
    x = low_rank_tensor("X", tuple(y.shape), rank, format="cp", prior=prior,
                        prior_params=prior_params)
    tau = noise_precision("noise_precision", noise_a, noise_b)
    pyro.sample("y", dist.Normal(x.reconstruct(), tau.rsqrt()).to_event(2), obs=y)


def _init_values(y: torch.Tensor, rank: int, prior: str, prior_params: dict | None) -> dict:
    """Balanced truncated-SVD factors, slice variances from their sizes, noise from the residual."""
    n, m = y.shape
    low_rank = LowRankPrior("X", (n, m), rank, "cp", prior, prior_params)
    rank = low_rank.ranks[0]  # capped, with a warning, where the shape supports less
    u, s, vh = torch.linalg.svd(y.double(), full_matrices=False)
    q = min(rank, s.numel())
    a0 = torch.zeros(n, rank, dtype=torch.float64)
    a1 = torch.zeros(m, rank, dtype=torch.float64)
    a0[:, :q] = u[:, :q] * s[:q].sqrt()
    a1[:, :q] = vh[:q].T * s[:q].sqrt()
    gen = torch.Generator().manual_seed(0)
    small = 1e-2 * float(s[0].sqrt()) / math.sqrt(max(n, m))
    if q < rank:
        a0[:, q:] = small * torch.randn(n, rank - q, generator=gen, dtype=torch.float64)
        a1[:, q:] = small * torch.randn(m, rank - q, generator=gen, dtype=torch.float64)
    tensor = CPTensor((n, m), [a0.float(), a1.float()])
    values = low_rank.init_values(tensor)
    resid = y.double() - (a0 @ a1.T)
    var = float(resid.pow(2).mean())
    values["noise_precision"] = torch.tensor(1.0 / min(max(var, 1e-4), 1.0))
    return values


def bayes_factorization(y, rank: int, *, seed: int = 0, num_samples: int = 200,
                        num_warmup: int = 300, num_chains: int = 1, lr: float = 0.01,
                        prior: str = "gamma", prior_params: dict | None = None,
                        progress: bool = False) -> dict:
    """Posterior of ``Y ≈ Z W`` under the ARD prior, by SGHMC, summarized against Eckart-Young.

    Parameters
    ----------
    y : (n, m) array
        Target.
    rank : int
        Maximum rank ``r``.
    seed : int
        Seeds the sampler.
    num_samples, num_warmup, num_chains : int
        SGHMC draws per chain, burn-in steps and chains.
    lr : float
        SGHMC learning rate (dimensionless: the sampler preconditions).
    prior : str
        ARD hyperprior (``"gamma"`` by default).
    prior_params : dict, optional
    progress : bool
        Progress bar.

    Returns
    -------
    dict
        ``final``: ``error`` (posterior-mean relative error), ``excess`` (over Eckart-Young,
        relative squared), ``ey_ratio``, ``draw_error_q05`` / ``draw_error_median`` /
        ``draw_error_q95`` (per-draw relative errors), ``angle_col``, ``effective_rank``,
        ``optimum_distance`` (``||Y_r - E[ZW]|| / ||Y||``), ``credible_radius`` (the
        :data:`CREDIBLE_LEVEL` quantile of ``||Z_s W_s - E[ZW]|| / ||Y||``),
        ``optimum_in_credible`` (1.0 when the distance is at most the radius, else 0.0),
        ``seconds``. ``trajectory``: ``error`` of each draw (chain 0). ``steps``: draw indices.
        ``posterior``: the :class:`~bayestensor.infer.Posterior` (standardized units).

    Examples
    --------
    >>> from bayestensor.dynamics.factorization import low_rank_matrix
    >>> out = bayes_factorization(low_rank_matrix(20, 15, 5, seed=0), 3, num_samples=50,
    ...                           num_warmup=50)
    >>> out["final"]["error"] < 1
    True
    """
    y = _checks.matrix("y", y)
    r = _checks.positive_int("rank", rank)
    seed = _checks.seed_value(seed)
    num_samples = _checks.positive_int("num_samples", num_samples)
    num_warmup = _checks.positive_int("num_warmup", num_warmup, minimum=0)
    num_chains = _checks.positive_int("num_chains", num_chains)
    lr = _checks.positive_float("lr", lr)
    sd = float(y.std())
    if sd == 0:
        raise ValueError("y: constant target; nothing to factorize")
    ys = (y / sd).float()
    start = time.perf_counter()
    init = _init_values(ys, r, prior, prior_params)
    post = fit(factorization_model, method="sghmc", seed=seed, num_samples=num_samples,
               num_warmup=num_warmup, num_chains=num_chains, init=init, progress=progress,
               model_args=(ys, r), model_kwargs={"prior": prior, "prior_params": prior_params},
               lr=lr)
    seconds = time.perf_counter() - start
    f0 = post.samples["X.factor0"].double()  # (C, S, n, r)
    f1 = post.samples["X.factor1"].double()  # (C, S, m, r)
    draws = torch.einsum("csik,csjk->csij", f0, f1) * sd
    ref = FactorizationReference.build(y, r)
    mean = draws.mean((0, 1))
    err_mean = float(torch.linalg.norm(y - mean))
    per_draw = torch.linalg.norm((y - draws).reshape(draws.shape[0], draws.shape[1], -1), dim=-1)
    per_draw = (per_draw / ref.norm).numpy()
    optimum_distance, radius = _credible_ball(y, draws, r)
    u, _, _ = torch.linalg.svd(mean, full_matrices=False)
    q = ref.u_opt.shape[1]
    scales = [torch.linalg.norm(f0, dim=-2) * torch.linalg.norm(f1, dim=-2)]
    ranks = rank_mod.rank_posterior(scales)
    final = {
        "error": err_mean / ref.norm,
        "excess": (err_mean**2 - ref.ey_error**2) / ref.norm**2,
        "ey_ratio": err_mean / ref.ey_error if ref.ey_error > 1e-12 * ref.norm else float("nan"),
        "draw_error_q05": float(np.quantile(per_draw, 0.05)),
        "draw_error_median": float(np.median(per_draw)),
        "draw_error_q95": float(np.quantile(per_draw, 0.95)),
        "angle_col": largest_angle_to(u[:, :q], ref.u_opt) if q else float("nan"),
        "effective_rank": float(ranks.mode()[0]),
        "optimum_distance": optimum_distance / ref.norm,
        "credible_radius": radius / ref.norm,
        "optimum_in_credible": float(optimum_distance <= radius),
        "seconds": seconds,
    }
    return {"final": final, "trajectory": {"error": per_draw[0]},
            "steps": np.arange(per_draw.shape[1]), "posterior": post}


def _credible_ball(y: torch.Tensor, draws: torch.Tensor, r: int) -> tuple[float, float]:
    """Distance of the Eckart-Young matrix to the posterior mean, and the credible radius."""
    u, s, vh = torch.linalg.svd(y, full_matrices=False)
    y_opt = (u[:, :r] * s[:r]) @ vh[:r]
    flat = draws.reshape(-1, *draws.shape[-2:])
    mean = flat.mean(0)
    dist_draws = torch.linalg.norm((flat - mean).reshape(flat.shape[0], -1), dim=-1)
    radius = float(torch.quantile(dist_draws, CREDIBLE_LEVEL))
    return float(torch.linalg.norm(y_opt - mean)), radius


__all__ = ["factorization_model", "bayes_factorization", "CREDIBLE_LEVEL"]

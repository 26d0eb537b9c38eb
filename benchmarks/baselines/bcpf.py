"""Bayesian CP factorization by variational Bayes with ARD: the reference peer for completion.

Model and closed-form updates of Zhao, Zhang & Cichocki, "Bayesian CP Factorization of
Incomplete Tensors with Automatic Rank Determination", IEEE TPAMI 37(9):1751-1763, 2015 (their
Section 3), for observed entries given as index tuples:

    y_j = sum_r prod_n a^(n)_{i_n(j), r} + eps_j,        eps_j ~ N(0, 1/tau)
    a^(n)_i ~ N(0, Lambda^-1),  Lambda = diag(lambda_1..lambda_R)   (shared over modes and rows)
    lambda_r ~ Ga(c0, d0),  tau ~ Ga(a0, b0),  c0 = d0 = a0 = b0 = 1e-6

Mean-field posterior q = prod_{n,i} N(a^(n)_i | mu, V) prod_r Ga(lambda_r) Ga(tau), updated in
turn:

* factor rows: V^(n)_i = (E[tau] sum_{j: i_n(j)=i} E[b_j b_j^T] + E[Lambda])^-1 and
  mu^(n)_i = E[tau] V^(n)_i sum_{j: i_n(j)=i} y_j E[b_j], where b_j is the Hadamard product of
  the other modes' rows and E[b_j b_j^T] the Hadamard product of their second moments;
* lambda_r: c_r = c0 + (sum_n I_n) / 2, d_r = d0 + (sum_n sum_i E[a^(n)_{ir}^2]) / 2;
* tau: a = a0 + |Omega| / 2, b = b0 + E[sum_j (y_j - x_j)^2] / 2.

The default (``variant="original"``) follows the authors' published MATLAB code, BCPF_TC.m of
their BCPF toolbox (github.com/qbzhao/BCPF), in everything the paper leaves open:

* data: not centred; the observed values are divided by ``dscale = sd(y) / N`` (population sd
  of the observed values, N = number of modes) and predictions multiplied back;
* start ("ml", the documented default and the one their demo uses): missing entries filled
  with the mean of the observed (scaled) values, each mode's factor = leading R left singular
  vectors of its unfolding times sqrt of the singular values (random normal columns beyond the
  unfolding's rank); all row covariances = I, E[lambda] = 1, E[tau] = 1;
* first sweep: the second moments E[a a^T] of the modes not yet updated are the covariances
  alone (I), without the mean term; a mode's second moment becomes V + mu mu^T once updated;
* pruning: after every sweep from the second on, components whose power sum_n ||a^(n)_r||^2
  (factor means) is at most (sum_n I_n) * eps(||[A^(1); ...; A^(N)]||_F) are removed, eps being
  the floating-point spacing at that norm (machine precision, relative to the factor scale);
* stopping: the variational lower bound L is computed after every sweep (before pruning);
  from the sixth sweep on the fit stops when |L_t - L_{t-1}| / |L_2| < tol; tol = 1e-5 and at
  most 100 sweeps, the code's defaults. Unlike the MATLAB code (whose ``log(gamma(a))`` saturates
  at log(1e300) for the noise posterior's shape), L here uses the exact log-gamma.

``variant="standardized"`` keeps this module's earlier choices (centre and scale to unit sd,
E[tau] = 1/Var(y) at the start, mean term in the first sweep, prune at 1e-3 of the largest
component power after iteration 10, stop on the change in fit after at least 20 iterations); it
gives up components the original keeps (e.g. rank 10 at 30^3, 50% observed, 20 dB).

The predictive sd at an entry is the exact mean-field variance of the CP sum plus 1/E[tau]
(the MATLAB ``predVar`` uses a first-order variance and a Student-t inflation instead). The
implementation is ours (PyTorch, float64, vectorized over observations with index_add).

``tensorly_masked_parafac`` is TensorLy's masked ``parafac`` at a given rank;
``tensorly_masked_parafac_tuned`` picks that rank from a grid on a validation split of the
observed entries and refits on all of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class BCPFResult:
    mu: list            # factor means, (I_n, R)
    V: list             # factor row covariances, (I_n, R, R)
    tau: float          # E[tau] of the scaled data
    rank: int
    lambdas: np.ndarray
    iterations: int
    center: float
    scale: float
    lower_bound: list = None    # variational lower bound per sweep (variant="original")

    def predict(self, indices, kind: str = "predictive") -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and sd at index tuples.

        ``kind="predictive"`` (default): sd of a new noisy observation (entry variance plus
        the noise variance 1 / E[tau]); ``kind="mean"``: sd of the noise-free entry under the
        variational posterior of the factors (no noise term).
        """
        if kind not in ("predictive", "mean"):
            raise ValueError(f"kind: expected 'predictive' or 'mean', got {kind!r}")
        idx = torch.as_tensor(indices, dtype=torch.long)
        b = torch.ones(idx.shape[0], self.rank, dtype=torch.float64)
        second = torch.ones(idx.shape[0], self.rank, self.rank, dtype=torch.float64)
        for n, (m, v) in enumerate(zip(self.mu, self.V)):
            rows = m[idx[:, n]]
            b = b * rows
            second = second * (rows.unsqueeze(-1) * rows.unsqueeze(-2) + v[idx[:, n]])
        mean = b.sum(-1)
        var_mean = (second.sum((-1, -2)) - mean**2).clamp_min(0)
        sd = (var_mean + (1.0 / self.tau if kind == "predictive" else 0.0)).sqrt()
        return (mean * self.scale + self.center).numpy(), (sd * self.scale).numpy()


def _svd_init(indices, values, shape, rank):
    dense = np.full(shape, float(values.mean()))
    dense[tuple(indices.T.numpy())] = values.numpy()
    factors = []
    for n, size in enumerate(shape):
        unfold = np.moveaxis(dense, n, 0).reshape(size, -1)
        u, s, _ = np.linalg.svd(unfold, full_matrices=False)
        k = min(rank, u.shape[1])
        f = np.zeros((size, rank))
        f[:, :k] = u[:, :k] * np.sqrt(s[:k])
        factors.append(torch.as_tensor(f))
    return factors


def bcpf(indices, values, shape, max_rank: int, *, variant: str = "original",
         max_iter: int = 100, tol: float = 1e-5, init: str = "ml", seed: int = 0,
         **kwargs) -> BCPFResult:
    """Fit BCPF by VB to observed entries ``values`` at ``indices`` of a tensor of ``shape``.

    ``variant="original"`` (default) follows BCPF_TC.m (see the module docstring);
    ``variant="standardized"`` is this module's earlier version (keyword arguments
    ``prune_tol``, ``standardize``, ``min_iter``, hyperpriors as before).
    """
    if variant == "original":
        return _bcpf_original(indices, values, shape, max_rank, max_iter=max_iter, tol=tol,
                              init=init, seed=seed, **kwargs)
    if variant == "standardized":
        return _bcpf_standardized(indices, values, shape, max_rank, max_iter=max_iter, tol=tol,
                                  init="svd" if init == "ml" else init, seed=seed, **kwargs)
    raise ValueError(f"variant: expected 'original' or 'standardized', got {variant!r}")


def _rows_moments(idx, mu, second_rows, skip):
    """Hadamard products over modes != skip: E[b_j] (n_obs, R) and E[b_j b_j^T] (n_obs, R, R)."""
    modes = [m for m in range(len(mu)) if m != skip]
    b = mu[modes[0]][idx[:, modes[0]]]
    second = second_rows[modes[0]][idx[:, modes[0]]]
    for m in modes[1:]:
        b = b * mu[m][idx[:, m]]
        second.mul_(second_rows[m][idx[:, m]])
    return b, second


def _bcpf_original(indices, values, shape, max_rank: int, *, max_iter: int = 100,
                   tol: float = 1e-5, init: str = "ml", seed: int = 0, a0: float = 1e-6,
                   b0: float = 1e-6, c0: float = 1e-6, d0: float = 1e-6,
                   prune: bool = True) -> BCPFResult:
    idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
    y = torch.as_tensor(np.asarray(values), dtype=torch.float64)
    n_obs, ndim = idx.shape
    shape = tuple(int(s) for s in shape)
    # BCPF_TC.m: dscale = sqrt(mean((y - mean(y))^2)) / N, no centring
    scale = float(((y - y.mean()) ** 2).mean().sqrt()) / ndim
    if not scale > 0:
        scale = 1.0
    y = y / scale
    R = int(max_rank)
    gen = torch.Generator().manual_seed(seed)
    if init == "ml":
        if math.prod(shape) > 20_000_000:
            raise ValueError("init='ml' needs the dense tensor; use init='rand' for this shape")
        dense = np.full(shape, float(y.mean()))
        dense[tuple(idx.T.numpy())] = y.numpy()
        mu = []
        for n, size in enumerate(shape):
            u, s, _ = np.linalg.svd(np.moveaxis(dense, n, 0).reshape(size, -1), full_matrices=False)
            k = min(R, u.shape[1])
            f = torch.zeros(size, R, dtype=torch.float64)
            f[:, :k] = torch.as_tensor(u[:, :k] * np.sqrt(s[:k]))
            if k < R:
                f[:, k:] = torch.randn(size, R - k, generator=gen, dtype=torch.float64)
            mu.append(f)
    elif init == "rand":
        mu = [torch.randn(s, R, generator=gen, dtype=torch.float64) for s in shape]
    else:
        raise ValueError(f"init: expected 'ml' or 'rand', got {init!r}")
    V = [torch.eye(R, dtype=torch.float64).expand(s, R, R).clone() for s in shape]
    # second moments of the rows: the covariance alone until a mode is first updated
    S = [v.clone() for v in V]
    lam = torch.ones(R, dtype=torch.float64)
    tau = 1.0
    yy = float((y ** 2).sum())
    a_tau = a0 + 0.5 * n_obs
    c_lam = c0 + 0.5 * sum(shape)
    lb = []
    lb_const = (-0.5 * n_obs * math.log(2 * math.pi)
                + (-math.lgamma(a0) + a0 * math.log(b0)) + math.lgamma(a_tau) + a_tau)
    it = 0
    for it in range(1, max_iter + 1):
        for n in range(ndim):
            b, second = _rows_moments(idx, mu, S, n)
            size = shape[n]
            gram = torch.zeros(size, R, R, dtype=torch.float64).index_add_(0, idx[:, n], second)
            proj = torch.zeros(size, R, dtype=torch.float64).index_add_(0, idx[:, n], y.unsqueeze(-1) * b)
            V[n] = torch.linalg.inv(tau * gram + torch.diag(lam))
            V[n] = 0.5 * (V[n] + V[n].transpose(-1, -2))
            mu[n] = tau * (V[n] @ proj.unsqueeze(-1)).squeeze(-1)
            S[n] = V[n] + mu[n].unsqueeze(-1) * mu[n].unsqueeze(-2)
        # E[sum_j (y_j - x_j)^2] from the last mode's row sums (gram, proj):
        # sum_j y_j E[x_j] = sum_i proj_i . mu_i,  sum_j E[x_j^2] = sum_i <gram_i, E[a_i a_i^T]>
        last = ndim - 1
        power = sum((m ** 2).sum(0) + v.diagonal(dim1=-2, dim2=-1).sum(0) for m, v in zip(mu, V))
        d_lam = d0 + 0.5 * power
        lam = c_lam / d_lam
        err = yy - 2 * float((proj * mu[last]).sum()) + float((gram * S[last]).sum())
        b_tau = b0 + 0.5 * err
        tau = a_tau / b_tau
        # variational lower bound, terms as in BCPF_TC.m, computed before pruning as the code does
        e_log_tau = float(torch.special.digamma(torch.tensor(a_tau, dtype=torch.float64))) - math.log(b_tau)
        e_log_lam = torch.special.digamma(torch.tensor(c_lam, dtype=torch.float64)) - d_lam.log()
        logdet = sum(float(torch.linalg.slogdet(v)[1].sum()) for v in V)
        bound = (lb_const + 0.5 * n_obs * e_log_tau - 0.5 * tau * err
                 - 0.5 * R * sum(shape) * math.log(2 * math.pi)
                 + 0.5 * sum(shape) * float(e_log_lam.sum()) - 0.5 * float((lam * power).sum())
                 + float((-math.lgamma(c0) + c0 * math.log(d0) - d0 * lam + (c0 - 1) * e_log_lam).sum())
                 + (a0 - 1) * e_log_tau - b0 * tau
                 + 0.5 * logdet + 0.5 * R * sum(shape) * (1 + math.log(2 * math.pi))
                 + float((math.lgamma(c_lam) - (c_lam - 1) * torch.special.digamma(
                     torch.tensor(c_lam, dtype=torch.float64)) - d_lam.log() + c_lam).sum())
                 - (a_tau - 1) * float(torch.special.digamma(torch.tensor(a_tau, dtype=torch.float64)))
                 - math.log(b_tau))
        lb.append(bound)
        # prune components whose power is at machine precision of the factor scale
        comp = torch.cat(mu, 0).pow(2).sum(0)
        tol_power = sum(shape) * float(np.spacing(float(torch.cat(mu, 0).norm())))
        keep = comp > tol_power
        if not bool(keep.any()):
            break
        if prune and it >= 2 and not bool(keep.all()):
            k = keep.nonzero().flatten()
            mu = [m[:, k] for m in mu]
            V = [v[:, k][:, :, k] for v in V]
            S = [s[:, k][:, :, k] for s in S]
            lam = lam[k]
            R = int(k.numel())
        if it > 5 and abs(lb[-1] - lb[-2]) / abs(lb[1]) < tol:
            break
    return BCPFResult(mu, V, float(tau), R, lam.numpy(), it, 0.0, scale, lb)


def _bcpf_standardized(indices, values, shape, max_rank: int, *, max_iter: int = 100,
                       tol: float = 1e-5, prune_tol: float = 1e-3, a0: float = 1e-6,
                       b0: float = 1e-6, c0: float = 1e-6, d0: float = 1e-6, init: str = "svd",
                       seed: int = 0, standardize: bool = True, min_iter: int = 20) -> BCPFResult:
    idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
    y = torch.as_tensor(np.asarray(values), dtype=torch.float64)
    center = float(y.mean()) if standardize else 0.0
    scale = float(y.std()) if standardize else 1.0
    y = (y - center) / scale
    n_obs, ndim = idx.shape
    R = max_rank
    if init == "svd" and math.prod(shape) <= 20_000_000:
        mu = _svd_init(idx, y, shape, R)
    else:
        gen = torch.Generator().manual_seed(seed)
        mu = [torch.randn(s, R, generator=gen, dtype=torch.float64) for s in shape]
    V = [torch.eye(R, dtype=torch.float64).expand(s, R, R).clone() for s in shape]
    lam = torch.full((R,), 1.0, dtype=torch.float64)
    tau = 1.0 / float(y.var())
    prev_fit = None
    it = 0
    for it in range(1, max_iter + 1):
        for n in range(ndim):
            b = torch.ones(n_obs, R, dtype=torch.float64)
            second = torch.ones(n_obs, R, R, dtype=torch.float64)
            for m in range(ndim):
                if m == n:
                    continue
                rows = mu[m][idx[:, m]]
                b = b * rows
                second = second * (rows.unsqueeze(-1) * rows.unsqueeze(-2) + V[m][idx[:, m]])
            size = shape[n]
            prec = torch.zeros(size, R, R, dtype=torch.float64).index_add_(0, idx[:, n], second)
            rhs = torch.zeros(size, R, dtype=torch.float64).index_add_(0, idx[:, n], y.unsqueeze(-1) * b)
            prec = tau * prec + torch.diag(lam)
            V[n] = torch.linalg.inv(prec)
            mu[n] = tau * (V[n] @ rhs.unsqueeze(-1)).squeeze(-1)
        power = sum((m**2).sum(0) + v.diagonal(dim1=-2, dim2=-1).sum(0) for m, v in zip(mu, V))
        lam = (c0 + 0.5 * sum(shape)) / (d0 + 0.5 * power)
        # E[sum_j (y_j - x_j)^2]
        b = torch.ones(n_obs, R, dtype=torch.float64)
        second = torch.ones(n_obs, R, R, dtype=torch.float64)
        for m in range(ndim):
            rows = mu[m][idx[:, m]]
            b = b * rows
            second = second * (rows.unsqueeze(-1) * rows.unsqueeze(-2) + V[m][idx[:, m]])
        x_mean = b.sum(-1)
        err = (y**2).sum() - 2 * (y * x_mean).sum() + second.sum((-1, -2)).sum()
        tau = float((a0 + 0.5 * n_obs) / (b0 + 0.5 * err))
        # prune components with negligible power
        comp = torch.stack([(m**2).sum(0) for m in mu]).prod(0)
        keep = comp > prune_tol * comp.max()
        if it > min_iter // 2 and not bool(keep.all()) and int(keep.sum()) >= 1:
            k = keep.nonzero().flatten()
            mu = [m[:, k] for m in mu]
            V = [v[:, k][:, :, k] for v in V]
            lam = lam[k]
            R = int(k.numel())
        fit = float(1 - ((y - x_mean) ** 2).sum().sqrt() / y.norm())
        if it >= min_iter and prev_fit is not None and abs(fit - prev_fit) < tol:
            break
        prev_fit = fit
    return BCPFResult(mu, V, tau, R, lam.numpy(), it, center, scale)


def tensorly_masked_parafac(indices, values, shape, rank: int, *, seed: int = 0,
                            n_iter_max: int = 200):
    """TensorLy's masked ``parafac`` at a fixed rank (SVD init); returns a predictor."""
    import tensorly as tl

    idx = np.asarray(indices)
    dense = np.zeros(shape)
    mask = np.zeros(shape, dtype=bool)
    dense[tuple(idx.T)] = np.asarray(values)
    mask[tuple(idx.T)] = True
    cp = tl.decomposition.parafac(tl.tensor(dense), rank=rank, mask=mask, init="svd",
                                  n_iter_max=n_iter_max, random_state=seed)
    weights, factors = cp

    def predict(query):
        q = np.asarray(query)
        prod = np.ones((q.shape[0], rank)) * weights
        for n, f in enumerate(factors):
            prod = prod * f[q[:, n]]
        return prod.sum(-1)

    return predict


def tensorly_masked_parafac_tuned(indices, values, shape, ranks, *, validation: float = 0.1,
                                  seed: int = 0, n_iter_max: int = 200):
    """TensorLy's masked ``parafac`` at the rank of ``ranks`` with the lowest error on a random
    ``validation`` fraction of the observed entries (fit on the rest), refit on all observed
    entries at that rank. Returns the predictor, with ``.rank`` and ``.validation_errors``."""
    idx = np.asarray(indices)
    vals = np.asarray(values, dtype=float)
    perm = np.random.default_rng(seed).permutation(len(vals))
    n_val = max(1, int(round(validation * len(vals))))
    val, fit = perm[:n_val], perm[n_val:]
    errors = {}
    for r in ranks:
        f = tensorly_masked_parafac(idx[fit], vals[fit], shape, int(r), seed=seed,
                                    n_iter_max=n_iter_max)
        errors[int(r)] = float(np.linalg.norm(f(idx[val]) - vals[val]) / np.linalg.norm(vals[val]))
    best = min(errors, key=errors.get)
    predict = tensorly_masked_parafac(idx, vals, shape, best, seed=seed, n_iter_max=n_iter_max)
    predict.rank = best
    predict.validation_errors = errors
    return predict

"""Our SVGD vs ``pyro.infer.SVGD``: same model, particles, data and start, side by side.

Two models:

* Bayesian linear regression, N=1000, D=50, known noise (analytic posterior);
* CP completion, 30x30x30, true rank 3, 20% observed, 10 dB, max rank 8 (held-out error and
  90% interval coverage; NUTS is the reference in ``sghmc_vs_nuts.py``).

Both libraries run the *same* Pyro model function (written so that it also broadcasts over
Pyro's particle plate) from the *same* particles (MAP plus jitter). For the CP model we also
time our built-in ``TensorCompletion`` fast path. Per-step times are medians over steps.

Run: ``python benchmarks/svgd_vs_pyro.py [--particles 100] [--steps 300] [--threads 2]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import torch

import bayestensor as bt
from bayestensor.infer import SVGD, LogDensity
from bayestensor.infer.baselines import map_fit
from bayestensor.infer import block_ids

RESULTS = Path(__file__).parent / "results"


# --- models that run under both libraries -------------------------------------------------
def linreg_model(X, y):
    d = X.shape[1]
    w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([d]).to_event(1))
    w = w.reshape(-1, d) if w.dim() > 1 else w  # Pyro's particle plate adds (P, 1, d)
    with pyro.plate("data", X.shape[0]):
        pyro.sample("y", dist.Normal(w @ X.T, 1.0), obs=y)


def make_cp_model(shape, rank):
    def cp_model(indices, values):
        lam = pyro.sample("lam", dist.Gamma(1.0, 1.0).expand([rank]).to_event(1))
        lam = lam.reshape(-1, 1, rank) if lam.dim() > 1 else lam
        factors = []
        for n, size in enumerate(shape):
            f = pyro.sample(f"f{n}", dist.Normal(0.0, 1.0).expand([size, rank]).to_event(2))
            f = f.reshape(-1, size, rank) if f.dim() > 2 else f
            factors.append(f / lam.sqrt())
        tau = pyro.sample("tau", dist.Gamma(1.0, 0.01))
        tau = tau.reshape(-1, 1) if tau.dim() > 0 else tau
        prod = None
        for n, f in enumerate(factors):
            rows = f.index_select(-2, indices[:, n])
            prod = rows if prod is None else prod * rows
        with pyro.plate("obs", indices.shape[0]):
            pyro.sample("y", dist.Normal(prod.sum(-1), tau.rsqrt()), obs=values)

    return cp_model


# --- runners ------------------------------------------------------------------------------
def run_ours(potential, theta0, steps, blocks, lr):
    svgd = SVGD(potential, kernel="rbf", blocks=blocks, lr=lr, num_steps=steps)
    state = svgd.init_state(theta0)
    times = []
    for t in range(steps):
        start = time.perf_counter()
        state = svgd.step(state, t)
        times.append(time.perf_counter() - start)
    return state.theta, times


def run_pyro(model, args, theta0, steps, lr, mode):
    pyro.clear_param_store()
    kernel = pyro.infer.RBFSteinKernel()
    svgd = pyro.infer.SVGD(model, kernel, pyro.optim.Adam({"lr": lr}), num_particles=theta0.shape[0],
                           max_plate_nesting=1, mode=mode)
    svgd.step(*args)  # creates the particle parameter
    particles = pyro.param("svgd_particles")
    with torch.no_grad():
        particles.unconstrained().copy_(theta0.reshape(particles.unconstrained().shape))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        svgd.step(*args)
        times.append(time.perf_counter() - start)
    return pyro.param("svgd_particles").unconstrained().detach().reshape(theta0.shape), times


def start_particles(potential, n, jitter, seed):
    theta, _ = map_fit(potential, potential.init_theta(1), num_steps=2000, progress=False)
    gen = torch.Generator().manual_seed(seed)
    return theta.expand(n, -1) + jitter * torch.randn((n, potential.dim), generator=gen)


def bench_linreg(n_particles, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    N, D = 1000, 50
    X = torch.randn(N, D, generator=gen)
    y = X @ torch.randn(D, generator=gen) + torch.randn(N, generator=gen)
    cov = torch.linalg.inv(X.T @ X + torch.eye(D))
    mean, sd = cov @ X.T @ y, cov.diag().sqrt()
    pot = LogDensity(linreg_model, (X, y), seed=seed)
    theta0 = start_particles(pot, n_particles, 0.05, seed)
    rows = []

    def score(name, theta, times):
        w = pot.constrain(theta)["w"].double()
        rows.append({"model": "linreg N=1000 D=50", "impl": name, "particles": n_particles,
                     "step_ms": 1e3 * statistics.median(times[5:]),
                     "mean_err_sd": float(((w.mean(0) - mean) / sd).abs().max()),
                     "var_rel_err": float((w.var(0) / sd**2 - 1).abs().max())})

    for blocks in ("coordinate", "all"):
        ids = block_ids(pot, None, blocks)
        score(f"bayestensor ({blocks} kernel)", *run_ours(pot, theta0, steps, ids, 0.05))
    for mode in ("univariate", "multivariate"):
        score(f"pyro.infer.SVGD ({mode})", *run_pyro(linreg_model, (X, y), theta0, steps, 0.01, mode))
    return rows


def bench_cp(n_particles, steps, seed):
    data = bt.data.synthetic_tensor((30, 30, 30), rank=3, snr_db=10, observed=0.2, seed=seed)
    rank = 8
    builtin = bt.TensorCompletion(data.shape, "cp", max_rank=rank)
    builtin.set_data(data.train)
    y = builtin.model_args()[1]
    idx = data.train.indices
    cp_model = make_cp_model(data.shape, rank)
    pot = LogDensity(cp_model, (idx, y), seed=seed,
                    init_values=_cp_init(builtin, rank))
    theta0 = start_particles(pot, n_particles, 0.1, seed)
    test_idx = data.test.indices
    rows = []

    def score(name, theta, times, potential=pot):
        values = potential.constrain(theta)
        if "f0" in values:
            lam = values["lam"].unsqueeze(-2)
            fs = [values[f"f{n}"] / lam.sqrt() for n in range(3)]
            tau = values["tau"]
        else:
            fs = [values[f"X.factor{n}"] for n in range(3)]
            tau = values["noise_precision"]
        mu = bt.CPTensor(data.shape, fs).entries(test_idx) * builtin.scale + builtin.center
        pred = bt.results.Prediction(mean=mu.double().mean(0).numpy(), sd=None, sd_mean=None,
                                   draws=mu.detach(), noise_sd=tau.rsqrt() * builtin.scale)
        rows.append({"model": "CP completion 30^3 r3 20% 10dB R=8", "impl": name,
                     "particles": n_particles, "step_ms": 1e3 * statistics.median(times[5:]),
                     "heldout_rel_err": data.relative_error(pred.mean),
                     "coverage90_noisy": pred.coverage(data.test_noisy.values.numpy(), 0.9),
                     "coverage90_mean_vs_clean": pred.coverage(data.test.values.numpy(), 0.9, "mean")})

    for blocks in ("coordinate", "all"):
        ids = block_ids(pot, None, blocks)
        score(f"bayestensor ({blocks} kernel)", *run_ours(pot, theta0, steps, ids, 0.05))
    fast = LogDensity(builtin.pyro_model, builtin.model_args(), init_values=builtin.init_values(),
                     fast_log_joint=builtin.fast_log_joint, seed=seed)
    fast_theta0 = start_particles(fast, n_particles, 0.1, seed)
    for blocks in ("coordinate", "slice", "all"):
        ids = block_ids(fast, builtin, blocks)
        theta, times = run_ours(fast, fast_theta0, steps, ids, 0.05)
        score(f"bayestensor built-in fast path ({blocks} kernel)", theta, times, fast)
    for mode in ("univariate", "multivariate"):
        score(f"pyro.infer.SVGD ({mode})", *run_pyro(cp_model, (idx, y), theta0, steps, 0.01, mode))
    return rows


def _cp_init(builtin, rank):
    """Start the benchmark model where the built-in model's SVD initialization starts."""
    v = builtin.init_values()
    lam = torch.ones(rank)
    return {"lam": lam, "tau": v["noise_precision"],
            **{f"f{n}": v[f"X.factor{n}"] for n in range(3)}}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--particles", type=int, default=100)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["linreg", "cp"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    if args.only in (None, "linreg"):
        rows += bench_linreg(args.particles, args.steps, args.seed)
    if args.only in (None, "cp"):
        rows += bench_cp(args.particles, args.steps, args.seed)
    for model in dict.fromkeys(r["model"] for r in rows):
        group = [r for r in rows if r["model"] == model]
        pyro_ref = [r for r in group if r["impl"].startswith("pyro") and "univariate" in r["impl"]][0]
        print(f"\n{model}  ({args.particles} particles, {args.steps} steps, {args.threads} threads)")
        for r in group:
            r["speedup_vs_pyro_univariate"] = pyro_ref["step_ms"] / r["step_ms"]
            metrics = {k: round(v, 4) for k, v in r.items()
                       if k not in ("model", "impl", "particles") and isinstance(v, float)}
            print(f"  {r['impl']:45s} {metrics}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "svgd_vs_pyro.json"
    out.write_text(json.dumps({"machine": platform.platform(), "processor": platform.processor(),
                               "torch": torch.__version__, "pyro": pyro.__version__,
                               "args": vars(args), "rows": rows}, indent=2))
    print(f"\nwrote {out}")
    np.seterr(all="ignore")


if __name__ == "__main__":
    main()

"""The eight schools (Rubin 1981), centred and non-centred, under every method, against NUTS.

Each form is written as a plain Pyro model (``mu ~ N(0, 5)``, ``tau ~ HalfCauchy(5)``, eight
group effects, known sds) and fitted by ``bt.fit`` at its defaults with each method, one run
per seed; NUTS (4 chains x 500 draws after 500 warm-up steps) on the non-centred form is the
reference posterior, and Pyro's own mean-field VI (``AutoNormal``, 5,000 steps of
``ClippedAdam`` at lr 0.01, 8 particles: its documented defaults but the particles) is the
peer of our VI on the same model. Per run: the mean and sd of ``mu``, the median of ``tau``,
for chains the largest R-hat and smallest bulk ESS over the sites, the draws whose transform
saturated, the warnings ``fit`` gave (class names), and seconds.

Run: ``OMP_NUM_THREADS=1 python benchmarks/eight_schools.py [--seeds 0 1 2] [--out FILE]``
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch

import bayestensor as bt
from tables import write_result

RESULTS = Path(__file__).parent / "results"
Y = torch.tensor([28.0, 8, -3, 7, -1, 1, 18, 12])
SIGMA = torch.tensor([15.0, 10, 16, 11, 9, 11, 10, 18])
METHODS = ("map", "vi", "svgd", "sghmc")


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


FORMS = {"centred": centred, "non_centred": non_centred}


def summarize(mu: torch.Tensor, tau: torch.Tensor) -> dict:
    mu, tau = mu.double().flatten(), tau.double().flatten()
    return {"mu_mean": float(mu.mean()), "mu_sd": float(mu.std()) if mu.numel() > 1 else 0.0,
            "tau_median": float(tau.median())}


def ours(form: str, method: str, seed: int, **kw) -> dict:
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post = bt.fit(FORMS[form], method=method, seed=seed, progress=False, **kw)
    row = {"form": form, "method": method, "seed": seed,
           "seconds": time.perf_counter() - start,
           **summarize(post.samples["mu"], post.samples["tau"]),
           "saturated_draws": post.info.get("saturated_draws"),
           "warnings": sorted({w.category.__name__ for w in caught
                               if issubclass(w.category, UserWarning)})}
    if post.is_markov_chain:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check = post.diagnostics()
        row.update(max_rhat=check["max_rhat"], min_ess_bulk=check["min_ess_bulk"],
                   converged=check["converged"])
    return row


def pyro_autonormal(form: str, seed: int, draws: int = 1000) -> dict:
    from pyro.infer import SVI, Trace_ELBO
    from pyro.infer.autoguide import AutoNormal

    start = time.perf_counter()
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    guide = AutoNormal(FORMS[form])
    svi = SVI(FORMS[form], guide, pyro.optim.ClippedAdam({"lr": 0.01}),
              Trace_ELBO(num_particles=8, vectorize_particles=True))
    for _ in range(5000):
        svi.step()
    with torch.no_grad():
        samples = [guide() for _ in range(draws)]
    return {"form": form, "method": "pyro AutoNormal", "seed": seed,
            "seconds": time.perf_counter() - start,
            **summarize(torch.stack([s["mu"] for s in samples]),
                        torch.stack([s["tau"] for s in samples]))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS / "eight_schools.json")
    args = parser.parse_args()
    rows = [ours("non_centred", "nuts", 0, num_samples=500, num_warmup=500)]
    print(rows[-1], flush=True)
    for form in FORMS:
        for seed in args.seeds:
            for method in METHODS:
                rows.append(ours(form, method, seed))
                print(rows[-1], flush=True)
            rows.append(pyro_autonormal(form, seed))
            print(rows[-1], flush=True)
    write_result(args, rows, None)


if __name__ == "__main__":
    main()

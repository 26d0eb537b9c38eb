"""Plain Pyro models with ``obs_mask`` and ``pyro.deterministic``: what a fit reports.

Two small models, 50 observations of ``Normal(mu, 1)`` with a ``Normal(0, 10)`` prior on
``mu``:

* ``obs_mask``: 35 of the 50 observed (``obs=y, obs_mask=m``), so Pyro samples
  ``y_unobserved`` at all 50 positions and keeps it at the 15 missing ones. SGHMC at its
  defaults (4 chains x 1000 draws): the largest R-hat of ``post.diagnostics()`` and whether
  it calls the run converged, and the posterior mean and sd of ``mu`` against the conjugate
  answer; VI at its defaults: its steps, whether it converged, and the largest posterior sd of
  ``y_unobserved`` (about 1 at the imputed positions).
* ``deterministic``: all 50 observed, plus ``pyro.deterministic("twice_mu", 2 * mu)``. SGHMC
  at 4 x 200 draws: the variables of ``to_arviz()``'s ``log_likelihood`` group and whether
  ``az.loo`` runs on it.

Run: ``OMP_NUM_THREADS=1 python benchmarks/pyro_model_features.py [--out FILE]`` (run it on
two commits to compare them; it uses nothing but the public API).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import torch

import bayestensor as bt

RESULTS = Path(__file__).parent / "results"


def data():
    gen = torch.Generator().manual_seed(0)
    y = 2.0 + torch.randn(50, generator=gen)
    mask = torch.rand(50, generator=gen) < 0.7
    return y, mask


def obs_mask_case(y, mask) -> dict:
    def model():
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        with pyro.plate("n", 50):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y, obs_mask=mask)

    precision = 1 / 100 + int(mask.sum())
    out = {"conjugate_mean": float(y[mask].sum()) / precision, "conjugate_sd": precision ** -0.5}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sghmc = bt.fit(model, method="sghmc", seed=0, progress=False)
        vi = bt.fit(model, method="vi", seed=0, progress=False)
    check = sghmc.diagnostics()
    imputed = vi["y_unobserved"].double().reshape(-1, 50).numpy()
    out.update(sghmc_max_rhat=check["max_rhat"], sghmc_converged=bool(check["converged"]),
               sghmc_mu_mean=float(sghmc["mu"].mean()), sghmc_mu_sd=float(sghmc["mu"].std()),
               vi_steps=vi.info.get("vi_steps"), vi_converged=vi.info.get("vi_converged"),
               vi_largest_sd=float(np.nanmax(imputed.std(0))),
               warnings=sorted({str(w.message)[:120] for w in caught}))
    return out


def deterministic_case(y) -> dict:
    def model():
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        pyro.deterministic("twice_mu", 2 * mu)
        with pyro.plate("n", 50):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    import arviz as az

    post = bt.fit(model, method="sghmc", num_samples=200, seed=0, progress=False)
    idata = post.to_arviz()
    out = {"log_likelihood": list(idata.log_likelihood.data_vars),
           "posterior": list(idata.posterior.data_vars)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["loo_elpd"] = float(az.loo(idata).elpd_loo)
    except Exception as err:  # the failure is the measurement
        out["loo_error"] = f"{type(err).__name__}: {err}"
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "pyro_model_features.json")
    args = parser.parse_args(argv)
    y, mask = data()
    result = {"obs_mask": obs_mask_case(y, mask), "deterministic": deterministic_case(y),
              "torch": torch.__version__}
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

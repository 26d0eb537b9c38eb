"""How long the uncertainty report takes: predictive quantiles, then the whole report.

1. Predictive-interval quantiles on the same arrays (``--entries`` x ``--draws``, two levels):
   the former 60-step bisection (kept below as the reference) against
   :func:`bayestensor.results.quantiles.normal_mixture_quantiles`, and their largest difference
   in units of the noise sd.
2. The whole ``bayestensor.report`` of a completion run shaped like ``bayestensor demo`` (CP
   30x30x30, 20% observed, 2 chains x 200 SGHMC draws = 400 draws, 20,000 held-out entries),
   timed per section.

Run: ``python benchmarks/report_speed.py [--entries 20000] [--draws 400] [--threads 2]``
(``--skip-old`` leaves out the slow reference). Writes ``benchmarks/results/report_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"
LEVELS = (0.05, 0.95)


def bisection_quantiles(mu, sd, probs, iters: int = 60):
    """The former implementation: 60 bisections of the mixture CDF per level."""
    mu = mu.double()
    sd = torch.as_tensor(sd, dtype=torch.float64)
    sd = sd.unsqueeze(-1) if sd.ndim == 1 else sd
    sd = sd.clamp_min(1e-300)
    normal = torch.distributions.Normal(0.0, 1.0)
    spread = 12.0 * sd.max()
    out = []
    for p in probs:
        lo, hi = mu.min(0).values - spread, mu.max(0).values + spread
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            below = normal.cdf((mid - mu) / sd).mean(0) < p
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        out.append(0.5 * (lo + hi))
    return out


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def quantile_speed(entries: int, draws: int, skip_old: bool) -> dict:
    """Old and new quantiles of a mixture like a completion run's predictive distribution."""
    from bayestensor.results.quantiles import normal_mixture_quantiles

    gen = torch.Generator().manual_seed(0)
    truth = torch.randn(entries, generator=gen, dtype=torch.float64)
    entry_sd = 0.05 + 0.3 * torch.rand(entries, generator=gen, dtype=torch.float64)
    mu = truth + entry_sd * torch.randn(draws, entries, generator=gen, dtype=torch.float64)
    noise_sd = 0.3 + 0.02 * torch.randn(draws, generator=gen, dtype=torch.float64)
    new, new_s = timed(lambda: normal_mixture_quantiles(mu, noise_sd, LEVELS))
    out = {"entries": entries, "draws": draws, "levels": list(LEVELS), "new_s": new_s}
    if not skip_old:
        old, old_s = timed(lambda: bisection_quantiles(mu, noise_sd, LEVELS))
        diff = max(float((a - b).abs().max()) for a, b in zip(old, new)) / float(noise_sd.min())
        out.update(old_s=old_s, speedup=old_s / new_s, max_abs_diff_in_noise_sd=diff)
    return out


def report_speed(seed: int) -> dict:
    """Fit a demo-sized run, save it as a run directory, and time its report per section."""
    import bayestensor as bt
    from bayestensor.report.api import section_steps
    from bayestensor.report.rundir import load_npz, read_run, run_file

    data = bt.data.synthetic_tensor((30, 30, 30), rank=3, snr_db=10, observed=0.2, seed=seed)
    model = bt.TensorCompletion((30, 30, 30), format="cp", max_rank=15, prior="gamma")
    post, fit_s = timed(lambda: bt.fit(model, data.train, method="sghmc", num_samples=200,
                                       num_warmup=300, num_chains=2, lr=0.05, seed=seed,
                                       progress=False))
    run_dir = Path(tempfile.mkdtemp(prefix="report_speed_"))
    bt.report.save_posterior_run(post, run_dir, heldout={
        "indices": data.test.indices.numpy(), "truth": data.test.values.numpy(),
        "noisy": data.test_noisy.values.numpy()})
    _, report_s = timed(lambda: bt.report(run_dir, progress=False))
    meta = read_run(run_dir)
    posterior = bt.Posterior.load(run_file(run_dir, meta, "posterior.pt"))
    heldout = load_npz(run_file(run_dir, meta, "heldout.npz"))
    sections = {key: timed(make)[1] for key, make in section_steps(run_dir, meta, posterior, heldout)}
    return {"heldout_entries": len(data.test), "draws": post.num_chains * post.num_draws,
            "fit_s": fit_s, "report_s": report_s, "section_s": sections, "run_dir": str(run_dir)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--draws", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-old", action="store_true", help="Leave out the 60-step bisection.")
    parser.add_argument("--skip-report", action="store_true", help="Quantiles only.")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {"machine": f"{platform.processor() or platform.machine()}, {args.threads} threads, CPU",
              "torch": torch.__version__,
              "quantiles": quantile_speed(args.entries, args.draws, args.skip_old)}
    q = result["quantiles"]
    print(f"quantiles, {q['entries']} entries x {q['draws']} draws x {len(LEVELS)} levels: "
          f"new {q['new_s']:.2f} s" + (f", old {q['old_s']:.2f} s ({q['speedup']:.0f}x), largest "
                                      f"difference {q['max_abs_diff_in_noise_sd']:.1e} noise sd"
                                      if "old_s" in q else ""))
    if not args.skip_report:
        result["report"] = r = report_speed(args.seed)
        print(f"report of {r['heldout_entries']} held-out entries x {r['draws']} draws: "
              f"{r['report_s']:.2f} s (fit {r['fit_s']:.2f} s)")
        for key, seconds in r["section_s"].items():
            print(f"  {key:<12} {seconds:6.2f} s")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "report_speed.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

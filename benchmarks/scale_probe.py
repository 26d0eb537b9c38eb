"""Completion at scale: a 1000^3 rank-20 CP tensor at 20 dB, 1e4 .. 1e6 observed entries.

Each size runs in a fresh process so that its peak resident memory (``ru_maxrss``) is its own.
The dense tensor (1e9 entries, 4 GB in float32) is never allocated: data are generated entry by
entry from the factors and the model gathers factor rows at observed indices only.

Per size it reports:

- the start from the entries alone (``TensorCompletion.init_values``: spectral start + ALS),
  its time and held-out relative error, and the same ALS from random factors;
- the default SGHMC fit from that start: ``bt.fit(model, data, "sghmc", num_samples=500,
  batch_size=n_obs // 10)``, everything else at its default (MAP start of 1000 mini-batch
  steps, 500 warm-up steps, one chain); held-out error of the posterior mean against the
  noise-free entries, the rank found (mode over draws), 90% predictive coverage of the noisy
  held-out entries, time, and peak memory;
- with ``--fit default``, instead of that SGHMC fit, ``bt.fit(model, data, init=start)`` with
  no method: what a user gets (on the CPU the closed-form VI, 1,000 draws; the MAP on a GPU);
- with ``--step-times``: time per SGHMC step, full batch and mini-batches of 10%.

Run: ``python benchmarks/scale_probe.py [--sizes 10000,100000,1000000] [--threads 1]
[--fit sghmc|default]``; on a
GPU, ``--device cuda`` (the start stays on the CPU; the fit and predictions run on the GPU, whose
peak memory is reported as ``peak_gpu_mib``).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SHAPE = (1000, 1000, 1000)
TRUE_RANK, MAX_RANK, SNR_DB = 20, 25, 20.0


def child(n_obs: int, threads: int, steps: int, device: str, step_times: bool,
          compare_random: bool, fit: str = "sghmc") -> dict:
    import torch

    import bayestensor as bt

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    data = bt.data.synthetic_tensor(SHAPE, rank=TRUE_RANK, snr_db=SNR_DB, observed=n_obs / 1e9,
                                    n_test=10_000, seed=0)
    out = {"observations": len(data.train), "generate_s": time.perf_counter() - t0,
           "device": device, "fit": fit}
    _stage(f"{n_obs}: data in {out['generate_s']:.1f} s")
    model = bt.TensorCompletion(SHAPE, "cp", max_rank=MAX_RANK)
    model.set_data(data.train)
    t0 = time.perf_counter()
    start = model.init_values()  # spectral start + ALS on the observed entries
    out["start_s"] = time.perf_counter() - t0
    x = model.tensor_prior.build({k: v.unsqueeze(0) for k, v in start.items()})
    pred = x.entries(data.test.indices)[0] * model.scale + model.center
    out["start_heldout_rel_err"] = data.relative_error(pred)
    _stage(f"{n_obs}: start in {out['start_s']:.1f} s, error {out['start_heldout_rel_err']:.3f}")
    if compare_random:
        t0 = time.perf_counter()
        rand = bt.CPTensor.from_entries(data.train.indices, data.train.values, SHAPE, MAX_RANK,
                                        start="random")
        out["random_als_s"] = time.perf_counter() - t0
        out["random_als_heldout_rel_err"] = data.relative_error(rand.entries(data.test.indices))
    t0 = time.perf_counter()
    try:
        if fit == "default":
            post = bt.fit(model, data.train, seed=0, progress=False, device=device, init=start)
        else:
            post = bt.fit(model, data.train, method="sghmc", num_samples=500, num_chains=1,
                          batch_size=max(1, n_obs // 10), seed=0, progress=False,
                          device=device, init=start)
        out["fit_s"] = time.perf_counter() - t0
        out["method"] = post.method
        out.update({k: post.info[k] for k in ("vi_sweeps", "vi_converged", "vi_noise_starts")
                    if k in post.info})
        _stage(f"{n_obs}: fit in {out['fit_s']:.1f} s")
        pred = post.predict(data.test.indices)
        out["heldout_rel_err"] = data.relative_error(pred.mean)
        lo, hi = pred.interval(0.9)
        noisy = data.test_noisy.values.numpy()
        out["coverage90"] = float(((noisy >= lo) & (noisy <= hi)).mean())
        out["rank_found"] = int(post.effective_rank().mode()[0])
        out["map_converged"] = bool(post.info.get("map_converged"))
    except bt.DivergenceError as err:
        out["fit_s"] = time.perf_counter() - t0
        out["heldout_rel_err"] = float("nan")
        out["fit_error"] = str(err).split(";")[0]
    out["start_plus_fit_s"] = out["start_s"] + out["fit_s"]
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device != "cpu":
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    if step_times:
        out.update(_step_times(model, start, n_obs, steps, device))
    return out


def _stage(message: str) -> None:
    """Say how far a size got (on stderr, which the parent passes through): a run stopped by
    a time limit still shows where its time went."""
    print(message, file=sys.stderr, flush=True)


def _step_times(model, start, n_obs: int, steps: int, device: str) -> dict:
    """Median seconds per SGHMC step from the start, full batch and 10% mini-batches."""
    import torch

    from bayestensor.infer import SGHMC, LogDensity

    model.to(device)
    out = {}
    for label, b in (("full", None), ("batch10%", max(1, n_obs // 10))):
        pot = LogDensity(model.pyro_model, model.model_args(),
                         {"subsample_size": b} if b else {}, init_values=start,
                         fast_log_joint=model.fast_log_joint, seed=0)
        sampler = SGHMC(pot, lr=0.001, batch_size=b)
        state = sampler.init_state(pot.init_theta(1))
        times = []
        for t in range(steps):
            t1 = time.perf_counter()
            state = sampler.step(state, t)
            if device != "cpu":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t1)
        out[f"sghmc_{label}_s_per_step"] = statistics.median(times)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--step-times", action="store_true")
    parser.add_argument("--no-random", action="store_true",
                        help="skip the ALS from random factors")
    parser.add_argument("--fit", choices=("sghmc", "default"), default="sghmc",
                        help="the issue's MAP + 500 SGHMC draws, or fit's default method")
    parser.add_argument("--tag", default="")
    parser.add_argument("--out", default=None,
                        help="result file (default: results/scale_<device>[_<tag>].json)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.threads, args.steps, args.device,
                               args.step_times, not args.no_random, args.fit)))
        return
    out = (Path(args.out) if args.out else
           RESULTS / f"scale_{args.device}{'_' + args.tag if args.tag else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--child", str(n), "--threads", str(args.threads),
               "--steps", str(args.steps), "--device", args.device, "--fit", args.fit]
        cmd += ["--step-times"] if args.step_times else []
        cmd += ["--no-random"] if args.no_random else []
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # stderr passes through
        if proc.returncode == 0:
            row = json.loads(proc.stdout.strip().splitlines()[-1])
        else:  # keep the sizes already measured; the traceback went to stderr
            row = {"observations": n, "error": f"exit status {proc.returncode}"}
        rows.append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        out.write_text(json.dumps({"machine": platform.platform(), "args": vars(args),
                                   "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

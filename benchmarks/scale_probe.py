"""Completion at scale: a 1000^3 rank-20 CP tensor, 1e4 .. 1e6 observed entries.

Each size runs in a fresh process so that its peak resident memory (``ru_maxrss``) is its own.
The dense tensor (1e9 entries, 4 GB in float32) is never allocated: data are generated entry by
entry from the factors and the model gathers factor rows at observed indices only. Reports the
time per SGHMC step (full batch, and mini-batches of 10%; medians over steps), peak memory, and
the held-out error and rank found after a mini-batched MAP + SGHMC run from a random start.

Run: ``python benchmarks/scale_probe.py [--sizes 10000,100000,1000000] [--threads 2]``
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


def child(n_obs: int, threads: int, steps: int, device: str) -> dict:
    import torch

    import bayestensor as bt
    from bayestensor.infer import SGHMC, LogDensity

    torch.set_num_threads(threads)
    shape = (1000, 1000, 1000)
    t0 = time.perf_counter()
    data = bt.data.synthetic_tensor(shape, rank=20, snr_db=10, observed=n_obs / 1e9,
                                        n_test=10_000, seed=0)
    gen_s = time.perf_counter() - t0
    model = bt.TensorCompletion(shape, "cp", max_rank=25)
    model.set_data(data.train)
    t0 = time.perf_counter()
    model_init = model.init_values()  # ridge ALS on the observed entries (no dense tensor)
    init_s = time.perf_counter() - t0
    out = {"observations": len(data.train), "generate_s": gen_s, "als_init_s": init_s,
           "device": device}
    batch = max(1, n_obs // 10)
    t0 = time.perf_counter()
    try:
        post = bt.fit(model, data.train, method="sghmc", num_chains=1, num_samples=steps,
                      num_warmup=steps, batch_size=batch, seed=0, progress=False,
                      lr=0.001, noise_estimate="auto", map_steps=500, device=device,
                      map_hold=None)
        out["heldout_rel_err"] = data.relative_error(post.predict(data.test.indices).mean)
        out["rank_found"] = int(post.effective_rank().mode()[0])
    except bt.DivergenceError as err:
        out["heldout_rel_err"] = float("nan")
        out["fit_error"] = str(err).split(";")[0]
    out["map_plus_sghmc_s"] = time.perf_counter() - t0
    # Time per step on its own: the sampler on the bound model from a random start.
    model.to(device)
    for label, b in (("full", None), ("batch10%", batch)):
        pot = LogDensity(model.pyro_model, model.model_args(),
                        {"subsample_size": b} if b else {}, init_values=model_init,
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
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.threads, args.steps, args.device)))
        return
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        proc = subprocess.run([sys.executable, __file__, "--child", str(n), "--threads",
                               str(args.threads), "--steps", str(args.steps), "--device", args.device],
                              capture_output=True, text=True, check=True)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    base = rows[0]
    for r in rows:
        r["obs_ratio"] = r["observations"] / base["observations"]
        r["time_ratio_full"] = r["sghmc_full_s_per_step"] / base["sghmc_full_s_per_step"]
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"scale_{args.device}.json"
    out.write_text(json.dumps({"machine": platform.platform(), "args": vars(args), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""An 8-task sweep on local Ray vs the local sequential backend, and Ray's overhead per task.

Each task fits SGHMC (2 chains) to its own synthetic 20x20x20 completion problem. Both backends
run the same tasks with the same derived seeds (the results are checked equal). Ray's workers
are warmed first (they import bayestensor once); the overhead per task is the wall time of 200
no-op tasks on Ray divided by 200.

Run: ``python benchmarks/ray_sweep.py [--tasks 8] [--cpus 2]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def task(settings: dict) -> dict:
    import bayestensor as bt

    torch.set_num_threads(1)
    data = bt.data.synthetic_tensor((20, 20, 20), rank=3, observed=0.2, seed=settings["seed"])
    post = bt.fit(bt.TensorCompletion(data.shape, "cp", max_rank=6), data.train, method="sghmc",
                  num_chains=2, num_samples=200, num_warmup=200, seed=settings["seed"], progress=False)
    return {"error": data.relative_error(post.predict(data.test.indices).mean)}


def noop(settings: dict) -> int:
    return settings["replicate"]


def warm(settings: dict) -> int:
    import bayestensor  # noqa: F401  (each worker pays the torch/pyro import once, here)

    return settings["replicate"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    from bayestensor.parallel import ensure_ray, sweep

    grid = {"problem": ["cp20"]}
    t0 = time.perf_counter()
    local = sweep(task, grid, seeds=args.tasks, backend="local", progress=False)
    t_local = time.perf_counter() - t0
    ray = ensure_ray(num_cpus=args.cpus)
    sweep(warm, grid, seeds=2 * args.cpus, backend="ray", progress=False)  # warm the workers
    t0 = time.perf_counter()
    remote = sweep(task, grid, seeds=args.tasks, backend="ray", progress=False)
    t_ray = time.perf_counter() - t0
    t0 = time.perf_counter()
    sweep(noop, grid, seeds=200, backend="ray", progress=False)
    overhead = (time.perf_counter() - t0) / 200
    ray.shutdown()
    row = {"tasks": args.tasks, "cpus": args.cpus, "local_sequential_s": t_local, "ray_s": t_ray,
           "speedup": t_local / t_ray, "ray_overhead_ms_per_task": 1e3 * overhead,
           "same_results": local.results == remote.results}
    print(row)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ray_sweep.json").write_text(json.dumps({"machine": platform.platform(), **row}, indent=2))


if __name__ == "__main__":
    main()

"""A replicate sweep on Ray: completion error against the observed fraction, over seeds.

``bayestensor.parallel.sweep`` runs ``study(task)`` for every setting of the grid times every
replicate seed. With ``backend="ray"`` each task is a Ray task on a local Ray started here with
2 CPUs; every task's seed is derived from the base seed and the task's key, so the numbers are
the same as with ``backend="local"``. Finished tasks are appended to a JSON-lines file: running
the script again with the same OUT_DIR skips them. Without Ray installed, the script says so and
runs the same sweep locally.

Usage::

    python examples/ray_sweep.py [OUT_DIR]
"""

import os
import statistics
import sys
import tempfile
from pathlib import Path

import bayestensor as bt
from bayestensor.parallel import sweep

try:
    import ray
except ImportError:  # Ray is optional: pip install 'bayestensor[ray]'
    ray = None

FAST = os.environ.get("BAYESTENSOR_EXAMPLES_FAST") == "1"
SIZE, STEPS, SEEDS = (8, 100, 2) if FAST else (15, 300, 4)

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bt-sweep-"))


def study(task):
    """One replicate: fit a completion model at one observed fraction, return its error."""
    data = bt.data.synthetic_tensor((SIZE, SIZE, SIZE), rank=2, observed=task["observed"],
                                    n_test=200, seed=task["seed"])
    model = bt.TensorCompletion(data.shape, format="cp", max_rank=4)
    post = bt.fit(model, data.train, method="map", num_steps=STEPS, seed=task["seed"],
                  progress=False)
    return {"error": data.relative_error(post.predict(data.test.indices).mean)}


if ray is not None:
    backend, options = "ray", {"num_cpus": 2}
else:
    print("Ray is not installed (pip install 'bayestensor[ray]'): running the sweep locally.")
    backend, options = "local", {}

grid = {"observed": [0.1, 0.3]}
result = sweep(study, grid, seeds=SEEDS, seed=0, backend=backend, out=out / "sweep.jsonl",
               progress=False, **options)
if ray is not None:
    ray.shutdown()

if result.failed:
    sys.exit(f"failed tasks: {result.failed}")
for observed in grid["observed"]:
    errors = [r["error"] for (settings, _), r in result.results.items()
              if dict(settings)["observed"] == observed]
    print(f"observed {observed:.0%}: relative error {statistics.mean(errors):.3f} "
          f"(min {min(errors):.3f}, max {max(errors):.3f}, {len(errors)} seeds, {backend})")
print("results:", out / "sweep.jsonl")

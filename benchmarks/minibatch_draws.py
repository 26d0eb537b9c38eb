"""What the mini-batch draws of a default scale fit cost on the CPU.

1. Counts the mini-batches a default fit draws (``LogDensity.draw_subsample`` calls): the fit
   of ``scale_probe.py`` (1000^3 CP rank 20 at 20 dB, max rank 25, one SGHMC chain of 500
   draws on mini-batches of 10%, everything else at its defaults) at ``--observations``
   entries, small enough to run in seconds: the count depends on the settings, not the size.
2. Times NumPy's draw of a tenth of the indices without replacement (what the CPU path of
   ``LogDensity._sample_without_replacement`` does each step) at 1e6 and 1e7 observations,
   median of ``--repeats``.

Run: ``python benchmarks/minibatch_draws.py [--observations 10000] [--threads 1]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SHAPE = (1000, 1000, 1000)


def count_draws(n_obs: int) -> int:
    import bayestensor as bt
    from bayestensor.infer.log_density import LogDensity

    calls = [0]
    original = LogDensity.draw_subsample

    def counted(self, *args, **kwargs):
        calls[0] += 1
        return original(self, *args, **kwargs)

    data = bt.data.synthetic_tensor(SHAPE, rank=20, snr_db=20.0, observed=n_obs / 1e9,
                                    n_test=100, seed=0)
    model = bt.TensorCompletion(SHAPE, "cp", max_rank=25)
    model.set_data(data.train)
    start = model.init_values()
    LogDensity.draw_subsample = counted
    try:
        bt.fit(model, data.train, method="sghmc", num_samples=500, num_chains=1,
               batch_size=max(1, n_obs // 10), seed=0, progress=False, init=start)
    finally:
        LogDensity.draw_subsample = original
    return calls[0]


def draw_seconds(size: int, repeats: int) -> float:
    import numpy as np

    times = []
    for seed in range(repeats):
        t0 = time.perf_counter()
        np.random.default_rng(seed).choice(size, size // 10, replace=False, shuffle=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--observations", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "minibatch_draws.json"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    out = {"machine": platform.platform(), "args": vars(args),
           "draws_per_fit": count_draws(args.observations),
           "numpy_draw_s": {str(n): draw_seconds(n, args.repeats) for n in (10**6, 10**7)}}
    out["draws_at_1e7_s"] = out["draws_per_fit"] * out["numpy_draw_s"][str(10**7)]
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

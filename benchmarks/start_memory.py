"""Peak resident memory of the CP start from entries alone, stage by stage.

``python benchmarks/start_memory.py [--observations 10000000]`` (one thread): the 1000^3
rank-20 tensor of ``scale_probe.py`` at 20 dB, the model at max rank 25; the process's peak
resident set size (``ru_maxrss``) after the data are made, after they are bound to the model,
and after ``init_values()`` (the spectral start and the ALS of ``CPTensor.from_entries``).
Writes ``benchmarks/results/start_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch

import bayestensor as bt

RESULTS = Path(__file__).parent / "results"
SHAPE, TRUE_RANK, MAX_RANK, SNR_DB = (1000, 1000, 1000), 20, 25, 20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=float, default=1e7)
    parser.add_argument("--out", type=Path, default=RESULTS / "start_memory.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    stages = {"import": peak_mib()}
    t0 = time.perf_counter()
    data = bt.data.synthetic_tensor(SHAPE, rank=TRUE_RANK, snr_db=SNR_DB,
                                    observed=args.observations / 1e9, n_test=10_000, seed=0)
    stages["data"] = peak_mib()
    model = bt.TensorCompletion(SHAPE, "cp", max_rank=MAX_RANK)
    model.set_data(data.train)
    stages["set_data"] = peak_mib()
    t1 = time.perf_counter()
    model.init_values()
    stages["start"] = peak_mib()
    out = {"observations": len(data.train), "peak_rss_mib": stages,
           "data_s": t1 - t0, "start_s": time.perf_counter() - t1,
           "machine": platform.platform(), "torch": torch.__version__}
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

"""Inference latency of the exported compressed MLPs against the dense 784-512-10 MLP on CPU.

Latency depends on the layers' shapes and ranks, not on their trained values, so the exported
networks are rebuilt from the shapes and ranks a ``benchmarks/nets_mnist.py`` run recorded
(``CompressedLinear`` layers, random values) and timed beside the dense network in one process:
``torch.utils.benchmark`` (``blocked_autorange``, median per call) at batch 1 and batch 256,
under ``torch.no_grad``, for each thread count asked for.

Run: ``python benchmarks/nets_latency.py [--runs benchmarks/results/nets_mnist_map_sghmc.json]
[--threads 1 2]``
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
import torch.utils.benchmark as tbench
from torch import nn

from bayestensor.nets import CompressedLinear

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "results" / "nets_mnist_map_sghmc.json"
OUT = ROOT / "benchmarks" / "results" / "nets_latency.json"
BATCHES = (1, 256)


def exported_mlp(row: dict) -> nn.Sequential:
    """The exported network of one ``nets_mnist`` row (its shapes and ranks, random values)."""
    layers = []
    for (ins, outs), ranks in zip(row["shapes"], row["ranks"]):
        layer = CompressedLinear(ins, outs, row["model"], ranks)
        with torch.no_grad():
            for p in layer.factors:
                p.normal_(0, 0.1)
        layers.append(layer)
    return nn.Sequential(layers[0], nn.ReLU(), layers[1])


def median_seconds(model: nn.Module, batch: int, threads: int) -> float:
    x = torch.randn(batch, 784)
    with torch.no_grad():
        timer = tbench.Timer("model(x)", globals={"model": model, "x": x}, num_threads=threads)
        return timer.blocked_autorange(min_run_time=1.0).median


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=RUNS)
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    rows = [r for r in json.loads(args.runs.read_text())["rows"]
            if r["method"] == "map" and r["model"] in ("ttm", "cp", "tucker", "tt")]
    if not rows:
        raise SystemExit(f"--runs: {args.runs} holds no MAP rows with shapes and ranks")
    torch.manual_seed(0)
    models = {"dense": nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))}
    ratios = {"dense": 1.0}
    for r in rows:
        models[r["model"]] = exported_mlp(r)
        ratios[r["model"]] = r["linear_ratio"]
    results = []
    for threads in args.threads:
        for batch in BATCHES:
            dense = median_seconds(models["dense"], batch, threads)
            for name, model in models.items():
                sec = dense if name == "dense" else median_seconds(model, batch, threads)
                results.append({"model": name, "ratio": ratios[name], "batch": batch,
                                "threads": threads, "median_us": sec * 1e6,
                                "speed_vs_dense": dense / sec})
                print(results[-1], flush=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "torch": torch.__version__,
                                    "runs": str(args.runs), "results": results}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

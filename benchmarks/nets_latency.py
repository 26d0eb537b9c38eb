"""Inference latency of the exported compressed networks against the dense ones on CPU.

Latency depends on the layers' shapes and ranks, not on their trained values, so the exported
networks are rebuilt from the shapes and ranks a benchmark run recorded (``CompressedLinear`` /
``CompressedConv2d`` layers at their default ``implementation="auto"``, random values) and
timed beside the dense network in one process: ``torch.utils.benchmark``
(``blocked_autorange``, median per call) at batch 1 and batch 256, under ``torch.no_grad``,
for each thread count asked for. The MLPs come from ``--runs`` (a ``nets_mnist.py`` result),
the LeNet-5 CNN from ``--cnn-runs`` (a ``nets_cnn_mnist.py`` result, seed 0's MAP network).

Run: ``python benchmarks/nets_latency.py [--runs benchmarks/results/nets_mnist_map_sghmc.json]
[--cnn-runs benchmarks/results/nets_cnn_mnist.json] [--threads 1 2]``
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
import torch.utils.benchmark as tbench
from torch import nn

from bayestensor.nets import CompressedConv2d, CompressedLinear
from nets_cnn_mnist import lenet

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "results" / "nets_mnist_map_sghmc.json"
CNN_RUNS = ROOT / "benchmarks" / "results" / "nets_cnn_mnist.json"
OUT = ROOT / "benchmarks" / "results" / "nets_latency.json"
BATCHES = (1, 256)


def _randomized(layer: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in layer.factors:
            p.normal_(0, 0.1)
    return layer


def exported_mlp(row: dict) -> nn.Sequential:
    """The exported network of one ``nets_mnist`` row (its shapes and ranks, random values)."""
    layers = [_randomized(CompressedLinear(ins, outs, row["model"], ranks))
              for (ins, outs), ranks in zip(row["shapes"], row["ranks"])]
    return nn.Sequential(layers[0], nn.ReLU(), layers[1])


def exported_cnn(row: dict) -> nn.Sequential:
    """The exported LeNet-5 of one ``nets_cnn_mnist`` row (its layers' shapes and ranks)."""
    model = lenet(0)
    for layer in row["layers"]:
        index = int(layer["name"])
        dense = model[index]
        if layer["format"] == "tucker2":
            new = CompressedConv2d(dense.in_channels, dense.out_channels, dense.kernel_size,
                                   dense.stride, dense.padding, dense.dilation, layer["ranks"])
        else:
            new = CompressedLinear(layer["in_shape"], layer["out_shape"], layer["format"],
                                   layer["ranks"])
        model[index] = _randomized(new)
    return model


def networks(args) -> tuple[dict, dict]:
    """``{name: (dense network, compressed network)}`` and ``{name: ratio}`` to time."""
    pairs, ratios = {}, {}
    torch.manual_seed(0)
    if args.runs is not None:
        dense = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))
        rows = [r for r in json.loads(args.runs.read_text())["rows"]
                if r["method"] == "map" and r["model"] in ("ttm", "cp", "tucker", "tt")]
        if not rows:
            raise SystemExit(f"--runs: {args.runs} holds no MAP rows with shapes and ranks")
        for r in rows:
            pairs[r["model"]] = (dense, exported_mlp(r))
            ratios[r["model"]] = r["linear_ratio"]
    if args.cnn_runs is not None:
        rows = [r for r in json.loads(args.cnn_runs.read_text())["rows"]
                if r["model"] == "ours" and r["method"] == "map"]
        if not rows:
            raise SystemExit(f"--cnn-runs: {args.cnn_runs} holds no MAP rows")
        pairs["lenet5"] = (lenet(0), exported_cnn(rows[0]))
        ratios["lenet5"] = rows[0]["model_ratio"]
    return pairs, ratios


def median_seconds(model: nn.Module, batch: int, threads: int) -> float:
    x = torch.randn(batch, 784)
    with torch.no_grad():
        timer = tbench.Timer("model(x)", globals={"model": model, "x": x}, num_threads=threads)
        return timer.blocked_autorange(min_run_time=1.0).median


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=RUNS, help='MLP runs ("none" to skip)')
    ap.add_argument("--cnn-runs", type=Path, default=CNN_RUNS, help='CNN runs ("none" to skip)')
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    args.runs = None if str(args.runs) == "none" else args.runs
    args.cnn_runs = None if str(args.cnn_runs) == "none" else args.cnn_runs
    pairs, ratios = networks(args)
    results = []
    for threads in args.threads:
        for batch in BATCHES:
            for name, (dense, compressed) in pairs.items():
                dense_s = median_seconds(dense.eval(), batch, threads)
                sec = median_seconds(compressed.eval(), batch, threads)
                results.append({"model": name, "ratio": ratios[name], "batch": batch,
                                "threads": threads, "dense_us": dense_s * 1e6,
                                "median_us": sec * 1e6, "speed_vs_dense": dense_s / sec})
                print(results[-1], flush=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "torch": torch.__version__,
                                    "runs": str(args.runs), "cnn_runs": str(args.cnn_runs),
                                    "results": results}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""What ``bayestensor compress`` gives at its defaults on mnist10k, per method, and the signed
calibration of each network.

Each run is ``run_compress`` (the command's code path) at the command's defaults: the built-in
784-512-10 MLP, TT-matrix layers of three modes per side at max rank 8, gamma prior, 10
epochs, each network at its own Adam rate. Variants (``--variants``):

* ``map``, ``svgd``, ``sghmc``: the method at its defaults;
* ``svgd+calibrate``, ``sghmc+calibrate``: with ``--calibrate`` (SVGD: the prior's weight,
  SGHMC: step, temperature and warm-up, chosen on 10% of the training digits);
* ``sghmc@40``: SGHMC at 40 epochs, the length of ``nets_mnist.py``'s benchmark;
* ``cp``, ``cp@8``: MAP with ``--format cp`` at its default max rank (40) and at 8, the
  former default.

Per run: accuracy, NLL, ECE and the confidence gap (mean confidence minus accuracy: positive
over-confident, negative under-confident) of the dense baseline and of the compressed network,
and the whole model's compression ratio. Medians over seeds are printed; every run is in the
JSON. ``python benchmarks/compress_defaults.py --seeds 0 1 2 --jobs 2``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist10k.npz"
VARIANTS = {"map": dict(method="map"), "svgd": dict(method="svgd"),
            "sghmc": dict(method="sghmc"),
            "svgd+calibrate": dict(method="svgd", calibrate=True),
            "sghmc+calibrate": dict(method="sghmc", calibrate=True),
            "sghmc@40": dict(method="sghmc", epochs=40),
            "cp": dict(method="map", fmt="cp"),
            "cp@8": dict(method="map", fmt="cp", max_rank=8)}


def reliability_gap(reliability: dict) -> float:
    """Mean confidence minus accuracy from a reliability table's bins (the bins partition the
    test examples, so this is the exact mean over examples)."""
    counts = np.asarray(reliability["counts"], dtype=float)
    conf = np.nan_to_num(np.asarray(reliability["confidence"], dtype=float))
    acc = np.nan_to_num(np.asarray(reliability["accuracy"], dtype=float))
    return float(((conf - acc) * counts).sum() / counts.sum())


def run_one(job: tuple) -> dict:
    variant, seed, data_path = job
    torch.set_num_threads(1)
    from bayestensor.data.images import load_dataset
    from bayestensor.nets.workflow import run_compress

    data = load_dataset(data_path)
    options = VARIANTS[variant]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        network = run_compress(data, Path(tmp) / "run", seed=seed, progress=False, **options)
    method = options["method"]
    row = {"variant": variant, "seed": seed, "seconds": time.perf_counter() - start,
           "model_ratio": network["model_ratio"],
           "ranks": [layer["ranks_after"] for layer in network["layers"]],
           "warnings": network.get("warnings", [])}
    pruned = f"{method}_pruned" if f"{method}_pruned" in network["metrics"] else method
    for name, key in (("dense", "dense"), ("ours", pruned)):
        row[name] = {**network["metrics"][key],
                     "gap": reliability_gap(network["reliability"][
                         "dense" if name == "dense" else method])}
    for key in ("sghmc_settings", "prior_weight_choice"):
        if key in network:
            row[key] = {k: v for k, v in network[key].items() if k != "scores"}
    print(json.dumps({k: row[k] for k in ("variant", "seed", "model_ratio")}), flush=True)
    return row


def summarize(rows: list[dict]) -> list[dict]:
    table = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        group = [r for r in rows if r["variant"] == variant]
        entry = {"variant": variant, "seeds": [r["seed"] for r in group],
                 "model_ratio": statistics.median(r["model_ratio"] for r in group)}
        for name in ("dense", "ours"):
            for metric in ("accuracy", "nll", "ece", "gap"):
                entry[f"{name}_{metric}"] = statistics.median(r[name][metric] for r in group)
        entry["ece_below_dense"] = sum(r["ours"]["ece"] <= r["dense"]["ece"] for r in group)
        table.append(entry)
    return table


def format_table(table: list[dict]) -> str:
    lines = ["| variant | accuracy % (dense) | NLL (dense) | ECE (dense) | gap (dense) | "
             "seeds with ECE <= dense | whole-model ratio |", "|---|---|---|---|---|---|---|"]
    for e in table:
        lines.append(
            f"| {e['variant']} | {100 * e['ours_accuracy']:.2f} ({100 * e['dense_accuracy']:.2f}) "
            f"| {e['ours_nll']:.3f} ({e['dense_nll']:.3f}) | {e['ours_ece']:.4f} "
            f"({e['dense_ece']:.4f}) | {e['ours_gap']:+.3f} ({e['dense_gap']:+.3f}) | "
            f"{e['ece_below_dense']} / {len(e['seeds'])} | {e['model_ratio']:.0f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "compress_defaults.json"))
    args = parser.parse_args()
    jobs = [(v, s, args.data) for v in args.variants for s in args.seeds]
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(run_one, jobs))
    table = summarize(rows)
    print(format_table(table))
    Path(args.out).write_text(json.dumps(
        {"machine": platform.platform(), "torch": torch.__version__, "args": vars(args),
         "wall_seconds": time.perf_counter() - start, "summary": table, "rows": rows},
        indent=2, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

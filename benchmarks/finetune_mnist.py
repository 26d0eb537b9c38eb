"""Compressing a trained 784-512-10 MLP on mnist10k: decompose and fine-tune, or train from scratch.

For every seed: the dense MLP is trained as in ``nets_mnist.py`` (Adam, cosine decay, lr 1e-2,
``--epochs``); that trained network is what a user brings. Then, per format (TT-matrix, CP,
Tucker at ``nets_mnist.py``'s max ranks, gamma/ARD prior, MAP):

* **fine-tune**: ``tensorize(dense, init="decompose")`` (each layer started from a decomposition
  of its trained weights) and ``--finetune-epochs`` of Adam at ``--finetune-lr``, then pruned
  at threshold 1e-2 (what ``bayestensor compress --model`` does);
* **scratch**: the same compressed network from a random start, trained for ``--epochs`` at
  lr 1e-2 (``nets_mnist.py``'s ``run_ours``), pruned alike.

Reported: accuracy before the fine-tune (decomposed), after it, and from scratch; ranks,
compression of the linear layers; wall seconds of the fine-tune and of the run from scratch
(the dense training is the user's, counted in neither).

Run: ``python benchmarks/finetune_mnist.py --seeds 0 1 2`` (about 15 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from bayestensor.nets import fit_net, metrics, predict_dense, tensorize, train_dense
from bayestensor.nets.workflow import FINETUNE_EPOCHS
from nets_mnist import DATA, FORMATS, LR, evaluate, mlp, prepare, run_ours, write_result

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "finetune_mnist.json"


def finetune(dense, data, seed, fmt, epochs, lr) -> dict:
    bnet = tensorize(dense, prior="gamma", init="decompose", min_features=1, seed=seed,
                     num_particles=1, **FORMATS[fmt])
    before = metrics.accuracy(bnet.predict_proba(data["x_test"]), data["y_test"])
    h = fit_net(bnet, data["x_train"], data["y_train"], method="map", epochs=epochs, lr=lr,
                seed=seed)
    bnet.prune(1e-2)
    comp = bnet.compression()
    return {"model": fmt, "run": "finetune", "seed": seed, "seconds": h["seconds"],
            "epochs": epochs, "lr": lr, "accuracy_decomposed": before,
            "linear_ratio": comp["linear_ratio"],
            "ranks": [r["ranks"] for r in comp["layers"]], **evaluate(bnet.predict_proba, data)}


def summarize(rows: list[dict]) -> list[dict]:
    groups = {}
    for r in rows:
        groups.setdefault((r["model"], r["run"]), []).append(r)
    return [{"model": m, "run": run, "n_seeds": len(rs),
             **{k: statistics.median(r[k] for r in rs)
                for k in ("accuracy", "ece", "linear_ratio", "seconds") if k in rs[0]}}
            for (m, run), rs in groups.items()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--finetune-epochs", type=int, default=FINETUNE_EPOCHS)
    ap.add_argument("--finetune-lr", type=float, default=1e-2)
    ap.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    ap.add_argument("--no-scratch", action="store_true")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    data = prepare(args)
    rows, t0 = [], time.perf_counter()
    for seed in args.seeds:
        dense = mlp(seed)
        h = train_dense(dense, data["x_train"], data["y_train"], epochs=args.epochs, lr=LR,
                        seed=seed)
        rows.append({"model": "dense", "run": "dense", "seed": seed, "seconds": h["seconds"],
                     "linear_ratio": 1.0, **evaluate(lambda x: predict_dense(dense, x), data)})
        print(rows[-1], flush=True)
        for fmt in args.formats:
            rows.append(finetune(dense, data, seed, fmt, args.finetune_epochs, args.finetune_lr))
            print(rows[-1], flush=True)
            if not args.no_scratch:
                row = run_ours(data, seed, args.epochs, fmt, "map")
                rows.append({**row, "run": "scratch"})
                print(rows[-1], flush=True)
    result = {"epochs": args.epochs, "finetune_epochs": args.finetune_epochs,
              "finetune_lr": args.finetune_lr, "seeds": args.seeds, "rows": rows,
              "summary": summarize(rows), "wall_seconds": time.perf_counter() - t0,
              "machine": f"2 vCPU, {args.threads} thread(s), torch " + torch.__version__}
    write_result(args.out, result)


if __name__ == "__main__":
    main()

"""Compressing a trained 784-512-10 MLP on mnist10k: decompose and fine-tune, or train from scratch.

For every seed: the dense MLP is trained as in ``nets_mnist.py`` (Adam, cosine decay, lr 1e-2,
``--epochs``); that trained network is what a user brings. Then, per format (TT-matrix, CP,
Tucker at ``nets_mnist.py``'s max ranks, gamma/ARD prior, MAP):

* **fine-tune**: ``tensorize(dense, init="decompose")`` (each layer started from a decomposition
  of its trained weights) and ``--finetune-epochs`` of Adam at ``--finetune-lr``, then pruned
  at threshold 1e-2 (what ``bayestensor compress --model`` does);
* **scratch**: the same compressed network from a random start, trained for ``--epochs`` at
  ``--scratch-lr`` (default 4e-2, ``nets_mnist.py``'s ``OURS_LR``; ``run_ours``), pruned alike.

Reported: accuracy before the fine-tune (decomposed), after it, and from scratch; ranks,
compression of the linear layers; wall seconds of the fine-tune and of the run from scratch
(the dense training is the user's, counted in neither).

``--choose-lr`` instead scores the learning rates on validation splits (per seed, 10% of the
training images held out; the dense network, the fine-tunes and the runs from scratch all
train on the rest): held-out accuracy and NLL of the fine-tune and of the run from scratch at
each rate of ``LR_GRID``, averaged over the seeds. That choice set ``FINETUNE_LR``; the runs
from scratch take ``--scratch-lr``, which the benchmark sets to their own best rate.
``--choose-dense-lr`` scores the dense MLP's rates on the same splits.

Run: ``python benchmarks/finetune_mnist.py --seeds 0 1 2`` (about 15 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from bayestensor.nets import fit_net, metrics, predict_dense, tensorize, train_dense
from bayestensor.nets.workflow import FINETUNE_EPOCHS, FINETUNE_LR
from nets_mnist import (DATA, DENSE_LR, FORMATS, OURS_LR, evaluate, mlp, prepare, run_ours,
                        write_result)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "finetune_mnist.json"
LR_CHOICE_OUT = ROOT / "benchmarks" / "results" / "finetune_lr_choice.json"
DENSE_LR_CHOICE_OUT = ROOT / "benchmarks" / "results" / "dense_lr_choice.json"
#: Learning rates ``--choose-lr`` compares; the share of the training images held out.
LR_GRID = (5e-3, 1e-2, 2e-2, 4e-2)
VALIDATION = 0.1


def compressed_net(start, fmt: str, seed: int, init: str):
    """``start`` tensorized as every run here compresses it: gamma/ARD prior, MAP (one
    particle), ``FORMATS[fmt]``; ``init`` "decompose" (a fine-tune) or "random" (scratch)."""
    return tensorize(start, prior="gamma", init=init, min_features=1, seed=seed,
                     num_particles=1, **FORMATS[fmt])


def finetune(dense, data, seed, fmt, epochs, lr) -> dict:
    bnet = compressed_net(dense, fmt, seed, "decompose")
    before = metrics.accuracy(bnet.predict_proba(data["x_test"]), data["y_test"])
    h = fit_net(bnet, data["x_train"], data["y_train"], method="map", epochs=epochs, lr=lr,
                seed=seed)
    bnet.prune(1e-2)
    comp = bnet.compression()
    return {"model": fmt, "run": "finetune", "seed": seed, "seconds": h["seconds"],
            "epochs": epochs, "lr": lr, "accuracy_decomposed": before,
            "linear_ratio": comp["linear_ratio"],
            "ranks": [r["ranks"] for r in comp["layers"]], **evaluate(bnet.predict_proba, data)}


def choose_lr(data, seed, formats, epochs, finetune_epochs) -> list[dict]:
    """Held-out accuracy, NLL and linear ratio of the fine-tune and of the run from scratch at
    each rate of ``LR_GRID``, on a ``VALIDATION`` split of the training images drawn with
    ``seed`` (the dense network is trained on the rest at ``DENSE_LR``, as in ``main``)."""
    x, y, xv, yv = validation_split(data, seed)
    dense = mlp(seed)
    train_dense(dense, x, y, epochs=epochs, lr=DENSE_LR, seed=seed)
    rows = [{"model": "dense", "run": "dense", "seed": seed, "lr": DENSE_LR,
             **held_out(predict_dense(dense, xv), yv)}]
    print(rows[-1], flush=True)
    for fmt in formats:
        for run, start, n_epochs in (("finetune", dense, finetune_epochs),
                                     ("scratch", mlp(seed), epochs)):
            for lr in LR_GRID:
                bnet = compressed_net(start, fmt, seed,
                                      "decompose" if run == "finetune" else "random")
                fit_net(bnet, x, y, method="map", epochs=n_epochs, lr=lr, seed=seed)
                bnet.prune(1e-2)
                rows.append({"model": fmt, "run": run, "seed": seed, "lr": lr,
                             "epochs": n_epochs, **held_out(bnet.predict_proba(xv), yv),
                             "linear_ratio": bnet.compression()["linear_ratio"]})
                print(rows[-1], flush=True)
    return rows


def choose_dense_lr(data, seed, epochs) -> list[dict]:
    """Held-out accuracy and NLL of the dense MLP at each rate of ``LR_GRID``, on the split
    :func:`choose_lr` draws for ``seed``."""
    x, y, xv, yv = validation_split(data, seed)
    rows = []
    for lr in LR_GRID:
        dense = mlp(seed)
        train_dense(dense, x, y, epochs=epochs, lr=lr, seed=seed)
        rows.append({"model": "dense", "run": "dense", "seed": seed, "lr": lr, "epochs": epochs,
                     **held_out(predict_dense(dense, xv), yv)})
        print(rows[-1], flush=True)
    return rows


def validation_split(data, seed):
    """``(x, y, x_val, y_val)``: ``VALIDATION`` of the training images held out, drawn with
    ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data["y_train"]), generator=gen)
    n_val = round(VALIDATION * len(order))
    val, fit = order[:n_val], order[n_val:]
    return data["x_train"][fit], data["y_train"][fit], data["x_train"][val], data["y_train"][val]


def held_out(probs, y) -> dict:
    return {"val_accuracy": metrics.accuracy(probs, y), "val_nll": metrics.nll(probs, y)}


def lr_summary(rows: list[dict]) -> list[dict]:
    """Per format (and over all formats, ``"all"``), run and rate: held-out accuracy and NLL
    averaged over the seeds; ``best`` marks each format and run's highest mean accuracy."""
    groups = {}
    for r in rows:
        if r["run"] != "dense":
            for model in (r["model"], "all"):
                groups.setdefault((model, r["run"], r["lr"]), []).append(r)
    out = [{"model": m, "run": run, "lr": lr, "n_runs": len(rs),
            "val_accuracy": statistics.fmean(r["val_accuracy"] for r in rs),
            "val_nll": statistics.fmean(r["val_nll"] for r in rs),
            "linear_ratio": statistics.median(r["linear_ratio"] for r in rs)}
           for (m, run, lr), rs in groups.items()]
    for row in out:
        rivals = [o for o in out if (o["model"], o["run"]) == (row["model"], row["run"])]
        row["best"] = row["val_accuracy"] == max(o["val_accuracy"] for o in rivals)
    return out


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
    ap.add_argument("--finetune-lr", type=float, default=FINETUNE_LR)
    ap.add_argument("--scratch-lr", type=float, default=OURS_LR)
    ap.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    ap.add_argument("--no-scratch", action="store_true")
    ap.add_argument("--choose-lr", action="store_true",
                    help="score the learning rates on a validation split per seed instead of "
                         "running the benchmark")
    ap.add_argument("--choose-dense-lr", action="store_true",
                    help="score the dense MLP's learning rates on the same validation splits")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    data = prepare(args)
    if args.choose_dense_lr:
        t0 = time.perf_counter()
        rows = [r for seed in args.seeds for r in choose_dense_lr(data, seed, args.epochs)]
        summary = [{"model": "dense", "lr": lr,
                    **{k: statistics.fmean(r[k] for r in rows if r["lr"] == lr)
                       for k in ("val_accuracy", "val_nll")}} for lr in LR_GRID]
        write_result(args.out or DENSE_LR_CHOICE_OUT, {
            "seeds": args.seeds, "validation": VALIDATION, "lr_grid": LR_GRID, "rows": rows,
            "summary": summary, "wall_seconds": time.perf_counter() - t0,
            "machine": f"2 vCPU, {args.threads} thread(s), torch " + torch.__version__})
        return
    if args.choose_lr:
        t0 = time.perf_counter()
        rows = [r for seed in args.seeds for r in choose_lr(data, seed, args.formats,
                                                            args.epochs, args.finetune_epochs)]
        write_result(args.out or LR_CHOICE_OUT, {
            "seeds": args.seeds, "validation": VALIDATION, "lr_grid": LR_GRID, "rows": rows,
            "summary": lr_summary(rows), "wall_seconds": time.perf_counter() - t0,
            "machine": f"2 vCPU, {args.threads} thread(s), torch " + torch.__version__})
        return
    rows, t0 = [], time.perf_counter()
    for seed in args.seeds:
        dense = mlp(seed)
        h = train_dense(dense, data["x_train"], data["y_train"], epochs=args.epochs,
                        lr=DENSE_LR, seed=seed)
        rows.append({"model": "dense", "run": "dense", "seed": seed, "seconds": h["seconds"],
                     "linear_ratio": 1.0, **evaluate(lambda x: predict_dense(dense, x), data)})
        print(rows[-1], flush=True)
        for fmt in args.formats:
            rows.append(finetune(dense, data, seed, fmt, args.finetune_epochs, args.finetune_lr))
            print(rows[-1], flush=True)
            if not args.no_scratch:
                row = run_ours(data, seed, args.epochs, fmt, "map", lr=args.scratch_lr)
                rows.append({**row, "run": "scratch"})
                print(rows[-1], flush=True)
    result = {"epochs": args.epochs, "finetune_epochs": args.finetune_epochs,
              "finetune_lr": args.finetune_lr, "scratch_lr": args.scratch_lr,
              "seeds": args.seeds, "rows": rows,
              "summary": summarize(rows), "wall_seconds": time.perf_counter() - t0,
              "machine": f"2 vCPU, {args.threads} thread(s), torch " + torch.__version__}
    write_result(args.out or OUT, result)


if __name__ == "__main__":
    main()

"""Bayesian tensorized 784-512-10 MLP on mnist10k against the dense network and TensorLy-Torch.

For every seed, with one training budget (``--epochs`` of Adam, batch 128):

* the dense network (Adam, cosine decay, lr ``DENSE_LR`` = 1e-2, its rate chosen on
  validation splits: ``finetune_mnist.py --choose-dense-lr``);
* our TT-matrix, CP and Tucker networks (both linear layers tensorized, gamma/ARD prior on the
  rank slices, random init), trained at ``OURS_LR`` = 4e-2 (the compressed network's validated
  rate, ``bayestensor compress``'s default) by MAP (1 particle), SVGD (4 particles) and SGHMC
  (4 chains, MAP warm-up for half the epochs, 10 snapshots); ranks pruned at threshold 1e-2, an
  ensemble keeping the slices that at least half of its particles keep (``KEEP_SHARE``);
* TensorLy-Torch ``FactorizedLinear`` layers of the same factorization with the parameter
  count our MAP network ended with (``rank`` = that fraction of the dense weights), trained
  like the dense network at each rate of ``--tltorch-lrs`` (both networks' rates: neither is
  held to a rate that suits only ours).

Reported: test accuracy, NLL, ECE (15 bins), mean predictive entropy on test digits and on
digits rotated by 60 degrees, ranks found, compression of the linear layers and of the whole
model, training seconds. Medians over seeds go to ``docs/benchmarks.md``.

``--max-rank-scale 2`` multiplies every max rank by 2 (the check that the ranks found follow
the data, not the cap); ``--sghmc-settings validation`` chooses SGHMC's step, temperature and
warm-up on 10% of the training digits (``choose_sghmc_settings``) and refits on all of them at
them (``--sghmc-temperature T`` only sets the temperature); ``--formats`` / ``--methods`` /
``--no-tltorch`` run a subset. ``--ours-lr`` trains our networks at another Adam rate than
the library's default (``default_lr``: ``OURS_LR``, and 1e-2 for VI; the tables before it
became 4e-2 ran every network at ``--ours-lr 1e-2``).

Run: ``python benchmarks/nets_mnist.py --seeds 0 1 2`` (about 15 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from bayestensor.nets import choose_sghmc_settings, fit_net, predict_dense, tensorize, train_dense
from bayestensor.nets import metrics
from bayestensor.nets.layers import TUCKER_CORE_VARIANCE
from bayestensor.nets.workflow import TRAIN_LRS, default_lr
from bayestensor.data.images import load_mnist10k

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mnist10k.npz"
OUT = ROOT / "benchmarks" / "results" / "nets_mnist.json"
# max ranks chosen so that the MAP networks land near 100x; tltorch gets the same budget
FORMATS = {"ttm": dict(format="ttm", max_rank=8, num_modes=2),
           "cp": dict(format="cp", max_rank=40),
           "tucker": dict(format="tucker", max_rank=6)}
TLTORCH = {"ttm": "blocktt", "cp": "cp", "tucker": "tucker"}
#: Particles / chains per method; ``vi`` (mean-field, one network) runs only when asked.
METHODS = {"map": 1, "svgd": 4, "sghmc": 4, "vi": 1}
DEFAULT_METHODS = ["map", "svgd", "sghmc"]
#: Adam rates of our compressed MLPs and of the dense one, each chosen on validation splits
#: (``bayestensor.nets.workflow.TRAIN_LRS``).
OURS_LR, DENSE_LR = TRAIN_LRS["mlp"]


def mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))


def evaluate(predict, data) -> dict:
    """Accuracy, NLL, ECE (and the mean ECE a calibrated predictor with these confidences would
    show on the test set, ``ece_floor``), the confidence gap (mean confidence minus accuracy:
    over-confident when positive) and entropy in / out of distribution from a ``x -> probs``
    callable."""
    probs = predict(data["x_test"])
    rotated = predict(metrics.rotate(data["images_test"], 60).flatten(1))
    return {"accuracy": metrics.accuracy(probs, data["y_test"]),
            "nll": metrics.nll(probs, data["y_test"]),
            "ece": metrics.ece(probs, data["y_test"]),
            "ece_floor": metrics.ece_floor(probs)["mean"],
            "confidence_gap": metrics.confidence_gap(probs, data["y_test"]),
            "entropy_test": float(metrics.entropy(probs).mean()),
            "entropy_rotated": float(metrics.entropy(rotated).mean())}


def run_dense(data, seed, epochs):
    model = mlp(seed)
    h = train_dense(model, data["x_train"], data["y_train"], epochs=epochs, lr=DENSE_LR,
                    seed=seed)
    n = sum(p.numel() for p in model.parameters())
    return {"model": "dense", "method": "adam", "seed": seed, "seconds": h["seconds"],
            "params": n, "linear_ratio": 1.0, "model_ratio": 1.0,
            **evaluate(lambda x: predict_dense(model, x), data)}


def core_variance(text: str) -> float | None:
    """``--tucker-core-variance``: a positive number, or ``none`` for the product prior."""
    return None if text.lower() == "none" else float(text)


def run_ours(data, seed, epochs, fmt, method, rank_scale=1, temperature=1.0,
             sghmc_settings="default", tucker_core_variance=TUCKER_CORE_VARIANCE, lr=None,
             burnin=None):
    config = {**FORMATS[fmt], "max_rank": FORMATS[fmt]["max_rank"] * rank_scale}
    if fmt == "tucker":  # None: the product prior
        config["prior_params"] = {"core_variance": tucker_core_variance}
    bnet = tensorize(mlp(seed), prior="gamma", init="random", min_features=1, seed=seed,
                     num_particles=METHODS[method], **config)
    lr = default_lr(method) if lr is None else lr
    options = dict(epochs=epochs, lr=lr, seed=seed, num_samples=10)
    chosen = {}
    t0 = time.perf_counter()
    if method == "sghmc" and sghmc_settings == "validation":
        chosen = choose_sghmc_settings(bnet, data["x_train"], data["y_train"], **options)
        options.update(chosen["settings"])
    elif method == "sghmc":
        options["temperature"] = temperature
        if burnin is not None:
            options["burnin"] = burnin
    h = fit_net(bnet, data["x_train"], data["y_train"], method=method, **options)
    if method != "sghmc":  # SGHMC pruned at the end of its warm-up
        bnet.prune(1e-2)
    comp = bnet.compression()
    row = {"model": fmt, "method": method, "seed": seed, "lr": lr, "seconds": h["seconds"],
           "seconds_with_choice": time.perf_counter() - t0, "max_rank": config["max_rank"],
           "temperature": options.get("temperature"),
           "sghmc_settings": {k: options[k] for k in ("sghmc_lr", "temperature", "burnin")
                              if k in options},
           "validation_scores": chosen.get("scores", []),
           "params": comp["compressed_params"], "linear_ratio": comp["linear_ratio"],
           "model_ratio": comp["model_ratio"],
           "ranks": [r["ranks"] for r in comp["layers"]],
           "layer_params": [r["compressed_params"] for r in comp["layers"]],
           "shapes": [(m.in_shape, m.out_shape) for m in bnet.tensorized().values()]}
    return {**row, **evaluate(bnet.predict_proba, data)}


def run_tltorch(data, seed, epochs, fmt, ours, lr=DENSE_LR):
    """TensorLy-Torch's fixed-rank layers: our MAP network's tensorized shapes and per-layer
    parameter counts (``rank`` as a fraction of the dense weights), trained at Adam rate
    ``lr``."""
    import tltorch

    model = mlp(seed)
    dense_w = [784 * 512, 512 * 10]
    layers = []
    for (ins, outs), n_ours, n_dense in zip(ours["shapes"], ours["layer_params"], dense_w):
        torch.manual_seed(seed)
        n_bias = int(torch.tensor(outs).prod())
        layers.append(tltorch.FactorizedLinear(tuple(ins), tuple(outs),
                                               factorization=TLTORCH[fmt],
                                               rank=max(n_ours - n_bias, 1) / n_dense))
    model[0], model[2] = layers
    h = train_dense(model, data["x_train"], data["y_train"], epochs=epochs, lr=lr, seed=seed)
    n_lin = sum(p.numel() for layer in layers for p in layer.parameters())
    n = sum(p.numel() for p in model.parameters())
    return {"model": f"tltorch-{TLTORCH[fmt]}", "method": f"adam lr={lr:g}", "seed": seed,
            "seconds": h["seconds"], "params": n,
            "linear_ratio": (784 * 512 + 512 + 512 * 10 + 10) / n_lin, "model_ratio": 406_528 / n,
            **evaluate(lambda x: predict_dense(model, x), data)}


def load(path) -> dict:
    d = load_mnist10k(path)
    return {"x_train": d.x_train.flatten(1), "y_train": d.y_train,
            "x_test": d.x_test.flatten(1), "y_test": d.y_test, "images_test": d.x_test}


def summarize(rows) -> list[dict]:
    keys = ["accuracy", "nll", "ece", "ece_floor", "entropy_test", "entropy_rotated",
            "linear_ratio", "model_ratio", "seconds"]
    groups = {}
    for r in rows:
        groups.setdefault((r["model"], r["method"]), []).append(r)
    out = []
    for (model, method), rs in groups.items():
        row = {"model": model, "method": method, "n_seeds": len(rs)}
        row.update({k: statistics.median(r[k] for r in rs) for k in keys})
        row["accuracy_range"] = [min(r["accuracy"] for r in rs), max(r["accuracy"] for r in rs)]
        if "ranks" in rs[0]:
            row["ranks"] = [r["ranks"] for r in rs]
        out.append(row)
    return out


def prepare(args) -> dict:
    """The data of ``args.data`` (a clear exit when missing), with warnings silenced and
    ``args.threads`` torch threads."""
    if not args.data.exists():
        raise SystemExit(f"--data: {args.data} not found (mnist10k.npz from ../shared/data)")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    return load(args.data)


def write_result(path: Path, result: dict) -> None:
    """Write ``result`` as JSON to ``path`` and print its summary rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    for row in result["summary"]:
        print(row)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--max-rank-scale", type=int, default=1)
    ap.add_argument("--ours-lr", type=float, default=None,
                    help="Adam rate of our networks (default: the library's per method, "
                         "default_lr)")
    ap.add_argument("--tltorch-lrs", type=float, nargs="+", default=[DENSE_LR, OURS_LR],
                    help="Adam rates TensorLy-Torch's networks are trained at, each reported")
    ap.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(METHODS))
    ap.add_argument("--no-tltorch", action="store_true")
    ap.add_argument("--tucker-core-variance", type=core_variance, default=TUCKER_CORE_VARIANCE,
                    help="Tucker layers' fixed core variance (default: the layers' default); "
                         "'none': the product prior, as the tables before it used")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sghmc-temperature", type=float, default=1.0, help="SGHMC temperature")
    ap.add_argument("--sghmc-burnin", type=float, default=None,
                    help="SGHMC's share of the epochs in MAP warm-up (default: fit_net's)")
    ap.add_argument("--sghmc-settings", choices=["default", "validation"], default="default",
                    help="validation: choose SGHMC's step, temperature and warm-up on 10%% of "
                         "the training digits (choose_sghmc_settings)")
    args = ap.parse_args()
    data = prepare(args)
    rows = []
    t0 = time.perf_counter()
    for seed in args.seeds:
        rows.append(run_dense(data, seed, args.epochs))
        print(rows[-1], flush=True)
        for fmt in args.formats:
            for method in args.methods:
                rows.append(run_ours(data, seed, args.epochs, fmt, method, args.max_rank_scale,
                                     args.sghmc_temperature, args.sghmc_settings,
                                     args.tucker_core_variance, lr=args.ours_lr,
                                     burnin=args.sghmc_burnin))
                print(rows[-1], flush=True)
                if method == "map" and not args.no_tltorch:
                    ours = rows[-1]
                    for lr in args.tltorch_lrs:
                        rows.append(run_tltorch(data, seed, args.epochs, fmt, ours, lr))
                        print(rows[-1], flush=True)
    result = {"epochs": args.epochs, "seeds": args.seeds, "max_rank_scale": args.max_rank_scale,
              "ours_lr": args.ours_lr, "dense_lr": DENSE_LR, "sghmc_burnin": args.sghmc_burnin,
              "tltorch_lrs": args.tltorch_lrs,
              "tucker_core_variance": args.tucker_core_variance,
              "rows": rows,
              "summary": summarize(rows), "wall_seconds": time.perf_counter() - t0,
              "machine": f"2 vCPU, {args.threads} thread(s), torch " + torch.__version__}
    write_result(args.out, result)


if __name__ == "__main__":
    main()

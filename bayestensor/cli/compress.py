"""``bayestensor compress``: train and compress an MLP or small CNN on an image dataset."""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import platform
from pathlib import Path

import click
import numpy as np
import torch
from torch import nn

from bayestensor.priors import PRIORS
from bayestensor.nets import metrics
from bayestensor.nets.convert import save_exported, tensorize
from bayestensor.data.images import load_dataset
from bayestensor.nets.layers import LINEAR_FORMATS
from bayestensor.nets.train import METHODS, fit_net, predict_dense, train_dense


def build_model(arch: str, input_shape, classes: int, hidden: int = 512, seed: int = 0) -> nn.Module:
    """``"mlp"``: Flatten-Linear(hidden)-ReLU-Linear; ``"cnn"``: two 3x3 convs (16, 32) + MLP head."""
    torch.manual_seed(seed)
    c, h, w = input_shape
    if arch == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(),
                             nn.Linear(hidden, classes))
    if arch == "cnn":
        return nn.Sequential(nn.Conv2d(c, 16, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(32 * (h // 2) * (w // 2), hidden), nn.ReLU(),
                             nn.Linear(hidden, classes))
    raise ValueError(f"arch: expected 'mlp' or 'cnn', got {arch!r}")


def _clean(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def run_compress(data, arch="mlp", fmt="ttm", prior="gamma", method="map", epochs=10,
                 max_rank=8, hidden=512, batch_size=128, lr=1e-2, particles=4,
                 threshold=1e-2, rotate=45.0, out="runs/compress", seed=0) -> dict:
    """Everything ``bayestensor compress`` does; returns the ``network.json`` content."""
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    torch.manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(data)
    xtr, ytr, xte, yte = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    model = build_model(arch, ds.input_shape, ds.classes, hidden, seed)
    dense = build_model(arch, ds.input_shape, ds.classes, hidden, seed)
    hd = train_dense(dense, xtr, ytr, epochs=epochs, batch_size=batch_size, lr=min(lr, 1e-3), seed=seed)
    p_dense = predict_dense(dense, xte)
    layers = (lambda name, m: isinstance(m, (nn.Linear, nn.Conv2d)) and
              (not isinstance(m, nn.Conv2d) or m.in_channels > 1))
    n_part = 1 if method in ("map", "svi") else particles
    bnet = tensorize(model, layers=layers, format=fmt, max_rank=max_rank, prior=prior,
                     n_particles=n_part, init="random", seed=seed)
    ranks_before = {n: list(m.ranks) for n, m in bnet.tensorized().items()}
    hb = fit_net(bnet, xtr, ytr, method=method, epochs=epochs, batch_size=batch_size, lr=lr,
                 seed=seed)
    probs = bnet.predict_proba(xte)
    pruned = bnet.prune(threshold)
    probs_pruned = bnet.predict_proba(xte)
    exported = bnet.export(0)
    comp = bnet.compression()
    shifted = metrics.rotate(xte, rotate)
    p_shift = bnet.predict_proba(shifted)
    p_dense_shift = predict_dense(dense, shifted)
    table = []
    for row in comp["layers"]:
        m = bnet.tensorized()[row["name"]]
        if hasattr(m, "in_shape"):
            in_shape, out_shape = list(m.in_shape), list(m.out_shape)
        else:
            in_shape, out_shape = [m.in_channels] + list(m.kernel_size), [m.out_channels]
        table.append({"name": row["name"], "format": row["format"], "in_shape": in_shape,
                      "out_shape": out_shape, "ranks_before": ranks_before[row["name"]],
                      "ranks_after": pruned[row["name"]]["ranks_after"],
                      "dense_params": row["dense_params"],
                      "compressed_params": row["compressed_params"], "ratio": row["ratio"]})
    network = {
        "layers": table, "linear_ratio": comp["linear_ratio"], "model_ratio": comp["model_ratio"],
        "metrics": {"dense": metrics.summarize(p_dense, yte), method: metrics.summarize(probs, yte),
                    f"{method}_pruned": metrics.summarize(probs_pruned, yte)},
        "reliability": {"dense": metrics.reliability(p_dense, yte),
                        method: metrics.reliability(probs, yte)},
        "shift": {"description": f"test images rotated by {rotate} degrees",
                  "dense": {"entropy_in": float(metrics.entropy(p_dense).mean()),
                            "entropy_shifted": float(metrics.entropy(p_dense_shift).mean()),
                            "accuracy_shifted": metrics.accuracy(p_dense_shift, yte)},
                  method: {"entropy_in": float(metrics.entropy(probs_pruned).mean()),
                           "entropy_shifted": float(metrics.entropy(p_shift).mean()),
                           "accuracy_shifted": metrics.accuracy(p_shift, yte)}},
        "train_seconds": {"dense": hd["seconds"], method: hb["seconds"]},
        "prune_max_abs_change": float((probs_pruned - probs).abs().max()),
    }
    settings = {"arch": arch, "format": fmt, "prior": prior, "method": method, "epochs": epochs,
                "max_rank": max_rank, "hidden": hidden, "batch_size": batch_size, "lr": lr,
                "particles": n_part, "threshold": threshold, "rotate": rotate, "seed": seed}
    import pyro
    import tensorly
    run = {"kind": "network", "created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
           "versions": {"python": platform.python_version(), "torch": torch.__version__,
                        "pyro": pyro.__version__, "tensorly": tensorly.__version__,
                        "numpy": np.__version__},
           "settings": settings, "data": ds.info()}
    save_exported(exported, out / "model.pt", {**settings, "input_shape": list(ds.input_shape),
                                               "classes": ds.classes})
    with open(out / "ranks.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "format", "ranks_before", "ranks_after", "dense_params",
                    "compressed_params", "ratio"])
        for r in table:
            w.writerow([r["name"], r["format"], "x".join(map(str, r["ranks_before"])),
                        "x".join(map(str, r["ranks_after"])), r["dense_params"],
                        r["compressed_params"], f"{r['ratio']:.2f}"])
    metrics.plot_reliability(network["reliability"], out / "reliability.png",
                             f"{ds.name}: {fmt} {method}")
    (out / "run.json").write_text(json.dumps(_clean(run), indent=2))
    (out / "network.json").write_text(json.dumps(_clean(network), indent=2))
    return network


@click.command("compress")
@click.argument("data")
@click.option("--arch", type=click.Choice(["mlp", "cnn"]), default="mlp", show_default=True)
@click.option("--format", "fmt", type=click.Choice(LINEAR_FORMATS), default="ttm", show_default=True)
@click.option("--prior", type=click.Choice(PRIORS), default="gamma", show_default=True)
@click.option("--method", type=click.Choice(METHODS), default="map", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--max-rank", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--hidden", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-2, show_default=True)
@click.option("--particles", type=click.IntRange(min=1), default=4, show_default=True,
              help="SVGD particles / SGHMC chains.")
@click.option("--threshold", type=click.FloatRange(0, 1, max_open=True), default=1e-2,
              show_default=True, help="Prune slices with scale below threshold x largest.")
@click.option("--rotate", type=float, default=45.0, show_default=True,
              help="Rotation (degrees) of the shifted test inputs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="runs/compress", show_default=True)
def compress(data, arch, fmt, prior, method, epochs, max_rank, hidden, batch_size, lr, particles,
             threshold, rotate, seed, out):
    """Train and compress an MLP or small CNN on DATA ('digits', a .npz with images and labels,
    or a directory of MNIST IDX files); write model.pt, ranks.csv, reliability.png, run.json and
    network.json to --out."""
    try:
        net = run_compress(data, arch, fmt, prior, method, epochs, max_rank, hidden, batch_size,
                           lr, particles, threshold, rotate, out, seed)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    m = net["metrics"]
    click.echo(f"dense accuracy {m['dense']['accuracy']:.4f}  {method} accuracy "
               f"{m[method]['accuracy']:.4f}  ECE {m[method]['ece']:.4f}  linear ratio "
               f"{net['linear_ratio']:.1f}x  model ratio {net['model_ratio']:.1f}x")
    click.echo(f"wrote {out}")

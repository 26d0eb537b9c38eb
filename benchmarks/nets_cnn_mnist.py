"""Bayesian tensorized LeNet-5 CNN on mnist10k against the dense CNN and TensorLy-Torch.

The network is the LeNet-5 of Caffe's MNIST example: two 5x5 convolutions (20 and 50
channels), each followed by ReLU and 2x2 max-pooling, then 800-500-10 fully connected layers
(431,080 parameters). For every seed, with one training budget (``--epochs`` of Adam with cosine
decay, batch 128, the same batch order):

* the dense CNN, at Adam rate 1e-2 and 1e-3 (``--baseline-lrs``: a CNN may prefer the lower
  rate, and a baseline held to ours would be handicapped);
* ours: the second convolution as a Bayesian Tucker-2 convolution (``conv_rank``), both
  fully connected layers as TT-matrix layers (``max_rank``), gamma/ARD prior on the rank
  slices, random init, Adam rate ``--ours-lr`` (default 1e-2, ``compress --arch cnn``'s);
  trained by MAP (1 particle), SVGD (4 particles, or ``--particles``) and SGHMC (4 chains, MAP
  warm-up for half the epochs, 10 snapshots),
  ranks pruned at threshold 1e-2 (an ensemble keeps the slices that at least half of its
  particles keep). The log prior's weight is 1 (the Bayes posterior), or with
  ``--prior-weight validation`` chosen per method and seed among ``--weights`` (default 1,
  0.3, 0.1, 0.03) by the NLL on 10% of the training digits held out, among the weights whose
  pruned network is at least ``--min-ratio`` (20x) smaller, then refitted on all of them. The
  first convolution (one input channel, 520 parameters) stays dense, as ``bayestensor
  compress`` leaves it;
* TensorLy-Torch: ``FactorizedConv`` (Tucker) for the second convolution and
  ``FactorizedLinear`` (block-TT) for the fully connected layers, each layer at the ranks
  (so the parameter count) our MAP network of the same seed ended with, trained like the
  dense CNN at both rates, from the dense layer's weight scale (its own start is NaN or
  far too small at these ranks, see ``_match_scale``).

Reported: test accuracy, NLL, ECE (15 bins), mean predictive entropy on test digits and on
digits rotated by 60 degrees, ranks found, compression of the tensorized layers and of the
whole model, training seconds, and each layer's ranks and tensorized shapes, from which
``benchmarks/nets_latency.py --cnn-runs`` times the exported network. Medians over seeds go to
``docs/benchmarks.md``.

Run: ``python benchmarks/nets_cnn_mnist.py --seeds 0 1 2 --jobs 2`` (about 30 minutes on 2 CPU
cores; ``--jobs`` runs seeds in parallel processes of one thread each).
"""

from __future__ import annotations

import argparse
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from torch import nn

from bayestensor.nets import choose_prior_weight, fit_net, metrics, predict_dense, train_dense
from bayestensor.nets.calibration import PRIOR_WEIGHTS
from bayestensor.nets.workflow import POINT_METHODS, TRAIN_LRS, default_lr, tensorize_smaller
from nets_mnist import DATA, DEFAULT_METHODS, METHODS, evaluate, prepare, summarize, write_result

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "nets_cnn_mnist.json"
#: The CNNs' training rate (``compress --arch cnn``'s default for MAP, SVGD and SGHMC, which
#: ours train at unless ``--ours-lr``; not chosen on validation).
LR = TRAIN_LRS["cnn"][0]
#: Adam rates of the dense and TensorLy-Torch CNNs: the baselines run at each, so that neither
#: is held to a rate that suits ours.
BASELINE_LRS = (LR, 1e-3)
#: Ranks of ours: TT-matrix fully connected layers and the Tucker-2 convolution.
OURS = dict(format="ttm", max_rank=8, conv_rank=8)
#: With ``--prior-weight validation``: the least compression a chosen weight must give (the
#: issue's bar for the CNN).
MIN_RATIO = 20.0


def lenet(seed: int) -> nn.Sequential:
    """LeNet-5 (Caffe's MNIST variant) on flat 784-pixel inputs."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Unflatten(1, (1, 28, 28)),
                         nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def run_dense(data, seed, epochs, lr):
    model = lenet(seed)
    h = train_dense(model, data["x_train"], data["y_train"], epochs=epochs, lr=lr, seed=seed)
    return {"model": "dense", "method": f"adam lr={lr:g}", "seed": seed, "seconds": h["seconds"],
            "params": n_params(model), "linear_ratio": 1.0, "model_ratio": 1.0,
            **evaluate(lambda x: predict_dense(model, x), data)}


def run_ours(data, seed, epochs, method, prior_weight="1", min_ratio=MIN_RATIO, lr=None,
             weights=PRIOR_WEIGHTS, particles=None):
    if particles is None or method in POINT_METHODS:
        particles = METHODS[method]
    bnet, kept = tensorize_smaller(lenet(seed), prior="gamma", init="random", seed=seed,
                                   num_particles=particles, **OURS)
    lr = default_lr(method, "cnn") if lr is None else lr
    options = dict(epochs=epochs, lr=lr, seed=seed, num_samples=10)
    t0 = time.perf_counter()
    chosen = {}
    if prior_weight == "validation":
        chosen = choose_prior_weight(bnet, data["x_train"], data["y_train"], method=method,
                                     weights=weights, min_ratio=min_ratio, **options)
        options.update(chosen["settings"])
    else:
        options["prior_weight"] = float(prior_weight)
    h = fit_net(bnet, data["x_train"], data["y_train"], method=method, **options)
    if method != "sghmc":  # SGHMC pruned at the end of its warm-up
        bnet.prune(1e-2)
    comp = bnet.compression()
    row = {"model": "ours", "method": method, "seed": seed, "lr": lr, "num_particles": particles,
           "seconds": h["seconds"],
           "seconds_with_choice": time.perf_counter() - t0,
           "prior_weight": options["prior_weight"], "validation_scores": chosen.get("scores", []),
           "params": comp["compressed_params"], "linear_ratio": comp["linear_ratio"],
           "model_ratio": comp["model_ratio"], "kept_dense": [k["name"] for k in kept],
           "layers": [{**{k: r[k] for k in ("name", "format", "ranks", "compressed_params")},
                       **_shapes(bnet.tensorized()[r["name"]])} for r in comp["layers"]]}
    if method == "svgd":
        row["particles"] = particle_scores(bnet, data)
    return {**row, **evaluate(bnet.predict_proba, data)}


def calibration_scores(probs, labels) -> dict:
    """Accuracy, NLL, ECE and confidence gap of class probabilities ``(n, classes)``."""
    return {"accuracy": metrics.accuracy(probs, labels), "nll": metrics.nll(probs, labels),
            "ece": metrics.ece(probs, labels),
            "confidence_gap": metrics.confidence_gap(probs, labels)}


@torch.no_grad()
def particle_scores(bnet, data) -> list[dict]:
    """:func:`calibration_scores` of each particle alone on the test digits (how the
    ensemble's calibration comes from its members')."""
    bnet.eval()
    probs = bnet.particle_outputs(data["x_test"]).softmax(-1)
    return [calibration_scores(p, data["y_test"]) for p in probs]


def _shapes(layer) -> dict:
    """The tensorized shapes of a linear layer (none for a convolution)."""
    if not hasattr(layer, "in_shape"):
        return {}
    return {"in_shape": list(layer.in_shape), "out_shape": list(layer.out_shape)}


def tltorch_layer(dense: nn.Module, ours: dict) -> nn.Module:
    """The TensorLy-Torch layer replacing ``dense`` at the ranks of our layer ``ours``: a
    Tucker convolution of our Tucker-2 ranks, or a block-TT linear layer of our tensorized
    shapes and TT ranks, so the same parameter count. It starts at the dense layer's
    bias and weight scale (:func:`_match_scale`)."""
    import tltorch

    if isinstance(dense, nn.Conv2d):
        layer = tltorch.FactorizedConv(dense.in_channels, dense.out_channels, dense.kernel_size,
                                       order=2, factorization="tucker",
                                       rank=tuple(ours["ranks"]), bias=True)
    else:
        layer = tltorch.FactorizedLinear(tuple(ours["in_shape"]), tuple(ours["out_shape"]),
                                         factorization="blocktt", rank=(1, *ours["ranks"], 1))
    _match_scale(layer, dense)
    return layer


def _match_scale(layer: nn.Module, dense: nn.Module) -> None:
    """Start a TensorLy-Torch layer at the dense layer's bias and weight sd.

    Its own start does not: at these ranks the Tucker convolution starts at NaN and the
    block-TT layers ``weight.normal_(0, sd)`` gives 1/400 of ``sd`` (3 modes). The weight is
    multilinear in its ``n`` tensors, so multiplying each by ``c ** (1 / n)`` scales it by
    ``c``.
    """
    target = float(dense.weight.std())
    with torch.no_grad():
        layer.weight.normal_(0, target)
        tensors = list(layer.weight.parameters())
        scale = target / float(layer.weight.to_tensor().std())
        for t in tensors:
            t.mul_(scale ** (1 / len(tensors)))
        layer.bias.copy_(dense.bias)


def run_tltorch(data, seed, epochs, ours, lr):
    model = lenet(seed)
    layers = {}
    torch.manual_seed(seed)
    for layer in ours["layers"]:
        index = int(layer["name"])
        layers[index] = tltorch_layer(model[index], layer)
    dense_fact = sum(n_params(model[i]) for i in layers)
    for index, layer in layers.items():
        model[index] = layer
    h = train_dense(model, data["x_train"], data["y_train"], epochs=epochs, lr=lr, seed=seed)
    n_fact = sum(n_params(layer) for layer in layers.values())
    return {"model": "tltorch", "method": f"adam lr={lr:g}", "seed": seed, "seconds": h["seconds"],
            "params": n_params(model), "linear_ratio": dense_fact / n_fact,
            "model_ratio": n_params(lenet(seed)) / n_params(model),
            "layer_params": {str(i): n_params(layer) for i, layer in layers.items()},
            **evaluate(lambda x: predict_dense(model, x), data)}


def run_seed(args, seed: int) -> list[dict]:
    """The rows of every network of one seed."""
    data = prepare(args)
    rows = []
    for lr in args.baseline_lrs:
        rows.append(run_dense(data, seed, args.epochs, lr))
        print(rows[-1], flush=True)
    for method in args.methods:
        rows.append(run_ours(data, seed, args.epochs, method, args.prior_weight,
                             args.min_ratio, args.ours_lr, args.weights, args.particles))
        print(rows[-1], flush=True)
        if method == "map" and not args.no_tltorch:
            ours = rows[-1]
            for lr in args.baseline_lrs:
                rows.append(run_tltorch(data, seed, args.epochs, ours, lr))
                print(rows[-1], flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(METHODS))
    ap.add_argument("--no-tltorch", action="store_true")
    ap.add_argument("--baseline-lrs", type=float, nargs="+", default=list(BASELINE_LRS),
                    help="Adam rates of the dense CNN and TensorLy-Torch (each is run at all)")
    ap.add_argument("--ours-lr", type=float, default=None,
                    help="Adam rate of our networks (default: the library's per method)")
    ap.add_argument("--prior-weight", default="1",
                    help="weight of our log prior: a number, or 'validation' to choose it per "
                         "method and seed on 10%% of the training digits (choose_prior_weight)")
    ap.add_argument("--weights", type=float, nargs="+", default=list(PRIOR_WEIGHTS),
                    help="with --prior-weight validation: the candidate weights")
    ap.add_argument("--min-ratio", type=float, default=MIN_RATIO,
                    help="with --prior-weight validation: least whole-model compression")
    ap.add_argument("--particles", type=int, default=None,
                    help="SVGD particles / SGHMC chains (default: 4, the library's)")
    ap.add_argument("--jobs", type=int, default=1, help="seeds run in parallel processes")
    args = ap.parse_args()
    args.threads = 1
    least = 2 if "svgd" in args.methods else 1  # SVGD needs two particles, SGHMC one chain
    if args.particles is not None and args.particles < least:
        ap.error(f"--particles: expected an integer >= {least} with --methods "
                 f"{' '.join(args.methods)}, got {args.particles}")
    if args.prior_weight != "validation":
        float(args.prior_weight)  # fail fast on a weight that is not a number
    prepare(args)  # fail fast on a missing --data
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        per_seed = list(pool.map(run_seed, [args] * len(args.seeds), args.seeds))
    rows = [r for seed_rows in per_seed for r in seed_rows]
    result = {"epochs": args.epochs, "seeds": args.seeds, "ours": OURS, "ours_lr": args.ours_lr,
              "rows": rows,
              "summary": summarize(rows),
              "wall_seconds": time.perf_counter() - t0,
              "machine": f"{platform.platform()}, 2 vCPU, {args.jobs} process(es) of 1 thread, "
                         f"torch {torch.__version__}"}
    write_result(args.out, result)


if __name__ == "__main__":
    main()

"""Probe: does a temperature fitted on held-out digits calibrate the CNN's SVGD ensemble?

Temperature scaling of the pooled predictive (Guo et al., ICML 2017, applied after pooling the
particles as in Rahaman and Thiery, NeurIPS 2021): ``p_T = softmax(log p / T)`` with one ``T``
fitted by NLL on the 10% of the training digits that ``choose_prior_weight`` holds out, using
a network trained on the other 90%; the network trained on all the training digits is then
scored on the test digits with and without ``T``. The dense LeNet-5 gets the same treatment,
so that neither side is recalibrated alone. Every network is as in ``nets_cnn_mnist.py``
(12 epochs; ours SVGD at the prior weight ``--weights`` gives per seed).

Run: ``OMP_NUM_THREADS=1 python benchmarks/nets_cnn_temperature.py --seeds 0 1 2 --weights 0.1
0.3 0.1`` (the weights ``--prior-weight validation`` chose per seed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from bayestensor.nets import fit_net, predict_dense, train_dense
from bayestensor.nets.calibration import VALIDATION_SHARE, _split
from bayestensor.nets.workflow import default_lr, tensorize_smaller
from nets_cnn_mnist import OURS, calibration_scores, lenet
from nets_mnist import DATA, load

OUT = Path(__file__).resolve().parent / "results" / "nets_cnn_temperature.json"
EPOCHS = 12


def fit_temperature(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The ``T`` minimizing the NLL of ``softmax(log probs / T)`` (L-BFGS on ``log T``)."""
    logp = probs.clamp_min(1e-12).log()
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logp / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def dense_predictor(x, y, seed):
    """The dense LeNet-5 trained on ``x, y``: a ``inputs -> probs`` callable."""
    model = lenet(seed)
    train_dense(model, x, y, epochs=EPOCHS, lr=1e-3, seed=seed)
    return lambda inputs: predict_dense(model, inputs)


def svgd_predictor(x, y, seed, weight):
    """Ours, SVGD at prior weight ``weight``, trained on ``x, y`` and pruned as in
    ``nets_cnn_mnist.py``: its ``predict_proba``."""
    bnet, _ = tensorize_smaller(lenet(seed), prior="gamma", init="random", seed=seed,
                                num_particles=4, **OURS)
    fit_net(bnet, x, y, method="svgd", epochs=EPOCHS, lr=default_lr("svgd", "cnn"), seed=seed,
            prior_weight=weight, num_samples=10)
    bnet.prune(1e-2)
    return bnet.predict_proba


def run(data, seed, model, weight=None) -> dict:
    """``T`` fitted on the held-out split with a network trained on the rest; the network
    trained on all the training digits scored on the test digits, raw and scaled."""
    x, y = data["x_train"], data["y_train"]
    held, kept = _split(len(x), VALIDATION_SHARE, seed)

    def train(xs, ys):
        if model == "dense":
            return dense_predictor(xs, ys, seed)
        return svgd_predictor(xs, ys, seed, weight)

    t = fit_temperature(train(x[kept], y[kept])(x[held]), y[held])
    probs = train(x, y)(data["x_test"])
    scaled = (probs.clamp_min(1e-12).log() / t).softmax(-1)
    return {"model": model, "seed": seed, "prior_weight": weight, "temperature": t,
            "raw": calibration_scores(probs, data["y_test"]),
            "scaled": calibration_scores(scaled, data["y_test"])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--weights", type=float, nargs="+", default=[0.1, 0.3, 0.1],
                    help="ours' prior weight per seed")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if len(args.weights) != len(args.seeds):
        ap.error("--weights: one per seed")
    torch.set_num_threads(1)
    data = load(DATA)
    t0 = time.perf_counter()
    rows = []
    for seed, weight in zip(args.seeds, args.weights):
        for model, w in (("dense", None), ("ours svgd", weight)):
            rows.append(run(data, seed, model, w))
            print(rows[-1], flush=True)
    summary = [{"model": m, "variant": v,
                **{k: statistics.median(r[v][k] for r in rows if r["model"] == m)
                   for k in ("accuracy", "nll", "ece", "confidence_gap")}}
               for m in ("dense", "ours svgd") for v in ("raw", "scaled")]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "summary": summary, "args": {
        "seeds": args.seeds, "weights": args.weights},
        "wall_seconds": time.perf_counter() - t0, "torch": torch.__version__}, indent=1))
    for row in summary:
        print(row)


if __name__ == "__main__":
    main()

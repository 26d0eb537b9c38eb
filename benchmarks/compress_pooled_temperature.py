"""Pool, then calibrate: a temperature on the pooled predictive of ``bayestensor compress``'s
default ensembles, against choosing the prior's weight.

For each method (SVGD, SGHMC) and seed, the command's default network (the built-in MLP,
TT-matrix layers of three modes per side at max rank 8, gamma prior at its full weight, 10
epochs, Adam ``4e-2``) is trained on 90% of the training digits; one temperature ``T`` on the
pooled log-probabilities, ``softmax(log p / T)``, is fitted by NLL on the other 10%
(``nets_cnn_temperature.fit_temperature``, on the split ``choose_prior_weight`` holds out;
Guo et al., ICML 2017, applied after pooling as Rahaman and Thiery, NeurIPS 2021, recommend);
the network trained on all the training digits is then
scored on the test digits raw and at ``T``. The ensemble keeps the prior's full weight, so its
compression is the default's. ``python benchmarks/compress_pooled_temperature.py --seeds 0 1 2``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from bayestensor.nets.calibration import VALIDATION_SHARE, _split
from nets_cnn_mnist import calibration_scores
from nets_cnn_temperature import fit_temperature

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist10k.npz"


def train(data, x, y, method: str, seed: int):
    """The command's default network, trained by ``method`` on ``(x, y)`` and pruned."""
    from bayestensor.nets import fit_net
    from bayestensor.nets.workflow import build_model, default_lr, tensorize_smaller

    torch.manual_seed(seed)
    bnet, _ = tensorize_smaller(build_model("mlp", data.input_shape, data.classes, 512, seed),
                                format="ttm", max_rank=8, prior="gamma", num_particles=4,
                                init="random", seed=seed)
    fit_net(bnet, x, y, method=method, epochs=10, batch_size=128, lr=default_lr(method, "mlp"),
            seed=seed, progress=False)
    if method != "sghmc":  # SGHMC pruned at the end of its warm-up
        bnet.prune(1e-2)
    bnet.eval()
    return bnet


def run(method: str, seed: int, data_path: str) -> dict:
    from bayestensor.data.images import load_dataset

    torch.set_num_threads(1)
    data = load_dataset(data_path)
    held, kept = _split(len(data.x_train), VALIDATION_SHARE, seed)
    part = train(data, data.x_train[kept], data.y_train[kept], method, seed)
    with torch.no_grad():
        held_probs = part.predict_proba(data.x_train[held])
    t = fit_temperature(held_probs, data.y_train[held])
    full = train(data, data.x_train, data.y_train, method, seed)
    with torch.no_grad():
        probs = full.predict_proba(data.x_test)
    scaled = (probs.clamp_min(1e-12).log() / t).softmax(-1)
    row = {"method": method, "seed": seed, "temperature": t,
           "raw": calibration_scores(probs, data.y_test),
           "scaled": calibration_scores(scaled, data.y_test),
           "model_ratio": full.compression()["model_ratio"]}
    print(json.dumps(row), flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["svgd", "sghmc"],
                        choices=["svgd", "sghmc"])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--out", default=str(RESULTS / "compress_pooled_temperature.json"))
    args = parser.parse_args()
    start = time.perf_counter()
    rows = [run(m, s, args.data) for m in args.methods for s in args.seeds]
    Path(args.out).write_text(json.dumps(
        {"machine": platform.platform(), "torch": torch.__version__, "args": vars(args),
         "wall_seconds": time.perf_counter() - start, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

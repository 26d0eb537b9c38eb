"""Every inference method on a CUDA device, next to the same fit on the CPU.

The test suite runs without a GPU, so ``device="cuda"`` is checked here, on a machine that has
one: each case fits the same data with the same seed on the CPU and on the GPU and records for
both the time, the held-out relative error (noise free), the 90% predictive coverage of the
noisy held-out entries and where the draws live. A case that raises records its traceback and
the script goes on, so one run shows every failure.

Cases: completion of a 30^3 CP rank-3 tensor (20% observed, 10 dB, max rank 8) by MAP (with
``map_hold="auto"``), SGHMC (full batch and mini-batches of 1,000), SVGD, VI and NUTS (2 chains
x 50 after 50, trees of depth 6 at most, the GPU run only, last: a NUTS chain is a loop of
small operations); CP regression (10x10x10 rank 3, 500 responses) by SGHMC; a tensorized MLP
trained by ``fit_net`` (MAP, SVGD) on random inputs.

Run: ``python benchmarks/gpu_check.py --out gpu_check.json``. Each case's ``"gpu"`` entry is
the run on ``--device`` (default ``cuda``), its ``"cpu"`` entry the same fit on the CPU;
``--gpu-only`` skips the latter, so that the GPU machine's time goes to the GPU, and ``--device
cpu --gpu-only`` then gives the CPU column on another machine (its ``"gpu"`` entry is a CPU run).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import traceback

import torch

import bayestensor as bt

COMPLETION = dict(shape=(30, 30, 30), rank=3, snr_db=10.0, observed=0.2, n_test=1000, seed=0)


def completion_case(method: str, device: str, **options) -> dict:
    data = bt.data.synthetic_tensor(**COMPLETION)
    model = bt.TensorCompletion(data.shape, format="cp", max_rank=8)
    t0 = time.perf_counter()
    post = bt.fit(model, data.train, method=method, seed=0, progress=False, device=device,
                  **options)
    seconds = time.perf_counter() - t0
    pred = post.predict(data.test.indices)
    return {"seconds": seconds, "heldout_rel_err": data.relative_error(pred.mean),
            "coverage90": pred.coverage(data.test_noisy.values, 0.9),
            "rank": post.effective_rank().mode(), "draws_device": _draws_device(post)}


def regression_case(device: str) -> dict:
    from bayestensor.data.regression import synthetic_cp_regression

    data = synthetic_cp_regression(seed=0)
    (x, y), (x_test, y_test) = data.train, data.test
    model = bt.TensorRegression(data.input_shape, format="cp", max_rank=5)
    t0 = time.perf_counter()
    post = bt.fit(model, (x, y), method="sghmc", seed=0, progress=False, device=device)
    seconds = time.perf_counter() - t0
    pred = post.predict(x_test)
    return {"seconds": seconds, "heldout_rel_err": data.relative_error(pred.mean),
            "coverage90": pred.coverage(y_test, 0.9), "draws_device": _draws_device(post)}


def network_case(method: str, device: str) -> dict:
    from torch import nn

    from bayestensor.nets import fit_net, tensorize

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(512, 64, generator=gen)
    y = (x[:, :10].argmax(1)).long()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    bnet = tensorize(net, layers=["0"], format="ttm", max_rank=4, seed=0,
                     num_particles=1 if method == "map" else 4).to(device)
    t0 = time.perf_counter()
    fit_net(bnet, x.to(device), y.to(device), method=method, epochs=5, seed=0, progress=False)
    seconds = time.perf_counter() - t0
    probs = bnet.predict_proba(x.to(device))
    return {"seconds": seconds, "train_accuracy": float((probs.argmax(1) == y.to(device))
                                                        .float().mean()),
            "probs_device": str(probs.device)}


def _draws_device(post) -> str:
    tensors = [v for v in post.samples.values() if isinstance(v, torch.Tensor)]
    return str(tensors[0].device) if tensors else "none"


CASES = {
    "map": lambda dev: completion_case("map", dev),
    "sghmc": lambda dev: completion_case("sghmc", dev),
    "sghmc_minibatch": lambda dev: completion_case("sghmc", dev, batch_size=1000),
    "svgd": lambda dev: completion_case("svgd", dev),
    "vi": lambda dev: completion_case("vi", dev),
    "regression_sghmc": regression_case,
    "net_map": lambda dev: network_case("map", dev),
    "net_svgd": lambda dev: network_case("svgd", dev),
    # last: on a GPU a NUTS chain is slow, and a time limit there cut the H200 run short
    "nuts": lambda dev: completion_case("nuts", dev, num_chains=2, num_samples=50,
                                        num_warmup=50, max_tree_depth=6),
}
#: Cases run on the GPU only (too slow to repeat on the CPU for nothing new).
GPU_ONLY = ("nuts",)


def run_case(name: str, device: str) -> dict:
    try:
        return {"ok": True, **CASES[name](device)}
    except Exception as err:  # record and go on: one run shows every failure
        return {"ok": False, "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc(limit=-6)}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--gpu-only", action="store_true",
                        help="skip the CPU runs (to save GPU-machine time; run them elsewhere "
                             "with --device cpu)")
    args = parser.parse_args()
    info = {"machine": platform.platform(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "cpu_threads": torch.get_num_threads()}
    rows = {}
    for name in args.cases.split(","):
        rows[name] = {"gpu": run_case(name, args.device)}
        if name not in GPU_ONLY and not args.gpu_only:
            rows[name]["cpu"] = run_case(name, "cpu")
        print(name, json.dumps(rows[name], default=str)[:1500], flush=True)
        with open(args.out, "w") as f:
            json.dump({"info": info, "cases": rows}, f, indent=2, default=str)
    failed = [n for n, r in rows.items() if not all(v["ok"] for v in r.values())]
    print("failed:", failed or "none")


if __name__ == "__main__":
    main()

"""The closed-form VI's two starts of the noise level, on small tensors and the rank study.

For each run, a CP completion (max rank 10 on the small tensors, the rank study's own max rank
on its settings) fitted by the closed-form VI from the model's starting values:

* ``point``: the sweeps with ``E[tau]`` started at the starting values' noise precision
  (``1 / Var(y)``), the former default;
* ``residual``: the same with ``E[tau]`` started at the reciprocal of the starting values'
  mean squared residual on the observed entries;
* ``default``: ``bt.fit`` at its defaults, which runs the second start only where the start's
  residual precision exceeds the first fit's ``E[tau]`` by ``SECOND_START_RATIO`` and keeps the
  higher ELBO (:meth:`~bayestensor.models.cp_variational.CPGammaVariational.fit`).

Per run: rank kept, relative held-out error against the noise-free truth, final ELBO, seconds,
and the ratio of the start's residual precision to the first fit's ``E[tau]``.

Run: ``OMP_NUM_THREADS=1 python benchmarks/vi_noise_start.py [--seeds 6] [--prior P]
[--part K --parts 2] [--out FILE]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import torch

import bayestensor as bt
from bayestensor.formats.cp import CPTensor
from bayestensor.models.cp_variational import SECOND_START_RATIO

RESULTS = Path(__file__).parent / "results"
#: (shape, true rank, observed fraction, SNR dB, max rank): small tensors, then the rank study.
SETTINGS = [((12, 10, 8), 3, 0.35, 20, 10), ((12, 10, 8), 3, 0.5, 10, 10),
            ((20, 15, 10), 3, 0.2, 20, 10), ((20, 15, 10), 3, 0.3, 20, 10),
            ((20, 15, 10), 3, 0.3, 10, 10), ((20, 15, 10), 3, 0.5, 20, 10),
            ((30,) * 3, 3, 0.2, 10, 8), ((30,) * 3, 3, 0.1, 0, 8), ((30,) * 3, 5, 0.5, 20, 10),
            ((30,) * 3, 10, 0.5, 20, 20), ((30,) * 3, 10, 0.2, 10, 20),
            ((50,) * 3, 5, 0.1, 10, 10), ((50,) * 3, 10, 0.2, 20, 20)]


def one_start(model, data, start: dict, noise_precision: float) -> dict:
    """The closed-form VI from ``start`` with ``E[tau]`` first at ``noise_precision``: rank
    kept, final ELBO, seconds, fitted ``E[tau]`` and the held-out error of ``q``'s means."""
    updates = model.closed_form_vi()
    t = time.perf_counter()
    q = updates._ascend(updates._start(start, noise_precision), 500, 1e-6)
    seconds = time.perf_counter() - t
    fitted = CPTensor(data.shape, q.means).entries(data.test.indices)
    mean = (fitted + q.offset_mean) * model.scale + model.center
    return {"rank": int(q.active.sum()), "elbo": q.elbo[-1], "seconds": seconds,
            "e_tau": q.noise_shape / q.noise_rate, "error": data.relative_error(mean.numpy())}


def run(shape, rank, observed, snr, max_rank, seed, prior: str = "gamma") -> dict:
    data = bt.data.synthetic_tensor(shape, rank=rank, snr_db=snr, observed=observed, seed=seed)
    model = bt.TensorCompletion(data.shape, "cp", max_rank=max_rank, prior=prior)
    model.set_data(data.train)
    start = model.init_values(seed=seed)
    updates = model.closed_form_vi()
    residual = updates._residual(updates._point_means(start), updates._offset(start))
    row = {"shape": list(shape), "rank": rank, "observed": observed, "snr_db": snr,
           "max_rank": max_rank, "seed": seed, "prior": prior}
    for label, tau in (("point", float(start["noise_precision"])), ("residual", 1 / residual)):
        row[label] = one_start(model, data, start, tau)
    row["ratio"] = (1 / residual) / row["point"]["e_tau"]
    t = time.perf_counter()
    post = bt.fit(model, data.train, seed=seed, progress=False)
    row["default"] = {"rank": int(post.effective_rank().mode()[0]),
                      "error": data.relative_error(post.predict(data.test.indices).mean),
                      "seconds": time.perf_counter() - t,
                      "starts": sorted(post.info["vi_noise_starts"])}
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--part", type=int, default=0)
    parser.add_argument("--parts", type=int, default=1)
    parser.add_argument("--prior", choices=bt.priors.PRIORS, default="gamma")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    rows = []
    for k, setting in enumerate(SETTINGS):
        if k % args.parts != args.part:
            continue
        for seed in range(args.seeds):
            rows.append(run(*setting, seed, prior=args.prior))
            print(json.dumps(rows[-1]), flush=True)
    out = args.out or RESULTS / (f"vi_noise_start_part{args.part}.json" if args.parts > 1
                                 else "vi_noise_start.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"rows": rows, "second_start_ratio": SECOND_START_RATIO,
              "machine": platform.platform(), "torch": torch.__version__,
              "args": {**vars(args), "out": str(out)}}
    out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

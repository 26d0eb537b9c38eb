"""How large R-hat gets by chance on chains that mix: one quantity against the worst of many.

Four chains of autoregressive draws (``x_t = rho x_{t-1} + e_t``, every chain the same
stationary law, so every R-hat above 1 is noise), 200 independent quantities (``--quantities``),
``--reps`` repetitions per setting. For each setting it reports the bulk ESS of a quantity
(median), the median R-hat of one quantity and the median (and range over repetitions) of the
largest R-hat over the quantities: the level that SGHMC's check on 1,000 predicted entries
(:mod:`bayestensor.infer.stopping`) and the completion grid's bar (R-hat <= 1.02 on 200
held-out entries) must allow for. Statistics by :mod:`bayestensor.results.rank_normalized`
(ArviZ's numbers, vectorized).

It also times the two statistics for 202 quantities at 4 x 2,000 draws (float32 draws, which
tie): :mod:`bayestensor.results.rank_normalized` against ArviZ's ``rhat`` and ``ess(method=
"bulk")`` called per quantity, the largest difference between them, best of three.

Run: ``python benchmarks/rhat_noise_floor.py [--reps 20] [--quantities 200]`` (about a minute
at 200 quantities, three at 1,000).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import arviz as az
import numpy as np

from bayestensor.results.rank_normalized import rhat_and_bulk_ess

RESULTS = Path(__file__).parent / "results"
CHAINS, QUANTITIES = 4, 200


def autoregressive(rng, rho: float, draws: int, quantities: int = QUANTITIES) -> np.ndarray:
    noise = rng.standard_normal((CHAINS, draws, quantities))
    x = np.empty_like(noise)
    x[:, 0] = noise[:, 0] / np.sqrt(1 - rho ** 2)  # stationary from the first draw
    for t in range(1, draws):
        x[:, t] = rho * x[:, t - 1] + noise[:, t]
    return x


def timing(rng) -> dict:
    """Seconds for R-hat and bulk ESS of 202 quantities at 4 x 2,000 draws, ours and ArviZ's."""
    x = autoregressive(rng, 0.6, 2000, 202).astype(np.float32).astype(float)
    ours, theirs = [], []
    for _ in range(3):
        start = time.perf_counter()
        fast = np.concatenate(rhat_and_bulk_ess(x))
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        slow = np.array([float(az.rhat(x[:, :, i])) for i in range(x.shape[2])]
                        + [float(az.ess(x[:, :, i], method="bulk")) for i in range(x.shape[2])])
        theirs.append(time.perf_counter() - start)
    return {"quantities": x.shape[2], "ours_s": round(min(ours), 3),
            "arviz_s": round(min(theirs), 3),
            "max_relative_difference": float(np.max(np.abs(fast / slow - 1)))}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--quantities", type=int, default=QUANTITIES,
                        help="Quantities whose largest R-hat is taken (SGHMC's check: 1,000).")
    parser.add_argument("--out", type=Path, default=RESULTS / "rhat_noise_floor.json")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for draws in (1000, 2000):
        for rho in (0.5, 0.6, 0.7):
            worst, single, ess = [], [], []
            for _ in range(args.reps):
                x = autoregressive(rng, rho, draws, args.quantities)
                rhat, ess_x = rhat_and_bulk_ess(x)
                worst.append(rhat.max())
                single.append(np.median(rhat))
                ess.append(np.median(ess_x))
            row = {"draws": draws, "rho": rho, "ess_median": round(float(np.median(ess))),
                   "rhat_one_median": round(float(np.median(single)), 4),
                   f"rhat_max_of_{args.quantities}_median": round(float(np.median(worst)), 4),
                   f"rhat_max_of_{args.quantities}_range": [round(float(min(worst)), 4),
                                                            round(float(max(worst)), 4)]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    times = timing(rng)
    print(json.dumps(times), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"chains": CHAINS, "quantities": args.quantities,
                                    "reps": args.reps, "rows": rows, "timing": times}, indent=1))
    return {"rows": rows, "timing": times}


if __name__ == "__main__":
    main()

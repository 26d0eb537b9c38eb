"""Rows gathered before or after the batch moves last (``prefix_entries.gather_rows``).

``gather_rows`` returns a table's rows at many indices with the sample dimensions last. It
used to move them last on the whole table and then gather (``table_first``, kept here); with
more than one sample and fewer rows read than the table has (a dense prefix read at the
observed entries) it now gathers first and moves only the rows read (``gather_first``, the
library's). Each is patched into the formats' modules in turn, in one process, alternating, so
they share the machine's state:

1. ``entries`` forward and backward (sum of squares, as a likelihood does) of every format at
   the cases of ``entries_speed.py`` plus CP: milliseconds, best of ``--repeats``, and
   whether the entries are the same bits.
2. SGHMC at its defaults (4 chains, drawn until converged) on a 40 x 35 x 30 Tucker and TT
   completion (CP rank 3, 20% observed, 10 dB, max rank 10), each way, at ``--seeds`` seeds:
   seconds, draws per chain and held-out error.

Run: ``OMP_NUM_THREADS=1 python benchmarks/gather_speed.py --threads 1``.
"""

from __future__ import annotations

import argparse
import math
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from entries_speed import CASES, best_ms, finish_speed_run, parse_speed_args

import bayestensor as bt
from bayestensor.formats import cp, prefix_entries, tt, tucker

RESULTS = Path(__file__).parent / "results"
CP_CASES = [("cp", (40, 35, 30), 10, 11_468, 4), ("cp", (1000,) * 3, 20, 100_000, 1)]


gather_first = prefix_entries.gather_rows


def table_first(t: torch.Tensor, n_batch: int, index: torch.Tensor) -> torch.Tensor:
    """The former ``gather_rows``: the whole table's batch moved last, then its rows read."""
    moved = t.movedim(tuple(range(n_batch)), tuple(range(-n_batch, 0))) if n_batch else t
    rest = tuple(moved.shape[1:moved.dim() - n_batch])
    b = math.prod(moved.shape[moved.dim() - n_batch:])
    rows = moved.reshape(moved.shape[0], -1).index_select(0, index)
    return rows.reshape((index.shape[0],) + rest + (b,))


@contextmanager
def gather_as(gather):
    """``gather`` patched into every module that reads rows through ``gather_rows``."""
    saved = [(module, module.gather_rows) for module in (cp, tt, tucker)]
    for module, _ in saved:
        module.gather_rows = gather
    try:
        yield
    finally:
        for module, original in saved:
            module.gather_rows = original


def entries_rows(repeats: int) -> list[dict]:
    rows = []
    for fmt, shape, rank, n, samples in CASES + CP_CASES:
        cls = bt.formats.get_format(fmt)
        start = cls.random(shape, rank, batch_shape=(samples,), seed=0)
        tensor = cls(shape, [p.clone().requires_grad_(True) for p in start.params])
        gen = torch.Generator().manual_seed(1)
        idx = torch.stack([torch.randint(0, s, (n,), generator=gen) for s in shape], 1)

        def step():
            tensor.entries(idx, check=False).square().sum().backward()

        with torch.no_grad():
            new = tensor.entries(idx, check=False)
            with gather_as(table_first):
                old = tensor.entries(idx, check=False)
        times = {"table_first": [], "gather_first": []}
        for _ in range(repeats):  # alternate, so both see the same load
            with gather_as(table_first):
                times["table_first"].append(best_ms(step, 1))
            times["gather_first"].append(best_ms(step, 1))
        old_ms, new_ms = min(times["table_first"]), min(times["gather_first"])
        rows.append({"format": fmt, "shape": list(shape), "rank": rank, "entries": n,
                     "samples": samples, "table_first_ms": round(old_ms, 2),
                     "gather_first_ms": round(new_ms, 2), "ratio": round(old_ms / new_ms, 2),
                     "same_bits": bool(torch.equal(old, new))})
        print(rows[-1], flush=True)
    return rows


def fit_rows(seeds: int) -> list[dict]:
    rows = []
    for seed in range(seeds):
        data = bt.data.synthetic_tensor((40, 35, 30), rank=3, snr_db=10, observed=0.2,
                                        n_test=2_000, seed=seed)
        for fmt in ("tucker", "tt"):
            for way in ("table_first", "gather_first"):
                model = bt.TensorCompletion(data.shape, format=fmt, max_rank=10)
                start = time.perf_counter()
                with gather_as(table_first if way == "table_first" else gather_first):
                    post = bt.fit(model, data.train, method="sghmc", seed=seed, progress=False)
                seconds = time.perf_counter() - start
                error = data.relative_error(post.predict(data.test.indices).mean)
                rows.append({"seed": seed, "format": fmt, "gather": way,
                             "seconds": round(seconds, 2), "draws": post.num_draws,
                             "held_out_error": round(float(error), 4)})
                print(rows[-1], flush=True)
    return rows


def medians(rows: list[dict]) -> dict:
    """Median seconds per format and way, and the median per-seed ratio."""
    out = {}
    for fmt in sorted({r["format"] for r in rows}):
        pairs = {}
        for r in rows:
            if r["format"] == fmt:
                pairs.setdefault(r["seed"], {})[r["gather"]] = r["seconds"]
        ratios = [p["table_first"] / p["gather_first"] for p in pairs.values()]
        out[fmt] = {way: float(np.median([p[way] for p in pairs.values()]))
                    for way in ("table_first", "gather_first")}
        out[fmt]["median_ratio"] = round(float(np.median(ratios)), 2)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3,
                        help="Data and fit seeds of the SGHMC fits (0 skips them).")
    parser.add_argument("--out", type=Path, default=RESULTS / "gather_speed.json")
    args, result = parse_speed_args(parser, argv)
    result["entries"] = entries_rows(args.repeats)
    return finish_speed_run(result, args, fit_rows, medians)


if __name__ == "__main__":
    main()

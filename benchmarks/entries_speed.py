"""Entries of Tucker and TT tensors through a dense prefix, against the per-entry contraction.

Two parts, both in one process so the two ways share the machine's state:

1. ``entries`` forward and backward (sum of squares, as a likelihood does) at many index
   tuples: the library's choice (:mod:`bayestensor.formats.prefix_entries`) against the
   per-entry contraction it replaced (Tucker: the core with each entry's factor rows,
   ``TuckerTensor._entries_per_row``; TT: each entry's core slices gathered and multiplied
   along the train, kept here as ``per_entry_train``). Milliseconds, best of ``--repeats``,
   and the largest relative difference of the entries.
2. The default fit of ``bt.fit`` (the MAP with its validation-chosen continuation) of a
   40 x 35 x 30 tensor of CP rank 3 at 20 dB with 27% observed, max rank 10, Tucker and TT,
   with each way of evaluating entries (the former one patched in), at ``--seeds`` data and
   fit seeds: seconds, MAP steps, the continuation chosen and the held-out error of the
   noise-free entries, with medians over the seeds. The two ways give the same entries to
   rounding, which is enough to move the MAP's path (its steps differ).

Run: ``python benchmarks/entries_speed.py`` (2 threads, about seven minutes).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

import bayestensor as bt
from bayestensor.formats import TuckerTensor
from bayestensor.formats.tt import CoreTrain

RESULTS = Path(__file__).parent / "results"
#: (format, shape, rank, entries, samples)
CASES = [("tucker", (40, 35, 30), 10, 11_468, 1), ("tucker", (40, 35, 30), 10, 11_468, 4),
         ("tucker", (145, 145, 200), 20, 100_000, 1), ("tucker", (1000,) * 3, 20, 100_000, 1),
         ("tt", (40, 35, 30), 10, 11_468, 1), ("tt", (30, 30, 30), 8, 5_400, 4),
         ("tt", (145, 145, 200), 20, 100_000, 1), ("tt", (1000,) * 3, 20, 100_000, 1)]


def per_entry_train(tensor: CoreTrain, idx: torch.Tensor) -> torch.Tensor:
    """The former train entries: every entry's core slices gathered, then multiplied."""
    slices = [c.index_select(-2, p) for c, p in zip(tensor._flat_cores(),
                                                     tensor._core_index(idx))]
    v = slices[0][..., 0, :, :]
    for s in slices[1:]:
        v = torch.einsum("...zr,...rzs->...zs", v, s)
    return v[..., 0]


def per_entry(tensor, idx):
    if isinstance(tensor, TuckerTensor):
        return tensor._entries_per_row(idx)
    return per_entry_train(tensor, idx)


def best_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def entries_rows(repeats: int) -> list[dict]:
    rows = []
    for fmt, shape, rank, n, samples in CASES:
        cls = bt.formats.get_format(fmt)
        start = cls.random(shape, rank, batch_shape=(samples,), seed=0)
        tensor = cls(shape, [p.clone().requires_grad_(True) for p in start.params])
        gen = torch.Generator().manual_seed(1)
        idx = torch.stack([torch.randint(0, s, (n,), generator=gen) for s in shape], 1)
        with torch.no_grad():
            old, new = per_entry(tensor, idx), tensor.entries(idx, check=False)
        difference = float((old - new).abs().max() / old.abs().max())
        old_ms = best_ms(lambda: per_entry(tensor, idx).square().sum().backward(), repeats)
        new_ms = best_ms(lambda: tensor.entries(idx, check=False).square().sum().backward(),
                         repeats)
        rows.append({"format": fmt, "shape": list(shape), "rank": rank, "entries": n,
                     "samples": samples, "per_entry_ms": round(old_ms, 2),
                     "prefix_ms": round(new_ms, 2), "ratio": round(old_ms / new_ms, 2),
                     "max_relative_difference": difference})
        print(rows[-1], flush=True)
    return rows


@contextmanager
def former_entries():
    """Patch the per-entry contraction back in for the duration."""
    saved = TuckerTensor._entries, CoreTrain._entries
    TuckerTensor._entries = TuckerTensor._entries_per_row
    CoreTrain._entries = per_entry_train
    try:
        yield
    finally:
        TuckerTensor._entries, CoreTrain._entries = saved


def fit_rows(seeds: int) -> list[dict]:
    rows = []
    for seed in range(seeds):
        data = bt.data.synthetic_tensor((40, 35, 30), rank=3, snr_db=20, observed=0.27,
                                        n_test=2_000, seed=seed)
        for fmt in ("tucker", "tt"):
            for way in ("per_entry", "prefix"):
                model = bt.TensorCompletion(data.shape, format=fmt, max_rank=10)
                start = time.perf_counter()
                if way == "per_entry":
                    with former_entries():
                        post = bt.fit(model, data.train, seed=seed, progress=False)
                else:
                    post = bt.fit(model, data.train, seed=seed, progress=False)
                seconds = time.perf_counter() - start
                error = data.relative_error(post.predict(data.test.indices).mean)
                rows.append({"seed": seed, "format": fmt, "entries": way,
                             "seconds": round(seconds, 2), "map_steps": post.info.get("map_steps"),
                             "map_hold_chosen": (post.info.get("map_hold_auto") or {}).get("chosen"),
                             "held_out_error": round(float(error), 4)})
                print(rows[-1], flush=True)
    return rows


def medians(rows: list[dict]) -> dict:
    """Median seconds and held-out error per format and way over the seeds."""
    out = {}
    for row in rows:
        out.setdefault(f"{row['format']}/{row['entries']}", []).append(row)
    return {key: {"seconds": float(np.median([r["seconds"] for r in group])),
                  "held_out_error": float(np.median([r["held_out_error"] for r in group]))}
            for key, group in out.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3,
                        help="Data and fit seeds of the default fits (0 skips them).")
    parser.add_argument("--skip-entries", action="store_true", help="Only the default fits.")
    parser.add_argument("--out", type=Path, default=RESULTS / "entries_speed.json")
    args, result = parse_speed_args(parser, argv)
    if not args.skip_entries:
        result["entries"] = entries_rows(args.repeats)
    return finish_speed_run(result, args, fit_rows, medians)


def parse_speed_args(parser: argparse.ArgumentParser, argv) -> tuple[argparse.Namespace, dict]:
    """Parse ``--repeats``, ``--threads`` and ``--seeds`` (refused below 1, 1 and 0), set
    torch's threads, and start the result with the machine (shared with gather_speed.py)."""
    args = parser.parse_args(argv)
    for name, least in (("repeats", 1), ("threads", 1), ("seeds", 0)):
        if getattr(args, name) < least:
            parser.error(f"--{name}: expected an integer >= {least}, got {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    return args, {"machine": platform.platform(), "torch": torch.__version__,
                  "threads": args.threads}


def finish_speed_run(result: dict, args: argparse.Namespace, fit_rows, medians) -> dict:
    """Add ``fit_rows(args.seeds)`` and their ``medians`` (none with ``--seeds 0``), write the
    result to ``args.out`` and return it."""
    if args.seeds:
        result["fits"] = fit_rows(args.seeds)
        result["fit_medians"] = medians(result["fits"])
        print(result["fit_medians"])
    args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

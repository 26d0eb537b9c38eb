"""Beyond one process: chain groups, replicate sweeps and task streams on Ray, or locally.

Everything here dispatches *independent* tasks (chain groups, SVGD runs, replicates of a
sweep) to an existing engine, Ray; no scheduling of our own beyond a bounded window of tasks in
flight. The local backend runs the very same tasks in order in this process, so the two give
identical numbers: every task's seed is derived from the base seed and the task's key, never
from the order in which tasks run or finish.

* :func:`derive_seed` — a task's seed from the base seed and its key;
* :func:`run_tasks` — run ``fn(task)`` for every task, locally or as Ray tasks with retries,
  streaming each result to a JSON-lines file as it arrives; a re-run skips what is done and
  failures are reported per task instead of losing the others;
* :func:`sweep` — a grid over settings times seeds on top of :func:`run_tasks`;
* :class:`TaskExecutor` — an object with ``map`` for APIs that take an executor
  (``dynamics.compare``);
* :func:`fit_chain_groups` — ``fit(..., backend="ray")``: chains split into groups, one fit per
  group, merged along the chain dimension.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

BACKENDS = ("local", "ray")


def derive_seed(seed: int, *key) -> int:
    """A 31-bit seed from a base seed and a task key (stable across runs and machines)."""
    text = json.dumps([int(seed), *[str(k) for k in key]])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    return backend


def ensure_ray(address: str | None = None, num_cpus: int | None = None):
    """Import Ray and start (or connect to) it once; a clear error when it is not installed."""
    try:
        import ray
    except ImportError as err:
        raise ImportError("backend='ray' needs Ray: pip install 'bayestensor[ray]'") from err
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"ignore_reinit_error": True, "include_dashboard": False,
                                  "log_to_driver": False}
        if address is not None:
            kwargs["address"] = address
        elif num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        ray.init(**kwargs)
    return ray


@dataclass
class TaskResults:
    """Results of :func:`run_tasks`: ``results[key]`` per finished task, ``failed[key]`` errors."""

    results: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)

    def ordered(self, keys: Iterable) -> list:
        return [self.results[k] for k in keys]


def _key_text(key) -> str:
    return json.dumps(key, sort_keys=True, default=str)


def _read_done(path: Path) -> dict:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if row.get("status") == "ok":
                    done[row["key"]] = row["result"]
    return done


def run_tasks(fn: Callable, tasks: dict, *, backend: str = "local", max_in_flight: int | None = None,
              retries: int = 2, out: str | Path | None = None, address: str | None = None,
              num_cpus: int | None = None, progress: bool = True) -> TaskResults:
    """Run ``fn(task)`` for every ``task`` in ``tasks`` (a dict ``key -> task``).

    Parameters
    ----------
    fn : callable
        A picklable function of one task; its result must be JSON-serializable when ``out`` is
        given.
    tasks : dict
        Keys (JSON-serializable) to task arguments.
    backend : {"local", "ray"}
        ``"local"`` runs in order here; ``"ray"`` submits Ray tasks.
    max_in_flight : int, optional
        At most this many Ray tasks submitted at once (default: the cluster's CPUs).
    retries : int
        Ray retries of a task whose worker died (``max_retries``) and of a task that raised
        (``retry_exceptions``).
    out : path, optional
        JSON-lines file: one line per finished or failed task, written as it arrives; tasks
        already recorded there as finished are skipped (resume).
    address, num_cpus
        Ray cluster address to connect to, or the CPUs of a local Ray started here.
    progress : bool

    Returns
    -------
    TaskResults
    """
    _check_backend(backend)
    if retries < 0:
        raise ValueError(f"retries: expected a non-negative integer, got {retries}")
    out_path = Path(out) if out is not None else None
    done = _read_done(out_path) if out_path is not None else {}
    result = TaskResults()
    todo = {}
    for key, task in tasks.items():
        text = _key_text(key)
        if text in done:
            result.results[key] = done[text]
            result.skipped.append(key)
        else:
            todo[key] = task
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), initial=len(result.skipped), disable=not progress, desc="tasks")

    def record(key, status, value):
        if status == "ok":
            result.results[key] = value
        else:
            result.failed[key] = value
        if out_path is not None:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            with out_path.open("a") as fh:
                row = {"key": _key_text(key), "status": status,
                       ("result" if status == "ok" else "error"): value}
                fh.write(json.dumps(row, default=float) + "\n")
        bar.update(1)

    try:
        if backend == "local":
            for key, task in todo.items():
                try:
                    record(key, "ok", fn(task))
                except Exception as err:  # reported per task, the others go on
                    record(key, "failed", f"{type(err).__name__}: {err}")
        else:
            ray = ensure_ray(address, num_cpus)
            remote = ray.remote(max_retries=retries, retry_exceptions=retries > 0)(fn)
            window = max_in_flight or max(1, int(ray.available_resources().get("CPU", 1)))
            pending = {}
            queue = list(todo.items())
            while queue or pending:
                while queue and len(pending) < window:
                    key, task = queue.pop(0)
                    pending[remote.remote(task)] = key
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    key = pending.pop(ref)
                    try:
                        record(key, "ok", ray.get(ref))
                    except Exception as err:
                        record(key, "failed", f"{type(err).__name__}: {err}")
    finally:
        bar.close()
    return result


def sweep(fn: Callable, grid: dict[str, list], seeds: int | Iterable[int] = 5, *, seed: int = 0,
          **kwargs) -> TaskResults:
    """Run ``fn(settings)`` over the product of ``grid`` and replicate seeds.

    Each task is ``{**settings, "replicate": r, "seed": derive_seed(seed, settings, r)}``; its
    key is ``(settings, r)`` as a tuple of sorted items plus ``r``. Other keyword arguments go
    to :func:`run_tasks` (``backend``, ``out``, ``max_in_flight``, ``retries``, ...).
    """
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"grid: expected a non-empty dict of setting -> list of values, got {grid!r}")
    for name, values in grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"grid[{name!r}]: expected a non-empty list of values, got {values!r}")
    replicates = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not replicates:
        raise ValueError("seeds: expected at least one replicate")
    names = list(grid)
    tasks = {}
    for values in itertools.product(*(grid[n] for n in names)):
        settings = dict(zip(names, values))
        for r in replicates:
            key = (tuple(sorted(settings.items())), r)
            tasks[key] = {**settings, "replicate": r,
                          "seed": derive_seed(seed, sorted(settings.items()), r)}
    return run_tasks(fn, tasks, **kwargs)


class TaskExecutor:
    """``map(fn, items)`` over :func:`run_tasks`, results in input order.

    For APIs that accept an executor (``dynamics.compare``); failures raise after all tasks
    ran, naming every failed item.
    """

    def __init__(self, backend: str = "ray", **kwargs):
        self.backend = _check_backend(backend)
        self.kwargs = kwargs

    def map(self, fn: Callable, items: Iterable):
        items = list(items)
        res = run_tasks(fn, dict(enumerate(items)), backend=self.backend, progress=False, **self.kwargs)
        if res.failed:
            raise RuntimeError(f"{len(res.failed)} task(s) failed for good: "
                               + "; ".join(f"#{k}: {v}" for k, v in sorted(res.failed.items())))
        return res.ordered(range(len(items)))


def _fit_group(task: dict):
    """One chain group: a local fit, returned as plain tensors (cheap to ship back)."""
    from bayestensor.infer.api import fit

    torch.set_num_threads(task.pop("_threads", 1))
    post = fit(task.pop("model"), task.pop("data"), backend="local", **task)
    return {"samples": post.samples, "sample_stats": post.sample_stats, "info": post.info}


def fit_chain_groups(model, data, *, num_chains: int, groups: int, seed: int, backend: str,
                     method: str, address=None, num_cpus=None, threads_per_task: int = 1,
                     **fit_kwargs):
    """Split ``num_chains`` into ``groups`` independent fits and merge them along the chain dim.

    Group ``g`` runs ``ceil``/``floor``-balanced chains with seed ``derive_seed(seed, "chains",
    g)``; for SVGD each group is an independent particle set (a "chain" of particles). The
    local backend runs the same groups in order, so both backends return the same numbers.
    """
    from bayestensor.results.posterior import Posterior

    if groups < 1 or groups > num_chains:
        raise ValueError(f"chain_groups: expected 1..num_chains={num_chains}, got {groups}")
    sizes = [num_chains // groups + (1 if g < num_chains % groups else 0) for g in range(groups)]
    per_group_chains = method != "svgd"
    tasks = {}
    for g, size in enumerate(sizes):
        tasks[g] = {"model": model, "data": data, "method": method,
                    "seed": derive_seed(seed, "chains", g), "_threads": threads_per_task,
                    **({"num_chains": size} if per_group_chains else {}), **fit_kwargs}
    res = run_tasks(_fit_group, tasks, backend=backend, address=address, num_cpus=num_cpus,
                    progress=False)
    if res.failed:
        raise RuntimeError(f"chain groups failed for good: {res.failed}")
    parts = res.ordered(range(groups))
    samples = {k: torch.cat([p["samples"][k] for p in parts], 0) for k in parts[0]["samples"]}
    stats = {k: torch.cat([p["sample_stats"][k] for p in parts], 0)
             for k in parts[0]["sample_stats"]}
    info = dict(parts[0]["info"])
    info.update(chain_groups=groups, backend=backend, group_seeds=[t["seed"] for t in tasks.values()],
                seconds_per_group=[p["info"].get("seconds", math.nan) for p in parts])
    from bayestensor.models.base import BayesModel

    bound = model if isinstance(model, BayesModel) else None
    if bound is not None and data is not None:
        bound.set_data(data)
    return Posterior(samples, stats, method, bound, info)

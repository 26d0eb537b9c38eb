"""Beyond one process: replicate sweeps and task streams on Ray, or locally.

Everything here dispatches *independent* tasks (chain groups of ``fit``, replicates of a
sweep) to an existing engine, Ray; no scheduling of our own beyond a bounded window of tasks in
flight. The local backend runs the very same tasks in order in this process, so the two give
identical numbers: every task's seed is derived from the base seed and the task's key, never
from the order in which tasks run or finish.

* :func:`run_tasks` — run ``fn(task)`` for every task, locally or as Ray tasks with retries,
  streaming each result to a JSON-lines file as it arrives; a re-run skips what is done and
  failures are reported per task instead of losing the others;
* :func:`sweep` — a grid over settings times seeds on top of :func:`run_tasks`;
* :class:`TaskExecutor` — an object with ``map`` for APIs that take an executor
  (``dynamics.compare``).

Task seeds come from :func:`bayestensor.seeds.derive_seed`; ``fit``'s chain groups are built
on :func:`run_tasks` in :mod:`bayestensor.infer.chains`.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from tqdm.auto import tqdm

from bayestensor.checks import seed_value
from bayestensor.seeds import derive_seed

BACKENDS = ("local", "ray")


def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    return backend


def ensure_ray(address: str | None = None, num_cpus: int | None = None):
    """Import Ray and start (or connect to) it once; a clear error when it is not installed.

    Ray is an optional dependency, imported here (lazily) only when a Ray backend is asked for.
    """
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
    to :func:`run_tasks` (``backend``, ``out``, ``max_in_flight``, ``retries``, ...). Task
    seeds are 63-bit integers, which ``bayestensor.fit`` takes as they are.
    """
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"grid: expected a non-empty dict of setting -> list of values, got {grid!r}")
    for name, values in grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"grid[{name!r}]: expected a non-empty list of values, got {values!r}")
    seed_value(seed)
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

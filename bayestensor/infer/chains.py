"""Chain groups: ``num_chains`` split into independent fits, run locally or as Ray tasks.

Layering, so that no import cycle needs hiding: ``api.fit`` calls :func:`fit_chain_groups`,
which runs each group through :func:`bayestensor.infer.runners.run_method` (a local fit with
settings ``fit`` has already checked) by way of the generic task runner
:func:`bayestensor.parallel.run_tasks`. Nothing here imports ``api``, and ``parallel`` knows
nothing of inference.
"""

from __future__ import annotations

import math

import torch

from bayestensor.infer.runners import Method, run_method
from bayestensor.models.base import BayesModel
from bayestensor.parallel import run_tasks
from bayestensor.results.posterior import Posterior
from bayestensor.seeds import derive_seed


def _fit_group(task: dict) -> dict:
    """One chain group: a local fit, returned as plain tensors (cheap to ship back)."""
    torch.set_num_threads(task.pop("threads"))
    post = run_method(task.pop("method"), task.pop("model"), task.pop("data"), **task)
    return {"samples": post.samples, "sample_stats": post.sample_stats, "info": post.info}


def group_seed(seed: int, group: int) -> int:
    """Seed of chain group ``group``: a stream of ``seed`` named by the group (63 bits, which
    ``fit`` takes whole)."""
    return derive_seed(seed, "chains", group)


def group_sizes(num_chains: int, groups: int) -> list[int]:
    """Chains per group, as balanced as possible (the first groups take the remainder)."""
    if groups < 1 or groups > num_chains:
        raise ValueError(f"chain_groups: expected 1..num_chains={num_chains}, got {groups}")
    return [num_chains // groups + (1 if g < num_chains % groups else 0) for g in range(groups)]


def fit_chain_groups(method: Method, model, data, *, num_chains: int, groups: int, seed: int,
                     backend: str, address=None, num_cpus=None, threads_per_task: int = 1,
                     **fit_kwargs) -> Posterior:
    """Split ``num_chains`` into ``groups`` independent fits and merge them along the chain dim.

    Group ``g`` runs balanced chains with seed :func:`group_seed`; for a method
    without batched chains (SVGD, VI) each group is one independent run (for SVGD a set of
    ``num_samples`` particles). The local backend runs the same groups in order, so both
    backends return the same numbers.

    Parameters
    ----------
    method : Method
        The registry entry of the method.
    model, data
        As for ``fit``.
    num_chains, groups : int
        Chains in all, and the number of groups (tasks).
    seed : int
        Base seed of the group seeds.
    backend : {"local", "ray"}
    address, num_cpus
        Ray cluster to connect to, or CPUs of a local Ray.
    threads_per_task : int
        ``torch`` threads inside each task.
    **fit_kwargs
        The other settings of :func:`~bayestensor.infer.runners.run_method`, ``options``
        included.
    """
    sizes = group_sizes(num_chains, groups)
    if backend == "ray" and method.name == "nuts":
        # the groups already run in parallel, and a Ray worker (with its threads) must not fork
        fit_kwargs["options"] = {**fit_kwargs.get("options", {}), "processes": 1}
    tasks = {}
    for g, size in enumerate(sizes):
        tasks[g] = {"method": method, "model": model, "data": data,
                    "seed": group_seed(seed, g), "threads": threads_per_task,
                    **({"num_chains": size} if method.chains else {}), **fit_kwargs}
    res = run_tasks(_fit_group, tasks, backend=backend, address=address, num_cpus=num_cpus,
                    progress=False)
    if res.failed:
        raise RuntimeError(f"chain groups failed for good: {res.failed}")
    parts = res.ordered(range(groups))
    samples = {k: torch.cat([p["samples"][k] for p in parts], 0) for k in parts[0]["samples"]}
    stats = {k: torch.cat([p["sample_stats"][k] for p in parts], 0)
             for k in parts[0]["sample_stats"]}
    info = dict(parts[0]["info"])
    for key in [k for k in info if k.endswith("_converged")]:  # only if every group did
        info[key] = all(p["info"].get(key) is True for p in parts)
    # the other entries at the top are group 0's; those that differ between groups, per group
    varying = [k for k in info if len({repr(p["info"].get(k)) for p in parts}) > 1]
    info["group_info"] = [{k: p["info"].get(k) for k in varying} for p in parts]
    info.update(chain_groups=groups, backend=backend, group_seeds=[t["seed"] for t in tasks.values()],
                seconds_per_group=[p["info"].get("seconds", math.nan) for p in parts])
    bound = model if isinstance(model, BayesModel) else None
    if bound is not None and data is not None:
        bound.set_data(data)
    return Posterior(samples, stats, method.name, bound, info)

"""Ray backend: same numbers as the local backend, retries, streaming sweeps."""

import json
import os
import sys

import pytest
import torch

import bayestensor as bt
from bayestensor.parallel import run_tasks, sweep
from bayestensor.infer.chains import group_seed
from bayestensor.seeds import MAX_SEED, derive_seed

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    # Task functions defined in this test module travel by value (workers cannot import it).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


def test_four_chain_sghmc_on_ray_equals_local(ray_local):
    data = bt.data.synthetic_tensor((10, 10, 10), rank=2, observed=0.3, seed=0)
    model = bt.TensorCompletion(data.shape, "cp", max_rank=4)
    kwargs = dict(method="sghmc", num_chains=4, num_samples=30, num_warmup=30, seed=3)
    local = bt.fit(model, data.train, chain_groups=4, **kwargs)
    remote = bt.fit(model, data.train, backend="ray", **kwargs)
    assert remote.samples["X.factor0"].shape == local.samples["X.factor0"].shape == (4, 30, 10, 4)
    for name in local.samples:
        torch.testing.assert_close(remote.samples[name], local.samples[name], rtol=0, atol=0)
    assert remote.info["backend"] == "ray"
    assert remote.predict(data.test.indices).mean.shape == (len(data.test),)


def _replicate(task):
    return {"value": task["seed"] % 1000 + task["a"]}


def test_sweep_same_numbers_local_and_ray_and_resume(ray_local, tmp_path):
    grid = {"a": [1, 2]}
    local = sweep(_replicate, grid, seeds=10, seed=7, backend="local", progress=False)
    out = tmp_path / "sweep.jsonl"
    remote = sweep(_replicate, grid, seeds=10, seed=7, backend="ray", out=out, progress=False)
    assert len(local.results) == len(remote.results) == 20
    assert local.results == remote.results
    again = sweep(_replicate, grid, seeds=10, seed=7, backend="ray", out=out, progress=False)
    assert len(again.skipped) == 20 and again.results == local.results
    assert len(out.read_text().splitlines()) == 20


def test_dynamics_compare_on_ray_matches_local(ray_local):
    from bayestensor.dynamics.compare import compare
    from bayestensor.dynamics.studies import FactorizationLearner, FactorizationProblem

    problem = FactorizationProblem(rank=4, r=2)
    learners = [FactorizationLearner("gd", steps=200), FactorizationLearner("fa", steps=200)]
    a = compare(problem, learners, seeds=10, progress=False)
    b = compare(problem, learners, seeds=10, progress=False, backend="ray")
    for name in a.dataset.data_vars:
        assert a.dataset[name].equals(b.dataset[name]), name


def _dies_once(task):
    marker = task["marker"]
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)  # the worker process dies: Ray must retry the task
    return task["x"] * 2


def _always_fails(task):
    raise RuntimeError(f"bad task {task['x']}")


def test_killed_task_is_retried_and_failures_are_reported(ray_local, tmp_path):
    tasks = {i: {"x": i, "marker": str(tmp_path / f"m{i}")} for i in range(3)}
    res = run_tasks(_dies_once, tasks, backend="ray", retries=2, progress=False)
    assert res.results == {0: 0, 1: 2, 2: 4} and not res.failed
    bad = run_tasks(_always_fails, {"k": {"x": 1}}, backend="ray", retries=1, progress=False,
                    out=tmp_path / "bad.jsonl")
    assert "bad task 1" in bad.failed["k"]
    row = json.loads((tmp_path / "bad.jsonl").read_text())
    assert row["status"] == "failed"


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(0, "chains", 1) == derive_seed(0, "chains", 1)
    assert len({derive_seed(0, "chains", g) for g in range(100)}) == 100
    seeds = {group_seed(0, g) for g in range(100)}
    assert len(seeds) == 100 and all(0 <= s <= MAX_SEED for s in seeds)


def test_bad_backend_is_rejected():
    with pytest.raises(ValueError, match="backend"):
        run_tasks(_replicate, {}, backend="spark")
    with pytest.raises(ValueError, match="backend"):
        bt.fit(lambda: None, method="map", backend="dask")

"""Fixtures shared by the test modules."""

import contextlib
import os
import signal

import pytest


def pytest_configure(config):
    """Under pytest-xdist, each worker takes an equal share of the cores for PyTorch and the
    BLAS numpy uses, and passes it on to the processes it starts: two workers on two cores
    with two threads each would oversubscribe them, which slows BLAS-bound steps many times
    over."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers:
        return
    import threadpoolctl
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    share = max(1, (cores or 1) // int(workers))
    os.environ["OMP_NUM_THREADS"] = str(share)
    torch.set_num_threads(share)
    threadpoolctl.threadpool_limits(share)


@pytest.fixture
def interrupted_at():
    """``interrupted_at(sampler_cls, at_step, how="keyboard")``: a context in which the
    sampler's ``step`` raises ``KeyboardInterrupt`` at step ``at_step`` (after sending this
    process SIGTERM with ``how="sigterm"``), as a user's Ctrl-C or a scheduler would."""

    @contextlib.contextmanager
    def patch(sampler_cls, at_step: int, how: str = "keyboard"):
        original = sampler_cls.step

        def step(self, state, t, **kwargs):
            if t == at_step:
                if how == "sigterm":
                    os.kill(os.getpid(), signal.SIGTERM)
                raise KeyboardInterrupt
            return original(self, state, t, **kwargs)

        with pytest.MonkeyPatch.context() as m:
            m.setattr(sampler_cls, "step", step)
            yield

    return patch

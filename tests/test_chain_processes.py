"""NUTS chains in worker processes: the same draws as one after another, interrupts keep the
finished chains, and the number of workers follows the platform and the device."""

import multiprocessing
import os
import subprocess
import sys
import threading
from concurrent.futures.process import BrokenProcessPool

import pyro
import pyro.distributions as dist
import pytest
import torch
from tqdm.auto import tqdm

import bayestensor as bt
from bayestensor.infer import baselines, chain_processes
from bayestensor.infer.chain_processes import ChainsInterrupted, chain_workers, run_chains

needs_fork = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="chains run in forked processes on Linux only")


def _draw(chain: int):
    """A chain's 'draws' from a generator seeded by the chain, as NUTS seeds its chains."""
    gen = torch.Generator().manual_seed(100 + chain)
    return torch.randn(5, generator=gen).numpy()


def _model():
    pyro.sample("w", dist.Normal(torch.zeros(3), torch.tensor([1.0, 2.0, 0.5])).to_event(1))


@needs_fork
def test_workers_return_the_sequential_results_in_chain_order():
    one = run_chains(_draw, 5, workers=1)
    two = run_chains(_draw, 5, workers=2)
    assert len(two) == 5
    for a, b in zip(one, two):
        assert (a == b).all()
    assert not multiprocessing.active_children()


@needs_fork
def test_workers_that_finished_every_chain_exit_without_being_killed(monkeypatch):
    # an idle worker holds the pool's queue lock: killing it would leave the lock taken
    killed = []
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "terminate",
                        lambda process: killed.append(process.pid))
    assert len(run_chains(_draw, 5, workers=2)) == 5
    assert killed == []
    assert not multiprocessing.active_children()


_SIGTERM_AT_FORK = """
import os, signal, time
from concurrent.futures.process import BrokenProcessPool
from bayestensor.infer.chain_processes import run_chains

def term_self():  # a SIGTERM that reaches a worker while it runs Python's fork hooks
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)

os.register_at_fork(after_in_child=term_self)
try:
    run_chains(abs, 2, workers=2)
    print("worker outlived its SIGTERM")
except BrokenProcessPool:
    print("worker ended by its SIGTERM")
"""


@needs_fork
def test_a_sigterm_reaching_a_worker_before_it_set_its_handlers_ends_it():
    # the parent's handler, inherited, raises KeyboardInterrupt in the fork hook, where
    # Python discards it: the signal must wait, blocked, until the worker's own handling
    done = subprocess.run([sys.executable, "-c", _SIGTERM_AT_FORK], capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.strip() == "worker ended by its SIGTERM", done.stderr


def _takes_progress_lock(chain) -> bool:
    """Whether a progress bar's lock can be taken here within 5 s (as Pyro's MCMC does for
    the bar it makes in every chain; a lock that is never released would hang it)."""
    lock = tqdm.get_lock()
    locks = getattr(lock, "locks", [lock])  # tqdm's default lock is a thread and a process lock
    taken = [part.acquire(timeout=5) for part in locks]
    for part, ok in zip(locks, taken):
        if ok:
            part.release()
    return all(taken)


@needs_fork
def test_a_worker_does_not_wait_on_a_progress_lock_held_at_the_fork():
    # tqdm's monitor thread holds this lock for a moment every 10 s; fork at such a moment
    lock, held, release = tqdm.get_lock(), threading.Event(), threading.Event()

    def hold():
        with lock:
            held.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:
        taken = run_chains(_takes_progress_lock, 2, workers=2)
    finally:
        release.set()
        holder.join()
    assert taken == [True, True]
    assert _takes_progress_lock(0)  # the parent's own lock is untouched and free again


@needs_fork
def test_interrupt_in_the_parent_stops_the_workers_and_keeps_finished_chains():
    def stop_after_first(chain):
        raise KeyboardInterrupt

    with pytest.raises(ChainsInterrupted) as err:
        run_chains(_draw, 4, workers=2, on_done=stop_after_first)
    assert len(err.value.done) == 1
    (chain, result), = err.value.done.items()
    assert (result == _draw(chain)).all()
    assert not multiprocessing.active_children()
    assert chain_processes._RUN_ONE is None


@needs_fork
def test_the_executors_own_terminate_workers_is_used_where_it_exists(monkeypatch):
    """Python 3.14 gives ProcessPoolExecutor a public terminate_workers; _stop calls it on an
    interrupt instead of reaching into the pool's processes, and not after a finished run.
    (Emulated by a subclass: this machine has no Python 3.14.)"""
    calls = []

    class WithTerminate(chain_processes.ProcessPoolExecutor):
        def terminate_workers(self):
            calls.append(len(self._processes))
            for process in self._processes.values():
                process.terminate()

    monkeypatch.setattr(chain_processes, "ProcessPoolExecutor", WithTerminate)

    def stop_after_first(chain):
        raise KeyboardInterrupt

    with pytest.raises(ChainsInterrupted) as err:
        run_chains(_draw, 4, workers=2, on_done=stop_after_first)
    assert calls == [2] and len(err.value.done) == 1
    assert not multiprocessing.active_children()
    assert len(run_chains(_draw, 3, workers=2)) == 3 and calls == [2]


@needs_fork
def test_a_failing_or_dying_worker_raises_instead_of_waiting():
    def fails(chain):
        if chain == 1:
            raise ValueError("chain 1 failed")
        return _draw(chain)

    def dies(chain):
        if chain == 1:
            os._exit(1)
        return _draw(chain)

    with pytest.raises(ValueError, match="chain 1 failed"):
        run_chains(fails, 3, workers=2)
    with pytest.raises(BrokenProcessPool):
        run_chains(dies, 3, workers=2)
    assert not multiprocessing.active_children()


def test_interrupt_of_a_sequential_run_keeps_the_chains_before_it():
    def run_one(chain):
        if chain == 2:
            raise KeyboardInterrupt
        return _draw(chain)

    with pytest.raises(ChainsInterrupted) as err:
        run_chains(run_one, 4, workers=1)
    assert sorted(err.value.done) == [0, 1]


def test_worker_count_follows_platform_device_and_chains(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(chain_processes, "available_cores", lambda: 2)
    monkeypatch.setattr(sys, "platform", "linux")
    assert chain_workers("auto", 4, cpu) == 2
    assert chain_workers("auto", 1, cpu) == 1
    assert chain_workers(8, 3, cpu) == 3
    assert chain_workers(1, 4, cpu) == 1
    assert chain_workers("auto", 4, torch.device("cuda")) == 1
    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True)
    assert chain_workers("auto", 4, cpu) == 1
    monkeypatch.undo()
    monkeypatch.setattr(sys, "platform", "darwin")
    assert chain_workers("auto", 4, cpu) == 1


@needs_fork
def test_nuts_draws_in_workers_equal_a_one_thread_sequential_run():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a worker's, so the sums round alike
    try:
        runs = [bt.fit(_model, method="nuts", num_chains=3, num_samples=40, num_warmup=40,
                       max_tree_depth=4, seed=3, progress=False, processes=p) for p in (1, 2)]
    finally:
        torch.set_num_threads(threads)
    assert runs[0].info["nuts_processes"] == 1 and runs[1].info["nuts_processes"] == 2
    assert torch.equal(runs[0]["w"], runs[1]["w"])
    assert runs[0]["w"].shape[:2] == (3, 40)
    assert runs[0].info["acceptance_rate"] == runs[1].info["acceptance_rate"]


def test_interrupted_nuts_returns_the_finished_chains(monkeypatch):
    def two_then_interrupt(run_one, num_chains, *, workers, on_done=None):
        raise ChainsInterrupted({0: run_one(0), 1: run_one(1)})

    monkeypatch.setattr(baselines, "run_chains", two_then_interrupt)
    with pytest.raises(bt.RunInterrupted, match="2 of 4 chains finished") as err:
        bt.fit(_model, method="nuts", num_chains=4, num_samples=30, num_warmup=30,
               max_tree_depth=4, seed=1, progress=False)
    post = err.value.posterior
    assert post["w"].shape[:2] == (2, 30)
    assert post.info["chains_finished"] == [0, 1]
    assert torch.isfinite(post.sample_stats["potential"]).all()


def test_interrupted_nuts_before_any_chain_has_no_posterior(monkeypatch):
    def interrupt_at_once(run_one, num_chains, *, workers, on_done=None):
        raise ChainsInterrupted({})

    monkeypatch.setattr(baselines, "run_chains", interrupt_at_once)
    with pytest.raises(bt.RunInterrupted, match="0 of 2 chains") as err:
        bt.fit(_model, method="nuts", num_chains=2, num_samples=10, num_warmup=10,
               progress=False)
    assert err.value.posterior is None


@pytest.mark.parametrize("bad", [0, -1, 1.5, "two", True])
def test_processes_option_is_checked_before_any_work(bad):
    with pytest.raises(ValueError, match="processes: expected 'auto' or an integer >= 1"):
        bt.fit(_model, method="nuts", processes=bad, progress=False)

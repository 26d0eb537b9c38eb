"""Independent chains in forked worker processes, each seeded as in a sequential run.

A NUTS chain (:func:`~bayestensor.infer.baselines.nuts_fit`) is a Python loop of small tensor
operations that one core runs at full speed, so four chains in one process take four times
one. Here chain ``c`` runs ``run_one(c)`` in one of ``workers`` processes forked from this
one, so four chains take about one chain's time on four cores, and every chain seeds itself
as in the sequential run. A worker computes with one thread, so its draws
equal those of a sequential run with one thread; a sequential run with more threads sums in
another order, and its chains drift apart from the workers' after some steps (other draws
from the same distribution).

Why by hand: Pyro's ``MCMC`` runs chains in parallel only when there are more cores than
chains (never for 4 chains on 2-4 cores), seeds its workers differently from its sequential
runs, and ships every draw through a queue. ``concurrent.futures.ProcessPoolExecutor`` does
the work here (a worker that dies, e.g. out of memory, raises ``BrokenProcessPool`` instead
of leaving the run waiting); what this module adds is the rules:

* **fork, one thread per worker.** The chain function closes over a Pyro model and its data,
  which need not pickle; a forked worker inherits it (:data:`_RUN_ONE`). A forked process must
  not start torch's OpenMP threads again after its parent used them (GNU OpenMP then hangs),
  so every worker runs one thread. Fork is used on Linux only, where it is Python's default:
  macOS's system libraries are not fork-safe and Windows has no fork. Other platforms,
  accelerators and one worker run the chains in this process, in order.
* **Interrupts keep finished chains.** Ctrl-C or SIGTERM stops the workers and raises
  :class:`ChainsInterrupted` carrying the results of the chains that finished.
* Workers ignore SIGINT: the parent decides, and stops them.
* **Only an interrupted run kills its workers.** An idle worker waits for work holding the
  pool's queue lock, so one killed leaves the lock taken for good and any worker still alive
  waits on it forever (and the pool's shutdown with it); when every chain has finished the
  workers are told to end and exit on their own.
* **Workers are forked with SIGINT and SIGTERM blocked** and unblock them once the parent's
  handlers are replaced. A SIGTERM arriving before then would otherwise meet the inherited
  handler, whose ``KeyboardInterrupt`` Python discards when it is raised in a fork hook:
  that worker would outlive the signal meant to stop it.
* Workers take a progress-bar lock of their own: the one a fork copies may be held by a thread
  of the parent (tqdm's monitor), and would then never be released in the worker.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable

import torch

from bayestensor.infer.interrupts import sigterm_as_interrupt

#: The chain function of the run in progress, set before the workers are forked: forked
#: workers inherit it, where a closure could not be pickled to them.
_RUN_ONE: Callable[[int], Any] | None = None


class ChainsInterrupted(KeyboardInterrupt):
    """Chains stopped by Ctrl-C or SIGTERM; ``.done`` maps each finished chain to its result.

    Parameters
    ----------
    done : dict
        ``{chain: result}`` of the chains that finished before the interrupt.
    """

    def __init__(self, done: dict):
        super().__init__(f"interrupted with {len(done)} chain(s) finished")
        self.done = dict(done)
        #: What the caller made of ``done`` (``nuts_fit``: draws and diagnostics), if anything.
        self.partial = None


def available_cores() -> int:
    """CPU cores this process may run on (its affinity where the platform says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def chain_workers(processes, num_chains: int, device: torch.device) -> int:
    """Worker processes for ``num_chains`` chains: ``processes`` (``"auto"``: one per chain,
    at most one per core), 1 where forking is not safe (not Linux, or not on the CPU) or not
    allowed (inside a daemonic process, such as a ``multiprocessing.Pool`` worker).

    Parameters
    ----------
    processes : "auto" or int
        What the caller asked for (an int >= 1 is taken as a ceiling).
    num_chains : int
        Chains to run.
    device : torch.device
        Where the chains compute.

    Returns
    -------
    int
        Between 1 and ``num_chains``.
    """
    if (not sys.platform.startswith("linux") or device.type != "cpu"
            or multiprocessing.current_process().daemon):  # a daemon may not have children
        return 1
    wanted = available_cores() if processes == "auto" else int(processes)
    return max(1, min(wanted, num_chains))


#: Signals held back while workers are forked, until each worker has set its own handling.
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _start_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handler is inherited
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked at the fork
    torch.set_num_threads(1)
    _own_progress_lock()


def _own_progress_lock() -> None:
    """Give this forked worker a tqdm lock of its own.

    tqdm guards every bar with one class-level lock, which its monitor thread takes every ten
    seconds in the parent (and any other thread drawing a bar takes too). A fork copies that
    lock as it is: held by another thread at that moment, it stays held in the worker for good,
    and the worker's first bar (Pyro's MCMC makes one per chain, even disabled) waits on it
    forever, at no CPU. A worker draws no bars of its own, so its own lock loses nothing.
    """
    from tqdm.std import tqdm

    lock = threading.RLock()
    classes = [tqdm]
    while classes:  # tqdm.auto's and other subclasses may hold a lock of their own
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        if cls is tqdm or "_lock" in vars(cls):
            cls.set_lock(lock)


def _run_in_worker(chain: int):
    return chain, _RUN_ONE(chain)


def run_chains(run_one: Callable[[int], Any], num_chains: int, *, workers: int = 1,
               on_done: Callable[[int], None] | None = None) -> list:
    """``[run_one(c) for c in range(num_chains)]``, in ``workers`` forked processes.

    Parameters
    ----------
    run_one : callable
        ``run_one(chain) -> result``; the result must pickle when ``workers > 1`` (return
        NumPy arrays and plain values, not tensors, which torch would share through files).
    num_chains : int
        Chains to run.
    workers : int
        Processes; 1 runs the chains here, in order.
    on_done : callable, optional
        Called in this process with each chain's index as it finishes.

    Returns
    -------
    list
        The results in chain order.

    Raises
    ------
    ChainsInterrupted
        On Ctrl-C or SIGTERM, after stopping the workers; it holds the finished chains.
    """
    global _RUN_ONE
    done: dict = {}
    try:
        with sigterm_as_interrupt():
            if workers <= 1:
                for chain in range(num_chains):
                    done[chain] = run_one(chain)
                    if on_done is not None:
                        on_done(chain)
            else:
                _RUN_ONE = run_one
                pool = ProcessPoolExecutor(workers, multiprocessing.get_context("fork"),
                                           initializer=_start_worker)
                try:
                    futures = _submit_all(pool, num_chains)
                    for future in as_completed(futures):
                        chain, result = future.result()
                        done[chain] = result
                        if on_done is not None:
                            on_done(chain)
                finally:
                    _stop(pool, finished=len(done) == num_chains)
                    _RUN_ONE = None
    except KeyboardInterrupt:
        raise ChainsInterrupted(done) from None
    return [done[chain] for chain in range(num_chains)]


def _submit_all(pool: ProcessPoolExecutor, num_chains: int) -> list:
    """Submit every chain; the first submit forks the workers, with SIGINT and SIGTERM
    blocked in this thread meanwhile (a signal then arrives once they are unblocked)."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        return [pool.submit(_run_in_worker, c) for c in range(num_chains)]
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _stop(pool: ProcessPoolExecutor, finished: bool) -> None:
    """Shut the pool down. When chains are left (an interrupt, or a chain that raised), first
    end the running ones: ``terminate_workers`` where the executor has it (Python 3.14+),
    else each worker process (``_processes``: before 3.14 no public call ends a running task);
    the shutdown then cancels those not started. When all finished, the idle workers exit on
    the pool's own signal, since killing one would leave the queue lock it holds taken."""
    if not finished:
        terminate = getattr(pool, "terminate_workers", None)
        if terminate is not None:
            terminate()
        else:
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                if process.is_alive():
                    process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)

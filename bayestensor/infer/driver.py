"""The loop every iterative method shares: progress, checkpoints, interrupts, divergence.

A method provides ``step(state, t) -> state`` and what to record; the runner owns the rest:

* a tqdm progress bar (``progress=False`` silences it);
* a checkpoint every ``checkpoint_every`` recorded draws (atomic write: a synced temp file
  renamed), holding the sampler state, the draws so far and the random generator's state, so
  that ``resume=PATH`` continues exactly where the run stopped. A checkpoint holds tensors,
  numbers, strings and plain containers only (states go in through their ``to_dict``), and is
  read back with :func:`bayestensor.io.load_tensors`, which never unpickles code;
* KeyboardInterrupt and SIGTERM: the checkpoint is written and :class:`RunInterrupted` is
  raised carrying a ``Posterior`` of every draw made so far;
* a non-finite log density: :class:`DivergenceError` says at which step and which sites, and
  carries the draws so far.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from bayestensor.io import load_tensors, save_tensors

#: On an accelerator, reading the finiteness flag synchronizes the device: check every so many
#: steps (and at the last one) instead of every step.
FINITE_CHECK_EVERY = 25


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by the user (Ctrl-C or SIGTERM); ``.posterior`` holds the draws so far."""

    def __init__(self, message: str, posterior=None, checkpoint: str | None = None):
        super().__init__(message)
        self.posterior = posterior
        self.checkpoint = checkpoint


class DivergenceError(RuntimeError):
    """The log density became NaN/inf; ``.posterior`` holds the draws made before."""

    def __init__(self, message: str, posterior=None, checkpoint: str | None = None):
        super().__init__(message)
        self.posterior = posterior
        self.checkpoint = checkpoint


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Turn SIGTERM into KeyboardInterrupt while the loop runs (main thread only)."""
    try:
        previous = signal.getsignal(signal.SIGTERM)

        def handler(signum, frame):
            raise KeyboardInterrupt("SIGTERM")

        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not in the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` (tensors, numbers, strings, plain containers) atomically."""
    save_tensors(path, payload)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`, running no code from the file.

    Raises
    ------
    ValueError
        Naming ``resume`` when the file is missing, unreadable or holds anything but tensors
        and plain values.
    """
    payload = load_tensors(path, what="resume")
    if not isinstance(payload, dict) or not {"state", "t", "draws", "rng"} <= set(payload):
        raise ValueError(f"resume: {str(path)!r} is not a bayestensor checkpoint")
    return payload


def _to_device(obj, device: torch.device):
    """Tensors inside plain dicts and lists moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    return obj


class Run:
    """Drive ``step`` for ``num_steps`` steps, recording draws, with checkpoints.

    Parameters
    ----------
    step : callable
        ``step(state, t) -> (state, log_density)``; ``log_density`` is ``(C,)``.
    record : callable
        ``record(state, t) -> dict or None``: values to keep at step ``t`` (``None`` to skip).
    num_steps : int
        Total number of steps (including those already done when resuming).
    make_posterior : callable
        ``make_posterior(draws: list of dict, info) -> Posterior``.
    describe_nonfinite : callable
        ``describe_nonfinite(state) -> str`` for the divergence message.
    generator : torch.Generator
        The method's random generator (its state goes into checkpoints).
    state_type : type
        The class of the sampler state, with ``to_dict()`` (tensors and numbers) and
        ``from_dict(values)``: checkpoints hold the dict, never the object.
    checkpoint, checkpoint_every, progress, desc, config
        Checkpoint path, draws between checkpoints, progress bar on/off, its label, and the
        settings saved with the checkpoint (checked on resume).
    save_per_step : bool
        Count ``checkpoint_every`` in steps instead of recorded draws (SVGD, which records
        only its final particles).
    """

    def __init__(self, step: Callable, record: Callable, num_steps: int, make_posterior: Callable,
                 describe_nonfinite: Callable, generator: torch.Generator, state_type: type, *,
                 checkpoint=None, checkpoint_every: int = 100, progress: bool = True,
                 desc: str = "", config: dict | None = None, save_per_step: bool = False):
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every: expected a positive integer, got {checkpoint_every}")
        self.step, self.record = step, record
        self.num_steps = int(num_steps)
        self.make_posterior = make_posterior
        self.describe_nonfinite = describe_nonfinite
        self.generator = generator
        self.state_type = state_type
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.checkpoint_every = int(checkpoint_every)
        self.progress = progress
        self.desc = desc
        self.config = dict(config or {})
        self.save_per_step = bool(save_per_step)

    def _payload(self, state, t: int, draws: list) -> dict[str, Any]:
        return {"state": state.to_dict(), "t": t, "draws": draws, "config": self.config,
                "rng": self.generator.get_state()}

    def _diverged(self, new_state, logp, t, good, draws, info):
        """Keep what was drawn up to the last finite state, checkpoint it, and raise."""
        bad = (~torch.isfinite(logp)).nonzero().flatten().tolist()
        where = self.describe_nonfinite(new_state)
        good_state, good_t, n_good = good
        del draws[n_good:]
        self._save(good_state, good_t, draws)
        info.update(diverged_at_step=t, diverged_chains=bad)
        raise DivergenceError(
            f"{self.desc}: log density is not finite at step {t} for chains {bad} ({where}); "
            f"kept {len(draws)} draws" + (f", checkpoint at {self.checkpoint}" if self.checkpoint else "")
            + ". Lower the learning rate or check the model.",
            self.make_posterior(draws, info) if draws else None, self.checkpoint)

    def _save(self, state, t, draws):
        if self.checkpoint is not None:
            save_checkpoint(self.checkpoint, self._payload(state, t, draws))

    def resume_from(self, path) -> tuple[Any, int, list]:
        """State, next step and draws from a checkpoint, after checking its settings match."""
        payload = load_checkpoint(path)
        saved = payload.get("config", {})
        for key in ("method", "num_chains", "dim"):
            if key in saved and key in self.config and saved[key] != self.config[key]:
                raise ValueError(f"resume: checkpoint has {key}={saved[key]!r} but this run has "
                                 f"{key}={self.config[key]!r}")
        self.generator.set_state(payload["rng"])
        device = self.generator.device  # files are read onto the CPU; the run may live elsewhere
        state = self.state_type.from_dict(_to_device(payload["state"], device))
        return state, int(payload["t"]), _to_device(list(payload["draws"]), device)

    def run(self, state, start: int = 0, draws: list | None = None, info: dict | None = None):
        """Run from step ``start`` to ``num_steps``; return the posterior."""
        draws = list(draws or [])
        info = dict(info or {})
        since_save = 0
        t = start
        # Last state known to be finite, with its step and draw count: on an accelerator the
        # finiteness flag is read only every few steps, and a divergence found there rolls back
        # to this point so that no non-finite draw is kept or checkpointed.
        good = (state, t, len(draws))
        bar = tqdm(total=self.num_steps, initial=start, desc=self.desc, disable=not self.progress,
                   leave=False, dynamic_ncols=True)
        try:
            with _sigterm_as_interrupt():
                while t < self.num_steps:
                    new_state, logp = self.step(state, t)
                    check = (logp.device.type == "cpu" or t % FINITE_CHECK_EVERY == 0
                             or t == self.num_steps - 1)
                    if check:
                        if not bool(torch.isfinite(logp).all()):
                            self._diverged(new_state, logp, t, good, draws, info)
                        good = (state, t, len(draws))
                    state = new_state
                    t += 1
                    rec = self.record(state, t - 1)
                    if rec is not None:
                        draws.append(rec)
                    since_save += 1 if (rec is not None or self.save_per_step) else 0
                    if since_save >= self.checkpoint_every:
                        self._save(state, t, draws)
                        since_save = 0
                    bar.update(1)
        except KeyboardInterrupt as err:
            if isinstance(err, RunInterrupted):
                raise
            self._save(state, t, draws)
            info.update(interrupted_at_step=t)
            raise RunInterrupted(
                f"{self.desc}: interrupted at step {t} with {len(draws)} draws kept"
                + (f"; resume with resume={self.checkpoint!r}" if self.checkpoint else ""),
                self.make_posterior(draws, info) if draws else None, self.checkpoint) from None
        finally:
            bar.close()
        self._save(state, t, draws)
        return self.make_posterior(draws, info)

"""The loop every iterative method shares: progress, checkpoints, interrupts, divergence.

A method provides ``step(state, t) -> state`` and what to record; the runner owns the rest:

* a tqdm progress bar (``progress=False`` silences it);
* a checkpoint every ``checkpoint_every`` recorded draws (at most one per
  ``MIN_CHECKPOINT_SECONDS``), holding the sampler state, the
  draws so far and the random generator's state, so that ``resume=PATH`` continues exactly
  where the run stopped; the draws are appended, not rewritten (the file layout, the run's
  fingerprint checked on resume and the atomic writes are in
  :mod:`bayestensor.infer.checkpoints`). A checkpoint holds tensors, numbers, strings and plain
  containers only (states go in through their ``to_dict``) and is read without unpickling code;
* KeyboardInterrupt and SIGTERM: the checkpoint is written and :class:`RunInterrupted` is
  raised carrying a ``Posterior`` of what the run reached (SGHMC's draws so far, SVGD's
  current particles);
* a non-finite log density: :class:`DivergenceError` says at which step and which sites, and
  carries the draws so far.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from bayestensor.infer.checkpoints import CheckpointWriter, read_checkpoint
from bayestensor.infer.interrupts import sigterm_as_interrupt

#: On an accelerator, reading the finiteness flag synchronizes the device: check every so many
#: steps (and at the last one) instead of every step.
FINITE_CHECK_EVERY = 25
#: Checkpoints due sooner than this after the previous one wait for the next due one: a synced
#: write costs milliseconds on most disks, which would dominate a run of millisecond steps
#: checkpointed at every draw. Interrupts, divergences and the end of the run always write.
MIN_CHECKPOINT_SECONDS = 1.0


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by the user (Ctrl-C or SIGTERM); ``.posterior`` holds the draws so far.

    Raised by the run driver after it has written the checkpoint (when the run has one). It
    is a ``KeyboardInterrupt``, so code that does not catch it stops as on a plain Ctrl-C.

    Parameters
    ----------
    message : str
        What stopped and where: the step, the number of draws kept and, with a checkpoint,
        the ``resume=`` argument that continues the run.
    posterior : Posterior, optional
        What the run reached: SGHMC's draws so far (``None`` when none was kept yet), SVGD's
        current particles.
    checkpoint : str, optional
        Path of the checkpoint written on the way out; ``None`` when the run had none.

    Attributes
    ----------
    posterior : Posterior or None
        As passed.
    checkpoint : str or None
        As passed.
    """

    def __init__(self, message: str, posterior=None, checkpoint: str | None = None):
        super().__init__(message)
        self.posterior = posterior
        self.checkpoint = checkpoint


class DivergenceError(RuntimeError):
    """The log density became NaN/inf; ``.posterior`` holds the draws made before.

    Raised by the run driver, which first rolls back to the last state whose log density was
    known to be finite, drops the draws recorded after it and writes the checkpoint there
    (when the run has one).

    Parameters
    ----------
    message : str
        The step and chains where the log density stopped being finite, which sites hold
        non-finite values (if any), the number of draws kept and, with a checkpoint, its path.
    posterior : Posterior, optional
        The draws kept (``None`` when there are none).
    checkpoint : str, optional
        Path of the checkpoint written at the last finite state; ``None`` when the run had
        none.

    Attributes
    ----------
    posterior : Posterior or None
        As passed.
    checkpoint : str or None
        As passed.
    """

    def __init__(self, message: str, posterior=None, checkpoint: str | None = None):
        super().__init__(message)
        self.posterior = posterior
        self.checkpoint = checkpoint


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
        ``make_posterior(draws: list of dict, info, state) -> Posterior or None``: the
        posterior of the draws kept and the current state (``None`` when there is nothing
        to report yet).
    describe_nonfinite : callable
        ``describe_nonfinite(state) -> str`` for the divergence message.
    generator : torch.Generator
        The method's random generator (its state goes into checkpoints).
    state_type : type
        The class of the sampler state, with ``to_dict()`` (tensors and numbers) and
        ``from_dict(values)``: checkpoints hold the dict, never the object.
    checkpoint, checkpoint_every, progress, desc
        Checkpoint path, draws between checkpoints, progress bar on/off, its label.
    config : dict
        The run's fingerprint (data digest, seed, sizes, settings: plain values), saved with
        each checkpoint; a resume from a checkpoint with another fingerprint is refused.
    save_per_step : bool
        Count ``checkpoint_every`` in steps instead of recorded draws (SVGD, which records
        only its final particles).
    extend : callable, optional
        ``extend(draws, state) -> int``, asked each time the run reaches its last step: the
        further steps to run (0 ends the run). SGHMC uses it to draw until its chains pass
        their convergence check (``max_samples``).
    """

    def __init__(self, step: Callable, record: Callable, num_steps: int, make_posterior: Callable,
                 describe_nonfinite: Callable, generator: torch.Generator, state_type: type, *,
                 checkpoint=None, checkpoint_every: int = 100, progress: bool = True,
                 desc: str = "", config: dict | None = None, save_per_step: bool = False,
                 extend: Callable | None = None):
        self.step, self.record = step, record
        self.extend = extend
        self.num_steps = int(num_steps)
        self.make_posterior = make_posterior
        self.describe_nonfinite = describe_nonfinite
        self.generator = generator
        self.state_type = state_type
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.config = dict(config or {})
        self.writer = None if checkpoint is None else CheckpointWriter(checkpoint, self.config)
        self.checkpoint_every = int(checkpoint_every)
        self.progress = progress
        self.desc = desc
        self.save_per_step = bool(save_per_step)

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
            self.make_posterior(draws, info, good_state), self.checkpoint)

    def _save(self, state, t, draws):
        if self.writer is not None:
            self.writer.save(state.to_dict(), t, self.generator.get_state(), draws)

    def resume_from(self, path) -> tuple[Any, int, list]:
        """State, next step and draws from a checkpoint of this run (same fingerprint).

        When the run checkpoints to the file it resumes from, it goes on appending to it.
        """
        saved = read_checkpoint(path, self.config)
        if self.writer is not None and Path(path).resolve() == self.writer.path.resolve():
            self.writer.chunks = list(saved["chunks"])
        self.generator.set_state(saved["rng"])
        device = self.generator.device  # files are read onto the CPU; the run may live elsewhere
        state = self.state_type.from_dict(_to_device(saved["state"], device))
        return state, int(saved["t"]), _to_device(saved["draws"], device)

    def _extended(self, draws, state, bar, t: int) -> bool:
        """At step ``t``, the last one (or past it, on resuming an extended run): ask
        ``extend`` for more steps and run that many more from ``t``."""
        more = 0 if self.extend is None else int(self.extend(draws, state))
        if more > 0:
            self.num_steps = t + more
            bar.total = self.num_steps
            bar.refresh()
        return more > 0

    def run(self, state, start: int = 0, draws: list | None = None, info: dict | None = None):
        """Run from step ``start`` to ``num_steps``; return the posterior."""
        draws = list(draws or [])
        info = dict(info or {})
        since_save, last_save = 0, -math.inf
        t = start
        # Last state known to be finite, with its step and draw count: on an accelerator the
        # finiteness flag is read only every few steps, and a divergence found there rolls back
        # to this point so that no non-finite draw is kept or checkpointed.
        good = (state, t, len(draws))
        bar = tqdm(total=self.num_steps, initial=start, desc=self.desc, disable=not self.progress,
                   leave=False, dynamic_ncols=True)
        try:
            with sigterm_as_interrupt():
                while t < self.num_steps or self._extended(draws, state, bar, t):
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
                    if since_save >= self.checkpoint_every \
                            and time.monotonic() - last_save >= MIN_CHECKPOINT_SECONDS:
                        self._save(state, t, draws)
                        since_save, last_save = 0, time.monotonic()
                    bar.update(1)
        except KeyboardInterrupt as err:
            if isinstance(err, RunInterrupted):
                raise
            self._save(state, t, draws)
            info.update(interrupted_at_step=t)
            raise RunInterrupted(
                f"{self.desc}: interrupted at step {t} with {len(draws)} draws kept"
                + (f"; resume with resume={self.checkpoint!r}" if self.checkpoint else ""),
                self.make_posterior(draws, info, state), self.checkpoint) from None
        finally:
            bar.close()
        self._save(state, t, draws)
        if self.writer is not None:
            self.writer.remove_stale_draw_files()
        return self.make_posterior(draws, info, state)

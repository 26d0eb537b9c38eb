"""Checkpoint files of the iterative methods: the state rewritten, the draws appended.

A checkpoint at ``PATH`` is one main file plus draw files beside it:

* ``PATH`` holds the sampler state, the next step, the random generator's state, the run's
  fingerprint (``config``), the sizes of the draw files so far and the newest draws (the
  *tail*, stacked). It is rewritten at every checkpoint.
* ``PATH.draws-000000``, ``PATH.draws-000001``, ... hold earlier draws, stacked, each
  written once: when the tail grows past ``TAIL_BYTES`` it moves into the next draw file.

A write therefore costs the state plus at most ``TAIL_BYTES`` of draws however long the run
(re-saving every draw at every checkpoint made a run's checkpoint cost grow with its square).
Every file is written by :func:`bayestensor.io.save_tensors` (a synced temporary file
renamed), a draw file before the main file that names it, so a kill at any moment leaves the
last complete checkpoint; a leftover ``.tmp`` is ignored on resume, with a warning. Every file
is read by :func:`bayestensor.io.load_tensors`, which runs no code from it.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from bayestensor.io import load_tensors, save_tensors

#: Version of the checkpoint layout above.
FORMAT = 2
#: The tail moves into a draw file once its tensors exceed this many bytes.
TAIL_BYTES = 1 << 20
#: Fingerprint entries compared first on resume (the usual mistakes), in this order; the
#: run's length ``num_steps`` follows from the last three, so a difference is named by them.
FIRST_COMPARED = ("data", "seed", "num_samples", "num_warmup", "thin")
#: Entries of every main checkpoint file.
REQUIRED = {"format", "state", "t", "rng", "config", "chunks", "tail", "tail_len"}


# --- paths, checked before any work -------------------------------------------------------------

def check_checkpoint_path(path) -> Path:
    """``path`` as a file the run can write: not a folder, in a folder that is (or can be
    created) writable."""
    try:
        path = Path(path)
    except TypeError:
        raise ValueError(f"checkpoint: expected a file path, got {path!r}") from None
    if path.is_dir():
        raise ValueError(f"checkpoint: {str(path)!r} is a folder; give a file path")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"checkpoint: cannot write {str(path)!r}: {str(folder)!r} is a file, "
                         "not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"checkpoint: cannot write {str(path)!r}: folder {str(folder)!r} is "
                         "not writable")
    return path


def check_resume_path(path) -> Path:
    """``path`` as an existing, readable file (its contents are checked when it is read)."""
    try:
        path = Path(path)
    except TypeError:
        raise ValueError(f"resume: expected a checkpoint file path, got {path!r}") from None
    if not path.is_file():
        raise ValueError(f"resume: checkpoint file {str(path)!r} does not exist")
    if not os.access(path, os.R_OK):
        raise ValueError(f"resume: checkpoint file {str(path)!r} is not readable")
    return path


def draw_file(path, index: int) -> Path:
    """The ``index``-th draw file of the checkpoint at ``path``."""
    path = Path(path)
    return path.with_name(f"{path.name}.draws-{index:06d}")


# --- the run's fingerprint -------------------------------------------------------------------

def _feed(h, value) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"tensor{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray):
        h.update(f"array{value.dtype}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, (list, tuple)):
        h.update(f"seq{len(value)}".encode())
        for v in value:
            _feed(h, v)
    elif isinstance(value, dict):
        for k in sorted(value, key=str):
            h.update(str(k).encode())
            _feed(h, value[k])
    elif value is None or isinstance(value, (bool, int, float, str, np.generic)):
        h.update(repr(value).encode())
    else:  # objects without a stable value (functions, modules): their type only
        h.update(type(value).__name__.encode())


def data_digest(*values) -> str:
    """A short hash of a run's data (tensors, arrays and plain values, nested)."""
    h = hashlib.sha256()
    for v in values:
        _feed(h, v)
    return h.hexdigest()[:32]


def check_same_run(path, saved: dict, config: dict) -> None:
    """Refuse a checkpoint whose fingerprint differs from this run's, naming what differs."""
    keys = [k for k in FIRST_COMPARED if k in config] + \
        [k for k in config if k not in FIRST_COMPARED]
    for key in keys:
        if key not in saved or saved[key] == config[key]:
            continue
        what = ("data: the checkpoint's run had other data" if key == "data" else
                f"{key}: the checkpoint has {saved[key]!r}, this run {config[key]!r}")
        raise ValueError(f"resume: {str(path)!r} is the checkpoint of another run ({what}); "
                         "resume with the data and settings it was written with")


# --- stacking draws ----------------------------------------------------------------------------

def stack_draws(draws: list[dict]) -> dict[str, torch.Tensor]:
    """Records ``[{name: tensor}]`` as ``{name: tensor (n, ...)}``."""
    return {k: torch.stack([d[k] for d in draws]) for k in draws[0]}


def unstack_draws(stacked: dict[str, torch.Tensor], n: int) -> list[dict]:
    """Inverse of :func:`stack_draws`."""
    return [{k: v[i] for k, v in stacked.items()} for i in range(n)]


def _nbytes(stacked: dict[str, torch.Tensor]) -> int:
    return sum(v.numel() * v.element_size() for v in stacked.values())


# --- writing and reading -----------------------------------------------------------------------

class CheckpointWriter:
    """Writes one run's checkpoints to ``path``.

    Parameters
    ----------
    path : path-like
    config : dict
        The run's fingerprint (plain values), checked on resume.
    chunks : sequence of int
        Draw counts of the draw files already written for this run at ``path`` (when a run
        resumes from and checkpoints to the same file).
    """

    def __init__(self, path, config: dict, chunks=()):
        self.path = Path(path)
        self.config = dict(config)
        self.chunks = list(chunks)

    def save(self, state: dict, t: int, rng: torch.Tensor, draws: list[dict]) -> None:
        """Write a checkpoint of ``state`` at step ``t`` with all ``draws`` so far."""
        while sum(self.chunks) > len(draws):  # draws rolled back past a draw file
            self.chunks.pop()
        tail = draws[sum(self.chunks):]
        stacked = stack_draws(tail) if tail else None
        if stacked is not None and _nbytes(stacked) > TAIL_BYTES:
            save_tensors(draw_file(self.path, len(self.chunks)), stacked)
            self.chunks.append(len(tail))
            stacked, tail = None, []
        save_tensors(self.path, {"format": FORMAT, "state": state, "t": int(t), "rng": rng,
                                 "config": self.config, "chunks": list(self.chunks),
                                 "tail": stacked, "tail_len": len(tail)})

    def remove_stale_draw_files(self) -> None:
        """Delete draw files of an earlier run at this path that this run's file does not name."""
        pattern = re.compile(re.escape(self.path.name) + r"\.draws-(\d{6})$")
        for name in glob.glob(glob.escape(str(self.path)) + ".draws-*"):
            match = pattern.search(name)
            if match and int(match.group(1)) >= len(self.chunks):
                os.remove(name)


def read_checkpoint(path, config: dict) -> dict:
    """Read the checkpoint at ``path`` after checking it belongs to the run ``config`` describes.

    Returns
    -------
    dict
        ``state`` (the state's dict), ``t``, ``rng``, ``draws`` (list of records) and ``chunks``
        (the draw files' sizes).

    Raises
    ------
    ValueError
        Naming ``resume``: a file that is missing, unreadable, not a bayestensor checkpoint
        or holding anything but tensors and plain values; a missing or damaged draw file; a
        checkpoint of another run (other data, seed, sizes or settings).
    """
    path = Path(path)
    _warn_leftovers(path)
    payload = load_tensors(path, what="resume")
    if not isinstance(payload, dict) or not REQUIRED <= set(payload):
        raise ValueError(f"resume: {str(path)!r} is not a bayestensor checkpoint (or one "
                         "written by an older version)")
    check_same_run(path, payload.get("config") or {}, config)
    draws = []
    for i, n in enumerate(payload["chunks"]):
        part = load_tensors(draw_file(path, i), what="resume")
        if not isinstance(part, dict) or any(len(v) != n for v in part.values()):
            raise ValueError(f"resume: draw file {draw_file(path, i).name!r} does not match "
                             f"its checkpoint {path.name!r} (expected {n} draws)")
        draws += unstack_draws(part, n)
    if payload["tail"] is not None:
        draws += unstack_draws(payload["tail"], payload["tail_len"])
    return {**payload, "draws": draws}


def _warn_leftovers(path: Path) -> None:
    """A ``.tmp`` beside the checkpoint is a write cut short; the checkpoint does not use it."""
    leftovers = [path.with_name(path.name + ".tmp")]
    leftovers += [Path(p) for p in glob.glob(glob.escape(str(path)) + ".draws-*.tmp")]
    for tmp in leftovers:
        if tmp.exists():
            warnings.warn(f"resume: ignoring {tmp.name!r}, left by a checkpoint write that was "
                          f"cut short; {path.name!r} holds the last complete checkpoint",
                          UserWarning, stacklevel=3)

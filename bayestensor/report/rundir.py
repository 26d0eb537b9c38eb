"""The run-directory convention: what a run saves so a report can be made later from it alone.

A run directory belongs to one run. :func:`prepare_run_dir` makes a new one (or empties one
that an earlier run made, on request) before any work starts, so files of two runs are never
mixed. Every run directory holds ``run.json``, written last::

    {"kind": "completion" | "regression" | "network" | "dynamics" | "model",
     "created": "<ISO 8601 time>",
     "versions": {"python", "bayestensor", "torch", "pyro", "numpy", "tensorly", "arviz"},
     "settings": {...},   # method, seed, format, max rank, sampler options, ...
     "data": {...},       # shape, number observed, observed fraction, ...
     "files": [...]}      # the files this run wrote; a report reads only these

and, where they apply:

* ``posterior.pt``: :meth:`bayestensor.Posterior.save`;
* ``posterior-interrupted.pt`` instead, for a run stopped by Ctrl-C or a divergence: the draws it
  had made, with ``settings["stopped"]`` saying what stopped it (see :func:`write_stopped_run`);
* ``heldout.npz``: held-out points: ``indices`` (completion, ``(n, ndim)``) or ``inputs``
  (regression), ``truth`` (noise-free values, or labels for a classifier) and, for completion,
  ``noisy`` (the noisy held-out observations the credible intervals are checked against);
* ``image.npz``: ``observed`` (NaN where missing) and optionally ``truth``, for image completion;
* ``network.json``: a compressed-network run (layers, ranks, ratios, metrics, reliability);
* ``results.json`` (+ PNGs, ``summary.md``): a dynamics study as ``bayestensor dynamics`` writes it.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import shutil
from pathlib import Path

import numpy as np

from bayestensor.io import atomic_write, to_jsonable, versions

RUN_FILE = "run.json"
#: Written into a run directory as soon as it is made: only such folders may be emptied.
MARKER_FILE = ".bayestensor-run"
#: ``"model"``: a posterior of a user's Pyro model (``bt.report`` of it).
KINDS = ("completion", "regression", "network", "dynamics", "model")
#: The posterior file of a run that was interrupted or diverged: the draws it had made.
PARTIAL_POSTERIOR = "posterior-interrupted.pt"


def timestamped_dir(parent, prefix: str) -> Path:
    """``parent/<prefix>-YYYYmmdd-HHMMSS`` (local time), the default folder of a new run.

    A second run in the same second gets ``-2``, ``-3``, ... appended: the folder returned
    does not exist yet.
    """
    base = Path(parent) / f"{prefix}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def prepare_run_dir(run_dir, *, force: bool = False) -> Path:
    """Make ``run_dir`` a new, empty run directory, before any fitting starts.

    Parameters
    ----------
    run_dir : path
        The folder. It must not exist, or be empty; with ``force``, a folder made earlier by
        this function (it holds the marker file) is emptied first.
    force : bool
        Empty a previous run's folder instead of refusing it.

    Returns
    -------
    Path
        ``run_dir``, existing and empty but for the marker file.

    Raises
    ------
    ValueError
        Naming ``out`` when the folder is a file, holds files and ``force`` is off, or holds
        files that no run of this package wrote (never deleted, even with ``force``).
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"out: {str(run_dir)!r} is a file, not a folder")
    contents = [p for p in run_dir.iterdir() if p.name != MARKER_FILE] if run_dir.is_dir() else []
    if contents and not force:
        raise ValueError(f"out: {str(run_dir)!r} is not empty; give a new folder, or --force to "
                         "empty a previous run's folder")
    if contents and not (run_dir / MARKER_FILE).exists():
        raise ValueError(f"out: {str(run_dir)!r} holds files that no bayestensor run wrote; "
                         "refusing to delete them, give a new folder")
    for path in contents:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / MARKER_FILE).touch()
    return run_dir


def discard_unused_run_dir(run_dir) -> None:
    """Remove ``run_dir`` when it holds nothing but the marker :func:`prepare_run_dir` left
    (a run refused before it wrote anything); leave it otherwise."""
    run_dir = Path(run_dir)
    if run_dir.is_dir() and [p.name for p in run_dir.iterdir()] == [MARKER_FILE]:
        (run_dir / MARKER_FILE).unlink()
        run_dir.rmdir()


def write_run(run_dir, kind: str, *, settings: dict | None = None, data: dict | None = None,
              files=None, created: str | None = None) -> Path:
    """Write ``run_dir/run.json``, after the run's other files.

    Parameters
    ----------
    run_dir : path
        The run directory (created when missing).
    kind : {"completion", "regression", "network", "dynamics", "model"}
    settings : dict, optional
        Method, seed, sampler options and everything else that defines the run.
    data : dict, optional
        Data summary: shape, number observed, observed fraction, ...
    files : sequence of str or path, optional
        The files this run wrote (paths inside ``run_dir`` or names); a report reads only
        these. Leave out only for a folder whose every file belongs to the run.
    created : str, optional
        ISO time (default: now, UTC).

    Returns
    -------
    Path
        The written file.

    Examples
    --------
    >>> import tempfile
    >>> p = write_run(tempfile.mkdtemp(), "completion", settings={"method": "map"})
    >>> read_run(p.parent)["kind"]
    'completion'
    """
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    run_dir = Path(run_dir)
    payload = {"kind": kind,
               "created": created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "versions": versions(), "settings": to_jsonable(settings or {}),
               "data": to_jsonable(data or {})}
    if files is not None:
        payload["files"] = sorted({_relative(run_dir, f) for f in files})
    return atomic_write(run_dir / RUN_FILE, json.dumps(payload, indent=2))


def _relative(run_dir: Path, path) -> str:
    path = Path(path)
    inside = path.is_absolute() or path.parts[:len(run_dir.parts)] == run_dir.parts
    full = path if inside else run_dir / path
    try:
        return full.resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        raise ValueError(f"files: {str(path)!r} is not inside {str(run_dir)!r}") from None


def read_run(run_dir) -> dict:
    """Read ``run_dir/run.json``; for a dynamics or network folder without one, write it first.

    Raises
    ------
    FileNotFoundError
        When the folder has neither ``run.json`` nor a dynamics ``results.json`` / ``network.json``.
    ValueError
        Naming the file when ``run.json`` is not valid JSON or has an unknown kind.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run_dir: {run_dir} is not a directory")
    path = run_dir / RUN_FILE
    if not path.exists():
        if (run_dir / "results.json").exists():
            write_run(run_dir, "dynamics", settings={"study": _guess_study(run_dir)},
                      files=["results.json"])
        elif (run_dir / "network.json").exists():
            write_run(run_dir, "network", files=["network.json"])
        else:
            raise FileNotFoundError(f"run_dir: {run_dir} has no {RUN_FILE} (nor a dynamics "
                                    "results.json); see docs/reports.md for the run-directory layout")
    run = read_json(path)
    if not isinstance(run, dict) or run.get("kind") not in KINDS:
        kind = run.get("kind") if isinstance(run, dict) else None
        raise ValueError(f"{path}: kind must be one of {KINDS}, got {kind!r}")
    return run


def read_json(path):
    """The JSON value in ``path``; a ``ValueError`` naming the file when it is not valid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a valid JSON file ({err})") from None


def write_stopped_run(run_dir, posterior, stopped: str, settings: dict | None = None) -> Path:
    """Save the draws of a run that stopped early as :data:`PARTIAL_POSTERIOR`, with a
    ``run.json`` that says so, so that a report can be made of them.

    Parameters
    ----------
    run_dir : path
        The run's folder.
    posterior : Posterior
        What the run had computed (``RunInterrupted.posterior``, ``DivergenceError.posterior``).
    stopped : str
        What stopped it (the error's message); recorded as ``settings["stopped"]`` and shown
        at the top of the report.
    settings : dict, optional
        More of the run's settings to record (the command's name, say).

    Returns
    -------
    Path
        The saved posterior file.
    """
    path = posterior.save(Path(run_dir) / PARTIAL_POSTERIOR)
    write_posterior_run(run_dir, posterior, [path], {**(settings or {}), "stopped": stopped})
    return path


def write_posterior_run(run_dir, posterior, files, settings: dict | None = None) -> Path:
    """``run.json`` of a run whose result is ``posterior``: the kind its model makes
    (completion or regression; ``"model"`` for a user's Pyro model), its method, seed and
    model, the data's shape.

    Parameters
    ----------
    run_dir : path
        The run's folder.
    posterior : Posterior
        The run's result (saved among ``files``).
    files : sequence of path
        The files the run wrote.
    settings : dict, optional
        More settings to record beside the posterior's own.

    Returns
    -------
    Path
        The written ``run.json``.
    """
    model = posterior.model
    kind = ("model" if model is None else
            "regression" if getattr(model, "name", "") == "regression" else "completion")
    return write_run(run_dir, kind, files=files,
                     settings={"method": posterior.method, "seed": posterior.info.get("seed"),
                               "model": posterior.info.get("model"), **(settings or {})},
                     data={} if model is None else {"shape": list(getattr(model, "shape", []) or [])})


def run_file(run_dir, run: dict, name: str) -> Path | None:
    """``run_dir/name`` when this run wrote it (listed in ``run["files"]``) and it exists.

    A ``run.json`` without a file list (written by hand) lets every existing file count.
    """
    path = Path(run_dir) / name
    if "files" in run and name not in run["files"]:
        return None
    return path if path.exists() else None


def _guess_study(run_dir: Path) -> str:
    res = read_json(run_dir / "results.json")
    if {"under", "over"} <= set(res):
        return "fa_vs_gd"
    if "m_sweep" in res:
        return "overparam"
    if "alphas" in res:
        return "diagonal"
    if {"fa_vs_gd", "overparam", "diagonal"} & set(res):
        return "all"
    return "unknown"


def write_heldout(run_dir, *, truth, indices=None, inputs=None, noisy=None) -> Path:
    """Write ``heldout.npz`` (held-out indices or inputs, truth, and noisy values).

    Parameters
    ----------
    run_dir : str or path-like
        The run directory; the file goes in it, written atomically.
    truth : array_like
        ``(n,)`` true value of each held-out point: noise-free values, held-out observations,
        or 0/1 labels for a classifier. Saved as float64.
    indices : array_like, optional
        ``(n, ndim)`` integer indices of held-out tensor entries (completion); saved as int64.
    inputs : array_like, optional
        ``(n, *input_shape)`` held-out inputs (regression); saved as float64.
    noisy : array_like, optional
        ``(n,)`` noisy held-out observations, where ``truth`` holds the noise-free values.

    Returns
    -------
    pathlib.Path
        ``run_dir/heldout.npz``.

    Raises
    ------
    ValueError
        When neither or both of ``indices`` and ``inputs`` are given.
    """
    if (indices is None) == (inputs is None):
        raise ValueError("indices, inputs: give exactly one of them")
    arrays = {"truth": np.asarray(truth, dtype=np.float64)}
    if indices is not None:
        arrays["indices"] = np.asarray(indices, dtype=np.int64)
    else:
        arrays["inputs"] = np.asarray(inputs, dtype=np.float64)
    if noisy is not None:
        arrays["noisy"] = np.asarray(noisy, dtype=np.float64)
    return save_npz(Path(run_dir) / "heldout.npz", arrays)


def write_image(run_dir, observed, truth=None) -> Path:
    """Write ``image.npz``: the observed image (NaN where missing) and optionally the truth.

    Parameters
    ----------
    run_dir : str or path-like
        The run directory; the file goes in it, written atomically.
    observed : array_like
        The image (e.g. ``(H, W)``, ``(H, W, 3)`` or a band cube) with NaN at the missing
        pixels, saved as float64.
    truth : array_like, optional
        The complete image, the same shape, for scoring the missing pixels.

    Returns
    -------
    pathlib.Path
        ``run_dir/image.npz``.
    """
    arrays = {"observed": np.asarray(observed, dtype=np.float64)}
    if truth is not None:
        arrays["truth"] = np.asarray(truth, dtype=np.float64)
    return save_npz(Path(run_dir) / "image.npz", arrays)


def save_npz(path, arrays: dict) -> Path:
    """Write ``arrays`` to the ``.npz`` file ``path`` atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return atomic_write(path, buffer.getvalue())


def load_npz(path) -> dict | None:
    """The arrays of an ``.npz`` file as a dict, or ``None`` when ``path`` is ``None``."""
    if path is None:
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: not a readable .npz file ({type(err).__name__})") from None

"""The run-directory convention: what a run saves so a report can be made later from it alone.

Every run directory holds ``run.json``::

    {"kind": "completion" | "regression" | "network" | "dynamics",
     "created": "<ISO 8601 time>",
     "versions": {"python", "torch", "pyro", "bayestensor", "arviz"},
     "settings": {...},   # method, seed, format, max rank, sampler options, ...
     "data": {...}}       # shape, number observed, observed fraction, ...

and, where they apply:

* ``posterior.pt``: :meth:`bayestensor.Posterior.save`;
* ``heldout.npz``: held-out points: ``indices`` (completion, ``(n, ndim)``) or ``inputs``
  (regression), ``truth`` (noise-free values, or labels for a classifier) and, for completion,
  ``noisy`` (the noisy held-out observations the credible intervals are checked against);
* ``image.npz``: ``observed`` (NaN where missing) and optionally ``truth``, for image completion;
* ``network.json``: a compressed-network run (layers, ranks, ratios, metrics, reliability);
* ``results.json`` (+ PNGs, ``summary.md``): a dynamics study as ``bayestensor dynamics`` writes it.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from pathlib import Path

import numpy as np

from bayestensor.io import to_jsonable

RUN_FILE = "run.json"
KINDS = ("completion", "regression", "network", "dynamics")


def versions() -> dict:
    """Versions of Python, torch, pyro, bayestensor and arviz (``None`` when not importable)."""
    out = {"python": platform.python_version()}
    for name, mod in (("torch", "torch"), ("pyro", "pyro"), ("arviz", "arviz")):
        try:
            out[name] = str(__import__(mod).__version__)
        except Exception:  # pragma: no cover - optional in odd environments
            out[name] = None
    from bayestensor import __version__

    out["bayestensor"] = __version__
    return out



def write_run(run_dir, kind: str, *, settings: dict | None = None, data: dict | None = None,
              created: str | None = None) -> Path:
    """Write ``run_dir/run.json``.

    Parameters
    ----------
    run_dir : path
        The run directory (created when missing).
    kind : {"completion", "regression", "network", "dynamics"}
    settings : dict, optional
        Method, seed, sampler options and everything else that defines the run.
    data : dict, optional
        Data summary: shape, number observed, observed fraction, ...
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
    run_dir.mkdir(parents=True, exist_ok=True)
    payload = {"kind": kind,
               "created": created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "versions": versions(), "settings": to_jsonable(settings or {}),
               "data": to_jsonable(data or {})}
    path = run_dir / RUN_FILE
    path.write_text(json.dumps(payload, indent=2))
    return path


def read_run(run_dir) -> dict:
    """Read ``run_dir/run.json``; for a dynamics folder without one, write it first.

    Raises
    ------
    FileNotFoundError
        When the folder has neither ``run.json`` nor a dynamics ``results.json``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run_dir: {run_dir} is not a directory")
    path = run_dir / RUN_FILE
    if not path.exists():
        if (run_dir / "results.json").exists():
            write_run(run_dir, "dynamics", settings={"study": _guess_study(run_dir)})
        elif (run_dir / "network.json").exists():
            write_run(run_dir, "network")
        else:
            raise FileNotFoundError(f"run_dir: {run_dir} has no {RUN_FILE} (nor a dynamics "
                                    "results.json); see docs/reports.md for the run-directory layout")
    run = json.loads(path.read_text())
    if run.get("kind") not in KINDS:
        raise ValueError(f"{path}: kind must be one of {KINDS}, got {run.get('kind')!r}")
    return run


def _guess_study(run_dir: Path) -> str:
    res = json.loads((run_dir / "results.json").read_text())
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
    """Write ``heldout.npz`` (held-out indices or inputs, truth, and noisy values)."""
    if (indices is None) == (inputs is None):
        raise ValueError("indices, inputs: give exactly one of them")
    arrays = {"truth": np.asarray(truth, dtype=np.float64)}
    if indices is not None:
        arrays["indices"] = np.asarray(indices, dtype=np.int64)
    else:
        arrays["inputs"] = np.asarray(inputs, dtype=np.float64)
    if noisy is not None:
        arrays["noisy"] = np.asarray(noisy, dtype=np.float64)
    return _save_npz(run_dir, "heldout.npz", arrays)


def write_image(run_dir, observed, truth=None) -> Path:
    """Write ``image.npz``: the observed image (NaN where missing) and optionally the truth."""
    arrays = {"observed": np.asarray(observed, dtype=np.float64)}
    if truth is not None:
        arrays["truth"] = np.asarray(truth, dtype=np.float64)
    return _save_npz(run_dir, "image.npz", arrays)


def _save_npz(run_dir, name: str, arrays: dict) -> Path:
    path = Path(run_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def load_npz(path) -> dict | None:
    """The arrays of an ``.npz`` file as a dict, or ``None`` when it does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    with np.load(path) as z:
        return {k: z[k] for k in z.files}

"""``bayestensor.report``: one uncertainty report for completion, regression, networks and dynamics."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bayestensor.report import sections as S
from bayestensor.report.html import render_html, render_markdown
from bayestensor.io import to_jsonable
from bayestensor.report.rundir import load_npz, read_run, write_run

#: Section order in the report.
ORDER = ("settings", "diagnostics", "rank", "calibration", "predictions", "weights", "network",
         "dynamics")


def build_sections(run_dir: Path, run: dict, posterior=None, heldout=None, image=None) -> list[dict]:
    """The sections a run has data for, in :data:`ORDER`."""
    out = [S.settings_section(run, posterior)]
    if posterior is not None:
        out.append(S.diagnostics_section(posterior, heldout))
        out.append(S.rank_section(posterior))
        out.append(S.calibration_section(posterior, heldout))
        out.append(S.predictions_section(posterior, heldout, image))
        out.append(S.weights_section(posterior))
    if run_dir is not None and (run_dir / "network.json").exists():
        out.append(S.network_section(json.loads((run_dir / "network.json").read_text())))
    if run_dir is not None and run.get("kind") == "dynamics" and (run_dir / "results.json").exists():
        out.append(S.dynamics_section(json.loads((run_dir / "results.json").read_text())))
    return [s for s in out if s is not None]


def report(run, out=None, *, title: str | None = None, heldout: dict | None = None,
           image: dict | None = None) -> dict:
    """Write an uncertainty report: ``report.html``, ``report.md`` (+ PNGs) and ``report.json``.

    Parameters
    ----------
    run : path or Posterior
        A run directory (see :mod:`bayestensor.report.rundir` for its files) or a fitted
        :class:`~bayestensor.Posterior`. A posterior is saved with a ``run.json`` into ``out``
        first, so that the report can be remade from that folder alone.
    out : path, optional
        Output folder (default: the run directory; required for a Posterior).
    title : str, optional
    heldout : dict, optional
        For a Posterior: ``{"indices" or "inputs", "truth", "noisy"}`` held-out points
        (saved as ``heldout.npz``); ignored for a run directory, which has its own.
    image : dict, optional
        For a Posterior of an image: ``{"observed", "truth"}`` (saved as ``image.npz``).

    Returns
    -------
    dict
        ``{"html", "markdown", "json", "figures"}`` paths; the JSON holds every number shown
        (``sections.<key>.numbers``) and the ``warnings``.

    Examples
    --------
    >>> import bayestensor as bt
    >>> paths = bt.report("runs/demo")          # doctest: +SKIP
    >>> print(paths["html"])                    # doctest: +SKIP
    runs/demo/report.html
    """
    from bayestensor.results.posterior import Posterior
    from bayestensor.report.rundir import write_heldout, write_image

    if isinstance(run, Posterior):
        if out is None:
            raise ValueError("out: a folder is required when reporting a Posterior")
        run_dir = Path(out)
        run.save(run_dir / "posterior.pt")
        kind = "regression" if getattr(run.model, "name", "") == "regression" else "completion"
        data = {"shape": list(getattr(run.model, "shape", []) or [])}
        write_run(run_dir, kind, settings={"method": run.method, "seed": run.info.get("seed"),
                                           "model": run.info.get("model")}, data=data)
        if heldout is not None:
            keys = {k: heldout[k] for k in ("indices", "inputs", "noisy") if k in heldout}
            write_heldout(run_dir, truth=heldout["truth"], **keys)
        if image is not None:
            write_image(run_dir, image["observed"], image.get("truth"))
    else:
        run_dir = Path(run)
    meta = read_run(run_dir)
    out_dir = Path(out) if out is not None else run_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    posterior = Posterior.load(run_dir / "posterior.pt") if (run_dir / "posterior.pt").exists() else None
    heldout = load_npz(run_dir / "heldout.npz")
    image = load_npz(run_dir / "image.npz")
    secs = build_sections(run_dir, meta, posterior, heldout, image)
    warnings = [w for s in secs for w in s["warnings"]]
    title = title or f"bayestensor report: {meta['kind']} run ({run_dir.name})"
    subtitle = f"Run directory {run_dir}; created {meta.get('created', '?')}."
    html_path, md_path, json_path = out_dir / "report.html", out_dir / "report.md", out_dir / "report.json"
    fig_dir = out_dir / "report_files"
    _atomic_write(html_path, render_html(title, secs, warnings, subtitle))
    _atomic_write(md_path, render_markdown(title, secs, warnings, fig_dir, "report_files/", subtitle))
    payload = {"title": title, "run": meta, "warnings": warnings,
               "sections": {s["key"]: {"title": s["title"], "numbers": s["numbers"],
                                       "figures": [name for name, _, _ in s["figures"]]} for s in secs}}
    _atomic_write(json_path, json.dumps(to_jsonable(payload), indent=2))
    return {"html": html_path, "markdown": md_path, "json": json_path, "figures": fig_dir}


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)

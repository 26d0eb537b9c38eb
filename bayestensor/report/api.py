"""``bayestensor.report``: one uncertainty report for completion, regression, networks and dynamics."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tqdm.auto import tqdm

from bayestensor.io import atomic_write, to_jsonable
from bayestensor.report import sections as S
from bayestensor.report.comparison import load_run_posterior, loo_section, run_names
from bayestensor.report.html import render_html, render_markdown
from bayestensor.report.rundir import (PARTIAL_POSTERIOR, load_npz, read_json, read_run,
                                       run_file, write_heldout, write_image, write_posterior_run)
from bayestensor.results.posterior import Posterior

#: Section order in the report.
ORDER = ("settings", "diagnostics", "rank", "calibration", "predictions", "loo", "weights",
         "network", "dynamics")


def build_sections(run_dir: Path, run: dict, posterior=None, heldout=None, image=None, *,
                   progress: bool = False, loo: bool = False, compare: dict | None = None) -> list[dict]:
    """The sections a run has data for, in :data:`ORDER`, from the files this run wrote.

    With ``progress``, a progress bar on stderr (on a terminal only) ticks once per section.
    ``loo`` and ``compare`` add the PSIS-LOO section (see :func:`section_steps`).
    """
    steps = section_steps(run_dir, run, posterior, heldout, image, loo=loo, compare=compare)
    out = []
    with tqdm(steps, desc="report", unit="section", disable=None if progress else True,
              leave=False, dynamic_ncols=True) as bar:
        for key, make in bar:
            bar.set_postfix_str(key)
            out.append(make())
    return [s for s in out if s is not None]


def section_steps(run_dir: Path, run: dict, posterior=None, heldout=None, image=None, *,
                  loo: bool = False, compare: dict | None = None) -> list:
    """``(key, make)`` for each section the run may have, in :data:`ORDER`; ``make()`` builds it.

    The PSIS-LOO section (a few seconds per run) comes with ``loo`` or ``compare``
    (``{name: Posterior}`` of other runs of the same data).
    """
    steps = [("settings", lambda: S.settings_section(run, posterior))]
    if posterior is not None:
        predicted = {}  # the held-out prediction, made once for the two sections that use it

        def pred():
            if "heldout" not in predicted:
                predicted["heldout"] = S.heldout_prediction(posterior, heldout)
            return predicted["heldout"]

        steps += [("diagnostics", lambda: S.diagnostics_section(posterior, heldout)),
                  ("rank", lambda: S.rank_section(posterior)),
                  ("calibration", lambda: S.calibration_section(posterior, heldout, pred=pred())),
                  ("predictions", lambda: S.predictions_section(posterior, heldout, image,
                                                                pred=pred()))]
        if loo or compare:
            name = Path(run_dir).resolve().name if run_dir is not None else "this run"
            steps.append(("loo", lambda: loo_section(posterior, name, compare)))
        steps.append(("weights", lambda: S.weights_section(posterior)))
    network = run_file(run_dir, run, "network.json") if run_dir is not None else None
    if network is not None:
        steps.append(("network", lambda: S.network_section(read_json(network))))
    results = run_file(run_dir, run, "results.json") if run_dir is not None else None
    if run.get("kind") == "dynamics" and results is not None:
        steps.append(("dynamics", lambda: S.dynamics_section(read_json(results))))
    return steps


def report(run, out=None, *, title: str | None = None, heldout: dict | None = None,
           image: dict | None = None, progress: bool = True, loo: bool = False,
           compare=()) -> dict:
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
    progress : bool
        A progress bar on stderr, one tick per section, shown on a terminal only.
    loo : bool
        Add a PSIS-LOO section (ArviZ): elpd, p_loo, Pareto k and a LOO-PIT histogram of the
        training data. Off by default: Pareto smoothing costs about 3 s per 5,000
        observations x 400 draws, more than the rest of the report.
    compare : sequence of paths
        Run folders fitted to the same data, compared with this run by PSIS-LOO in that
        section (implies ``loo``).

    Returns
    -------
    dict
        ``{"html", "markdown", "json", "figures"}`` paths; the JSON holds every number shown
        (``sections.<key>.numbers``) and the ``warnings``.

    Raises
    ------
    ValueError
        Before any work: ``run`` neither a path nor a Posterior, a Posterior without ``out``,
        an ``out`` folder that cannot be created; then a folder that is not a run.

    Examples
    --------
    >>> import bayestensor as bt
    >>> paths = bt.report("runs/demo")          # doctest: +SKIP
    >>> print(paths["html"])                    # doctest: +SKIP
    runs/demo/report.html
    """
    if not isinstance(run, (Posterior, str, os.PathLike)):
        raise ValueError(f"run: expected a run folder (a path) or a Posterior, got "
                         f"{type(run).__name__}")
    if isinstance(run, Posterior) and out is None:
        raise ValueError("out: a folder is required when reporting a Posterior")
    if isinstance(run, Posterior):
        _make_out(out)  # before the posterior is saved there
    others = _other_runs(Path(out) if isinstance(run, Posterior) else Path(run), compare)
    if isinstance(run, Posterior):
        run_dir = Path(out)
        save_posterior_run(run, run_dir, heldout=heldout, image=image)
    else:
        run_dir = Path(run)
    meta = read_run(run_dir)
    out_dir = _make_out(out) if out is not None else run_dir
    posterior_file = (run_file(run_dir, meta, "posterior.pt")
                      or run_file(run_dir, meta, PARTIAL_POSTERIOR))
    posterior = Posterior.load(posterior_file) if posterior_file is not None else None
    heldout = load_npz(run_file(run_dir, meta, "heldout.npz"))
    image = load_npz(run_file(run_dir, meta, "image.npz"))
    secs = build_sections(run_dir, meta, posterior, heldout, image, progress=progress,
                          loo=loo, compare=others)
    warnings = [w for s in secs for w in s["warnings"]]
    stopped = meta.get("settings", {}).get("stopped")
    if stopped:  # a run stopped early: its draws so far, not a finished fit
        warnings.insert(0, f"This run stopped before it finished ({stopped}); the report shows "
                           f"the draws it had made.")
    title = title or f"bayestensor report: {meta['kind']} run ({run_dir.name})"
    subtitle = f"Run directory {run_dir}; created {meta.get('created', '?')}."
    html_path, md_path, json_path = out_dir / "report.html", out_dir / "report.md", out_dir / "report.json"
    fig_dir = out_dir / "report_files"
    atomic_write(html_path, render_html(title, secs, warnings, subtitle))
    atomic_write(md_path, render_markdown(title, secs, warnings, fig_dir, "report_files/", subtitle))
    payload = {"title": title, "run": meta, "warnings": warnings,
               "sections": {s["key"]: {"title": s["title"], "numbers": s["numbers"],
                                       "figures": [name for name, _, _ in s["figures"]]} for s in secs}}
    atomic_write(json_path, json.dumps(to_jsonable(payload), indent=2))
    return {"html": html_path, "markdown": md_path, "json": json_path, "figures": fig_dir}


def _other_runs(run_dir: Path, compare) -> dict:
    """``{name: Posterior}`` of the run folders in ``compare`` (checked before any work)."""
    if isinstance(compare, (str, Path)):
        compare = [compare]
    dirs = [Path(d) for d in compare or ()]
    for d in dirs:
        if not d.is_dir():
            raise ValueError(f"compare: {d} is not a run folder")
    names = run_names([run_dir, *dirs])[1:]
    return {name: load_run_posterior(d) for name, d in zip(names, dirs)}


def _make_out(out) -> Path:
    """The report's folder ``out``, created; ``ValueError`` naming ``out`` when it cannot be."""
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"out: cannot create the folder {str(out)!r} "
                         f"({err.strerror or err})") from None
    return Path(out)


def save_posterior_run(posterior: Posterior, run_dir, *, heldout: dict | None = None,
                       image: dict | None = None) -> Path:
    """Save a fitted posterior as a run directory: ``posterior.pt``, held-out data, ``run.json``.

    Parameters
    ----------
    posterior : Posterior
    run_dir : path
    heldout : dict, optional
        ``{"indices" or "inputs", "truth", "noisy"}`` (saved as ``heldout.npz``).
    image : dict, optional
        ``{"observed", "truth"}`` (saved as ``image.npz``).

    Returns
    -------
    Path
        The written ``run.json``.
    """
    run_dir = Path(run_dir)
    files = [posterior.save(run_dir / "posterior.pt")]
    if heldout is not None:
        keys = {k: heldout[k] for k in ("indices", "inputs", "noisy") if k in heldout}
        files.append(write_heldout(run_dir, truth=heldout["truth"], **keys))
    if image is not None:
        files.append(write_image(run_dir, image["observed"], image.get("truth")))
    return write_posterior_run(run_dir, posterior, files)

"""Saved runs of one data set compared by PSIS-LOO: a table, Markdown and LOO-PIT figures."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from bayestensor.io import atomic_write
from bayestensor.report.rundir import read_run, run_file
from bayestensor.results.comparison import compare_runs
from bayestensor.results.posterior import Posterior
from bayestensor.viz.figures import save_png
from bayestensor.viz.ppc import plot_loo_pit

#: Columns of the comparison shown in the Markdown table.
SHOWN = ("rank", "elpd_loo", "se", "elpd_diff", "dse", "p_loo", "weight", "pareto_k_bad")


def load_run_posterior(run_dir) -> Posterior:
    """The posterior a run folder saved (``posterior.pt`` listed in its ``run.json``).

    Raises
    ------
    ValueError
        When the folder has no saved posterior.
    """
    run = read_run(run_dir)
    path = run_file(run_dir, run, "posterior.pt")
    if path is None:
        raise ValueError(f"run_dir: {run_dir} has no posterior.pt; only completion and "
                         "regression runs can be compared")
    return Posterior.load(path)


def run_names(run_dirs) -> list[str]:
    """Short unique names of run folders: their folder names, numbered when they repeat."""
    names = []
    for d in run_dirs:
        base = Path(d).resolve().name
        name, i = base, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names.append(name)
    return names


def markdown_table(table: pd.DataFrame) -> str:
    """The comparison as a Markdown table (best first)."""
    cols = [c for c in SHOWN if c in table.columns]
    lines = ["| run | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in table.iterrows():
        cells = [f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c]) for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_run_dirs(run_dirs, out) -> dict:
    """Compare saved runs by LOO; write ``compare.csv``, ``compare.md`` and LOO-PIT figures.

    Parameters
    ----------
    run_dirs : sequence of paths
        Two or more run folders of the same data, each with a ``posterior.pt`` saved with its
        data (``Posterior.save(include_data=True)``, the default).
    out : path
        Output folder (made when missing).

    Returns
    -------
    dict
        ``{"table": DataFrame, "csv": Path, "markdown": Path, "figures": [Path, ...]}``.
    """
    names = run_names(run_dirs)
    posteriors = {name: load_run_posterior(d) for name, d in zip(names, run_dirs)}
    table = compare_runs(posteriors)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv = atomic_write(out / "compare.csv", table.to_csv())
    figures = []
    for name, post in posteriors.items():
        fig = plot_loo_pit(post.to_arviz(posterior_predictive=True), title=f"LOO-PIT: {name}")
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        figures.append(save_png(fig, out / f"loo_pit-{safe}.png"))
    text = ["# Model comparison (PSIS-LOO)", "",
            "Expected log predictive density of each observation left out, summed (higher is "
            "better; `elpd_diff` and `dse` are relative to the best run). `pareto_k_bad` counts "
            "observations whose estimate is unreliable (Pareto k > 0.7).", "",
            markdown_table(table), ""]
    text += [f"![LOO-PIT {p.stem}]({p.name})" for p in figures]
    md = atomic_write(out / "compare.md", "\n".join(text) + "\n")
    return {"table": table, "csv": Path(csv), "markdown": Path(md), "figures": figures}

"""Saved runs of one data set compared by PSIS-LOO: a table, Markdown and LOO-PIT figures,
as a folder of its own (``bayestensor compare``) or as a section of a run's report."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

import pandas as pd

from bayestensor.io import atomic_write
from bayestensor.report.rundir import read_run, run_file
from bayestensor.report.sections import is_point_estimate, section
from bayestensor.results import arviz_adapter
from bayestensor.results.comparison import MIN_LOO_DRAWS, compare_runs, pareto_k_limit
from bayestensor.results.posterior import Posterior
from bayestensor.viz.figures import png_bytes, save_png
from bayestensor.viz.ppc import loo_pit_values, plot_loo_pit, plot_pit_histogram

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


def loo_section(posterior: Posterior, name: str, others: dict | None = None) -> dict:
    """Report section: this run's PSIS-LOO (elpd, p_loo, Pareto k) and LOO-PIT histogram,
    and with ``others`` (``{name: Posterior}`` fitted to the same data) the comparison table.

    PSIS-LOO costs a few seconds per run (ArviZ's Pareto smoothing, per observation), so the
    report adds this section on request only (``report(loo=True)`` or ``compare=``).
    """
    if is_point_estimate(posterior):
        return section("loo", "Model fit (PSIS-LOO)", numbers={"loo": None}, text=[
            f"{posterior.method}: one point estimate has no posterior spread, so LOO does not "
            "apply; fit with a sampler, SVGD or VI."])
    draws = posterior.num_chains * posterior.num_draws
    if draws < MIN_LOO_DRAWS:
        return section("loo", "Model fit (PSIS-LOO)", numbers={"loo": None}, text=[
            f"Not measured: {draws} draws; PSIS-LOO needs at least {MIN_LOO_DRAWS} (its "
            "Pareto fit takes the largest fifth of the importance weights, at least 5)."])
    data = posterior.to_arviz(posterior_predictive=True)
    if not arviz_adapter.has_group(data, "log_likelihood"):
        return section("loo", "Model fit (PSIS-LOO)", numbers={"loo": None}, text=[
            "Not measured: the saved posterior has no data to score (save it with "
            "include_data=True, the default)."])
    with warnings.catch_warnings():  # replaced by the warning below, naming the count
        warnings.filterwarnings("ignore", message=".*Pareto.*")
        result = arviz_adapter.loo(data)
    k = np.asarray(result.pareto_k).ravel()
    limit = pareto_k_limit(posterior.num_chains * posterior.num_draws)
    bad = int(np.sum(k > limit))
    numbers = {"elpd_loo": float(result.elpd_loo), "se": float(result.se),
               "p_loo": float(result.p_loo), "n": int(k.size), "pareto_k_bad": bad,
               "pareto_k_limit": limit}
    rows = [{"quantity": key, "value": numbers[key]} for key in ("elpd_loo", "se", "p_loo", "n",
                                                                 "pareto_k_bad")]
    text = ["Expected log predictive density of each training observation left out (PSIS-LOO, "
            "ArviZ), summed: higher is better; p_loo is the effective number of parameters. "
            f"pareto_k_bad counts observations whose estimate is unreliable (Pareto k > "
            f"{limit:.2f}, the limit for {posterior.num_chains * posterior.num_draws} draws; "
            "Vehtari et al. 2024)."]
    warn = []
    if bad:
        warn.append(f"PSIS-LOO is unreliable for {bad} of {k.size} observations (Pareto k > "
                    f"{limit:.2f}): read elpd_loo with care (more draws, or K-fold "
                    "cross-validation).")
    tables = [("this run", rows, ["quantity", "value"])]
    if others:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Pareto.*")
            table = compare_runs({name: posterior, **others}, prepared={name: (data, result)})
        cols = ["run"] + [c for c in SHOWN if c in table.columns]
        table_rows = [{"run": run, **{c: row[c] for c in cols[1:]}} for run, row in table.iterrows()]
        numbers["comparison"] = table_rows
        tables.append(("runs compared (best first)", table_rows, cols))
        text.append("Runs compared by elpd_loo with az.compare: elpd_diff and dse are relative "
                    "to the best run; weight is the stacking weight.")
    site = next(iter(arviz_adapter.group(data, "observed_data").data_vars))
    fig = plot_pit_histogram(loo_pit_values(data, site), title="LOO-PIT of the training data")
    return section("loo", "Model fit and comparison (PSIS-LOO)", text=text, tables=tables,
                   numbers=numbers, warnings=warn,
                   figures=[("loo_pit.png", "LOO-PIT histogram with the band of a uniform PIT",
                             png_bytes(fig))])

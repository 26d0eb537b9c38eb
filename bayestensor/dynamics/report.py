"""The report section of a dynamics study: Markdown tables, figure links and a JSON of every number."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from bayestensor.io import atomic_write, to_jsonable
from bayestensor.report.sections import fmt
from bayestensor.dynamics.compare import MIN_BOOTSTRAP_N, ComparisonResult


def _fmt(v, digits: int = 3) -> str:
    return fmt(v, digits)


def markdown_table(df: pd.DataFrame, columns: Sequence[str] | None = None, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table of ``df`` (numbers to ``digits`` significant digits)."""
    cols = list(df.columns) if columns is None else list(columns)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"columns: {missing} not in the table (have {list(df.columns)})")
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(_fmt(row[c], digits) for c in cols) + " |")
    return "\n".join(lines)


def comparison_section(result: ComparisonResult, title: str, *, metrics: Sequence[str] | None = None,
                       figures: Sequence[tuple[str, str]] = (), notes: Sequence[str] = (),
                       level: float = 0.95, level_heading: int = 2) -> str:
    """Markdown section for one comparison: setup, success table, metric summary, figures.

    Parameters
    ----------
    result : ComparisonResult
    title : str
        Section heading.
    metrics : sequence of str, optional
        Final metrics to tabulate (default all).
    figures : sequence of (caption, relative path)
        Figures to link.
    notes : sequence of str
        Paragraphs placed after the heading (findings, caveats).
    level : float
        Interval level of the tables.
    level_heading : int
        Markdown heading level.
    """
    if not isinstance(result, ComparisonResult):
        raise ValueError(f"result: expected a ComparisonResult, got {type(result).__name__}")
    h = "#" * int(level_heading)
    info = result.info
    seeds = result.dataset.seed.values
    out = [f"{h} {title}", ""]
    prob = info.get("problem", {})
    out.append(f"Problem: `{json.dumps(prob, default=str)}`; {len(seeds)} replicate seeds "
               f"({int(seeds[0])}..{int(seeds[-1])}), replicates vary "
               f"{'instance and learner randomness' if info.get('vary') == 'all' else 'learner randomness only'}.")
    out.append("")
    for p in notes:
        out += [p, ""]
    out.append(f"Success rule: {result.dataset.attrs.get('success_rule', '')}. "
               f"Wilson {level:.0%} intervals.")
    out.append("")
    out.append(markdown_table(result.success_table(level=level),
                              ["learner", "successes", "n", "p", "ci_low", "ci_high"]))
    out.append("")
    summ = result.summary(metrics, level=level)
    out.append(f"Final metrics: mean, sd, median and a {level:.0%} interval of the mean over "
               f"seeds: a BCa bootstrap (SciPy) from {MIN_BOOTSTRAP_N} seeds on, a Student-t "
               "interval with fewer (assumes roughly normal replicates); `ci_method` names the "
               "one used.")
    out.append("")
    out.append(markdown_table(summ, ["learner", "metric", "n", "mean", "sd", "median", "ci_low",
                                     "ci_high", "ci_method"]))
    out.append("")
    for caption, path in figures:
        out.append(f"![{caption}]({path})")
        out.append("")
    return "\n".join(out)


def write_json(path, obj) -> Path:
    """Write ``obj`` as strict JSON (NaN and infinities become ``null``), atomically."""
    return atomic_write(path, json.dumps(to_jsonable(obj), indent=1))


__all__ = ["markdown_table", "comparison_section", "write_json"]

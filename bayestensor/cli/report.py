"""``bayestensor report``: the uncertainty report of a run folder."""

from __future__ import annotations

import click

from bayestensor.report import report as make_report
from bayestensor.cli.errors import Command


@click.command("report", cls=Command)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: RUN_DIR).")
@click.option("--title", default=None, help="Report title.")
@click.option("--loo", is_flag=True, help="Add a PSIS-LOO section (elpd, Pareto k, LOO-PIT); "
              "a few seconds per run.")
@click.option("--compare", "compare", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Another run folder of the same data to compare with by PSIS-LOO in that "
                   "section (repeatable; implies --loo).")
def report_cmd(run_dir, out, title, loo, compare):
    """Write report.html (self-contained), report.md and report.json for RUN_DIR.

    RUN_DIR holds run.json and, where they apply, posterior.pt, heldout.npz, image.npz,
    network.json or a dynamics results.json (see docs/reports.md); only the files run.json
    lists as written by the run are read.
    """
    paths = make_report(run_dir, out, title=title, loo=loo, compare=compare)
    for key in ("html", "markdown", "json"):
        click.echo(f"{key}: {paths[key]}")

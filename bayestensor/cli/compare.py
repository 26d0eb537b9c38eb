"""``bayestensor compare``: rank saved runs of one data set by PSIS-LOO."""

from __future__ import annotations

import click

from bayestensor.cli.errors import Command
from bayestensor.report.comparison import compare_run_dirs


@click.command("compare", cls=Command)
@click.argument("run_dirs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default="runs/compare",
              show_default=True, help="Output folder.")
def compare_cmd(run_dirs, out):
    """Compare two or more RUN_DIRS (each with posterior.pt saved with its data) by LOO.

    Writes compare.csv, compare.md and one loo_pit-<run>.png per run into --out.
    """
    if len(run_dirs) < 2:
        raise click.BadParameter(f"expected two or more run folders to compare, got "
                                 f"{len(run_dirs)}", param_hint="RUN_DIRS")
    paths = compare_run_dirs(run_dirs, out)
    click.echo(paths["table"].to_string())
    for key in ("csv", "markdown"):
        click.echo(f"{key}: {paths[key]}")

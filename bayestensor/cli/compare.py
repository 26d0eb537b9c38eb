"""``bayestensor compare``: rank saved runs of one data set by PSIS-LOO."""

from __future__ import annotations

import click

from bayestensor.cli.errors import Command
from bayestensor.cli.options import force_option, open_run_dir, out_option
from bayestensor.report.comparison import compare_run_dirs


@click.command("compare", cls=Command)
@click.argument("run_dirs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False))
@out_option("compare")
@force_option
def compare_cmd(run_dirs, out, force):
    """Compare two or more RUN_DIRS (each with posterior.pt saved with its data) by LOO.

    Writes compare.csv, compare.md and one loo_pit-<run>.png per run into --out, a new folder
    as for the commands that fit (so no figure of an earlier comparison stays beside them).
    """
    if len(run_dirs) < 2:
        raise click.BadParameter(f"expected two or more run folders to compare, got "
                                 f"{len(run_dirs)}", param_hint="RUN_DIRS")
    paths = compare_run_dirs(run_dirs, open_run_dir(out, "compare", force))
    click.echo(paths["table"].to_string())
    for key in ("csv", "markdown"):
        click.echo(f"{key}: {paths[key]}")

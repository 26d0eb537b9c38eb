"""The ``bayestensor`` command group: one thin sub-command per task."""

from __future__ import annotations

import click
import matplotlib

from bayestensor.cli.complete import complete, demo
from bayestensor.cli.compress import compress
from bayestensor.cli.dynamics import dynamics
from bayestensor.cli.errors import Group
from bayestensor.cli.regress import regress
from bayestensor.cli.report import report_cmd


@click.group(cls=Group)
@click.version_option(package_name="bayestensor")
def main():
    """Bayesian low-rank tensor learning: completion with credible intervals and ranks found
    by the data."""
    # The commands draw to files only; the library itself never chooses a backend.
    matplotlib.use("Agg")


for _command in (demo, complete, regress, compress, dynamics, report_cmd):
    main.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    main()

"""The ``bayestensor`` command group: one thin sub-command per task, each loaded when used.

A command's module imports PyTorch, Pyro, ArviZ and matplotlib, seconds of work that
``bayestensor --help`` does not need. The group therefore knows each command by the
``"module:attribute"`` that defines it and a one-line summary, and imports the module only
when that command is run or asked for its own help.
"""

from __future__ import annotations

import importlib

import click

#: Command name -> (``"module:attribute"`` of the click command, summary for the listing).
COMMANDS = {
    "demo": ("bayestensor.cli.complete:demo",
             "Complete a synthetic tensor of known rank and report the fit."),
    "complete": ("bayestensor.cli.complete:complete",
                 "Complete a tensor from a .npy/.npz file, with credible intervals."),
    "regress": ("bayestensor.cli.regress:regress",
                "Bayesian low-rank tensor regression of y on X from an .npz file."),
    "compress": ("bayestensor.cli.compress:compress",
                 "Train and compress a network with tensorized layers."),
    "dynamics": ("bayestensor.cli.dynamics:dynamics",
                 "Learning-dynamics studies: FA vs GD, rich vs lazy, regimes."),
    "report": ("bayestensor.cli.report:report_cmd",
               "Write the uncertainty report of a run folder."),
    "compare": ("bayestensor.cli.compare:compare_cmd",
                "Compare saved runs of one data set by PSIS-LOO."),
}


def load_command(target: str) -> click.Command:
    """The click command at ``target`` (``"package.module:attribute"``)."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use.

    Parameters
    ----------
    lazy_commands : dict
        Command name -> ``("module:attribute", summary)``; the summary is what the group's
        ``--help`` lists, so listing the commands imports none of them.
    """

    def __init__(self, *args, lazy_commands: dict[str, tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands)

    def list_commands(self, ctx) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            self.add_command(load_command(self.lazy_commands[cmd_name][0]), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx, formatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy_commands:
                rows.append((name, self.lazy_commands[name][1]))
            else:
                cmd = self.commands[name]
                if not cmd.hidden:
                    rows.append((name, cmd.get_short_help_str(formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy_commands=COMMANDS)
@click.version_option(package_name="bayestensor")
def main():
    """Bayesian low-rank tensor learning: completion with credible intervals and ranks found
    by the data."""
    # The commands draw to files only; the library itself never chooses a backend. Imported
    # here, after the sub-command's module and before it runs, to keep --help fast.
    import matplotlib

    matplotlib.use("Agg")


if __name__ == "__main__":  # pragma: no cover
    main()

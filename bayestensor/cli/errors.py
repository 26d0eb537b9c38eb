"""One translation of library errors into usage errors, for every command.

The library raises ``ValueError`` naming the argument (``"num_chains: expected ..."``) or the
file (``"/path/run.json: not a valid JSON file"``). A command built with :class:`Command` turns
that into a click usage error (exit status 2, one line, no traceback) that names the option
(``--num-chains``) or keeps the file name.
"""

from __future__ import annotations

import click

from bayestensor.infer import DivergenceError, RunInterrupted

#: Exit status of a run stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


def usage_error(err: Exception, params) -> click.UsageError:
    """The usage error for a library error raised under a command with ``params``.

    Parameters
    ----------
    err : Exception
        Its message starts with ``"<argument>: "`` or ``"<argument>, <argument>: "`` where the
        library names an argument, or with a file path.
    params : sequence of click.Parameter
        The command's parameters; one whose name matches the argument is named in the error.
    """
    message = str(err).strip() or type(err).__name__
    head, sep, rest = message.partition(": ")
    names = {n.strip() for n in head.split(",")} if sep else set()
    for param in params:
        if param.name in names:
            return click.BadParameter(rest.splitlines()[0], param=param)
    return click.UsageError(message.splitlines()[0])


class Command(click.Command):
    """A click command whose ``ValueError`` / ``FileNotFoundError`` become usage errors.

    An interrupted run exits with status 130 after saying where its checkpoint is; a diverged
    run is a one-line error (status 1).
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ValueError, FileNotFoundError) as err:
            raise usage_error(err, self.params) from None
        except RunInterrupted as err:
            click.echo(f"interrupted: {err}", err=True)
            if err.checkpoint:
                click.echo(f"checkpoint saved: {err.checkpoint}; continue with --resume "
                           f"{err.checkpoint}", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except DivergenceError as err:
            raise click.ClickException(str(err).splitlines()[0]) from None


class Group(click.Group):
    """A click group whose commands (and sub-groups) translate library errors."""

    command_class = Command
    group_class = type  # sub-groups are Groups too

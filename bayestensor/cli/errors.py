"""One translation of library errors into usage errors, for every command.

The library raises ``ValueError`` naming the argument (``"num_chains: expected ..."``) or the
file (``"/path/run.json: not a valid JSON file"``). A command built with :class:`Command` turns
that into a click usage error (exit status 2, one line, no traceback) that names the option
(``--num-chains``) or keeps the file name.
"""

from __future__ import annotations

import click


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
    """A click command whose ``ValueError`` / ``FileNotFoundError`` become usage errors."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ValueError, FileNotFoundError) as err:
            raise usage_error(err, self.params) from None


class Group(click.Group):
    """A click group whose commands (and sub-groups) translate library errors."""

    command_class = Command
    group_class = type  # sub-groups are Groups too

"""One translation of library errors into usage errors, for every command.

The library raises ``ValueError`` naming the argument (``"num_chains: expected ..."``) or the
file (``"/path/run.json: not a valid JSON file"``). A command built with :class:`Command` turns
that into a click usage error (exit status 2, one line, no traceback) that names the option
(``--num-chains``) or keeps the file name.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import click

from bayestensor.infer import DivergenceError, RunInterrupted
from bayestensor.infer.interrupts import sigterm_as_interrupt
from bayestensor.report.rundir import discard_unused_run_dir, write_stopped_run

#: Exit status of a run stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130
#: Key of the run folder in ``click.Context.meta``, set by ``options.open_run_dir``.
RUN_DIR_KEY = "bayestensor.run_dir"


def save_partial(ctx: click.Context, err: RunInterrupted | DivergenceError) -> Path | None:
    """Save the posterior an interrupted or diverged run carries (SGHMC's draws so far, SVGD's
    particles, NUTS's finished chains) into the command's run folder, with a ``run.json``
    that says what stopped it (:func:`~bayestensor.report.rundir.write_stopped_run`), and
    say where.

    Returns the file, or ``None`` when the run carried no draws, the command has no run folder
    yet, or the write failed (said on stderr: a failed save must not hide the interrupt).
    """
    run_dir = ctx.meta.get(RUN_DIR_KEY)
    if err.posterior is None or run_dir is None:
        return None
    stopped = str(err).splitlines()[0]
    try:
        path = write_stopped_run(run_dir, err.posterior, stopped,
                                 settings={"command": ctx.info_name})
    except OSError as exc:
        click.echo(f"could not save the draws so far: {exc}", err=True)
        return None
    click.echo(f"draws so far saved: {path} (bayestensor.Posterior.load reads it; "
               f"bayestensor report {run_dir} reports them)", err=True)
    return path


@contextlib.contextmanager
def warnings_as_lines():
    """Show each warning as one ``warning: <message>`` line on stderr, instead of Python's
    ``path/to/module.py:211: UserWarning: <message>`` followed by a line of our source."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        click.echo(f"warning: {message}", err=True)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


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

    Warnings print as ``warning: <message>`` lines (:func:`warnings_as_lines`). An interrupted
    run exits with status 130 after saying where its checkpoint is (Ctrl-C
    outside a fit too, where click would say ``Aborted!`` with status 1); a diverged run is a
    one-line error (status 1). Either way the draws the run made are saved to
    ``posterior-interrupted.pt`` in its run folder first, with a ``run.json`` that
    ``bayestensor report`` reads (:func:`save_partial`).
    """

    def invoke(self, ctx):
        try:
            # a scheduler's kill stops a command as Ctrl-C does
            with sigterm_as_interrupt(), warnings_as_lines():
                return super().invoke(ctx)
        except (ValueError, FileNotFoundError) as err:
            # a refusal from the library after the run folder was made (a fit's settings):
            # the folder holds nothing of this run, so it goes
            if ctx.meta.get(RUN_DIR_KEY) is not None:
                discard_unused_run_dir(ctx.meta[RUN_DIR_KEY])
            raise usage_error(err, self.params) from None
        except RunInterrupted as err:
            click.echo(f"interrupted: {err}", err=True)
            save_partial(ctx, err)
            if err.checkpoint:
                click.echo(f"checkpoint saved: {err.checkpoint}; continue with --resume "
                           f"{err.checkpoint}", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except KeyboardInterrupt:  # outside a fit (reading data, writing the report)
            click.echo("interrupted", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except DivergenceError as err:
            save_partial(ctx, err)
            raise click.ClickException(str(err).splitlines()[0]) from None


class Group(click.Group):
    """A click group whose commands (and sub-groups) translate library errors."""

    command_class = Command
    group_class = type  # sub-groups are Groups too

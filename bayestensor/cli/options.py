"""Options shared by the commands, each defined once, and the run folder they lead to.

Every command that fits something takes ``--seed``, ``--out``, ``--force``, ``--quiet`` (where
it shows progress) and ``--report/--no-report``; completion and regression share the model and
sampler options. A run folder is new (by default ``runs/<command>-<date>-<time>``) or, with
``--force``, a previous run's folder emptied on purpose; it is made before any fitting starts.
"""

from __future__ import annotations

import math
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import click
import numpy as np

from bayestensor.cli.errors import RUN_DIR_KEY
from bayestensor.infer.api import METHODS
from bayestensor.infer.baselines import ChainsNotConvergedWarning
from bayestensor.infer.runners import SAMPLER_CHAINS
from bayestensor.priors import PRIORS
from bayestensor.report import report as make_report
from bayestensor.report.rundir import prepare_run_dir, timestamped_dir
from bayestensor.results.convergence import (N_KEY_ENTRIES, convergence_advice, entries_words,
                                             monitored_entries, worst_rhat)

#: Folder under which default run folders are made.
RUNS_DIR = "runs"


class RankType(click.ParamType):
    """A positive integer, or a comma list of them (one per rank dimension)."""

    name = "rank"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, list)):
            return value
        try:
            parts = [int(p) for p in str(value).split(",") if p.strip()]
        except ValueError:
            parts = []
        if not parts or any(p < 1 for p in parts):
            self.fail(f"expected a positive integer or a comma list of them, got {value!r}",
                      param, ctx)
        return parts[0] if len(parts) == 1 else parts


class OffsetScaleType(click.ParamType):
    """A positive number, or ``none`` (no fitted offset: the model without the site)."""

    name = "scale"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, float):
            return value
        if str(value).strip().lower() == "none":
            return None
        try:
            scale = float(value)
        except ValueError:
            scale = float("nan")
        if not scale > 0 or scale == float("inf"):
            self.fail(f"expected a positive number or 'none', got {value!r}", param, ctx)
        return scale


POSITIVE = click.IntRange(min=1)

seed_option = click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                           help="Base seed: the same seed gives the same result on one machine.")
quiet_option = click.option("--quiet", is_flag=True,
                            help="No progress bar (bars show only when stderr is a terminal).")
force_option = click.option("--force", is_flag=True,
                            help="Empty --out first when it holds a previous run's files.")
report_option = click.option("--report/--no-report", "with_report", default=True,
                             show_default=True,
                             help="Write report.html / report.md / report.json into --out.")
prior_option = click.option("--prior", type=click.Choice(PRIORS), default="gamma",
                            show_default=True)
level_option = click.option("--level", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                            default=0.9, show_default=True, help="Credible level.")
num_samples_option = click.option("--num-samples", type=POSITIVE, default=None,
                                  help="Draws per chain / particles (sghmc's default: "
                                  "1000, more up to 4000 and 1 GiB of draws until its "
                                  "chains converge).")
num_chains_option = click.option(
    "--num-chains", type=POSITIVE, default=None,
    help=f"Chains [default: {SAMPLER_CHAINS} for "
         f"{' and '.join(m for m, spec in METHODS.items() if spec.default_chains > 1)}, else 1].")
num_warmup_option = click.option("--num-warmup", type=click.IntRange(min=0), default=None,
                                 help="Burn-in steps (sghmc, nuts).")


def chains_for(method: str, num_chains: int | None) -> int:
    """``--num-chains`` as given, or ``fit``'s default for ``method``.

    Parameters
    ----------
    method : str
        The command's method.
    num_chains : int or None
        ``--num-chains``; ``None`` when not given.

    Returns
    -------
    int
        ``num_chains``, else ``METHODS[method].default_chains``: ``SAMPLER_CHAINS`` for SGHMC
        and NUTS, 1 for any other method.
    """
    if num_chains is not None:
        return num_chains
    return METHODS[method].default_chains


checkpoint_option = click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
                                 help="Save the sampler state here as it runs (sghmc, svgd), "
                                      "so an interrupted run can continue.")
resume_option = click.option("--resume", type=click.Path(exists=True, dir_okay=False),
                             default=None, help="Continue the run saved in this checkpoint.")


def out_option(command: str):
    """``--out``: the run folder; by default a new ``runs/<command>-<date>-<time>``."""
    return click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help=f"New folder for this run's files (default: "
                             f"{RUNS_DIR}/{command}-<date>-<time>).")


def max_rank_option(default, *, per_dim: bool = True, default_text: str | None = None):
    """``--max-rank``: an int, or (``per_dim``) a comma list with one per rank dimension;
    ``default_text`` describes a default that depends on other options (``default`` None)."""
    words = "Int or comma list per rank dim." if per_dim else "Largest rank."
    return click.option("--max-rank", type=RankType() if per_dim else POSITIVE, default=default,
                        show_default=default_text is None,
                        help=words if default_text is None else f"{words}  [default: {default_text}]")


def steps_option(default=None, help: str = "Optimization steps (map, vi) or SVGD steps."):
    """``--steps``: a positive number of steps or updates."""
    return click.option("--steps", type=POSITIVE, default=default, show_default=default is not None,
                        help=help)


def run_options(command: str):
    """``--seed``, ``--out``, ``--force`` and ``--report/--no-report`` of a command that runs."""

    def decorate(f):
        for option in (report_option, force_option, out_option(command), seed_option):
            f = option(f)
        return f

    return decorate


def open_run_dir(out: Path | None, command: str, force: bool) -> Path:
    """Make the run folder (see :func:`~bayestensor.report.rundir.prepare_run_dir`); call it
    after the inputs are validated and before any fitting. The command's context remembers it,
    so that an interrupted or diverged run's draws are saved there (``errors.save_partial``)."""
    path = prepare_run_dir(out if out is not None else timestamped_dir(RUNS_DIR, command),
                           force=force)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[RUN_DIR_KEY] = path
    return path


def convergence(post, heldout=None) -> dict | None:
    """The chains' check on identified quantities (``Posterior.diagnostics()``) of a
    Markov-chain run, for its summary and console line; ``None`` for MAP, VI and SVGD.

    ``heldout``: indices or inputs of the run's held-out points, whose first
    ``N_KEY_ENTRIES`` are the predicted entries checked, as the report checks them. A run
    that drew until its chains passed their check (:mod:`bayestensor.infer.stopping`) also
    gets ``draws_until_converged``: the draws per chain it took, where the memory bound
    on kept draws stopped it, ``stopped_at_memory_bound``: the bytes they hold, and
    ``monitored_entries``: its check of some 1,000 predicted entries
    (:func:`~bayestensor.results.convergence.monitored_entries`), which ``converged`` then
    includes; every run gets ``draws``, the draws per chain (the advice for chains that fail
    depends on it).
    """
    if not post.is_markov_chain:
        return None
    entries = None if heldout is None else np.asarray(heldout)[:N_KEY_ENTRIES]
    check = post.diagnostics(entries=entries)
    out = {key: check[key] for key in ("checked", "max_rhat", "min_ess_bulk", "min_ess_tail",
                                       "rhat_threshold", "ess_threshold", "converged")}
    out["draws"] = post.num_draws
    checks = post.info.get("convergence_checks")
    if checks:  # SGHMC drew until its chains passed their check
        out["draws_until_converged"] = post.num_draws
        if checks[-1].get("stopped") == "memory":
            out["stopped_at_memory_bound"] = checks[-1]["kept_bytes"]
        entries = monitored_entries(post)
        if entries is not None:
            out["monitored_entries"] = entries
            out["converged"] = out["converged"] and entries["converged"]
    return out


@contextmanager
def chains_echoed():
    """Around ``fit`` in a command that prints the chains' check (:func:`echo_convergence`):
    ``fit``'s :class:`~bayestensor.infer.ChainsNotConvergedWarning` would say it twice."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ChainsNotConvergedWarning)
        yield


def echo_convergence(check: dict | None, indent: str = "") -> None:
    """One line: the worst R-hat and smallest bulk ESS, and whether that is converged."""
    if check is None:
        return
    entries = check.get("monitored_entries")
    verdict = "converged" if check["converged"] else (
        f"NOT converged (wanted R-hat <= {check['rhat_threshold']} and bulk ESS >= "
        f"{check['ess_threshold']:.0f}, with 2 or more chains): "
        f"{convergence_advice(worst_rhat(check['max_rhat'], entries), check.get('draws'))}")
    on_entries = "" if entries is None else f"; {entries_words(entries)}"
    drawn = check.get("draws_until_converged")
    bound = check.get("stopped_at_memory_bound")
    bound = "" if bound is None else (f"; stopped there, holding {bound / 2 ** 30:.2f} GiB, at "
                                      "the memory bound on kept draws: thin=2 spans twice the "
                                      "steps in it")
    drawn = "" if drawn is None else (f" ({drawn:,} draws per chain, drawn until converged"
                                      f"{bound})")
    click.echo(f"{indent}chains: max R-hat {check['max_rhat']:.3f}, min bulk ESS "
               f"{check['min_ess_bulk']:.0f} over the {check['checked']}{on_entries}{drawn}: "
               f"{verdict}")


def show_progress(quiet: bool) -> bool:
    """Whether a command shows progress bars: not with ``--quiet``, and only on a terminal,
    so that a log file or a scheduler's output does not fill with carriage-return redraws."""
    return not quiet and sys.stderr is not None and sys.stderr.isatty()


def echo_report(out: Path, with_report: bool) -> None:
    """Write and announce the report of the run in ``out`` when asked for."""
    if with_report:
        click.echo(f"report: {make_report(out)['html']}")


class NumberList(click.ParamType):
    """A comma list of positive numbers (``integers`` for whole numbers only)."""

    name = "list"

    def __init__(self, integers: bool = False):
        self.integers = integers

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return list(value)
        kind = "integers" if self.integers else "numbers"
        try:
            vals = [float(p) for p in str(value).split(",") if p.strip()]
        except ValueError:
            self.fail(f"expected comma-separated positive {kind}, got {value!r}", param, ctx)
        if (not vals or any(not math.isfinite(v) or v <= 0 for v in vals)
                or (self.integers and any(v != int(v) for v in vals))):
            self.fail(f"expected comma-separated positive {kind}, got {value!r}", param, ctx)
        return [int(v) for v in vals] if self.integers else vals

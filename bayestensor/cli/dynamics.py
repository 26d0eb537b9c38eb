"""``bayestensor dynamics``: the standard learning-dynamics studies, each writing a report.

Sub-commands ``fa-vs-gd``, ``overparam``, ``diagonal`` and ``all`` run the studies of
:mod:`bayestensor.dynamics.pipelines` into ``--out``.
"""

from __future__ import annotations

import click

from bayestensor.dynamics.pipelines import run_all, run_diagonal, run_fa_vs_gd, run_overparam
from bayestensor.cli import options as opt
from bayestensor.cli.errors import Group

POSITIVE = opt.POSITIVE


@click.group(cls=Group)
def dynamics():
    """Learning-dynamics studies: FA vs GD, rich vs lazy, initialization-scale regimes."""


def _run(study, command: str, out, force: bool, with_report: bool, **settings) -> None:
    """Make the run folder, run ``study`` into it, say what it wrote, and report it. A study
    that refuses its settings (``ValueError`` before it writes) leaves no empty folder (the
    command class removes it, :class:`~bayestensor.cli.errors.Command`)."""
    out = opt.open_run_dir(out, command, force)
    res = study(out, **settings)
    click.echo(f"wrote {out}/: " + ", ".join(res["files"]))
    opt.echo_report(out, with_report)


@dynamics.command("fa-vs-gd")
@click.option("--seeds", type=POSITIVE, default=10, show_default=True)
@click.option("--n", type=POSITIVE, default=30, show_default=True)
@click.option("--m", type=POSITIVE, default=20, show_default=True)
@click.option("--rank", type=POSITIVE, default=5, show_default=True, help="Rank of Y.")
@click.option("--r-low", type=POSITIVE, default=3, show_default=True)
@click.option("--r-high", type=POSITIVE, default=6, show_default=True)
@opt.steps_option(3000, help="Updates per learner.")
@click.option("--bayes/--no-bayes", default=True, show_default=True,
              help="Add the ARD posterior (SGHMC) as a reference.")
@opt.run_options("dynamics-fa-vs-gd")
@opt.quiet_option
def fa_vs_gd_cmd(seeds, n, m, rank, r_low, r_high, steps, bayes, seed, out, force, with_report,
                 quiet):
    """GD, FA and FA* on Y (n x m, rank RANK) with r < rank(Y) and r >= rank(Y)."""
    _run(run_fa_vs_gd, "dynamics-fa-vs-gd", out, force, with_report, seeds=seeds, n=n, m=m,
         rank=rank, r_low=r_low, r_high=r_high, steps=steps, bayes=bayes, seed=seed,
         progress=opt.show_progress(quiet))


@dynamics.command("overparam")
@click.option("--seeds", type=POSITIVE, default=5, show_default=True)
@click.option("--d", type=POSITIVE, default=10, show_default=True)
@click.option("--r", type=POSITIVE, default=2, show_default=True)
@click.option("--m-multiples", type=opt.NumberList(integers=True), default="1,2,5",
              show_default=True, help="m = k r for each k.")
@click.option("--alphas", type=opt.NumberList(), default="0.01,0.03,0.1,0.3", show_default=True)
@click.option("--alpha", type=click.FloatRange(min=0, min_open=True), default=0.03,
              show_default=True, help="alpha of the m sweep.")
@opt.steps_option(1500, help="Updates per learner.")
@opt.run_options("dynamics-overparam")
@opt.quiet_option
def overparam_cmd(seeds, d, r, m_multiples, alphas, alpha, steps, seed, out, force, with_report,
                  quiet):
    """Rich GD vs the lazy model vs wang2020 on a symmetric order-3 tensor."""
    _run(run_overparam, "dynamics-overparam", out, force, with_report, seeds=seeds, d=d, r=r,
         m_multiples=m_multiples, alphas=alphas, alpha=alpha, steps=steps, seed=seed,
         progress=opt.show_progress(quiet))


@dynamics.command("diagonal")
@click.option("--seeds", type=POSITIVE, default=5, show_default=True)
@click.option("--n", type=POSITIVE, default=20, show_default=True)
@click.option("--d", type=POSITIVE, default=50, show_default=True)
@click.option("--k", type=POSITIVE, default=3, show_default=True)
@click.option("--depth", type=click.IntRange(min=2), default=2, show_default=True)
@click.option("--alphas", type=opt.NumberList(), default="0.001,0.01,0.1,0.3,1,3,10",
              show_default=True)
@opt.steps_option(20000, help="Updates per network.")
@opt.run_options("dynamics-diagonal")
@opt.quiet_option
def diagonal_cmd(seeds, n, d, k, depth, alphas, steps, seed, out, force, with_report, quiet):
    """Depth-D diagonal networks on sparse regression across the initialization scale."""
    _run(run_diagonal, "dynamics-diagonal", out, force, with_report, seeds=seeds, n=n, d=d, k=k,
         depth=depth, alphas=alphas, steps=steps, seed=seed,
         progress=opt.show_progress(quiet))


@dynamics.command("all")
@click.option("--seeds", type=POSITIVE, default=5, show_default=True)
@click.option("--bayes/--no-bayes", default=True, show_default=True)
@opt.run_options("dynamics-all")
@opt.quiet_option
def all_cmd(seeds, bayes, seed, out, force, with_report, quiet):
    """Run the three standard studies into OUT/<study>/ and write OUT/summary.md."""
    _run(run_all, "dynamics-all", out, force, with_report, seeds=seeds, bayes=bayes, seed=seed,
         progress=opt.show_progress(quiet))

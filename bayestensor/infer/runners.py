"""The five runners (map, vi, nuts, sghmc, svgd) and one fit in this process.

A runner turns a :class:`LogDensity` and a :class:`Job` (sizes, batching, run control) plus
its own options into a :class:`Posterior`. Each runner is declared once as a :class:`Method`:
its option names with their defaults, its default number of samples and which of ``fit``'s
general settings apply to it; :mod:`bayestensor.infer.api` collects them into ``METHODS``.

Each method's options are checked, all at once, by its function in
:mod:`bayestensor.infer.options` (``Method.check_options``), and those left ``"auto"`` that
depend on the fit are settled by its function in :mod:`bayestensor.infer.auto_options`
(``Method.settle_options``); ``fit`` calls both before any work.

The iterative methods (SGHMC, SVGD) share one run assembly, :func:`_drive`: the
:class:`~bayestensor.infer.driver.Run` loop with progress, checkpoints, interrupts and
divergence checks, started fresh or resumed from a checkpoint of the same run (same data,
seed, sizes and sampler settings: the run's fingerprint).

:func:`run_method` is one local fit: bind model and data, build the log density, run the
method's runner, time it. ``fit`` calls it once, or once per chain group
(:mod:`bayestensor.infer.chains`); the MAP-hold continuation calls it for its validation fits.
"""

from __future__ import annotations

import copy
import math
import platform
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import pyro
import torch

from bayestensor.checks import choice
from bayestensor.infer import options as option_checks
from bayestensor.infer.auto_options import FitPlan, settle_sghmc, settle_svgd, settle_vi
from bayestensor.infer.baselines import (MAX_ROUNDS, NotConvergedWarning, OptimizationInterrupted,
                                         map_fit, nuts_fit, vi_fit)
from bayestensor.infer.binding import bind, check_device
from bayestensor.infer.checkpoints import data_digest
from bayestensor.infer.chain_processes import ChainsInterrupted
from bayestensor.infer.driver import Run, RunInterrupted
from bayestensor.infer.log_density import LogDensity
from bayestensor.infer.options import BLOCK_MODES, kernel_name
from bayestensor.infer.sghmc import MIN_CURVATURE, SGHMC, SGHMCState
from bayestensor.infer.stopping import DrawUntilConverged
from bayestensor.infer.svgd import SVGD, SVGDState
from bayestensor.io import versions
from bayestensor.models.base import BayesModel
from bayestensor.models.cp_variational import Interrupted as CAVIInterrupted
from bayestensor.priors.effective_rank import active_per_dim
from bayestensor.results.posterior import Posterior
from bayestensor.seeds import legacy_seed

#: Largest ``D * n_particles**2`` for which SVGD defaults to per-coordinate kernel blocks
#: (the kernel matrices take ``D * n**2`` floats).
MAX_COORDINATE_BLOCKS = 50_000_000
#: Up to this many unconstrained coordinates SVGD defaults to one kernel over all of them
#: (``blocks="all"``). Per-coordinate kernels are exact on independent coordinates but give a
#: correlated posterior mean-field sds (0.46 of them at correlation 0.9 in 2-D, 100
#: particles); the isotropic kernel follows correlations but shrinks the sds as ``D`` grows
#: (0.96 / 0.92 / 0.83 / 0.65 of them at ``D`` = 2 / 3 / 5 / 10 on independent coordinates;
#: ``docs/benchmarks.md``, "A user's model far from its start").
MAX_ISOTROPIC_DIM = 3
#: SVGD's particles count as settled when the Stein direction ``phi`` is at most this fraction
#: of the sum of its two terms' sizes (``stein_ratio``, :func:`~bayestensor.infer.kernels.
#: svgd_direction`; 0 at a fixed point, near 1 when the pull to high density is not balanced).
#: Full-batch runs at their defaults ended at 0.01-0.05 (the eight schools, non-centred) and
#: 0.04-0.33 (30^3 CP, Tucker and TT, 50^3 CP, 20^3 at 50% observed and IL-2 completions);
#: runs stopped early or going down a spike at 0.82-1.0 (the non-centred form from prior
#: draws after 10-30 steps, the centred form). On mini-batches, judged on all the data:
#: 0.10-0.45 at the defaults (the same completions at 10% and 2% batches, a logistic
#: regression at 10%), 0.97-1.0 after 20-100 steps from prior draws.
SVGD_SETTLED_RATIO = 0.6
#: Jitter (unconstrained) of MAP restarts, which need distinct starts.
RESTART_JITTER = 0.1
#: Rademacher probes x points for the diagonal curvature at a start (SVGD's jitter units,
#: NUTS' and VI's coordinates).
JITTER_PROBE_POINTS = 32
#: Prior draws of vague hyperpriors reach 0 or inf; SVGD's prior start clamps them here
#: (unconstrained).
PRIOR_START_CLAMP = 30.0


@dataclass(frozen=True)
class Method:
    """One inference method: its runner and what it accepts.

    Attributes
    ----------
    name : str
    runner : callable
        ``runner(target, job, **options) -> Posterior`` with every option of ``options``.
    options : mapping
        Option names and their defaults: the method's whole vocabulary of ``**options``.
    default_samples : int
        ``num_samples`` when not given (draws per chain; particles for SVGD).
    default_chains : int
        ``num_chains`` when not given: :data:`SAMPLER_CHAINS` for the Markov-chain samplers,
        whose R-hat needs several chains to compare, 1 for the others (MAP: restarts).
    chains : bool
        The runner runs ``num_chains`` chains (or MAP restarts) as one batch; otherwise each
        chain group is one independent run.
    resumable : bool
        ``checkpoint`` / ``resume`` apply.
    takes_batches : bool
        ``batches`` (mini-batches of model arguments) apply.
    min_samples : int
        Fewest ``num_samples`` the method can run with.
    check : callable
        ``check(options)`` validates every option (the defaults filled in), raising
        ``ValueError`` naming the option (see :mod:`bayestensor.infer.options`).
    map_steps_option : str or None
        The option counting the steps of the method's MAP fit (its result or its start), which
        ``map_hold`` continues; ``None`` when the method fits no MAP.
    settle : callable or None
        ``settle(options, plan)`` fills the options left ``"auto"`` that depend on the model
        and ``fit``'s checked sizes (a :class:`~bayestensor.infer.auto_options.FitPlan`) and
        refuses a value that does not fit them (see :mod:`bayestensor.infer.auto_options`);
        ``None`` when no option does.
    settled : tuple of str
        The options :attr:`settle` resolves from ``"auto"``; :func:`run_method` refuses one
        still ``"auto"``, since only ``fit`` knows the model and sizes that decide it.
    """

    name: str
    runner: Callable
    options: Mapping[str, Any]
    default_samples: int
    chains: bool
    resumable: bool
    takes_batches: bool
    check: Callable[[dict], None]
    min_samples: int = 1
    map_steps_option: str | None = None
    default_chains: int = 1
    settle: Callable[[dict, FitPlan], None] | None = None
    settled: tuple[str, ...] = ()

    def check_options(self, options: dict) -> None:
        """Refuse an option this method does not take (naming it and the ones it does) and
        any bad value (naming the option)."""
        unknown = set(options) - set(self.options)
        if unknown:
            raise ValueError(f"options: {sorted(unknown)} not understood by method "
                             f"{self.name!r}; it takes {sorted(self.options)}")
        self.check({**self.options, **options})

    def settle_options(self, options: dict, plan: FitPlan) -> None:
        """Resolve, in place, the options that depend on the fit (:attr:`settle`).

        Parameters
        ----------
        options : dict
            The caller's options (checked by :meth:`check_options`); settled in place.
        plan : FitPlan
            ``fit``'s checked settings.

        Raises
        ------
        ValueError
            An option whose value does not fit the sizes (SGHMC's ``max_samples`` below
            ``num_samples``).
        """
        if self.settle is not None:
            self.settle(options, plan)

    def require_settled(self, options: dict) -> None:
        """Refuse an option of :attr:`settled` still ``"auto"`` in ``options`` (the method's
        defaults filled in)."""
        for name in self.settled:
            value = options[name]
            if isinstance(value, str) and value == "auto":
                raise ValueError(f"{name}: 'auto' is settled by fit from the model and its "
                                 "sizes; run_method needs the settled value "
                                 "(Method.settle_options)")


@dataclass
class Job:
    """What every runner gets besides its options (see ``fit`` for the meaning of each)."""

    model: BayesModel | None  # the built-in model, bound to its data; None for a custom model
    num_samples: int
    num_warmup: int | None
    num_chains: int
    thin: int
    batch_size: int | None
    batches: list | None
    seed: int
    progress: bool
    checkpoint: str | None
    checkpoint_every: int
    resume: str | None
    info: dict


def _to_posterior(target: LogDensity, theta: torch.Tensor, stats: dict, method: str,
                  job: Job, info: dict | None = None) -> Posterior:
    """Unconstrained draws ``(C, S, D)`` to a :class:`Posterior` in constrained space."""
    c, s, d = theta.shape
    values = target.constrain(theta.reshape(c * s, d))
    for site in target.sites:  # positions a model discards (obs_mask) are no quantity: NaN
        if site.free is not None:
            kept = site.free.reshape(site.shape)
            values[site.name] = torch.where(kept, values[site.name], math.nan)
    samples = {k: v.detach().reshape((c, s) + tuple(v.shape[1:])).cpu() for k, v in values.items()}
    stats = {k: v.detach().cpu() for k, v in stats.items()}
    info = job.info if info is None else info
    saturated = target.saturated_sites(theta.detach(), exempt=_unbounded_sites(target, job))
    if saturated:  # fit warns about them, and they fail the chains' check
        info["saturated_draws"] = {name: int(mask.sum()) for name, mask in saturated.items()}
    return Posterior(samples, stats, method, job.model, info)


def _drive(method: str, target: LogDensity, job: Job, sampler, record: Callable,
           num_steps: int, make_posterior: Callable, start: Callable, *, state_type: type,
           num_chains: int, settings: dict, save_per_step: bool = False,
           extend: Callable | None = None) -> Posterior:
    """The run assembly of the iterative methods: resume from ``job.resume`` or start fresh.

    ``record(state, t)`` picks what a step keeps, ``make_posterior(draws, run_info, state)``
    turns the kept draws and the current state into a posterior and ``start()`` gives the
    first state (not called on resume). ``settings`` (plain values) are the sampler settings
    that a resumed run must share with the checkpoint's run; ``extend`` is the driver's (see
    :class:`~bayestensor.infer.driver.Run`).
    """
    def step(state, t):
        new = sampler.step(state, t)
        return new, new.log_density

    config = {"data": data_digest(target.model_args, target.model_kwargs), "seed": job.seed,
              "num_samples": job.num_samples, "method": method, "num_chains": num_chains,
              "dim": target.dim, "num_steps": num_steps, "batch_size": job.batch_size,
              **settings}
    run = Run(step, record, num_steps, make_posterior,
              lambda state: target.locate_nonfinite(state.theta), target.generator, state_type,
              checkpoint=job.checkpoint, checkpoint_every=job.checkpoint_every,
              progress=job.progress, desc=method, config=config, save_per_step=save_per_step,
              extend=extend)
    if job.resume is not None:
        state, t0, draws = run.resume_from(job.resume)
        return run.run(state, t0, draws)
    return run.run(start())


def _map_rounds(job: Job) -> int:
    """Runs a MAP fit may take (see ``map_fit``): one for a built-in model, whose start is built
    from the data near its optimum and whose step budget its tests and studies were set with
    (the convergence rule still warns); up to ``MAX_ROUNDS`` for a user's model."""
    return 1 if job.model is not None else MAX_ROUNDS


def _unbounded_sites(target: LogDensity, job: Job) -> list[str]:
    """Sites whose MAP sits on a support boundary by design: the slice scales of a built-in
    model or of a ``bt.low_rank_tensor`` in a user's model (a slice switched off by the
    shrinkage prior has scale 0), exempt from the MAP's convergence rule and its spike and
    rise tests, and from the saturation count."""
    prior = job.model.low_rank_prior if job.model is not None else None
    if prior is not None:
        return list(prior.hyper_sites)
    return [site.name for site in target.sites if site.switch_off]


def _switched_off_hypers(target: LogDensity, job: Job) -> Callable | None:
    """For a built-in low-rank model: a function of a location ``theta`` ``(D,)`` giving, as a
    boolean ``(D,)``, the coordinates of the slice hyper-parameters of the slices switched off
    there (the effective-rank rule, :func:`~bayestensor.priors.effective_rank.active_per_dim`),
    exempt from VI's drift rule (``vi_fit``'s ``settled``); ``None`` for a user's model."""
    model = job.model
    prior = model.low_rank_prior if model is not None else None
    if prior is None:
        return None
    sites = {site.name: site for site in target.sites}

    def settled(theta: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            values = target.constrain(theta.reshape(1, -1))
            active = active_per_dim(model.slice_scales(values), signal=model.rank_signal(values))
        out = torch.zeros(target.dim, dtype=torch.bool, device=theta.device)
        for name, on in zip(prior.hyper_sites, active):
            site = sites[name]
            off = ~on.reshape(-1).to(theta.device)
            out[site.offset:site.offset + site.size] = (off if site.free_index is None
                                                        else off[site.free_index])
        return out

    return settled


def map_hands_over(model) -> bool:
    """Whether a full-batch MAP of ``model`` hands over from Adam to L-BFGS (see ``map_fit``),
    or to its block ascent, by default: for a built-in model whose low-rank prior has one slice
    variance per entry (CP). Otherwise it runs on Adam alone, and several fits of it run as
    one batch (:func:`run_map_rows`).

    Under Tucker and TT priors L-BFGS measured slower than Adam (a curved valley; see
    ``one_scale_per_entry``). A user's model keeps Adam alone: where its density rises to the
    boundary of the support, L-BFGS runs into the clamp of a transform (a sigmoid at float
    ``tiny``), where the gradient is zero and it looks converged; Adam's drift rule warns.
    """
    prior = model.low_rank_prior if isinstance(model, BayesModel) else None
    return prior is not None and prior.one_scale_per_entry


def _block_ascent(target: LogDensity, job: Job, wanted="auto"):
    """The model's closed-form block ascent for a full-batch MAP on the CPU (see
    ``map_fit``): a built-in model's that offers one (CP completion, or a Gaussian scalar CP
    regression, under the gamma prior), when ``wanted`` is ``"auto"`` or ``True``; ``None``
    otherwise. ``True`` where the model, the batch or the device does not allow it is a
    ``ValueError``."""
    return _model_closed_form(
        target, job, "block_ascent", wanted,
        "block_ascent: True needs a full-batch MAP on the CPU of a model with closed-form "
        "block updates (TensorCompletion, or a Gaussian scalar-response TensorRegression, in "
        "CP format under the gamma prior); use 'auto' or False")


def _model_closed_form(target: LogDensity, job: Job, offer: str, wanted, refusal: str):
    """``job.model.<offer>()`` (a built-in model's closed-form updates) for a full-batch fit on
    the CPU when ``wanted`` is ``"auto"`` or ``True``; ``None`` otherwise, or where the model
    offers none. ``True`` where they cannot run raises ``ValueError(refusal)``."""
    make = getattr(job.model, offer, None)
    usable = make is not None and job.batch_size is None and target.device.type == "cpu"
    updates = make() if usable and wanted else None
    if wanted is True and updates is None:
        raise ValueError(refusal)
    return updates


def _start_objective(target: LogDensity, job: Job, method: str) -> LogDensity:
    """The log density whose mode starts ``method``: ``target``'s, or SGHMC's for a built-in
    model that asks for it (:attr:`~bayestensor.models.BayesModel.sghmc_start_noncentred`: a
    Gaussian regression under the log-uniform or half-Cauchy prior), that of the non-centred
    parametrization, ``target``'s plus the low-rank prior's standardizing log Jacobian, on the
    same coordinates."""
    model = job.model
    if method != "sghmc" or model is None or not model.sghmc_start_noncentred \
            or target.fast_log_joint is None:
        return target
    prior = model.low_rank_prior
    job.info["start_objective"] = "non-centred"
    joint = target.fast_log_joint
    noncentred = copy.copy(target)
    noncentred.fast_log_joint = lambda values, subsample: (
        joint(values, subsample) + prior.standardizing_log_jacobian(values))
    return noncentred


def _map_start(target: LogDensity, job: Job, map_steps: int, map_hold, num_points: int,
               method: str) -> tuple[torch.Tensor, bool]:
    """``(num_points, D)`` starting points of a sampler: the MAP, from the model's start; and
    whether they are that MAP (``False``: prior draws, see below). SGHMC's, for a Gaussian
    regression under the log-uniform or half-Cauchy prior, is the non-centred
    parametrization's mode (:func:`_start_objective`).

    A MAP that has not converged (sites still moving: no interior mode, such as a Beta(0.3,
    0.7) whose density rises to its boundary, or an optimum out of reach; or a spike, where
    float stopped an optimizer on a density that rises without bound,
    :func:`~bayestensor.infer.mode_checks.spiked_sites`) is a poor start, and a warning names
    the sites. A user's model then starts from prior draws instead. A built-in
    model keeps the MAP point: its start is built from the data, and its vague hyperpriors
    make prior draws a worse start.
    """
    objective = _start_objective(target, job, method)
    # a model's closed-form block ascent climbs the joint density, not the non-centred one
    block_ascent = _block_ascent(target, job) if objective is target else None
    try:
        theta, trace = map_fit(objective, target.init_theta(1), num_steps=map_steps,
                               batch_size=job.batch_size, progress=job.progress, hold=map_hold,
                               unbounded_sites=_unbounded_sites(target, job), warn=False,
                               max_rounds=_map_rounds(job),
                               quasi_newton=map_hands_over(job.model),
                               block_ascent=block_ascent, rescue=job.model is None)
    except OptimizationInterrupted as err:
        job.info.update(interrupted_at_step=err.steps, interrupted_in="MAP start")
        raise RunInterrupted(f"{method}: interrupted in its MAP start at step {err.steps}, "
                             "before any draw; the point reached is in .posterior (method "
                             "'map')", _map_point(target, job, err.point)[0]) from None
    job.info.update(map_steps=trace["steps"], map_quasi_newton_evals=trace["quasi_newton_evals"],
                    map_finish=trace["finish"], map_converged=trace["converged"])
    if trace["converged"]:
        return theta.expand(num_points, -1).clone(), True
    instead = "starting from prior draws instead" if job.model is None else \
        "starting there anyway (raise map_steps)"
    if trace.get("not_a_mode"):
        found = f"the MAP start is no start: {trace['not_a_mode']}"
    else:
        found = (f"the MAP start did not converge in {trace['steps']} steps (sites "
                 f"{trace['moving_sites']} were still moving: no interior mode, or an optimum "
                 "out of reach)")
    warnings.warn(f"{method}: {found}; {instead}", NotConvergedWarning, stacklevel=4)
    if job.model is not None:
        return theta.expand(num_points, -1).clone(), True
    job.info["start"] = "prior draws (MAP not converged)"
    return _prior_draws(target, num_points), False


# --- MAP, VI, NUTS ----------------------------------------------------------------------------

def run_map(target: LogDensity, job: Job, *, num_steps, lr, init_jitter, map_hold,
            quasi_newton, block_ascent) -> Posterior:
    """MAP from ``num_chains`` restarts as one batch; the best restart is the one draw.

    ``quasi_newton``: hand over from Adam to L-BFGS (see ``map_fit``); ``"auto"`` does for the
    models where it measured faster (:func:`map_hands_over`). ``block_ascent``: at the
    hand-over, the model's closed-form block ascent instead of L-BFGS (``"auto"``: where the
    model has one, see :func:`_block_ascent`; ``False``: L-BFGS).
    """
    if quasi_newton == "auto":
        quasi_newton = map_hands_over(job.model)
    # made only where used (it sorts the data per mode), or where True must be checked
    ascent = (_block_ascent(target, job, block_ascent)
              if quasi_newton or block_ascent is True else None)
    if block_ascent is True and not quasi_newton:
        raise ValueError("block_ascent: the block ascent takes over from Adam where L-BFGS "
                         "would; it needs quasi_newton 'auto' or True, got False")
    if init_jitter is None:
        init_jitter = RESTART_JITTER if job.num_chains > 1 else 0.0
    theta0 = target.init_theta(job.num_chains, jitter=init_jitter)
    try:
        theta, trace = map_fit(target, theta0, num_steps=num_steps, lr=lr,
                               batch_size=job.batch_size, progress=job.progress, hold=map_hold,
                               unbounded_sites=_unbounded_sites(target, job),
                               max_rounds=_map_rounds(job), quasi_newton=quasi_newton,
                               block_ascent=ascent, rescue=job.model is None)
    except OptimizationInterrupted as err:
        job.info.update(interrupted_at_step=err.steps)
        raise RunInterrupted(f"map: interrupted at step {err.steps}; the point reached (not "
                             "the optimum) is in .posterior",
                             _map_point(target, job, err.point)[0]) from None
    job.info.update(map_steps=trace["steps"], map_quasi_newton_evals=trace["quasi_newton_evals"],
                    map_finish=trace["finish"], map_objective=trace["objective"][-1],
                    map_converged=trace["converged"])
    post, logp = _map_point(target, job, theta)
    job.info["restarts_log_joint"] = logp.tolist()
    return post


def _map_point(target: LogDensity, job: Job,
               theta: torch.Tensor) -> tuple[Posterior, torch.Tensor]:
    """The best of the restarts ``theta`` ``(C, D)`` by log joint, as a one-draw ``"map"``
    posterior, and every restart's log joint."""
    with torch.no_grad():
        logp = target.log_joint(target.constrain(theta)).detach()
    best = int(logp.argmax())
    stats = {"log_joint": logp[best].reshape(1, 1)}
    return _to_posterior(target, theta[best:best + 1].unsqueeze(1), stats, "map", job), logp


def run_map_rows(model: BayesModel, data, starts: list[dict], holds: list, *, options: dict,
                 seed: int = 0, batch_size: int | None = None,
                 progress: bool = False) -> list[Posterior]:
    """MAP fits of a built-in model from several starts, each with its own hold, as one batch.

    One :class:`Posterior` per start, each the fit that ``run_method(MAP, model, data,
    options={**options, "map_hold": hold}, init=start)`` makes alone (to float rounding)
    where that fit runs on Adam alone (not :func:`map_hands_over`): Adam's update is
    elementwise, the rows' log densities are independent, and each row stops, is checked
    and is polished on its own (:func:`~bayestensor.infer.baselines.map_fit`). On a small
    model a step costs the overhead of its operations, not their size, so three fits take
    about the time of one (``map_hold="auto"``'s validation fits on Tucker and TT).

    Raises
    ------
    ValueError
        A model whose MAP hands over from Adam (:func:`map_hands_over`), or ``starts`` and
        ``holds`` of different lengths.
    """
    if map_hands_over(model):
        raise ValueError("run_map_rows: this model's MAP hands over from Adam to L-BFGS or its "
                         "block ascent; fit each start with run_method")
    if len(starts) != len(holds) or not starts:
        raise ValueError(f"starts, holds: expected one hold per start, got {len(starts)} "
                         f"starts and {len(holds)} holds")
    MAP.check_options(options)
    settings = {**MAP.options, **options}
    target = _seeded_target(model, data, seed=seed, batch_size=batch_size, init=starts[0])
    info = _run_info(MAP, model, seed=seed, num_chains=1, num_samples=1,
                     batch_size=batch_size, options=options)
    job = Job(model, 1, None, len(starts), 1, batch_size, None, seed, progress, None, 100,
              None, info)
    theta0 = torch.cat([target.unconstrain({**target.init_constrained, **start})
                        .reshape(1, target.dim) for start in starts])
    try:
        theta, trace = map_fit(target, theta0, num_steps=settings["num_steps"],
                               lr=settings["lr"], batch_size=batch_size, progress=progress,
                               hold=list(holds), unbounded_sites=_unbounded_sites(target, job),
                               max_rounds=_map_rounds(job), quasi_newton=False)
    except OptimizationInterrupted as err:
        raise RunInterrupted(f"map: interrupted at step {err.steps} of {len(starts)} fits run "
                             "as one batch") from None
    with torch.no_grad():
        logp = target.log_joint(target.constrain(theta)).detach()
    return [_to_posterior(target, theta[c:c + 1].unsqueeze(1),
                          {"log_joint": logp[c].reshape(1, 1)}, "map", job,
                          {**info, "options": {**options, "map_hold": hold},
                           "map_steps": trace["steps"], "map_converged": trace["converged"]})
            for c, hold in enumerate(holds)]


def run_vi(target: LogDensity, job: Job, *, num_steps, lr, num_particles, init_from,
           map_steps, map_hold, closed_form) -> Posterior:
    """Mean-field VI; ``num_samples`` independent draws from the fitted ``q``.

    ``init_from="map"``: ``q`` starts at the MAP point (its continuation ``map_hold``) and is
    fitted in units of the diagonal Laplace sd there (see :func:`vi_fit`); from a MAP that did
    not converge (a warning names the sites), or with ``"init"``, it starts at the model's
    starting values in raw units. ``closed_form``: the model's coordinate-ascent VI instead of
    the stochastic-gradient fit (``"auto"``: where the model has one, see
    :func:`_closed_form_vi`); ``num_steps``, ``lr`` and ``num_particles`` are then unused.
    ``init_from="auto"`` is settled by ``fit`` before any work
    (:func:`~bayestensor.infer.auto_options.settle_vi`).
    """
    updates = _closed_form_vi(target, job, closed_form)
    if updates is not None:
        return _run_closed_form_vi(target, job, updates, init_from, map_steps, map_hold)
    theta0, units = target.init_theta(1), None
    if init_from == "map":
        theta0, at_map = _map_start(target, job, map_steps, map_hold, 1, "vi")
        units = start_sd(target, theta0, job.batch_size) if at_map else None
    try:
        loc, scale, trace = vi_fit(target, theta0, num_steps=num_steps, lr=lr,
                                   num_particles=num_particles, batch_size=job.batch_size,
                                   progress=job.progress, units=units,
                                   settled=_switched_off_hypers(target, job))
    except OptimizationInterrupted as err:
        job.info.update(interrupted_at_step=err.steps)
        raise RunInterrupted(f"vi: interrupted at step {err.steps}; draws from q as it was "
                             "(not fitted) are in .posterior",
                             _vi_draws(target, job, *err.point)) from None
    job.info.update(final_elbo=trace["elbo"][-1], vi_steps=trace["steps"],
                    vi_converged=trace["converged"])
    return _vi_draws(target, job, loc, scale)


def _closed_form_vi(target: LogDensity, job: Job, wanted="auto"):
    """The model's coordinate-ascent VI for a full-batch fit on the CPU (CP completion under
    any of the three rank priors, :mod:`bayestensor.models.cp_variational`) when
    ``wanted`` is ``"auto"`` or ``True``; ``None`` otherwise. ``True`` where the model, the
    batch or the device does not allow it is a ``ValueError``."""
    return _model_closed_form(
        target, job, "closed_form_vi", wanted,
        "closed_form: True needs a full-batch fit on the CPU of a TensorCompletion in CP "
        "format; use 'auto' or False")


def _run_closed_form_vi(target: LogDensity, job: Job, updates, init_from, map_steps,
                        map_hold) -> Posterior:
    """Coordinate-ascent VI from the MAP (or the starting values); ``num_samples`` draws."""
    if init_from == "map":
        theta0, _ = _map_start(target, job, map_steps, map_hold, 1, "vi")
    else:
        theta0 = target.init_theta(1)
    point = {k: v[0] for k, v in target.constrain(theta0).items()}
    try:
        q = updates.fit(point)
    except CAVIInterrupted as err:
        job.info.update(interrupted_at_step=err.q.sweeps)
        raise RunInterrupted(f"vi: interrupted after {err.q.sweeps} sweeps; draws from q as "
                             "it was are in .posterior",
                             _closed_form_draws(target, job, updates, err.q)) from None
    if not q.converged:
        warnings.warn(f"vi: the coordinate ascent did not settle in {q.sweeps} sweeps (ELBO "
                      f"still changing: {q.elbo[-2]:.6g} -> {q.elbo[-1]:.6g})",
                      NotConvergedWarning, stacklevel=4)
    job.info.update(vi_closed_form=True, final_elbo=q.elbo[-1], vi_sweeps=q.sweeps,
                    vi_converged=q.converged, vi_noise_starts=q.noise_starts)
    return _closed_form_draws(target, job, updates, q)


def _closed_form_draws(target: LogDensity, job: Job, updates, q) -> Posterior:
    theta = _q_theta(target, updates, q, job.num_samples)
    return _to_posterior(target, theta.unsqueeze(0), {}, "vi", job)


def _q_theta(target: LogDensity, updates, q, num: int) -> torch.Tensor:
    """``(num, D)`` unconstrained draws of a closed-form VI's ``q`` (the VI method's draws
    and SVGD's particles started from them)."""
    draws = updates.draw(q, num, target.generator)
    return target.unconstrain({k: v.to(target.device) for k, v in draws.items()})


def _vi_draws(target: LogDensity, job: Job, loc: torch.Tensor, scale: torch.Tensor) -> Posterior:
    """``num_samples`` draws from ``q = Normal(loc, scale)`` as a ``"vi"`` posterior."""
    eps = torch.randn((job.num_samples, loc.shape[0]), generator=target.generator,
                      dtype=loc.dtype, device=target.device)
    draws = (loc + scale * eps).unsqueeze(0)  # (1, S, D)
    return _to_posterior(target, draws, {}, "vi", job)


def run_nuts(target: LogDensity, job: Job, *, init_jitter, target_accept,
             max_tree_depth, processes) -> Posterior:
    """Pyro's NUTS on the log density, ``num_chains`` chains in up to ``processes`` worker
    processes, in units of the diagonal Laplace sd at the start (see :func:`nuts_fit`).

    Ctrl-C or SIGTERM raises :class:`RunInterrupted` with a posterior of the chains that
    finished (``None`` when none did)."""
    theta0 = target.init_theta(job.num_chains, jitter=init_jitter)
    warm = job.num_samples if job.num_warmup is None else job.num_warmup
    # nuts_fit refuses sub-sampled models with a clear error: no curvature to measure first
    scale = None if target.subsample_plates else start_sd(target, theta0)
    try:
        draws, diag = nuts_fit(target, theta0, num_samples=job.num_samples, num_warmup=warm,
                               seed=job.seed, progress=job.progress,
                               target_accept=target_accept, max_tree_depth=max_tree_depth,
                               batch_size=job.batch_size, scale=scale, processes=processes)
    except ChainsInterrupted as err:
        post = None if err.partial is None else _nuts_posterior(target, job, *err.partial)
        raise RunInterrupted(f"nuts: interrupted with {len(err.done)} of {job.num_chains} chains "
                             "finished (NUTS cannot resume a chain)", post) from None
    return _nuts_posterior(target, job, draws, diag)


def _nuts_posterior(target: LogDensity, job: Job, draws: torch.Tensor, diag: dict) -> Posterior:
    c, s, d = draws.shape
    with torch.no_grad():
        logp = target.log_density(draws.reshape(c * s, d)).reshape(c, s)
    job.info.update(diag)
    return _to_posterior(target, draws, {"potential": -logp}, "nuts", job)


# --- SGHMC --------------------------------------------------------------------------------------

def _gibbs_conditionals(gibbs, model, factor_redraws: bool, start_at_mode: bool) -> dict | None:
    """SGHMC's exact redraws: the ``gibbs`` dict as given, or with ``True`` the built-in
    model's own (``gibbs_sites(factor_redraws, start_at_mode)``; none for a custom model)."""
    if isinstance(gibbs, dict):
        return gibbs or None
    if not gibbs or model is None:
        return None
    return model.gibbs_sites(factor_redraws, start_at_mode=start_at_mode)


def _slice_groups(scale_moves: bool, model) -> list | None:
    """SGHMC's scale moves: with ``True``, every rank dimension of a built-in CP model's
    low-rank prior; ``ValueError`` for other models. Under Tucker (half-Cauchy, the mixing
    grid's 30^3 case) the moved slices left the step adapted in burn-in unstable: 2 of 3
    runs diverged, in a run made before this refusal."""
    if not scale_moves:
        return None
    prior = model.low_rank_prior if model is not None else None
    if prior is None or prior.format_cls.format_name != "cp":
        raise ValueError("scale_moves: True needs a built-in model in CP format; under "
                         "Tucker the moves made SGHMC diverge")
    return prior.slice_groups()


def _factor_redraws(factor_redraws, model, target: LogDensity, full_batch: bool):
    """SGHMC's exact factor redraws. ``True``: a built-in model's own (``factor_redraws()``:
    CP completion, regression) on the CPU, ``ValueError`` where there are none;
    ``"auto"`` (the default): those of a model that takes them by default
    (``sghmc_factor_redraws``: regression) where they can run (full batch, on the
    CPU), else those of the rows its data leave empty (``empty_row_redraws()``: a
    completion in any format; their conditional is their prior, so any batch and device will
    do), else none; ``False``: none."""
    if isinstance(factor_redraws, str):  # "auto", checked by check_sghmc
        wanted = full_batch and target.device.type == "cpu" and \
            getattr(model, "sghmc_factor_redraws", False)
        if wanted:
            return model.factor_redraws()
        empty_rows = getattr(model, "empty_row_redraws", None)
        return empty_rows() if empty_rows is not None else None
    if not factor_redraws:
        return None
    offer = getattr(model, "factor_redraws", None)
    redraws = offer() if offer is not None and target.device.type == "cpu" else None
    if redraws is None:
        raise ValueError("factor_redraws: True needs a CP TensorCompletion or a "
                         "TensorRegression with scalar responses, on the CPU")
    return redraws


def _redraw_kinds(block_redraws) -> dict:
    """``info``'s ``factor_redraws`` and ``empty_row_redraws``: which block redraws ran (an
    object's ``info_key``; the factor redraws of CP completion and regression have none)."""
    kind = None if block_redraws is None else getattr(block_redraws, "info_key",
                                                          "factor_redraws")
    return {key: kind == key for key in ("factor_redraws", "empty_row_redraws")}


def run_sghmc(target: LogDensity, job: Job, *, lr, friction, noise_estimate, precondition,
              init_jitter, init_from, map_steps, map_hold, adapt_step,
              init_spread, metric, gibbs, scale_moves, factor_redraws,
              max_samples) -> Posterior:
    """SGHMC chains as one batch: warm-up, then ``num_samples`` draws kept every ``thin``, and
    with ``max_samples`` more until the chains pass their check (:mod:`~bayestensor.infer.
    stopping`; ``"auto"`` is settled by ``fit`` before any work)."""
    warm = job.num_samples if job.num_warmup is None else job.num_warmup
    full_batch = job.batch_size is None and job.batches is None
    for name, wanted in (("scale_moves", scale_moves), ("factor_redraws", factor_redraws)):
        if wanted and not isinstance(wanted, str) and not full_batch:  # not "auto"
            raise ValueError(f"{name}: True needs full-batch data (its Metropolis test or "
                             f"conditional reads every observation); drop batch_size")
    block_redraws = _factor_redraws(factor_redraws, job.model, target, full_batch)
    sampler = SGHMC(target, lr=lr, friction=friction, noise_estimate=noise_estimate,
                    precondition=precondition, batch_size=job.batch_size, batches=job.batches,
                    num_warmup=warm, floor_per_site=job.model is None, adapt_step=adapt_step,
                    metric=metric, builtin=job.model is not None,
                    gibbs=_gibbs_conditionals(gibbs, job.model,
                                              _redraw_kinds(block_redraws)["factor_redraws"],
                                              start_at_mode=init_from == "map"),
                    scale_moves=_slice_groups(scale_moves, job.model),
                    block_redraws=block_redraws,
                    start_at_mode=init_from == "map",
                    exact_curvature=None if job.model is None else job.model.gamma_shapes(),
                    hyper_gradient=None if job.model is None else job.model.hyper_gradient(target),
                    prior_precisions=None if job.model is None else job.model.prior_precisions)
    thin, num_chains = job.thin, job.num_chains
    job.info.update(lr=lr, friction=friction, noise_estimate=noise_estimate, num_warmup=warm,
                    thin=thin, precondition=precondition,
                    gibbs_sites=[] if sampler.gibbs is None else sampler.gibbs.names,
                    scale_moves=sampler.scale_moves is not None,
                    **_redraw_kinds(sampler.block_redraws))

    def record(state, t):
        if t < warm or (t - warm) % thin:
            return None
        return {"theta": state.theta.clone(), "potential": -state.log_density,
                "grad_norm": state.grad_norm}

    def make_posterior(draws, run_info, state):
        if not draws:
            return None
        theta = torch.stack([d["theta"] for d in draws], 1)
        scale = state.step_scale if state is not None and state.step_scale is not None else None
        mean_step = float(lr) * (float(scale.mean()) if scale is not None else 1.0)
        stats = {"potential": torch.stack([d["potential"] for d in draws], 1),
                 "grad_norm": torch.stack([d["grad_norm"] for d in draws], 1),
                 "step_size": torch.full((num_chains, len(draws)), mean_step)}
        run_info = {**run_info, "metric": sampler.metric}
        if sampler.prior_cap is not None:
            run_info = {**run_info, "prior_step_caps": sampler.prior_cap.caps}
        if sampler.scale_moves is not None:
            run_info = {**run_info, "scale_move_acceptance": sampler.scale_moves.acceptance}
        if scale is not None and adapt_step:
            run_info = {**run_info, "step_scale": {site.name: float(scale[site.offset].item())
                                                   for site in target.sites}}
        return _to_posterior(target, theta, stats, "sghmc", job, {**job.info, **run_info})

    def start():
        theta0 = target.init_theta(num_chains)
        if init_from == "map":
            # The curvature that sets the preconditioner is measured where the chains start:
            # starting at the mode makes it representative (a far start can leave it too small
            # and the chains unstable once they reach the mode).
            theta0, at_mode = _map_start(target, job, map_steps, map_hold, num_chains, "sghmc")
            # Prior draws are far from the mode, as the starting values are. A user's MAP
            # may be no better a guide: a hierarchical scale's mode at its boundary is flat,
            # so its curvature is floored there and sets a step fit for a posterior sd of 10;
            # on the non-centred eight schools 3 of 4 seeds threw a chain to tau = 0 in float
            # before the first re-estimate at 10% of burn-in. Re-estimated early (once the
            # chains have moved), none did. The non-centred mode is no mode of the target
            # either: from it, without early re-estimates, the four chains of a 0 dB CP
            # regression (benchmarks/log_uniform_start.py, box0db, seed 2) overflowed at
            # step 750.
            if not at_mode or job.model is None or "start_objective" in job.info:
                sampler.start_away_from_mode()
        if init_jitter > 0:
            theta0 = theta0 + init_jitter * torch.randn(theta0.shape, generator=target.generator,
                                                        dtype=theta0.dtype, device=target.device)
        state = sampler.init_state(theta0)
        return sampler.spread(state, init_spread) if init_spread > 0 else state

    extend = None
    if max_samples is not None and int(max_samples) > job.num_samples:
        extend = DrawUntilConverged(make_posterior, job.num_samples, int(max_samples), thin,
                                    job.model, job.info.setdefault("convergence_checks", []))
    job.info["max_samples"] = None if extend is None else int(max_samples)
    settings = dict(lr=lr, friction=friction, noise_estimate=noise_estimate,
                    precondition=precondition, num_warmup=warm, thin=thin,
                    gibbs={} if sampler.gibbs is None else sampler.gibbs.describe(),
                    max_samples=job.info["max_samples"])
    return _drive("sghmc", target, job, sampler, record, warm + job.num_samples * thin,
                  make_posterior, start, state_type=SGHMCState, num_chains=num_chains,
                  settings=settings, extend=extend)


# --- SVGD ---------------------------------------------------------------------------------------

def block_ids(target: LogDensity, model, mode: str) -> torch.Tensor:
    """Block id per coordinate for SVGD's block kernel.

    ``"all"``: one block (isotropic kernel). ``"site"``: one block per latent site.
    ``"slice"``: built-in models split each low-rank parameter by its rank slice (e.g. one block
    per CP factor column), other sites one block each. ``"coordinate"``: every coordinate its
    own block (least variance collapse; memory ``D * n**2``).

    Parameters
    ----------
    target : LogDensity
        The model's batched log density; its ``sites`` give the layout of the ``D``
        coordinates.
    model : BayesModel or callable
        The model being fitted. With ``"slice"``, a built-in model
        (:class:`~bayestensor.models.base.BayesModel`) names the rank axis of each low-rank
        site through ``block_axes()``; any other model gets one block per site.
    mode : {"all", "site", "slice", "coordinate"}
        How the coordinates are grouped (see above).

    Returns
    -------
    torch.Tensor
        Shape ``(D,)``, ``int64``, on the CPU: the block id of each coordinate, numbered from
        0 in site order. Under ``"slice"`` a site whose unconstrained shape differs from its
        constrained one stays a single block.

    Raises
    ------
    ValueError
        If ``mode`` is not one of the four names.
    """
    choice("blocks", mode, BLOCK_MODES)
    ids = torch.zeros(target.dim, dtype=torch.long)
    if mode == "all":
        return ids
    if mode == "coordinate":
        return torch.arange(target.dim)
    axes = model.block_axes() if (mode == "slice" and isinstance(model, BayesModel)) else {}
    next_id = 0
    for site in target.sites:
        span = slice(site.offset, site.offset + site.size)
        axis = axes.get(site.name)
        if axis is None or site.unconstrained_shape != site.shape:
            ids[span] = next_id
            next_id += 1
            continue
        n_slices = site.shape[axis]
        local = torch.arange(n_slices).reshape(
            [n_slices if a == axis else 1 for a in range(len(site.shape))]).expand(site.shape)
        ids[span] = next_id + local.reshape(-1)
        next_id += n_slices
    return ids


def _default_blocks(target: LogDensity, job: Job, num_particles: int) -> str:
    """One kernel for a model of at most ``MAX_ISOTROPIC_DIM`` coordinates; else
    per-coordinate blocks while their kernel matrices fit, else per slice (or site)."""
    if target.dim <= MAX_ISOTROPIC_DIM:
        return "all"
    if target.dim * num_particles**2 <= MAX_COORDINATE_BLOCKS:
        return "coordinate"
    return "slice" if job.model is not None else "site"


def _prior_draws(target: LogDensity, n: int) -> torch.Tensor:
    """``(n, D)`` unconstrained points from forward runs of the model (its prior)."""
    draws = []
    for _ in range(n):
        with pyro.validation_enabled(False):  # a likelihood whose mean overflowed from them
            trace = pyro.poutine.trace(target.model).get_trace(*target.model_args,
                                                               **target.model_kwargs)
        values = {s.name: trace.nodes[s.name]["value"] for s in target.sites}
        draws.append(target.unconstrain(values).clamp(-PRIOR_START_CLAMP, PRIOR_START_CLAMP))
    return torch.stack(draws)


def start_sd(target: LogDensity, theta: torch.Tensor,
             batch_size: int | None = None) -> torch.Tensor:
    """``(D,)`` sd of the diagonal Laplace approximation at the start ``theta`` (averaged over
    its rows), on one mini-batch when the model sub-samples: the units in which NUTS and VI
    move (see :func:`~bayestensor.infer.baselines.nuts_fit` and ``vi_fit``)."""
    subsample = target.draw_subsample(batch_size)
    return _floored_sd(lambda th, k: target.hessian_diag(th, k, subsample=subsample), theta)


def _floored_sd(hessian_diag, theta: torch.Tensor) -> torch.Tensor:
    """``1 / sqrt(curvature)`` from ``hessian_diag(theta, probes)``, a Hutchinson estimate of
    ``JITTER_PROBE_POINTS`` probe-points in all, floored at ``MIN_CURVATURE`` (an sd of at most
    10)."""
    probes = max(1, JITTER_PROBE_POINTS // theta.shape[0])
    return hessian_diag(theta, probes).abs().clamp_min(MIN_CURVATURE).rsqrt()


def laplace_sd(sampler: SVGD, theta: torch.Tensor) -> torch.Tensor:
    """``(D,)`` sd of the diagonal Laplace approximation at ``theta`` (averaged over its rows).

    SVGD's start jitter is measured in these units: a fixed jitter in unconstrained space is
    ten million sds for a site of posterior sd 1e-8, which the particles do not walk back in a
    few hundred steps, and a negligible one for a flat site. The curvature is a Hutchinson
    estimate on the first batch (:func:`_floored_sd`).
    """
    return _floored_sd(lambda th, k: sampler.gradients.hessian_diag(th, 0, k), theta)


def _closed_form_vi_draws(target: LogDensity, job: Job, num: int) -> torch.Tensor:
    """``(num, D)`` independent draws of the closed-form VI fitted from the model's starting
    values (SVGD's ``init_from="vi"``), unconstrained; the fit's ELBOs go to ``job.info``."""
    updates = _closed_form_vi(target, job, True)
    point = {k: v[0] for k, v in target.constrain(target.init_theta(1)).items()}
    try:
        q = updates.fit(point)
    except CAVIInterrupted:
        raise RunInterrupted("svgd: interrupted while fitting the closed-form VI that starts "
                             "the particles, before any SVGD step") from None
    job.info.update(start_vi_elbo=q.elbo[-1], start_vi_sweeps=q.sweeps,
                    vi_noise_starts=q.noise_starts)
    return _q_theta(target, updates, q, num)


def run_svgd(target: LogDensity, job: Job, *, lr, kernel, blocks, optimizer, num_steps,
             init_from, init_jitter, map_steps, final_lr_ratio, map_hold) -> Posterior:
    """SVGD with ``num_samples`` particles, from the closed-form VI's draws, a jittered MAP or
    prior draws."""
    num_particles = job.num_samples
    if blocks is None:
        blocks = _default_blocks(target, job, num_particles)
    ids = block_ids(target, job.model, blocks) if isinstance(blocks, str) else blocks
    sampler = SVGD(target, kernel=kernel, blocks=ids, lr=lr, optimizer=optimizer,
                   batch_size=job.batch_size, batches=job.batches, final_lr_ratio=final_lr_ratio,
                   num_steps=num_steps)
    block_name = blocks if isinstance(blocks, str) else "custom"
    job.info.update(num_particles=num_particles, svgd_steps=num_steps, kernel=str(kernel),
                    blocks=block_name, init_from=init_from, init_jitter=init_jitter, lr=lr,
                    optimizer=optimizer)

    def record(state, t):
        return None  # the particles are the state itself

    def make_posterior(draws, run_info, state):
        # At the end, or where the run was interrupted: the particles as they are.
        particles = state.theta
        job.info.update(final_kernel_stats=state.stats)
        if sampler.gradients.is_stochastic:
            job.info["full_batch_stein_ratio"] = sampler.full_batch_stein_ratio(state)
        with torch.no_grad():
            logp = target.log_density(particles).unsqueeze(0)
        return _to_posterior(target, particles.unsqueeze(0), {"log_density": logp}, "svgd", job,
                             {**job.info, **run_info})

    def start():
        if init_from == "prior":
            return sampler.init_state(_prior_draws(target, num_particles))
        if init_from == "vi":
            return sampler.init_state(_closed_form_vi_draws(target, job, num_particles))
        theta, at_map = _map_start(target, job, map_steps, map_hold, num_particles, "svgd")
        noise = torch.randn(theta.shape, generator=target.generator, dtype=theta.dtype,
                            device=target.device)
        if not at_map:  # prior draws: no mode to measure a scale at
            return sampler.init_state(theta + init_jitter * noise)
        scale = laplace_sd(sampler, theta)
        return sampler.init_state(theta + init_jitter * scale * noise, scale)

    settings = dict(lr=lr, kernel=kernel_name(kernel), blocks=block_name, optimizer=optimizer,
                    final_lr_ratio=final_lr_ratio)
    post = _drive("svgd", target, job, sampler, record, num_steps, make_posterior, start,
                  state_type=SVGDState, num_chains=num_particles, settings=settings,
                  save_per_step=True)
    _check_svgd_settled(post.info, sampler.gradients.is_stochastic)
    return post


def _check_svgd_settled(info: dict, stochastic: bool) -> None:
    """Whether SVGD's particles ended near a fixed point: ``info["svgd_converged"]``, the
    ratio it was judged on (``info["svgd_settled_ratio"]``), and a
    :class:`NotConvergedWarning` when not. On mini-batches the ratio is taken on all the data
    at the final particles (``info["full_batch_stein_ratio"]``): a mini-batch's own reads
    0.69-0.91 on converged completions by gradient noise alone, where all the data read
    0.10-0.45. ``None`` where no ratio is known (a user's ``batches``; a checkpoint written
    before the ratio was kept)."""
    if stochastic:
        ratio = info.get("full_batch_stein_ratio")
    else:
        ratio = (info.get("final_kernel_stats") or {}).get("stein_ratio")
    if ratio is None:
        info["svgd_converged"] = None
        return
    ratio = float(ratio)
    info["svgd_settled_ratio"] = ratio
    info["svgd_converged"] = ratio <= SVGD_SETTLED_RATIO
    if not info["svgd_converged"]:
        warnings.warn(f"svgd: the particles did not settle in {info['svgd_steps']} steps: the "
                      f"Stein direction is {ratio:.0%} of the size of its two terms (the pull "
                      f"to high density and the repulsion, which cancel at a fixed point; "
                      f"settled at <= {SVGD_SETTLED_RATIO:.0%}"
                      f"{', on all the data' if stochastic else ''}), so the draws are not yet "
                      "the posterior's. Raise num_steps, or start nearer the posterior "
                      "(init_from); a ratio that rises with more steps is a density that rises "
                      "without bound (a spike), which no number of steps fixes",
                      NotConvergedWarning, stacklevel=5)


# --- the registry entries -----------------------------------------------------------------------

#: Chains of SGHMC and NUTS when ``num_chains`` is not given: enough for R-hat to compare them
#: (one chain is never called converged). SGHMC runs its chains as one batch: on a 30^3 CP
#: completion (rank 3, 20% observed, max rank 8, one thread) four took 4.9 s and one 4.8 s. NUTS
#: runs them in one worker process each, as many at once as there are cores.
SAMPLER_CHAINS = 4

MAP = Method("map", run_map, {"num_steps": 2000, "lr": 0.02, "init_jitter": None,
                              "map_hold": None, "quasi_newton": "auto",
                              "block_ascent": "auto"},
             default_samples=1, chains=True, resumable=False, takes_batches=False,
             check=option_checks.check_map, map_steps_option="num_steps")
VI = Method("vi", run_vi, {"num_steps": 3000, "lr": 0.01, "num_particles": 8,
                           "init_from": "auto", "map_steps": 2000, "map_hold": None,
                           "closed_form": "auto"},
            default_samples=1000, chains=False, resumable=False, takes_batches=False,
            check=option_checks.check_vi, map_steps_option="map_steps", settle=settle_vi,
            settled=("init_from",))
NUTS = Method("nuts", run_nuts, {"init_jitter": 0.0, "target_accept": 0.8, "max_tree_depth": 10,
                                 "processes": "auto"},
              default_samples=500, chains=True, resumable=False, takes_batches=False,
              check=option_checks.check_nuts, default_chains=SAMPLER_CHAINS)
SGHMC_METHOD = Method(
    "sghmc", run_sghmc,
    {"lr": 0.01, "friction": 0.1, "noise_estimate": "auto", "precondition": True,
     "init_jitter": 0.0, "init_from": "map", "map_steps": 2000, "map_hold": None,
     "adapt_step": True, "init_spread": 1.0, "metric": "auto", "gibbs": True,
     "scale_moves": False, "factor_redraws": "auto", "max_samples": "auto"},
    default_samples=1000, chains=True, resumable=True, takes_batches=True,
    check=option_checks.check_sghmc, map_steps_option="map_steps",
    default_chains=SAMPLER_CHAINS, settle=settle_sghmc, settled=("max_samples",))
SVGD_METHOD = Method(
    "svgd", run_svgd,
    {"lr": 0.05, "kernel": "rbf", "blocks": None, "optimizer": "adagrad", "num_steps": 500,
     "init_from": "auto", "init_jitter": 0.1, "map_steps": 2000, "final_lr_ratio": 0.01,
     "map_hold": None},
    default_samples=100, chains=False, resumable=True, takes_batches=True,
    check=option_checks.check_svgd, min_samples=2, map_steps_option="map_steps",
    settle=settle_svgd, settled=("init_from",))
ALL_METHODS = (MAP, VI, NUTS, SGHMC_METHOD, SVGD_METHOD)


# --- one local fit ------------------------------------------------------------------------------

def run_method(method: Method, model, data=None, *, options: dict, seed: int = 0,
               num_samples: int | None = None, num_warmup: int | None = None,
               num_chains: int = 1, thin: int = 1, batch_size: int | None = None, batches=None,
               init="svd", progress: bool = True, checkpoint=None, checkpoint_every: int = 100,
               resume=None, model_args=(), model_kwargs: dict | None = None,
               device=None) -> Posterior:
    """One fit in this process with settings already checked by ``fit``.

    ``options`` are the caller's method options (recorded in ``info["options"]``), those
    that depend on the fit already settled (``Method.settle_options``); the method's defaults
    fill the others.
    """
    method.check_options(options)
    settings = {**method.options, **options}
    method.require_settled(settings)
    device = check_device(device)
    target = _seeded_target(model, data, seed=seed, batch_size=batch_size, init=init,
                            model_args=model_args, model_kwargs=model_kwargs, device=device)
    num_samples = num_samples or method.default_samples
    info = _run_info(method, model, seed=seed, num_chains=num_chains, num_samples=num_samples,
                     batch_size=batch_size, options=options)
    bound = model if isinstance(model, BayesModel) else None
    job = Job(bound, num_samples, num_warmup, num_chains, thin, batch_size,
              None if batches is None else list(batches), seed, progress,
              None if checkpoint is None else str(checkpoint), checkpoint_every,
              None if resume is None else str(resume), info)
    start = time.perf_counter()
    post = method.runner(target, job, **settings)
    post.info["seconds"] = time.perf_counter() - start
    return post


def _seeded_target(model, data, *, seed: int, batch_size, init, model_args=(),
                   model_kwargs=None, device=None) -> LogDensity:
    """The log density of ``model`` bound to ``data``, with Python's, NumPy's legacy and
    torch's generators seeded first (the start may draw from them)."""
    pyro.set_rng_seed(legacy_seed(seed))
    torch.manual_seed(seed)
    fn, args, kwargs, init_values, fast = bind(model, data, model_args, model_kwargs,
                                               batch_size, init, seed, device)
    return LogDensity(fn, args, kwargs, init_values=init_values, fast_log_joint=fast,
                      seed=seed, device=device)


def _run_info(method: Method, model, *, seed: int, num_chains: int, num_samples: int,
              batch_size, options: dict) -> dict:
    """A fit's record: its method and sizes, the versions, and a built-in model's settings."""
    info = {"method": method.name, "seed": int(seed), "num_chains": num_chains,
            "num_samples": num_samples, "batch_size": batch_size, "options": dict(options),
            **versions(), "machine": platform.machine()}
    if isinstance(model, BayesModel):
        info["model"] = model.config()
    return info

"""MAP, mean-field VI and NUTS on the same batched log density.

* ``map_fit`` maximizes the log joint of the constrained values (no log-Jacobian), which is
  exactly the objective of Pyro's ``SVI`` with an ``AutoDelta`` guide (a test checks the two
  agree); it runs on the model's fast path and optimizes several restarts as one batch.
* ``vi_fit`` is mean-field Gaussian VI in unconstrained space (Pyro's ``AutoNormal`` family)
  with the reparameterized ELBO estimated from ``num_particles`` draws at once.
* ``nuts_fit`` hands the log density to Pyro's NUTS (as ``potential_fn``, its negative),
  one chain per worker process where cores allow.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import pyro
import torch
from pyro.infer import MCMC, NUTS
from tqdm.auto import tqdm, trange

from bayestensor.infer.chain_processes import ChainsInterrupted, chain_workers, run_chains
from bayestensor.infer.interrupts import sigterm_as_interrupt
from bayestensor.infer.log_density import LogDensity
from bayestensor.infer.mode_checks import rise_text, rising_sites, spike_text, spiked_sites
from bayestensor.seeds import legacy_seed

#: MAP and VI decay Adam's learning rate geometrically to this fraction of it over a run.
FINAL_LR_FRACTION = 0.1
#: A run that ends with coordinates still travelling is continued from where it stopped, its
#: learning-rate schedule restarted, up to this many runs in all (then a warning names the
#: sites). Adam moves a coordinate by at most about ``lr`` per step, so one run of the default
#: 2000 MAP steps travels about 16 unconstrained units; four reach about 60.
MAX_ROUNDS = 4
#: A coordinate whose net displacement over the last window of a run exceeds this fraction of
#: the farthest Adam can move it there (the sum of the window's learning rates) is still on its
#: way: near an optimum Adam's steps change sign and cancel, on the way to one they add up.
DRIFT_FRACTION = 0.5
#: The window: this fraction of a run's steps, at least ``MIN_DRIFT_WINDOW`` of them.
DRIFT_WINDOW_FRACTION = 0.1
MIN_DRIFT_WINDOW = 50
#: VI clips each gradient element to this magnitude before Adam's step (as Pyro's
#: ``ClippedAdam``): the first steps of a far start otherwise carry the variational scales off.
VI_CLIP_VALUE = 10.0
#: Most L-BFGS iterations of the MAP's final polish (each with its line search).
POLISH_ITERATIONS = 100
#: Most L-BFGS evaluations of the rescue of a MAP whose Adam runs left sites moving.
RESCUE_EVALS = 1000
#: A full-batch MAP hands over from Adam to L-BFGS after this fraction of ``num_steps`` (and
#: after any held site is released). Adam's first steps find the basin a shrinkage prior's
#: pruning leads to (L-BFGS from the start can settle in a shallower optimum where every slice
#: is kept); from there a quasi-Newton method converges in a few hundred evaluations where
#: Adam, whose steps stay about ``lr`` in size, takes thousands.
QUASI_NEWTON_AFTER = 0.05
#: The hand-over's L-BFGS may take this fraction of ``num_steps`` in evaluations. One that has
#: not converged by then (a long curved valley, as Tucker's and TT's products of slice
#: variances make) is dropped and the MAP runs Adam from the start, as a mini-batch MAP does.
QUASI_NEWTON_BUDGET = 0.15
#: L-BFGS has converged when two iterations in a row change the objective by less than this,
#: relative: ten times the resolution of a float32 objective, a floor Adam's ``tol`` rule
#: reaches only by averaging over many steps.
QUASI_NEWTON_TOL = 1e-6
#: Most evaluations of one L-BFGS iteration (its strong Wolfe line search included).
LINE_SEARCH_EVALS = 25
#: A model's closed-form block ascent, when it replaces L-BFGS after the Adam phase, has
#: converged when a sweep changes the objective by less than this, relative (its sweeps run
#: in float64, so it can resolve what a float32 objective cannot).
BLOCK_ASCENT_TOL = 1e-7
#: ... and may take this fraction of ``num_steps`` in sweeps (L-BFGS's budget, in sweeps);
#: Adam then goes on from where they stopped. Most fits take 3-20 sweeps. In a slow ALS
#: "swamp" the sweeps creep for hundreds (IL-2: 811; the first 12 of the kinetic tensor's 64
#: measurements: 987, a sweep there costing about ten Adam steps), where half of ``num_steps``
#: made the kinetic fit five times slower than the Adam-only fit it replaced.
BLOCK_ASCENT_BUDGET = QUASI_NEWTON_BUDGET
#: With a model's block ascent, a ``hold`` of its noise precision alone is served in sweeps,
#: from the start and without Adam steps: the noise precision stays at its start for this many
#: sweeps while the slice precisions prune, then is released. In the rank study (7 settings x
#: 3 seeds) it reached the errors and ranks of 200 held Adam steps and then sweeps, in a
#: tenth of the time (docs/benchmarks.md).
HOLD_SWEEPS = 10




class NotConvergedWarning(UserWarning):
    """An optimizer (MAP, VI) stopped while some sites were still moving, or Markov chains
    ended without passing their convergence check (:class:`ChainsNotConvergedWarning`)."""


class ChainsNotConvergedWarning(NotConvergedWarning):
    """SGHMC or NUTS chains ended without passing their convergence check (``fit`` warns with
    the check's numbers and what to do)."""


class SaturatedDrawsWarning(UserWarning):
    """Draws of a run sit where a site's transform saturates in float (a positive value
    rounded to 0), where R-hat cannot see whether the chains mix; most often a chain went down
    a funnel and stayed (:func:`~bayestensor.results.convergence.saturated_message`)."""


class OptimizationInterrupted(KeyboardInterrupt):
    """MAP or VI stopped by Ctrl-C or SIGTERM, with the point it had reached.

    Parameters
    ----------
    point : torch.Tensor or tuple of torch.Tensor
        MAP: the iterate ``theta`` ``(C, D)`` (the last Adam step's, or the start of the
        L-BFGS or block-ascent phase that was interrupted); VI: ``(loc, scale)`` of ``q``.
    steps : int
        Optimizer steps taken.
    """

    def __init__(self, point, steps: int):
        super().__init__(f"interrupted after {steps} steps")
        self.point, self.steps = point, int(steps)


def _decayed_adam(params, lr: float, num_steps: int):
    """Adam with its learning rate decayed to ``FINAL_LR_FRACTION`` over ``num_steps``."""
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: FINAL_LR_FRACTION ** (t / num_steps))
    return opt, sched


def _window(num_steps: int) -> int:
    """Steps at the end of a run over which the drift test looks."""
    return max(1, min(num_steps, max(MIN_DRIFT_WINDOW, int(DRIFT_WINDOW_FRACTION * num_steps))))


def _run_travel(lr: float, num_steps: int, first: int = 0) -> float:
    """The summed learning rates of a decayed run from step ``first`` on (Adam's reach there;
    the whole run by default)."""
    return sum(lr * FINAL_LR_FRACTION ** (t / num_steps) for t in range(first, num_steps))


def _window_travel(lr: float, num_steps: int) -> float:
    """The summed learning rates of the last window of a decayed run (Adam's reach there)."""
    return _run_travel(lr, num_steps, num_steps - _window(num_steps))


def drifting_sites(target: LogDensity, before: torch.Tensor, after: torch.Tensor, travel: float,
                   ignore: Sequence[str] = (), exempt: torch.Tensor | None = None) -> list[str]:
    """Sites with a coordinate (of any chain) that moved over ``DRIFT_FRACTION * travel``.

    ``before`` and ``after`` are ``(..., D)`` positions at the start and end of a window
    whose summed learning rates are ``travel``; sites in ``ignore`` are not tested, nor the
    coordinates where the boolean ``(D,)`` ``exempt`` is true.
    """
    moved = (after - before).abs().reshape(-1, target.dim).amax(0)
    drift = moved > DRIFT_FRACTION * travel
    if exempt is not None:
        drift &= ~exempt.to(drift.device)
    return [s.name for s in target.sites if s.name not in ignore
            and bool(drift[s.offset:s.offset + s.size].any())]


def _warn_not_converged(method: str, sites: list[str], steps: int, advice: str) -> None:
    warnings.warn(f"{method}: not converged after {steps} steps: sites {sites} were still moving "
                  f"at the end ({advice})", NotConvergedWarning, stacklevel=4)


def map_fit(target: LogDensity, theta0: torch.Tensor, *, num_steps: int = 2000, lr: float = 0.02,
            tol: float = 1e-7, batch_size: int | None = None, progress: bool = True,
            patience: int = 50, hold: dict[str, float] | None = None,
            unbounded_sites: Sequence[str] = (), warn: bool = True,
            max_rounds: int = MAX_ROUNDS, quasi_newton: bool = False,
            block_ascent: Callable | None = None,
            rescue: bool = False) -> tuple[torch.Tensor, dict]:
    """Maximize ``log p(x, z)`` over constrained values, from ``theta0`` ``(C, D)``.

    Full batch with ``quasi_newton``: Adam for the first ``QUASI_NEWTON_AFTER`` of
    ``num_steps`` (and until every ``hold`` is released), then L-BFGS with a strong Wolfe line
    search to its own convergence (two iterations that change the objective by less than
    ``max(tol, QUASI_NEWTON_TOL)``, relative); that ends the fit. When L-BFGS has not
    converged within ``QUASI_NEWTON_BUDGET * num_steps`` evaluations, or fails, its result is
    dropped and the fit runs as below from ``theta0``. With ``block_ascent`` (a model's
    closed-form block-coordinate ascent, such as
    :class:`~bayestensor.models.cp_block_ascent.CPGammaBlockAscent`: called with batched
    constrained values, ``max_sweeps`` and ``tol``, it returns ``(values, sweeps,
    converged)``), its sweeps replace L-BFGS, to ``BLOCK_ASCENT_TOL`` within
    ``BLOCK_ASCENT_BUDGET * num_steps`` sweeps; if they have not converged by then, the Adam
    runs below go on from their end point (every sweep raised the objective) instead of
    restarting.

    Otherwise: runs of Adam on the unconstrained vector, each with the learning rate decayed 10x
    over ``num_steps``. A run stops early when the objective improves by less than ``tol``
    (relative) for ``patience`` steps in a row. A run that ends with a coordinate still
    travelling (:func:`drifting_sites`) is continued, up to ``max_rounds`` runs; if sites are
    still moving after that, a :class:`NotConvergedWarning` names them (when ``warn``): the
    optimum is far away, or on the boundary of the support (no interior mode). With ``rescue``
    (full batch), L-BFGS goes on from where the first run stopped (:func:`_rescue`): Adam's
    steps stay about ``lr`` in size, so an optimum 5,000 units away is out of its reach in any
    number of runs, and one line search reaches it; its point is kept only if it lies beyond
    what the remaining runs could reach and converged inside the support
    (:func:`_unsettled_sites`).
    ``unbounded_sites`` are exempt: sites whose optimum is at a boundary by design (a rank
    slice switched off by its shrinkage prior has scale 0). With ``rescue`` (a user's model,
    full batch), an end point that is not a mode is not converged either: some site a spike
    (:func:`~bayestensor.infer.mode_checks.spiked_sites`: a Laplace sd within a few float
    spacings of its value), or
    the density still rising toward a site's edge with the other coordinates re-fitted
    (:func:`~bayestensor.infer.mode_checks.rising_sites`); the trace's ``not_a_mode`` says
    which and, with ``warn``, a :class:`NotConvergedWarning` says so.

    The rows of ``theta0`` are separate fits (restarts, or the candidates of
    ``map_hold="auto"``) run as one batch: each stops when its own objective stalls, is tested
    for drift on its own, and is polished on its own.

    ``hold`` maps site names to a fraction of ``num_steps`` during which that site stays at its
    starting value in the first run (a continuation: e.g. the noise precision held at
    ``1 / Var(y)`` while the rank prior prunes, then released); a list of such dicts (or
    ``None``), one per row of ``theta0``, holds each row its own way (Adam alone: not with
    ``quasi_newton``). With ``block_ascent`` and
    ``quasi_newton``, a hold of the block ascent's noise precision alone is served in sweeps
    instead: ``HOLD_SWEEPS`` sweeps from ``theta0`` with it held, then free sweeps, and no Adam
    step (whatever the fraction). Returns the optimized
    ``theta`` and a trace with ``objective``, ``steps`` (Adam steps), ``quasi_newton_evals``
    (L-BFGS evaluations, or block-ascent sweeps), ``finish`` (``"L-BFGS"``, ``"block ascent"``,
    ``"block ascent, then Adam"``, ``"Adam, then L-BFGS"`` (the rescue) or ``"Adam"``: what
    ended the fit),
    ``converged`` and ``moving_sites``.

    Ctrl-C or SIGTERM raises :class:`OptimizationInterrupted` carrying the point reached: the
    last Adam iterate, or where the previous phase ended when L-BFGS, the block ascent or the
    polish is interrupted.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps: expected a positive integer, got {num_steps}")
    if isinstance(hold, (list, tuple)) and quasi_newton and batch_size is None:
        raise ValueError("hold: a hold per row runs on Adam alone; it needs quasi_newton=False")
    latest = {"theta": theta0.detach().clone(), "steps": 0}
    try:
        with sigterm_as_interrupt():
            theta, trace = _map_fit(target, theta0.detach().clone(), latest,
                                    num_steps=num_steps, lr=lr, tol=tol, batch_size=batch_size,
                                    progress=progress, patience=patience, hold=hold,
                                    unbounded_sites=unbounded_sites, warn=warn,
                                    max_rounds=max_rounds, quasi_newton=quasi_newton,
                                    block_ascent=block_ascent, rescue=rescue)
    except KeyboardInterrupt as err:
        if isinstance(err, OptimizationInterrupted):
            raise
        raise OptimizationInterrupted(latest["theta"], latest["steps"]) from None
    if rescue and batch_size is None and trace["converged"]:
        _check_mode(target, theta, trace, unbounded_sites, warn)
    return theta, trace


def _check_mode(target: LogDensity, theta: torch.Tensor, trace: dict, exempt,
                warn: bool) -> None:
    """A converged end point that is a spike or where the density still rises toward a site's
    edge (:mod:`~bayestensor.infer.mode_checks`) is not a
    mode: ``trace`` says so (``converged`` False, ``not_a_mode`` the words) and, with
    ``warn``, a :class:`NotConvergedWarning`."""
    spikes = spiked_sites(target, theta, exempt)
    found, text = spikes, spike_text(spikes) if spikes else None
    if not spikes:
        found = rising_sites(target, theta, exempt)
        text = rise_text(found) if found else None
    if text is None:
        return
    trace.update(converged=False, moving_sites=sorted(found), not_a_mode=text)
    if warn:
        warnings.warn(f"map: {text}", NotConvergedWarning, stacklevel=4)


def _map_fit(target, theta0, latest: dict, *, num_steps, lr, tol, batch_size, progress,
             patience, hold, unbounded_sites, warn, max_rounds, quasi_newton, block_ascent,
             rescue):
    """The body of :func:`map_fit`; ``latest`` keeps the point each phase ends at, for
    :func:`map_fit` to hand out when the next phase is interrupted."""
    theta, history = theta0, []
    qn_evals, finish = 0, "Adam"
    if batch_size is None and quasi_newton:
        theta, done, qn_evals = _adam_then_quasi_newton(
            target, theta, history, num_steps=num_steps, lr=lr, tol=tol, progress=progress,
            patience=patience, hold=hold, unbounded_sites=unbounded_sites,
            block_ascent=block_ascent)
        latest.update(theta=theta, steps=len(history))
        if done:
            return theta, {"objective": history, "steps": len(history) - 1,
                           "quasi_newton_evals": qn_evals, "converged": True,
                           "moving_sites": [],
                           "finish": "L-BFGS" if block_ascent is None else "block ascent"}
        if block_ascent is None:
            theta, history = theta0.detach().clone(), []
        else:  # Adam goes on from where the sweeps stopped (the hold is served)
            hold, finish = None, "block ascent, then Adam"
    moving: list[str] = []
    open_rows = torch.ones(theta.shape[0], dtype=torch.bool)  # rows another run may move
    for round_ in range(max_rounds):
        theta, before, stalled = _map_run(target, theta, history, num_steps=num_steps, lr=lr,
                                          tol=tol, batch_size=batch_size, progress=progress,
                                          patience=patience, hold=hold if round_ == 0 else None,
                                          active=open_rows)
        latest.update(theta=theta, steps=len(history))
        row_moving = [drifting_sites(target, before[c:c + 1], theta[c:c + 1],
                                     _window_travel(lr, num_steps), unbounded_sites)
                      if open_rows[c] and not stalled[c] else [] for c in range(theta.shape[0])]
        moving = [s.name for s in target.sites if any(s.name in m for m in row_moving)]
        if moving and rescue and batch_size is None and round_ == 0:
            reach = (max_rounds - 1) * _run_travel(lr, num_steps)
            theta, moving, evals = _rescue(target, theta, history, moving, lr=lr, tol=tol,
                                           unbounded_sites=unbounded_sites, reach=reach)
            qn_evals += evals
            latest.update(theta=theta)
            if not moving:
                return theta, {"objective": history, "steps": len(history) - 1,
                               "quasi_newton_evals": qn_evals, "converged": True,
                               "moving_sites": [], "finish": "Adam, then L-BFGS"}
        open_rows = torch.tensor([bool(m) for m in row_moving])
        if not moving:
            break
    if batch_size is None:
        theta = _polish_rows(target, theta, history, settled=~open_rows)
    if moving and warn:
        _warn_not_converged("map", moving, len(history),
                            "their optimum may be on the boundary of the support, with no "
                            "interior mode, or farther than num_steps * lr")
    return theta, {"objective": history, "steps": len(history), "quasi_newton_evals": qn_evals,
                   "converged": not moving, "moving_sites": moving, "finish": finish}


def _adam_then_quasi_newton(target: LogDensity, theta: torch.Tensor, history: list, *,
                            num_steps, lr, tol, progress, patience, hold, unbounded_sites,
                            block_ascent=None) -> tuple[torch.Tensor, bool, int]:
    """The first ``QUASI_NEWTON_AFTER`` of a decayed Adam run, then L-BFGS, then a check.

    Returns L-BFGS's point, whether it converged there, and its number of evaluations.
    A point it converged to is checked as the Adam runs are: ``MIN_DRIFT_WINDOW`` Adam steps
    from it must not drift (:func:`drifting_sites`; ``unbounded_sites`` exempt), so a site
    still rising towards the boundary of its support is not called converged. With
    ``block_ascent``, its sweeps replace L-BFGS and the check (each sweep maximizes every block
    exactly, so where the sweeps stop no block is still rising); the count is of sweeps.
    """
    if block_ascent is not None and _holds_noise_only(hold, block_ascent):
        return _block_ascent(target, theta, history, block_ascent,
                             max_sweeps=max(int(BLOCK_ASCENT_BUDGET * num_steps), 2) + HOLD_SWEEPS,
                             hold_noise_sweeps=HOLD_SWEEPS)
    steps = max(int(QUASI_NEWTON_AFTER * num_steps), 1)
    for fraction in (hold or {}).values():
        steps = max(steps, int(math.ceil(fraction * num_steps)))
    theta, _, _ = _map_run(target, theta, history, num_steps=num_steps, lr=lr, tol=tol,
                           batch_size=None, progress=progress, patience=patience, hold=hold,
                           stop_at=min(steps, num_steps))
    if block_ascent is not None:
        return _block_ascent(target, theta, history, block_ascent,
                             max_sweeps=max(int(BLOCK_ASCENT_BUDGET * num_steps), 2))
    budget = max(int(QUASI_NEWTON_BUDGET * num_steps), 2)
    theta, converged, evals = _quasi_newton(target, theta, history, max_evals=budget,
                                            tol=max(tol, QUASI_NEWTON_TOL))
    converged = converged and not _unsettled_sites(target, theta, lr=lr, tol=tol,
                                                   unbounded_sites=unbounded_sites)
    return theta, converged, evals


def _unsettled_sites(target: LogDensity, theta: torch.Tensor, *, lr: float, tol: float,
                     unbounded_sites: Sequence[str]) -> list[str]:
    """Sites not settled at an L-BFGS point: those ``MIN_DRIFT_WINDOW`` Adam steps from it
    move (:func:`drifting_sites`), so a site still rising towards the boundary of its support
    is not called converged; and those whose transform is saturated there (the constrained
    value maps back to another unconstrained one: a sigmoid or exp clamped at the boundary,
    where the gradient is zero and no step moves). ``unbounded_sites`` are exempt."""
    probe, before, _ = _map_run(target, theta, [], num_steps=MIN_DRIFT_WINDOW, lr=lr, tol=tol,
                                batch_size=None, progress=False, patience=MIN_DRIFT_WINDOW,
                                hold=None)
    moving = drifting_sites(target, before, probe, _window_travel(lr, MIN_DRIFT_WINDOW),
                            unbounded_sites)
    saturated = target.saturated_sites(theta, exempt=unbounded_sites)
    return sorted(set(moving) | set(saturated))


def _rescue(target: LogDensity, theta: torch.Tensor, history: list, moving: list[str], *,
            lr: float, tol: float, unbounded_sites: Sequence[str], reach: float):
    """L-BFGS from where an Adam run left ``moving`` sites: ``(point, sites still moving,
    evaluations)``. Its point replaces Adam's only if it converged, no worse, settled
    (:func:`_unsettled_sites`) and farther than ``reach``, the distance the remaining Adam runs
    could travel; otherwise Adam's point and ``moving`` stand, and the runs go on as without
    the rescue. (Within reach, a shrinkage prior's funnel also reads as a site still moving;
    L-BFGS settles there on a flat shelf, short of where Adam's runs go, and a sampler
    started on that shelf diverged: ``docs/priors.md``'s user model.)"""
    kept = len(history)
    point, converged, evals = _quasi_newton(target, theta, history, max_evals=RESCUE_EVALS,
                                            tol=max(tol, QUASI_NEWTON_TOL))
    far = float((point - theta).abs().max()) > reach
    if far and converged and not _unsettled_sites(target, point, lr=lr, tol=tol,
                                                  unbounded_sites=unbounded_sites):
        return point, [], evals
    del history[kept:]
    return theta, moving, evals


def _holds_noise_only(hold: dict | None, block_ascent) -> bool:
    """Whether ``hold`` holds just the block ascent's noise precision (for some steps)."""
    held = {name for name, fraction in (hold or {}).items() if fraction > 0}
    return bool(held) and held == {getattr(block_ascent, "noise_site", None)}


def _block_ascent(target: LogDensity, theta: torch.Tensor, history: list, block_ascent, *,
                  max_sweeps: int, hold_noise_sweeps: int = 0) -> tuple[torch.Tensor, bool, int]:
    """A model's block ascent from ``theta``: ``(point, converged, sweeps)``.

    Its point is kept when the objective there, in the target's precision, is finite and no
    worse than at the start (up to float32 rounding); otherwise the start, not converged.
    Sweeps that hold the noise precision (``hold_noise_sweeps``) may lower the objective on
    the way, so after them only a finite end point is required.
    """
    with torch.no_grad():
        start_values = target.constrain(theta)
        before = float(target.log_joint(start_values).sum())
        values, sweeps, converged = block_ascent(start_values, max_sweeps=max_sweeps,
                                                 tol=BLOCK_ASCENT_TOL,
                                                 hold_noise_sweeps=hold_noise_sweeps)
        point = target.unconstrain(values)
        after = float(target.log_joint(target.constrain(point)).sum())
    slack = QUASI_NEWTON_TOL * max(1.0, abs(before))
    worse = after < before - slack and not hold_noise_sweeps
    if not (math.isfinite(after) and torch.isfinite(point).all()) or worse:
        return theta, False, sweeps
    history.append(after)
    return point, converged, sweeps


def _lbfgs_objective(target: LogDensity, x: torch.Tensor):
    """The closure PyTorch's L-BFGS calls: ``-log p`` at ``x``, its gradient left in ``x.grad``.

    Out of the support in float (a non-finite objective) it returns ``inf`` with a zero
    gradient, which tells the line search that the point is worse.
    """
    def closure():
        x.grad = None
        loss = -target.log_joint(target.constrain(x)).sum()
        if not torch.isfinite(loss):
            x.grad = torch.zeros_like(x)
            return torch.tensor(math.inf)
        loss.backward()
        return loss.detach()

    return closure


def _quasi_newton(target: LogDensity, theta: torch.Tensor, history: list, *, max_evals: int,
                  tol: float) -> tuple[torch.Tensor, bool, int]:
    """L-BFGS (strong Wolfe line search) from ``theta``: ``(point, converged, evaluations)``.

    Converged: two iterations in a row changed the objective by less than ``tol`` times its
    size, or a fresh start of L-BFGS (a steepest-descent line search) cannot move, within
    ``max_evals`` evaluations, at a finite objective no worse than the start's. An iteration
    that cannot move with its curvature memory restarts L-BFGS without it. (PyTorch's own
    ``tolerance_change`` is absolute and also bounds the step, so it cannot express a relative
    tolerance on the objective; the loop takes one iteration per call.)
    """
    start = theta.detach().clone()
    x = start.clone().requires_grad_(True)

    def fresh_lbfgs():
        # max_eval bounds each call's line search too (PyTorch's default would allow none)
        return torch.optim.LBFGS([x], lr=1.0, max_iter=1, max_eval=LINE_SEARCH_EVALS,
                                 history_size=20, tolerance_grad=0.0, tolerance_change=0.0,
                                 line_search_fn="strong_wolfe")

    closure = _lbfgs_objective(target, x)
    opt, fresh, spent = fresh_lbfgs(), True, 0
    values, converged = [], False
    try:
        while not converged and spent + opt.state[x].get("func_evals", 0) < max_evals:
            was = x.detach().clone()
            value = -float(opt.step(closure))  # the objective where this step began
            if torch.equal(x.detach(), was):  # no step: restart without curvature memory
                converged = fresh
                spent += opt.state[x]["func_evals"]
                opt, fresh = fresh_lbfgs(), True
                continue
            fresh = False
            values.append(value)
            converged = len(values) >= 3 and all(
                abs(a - b) <= tol * max(1.0, abs(b)) for a, b in zip(values[-3:], values[-2:]))
    except (RuntimeError, ValueError):
        return start, False, spent + int(opt.state[x].get("func_evals", 0))
    evals = spent + int(opt.state[x].get("func_evals", 0))
    with torch.no_grad():
        before = float(target.log_joint(target.constrain(start)).sum())
        after = float(target.log_joint(target.constrain(x.detach())).sum())
    if not (math.isfinite(before) and math.isfinite(after)) or after < before:
        return start, False, evals
    history.append(after)
    return x.detach(), converged, evals


def _polish_rows(target: LogDensity, theta: torch.Tensor, history: list,
                 settled: torch.Tensor) -> torch.Tensor:
    """:func:`_polish` of each ``settled`` row of ``theta`` ``(C, D)`` on its own (the rows
    are independent fits: one line search over their sum would move them together); the
    summed objective is appended to ``history`` when a polish improved a row."""
    rows, improved = [], False
    for c in range(theta.shape[0]):
        polished = []
        rows.append(_polish(target, theta[c:c + 1], polished) if settled[c] else theta[c:c + 1])
        improved = improved or bool(polished)
    theta = torch.cat(rows)
    if improved:
        with torch.no_grad():
            history.append(float(target.log_joint(target.constrain(theta)).sum()))
    return theta


def _polish(target: LogDensity, theta: torch.Tensor, history: list) -> torch.Tensor:
    """L-BFGS (strong Wolfe line search) from Adam's end point, kept only if it improves.

    Adam's steps stay about ``lr`` in size, so it circles an optimum at that distance however
    sharp the optimum is; a quasi-Newton method with a line search closes the gap (to the
    gradient tolerance) in a few dozen iterations of the full-batch objective.
    """
    start = theta.detach().clone()
    with torch.no_grad():
        before = float(target.log_joint(target.constrain(start)).sum())
    x = start.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=POLISH_ITERATIONS, history_size=20,
                            tolerance_grad=0.0, tolerance_change=0.0,
                            line_search_fn="strong_wolfe")

    closure = _lbfgs_objective(target, x)
    try:
        opt.step(closure)
    except (RuntimeError, ValueError):
        return start
    with torch.no_grad():
        after = float(target.log_joint(target.constrain(x.detach())).sum())
    if not math.isfinite(after) or after < before:
        return start
    history.append(after)
    return x.detach()


def _map_run(target: LogDensity, theta0: torch.Tensor, history: list, *, num_steps, lr, tol,
             batch_size, progress, patience, hold, active: torch.Tensor | None = None,
             stop_at: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One decayed Adam run of :func:`map_fit` on the rows of ``theta0`` ``(C, D)``; appends
    the summed objective to ``history``.

    Each row is its own fit: it stops, and stays where it stopped, when its objective stalls
    (the ``tol`` rule); rows not ``active`` stay at their start. The learning rate decays over
    ``num_steps``; the run ends after ``stop_at`` of them when given, or when every active row
    has stalled. Returns the end point, the point at the start of the drift window, and which
    rows stalled.
    """
    held = _held_coordinates(target, hold or {}, num_steps, theta0.shape)
    if active is None:
        active = torch.ones(theta0.shape[0], dtype=torch.bool)
    theta = theta0.detach().clone().requires_grad_(True)
    opt, sched = _decayed_adam([theta], lr, num_steps)
    window_start = num_steps - _window(num_steps)
    before = theta.detach().clone()
    bar = trange(num_steps if stop_at is None else stop_at, desc="map", disable=not progress,
                 leave=False)
    try:
        return _adam_steps(target, theta, history, bar, opt, sched, held, before,
                           window_start=window_start, tol=tol, batch_size=batch_size,
                           patience=patience, active=active)
    except KeyboardInterrupt:
        raise OptimizationInterrupted(theta.detach().clone(), len(history)) from None


def _adam_steps(target, theta, history, bar, opt, sched, held, before, *, window_start, tol,
                batch_size, patience, active):
    """The steps of :func:`_map_run`; ``theta`` is updated in place.

    Adam's update is elementwise and each row's log density depends on that row alone, so
    the rows move as separate fits would; a row that is done is put back after each step
    (Adam's momentum would carry it on)."""
    rows = theta.shape[0]
    # in float64 on the host, as the objective's Python floats were before rows
    best = torch.full((rows,), -math.inf, dtype=torch.float64)
    stall = torch.zeros(rows, dtype=torch.long)
    done, stalled = ~active.cpu(), torch.zeros(rows, dtype=torch.bool)
    held_rows = [(until, mask.any(-1).cpu()) for until, mask in held]
    frozen = theta.detach().clone()
    for t in bar:
        if t == window_start:
            before = theta.detach().clone()
        opt.zero_grad()
        values = target.constrain(theta)
        sub = target.draw_subsample(batch_size)
        obj = target.log_joint(values, sub)
        if not bool(torch.isfinite(obj).all()):
            raise FloatingPointError(
                f"map: objective is not finite at step {len(history)} "
                f"({target.locate_nonfinite(theta)}); lower lr")
        (-obj.sum()).backward()
        for until, mask in held:
            if t < until:
                theta.grad[mask] = 0.0
        opt.step()
        sched.step()
        if done.any():
            with torch.no_grad():
                theta[done] = frozen[done]
        total = obj.detach().double().cpu()
        history.append(float(total.sum()))
        improved = ~torch.isfinite(best) | (total > best + tol * best.abs())
        best = torch.where(improved & ~done, total, best)
        stall = torch.where(improved, 0, stall + 1)
        if batch_size is None:
            held_now = torch.zeros_like(done)
            for until, rows_held in held_rows:
                if t < until:
                    held_now |= rows_held
            now = ~done & (stall >= patience) & ~held_now
            if now.any():
                done, stalled = done | now, stalled | now
                frozen[now.to(frozen.device)] = theta.detach()[now.to(frozen.device)]
        if done.all():
            break
    return theta.detach(), before, stalled


def _held_coordinates(target, hold, num_steps: int, shape) -> list:
    """``[(steps held, boolean mask over the (C, D) coordinates)]`` for ``map_fit(hold=...)``:
    ``hold`` a dict for every row, or a list of one dict (or ``None``) per row."""
    if isinstance(hold, dict):
        per_row = [(slice(None), hold)]
    elif len(hold) != shape[0]:
        raise ValueError(f"hold: expected one per row, {shape[0]} in all, got {len(hold)}")
    else:
        per_row = list(enumerate(hold))
    out = []
    for rows, row_hold in per_row:
        for name, fraction in (row_hold or {}).items():
            sites = [s for s in target.sites if s.name == name]
            if not sites:
                raise ValueError(f"hold: no latent site {name!r}; sites are {target.site_names}")
            if not 0 <= fraction <= 1:
                raise ValueError(f"hold[{name!r}]: expected a fraction in [0, 1], got {fraction}")
            site = sites[0]
            mask = torch.zeros(shape, dtype=torch.bool, device=target.device)
            mask[rows, site.offset:site.offset + site.size] = True
            out.append((int(round(fraction * num_steps)), mask))
    return out


def vi_fit(target: LogDensity, theta0: torch.Tensor, *, num_steps: int = 3000, lr: float = 0.01,
           num_particles: int = 8, init_scale: float = 0.01, batch_size: int | None = None,
           progress: bool = True, warn: bool = True, units: torch.Tensor | None = None,
           settled: Callable[[torch.Tensor], torch.Tensor] | None = None,
           ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Mean-field Gaussian VI in unconstrained space; returns ``(loc, scale, info)``.

    With ``units`` ``(D,)`` (the diagonal Laplace sd at the start), ``q`` is optimized in
    ``theta / units``: Adam moves every coordinate by about ``lr`` whatever its gradient, so in
    raw units a site of posterior sd ``1e-8`` would end ``1e-4`` from its mean and with a scale
    that took 14 units of ``log_scale`` to reach. A diagonal rescaling keeps ``q`` mean-field,
    and ``init_scale`` is then in those units.

    ELBO = E_q[log p(x, theta) + log|J|] + entropy(q), with ``q = Normal(loc, scale)`` per
    coordinate, estimated with ``num_particles`` reparameterized draws evaluated as one batch.
    Adam with gradient elements clipped at ``VI_CLIP_VALUE`` and the learning rate decayed 10x
    over ``num_steps``; runs are continued while a location or scale is still travelling
    (as in :func:`map_fit`), and a :class:`NotConvergedWarning` names the sites still moving
    after ``MAX_ROUNDS`` runs. ``settled(loc)`` (``loc`` ``(D,)`` in raw units) may name the
    coordinates, boolean ``(D,)``, whose travel does not count at that location: a built-in
    model's slice hyper-parameters of the slices the fit switches off, whose optimum ``q``
    lies far up a funnel that Adam climbs by about ``lr`` a step (a TT under the gamma prior:
    4 runs, 12,000 steps, the held-out error and coverage as after one run; see
    ``docs/benchmarks.md``, "Mean-field VI's rounds"). Ctrl-C or SIGTERM raises
    :class:`OptimizationInterrupted` carrying ``(loc, scale)`` as they were.
    """
    units = torch.ones_like(theta0.reshape(-1)) if units is None else units.to(theta0)
    loc = theta0.detach().reshape(-1) / units
    log_scale = torch.full_like(loc, math.log(init_scale))
    history: list[float] = []
    moving: list[str] = []
    for _ in range(MAX_ROUNDS):
        with sigterm_as_interrupt():
            loc, log_scale, before = _vi_run(target, loc, log_scale, units, history,
                                             num_steps=num_steps, lr=lr,
                                             num_particles=num_particles,
                                             batch_size=batch_size, progress=progress)
        exempt = None if settled is None else settled(loc * units)
        moving = drifting_sites(target, before, torch.stack([loc, log_scale]),
                                _window_travel(lr, num_steps), exempt=exempt)
        if not moving:
            break
    if moving and warn:
        _warn_not_converged("vi", moving, len(history), "raise num_steps or lr")
    return loc * units, log_scale.exp() * units, {"elbo": history, "steps": len(history),
                                  "converged": not moving, "moving_sites": moving}


def _vi_run(target: LogDensity, loc: torch.Tensor, log_scale: torch.Tensor,
            units: torch.Tensor, history: list, *, num_steps, lr, num_particles, batch_size,
            progress):
    """One decayed, clipped Adam run of :func:`vi_fit` on ``q`` in ``theta / units``; appends
    ELBO estimates (up to the constant ``sum(log units)``) to ``history``.

    Returns the new ``loc`` and ``log_scale`` and both stacked at the start of the drift window.
    """
    loc = loc.clone().requires_grad_(True)
    log_scale = log_scale.clone().requires_grad_(True)
    opt, sched = _decayed_adam([loc, log_scale], lr, num_steps)
    window_start = num_steps - _window(num_steps)
    before = torch.stack([loc, log_scale]).detach()
    bar = trange(num_steps, desc="vi", disable=not progress, leave=False)
    try:
        for t in bar:
            if t == window_start:
                before = torch.stack([loc, log_scale]).detach()
            opt.zero_grad()
            eps = torch.randn((num_particles, loc.shape[0]), generator=target.generator,
                              dtype=loc.dtype, device=target.device)
            theta = (loc + log_scale.exp() * eps) * units
            logp = target.log_density(theta, target.draw_subsample(batch_size))
            if not bool(torch.isfinite(logp).all()):
                raise FloatingPointError(f"vi: ELBO is not finite at step {len(history)} "
                                         f"({target.locate_nonfinite(theta.detach())}); lower lr")
            elbo = logp.mean() + log_scale.sum()
            (-elbo).backward()
            for p in (loc, log_scale):
                p.grad.clamp_(-VI_CLIP_VALUE, VI_CLIP_VALUE)
            opt.step()
            sched.step()
            history.append(float(elbo.detach()))
    except KeyboardInterrupt:
        q = (loc.detach() * units, log_scale.detach().exp() * units)
        raise OptimizationInterrupted(q, len(history)) from None
    return loc.detach(), log_scale.detach(), before


def nuts_fit(target: LogDensity, theta0: torch.Tensor, *, num_samples: int, num_warmup: int,
             seed: int, progress: bool = True, target_accept: float = 0.8,
             max_tree_depth: int = 10, batch_size: int | None = None,
             scale: torch.Tensor | None = None, processes="auto") -> tuple[torch.Tensor, dict]:
    """Run Pyro's NUTS on the log density, one chain per row of ``theta0``; returns ``(C, S, D)``.

    With ``scale`` ``(D,)``, NUTS runs on ``u = theta / scale`` and the draws are mapped back.
    Pyro's mass-matrix adaptation (Stan's) starts from the identity and regularizes each
    variance towards ``1e-3``; a site of posterior sd ``1e-8`` in ``theta`` would keep an
    inverse mass ten orders of magnitude too large and pin the step size near its sd, so the
    other sites never move. In the units of the diagonal Laplace sd at the start, every site
    starts near unit scale and the adaptation has only a factor to learn.

    The chains run in ``processes`` forked worker processes (``"auto"``: one per chain, at
    most one per core; see :mod:`bayestensor.infer.chain_processes`), chain ``c`` seeded with
    ``seed + c`` wherever it runs. Workers compute with one thread, so their draws equal a
    sequential run's at one thread (with more threads the sums differ in rounding and the
    chains drift apart: other draws of the same distribution).

    Refuses a sub-sampled model (NUTS needs exact gradients), naming what to change: the
    ``batch_size`` given to ``fit``, or the ``subsample_size`` of the model's own plates.

    Raises
    ------
    ValueError
        A sub-sampled model.
    ChainsInterrupted
        On Ctrl-C or SIGTERM; its ``partial`` holds ``(draws, diagnostics)`` of the chains
        that finished (``None`` when none did).
    """
    if target.subsample_plates:
        plates = sorted(target.subsample_plates)
        if batch_size is not None:
            raise ValueError(f"batch_size: NUTS needs the full data; drop batch_size (it "
                             f"sub-samples plates {plates}) or use method 'sghmc' or 'svgd'")
        raise ValueError(f"method: NUTS needs the full data, but the model sub-samples its own "
                         f"plates {plates} (subsample_size in pyro.plate); remove subsample_size "
                         "there or use method 'sghmc' or 'svgd', which take mini-batches")

    scale = torch.ones_like(theta0[0]) if scale is None else scale.to(theta0)
    num_chains = theta0.shape[0]
    workers = chain_workers(processes, num_chains, theta0.device)

    def potential_fn(params):
        return -target.log_density((params["theta"] * scale).unsqueeze(0))[0]

    def one_chain(c: int):
        pyro.set_rng_seed(legacy_seed(seed + c))
        kernel = NUTS(potential_fn=potential_fn, target_accept_prob=target_accept,
                      max_tree_depth=max_tree_depth, adapt_mass_matrix=True)
        mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=num_warmup,
                    initial_params={"theta": theta0[c].detach() / scale},
                    disable_progbar=not progress or workers > 1)
        mcmc.run()
        diag = mcmc.diagnostics()
        return ((mcmc.get_samples()["theta"] * scale).cpu().numpy(),
                [int(i) for i in diag.get("divergences", {}).get("chain 0", [])],
                float(diag.get("acceptance rate", {}).get("chain 0", float("nan"))))

    bar = tqdm(total=num_chains, desc=f"NUTS, {num_chains} chains in {workers} processes",
               disable=not progress or workers == 1, leave=False)
    try:
        results = run_chains(one_chain, num_chains, workers=workers,
                             on_done=lambda c: bar.update(1))
    except ChainsInterrupted as err:
        done = sorted(err.done)
        err.partial = None
        if done:
            draws, diag = _nuts_result([err.done[c] for c in done], theta0.device, workers)
            err.partial = draws, {**diag, "chains_finished": done}
        raise
    finally:
        bar.close()
    return _nuts_result(results, theta0.device, workers)


def _nuts_result(results: list, device, workers: int) -> tuple[torch.Tensor, dict]:
    """``(draws (C, S, D), diagnostics)`` from the chains' ``(draws, divergent draws,
    acceptance rate)``."""
    draws = torch.stack([torch.from_numpy(r[0]) for r in results]).to(device)
    return draws, {"divergences": [len(r[1]) for r in results],
                   "diverging_draws": [r[1] for r in results],
                   "acceptance_rate": [r[2] for r in results],
                   "nuts_processes": workers}

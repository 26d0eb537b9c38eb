"""Drawing until the chains pass their convergence check (SGHMC's ``max_samples``).

A fixed number of draws is either too few for a slowly mixing posterior or more than a fast one
needs. With ``max_samples`` SGHMC checks its chains when the ``num_samples`` draws are in and
goes on in blocks of half that many until the check passes or ``max_samples`` draws are kept.
The check has two parts, both with a bulk ESS of at least 100 per chain:

* the one the report applies (:func:`~bayestensor.results.convergence.check_chains`: R-hat at
  most 1.01 on the noise precision, the tensor norm and four predicted entries of a built-in
  model; on every site of a Pyro model), so that a run that stops early reads "converged";
* the largest R-hat over :data:`MONITORED_ENTRIES` predicted entries (every entry of a
  smaller tensor) at most :data:`ENTRIES_RHAT_MAX`: the intervals of a whole tensor rely on
  its worst entries, and four entries can agree while others do not. The level is looser
  because it is a maximum: over 1,000 quantities of chains that mix (4 x 1,000
  autoregressive draws) the largest R-hat is 1.010 / 1.014 / 1.019 by noise alone at a bulk
  ESS of 1,340 / 1,008 / 713 each, and 1.005-1.010 at 2,000 draws, where one quantity's
  median is 1.002-1.004 (``benchmarks/rhat_noise_floor.py --quantities 1000``). It sits
  below the 1.02 that a user's own check of other entries applies (the completion grid's
  bar, on 200 held-out entries), because that check reads another sample of the same
  maximum: at 1.02 a run that just passed here read 1.023 there (50^3, rank 10), at 1.015 it
  drew one more block and read 1.010. There are 1,000 entries because a few entries can mix
  far more slowly than the rest: a Tucker run whose 200 checked entries passed at 1,000 draws (bulk
  ESS 1,162 and more) had a held-out entry at ESS 289 and R-hat 1.028; with 1,000 checked it
  drew to 2,500 and its held-out entries read 1.015, ESS 727.

Chains that are apart (R-hat above :data:`~bayestensor.results.convergence.RHAT_APART`) at two
checks in a row stop there: more draws rarely join chains in different modes, and the report
says so. One such check is not enough: slowly mixing chains can read 1.12 at 1,000 draws and
1.04 at 1,500 (a two-output regression on noise), where chains in different modes stay apart.

The checks fall at fixed draw counts (``num_samples``, then every block, and the last draw), so
a run resumed from a checkpoint checks, and stops, where the uninterrupted run does
(:class:`DrawUntilConverged`). The run's verdict is always its last check, made on every draw
it kept.

The kept draws grow with the run, so the blocks stop where the draws would pass
:data:`MAX_KEPT_BYTES` (never before ``num_samples``): a 1000^3 rank-20 CP completion keeps
0.96 MB a draw over four chains, and 4,000 draws per chain would hold 3.8 GB, about three
times that while the posterior is built from them. ``thin`` spans more steps in the same
memory; a ``max_samples`` given as a number is drawn as asked.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from bayestensor.results.convergence import (ESS_PER_CHAIN_MIN, RHAT_APART, RHAT_MAX,
                                             fixed_entries, key_indices, key_variables)
from bayestensor.results.rank_normalized import rhat_and_bulk_ess

#: Predicted entries whose chains are checked, drawn at a fixed seed over the tensor's shape,
#: and the largest R-hat allowed over them.
MONITORED_ENTRIES, ENTRIES_RHAT_MAX = 1000, 1.015
#: ``max_samples="auto"`` with ``num_samples`` not given: at most this many times the default
#: draws (4,000 per chain for SGHMC's 1,000).
MAX_SAMPLES_FACTOR = 4
#: Most bytes the kept draws may hold when ``max_samples`` is ``"auto"`` (all chains: the
#: positions and the per-draw statistics). Building the posterior holds about two more copies.
MAX_KEPT_BYTES = 2 ** 30


def auto_max_samples(model, num_samples, default_samples: int, num_chains: int) -> int | None:
    """What ``max_samples="auto"`` means for one fit.

    Draw until converged (up to :data:`MAX_SAMPLES_FACTOR` times the default draws, and
    within :data:`MAX_KEPT_BYTES`, which :class:`DrawUntilConverged` applies) when the
    caller left ``num_samples`` to the default and there are two chains or more to compare;
    otherwise ``None``: exactly ``num_samples`` draws. A built-in model's check reads its
    identified quantities, a Pyro model's its sites (as the report does). Sites that are not
    identified (a mixture's labels, a network's hidden units) leave chains apart, and chains
    apart at two checks stop (1,500 draws); a Pyro model's chains that mix slowly go on: on the
    non-centred eight schools 4 x 1,000 draws read R-hat 1.03-1.12 (bulk ESS 25-137) over
    12 seeds, 4 x 4,000 read 1.01-1.03 on 11 (ESS 150-430; the twelfth stopped apart).
    """
    if num_samples is not None or num_chains < 2:
        return None
    return MAX_SAMPLES_FACTOR * default_samples


class DrawUntilConverged:
    """The run driver's ``extend``: more SGHMC steps while the chains fail their check.

    Parameters
    ----------
    make_posterior : callable
        ``make_posterior(draws, info, state)`` of the run.
    num_samples : int
        Draws per chain before the first check; blocks of half as many follow.
    max_samples : int
        Most draws per chain; fewer where they would hold more than :data:`MAX_KEPT_BYTES`
        (not fewer than ``num_samples``).
    thin : int
        Steps per kept draw.
    model : BayesModel or None
        The run's built-in model: of a tensor model :data:`MONITORED_ENTRIES` predicted entries
        are checked (:func:`~bayestensor.results.convergence.fixed_entries`), of others none.
    log : list
        Gets one ``{"draws", **chain_check(...)}`` per check; the last one also says why the
        run stopped: ``"stopped"`` is ``"converged"``, ``"apart"``, ``"max_samples"`` or
        ``"memory"`` (with ``"kept_bytes"``, what the draws hold).
    """

    def __init__(self, make_posterior, num_samples: int, max_samples: int, thin: int,
                 model, log: list):
        self.make_posterior = make_posterior
        self.first = int(num_samples)
        self.block = max(1, num_samples // 2)
        self.max_samples = int(max_samples)
        self.last: int | None = None  # the last draw: max_samples or the memory bound
        self.draw_size = 0  # bytes of one kept draw, known at the first call
        self.thin = int(thin)
        self.entries = fixed_entries(model, MONITORED_ENTRIES)
        self.log = log
        self.values: list[tuple] = []  # the checked quantities of the draws seen so far
        self.seen = 0
        self.apart_before = False  # whether the last check found the chains apart

    def __call__(self, draws: list, state) -> int:
        kept = len(draws)
        if self.last is None:
            self.draw_size = draw_bytes(draws[0])
            self.last = min(self.max_samples, max(self.first, MAX_KEPT_BYTES // self.draw_size))
        # A run resumed from a checkpoint starts here with the draws of earlier blocks: their
        # checks (all failed, or the run would have ended) are made again, and a block cut
        # short by the interrupt is finished before the next check, so that the run stops
        # where the uninterrupted one does, with the same checks.
        for point in self._check_points(self.seen + 1, kept - 1):
            if self._stops(draws[:point], state):
                return 0
        due = self._check_points(kept, self.last)[0] if kept <= self.last else kept
        if kept < due:
            return (due - kept) * self.thin
        if self._stops(draws, state):
            return 0
        if kept >= self.last:
            bounded = self.last < self.max_samples
            self.log[-1]["stopped"] = "memory" if bounded else "max_samples"
            if bounded:
                self.log[-1]["kept_bytes"] = kept * self.draw_size
            return 0
        return min(self.block, self.last - kept) * self.thin

    def _check_points(self, low: int, high: int) -> list[int]:
        """The draw counts in ``[low, high]`` at which the chains are checked: ``num_samples``,
        every ``block`` draws after it and the last draw."""
        points = [*range(self.first, self.last, self.block), self.last]
        return [p for p in points if low <= p <= high]

    def _stops(self, draws: list, state) -> bool:
        """Check the chains on ``draws`` (logged); whether the run ends: passed, or apart at
        this check and the one before."""
        kept = len(draws)
        # only the new draws become a posterior: the quantities of the earlier ones are kept
        new = self.make_posterior(draws[self.seen:], {}, state)
        self.values.append(monitored_values(new, self.entries))
        self.seen = kept
        report, wide = (np.concatenate(parts, axis=1) if parts[0] is not None else None
                        for parts in zip(*self.values))
        check = _check(report, wide, new.num_chains)
        self.log.append({"draws": kept, **check})
        worst = max(check["max_rhat"], check.get("entries_max_rhat", -math.inf))
        apart = not (math.isfinite(worst) and worst <= RHAT_APART)
        stays_apart, self.apart_before = apart and self.apart_before, apart
        if check["converged"] or stays_apart:
            self.log[-1]["stopped"] = "converged" if check["converged"] else "apart"
            return True
        return False


def draw_bytes(draw) -> int:
    """Bytes one kept draw holds over all chains: a tensor or array, or a dict of them."""
    if isinstance(draw, dict):
        return sum(draw_bytes(v) for v in draw.values())
    if isinstance(draw, torch.Tensor):
        return draw.numel() * draw.element_size()
    return int(getattr(draw, "nbytes", 0))


def chain_check(posterior, entries=None) -> dict:
    """The two-part check of the module's docstring, by :mod:`~bayestensor.results.
    rank_normalized`.

    Returns ``max_rhat``, ``min_ess_bulk`` (the report's quantities: the same numbers as
    ``posterior.diagnostics()``, non-finite values left out as there) and ``converged``; with
    ``entries``, also ``entries_max_rhat`` and ``entries_min_ess_bulk`` over them, the
    R-hat they are held to, ``entries_rhat_threshold``, their number, ``entries_count``, and
    whether they pass, ``entries_converged``.
    """
    return _check(*monitored_values(posterior, entries), posterior.num_chains)


def monitored_values(posterior, entries=None) -> tuple:
    """The checked quantities' draws: ``(report, wide)``, each ``(chain, draw, quantity)``.

    ``report``: the report's quantities (noise precision, tensor norm, its four entries; every
    site of a Pyro model); ``wide``: the predicted ``entries`` (``None`` without them).
    """
    c, d = posterior.num_chains, posterior.num_draws
    report_entries = key_indices(posterior, None)
    wide = 0 if entries is None or report_entries is None else len(entries)
    together = (report_entries if not wide
                else np.concatenate([report_entries, np.asarray(entries)]))
    arrays = key_variables(posterior, None if together is None else {"indices": together},
                           0 if together is None else len(together))
    columns = {name: a.reshape(c, d, -1) for name, a in arrays.items()}
    monitored = None
    if wide:  # the report's entries first, the monitored ones after them
        entry, k = columns["entry"], len(report_entries)
        columns["entry"], monitored = entry[:, :, :k], entry[:, :, k:]
    return np.concatenate(list(columns.values()), axis=2), monitored


def _check(report: np.ndarray, wide, chains: int) -> dict:
    """Both parts' verdicts on the arrays of :func:`monitored_values`."""
    out = _verdict(report, chains, RHAT_MAX)
    if wide is not None:
        more = _verdict(wide, chains, ENTRIES_RHAT_MAX)
        out = {**out, "entries_max_rhat": more["max_rhat"],
               "entries_min_ess_bulk": more["min_ess_bulk"],
               "entries_rhat_threshold": ENTRIES_RHAT_MAX, "entries_count": wide.shape[2],
               "entries_converged": more["converged"],
               "converged": out["converged"] and more["converged"]}
    return out


def _verdict(draws: np.ndarray, chains: int, rhat_max: float) -> dict:
    """Worst R-hat and bulk ESS of ``(chain, draw, quantity)`` draws and whether both pass."""
    rhat, ess = rhat_and_bulk_ess(draws)
    max_rhat, min_ess = _finite(rhat, np.max), _finite(ess, np.min)
    converged = bool(chains >= 2 and max_rhat <= rhat_max
                     and min_ess >= ESS_PER_CHAIN_MIN * chains)
    return {"max_rhat": max_rhat, "min_ess_bulk": min_ess, "converged": converged}


def _finite(values: np.ndarray, reduce) -> float:
    """``reduce`` over the finite values; NaN when there are none."""
    finite = values[np.isfinite(values)]
    return float(reduce(finite)) if finite.size else float("nan")

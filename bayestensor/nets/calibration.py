"""Networks calibrated on a validation split: the prior's weight, and SGHMC's step size,
temperature and warm-up.

Both choices score candidates by the negative log-likelihood of the (pruned) network or
ensemble on training examples held out from the fit: data the fit did not see, never the test
set. The caller then refits on all the data at the chosen settings
(``fit_net(..., **choice["settings"])``).

**The prior's weight** (:func:`choose_prior_weight`). Under the gamma/ARD prior at its full
weight the tensorized LeNet-5 on mnist10k is under-confident: 12 or 24 epochs of MAP leave it as
soft (test entropy 0.13 nats against the dense CNN's 0.06) and its SVGD ensemble's ECE is 0.026
against 0.007 (``docs/benchmarks.md``). The log prior's weight ``w`` in ``log p(D | theta) + w
log p(theta)`` sets how hard the slices are shrunk; a smaller weight gives sharper networks that
prune less. How much less is a trade the data settle, so the weight is chosen on held-out NLL,
among the candidates that still compress by ``min_ratio`` when the caller needs a ratio.

**SGHMC's settings** (:func:`choose_sghmc_settings`). At its former default settings
(per-datum step ``sghmc_lr`` 0.02, temperature 1, half the epochs of MAP warm-up) the SGHMC
ensembles of tensorized MLPs on mnist10k were under-confident (test entropy 0.23-0.29 nats
against 0.03 for the dense network, ECE 0.033-0.050 against 0.030, ``docs/benchmarks.md``).
Measured on seed 0, the causes differ by format:

* the step: after the same warm-up, CP and Tucker ensembles sampled at step 0.005 or 0.001
  have ECE 0.016-0.030 against 0.034-0.050 at 0.02. The mini-batch gradient noise is a small
  part of the injected noise at 0.02 (median ratio 0.01-0.13 per element), so the extra spread
  is the discretization's, which a temperature barely reaches;
* the warm-up: TT-matrix networks are not yet trained after half the epochs (each chain at
  94% accuracy, entropy 0.23-0.26), and sampling does not finish the training; after 90% of
  the epochs of warm-up the ensemble is at 95.8% (dense: 96.0%).

It therefore scores a small grid of steps, temperatures (a tempered posterior ``p(theta |
D)^(1/T)``, Wenzel et al., ICML 2020) and warm-up shares. The defaults are what these scores
chose among the untempered settings: step 0.001 (``bayestensor.nets.train.SGHMC_LR``) and 90%
of the epochs of warm-up (``BURNIN``); a data set or network unlike the MNIST MLPs they were
chosen on is where the choice earns its cost.

The grid also has the prior's weight (:data:`SGHMC_PRIOR_WEIGHTS`): a temperature cannot stand
in for it. ``bayestensor compress`` at its defaults (three-mode TT-matrix MLP, 10 epochs) gave
under-confident SGHMC ensembles whose ECE was above the dense network's on every seed, and the
grid without weights chose temperature 0.1 and left them so (ECE 0.028-0.048 against
0.018-0.022): at the prior's full weight the draws themselves are soft, and pooling them
spreads the ensemble further. With the weights the grid chose 0.3 on every seed, and the
ensembles were above the dense network on accuracy, NLL and ECE (0.009-0.012), at 59-64x
(``docs/benchmarks.md``, "``bayestensor compress`` at its defaults").
"""

from __future__ import annotations

import copy
import itertools
import time
import warnings

import torch

from bayestensor.checks import choice, positive_int, real_number, seed_value
from bayestensor.nets import metrics
from bayestensor.nets.convert import BayesianNet
from bayestensor.nets.layers import PRUNE_THRESHOLD
from bayestensor.nets.train import EPOCHS, METHODS, fit_net
from bayestensor.seeds import derive_seed

#: Candidate weights of the log prior: the Bayes posterior and three weaker priors, 30x apart
#: in all.
PRIOR_WEIGHTS = (1.0, 0.3, 0.1, 0.03)
#: Candidate per-datum SGHMC steps: the default and two smaller ones, 20x apart in all.
STEP_SIZES = (0.02, 0.005, 0.001)
#: Candidate temperatures: the Bayes posterior and two colder ones, a decade apart in all.
TEMPERATURES = (1.0, 0.3, 0.1)
#: Candidate shares of the epochs spent in the MAP warm-up (TT-matrix MLPs on mnist10k need
#: the longer ones: their chains are not trained after half of 40 epochs).
BURNINS = (0.5, 0.75, 0.9)
#: Candidate weights of the log prior in SGHMC's grid: the Bayes posterior and the weight the
#: SVGD ensembles of the mnist10k MLP chose on every seed. Each weight needs its own warm-ups,
#: so each doubles the grid's cost; 0.1 and 0.03 keep every slice of the MNIST networks (their
#: compression is the caps'), so they are left to a caller's ``prior_weights``.
SGHMC_PRIOR_WEIGHTS = (1.0, 0.3)
#: Share of the training examples held out to score the candidates.
VALIDATION_SHARE = 0.1
#: Settings :func:`choose_sghmc_settings` makes, so they cannot also come in ``fit_options``.
CHOSEN = ("method", "sghmc_lr", "temperature", "burnin", "prior_weight")


def _positive_values(name: str, values, high: float | None = None) -> tuple[float, ...]:
    out = tuple(values) if isinstance(values, (list, tuple)) else ()
    ok = out and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                     and (high is None or v < high) for v in out)
    if not ok:
        bound = f" below {high}" if high is not None else ""
        raise ValueError(f"{name}: expected a non-empty list of positive numbers{bound}, got "
                         f"{values!r}")
    return tuple(float(v) for v in out)


def _check_inputs(bnet, x, y, validation, seed, fit_options, chosen) -> None:
    if not isinstance(bnet, BayesianNet):
        raise ValueError(f"bnet: expected a BayesianNet (see tensorize), got {type(bnet).__name__}")
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or len(x) != len(y):
        raise ValueError("x: expected tensors x and y with one label per example")
    real_number("validation", validation, high=0.5)
    seed_value(seed)
    taken = sorted(set(chosen) & set(fit_options))
    if taken:
        raise ValueError(f"fit_options: {', '.join(taken)} set by the choice")


def _scores(probs: torch.Tensor, y: torch.Tensor) -> dict:
    return {"nll": metrics.nll(probs, y), "ece": metrics.ece(probs, y),
            "accuracy": metrics.accuracy(probs, y)}


def _split(n: int, validation: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    n_val = max(1, round(validation * n))
    if n_val >= n:
        raise ValueError(f"validation: {validation} of {n} examples leaves none to train on")
    gen = torch.Generator().manual_seed(derive_seed(seed, "sghmc-validation"))
    order = torch.randperm(n, generator=gen)
    return order[:n_val], order[n_val:]


def _warmup_plan(burnins: tuple[float, ...], epochs: int) -> dict[float, int]:
    """``{burnin: warm-up epochs}`` (rounded as ``fit_net`` rounds them) for the shares whose
    warm-up is at least one epoch and leaves at least one to sample, one per distinct number
    of epochs."""
    plan = {}
    for b in burnins:
        n_warm = int(round(b * epochs))
        if 1 <= n_warm < epochs and n_warm not in plan.values():
            plan[b] = n_warm
    if not plan:
        raise ValueError(f"burnins: none of {list(burnins)} of {epochs} epochs is a warm-up of "
                         f"at least one epoch that leaves one to sample")
    return plan


def choose_sghmc_settings(bnet: BayesianNet, x: torch.Tensor, y: torch.Tensor,
                          step_sizes=STEP_SIZES, temperatures=TEMPERATURES, burnins=BURNINS,
                          prior_weights=SGHMC_PRIOR_WEIGHTS, min_ratio: float | None = None,
                          validation: float = VALIDATION_SHARE, seed: int = 0,
                          **fit_options) -> dict:
    """The SGHMC step, temperature, warm-up and prior weight whose ensemble has the lowest
    validation NLL.

    One MAP warm-up is run per warm-up share and prior weight (on the training part, as
    :func:`~bayestensor.nets.train.fit_net` runs it), and every step x temperature samples from
    a copy of it (``burnin=0``, the same weight) for the remaining epochs. A grid of ``S``
    steps, ``T`` temperatures, ``W`` warm-ups and ``K`` weights thus costs ``W K`` warm-ups and
    ``S T W K`` sampling phases, not as many whole fits. A candidate's sampling phase draws its
    batches afresh, so its score estimates, rather than reproduces, a one-shot ``fit_net`` at
    those settings.

    Parameters
    ----------
    bnet : BayesianNet
        The untrained network (left untouched: each candidate trains a copy).
    x, y : tensor
        Training inputs and integer labels; ``validation`` of them (drawn with ``seed``) are
        held out to score the candidates.
    step_sizes, temperatures : sequence of float
        Positive candidate ``sghmc_lr`` and ``temperature`` values (default
        :data:`STEP_SIZES`, :data:`TEMPERATURES`).
    burnins : sequence of float
        Candidate warm-up shares in (0, 1) (default :data:`BURNINS`). A share whose warm-up
        rounds to no epoch, to all of them, or to as many as an earlier share's is skipped
        (``scores`` lists what ran); none left is an error.
    prior_weights : sequence of float
        Positive candidate weights of the log prior (default :data:`SGHMC_PRIOR_WEIGHTS`;
        ``[1.0]`` keeps the Bayes posterior's).
    min_ratio : float, optional
        Only candidates whose ensemble (pruned at the end of its warm-up, as ``fit_net``
        prunes SGHMC) compresses the whole model at least this much are eligible. When none
        does, the most compressed candidate is returned, with a warning and
        ``min_ratio_met`` false.
    validation : float in (0, 0.5]
        Share of the examples held out.
    seed : int
        Seed of the split and of every fit.
    **fit_options
        Passed to :func:`~bayestensor.nets.train.fit_net` (``epochs``, ``lr``,
        ``num_samples``, ...); not the settings chosen here (:data:`CHOSEN`).

    Returns
    -------
    dict
        ``settings`` (``{"sghmc_lr", "temperature", "burnin", "prior_weight"}``, ready for
        ``fit_net``), ``scores`` (one dict per candidate: its settings and ``nll``, ``ece``,
        ``accuracy`` on the validation examples and ``model_ratio``), ``min_ratio_met``,
        ``validation_size`` and ``seconds`` (wall time of the choice).
    """
    _check_inputs(bnet, x, y, validation, seed, fit_options, CHOSEN)
    steps = _positive_values("step_sizes", step_sizes)
    temps = _positive_values("temperatures", temperatures)
    warmups = _positive_values("burnins", burnins, high=1.0)
    weights = _positive_values("prior_weights", prior_weights)
    if min_ratio is not None:
        real_number("min_ratio", min_ratio)
    epochs = positive_int("epochs", fit_options.pop("epochs", EPOCHS))
    plan = _warmup_plan(warmups, epochs)
    t0 = time.perf_counter()
    held, kept = _split(len(x), validation, seed)
    x_fit, y_fit, x_val, y_val = x[kept], y[kept], x[held], y[held]
    scores = []
    for weight, (burnin, n_warm) in itertools.product(weights, plan.items()):
        warm = copy.deepcopy(bnet)
        fit_net(warm, x_fit, y_fit, method="map", epochs=n_warm, seed=seed,
                prior_weight=weight, **fit_options)
        for step, temp in itertools.product(steps, temps):
            trial = copy.deepcopy(warm)
            fit_net(trial, x_fit, y_fit, method="sghmc", epochs=epochs - n_warm, burnin=0,
                    sghmc_lr=step, temperature=temp, seed=seed, prior_weight=weight,
                    **fit_options)
            scores.append({"sghmc_lr": step, "temperature": temp, "burnin": burnin,
                           "prior_weight": weight,
                           **_scores(trial.predict_proba(x_val), y_val),
                           "model_ratio": trial.compression()["model_ratio"]})
    best, met = _best_eligible(scores, min_ratio, "candidate of the SGHMC grid")
    settings = {k: best[k] for k in ("sghmc_lr", "temperature", "burnin", "prior_weight")}
    return {"settings": settings, "scores": scores, "min_ratio_met": met,
            "validation_size": len(held), "seconds": time.perf_counter() - t0}


def _best_eligible(scores: list[dict], min_ratio: float | None, what: str) -> tuple[dict, bool]:
    """The lowest-NLL score among those compressing at least ``min_ratio``, and whether any
    did; when none does, the most compressed, with a warning."""
    eligible = [s for s in scores if min_ratio is None or s["model_ratio"] >= min_ratio]
    if eligible:
        return min(eligible, key=lambda s: s["nll"]), True
    best = max(scores, key=lambda s: s["model_ratio"])
    warnings.warn(f"min_ratio: no {what} compresses by {min_ratio}x (best "
                  f"{best['model_ratio']:.1f}x, at {_settings_text(best)}); that one is "
                  "returned", UserWarning, stacklevel=3)
    return best, False


def _settings_text(score: dict) -> str:
    keys = [k for k in ("prior_weight", "sghmc_lr", "temperature", "burnin") if k in score]
    return ", ".join(f"{k} {score[k]:g}" for k in keys)


def choose_prior_weight(bnet: BayesianNet, x: torch.Tensor, y: torch.Tensor,
                        method: str = "map", weights=PRIOR_WEIGHTS, min_ratio: float | None = None,
                        threshold: float = PRUNE_THRESHOLD, validation: float = VALIDATION_SHARE,
                        seed: int = 0, **fit_options) -> dict:
    """The log prior's weight whose pruned network has the lowest validation NLL.

    Every candidate weight trains a copy of ``bnet`` with ``method`` on the training part
    (``fit_net(..., prior_weight=w)``), prunes it at ``threshold`` as
    :meth:`~bayestensor.nets.convert.BayesianNet.prune` does, and is scored on the held-out
    part. A grid of ``K`` weights costs ``K`` fits on ``1 - validation`` of the data.

    Parameters
    ----------
    bnet : BayesianNet
        The untrained network (left untouched: each candidate trains a copy).
    x, y : tensor
        Training inputs and integer labels; ``validation`` of them (drawn with ``seed``) are
        held out to score the candidates.
    method : {"map", "vi", "svgd", "sghmc"}
        The fit the weight is chosen for.
    weights : sequence of float
        Positive candidate weights (default :data:`PRIOR_WEIGHTS`).
    min_ratio : float, optional
        Only weights whose pruned network compresses the whole model at least this much
        (``compression()["model_ratio"]``) are eligible. When none does, the weight of the
        most compressed candidate is returned, with a warning and ``min_ratio_met`` false.
    threshold : float in [0, 1)
        Prune threshold applied to every candidate before scoring.
    validation : float in (0, 0.5]
        Share of the examples held out.
    seed : int
        Seed of the split and of every fit.
    **fit_options
        Passed to :func:`~bayestensor.nets.train.fit_net` (``epochs``, ``lr``, ...); not
        ``method`` or ``prior_weight``.

    Returns
    -------
    dict
        ``settings`` (``{"prior_weight": w}``, ready for ``fit_net``), ``scores`` (one dict
        per weight: ``prior_weight``, ``nll``, ``ece``, ``accuracy`` on the validation
        examples and ``model_ratio``), ``min_ratio_met``, ``validation_size`` and ``seconds``.

    Examples
    --------
    >>> import torch
    >>> from bayestensor.nets import fit_net, tensorize
    >>> x, y = torch.randn(200, 64), torch.randint(0, 10, (200,))
    >>> net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(),
    ...                           torch.nn.Linear(128, 10))
    >>> bnet = tensorize(net, layers=["0"], format="ttm", max_rank=4, num_modes=2,
    ...                  init="random", seed=0)
    >>> choice = choose_prior_weight(bnet, x, y, weights=[1.0, 0.1], epochs=2)
    >>> [s["prior_weight"] for s in choice["scores"]]
    [1.0, 0.1]
    >>> _ = fit_net(bnet, x, y, epochs=2, **choice["settings"])
    """
    _check_inputs(bnet, x, y, validation, seed, fit_options, ("method", "prior_weight"))
    choice("method", method, METHODS)
    candidates = _positive_values("weights", weights)
    if min_ratio is not None:
        real_number("min_ratio", min_ratio)
    real_number("threshold", threshold, high=1.0, low_open=False, high_open=True)
    t0 = time.perf_counter()
    held, kept = _split(len(x), validation, seed)
    scores = []
    for w in candidates:
        trial = copy.deepcopy(bnet)
        fit_net(trial, x[kept], y[kept], method=method, prior_weight=w, seed=seed, **fit_options)
        trial.prune(threshold)
        scores.append({"prior_weight": w, **_scores(trial.predict_proba(x[held]), y[held]),
                       "model_ratio": trial.compression()["model_ratio"]})
    best, met = _best_eligible(scores, min_ratio, f"prior weight of {list(candidates)}")
    return {"settings": {"prior_weight": best["prior_weight"]}, "scores": scores,
            "min_ratio_met": met, "validation_size": len(held),
            "seconds": time.perf_counter() - t0}

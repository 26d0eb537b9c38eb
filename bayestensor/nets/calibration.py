"""SGHMC ensembles calibrated on a validation split: the posterior temperature.

At temperature 1 the SGHMC ensembles of tensorized MLPs on mnist10k are under-confident (test
entropy 0.23-0.29 nats against 0.03 for the dense network, ECE 0.033-0.050 against 0.030,
``docs/benchmarks.md``). A tempered posterior ``p(theta | D)^(1/T)`` with ``T < 1`` (a "cold
posterior", Wenzel et al., ICML 2020) is sharper; :func:`choose_temperature` picks ``T`` among a
few candidates by the ensemble's negative log-likelihood on held-out training examples, so the
choice is made by data the sampler did not see, never by the test set. The caller then refits on
all the data at the chosen temperature (``fit_net(..., temperature=T)``).
"""

from __future__ import annotations

import copy

import torch

from bayestensor.checks import real_number, seed_value
from bayestensor.nets import metrics
from bayestensor.nets.convert import BayesianNet
from bayestensor.nets.train import fit_net
from bayestensor.seeds import derive_seed

#: Candidate temperatures: the Bayes posterior and two colder ones, a decade apart in all.
TEMPERATURES = (1.0, 0.3, 0.1)
#: Share of the training examples held out to score the candidates.
VALIDATION_SHARE = 0.1


def _check_candidates(temperatures) -> tuple[float, ...]:
    values = tuple(temperatures) if isinstance(temperatures, (list, tuple)) else ()
    if not values or not all(isinstance(t, (int, float)) and t > 0 for t in values):
        raise ValueError(f"temperatures: expected a non-empty list of positive numbers, got "
                         f"{temperatures!r}")
    return tuple(float(t) for t in values)


def choose_temperature(bnet: BayesianNet, x: torch.Tensor, y: torch.Tensor,
                       temperatures=TEMPERATURES, validation: float = VALIDATION_SHARE,
                       seed: int = 0, **fit_options) -> dict:
    """The SGHMC temperature whose ensemble has the lowest validation NLL.

    Parameters
    ----------
    bnet : BayesianNet
        The untrained network (left untouched: each candidate trains a copy).
    x, y : tensor
        Training inputs and integer labels; ``validation`` of them (drawn with ``seed``) are
        held out to score the candidates.
    temperatures : sequence of float
        Positive candidate temperatures (default :data:`TEMPERATURES`).
    validation : float in (0, 0.5]
        Share of the examples held out.
    seed : int
        Seed of the split and of every candidate's ``fit_net``.
    **fit_options
        Passed to :func:`~bayestensor.nets.train.fit_net` (``method`` is ``"sghmc"``).

    Returns
    -------
    dict
        ``temperature`` (the choice), ``scores`` (``{T: {"nll", "ece", "accuracy"}}`` on the
        validation examples) and ``validation_size``.
    """
    if not isinstance(bnet, BayesianNet):
        raise ValueError(f"bnet: expected a BayesianNet (see tensorize), got {type(bnet).__name__}")
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or len(x) != len(y):
        raise ValueError("x: expected tensors x and y with one label per example")
    candidates = _check_candidates(temperatures)
    real_number("validation", validation, high=0.5)
    seed_value(seed)
    if "method" in fit_options or "temperature" in fit_options:
        raise ValueError("fit_options: method and temperature are set by choose_temperature")
    n_val = max(1, round(validation * len(x)))
    if n_val >= len(x):
        raise ValueError(f"validation: {validation} of {len(x)} examples leaves none to train on")
    gen = torch.Generator().manual_seed(derive_seed(seed, "temperature-validation"))
    order = torch.randperm(len(x), generator=gen)
    held, kept = order[:n_val], order[n_val:]
    scores = {}
    for t in candidates:
        trial = copy.deepcopy(bnet)
        fit_net(trial, x[kept], y[kept], method="sghmc", temperature=t, seed=seed,
                **fit_options)
        probs = trial.predict_proba(x[held])
        scores[t] = {"nll": metrics.nll(probs, y[held]), "ece": metrics.ece(probs, y[held]),
                     "accuracy": metrics.accuracy(probs, y[held])}
    best = min(scores, key=lambda t: scores[t]["nll"])
    return {"temperature": best, "scores": scores, "validation_size": n_val}

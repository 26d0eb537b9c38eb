"""The MAP-hold continuation: which sites a MAP fit holds at their start, and for how long.

``map_hold={site: fraction}`` keeps a site at its starting value for that fraction of the MAP
steps (see :func:`~bayestensor.infer.baselines.map_fit`); a model may declare a default
(``model.map_hold``) and a candidate (``model.map_hold_candidate``). ``map_hold="auto"``
chooses by held-out error (:func:`choose_map_hold`) between no continuation, the candidate
and, where the model offers it, the noise precision started at the start's residual; the fit
on all the data then starts from the model's start, with the chosen noise start.
"""

from __future__ import annotations

import warnings

import numpy as np
from tqdm.auto import tqdm

from bayestensor.infer.binding import check_batch_size
from bayestensor.infer.driver import RunInterrupted
from bayestensor.infer.runners import (MAP, SVGD_METHOD, Method, map_hands_over,
                                       run_map_rows, run_method)
from bayestensor.seeds import legacy_seed

#: Fewest observations for which ``"auto"`` spares a validation split (below: no continuation).
MIN_OBSERVATIONS_FOR_AUTO = 50


def resolve_map_hold(model, data, method: Method, seed: int, batch_size: int | None,
                     options: dict, progress: bool = False, init="svd") -> tuple:
    """Fill ``options["map_hold"]`` from the model's default and resolve ``"auto"`` in place.

    Only methods that fit a MAP (``method.map_steps_option``) take ``map_hold``. Returns
    ``(choice, init)``: the auto choice (see :func:`choose_map_hold`; ``None`` when nothing was
    chosen) and the start of the fit on all the data (``init`` itself, or the model's start
    with the noise precision at its residual, as a dict of values, when that was chosen). A
    method whose chains start at the starting values themselves (``init_from`` other than
    ``"map"``) fits no MAP: ``"auto"`` then resolves to ``None`` without the validation fits.
    ``progress`` shows the validation fits of ``"auto"``; ``init`` is the start they take.
    """
    if method.map_steps_option is None:
        return None, init
    if "map_hold" not in options:  # a model may declare a default MAP continuation
        options["map_hold"] = getattr(model, "map_hold", None)
    if options["map_hold"] != "auto":
        return None, init
    if options.get("init_from", method.options.get("init_from", "map")) != "map":
        options["map_hold"] = None  # the chains start at the starting values: no MAP to hold
        return None, init
    steps = options.get(method.map_steps_option)
    choice = choose_map_hold(model, data, seed=seed, batch_size=batch_size, num_steps=steps,
                             progress=progress, init=init)
    options["map_hold"] = choice["chosen"]
    if method in (MAP, SVGD_METHOD) and worse_than_the_mean(choice):
        best = min(choice["validation_mse"].values())
        particles = (", and SVGD's particles start there (init_from='map') and keep them"
                     if method is SVGD_METHOD else "")
        warnings.warn(f"map_hold='auto': every MAP fit predicted the validation split worse "
                      f"than the training split's mean does (mean squared error {best:.3g} "
                      f"against {choice['mean_mse']:.3g}): the MAP fits noise with slices "
                      f"these data do not support{particles}. A sampler (method='sghmc'), or "
                      f"for a CP completion the closed-form VI (method='vi', its default), "
                      f"does not", UserWarning, stacklevel=3)
    if choice["noise_start"] == "residual":
        init = model.init_values(seed=legacy_seed(seed), init=init, noise_start="residual")
    return choice, init


def worse_than_the_mean(choice: dict) -> bool:
    """Whether every validation fit of a :func:`choose_map_hold` choice predicted the
    held-out observations worse, by more than its margin, than the training split's mean."""
    if not choice.get("validation_mse") or choice.get("mean_mse") is None:
        return False
    best = min(choice["validation_mse"].values())
    return best > (1 + choice["margin"]) * choice["mean_mse"]


def choose_map_hold(model, data, *, seed: int = 0, validation: float = 0.1,
                    margin: float = 0.02, batch_size: int | None = None,
                    num_steps: int | None = None, progress: bool = False,
                    init="svd") -> dict:
    """Pick a MAP's continuation for a model by held-out error: none, the model's
    ``map_hold_candidate``, or (where ``model.residual_start_candidate``) the noise precision
    started at the start's residual.

    MAP fits on ``1 - validation`` of the observations, one plain and one per candidate; the
    candidate with the lowest mean squared error on the held-out ``validation`` fraction is
    chosen when that error is lower than the plain fit's by more than ``margin`` (relative).
    The hold helps when the plain joint MAP fits noise with extra slices (very noisy data)
    and hurts when it prunes weak real components. The residual start helps where the plain
    MAP switches off real components before its noise precision, started at ``1 / Var(y)``,
    has risen (TT and Tucker on small tensors: 20 x 15 x 10 at 30-50% observed) and hurts
    where the start overfits. The held-out error tells which case a data set is in. Used by
    ``fit(..., map_hold="auto")``. ``progress`` shows a bar on stderr (on a terminal only)
    over the fits, each with its own bar of steps; ``init`` is their start (as ``fit``'s; a
    dict of starting values is taken as given, without the residual candidate).

    Held-out error, not the fits' log joints: a switched-off slice raises the joint density
    (its precision grows with nothing to fit), so of two fits with different ranks the log
    joint favours the one that prunes more. Choosing by it (both fits on all the data, the
    higher log joint kept) matched this rule on the CP rank study but not on the SGHMC grid's
    TT and TT-matrix cases (30^3 and 13^4, rank 4, 20%, 10 dB): there the held fits ended
    368-487 nats higher with held-out errors of 0.37-0.53 against 0.13-0.21 (scratch runs,
    not committed).

    The fit on all the data that follows starts from the model's start, not from a validation
    fit's MAP: a slice pruned on 90% of the data cannot come back in a fit that starts with it
    switched off (on IL-2 such a warm start kept 13 slices where the fit from the start keeps
    14, at a held-out error 2.7% higher).

    Parameters
    ----------
    model : BayesModel
        A built-in model with a ``map_hold_candidate`` and ``set_data`` (e.g.
        :class:`~bayestensor.TensorCompletion`). Its data are set to the training split for
        the fits and to ``data`` again at the end.
    data
        The model's data, in any form its ``set_data`` takes.
    seed : int
        Seeds the train/validation split and the fits.
    validation : float
        Fraction of the observations held out, in (0, 1).
    margin : float
        Relative improvement of the held-out error the candidate must reach to be chosen,
        in [0, 1).
    batch_size : int, optional
        Mini-batch size of the MAP fits, capped at the size of the training split; full
        batch when ``None``.
    num_steps : int, optional
        MAP steps of each fit; ``None`` keeps the MAP method's default.
    progress : bool
        Show progress bars (see above).
    init : {"svd", "spectral", "random"} or dict
        Starting point of the fits, as ``fit``'s ``init`` (the residual candidate's with
        its noise precision moved; tried only where the start fits the split better than
        their mean does).

    Returns
    -------
    dict
        ``{"chosen": hold or None, "noise_start": "variance" or "residual", "validation_mse":
        {"none": .., "hold": ..[, "residual": ..]}, "mean_mse": .., "validation": ..,
        "margin": ..}``, ``mean_mse`` the error of the training split's mean on the same
        held-out observations (the fits should beat it; see :func:`worse_than_the_mean`); no
        fits, and ``validation_mse`` and ``mean_mse`` None, below
        ``MIN_OBSERVATIONS_FOR_AUTO`` observations.

    Raises
    ------
    ValueError
        If ``validation`` is not in (0, 1), ``margin`` not in [0, 1), the model has no
        ``map_hold_candidate`` or no ``set_data``, or ``batch_size`` exceeds the
        observations in ``data`` (before any fit).
    """
    if not 0 < validation < 1:
        raise ValueError(f"validation: expected a fraction in (0, 1), got {validation!r}")
    if not 0 <= margin < 1:
        raise ValueError(f"margin: expected a number in [0, 1), got {margin!r}")
    candidate = getattr(model, "map_hold_candidate", None)
    if candidate is None or not hasattr(model, "set_data"):
        raise ValueError("map_hold: 'auto' needs a model with a map_hold_candidate (e.g. "
                         f"TensorCompletion), got {type(model).__name__}")
    model.set_data(data)
    check_batch_size(model, batch_size)  # before the validation fits, as the fit on all data
    if len(model.observations) < MIN_OBSERVATIONS_FOR_AUTO:
        return {"chosen": None, "noise_start": "variance", "validation_mse": None,
                "mean_mse": None, "validation": validation, "margin": margin}
    train, val = model.observations.split(validation, seed=seed)
    options = {} if num_steps is None else {"num_steps": num_steps}
    fit_batch = None if batch_size is None else min(batch_size, len(train))
    target = val.values.double().numpy()
    mean = float(train.values.double().mean())
    fits = [("none", None, init), ("hold", candidate, init)]
    if getattr(model, "residual_start_candidate", False) and isinstance(init, str):
        model.set_data(train)
        start = model.init_values(seed=legacy_seed(seed), init=init, noise_start="residual")
        plain = model.init_values(seed=legacy_seed(seed), init=init)
        if start["noise_precision"] > plain["noise_precision"]:  # else the plain fit again
            fits.append(("residual", None, start))
    try:  # a point reached is a fit to the split, not to the data
        posts = _validation_fits(model, train, fits, options, seed, fit_batch, progress)
    except RunInterrupted as err:
        model.set_data(data)
        raise RunInterrupted(f"map_hold='auto': interrupted while fitting the validation "
                             f"split ({err}), before the fit on all the data") from None
    errors = {label: float(np.mean((post.predict(val.indices).mean - target) ** 2))
              for (label, _, _), post in zip(fits, posts)}
    model.set_data(data)
    best = min((label for label in errors if label != "none"), key=errors.get)
    if errors[best] >= (1 - margin) * errors["none"]:
        best = "none"
    return {"chosen": candidate if best == "hold" else None,
            "noise_start": "residual" if best == "residual" else "variance",
            "validation_mse": errors, "mean_mse": float(np.mean((mean - target) ** 2)),
            "validation": validation, "margin": margin}


def _validation_fits(model, train, fits: list, options: dict, seed: int,
                     batch_size: int | None, progress: bool) -> list:
    """The MAP fits of :func:`choose_map_hold` to the training split, one per ``(label, hold,
    start)``: as one batch where the MAP runs on Adam alone (:func:`run_map_rows`, the same
    fits in about the time of one), one after another otherwise."""
    if not map_hands_over(model):
        starts = [start if isinstance(start, dict)
                  else model.init_values(seed=legacy_seed(seed), init=start)
                  for _, _, start in fits]
        return run_map_rows(model, train, starts, [hold for _, hold, _ in fits],
                            options=options, seed=seed, batch_size=batch_size,
                            progress=progress)
    posts = []
    with tqdm(fits, desc="map_hold auto", unit="fit", disable=None if progress else True,
              leave=False, dynamic_ncols=True) as bar:
        for label, hold, start in bar:
            bar.set_postfix_str(f"map_hold={label}")
            try:
                posts.append(run_method(MAP, model, train, options={**options, "map_hold": hold},
                                        seed=seed, batch_size=batch_size, progress=progress,
                                        init=start))
            except RunInterrupted:
                raise RunInterrupted(f"map_hold={label}") from None
    return posts

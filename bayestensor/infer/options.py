"""Checks of each inference method's options, run by ``fit`` before any work starts.

Every method declares its options with their defaults (``Method.options``) and one check
function here that validates all of them at once, the caller's values merged over the
defaults. A check raises ``ValueError`` naming the option, so a bad ``lr`` or ``kernel``
fails in milliseconds instead of after the MAP fits that precede sampling.
"""

from __future__ import annotations

from bayestensor.checks import choice, flag, is_integer, positive_int, real_number
from bayestensor.infer.dense_metric import METRICS
from bayestensor.infer.kernels import get_kernel
from bayestensor.infer.svgd import OPTIMIZERS
from bayestensor.priors.conditionals import conditional

#: SVGD's named kernel blocks (see :func:`bayestensor.infer.runners.block_ids`).
BLOCK_MODES = ("all", "site", "slice", "coordinate")


def step_size(name: str, value) -> float:
    """A positive learning rate that fits a float32 tensor (``1e39`` is refused as written)."""
    return real_number(name, value)


def jitter(name: str, value, optional: bool = False) -> float | None:
    """A non-negative scale of random perturbations (``None`` allowed when ``optional``)."""
    if optional and value is None:
        return None
    return real_number(name, value, low_open=False)


def map_hold(value) -> None:
    """``None``, ``"auto"`` or ``{site name: fraction of the MAP steps in [0, 1]}``."""
    if value is None or value == "auto":
        return
    if not isinstance(value, dict):
        raise ValueError(f"map_hold: expected None, 'auto' or a dict of site -> fraction, "
                         f"got {value!r}")
    for site, fraction in value.items():
        if not isinstance(site, str):
            raise ValueError(f"map_hold: site names must be strings, got {site!r}")
        real_number(f"map_hold[{site!r}]", fraction, 0.0, 1.0, low_open=False)


def check_map(options: dict) -> None:
    """MAP: ``num_steps``, ``lr``, ``init_jitter``, ``map_hold``, ``quasi_newton``,
    ``block_ascent``."""
    positive_int("num_steps", options["num_steps"])
    step_size("lr", options["lr"])
    jitter("init_jitter", options["init_jitter"], optional=True)
    map_hold(options["map_hold"])
    for name in ("quasi_newton", "block_ascent"):
        if options[name] != "auto":
            flag(name, options[name])


def check_vi(options: dict) -> None:
    """VI: ``num_steps``, ``lr``, ``num_particles``, ``init_from``, ``map_steps``,
    ``map_hold``, ``closed_form``."""
    positive_int("num_steps", options["num_steps"])
    step_size("lr", options["lr"])
    positive_int("num_particles", options["num_particles"])
    choice("init_from", options["init_from"], ("auto", "map", "init"))
    positive_int("map_steps", options["map_steps"])
    map_hold(options["map_hold"])
    if options["closed_form"] != "auto":
        flag("closed_form", options["closed_form"])


def check_nuts(options: dict) -> None:
    """NUTS: ``init_jitter``, ``target_accept`` in (0, 1), ``max_tree_depth``, ``processes``
    (``"auto"`` or a positive integer)."""
    jitter("init_jitter", options["init_jitter"])
    real_number("target_accept", options["target_accept"], 0.0, 1.0, high_open=True)
    positive_int("max_tree_depth", options["max_tree_depth"])
    processes = options["processes"]
    if not (processes == "auto" if isinstance(processes, str) else
            is_integer(processes) and processes >= 1):
        raise ValueError(f"processes: expected 'auto' or an integer >= 1, got {processes!r}")


def gibbs_option(value):
    """SGHMC's ``gibbs``: a flag, or ``{site: conditional}`` (a number is a Gamma shape).

    The site names are checked against the model when the sampler is built, before sampling.
    """
    if not isinstance(value, dict):
        return flag("gibbs", value)
    for name, spec in value.items():
        if not isinstance(name, str):
            raise ValueError(f"gibbs: expected site names as keys, got {name!r}")
        try:
            cond = conditional(spec)
        except (TypeError, ValueError):
            raise ValueError(f"gibbs: the conditional of {name!r} must be a positive Gamma "
                             f"shape or a conditional of bayestensor.priors.conditionals, got "
                             f"{spec!r}") from None
        cond.check(name)
    return value


def check_sghmc(options: dict) -> None:
    """SGHMC: step size, friction in (0, 1], gradient-noise estimate, flags, start and MAP
    start, ``max_samples`` (``"auto"``, ``None`` or a positive integer)."""
    step_size("lr", options["lr"])
    friction = real_number("friction", options["friction"], 0.0, 1.0)
    noise = options["noise_estimate"]
    if noise != "auto":
        real_number("noise_estimate", noise, 0.0, friction, low_open=False, high_open=True)
    flag("precondition", options["precondition"])
    flag("adapt_step", options["adapt_step"])
    gibbs_option(options["gibbs"])
    flag("scale_moves", options["scale_moves"])
    if not (isinstance(options["factor_redraws"], str) and options["factor_redraws"] == "auto"):
        flag("factor_redraws", options["factor_redraws"])
    jitter("init_spread", options["init_spread"])
    jitter("init_jitter", options["init_jitter"])
    choice("init_from", options["init_from"], ("map", "init"))
    positive_int("map_steps", options["map_steps"])
    map_hold(options["map_hold"])
    choice("metric", options["metric"], METRICS)
    if not (isinstance(options["max_samples"], str) and options["max_samples"] == "auto"):
        if options["max_samples"] is not None:
            positive_int("max_samples", options["max_samples"])


def check_svgd(options: dict) -> None:
    """SVGD: step size and rule, kernel and blocks, steps, start and MAP start."""
    step_size("lr", options["lr"])
    get_kernel(options["kernel"])
    blocks = options["blocks"]
    if isinstance(blocks, str):
        choice("blocks", blocks, BLOCK_MODES)
    choice("optimizer", options["optimizer"], OPTIMIZERS)
    positive_int("num_steps", options["num_steps"])
    choice("init_from", options["init_from"], ("auto", "map", "vi", "prior"))
    jitter("init_jitter", options["init_jitter"])
    positive_int("map_steps", options["map_steps"])
    real_number("final_lr_ratio", options["final_lr_ratio"], 0.0, 1.0)
    map_hold(options["map_hold"])


def kernel_name(kernel) -> str:
    """A kernel's name for run records: the string given, or the class of an instance."""
    return kernel if isinstance(kernel, str) else type(kernel).__name__


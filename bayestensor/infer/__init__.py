"""Inference: ``fit`` and its method registry, the batched log density, the mini-batch gradient
estimator, SGHMC, SVGD, the MAP/VI/NUTS baselines, the run driver (progress, checkpoints,
interrupts), the MAP-hold continuation and chain groups.

Modules, lowest layer first: ``interrupts`` (SIGTERM as Ctrl-C) / ``log_density`` ->
``gradients`` / ``chain_processes`` (NUTS's chains in worker processes) -> ``sghmc`` / ``svgd``
/ ``kernels`` / ``baselines`` -> ``options`` (each method's option checks) / ``stopping``
(SGHMC drawing until converged) / ``checkpoints`` (checkpoint files) -> ``auto_options`` (the
options a method settles from the fit) / ``driver`` -> ``binding`` -> ``runners`` (the five
runners, one local fit) -> ``continuation`` / ``chains`` -> ``api`` (``fit``, ``METHODS``).
Each imports only layers below it.
"""

from bayestensor.infer.api import METHODS, choose_map_hold, fit
from bayestensor.infer.baselines import (ChainsNotConvergedWarning, NotConvergedWarning,
                                         SaturatedDrawsWarning)
from bayestensor.infer.driver import DivergenceError, RunInterrupted
from bayestensor.infer.gradients import GradientEstimator
from bayestensor.infer.kernels import IMQKernel, Kernel, RBFKernel
from bayestensor.infer.log_density import LogDensity
from bayestensor.infer.runners import Method, block_ids
from bayestensor.infer.sghmc import SGHMC, sghmc_update
from bayestensor.infer.svgd import SVGD

__all__ = ["fit", "choose_map_hold", "METHODS", "Method", "LogDensity", "GradientEstimator",
           "SGHMC", "sghmc_update", "SVGD", "Kernel", "RBFKernel", "IMQKernel", "RunInterrupted",
           "DivergenceError", "NotConvergedWarning", "ChainsNotConvergedWarning",
           "SaturatedDrawsWarning", "block_ids"]

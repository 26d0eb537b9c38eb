"""Inference: ``fit`` and its method registry, the batched log density, SGHMC, SVGD, the
MAP/VI/NUTS baselines and the run driver (progress, checkpoints, interrupts)."""

from bayestensor.infer.api import METHODS, block_ids, choose_map_hold, fit
from bayestensor.infer.kernels import IMQKernel, Kernel, RBFKernel
from bayestensor.infer.log_density import LogDensity
from bayestensor.infer.driver import DivergenceError, RunInterrupted
from bayestensor.infer.sghmc import SGHMC
from bayestensor.infer.svgd import SVGD

__all__ = ["fit", "choose_map_hold", "METHODS", "LogDensity", "SGHMC", "SVGD", "Kernel",
           "RBFKernel", "IMQKernel", "RunInterrupted", "DivergenceError", "block_ids"]

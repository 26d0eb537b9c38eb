"""Inference: the batched potential, SGHMC, SVGD, MAP/VI/NUTS baselines and the Posterior."""

from .fit import METHODS, block_ids, choose_map_hold, fit
from .kernels import IMQKernel, Kernel, RBFKernel
from .posterior import Posterior, Prediction
from .potential import Potential
from .runner import DivergenceError, RunInterrupted
from .sghmc import SGHMC
from .svgd import SVGD

__all__ = ["fit", "choose_map_hold", "METHODS", "Posterior", "Prediction", "Potential", "SGHMC", "SVGD", "Kernel",
           "RBFKernel", "IMQKernel", "RunInterrupted", "DivergenceError", "block_ids"]

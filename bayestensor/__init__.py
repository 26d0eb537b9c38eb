"""bayestensor: Bayesian low-rank tensor learning on PyTorch, Pyro, TensorLy and ArviZ.

Low-rank formats (CP, Tucker, TT, TT-matrix) with rank-revealing priors, fitted by SGHMC,
SVGD, MAP, mean-field VI or NUTS through one ``fit`` that returns a ``Posterior``.
"""

from . import datasets, formats, priors, rank
from .formats import CPTensor, TTMatrix, TTTensor, TuckerTensor
from .infer import DivergenceError, Posterior, RunInterrupted, fit
from .models import TensorCompletion
from .models.regression import TensorRegression
from .observations import Observations
from .priors import low_rank_tensor, noise_precision
from . import report  # a callable module: bayestensor.report(run_dir) writes a report

__version__ = "0.1.0"

__all__ = ["fit", "Posterior", "TensorCompletion", "Observations", "CPTensor", "TuckerTensor",
           "TTTensor", "TTMatrix", "low_rank_tensor", "noise_precision", "datasets", "formats",
           "priors", "rank", "RunInterrupted", "DivergenceError", "__version__",
           "TensorRegression", "report"]

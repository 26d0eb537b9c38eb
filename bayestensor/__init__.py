"""bayestensor: Bayesian low-rank tensor learning on PyTorch, Pyro, TensorLy and ArviZ.

Low-rank formats (CP, Tucker, TT, TT-matrix) with rank-revealing priors, fitted by SGHMC,
SVGD, MAP, mean-field VI or NUTS through one ``fit`` that returns a ``Posterior``.
The package is layered (``docs/architecture.md``): ``formats`` -> ``priors`` -> ``data`` ->
``models`` -> ``infer`` -> ``results`` -> ``report``, with ``nets``, ``dynamics``, ``viz``,
``parallel`` and ``cli`` on top.
"""

from bayestensor import data, formats, priors, report  # report: callable, report(run_dir)
from bayestensor.data import Observations
from bayestensor.formats import CPTensor, TTMatrix, TTTensor, TuckerTensor
from bayestensor.infer import DivergenceError, RunInterrupted, fit
from bayestensor.models import TensorCompletion, TensorRegression
from bayestensor.priors import low_rank_tensor, noise_precision
from bayestensor.results import Posterior

__version__ = "0.1.0"

__all__ = ["fit", "Posterior", "TensorCompletion", "TensorRegression", "Observations", "CPTensor",
           "TuckerTensor", "TTTensor", "TTMatrix", "low_rank_tensor", "noise_precision", "data",
           "formats", "priors", "report", "RunInterrupted", "DivergenceError", "__version__"]

"""bayestensor: Bayesian low-rank tensor learning on PyTorch, Pyro, TensorLy and ArviZ.

Low-rank formats (CP, Tucker, TT, TT-matrix) with rank-revealing priors, fitted by SGHMC,
SVGD, MAP, mean-field VI or NUTS through one ``fit`` that returns a ``Posterior``.
The package is layered (``docs/architecture.md``): ``formats`` -> ``priors`` -> ``data`` ->
``models`` -> ``infer`` -> ``results`` -> ``report``, with ``nets``, ``dynamics``, ``viz``,
``parallel`` and ``cli`` on top.

The names below and every sub-package are imported on first use (``bt.fit``, ``bt.nets``), so
that ``import bayestensor`` and the command's ``--help`` do not load PyTorch, Pyro and ArviZ
before something needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "fit": "bayestensor.infer",
    "RunInterrupted": "bayestensor.infer",
    "DivergenceError": "bayestensor.infer",
    "Posterior": "bayestensor.results",
    "TensorCompletion": "bayestensor.models",
    "TensorRegression": "bayestensor.models",
    "Observations": "bayestensor.data",
    "CPTensor": "bayestensor.formats",
    "TuckerTensor": "bayestensor.formats",
    "TTTensor": "bayestensor.formats",
    "TTMatrix": "bayestensor.formats",
    "low_rank_tensor": "bayestensor.priors",
    "noise_precision": "bayestensor.priors",
}

__all__ = ["fit", "Posterior", "TensorCompletion", "TensorRegression", "Observations", "CPTensor",
           "TuckerTensor", "TTTensor", "TTMatrix", "low_rank_tensor", "noise_precision", "data",
           "formats", "priors", "report", "RunInterrupted", "DivergenceError", "__version__"]


def __getattr__(name: str):
    """Import a public name or a sub-package (``report`` is callable: ``bt.report(run_dir)``)."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from bayestensor import data, formats, priors, report
    from bayestensor.data import Observations
    from bayestensor.formats import CPTensor, TTMatrix, TTTensor, TuckerTensor
    from bayestensor.infer import DivergenceError, RunInterrupted, fit
    from bayestensor.models import TensorCompletion, TensorRegression
    from bayestensor.priors import low_rank_tensor, noise_precision
    from bayestensor.results import Posterior

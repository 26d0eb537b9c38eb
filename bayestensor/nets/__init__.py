"""Bayesian tensorized neural networks: compressed layers whose ranks the prior prunes.

Modules: :mod:`.shapes` (tensorized shapes), :mod:`.layers` (``TensorizedLinear``,
``TensorizedConv2d`` and their plain exports), :mod:`.convert` (replace layers of a user's
``nn.Module``, export, save and load, compression ratios), :mod:`.train` (MAP, VI, SVGD,
SGHMC) and :mod:`.metrics` (accuracy, NLL, ECE, reliability, entropy, rotations). Image data
sets live in :mod:`bayestensor.data.images`, the ``bayestensor compress`` command in
:mod:`bayestensor.cli.compress`.
"""

from bayestensor.nets.convert import (BayesianNet, compression_table, load_exported,
                                      save_exported, tensorize)
from bayestensor.nets.layers import (CompressedConv2d, CompressedLinear, TensorizedConv2d,
                                     TensorizedLinear, contract_linear)
from bayestensor.nets.shapes import factorize, tensorized_shape
from bayestensor.nets.train import METHODS, fit_net, predict_dense, train_dense

__all__ = ["TensorizedLinear", "TensorizedConv2d", "CompressedLinear", "CompressedConv2d",
           "BayesianNet", "tensorize", "compression_table", "save_exported", "load_exported",
           "fit_net", "train_dense", "predict_dense", "METHODS", "factorize",
           "tensorized_shape", "contract_linear"]

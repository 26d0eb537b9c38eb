"""Bayesian tensorized neural networks: compressed layers whose ranks the prior prunes.

Modules: :mod:`.shapes` (tensorized shapes and the ranks they support), :mod:`.layers`
(``TensorizedLinear``, ``TensorizedConv2d`` and their plain exports, the parameter limit
``MAX_LAYER_PARAMS``), :mod:`.convert` (replace layers of a user's
``nn.Module``, export, save and load, compression ratios), :mod:`.train` (MAP, VI, SVGD,
SGHMC), :mod:`.calibration` (the prior's weight and SGHMC's step, temperature and warm-up
chosen on a validation split) and :mod:`.metrics` (accuracy, NLL, ECE, confidence gap,
reliability, entropy, rotations). Image data sets live in :mod:`bayestensor.data.images`;
:mod:`.workflow` (``run_compress``, ``build_model``) is the train-compress-compare pipeline behind
``bayestensor compress``, and ``run_finetune`` with :mod:`.user_model` (``load_user_model``)
compresses a network the user already trained.
"""

from bayestensor.nets.calibration import choose_prior_weight, choose_sghmc_settings
from bayestensor.nets.convert import (BayesianNet, compression_table, load_exported,
                                      save_exported, tensorize)
from bayestensor.nets.layers import (MAX_LAYER_PARAMS, CompressedConv2d, CompressedLinear,
                                     TensorizedConv2d, TensorizedLinear, contract_linear)
from bayestensor.nets.shapes import factorize, rank_caps, tensorized_shape
from bayestensor.nets.train import METHODS, fit_net, predict_dense, train_dense

__all__ = ["TensorizedLinear", "TensorizedConv2d", "CompressedLinear", "CompressedConv2d",
           "BayesianNet", "tensorize", "compression_table", "save_exported", "load_exported",
           "fit_net", "train_dense", "predict_dense", "METHODS", "factorize",
           "tensorized_shape", "rank_caps", "contract_linear", "MAX_LAYER_PARAMS",
           "choose_sghmc_settings", "choose_prior_weight"]

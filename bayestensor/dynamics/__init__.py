"""Learning dynamics of low-rank factorizations, with honest error bars.

* :mod:`~bayestensor.dynamics.factorization`: ``Z W ≈ Y`` by gradient descent, feedback
  alignment (FA) and FA*, with the trajectory metrics (error against the Eckart-Young optimum,
  W-B alignment, the symmetric part of ``W B^T``, FA-vs-gradient signal angle, principal angles);
* :mod:`~bayestensor.dynamics.feedback`: FA as a PyTorch autograd function / ``FALinear`` module,
  and FA-style training of CP and TT tensors;
* :mod:`~bayestensor.dynamics.overparam`: over-parameterized symmetric tensor decomposition, rich
  GD versus the lazy (linearized) model, and the Wang et al. (2020) variant;
* :mod:`~bayestensor.dynamics.diagonal`: depth-D diagonal linear networks across the
  initialization scale (Woodworth et al. 2020);
* :mod:`~bayestensor.dynamics.bayes_reference`: the ARD posterior of the same factorization by
  SGHMC;
* :mod:`~bayestensor.dynamics.compare`: replicates over seeds, intervals of the mean (SciPy's
  BCa bootstrap or Student-t) and binomial intervals, trajectory bands, in an
  ``xarray.Dataset``; :mod:`~bayestensor.dynamics.studies` holds the
  problems and learners it runs;
* :mod:`~bayestensor.dynamics.pipelines`: the standard studies, each writing a run folder
  (figures from :mod:`~bayestensor.viz.dynamics`, Markdown from
  :mod:`~bayestensor.dynamics.report`); ``bayestensor dynamics`` runs them.

Update rules, sources and examples: ``docs/dynamics.md``.
"""

from bayestensor.dynamics.bayes_reference import bayes_factorization, factorization_model
from bayestensor.dynamics.compare import (ComparisonResult, bootstrap_interval, clopper_pearson_interval, compare,
                      mean_interval, t_interval, wilson_interval)
from bayestensor.dynamics.diagonal import (DiagonalRun, kkt_residual, min_l1_interpolant, min_l2_interpolant,
                       sparse_regression, train_diagonal)
from bayestensor.dynamics.factorization import (METRICS, RULES, FactorizationRun, eckart_young_error,
                            fa_projection_error, factorization_metrics, factorization_step,
                            feedback_matrix, low_rank_matrix, principal_angles,
                            train_factorization)
from bayestensor.dynamics.feedback import (DecompositionRun, FALinear, FeedbackAlignmentFunction, fa_gradients,
                       fa_linear, fa_matmul, train_decomposition, train_factorization_autograd)
from bayestensor.dynamics.overparam import (TensorFitRun, fit_lazy, fit_rich, symmetric_low_rank_tensor,
                        symmetric_reconstruct)
from bayestensor.dynamics.studies import (BayesReference, DiagonalLearner, FactorizationLearner, FactorizationProblem,
                      OverparamLearner, SparseRegressionProblem, TensorProblem, Trace)

__all__ = [
    "RULES", "METRICS", "low_rank_matrix", "feedback_matrix", "eckart_young_error",
    "fa_projection_error", "principal_angles", "factorization_metrics", "factorization_step",
    "train_factorization", "FactorizationRun",
    "FeedbackAlignmentFunction", "fa_linear", "fa_matmul", "FALinear",
    "train_factorization_autograd", "fa_gradients", "train_decomposition", "DecompositionRun",
    "symmetric_low_rank_tensor", "symmetric_reconstruct", "fit_rich", "fit_lazy", "TensorFitRun",
    "sparse_regression", "min_l1_interpolant", "min_l2_interpolant", "kkt_residual",
    "train_diagonal", "DiagonalRun",
    "bayes_factorization", "factorization_model",
    "compare", "ComparisonResult", "bootstrap_interval", "t_interval", "mean_interval",
    "wilson_interval", "clopper_pearson_interval",
    "Trace", "FactorizationProblem", "TensorProblem", "SparseRegressionProblem",
    "FactorizationLearner", "BayesReference", "OverparamLearner", "DiagonalLearner",
]

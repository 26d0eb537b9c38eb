"""Rank-revealing priors: hyperpriors per rank slice, the low-rank prior as Pyro sites, and the
effective rank read from posterior draws.

* :mod:`~bayestensor.priors.hyperpriors`: gamma (ARD), half-Cauchy and log-uniform laws on the
  slice variances;
* :mod:`~bayestensor.priors.low_rank`: :class:`LowRankPrior` and :func:`low_rank_tensor`, the
  Pyro sample sites of a low-rank tensor, and the noise precision (:func:`noise_prior`,
  :func:`noise_precision`);
* :mod:`~bayestensor.priors.effective_rank`: which slices the posterior keeps;
* :mod:`~bayestensor.priors.densities`: the same densities in closed form, for the built-in
  models' fast path;
* :mod:`~bayestensor.priors.conditionals`: the full conditionals of precisions and scales that
  SGHMC redraws exactly.
"""

from bayestensor.priors.effective_rank import (DEFAULT_THRESHOLD, RankPosterior, active_slices,
                                               rank_posterior)
from bayestensor.priors.hyperpriors import (DEFAULT_PRIOR_PARAMS, PRIORS, LogUniform, RankPrior,
                                            get_prior)
from bayestensor.priors.low_rank import (LowRankPrior, low_rank_tensor, noise_precision, noise_prior,
                                         param_std)

__all__ = ["PRIORS", "DEFAULT_PRIOR_PARAMS", "LogUniform", "RankPrior", "get_prior", "param_std",
           "LowRankPrior", "low_rank_tensor", "noise_precision", "noise_prior", "DEFAULT_THRESHOLD",
           "RankPosterior", "active_slices", "rank_posterior"]

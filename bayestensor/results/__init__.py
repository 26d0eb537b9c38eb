"""Results of a fit: the :class:`Posterior`, its :class:`Prediction` and the ArviZ adapter."""

from bayestensor.results.posterior import Posterior, Prediction

__all__ = ["Posterior", "Prediction"]

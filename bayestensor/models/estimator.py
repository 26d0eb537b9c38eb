"""A scikit-learn estimator around :class:`~bayestensor.models.regression.TensorRegression`.

``TensorRegressor`` follows scikit-learn's conventions, so ``GridSearchCV``, ``Pipeline``,
``cross_val_score`` and ``clone`` work with it: constructor arguments are stored unchanged and
checked in :meth:`~TensorRegressor.fit`, fitted attributes end in ``_``, ``score`` is R^2
(``RegressorMixin``). Like TensorLy's ``CPRegressor`` it takes inputs of shape
``(n, d1, ..., dk)``: each input is a tensor, the coefficient tensor is low rank.

scikit-learn is needed by this module only; ``import bayestensor`` does not import it. Import
the estimator explicitly::

    from bayestensor.models.estimator import TensorRegressor
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from bayestensor import checks
from bayestensor.infer import fit as fit_model
from bayestensor.models.regression import TensorRegression


class TensorRegressor(RegressorMixin, BaseEstimator):
    """Bayesian low-rank tensor regression as a scikit-learn regressor.

    Parameters
    ----------
    format : {"cp", "tucker", "tt"}
        Low-rank format of the coefficient tensor ``W``.
    max_rank : int or sequence of int
        Largest rank considered; the prior switches off unneeded slices.
    prior : {"gamma", "half_cauchy", "log_uniform"}
        Hyperprior of the slice scales.
    method : {"map", "vi", "sghmc", "svgd", "nuts"}
        Inference method of :func:`bayestensor.fit` (``"map"``, the posterior mode, is the
        fastest; a sampler gives credible intervals that include the uncertainty of ``W``).
    num_samples, num_warmup : int, optional
        Draws and burn-in of a sampler (the method's defaults when ``None``).
    num_chains : int, optional
        Chains (samplers) or restarts (MAP); ``None``: ``fit``'s default (4 chains for SGHMC
        and NUTS, 1 otherwise).
    noise_a, noise_b : float
        Gamma prior of the noise precision.
    standardize : bool
        Centre and scale ``X`` and ``y`` inside the model (recommended).
    seed : int
        Seeds the fit: the same seed gives the same estimator on one machine.
    progress : bool
        Show the fit's progress bar.
    fit_options : dict, optional
        More keyword arguments of :func:`bayestensor.fit` (``lr``, ``num_steps``, ...).

    Attributes
    ----------
    model_ : TensorRegression
        The fitted model.
    posterior_ : Posterior
        Its posterior (``posterior_.effective_rank()``, ``posterior_.to_arviz()``, ...).
    coef_ : np.ndarray
        Posterior mean of ``W``, shaped like one input (plus the output mode for a 2-D ``y``).
    intercept_ : float or np.ndarray
        Posterior mean of the intercept (one per output for a 2-D ``y``).
    input_shape_ : tuple of int
        Shape of one input, ``X.shape[1:]``.
    n_outputs_ : int or None
        Responses per input for a 2-D ``y``; ``None`` for a 1-D ``y``.
    n_features_in_ : int
        Number of features of one input, ``prod(input_shape_)``.

    Examples
    --------
    >>> from bayestensor.data.regression import synthetic_cp_regression
    >>> data = synthetic_cp_regression((6, 6), rank=2, n_train=200, n_test=100, seed=0)
    >>> est = TensorRegressor(max_rank=4).fit(*data.train)
    >>> bool(est.score(data.X_test, data.y_test) > 0.8)
    True
    """

    def __init__(self, format="cp", max_rank=5, prior="gamma", method="map", num_samples=None,
                 num_warmup=None, num_chains=None, noise_a=1.0, noise_b=1e-2, standardize=True,
                 seed=0, progress=False, fit_options=None):
        self.format = format
        self.max_rank = max_rank
        self.prior = prior
        self.method = method
        self.num_samples = num_samples
        self.num_warmup = num_warmup
        self.num_chains = num_chains
        self.noise_a = noise_a
        self.noise_b = noise_b
        self.standardize = standardize
        self.seed = seed
        self.progress = progress
        self.fit_options = fit_options

    def fit(self, X, y):
        """Fit the model to inputs ``X`` ``(n, d1, ..., dk)`` and responses ``y`` ``(n,)`` or ``(n, m)``.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            ``X`` with fewer than two dimensions, a 2-D ``X`` with a 1-D ``y`` (no tensor
            structure: reshape its rows into matrices), mismatched lengths, non-finite values,
            or any invalid constructor argument (named).
        """
        X = _as_array("X", X)
        y = _as_array("y", y)
        if X.ndim < 2:
            raise ValueError(f"X: expected shape (n, d1, ..., dk), got {X.shape}")
        if y.ndim not in (1, 2):
            raise ValueError(f"y: expected shape (n,) or (n, n_outputs), got {y.shape}")
        model = TensorRegression(X.shape[1:], format=self.format, max_rank=self.max_rank,
                                 prior=self.prior, n_outputs=y.shape[1] if y.ndim == 2 else None,
                                 noise_a=self.noise_a, noise_b=self.noise_b,
                                 standardize=self.standardize)
        options = dict(self.fit_options or {})
        post = fit_model(model, (X, y), method=self.method, seed=self.seed,
                         num_samples=self.num_samples, num_warmup=self.num_warmup,
                         num_chains=self.num_chains, progress=self.progress, **options)
        self.model_ = model
        self.posterior_ = post
        self.input_shape_ = tuple(X.shape[1:])
        self.n_features_in_ = math.prod(self.input_shape_)
        self.n_outputs_ = y.shape[1] if y.ndim == 2 else None
        draws = post.flat_samples()
        self.coef_ = model.weights(draws).mean(0).numpy()
        intercepts = model.intercepts(draws).mean(0).numpy()
        self.intercept_ = float(intercepts) if self.n_outputs_ is None else intercepts
        return self

    def predict(self, X, return_std: bool = False):
        """Posterior predictive mean for ``X`` ``(n, *input_shape_)``.

        Parameters
        ----------
        X : array_like
        return_std : bool
            Also return the posterior predictive sd of a new observation (the uncertainty of
            ``W`` plus the noise; with ``method="map"`` the noise only), as scikit-learn's
            ``BayesianRidge`` does. ``posterior_.predict(X).sd_mean`` is the sd of the
            noise-free mean.

        Returns
        -------
        mean : np.ndarray
            ``(n,)`` (``(n, n_outputs)`` for a 2-D ``y``).
        std : np.ndarray
            Same shape, with ``return_std=True``.
        """
        check_is_fitted(self, "posterior_")
        X = _as_array("X", X)
        if tuple(X.shape[1:]) != self.input_shape_:
            raise ValueError(f"X: expected shape (n, {', '.join(map(str, self.input_shape_))}) "
                             f"as in fit, got {X.shape}")
        pred = self.posterior_.predict(X)
        shape = (X.shape[0],) if self.n_outputs_ is None else (X.shape[0], self.n_outputs_)
        mean = np.asarray(pred.mean).reshape(shape)
        if not return_std:
            return mean
        return mean, np.asarray(pred.sd).reshape(shape)


def _as_array(name: str, value) -> np.ndarray:
    checks.not_complex(name, value)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a numeric array, got {type(value).__name__}") from None
    if arr.ndim == 0:
        raise ValueError(f"{name}: expected an array, got a scalar")
    return arr


__all__ = ["TensorRegressor"]

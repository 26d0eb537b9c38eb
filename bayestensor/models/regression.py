"""Bayesian low-rank tensor regression: ``y = <W, X> + b + noise`` with a low-rank ``W``.

The coefficient tensor ``W`` has the shape of one input (times the number of outputs for a
vector response) and is held in CP, Tucker or TT format under the same rank-revealing priors
as completion, so the posterior finds how many rank slices the data support.
"""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from bayestensor import checks
from bayestensor.checks import check_shape, flag, positive_float, positive_int
from bayestensor.formats import CPTensor, get_format
from bayestensor.formats.decompose import cp_als
from bayestensor.formats.ranks import MAX_PARAMS
from bayestensor.models.base import (BayesModel, check_max_rank, saved_max_rank,
                                     start_noise_precision)
from bayestensor.models.cp_block_ascent import (MAX_REGRESSION_SWEEP_FLOPS,
                                                CPRegressionBlockAscent,
                                                regression_sweep_flops, sites_and_priors)
from bayestensor.models.regression_gibbs import RegressionGibbs, regression_gibbs_flops
from bayestensor.models.mode import posterior_mode
from bayestensor.priors import LowRankPrior, noise_precision
from bayestensor.priors.effective_rank import SIGNAL_POINTS, signal_rms
from bayestensor.priors.densities import (centered_normal_log_density, gamma_log_density,
                                          gaussian_log_likelihood)

LIKELIHOODS = ("gaussian", "bernoulli")
#: The ridge initialization uses at most this many rows (a random subset beyond it).
MAX_INIT_ROWS = 20_000
#: Ridge penalties tried by GCV, relative to the largest squared singular value of the design:
#: from almost no shrinkage to shrinking every direction.
RIDGE_GRID = np.logspace(-6, 1, 36)
#: Floor on the largest squared singular value of the design that sets the ridge scale
#: (an all-zero design would otherwise give an all-zero grid).
MIN_SINGULAR_SQ = 1e-12
#: Floor on the residual degrees of freedom ``n - df`` in the GCV score (``df`` can reach ``n``).
MIN_RESIDUAL_DF = 1e-3
#: ALS iterations of the SVD-started decomposition of the ridge estimate.
INIT_ALS_ITERATIONS = 50
#: ALS iterations of the random-started CP decomposition (more: a random start is far off).
RANDOM_ALS_ITERATIONS = 200
#: A Bernoulli intercept starts at the logit of the label mean clipped to this distance from
#: 0 and 1 (a class seen in every or no row would give an infinite logit).
MIN_CLASS_RATE = 1e-3
#: Adam steps of the MAP start (``init="map"``), as for ``fit(method="map")``.
MAP_START_STEPS = 2000


def _first_nonfinite(arr: np.ndarray) -> tuple:
    bad = np.argwhere(~np.isfinite(arr))[0]
    return tuple(int(i) for i in bad)


class TensorRegression(BayesModel):
    """Low-rank tensor regression with automatic rank determination.

    On standardized data (``x = (X - m) / s_x`` with ``m`` the per-feature mean and ``s_x`` one
    scalar, so low rank is preserved; ``t = (y - c_y) / s_y`` for a Gaussian response)::

        W      ~ low-rank format with a rank-revealing prior (see bayestensor.priors)
        b      ~ Normal(0, intercept_scale)                       (intercept, per output)
        tau    ~ Gamma(noise_a, noise_b)                          (Gaussian only)
        eta_i  = <W, x_i> + b
        t_i    ~ Normal(eta_i, tau^{-1/2})        or   y_i ~ Bernoulli(logits=eta_i)

    for every data point ``i`` in the plate ``"obs"`` (``fit(..., batch_size=B)`` sub-samples it
    and scales the likelihood by N/B). For a vector response (``n_outputs=k``) ``W`` has shape
    ``input_shape + (k,)``, the output mode is one more low-rank mode, and the outputs share one
    noise precision (they are centred per output and scaled by one pooled sd).

    ``set_data`` (or ``fit``) takes ``(X, y)`` or ``{"X": X, "y": y}``. Predictions,
    ``weights`` and ``intercepts`` are returned in the data's own units.

    Parameters
    ----------
    input_shape : sequence of int
        Shape of one input ``X_i`` (e.g. ``(32, 32)`` for an image). ``W`` needs at least two
        modes: a 1-D input is allowed only with ``n_outputs``.
    format : {"cp", "tucker", "tt"}
        Low-rank format of ``W``.
    max_rank, prior, prior_params
        Largest rank(s) considered and the hyperprior on the per-slice scales, as for
        :class:`bayestensor.TensorCompletion`.
    likelihood : {"gaussian", "bernoulli"}
        ``"bernoulli"`` models binary labels with a logistic link.
    n_outputs : int, optional
        Number of responses per input (``y`` of shape ``(n, k)``); ``None`` for a scalar
        response (``y`` of shape ``(n,)``).
    noise_a, noise_b : float
        Gamma prior on the noise precision of the standardized response (Gaussian only).
    intercept_scale : float
        Prior sd of the intercept on the standardized scale (weak by default).
    standardize : bool
        Centre ``X`` per feature and scale it by one number, and standardize a Gaussian ``y``
        (recommended: the default priors assume unit scale). Only ``True`` or ``False``.
    max_params : int or None
        Refuse a model whose ``W`` has more parameters than this, as for
        :class:`bayestensor.TensorCompletion` (which also caps ``max_rank``).

    Notes
    -----
    For ``likelihood="bernoulli"`` :meth:`predict_entries` returns per-sample probabilities
    ``P(y=1)`` and a zero noise sd, so ``Posterior.predict`` gives ``mean`` = posterior
    predictive probability, ``sd`` = ``sd_mean`` = posterior sd of that probability, and both
    ``interval`` kinds are credible intervals of the probability (not of a 0/1 outcome);
    predicted labels are ``mean > 0.5``. ``Prediction.coverage`` does not apply to labels.

    Examples
    --------
    >>> import bayestensor as bt
    >>> from bayestensor.data.regression import synthetic_image_regression
    >>> data = synthetic_image_regression("cross", n_train=400, seed=0)
    >>> model = bt.TensorRegression(data.input_shape, format="cp", max_rank=6)
    >>> post = bt.fit(model, data.train, method="map", seed=0, progress=False)
    >>> int(post.effective_rank().mode()[0])
    2
    """

    name = "regression"
    #: SGHMC redraws the factors or cores, the intercept and the slice precisions exactly by
    #: default (``factor_redraws="auto"``; scalar responses, Gaussian or binary, every format;
    #: see :meth:`factor_redraws` and :meth:`gibbs_sites`). Every input meets every
    #: coefficient, a correlation a diagonal preconditioner cannot follow: on the three CP
    #: problems of ``benchmarks/regression_mixing.py`` (3 seeds) the redraws took the largest
    #: R-hat of 200 held-out predictions from a median 1.071 to 1.021 and their smallest bulk
    #: ESS from 61 to 375, at 3x the seconds (docs/benchmarks.md).
    sghmc_factor_redraws = True

    def __init__(self, input_shape, format: str = "cp", max_rank=5, prior="gamma",
                 prior_params: dict | None = None, likelihood: str = "gaussian",
                 n_outputs: int | None = None, noise_a: float = 1.0, noise_b: float = 1e-2,
                 intercept_scale: float = 10.0, standardize: bool = True,
                 max_params: int | None = MAX_PARAMS):
        shape = check_shape(input_shape, "input_shape")
        fmt = get_format(format)
        if fmt.format_name == "ttm":
            raise ValueError("format: expected 'cp', 'tucker' or 'tt' for a regression "
                             "coefficient tensor, got 'ttm'")
        if n_outputs is not None:
            n_outputs = positive_int("n_outputs", n_outputs)
        weight_shape = shape + ((n_outputs,) if n_outputs is not None else ())
        if len(weight_shape) < 2:
            raise ValueError(f"input_shape: a low-rank coefficient tensor needs at least two "
                             f"modes, got input_shape {shape}; reshape the input into a matrix "
                             "or tensor")
        check_max_rank(max_rank)
        self.standardize = flag("standardize", standardize)
        self.max_params = None if max_params is None else positive_int("max_params", max_params)
        lik = str(likelihood).lower()
        if lik not in LIKELIHOODS:
            raise ValueError(f"likelihood: expected one of {LIKELIHOODS}, got {likelihood!r}")
        self.noise_a = positive_float("noise_a", noise_a)
        self.noise_b = positive_float("noise_b", noise_b)
        self.intercept_scale = positive_float("intercept_scale", intercept_scale)
        self.input_shape = shape
        self.n_outputs = n_outputs
        self.weight_shape = weight_shape
        self.n_features = math.prod(shape)
        self.likelihood = lik
        self.format = fmt.format_name
        self.prior_name = prior if isinstance(prior, str) else prior.kind
        self.prior_params = dict(prior_params or {})
        self.weight_prior = LowRankPrior("W", weight_shape, max_rank, fmt, prior, prior_params,
                                         rank_name="max_rank", max_params=self.max_params)
        self.max_rank = saved_max_rank(max_rank, self.weight_prior)
        k = n_outputs or 1
        self.x_mean = torch.zeros(shape, dtype=torch.float64)
        self.x_scale = 1.0
        self.y_center = torch.zeros(k, dtype=torch.float64)
        self.y_scale = 1.0
        self._block_ascent: tuple | None = None

    @property
    def low_rank_prior(self) -> LowRankPrior:
        return self.weight_prior

    # --- shapes -----------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the coefficient tensor ``W`` (``input_shape`` plus the output mode)."""
        return self.weight_shape

    @property
    def is_vector(self) -> bool:
        """Whether the model predicts a vector of ``n_outputs`` responses per input (the
        coefficient tensor has an output mode) rather than one scalar."""
        return self.n_outputs is not None

    # --- data -------------------------------------------------------------------------------
    def _check_X(self, X, name: str = "X") -> np.ndarray:
        checks.not_complex(name, X)
        try:
            arr = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected a numeric array of shape (n, "
                             f"{', '.join(map(str, self.input_shape))}), got "
                             f"{type(X).__name__}") from None
        if arr.ndim != len(self.input_shape) + 1 or tuple(arr.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{name}: expected shape (n, {', '.join(map(str, self.input_shape))}) matching "
                f"input_shape {self.input_shape}, got {arr.shape}"
                + ("; for a single input use X[None]" if arr.shape == self.input_shape else ""))
        if arr.shape[0] == 0:
            raise ValueError(f"{name}: no data points (shape {arr.shape})")
        if not np.isfinite(arr).all():
            pos = _first_nonfinite(arr)
            raise ValueError(f"{name}: value {arr[pos]} at position {pos} is not finite; "
                             "remove or impute NaN/inf inputs before fitting")
        return arr

    def _check_y(self, y, n: int) -> np.ndarray:
        checks.not_complex("y", y)
        try:
            arr = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"y: expected a numeric array, got {type(y).__name__}") from None
        want = (n,) if not self.is_vector else (n, self.n_outputs)
        if arr.shape != want:
            hint = ""
            if not self.is_vector and arr.ndim == 2:
                hint = f"; for a vector response build the model with n_outputs={arr.shape[1]}"
            raise ValueError(f"y: expected shape {want} (one response per row of X), got "
                             f"{arr.shape}{hint}")
        if not np.isfinite(arr).all():
            pos = _first_nonfinite(arr)
            raise ValueError(f"y: value {arr[pos]} at position {pos} is not finite")
        if self.likelihood == "bernoulli":
            values = np.unique(arr)
            if not np.isin(values, (0.0, 1.0)).all():
                shown = values[~np.isin(values, (0.0, 1.0))][:5].tolist()
                raise ValueError(f"y: likelihood='bernoulli' needs binary labels in {{0, 1}}, "
                                 f"got values such as {shown}")
        return arr

    def _prepare_data(self, data) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardized ``X`` ``(n, P)`` and ``y`` of the data ``(X, y)`` (a pair or a dict).

        ``X`` has shape ``(n, *input_shape)``; ``y`` has shape ``(n,)`` (``(n, k)`` with
        ``n_outputs=k``), binary for ``likelihood="bernoulli"``. Everything must be finite,
        and at least one input must vary between the rows.

        Raises
        ------
        ValueError
            Naming ``data``, ``X`` or ``y`` and what was expected.
        """
        if isinstance(data, dict):
            if "X" not in data or "y" not in data:
                raise ValueError(f"data: expected a dict with keys 'X' and 'y', got keys "
                                 f"{sorted(data)}")
            X, y = data["X"], data["y"]
        elif isinstance(data, (tuple, list)) and len(data) == 2:
            X, y = data
        else:
            raise ValueError(f"data: expected a pair (X, y) or a dict with 'X' and 'y', got "
                             f"{type(data).__name__}")
        X = self._check_X(X)
        y = self._check_y(y, X.shape[0])
        n = X.shape[0]
        if np.ptp(X.reshape(n, -1), axis=0).max() == 0:
            raise ValueError(f"X: no input varies between its rows (n={n}), so the "
                             "coefficients are not informed by the data (only the intercept "
                             "is); give inputs that vary between data points")
        if self.standardize:
            self.x_mean = torch.as_tensor(X.mean(0))
            centred = X - X.mean(0)
            sx = float(centred.std())
            self.x_scale = sx if sx > 0 else 1.0
        else:
            self.x_mean = torch.zeros(self.input_shape, dtype=torch.float64)
            self.x_scale = 1.0
        y2 = y.reshape(n, -1)
        if self.standardize and self.likelihood == "gaussian":
            self.y_center = torch.as_tensor(y2.mean(0))
            sy = float((y2 - y2.mean(0)).std()) if n > 1 else 1.0
            self.y_scale = sy if sy > 0 else 1.0
        else:
            self.y_center = torch.zeros(y2.shape[1], dtype=torch.float64)
            self.y_scale = 1.0
        yt = torch.as_tensor(y2)
        if self.likelihood == "gaussian":
            yt = (yt - self.y_center) / self.y_scale
        return self._standardize_X(torch.as_tensor(X)), (yt if self.is_vector else yt[:, 0]).float()

    def _standardize_X(self, X: torch.Tensor) -> torch.Tensor:
        """``(n, *input_shape)`` raw inputs -> ``(n, P)`` standardized float32."""
        Xs = (X.double() - self.x_mean.double()) / self.x_scale
        return Xs.reshape(X.shape[0], self.n_features).float()

    # --- model ------------------------------------------------------------------------------
    def _eta(self, w_dense: torch.Tensor, X: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Linear predictor ``batch + (n,)`` (``batch + (n, k)``) from dense ``W``."""
        nb = w_dense.ndim - len(self.weight_shape)
        batch = tuple(w_dense.shape[:nb])
        if self.is_vector:
            wf = w_dense.reshape(batch + (self.n_features, self.n_outputs))
            return torch.einsum("...pk,np->...nk", wf, X) + b.unsqueeze(-2)
        wf = w_dense.reshape(batch + (self.n_features,))
        return torch.einsum("...p,np->...n", wf, X) + b.unsqueeze(-1)

    def _intercept_dist(self, device=None):
        d = dist.Normal(torch.tensor(0.0, device=device),
                        torch.tensor(self.intercept_scale, device=device))
        return d.expand([self.n_outputs]).to_event(1) if self.is_vector else d

    def pyro_model(self, X, y=None, subsample_size: int | None = None):
        """Pyro model over standardized ``X`` ``(n, P)`` and ``y`` (``None`` to simulate).

        Parameters
        ----------
        X : torch.Tensor
            ``(n, P)`` standardized inputs, each flattened to its ``P = prod(input_shape)``
            features.
        y : torch.Tensor, optional
            ``(n,)`` response (``(n, k)`` for ``n_outputs=k``): standardized for a Gaussian
            likelihood, 0/1 labels for Bernoulli; ``None`` simulates it.
        subsample_size : int, optional
            Data points per mini-batch of the plate ``"obs"`` (likelihood scaled by n/B);
            ``None`` uses all ``n``.

        Returns
        -------
        torch.Tensor
            The site ``"y"`` of the plate's data points: the given response, or a simulated
            one.
        """
        w = self.weight_prior.sample()
        b = pyro.sample("intercept", self._intercept_dist(X.device))
        tau = (noise_precision("noise_precision", self.noise_a, self.noise_b)
               if self.likelihood == "gaussian" else None)
        with pyro.plate("obs", X.shape[0], subsample_size=subsample_size) as ind:
            eta = self._eta(w.reconstruct(), X[ind], b)
            if tau is None:
                d = dist.Bernoulli(logits=eta)
            else:
                d = dist.Normal(eta, tau.rsqrt())
            if self.is_vector:
                d = d.to_event(1)
            obs = None if y is None else y[ind]
            return pyro.sample("y", d, obs=obs)

    has_fast_path = True

    def fast_log_joint(self, values: dict, subsample: dict) -> torch.Tensor:
        """The model's log joint on batched values ``(C, ...)`` without tracing Pyro (closed
        forms of :mod:`~bayestensor.priors.densities`).

        Parameters
        ----------
        values : dict of str to torch.Tensor
            Constrained values of ``W``'s sites (``W.*``), ``intercept`` (``(C,)``, or
            ``(C, k)`` for a vector response) and, for a Gaussian likelihood,
            ``noise_precision`` (``(C,)``); each ``(C,) + site shape``.
        subsample : dict of str to torch.Tensor
            ``{"obs": index}``: the mini-batch's rows among the bound data (likelihood scaled
            by n/B); empty for all of them.

        Returns
        -------
        torch.Tensor
            ``(C,)`` log prior of the sites plus the log-likelihood of the (standardized)
            response.
        """
        Xb, yb, scale = self._data_batch(subsample)
        b = values["intercept"]
        lp = self.weight_prior.log_prob(values) + self._intercept_log_density(b)
        eta = self._eta(self.weight_prior.build(values).reconstruct(), Xb, b)
        if self.is_vector:  # (C, n, k) -> (C, n * k), the responses alike
            eta, yb = eta.flatten(-2), yb.flatten(-2)
        if self.likelihood == "gaussian":
            tau = values["noise_precision"]
            lp = lp + gamma_log_density(tau, self.noise_a, self.noise_b)
            return lp + scale * gaussian_log_likelihood(yb, eta, tau)
        ll = dist.Bernoulli(logits=eta).log_prob(yb).sum(-1)
        return lp + scale * ll

    def _intercept_log_density(self, b: torch.Tensor) -> torch.Tensor:
        """``log Normal(b | 0, intercept_scale)``, over the outputs of a vector response."""
        event_dims = 1 if self.is_vector else 0
        log_var = 2 * math.log(self.intercept_scale) * (self.n_outputs if self.is_vector else 1)
        return centered_normal_log_density(b, self.intercept_scale ** -2, log_var, event_dims)

    def block_ascent(self) -> CPRegressionBlockAscent | None:
        """The MAP's closed-form block updates on the bound data (see
        :mod:`bayestensor.models.cp_block_ascent`): CP format under the gamma prior with a
        Gaussian scalar response, whose sweep costs at most ``MAX_REGRESSION_SWEEP_FLOPS``
        (dense normal equations per factor); ``None`` otherwise. Made once per data set."""
        keywords = sites_and_priors(self.weight_prior, self.noise_a, self.noise_b)
        if keywords is None or self.likelihood != "gaussian" or self.is_vector:
            return None
        self._require_data()
        flops = regression_sweep_flops(self.weight_shape, self.weight_prior.ranks[0],
                                       self.n_data())
        if flops > MAX_REGRESSION_SWEEP_FLOPS:
            return None
        cached = self._block_ascent
        if cached is None or cached[0] is not self._y:
            ascent = CPRegressionBlockAscent(self._inputs, self._y, self.weight_shape,
                                             intercept_site="intercept",
                                             intercept_scale=self.intercept_scale, **keywords)
            self._block_ascent = cached = (self._y, ascent)
        return cached[1]

    def factor_redraws(self) -> RegressionGibbs | None:
        """SGHMC's exact redraws of the factors or cores and the intercept (see
        :mod:`bayestensor.models.regression_gibbs`): any format and rank prior, a scalar
        response (Gaussian, or binary labels through Polya-Gamma variables), at most
        ``MAX_REGRESSION_SWEEP_FLOPS`` per chain's redraw; ``None`` otherwise."""
        if self.is_vector:
            return None
        self._require_data()
        prior = self.weight_prior
        if regression_gibbs_flops(prior, self.n_data()) > MAX_REGRESSION_SWEEP_FLOPS:
            return None
        noise = "noise_precision" if self.likelihood == "gaussian" else None
        return RegressionGibbs(self._inputs, self._y, prior, noise_site=noise,
                               intercept_site="intercept", intercept_scale=self.intercept_scale,
                               likelihood=self.likelihood)

    def monitor_inputs(self, k: int) -> np.ndarray | None:
        """``k`` of the bound training inputs in data units, ``(k, *input_shape)``, at a fixed
        seed (every input where there are at most ``k``): where a convergence check reads the
        predictions (:func:`~bayestensor.results.convergence.fixed_entries`). Without them
        the check of a regression read the noise precision and the coefficients' norm alone,
        and passed where the predictions at 200 held-out inputs had R-hat 1.026 (a Tucker
        fit, docs/benchmarks.md, "Tucker and TT regression: exact redraws of factors and
        cores"); a binary regression has no noise precision. ``None`` without bound data or
        for a vector response.

        Parameters
        ----------
        k : int
            Most inputs.
        """
        k = positive_int("k", k)
        if self.is_vector or not self.has_data:
            return None
        n = self._inputs.shape[0]
        rows = (np.arange(n) if n <= k
                else np.sort(np.random.default_rng(0).choice(n, k, replace=False)))
        inputs = self._inputs[rows].double().cpu().reshape((len(rows),) + self.input_shape)
        return (inputs * self.x_scale + self.x_mean.double()).numpy()

    @property
    def sghmc_start_noncentred(self) -> bool:
        """For a Gaussian response under the log-uniform and half-Cauchy priors, yes: SGHMC's
        chains start at the non-centred mode (:attr:`BayesModel.sghmc_start_noncentred
        <bayestensor.models.BayesModel.sghmc_start_noncentred>`); under the gamma prior and
        for binary labels at the joint mode.

        The joint mode switches off slices the data need: the prior ``1 / s`` on ``[low,
        high]`` times the ``s^-count`` of a slice's Gaussian entries rises without bound
        toward ``s = low`` (``1e-4`` by default), which outweighs a weak slice's fit, and the
        way back up is ``log(0.2 / 1e-4) = 7.6`` units of a flat log prior, longer than a run
        climbs. The chains then agree on too low a rank and pass their check. In the
        non-centred coordinates the ``s^-count`` is gone. In ``benchmarks/log_uniform_start.py``
        (3 problems x 3 formats x 3 seeds; docs/benchmarks.md, "Log-uniform regression: where
        SGHMC starts") the joint start kept too few slices in 18 of 27 runs (TT rank 1 on two
        seeds of the 10^3 rank-3 problem, held-out RMSE 18.5 and 15.2), the non-centred start
        in none (12.5 and 9.4 there); its RMSE was 0.59-0.97x the joint start's in those 18
        runs and 0.998-1.003x in the others; the median run took 2x the seconds. The
        non-centred mode is no mode of the posterior, so SGHMC re-estimates its curvature
        early in burn-in; and the scales' exact redraws
        (:class:`~bayestensor.priors.conditionals.LogUniformConditional`) are what mixes the
        chains from there (24 of 27 runs at R-hat <= 1.02 with them, 14 without).

        The half-Cauchy prior's density is finite at ``s = 0``, but the ``s^-count`` pulls its
        joint mode the same way: from it 3 of the 27 runs kept too few slices and 17 reached
        R-hat 1.02; from the non-centred mode none and 24. And its rank posterior is NUTS's:
        on six CP runs (docs/benchmarks.md, "Half-Cauchy regression: the rank posterior
        against NUTS") the total variation between the rank distributions of SGHMC and NUTS
        was 0.02-0.29 (median 0.09) from the non-centred mode, 0.21-0.82 (median 0.43) from
        the joint mode, which put rank 2 at 0.67-0.82 where NUTS gave it none.

        Completion keeps the joint mode: there the non-centred mode keeps every slice on, and
        chains from it had R-hat 1.02-1.35 on the 26 x 24 x 22 TT and Tucker cases of
        ``benchmarks/sghmc_mixing.py`` (3 seeds each), against 1.007-1.021 from the joint
        mode. SVGD and VI start at the joint mode: SVGD's particles from the non-centred mode
        kept full rank under Tucker and TT (90% coverage 0.28 and 0.61). The gamma prior's
        rate (``1e-3``) bounds a slice's precision and its joint mode keeps the slices
        (cross: rank 4-5 as NUTS; cp3 and box: 3).

        Binary labels (``likelihood="bernoulli"``) keep the joint mode: a logistic fit keeps
        rising with the logits' scale on nearly separable labels, which the ``s^-count`` holds
        back at the joint mode and nothing does at the non-centred one (TT, 10^3 inputs, 600
        labels: the largest slice scales 3.7 and 5.6 there against 0.29 and 0.26). From it
        one of 12 log-uniform runs overflowed at step 9 and the chains were further apart
        (``--likelihood bernoulli`` of the benchmark: docs/benchmarks.md, "Binary labels keep
        the joint start").
        """
        return (self.likelihood == "gaussian"
                and self.weight_prior.prior.kind in ("log_uniform", "half_cauchy"))

    def gibbs_sites(self, factor_redraws: bool = False, start_at_mode: bool = True) -> dict:
        """:meth:`BayesModel.gibbs_sites` and, for a Gaussian likelihood over ``n`` scalar
        responses, the noise precision: ``Gamma(noise_a + n / 2, .)``. With
        ``factor_redraws`` (:meth:`factor_redraws`), the slice precisions (gamma) or scales
        (half-Cauchy) too, :meth:`LowRankPrior.conditionals`: with the factors, the blocked
        Gibbs sampler of Bayesian tensor regression. On the three problems of
        ``benchmarks/regression_mixing.py`` they took the noise precision's largest R-hat,
        with the factor redraws, from 1.126 to 1.050 (docs/benchmarks.md, "Tensor regression:
        exact factor redraws"); for CP completion the same redraws made chains stick, with
        or without its factor-row redraws (:meth:`BayesModel.gibbs_sites`).

        Parameters
        ----------
        factor_redraws, start_at_mode : bool
            As in :meth:`BayesModel.gibbs_sites
            <bayestensor.models.BayesModel.gibbs_sites>`.
        """
        shapes = super().gibbs_sites(factor_redraws, start_at_mode)
        if factor_redraws:
            shapes.update(self.weight_prior.conditionals(start_at_mode))
        if self.likelihood == "gaussian":
            self._require_data()
            shapes["noise_precision"] = self.noise_a + self._y.numel() / 2
        return shapes

    def ridge_estimate(self, seed: int = 0, max_rows: int = MAX_INIT_ROWS,
                       return_noise: bool = False):
        """Ridge estimate of standardized ``W`` with the penalty chosen by GCV.

        One thin SVD of the standardized design gives the whole ridge path; the penalty
        minimizes the generalized cross-validation score over a log grid. Bernoulli labels are
        regressed as ``2y - 1``. Uses a random subset of ``max_rows`` rows for large data.

        Parameters
        ----------
        seed : int
            Seed of the row subset (large data only).
        max_rows : int
            Most rows used.
        return_noise : bool
            Also return the GCV noise-variance estimate ``RSS / (n - df)`` (per response).

        Returns
        -------
        torch.Tensor
            ``weight_shape`` float64, on the standardized scale (and the noise variance).
        """
        self._require_data()
        X, y = self._inputs.double(), self._y.double()
        if self.likelihood == "bernoulli":
            y = 2.0 * y - 1.0
        y = y.reshape(X.shape[0], -1)
        y = y - y.mean(0)
        if X.shape[0] > max_rows:
            gen = torch.Generator().manual_seed(seed)
            rows = torch.randperm(X.shape[0], generator=gen)[:max_rows]
            X, y = X[rows], y[rows]
        n = X.shape[0]
        U, s, Vt = torch.linalg.svd(X, full_matrices=False)
        uty = U.T @ y  # (r, k)
        outside = float(y.pow(2).sum() - uty.pow(2).sum())
        s2 = s.pow(2)
        best, best_lam, noise_var = math.inf, float(s2.max()) if s2.numel() else 1.0, 1.0
        for lam in float(s2.max().clamp_min(MIN_SINGULAR_SQ)) * RIDGE_GRID:
            d = s2 / (s2 + lam)
            resid = outside + float(((1 - d).unsqueeze(-1) * uty).pow(2).sum())
            dof = max(n - float(d.sum()), MIN_RESIDUAL_DF)
            gcv = n * resid / dof ** 2
            if gcv < best:
                best, best_lam = gcv, float(lam)
                noise_var = resid / dof / y.shape[1]
        coef = (Vt.T @ ((s / (s2 + best_lam)).unsqueeze(-1) * uty)).reshape(self.weight_shape)
        return (coef, noise_var) if return_noise else coef

    def init_values(self, seed: int = 0, init: str = "svd") -> dict:
        """Starting values: decomposition of the ridge estimate of ``W``, or random.

        ``init="svd"`` decomposes :meth:`ridge_estimate` with the format's SVD-based
        ``from_tensor`` at ``max_rank`` (slices beyond what the estimate supports start small);
        ``init="random"`` draws factors whose reconstruction has the ridge estimate's scale.
        The intercept starts at the (logit of the) response mean, the noise precision at
        ``1 / Var(y)`` on the standardized scale (all variation treated as noise, as in
        completion: the prior then switches off unsupported slices before the fit tightens).

        ``init="map"`` returns the posterior mode reached from the ``"svd"`` start (the same
        optimizer as ``fit(method="map")``, on the full data), with the unsupported slices
        already switched off. ``fit``'s SGHMC and SVGD run their own MAP before sampling by
        default (``init_from="map"``), so they do not need it; it matters for samplers started
        at the initial values (NUTS, VI, SGHMC with ``init_from="init"``). Measured on the
        32x32 cross (n=500, 500 burn-in steps, SGHMC started at the initial values): modal
        rank 4-5 from ``"svd"``, rank 2 from ``"map"``.

        Parameters
        ----------
        seed : int
            Seed of the ridge estimate's row subset (large data), the decomposition and the
            random factors.
        init : {"svd", "random", "map"}
            The kind of start, as above.

        Returns
        -------
        dict of str to torch.Tensor
            Constrained value of every latent site, without a batch dim, on the standardized
            scale: ``W``'s parameters and slice hyper-parameters (``W.*``, see
            :meth:`LowRankPrior.init_values`), ``intercept`` (scalar, or ``(k,)`` for a vector
            response) and, for a Gaussian likelihood, the scalar ``noise_precision``.

        Raises
        ------
        ValueError
            When ``init`` is not ``"svd"``, ``"random"`` or ``"map"``.
        """
        self._require_data()
        if init not in ("svd", "random", "map"):
            raise ValueError(f"init: expected 'svd', 'random' or 'map', got {init!r}")
        if init == "map":
            start = self.init_values(seed=seed, init="svd")
            return posterior_mode(self, start, num_steps=MAP_START_STEPS)
        cls = self.weight_prior.format_cls
        ranks = self.weight_prior.ranks
        w0 = self.ridge_estimate(seed=seed)
        if init == "svd" and float(w0.norm()) > 0:
            if self.format == "cp" and ranks[0] > min(self.weight_shape):
                # An SVD start gives at most min(shape) components (e.g. 2 for two outputs);
                # a CP rank above that needs a random-start ALS to reach all of them.
                factors = cp_als(w0.numpy(), ranks[0], init="random",
                                 n_iter_max=RANDOM_ALS_ITERATIONS, seed=seed)
                tensor = CPTensor(self.weight_shape,
                                  [torch.as_tensor(f, dtype=torch.float32) for f in factors])
            else:
                tensor = cls.from_tensor(w0.numpy(), ranks, seed=seed,
                                         n_iter_max=INIT_ALS_ITERATIONS,
                                         dtype=torch.get_default_dtype())
        else:
            scale = float(w0.std()) if float(w0.std()) > 0 else 1.0 / math.sqrt(self.n_features)
            tensor = cls.random(self.weight_shape, ranks, scale=scale, seed=seed)
        values = self.weight_prior.init_values(tensor)
        y = self._y.double().reshape(self.n_data(), -1)
        if self.likelihood == "gaussian":
            b0 = y.mean(0)
            values["noise_precision"] = start_noise_precision(y)
        else:
            p = y.mean(0).clamp(MIN_CLASS_RATE, 1 - MIN_CLASS_RATE)
            b0 = (p / (1 - p)).log()
        values["intercept"] = (b0 if self.is_vector else b0[0]).float()
        return values

    # --- predictions ------------------------------------------------------------------------
    def check_predict_inputs(self, inputs, name: str = "X") -> torch.Tensor:
        """An ``(n, *input_shape)`` finite array, returned as a float64 tensor (raw units).

        Parameters
        ----------
        inputs : array_like
            The inputs to predict at.
        name : str
            Their name in error messages (``"X_test"`` for the command line's test inputs).

        Returns
        -------
        torch.Tensor
            ``inputs`` as float64.

        Raises
        ------
        ValueError
            Naming ``name``: complex numbers, a shape other than ``(n, *input_shape)``, no
            rows, or a value that is not finite.
        """
        return torch.as_tensor(self._check_X(inputs, name))

    def predict_entries(self, samples: dict, X) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample predicted means ``(S, n)`` and noise sd ``(S,)`` in data units.

        For a vector response the means are ``(S, n * k)``, row-major in ``(n, k)``. For
        ``likelihood="bernoulli"`` the means are probabilities ``P(y=1)`` and the noise sd is
        zero (see the class notes). ``samples`` holds site values with one flat leading dim.

        Parameters
        ----------
        samples : dict of str to torch.Tensor
            Site values, ``(S,) + site shape`` each.
        X : array_like
            ``(n, *input_shape)`` inputs in the data's own units (as
            :meth:`check_predict_inputs` returns them); standardized here.

        Returns
        -------
        mean : torch.Tensor
            ``(S, n)`` (``(S, n * k)``) predicted mean response, or probability ``P(y=1)``.
        noise_sd : torch.Tensor
            ``(S,)`` noise sd of each sample in data units (zeros for Bernoulli).
        """
        Xs = self._standardize_X(torch.as_tensor(X))
        w = self.weight_prior.build(samples).reconstruct()
        eta = self._eta(w, Xs, samples["intercept"])
        s = eta.shape[0]
        if self.likelihood == "bernoulli":
            mu = torch.sigmoid(eta)
            noise_sd = torch.zeros(s, dtype=mu.dtype)
        else:
            mu = eta * self.y_scale + (self.y_center.to(eta.dtype) if self.is_vector
                                       else float(self.y_center[0]))
            noise_sd = samples["noise_precision"].rsqrt() * self.y_scale
        return mu.reshape(s, -1), noise_sd

    def arviz_dims(self) -> dict[str, list[str]]:
        """As for every built-in model, with a vector response's axis named ``output``."""
        dims = super().arviz_dims()
        if self.is_vector:
            dims[self.observed_site] = ["obs", "output"]
        return dims

    def observed_data(self) -> torch.Tensor:
        """The response ``(n,)`` (``(n, k)`` for a vector response) in data units."""
        self._require_data()
        y = self._y.double()
        if self.likelihood == "bernoulli":
            return y
        centre = self.y_center.double() if self.is_vector else float(self.y_center[0])
        return y * self.y_scale + centre

    def observation_distribution(self, samples: dict) -> torch.distributions.Distribution:
        """Per-sample distribution of each response, ``(S, n)`` or ``(S, n, k)``, data units."""
        self._require_data()
        w = self.weight_prior.build(samples).reconstruct().double()
        eta = self._eta(w, self._inputs.double(), samples["intercept"].double())
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=eta)
        centre = self.y_center.double() if self.is_vector else float(self.y_center[0])
        tau = samples["noise_precision"].double()
        sd = tau.rsqrt().reshape(tau.shape + (1,) * (eta.ndim - tau.ndim)) * self.y_scale
        return dist.Normal(eta * self.y_scale + centre, sd)

    def rank_signal(self, samples: dict) -> torch.Tensor | None:
        """``(S,)`` root mean square of each sample's ``<X, W>`` (the intercept left out) over
        up to ``SIGNAL_POINTS`` rows of the bound data, evenly spaced, on the standardized
        scale, where the response has unit sd; ``None`` for a Bernoulli likelihood, without
        standardization or without bound data (no unit to measure in).

        The effective rank counts no slice of a sample whose ``<X, W>`` is below the rank
        rule's threshold in these units (:mod:`bayestensor.priors.effective_rank`): a
        response the inputs do not explain leaves every slice equally negligible.
        """
        if self.likelihood == "bernoulli" or not self.standardize or self._y is None:
            return None
        n = self._inputs.shape[0]
        rows = torch.linspace(0, n - 1, min(n, SIGNAL_POINTS)).long().to(self._inputs.device)
        X = self._inputs[rows].to(next(iter(samples.values())).device)

        def predictor(chunk):
            w = self.weight_prior.build(chunk).reconstruct().to(X.dtype)
            return self._eta(w, X, torch.zeros(w.shape[:1] + (self.n_outputs,) * self.is_vector,
                                               dtype=X.dtype, device=X.device))

        return signal_rms(samples, predictor)

    def low_rank(self, samples: dict):
        """The low-rank ``W`` (in data units) for given (batched) site values."""
        w = self.weight_prior.build(samples)
        params = list(w.params)
        params[0] = params[0] * (self.y_scale / self.x_scale)
        return type(w)(w.shape, params)

    def weights(self, samples: dict) -> torch.Tensor:
        """Dense ``W`` per sample in data units, ``(S, *weight_shape)``."""
        w = self.weight_prior.build(samples).reconstruct()
        return w * (self.y_scale / self.x_scale)

    def intercepts(self, samples: dict) -> torch.Tensor:
        """Intercept per sample in data units, ``(S,)`` (``(S, k)`` for a vector response).

        Includes the effect of centring ``X``: ``b = c_y + s_y * b_std - <W, m>``.
        """
        w = self.weights(samples).double()
        s = w.shape[0]
        m = self.x_mean.double().reshape(-1)
        if self.is_vector:
            shift = torch.einsum("spk,p->sk", w.reshape(s, self.n_features, -1), m)
            centre = self.y_center.double()
        else:
            shift = w.reshape(s, -1) @ m
            centre = float(self.y_center[0])
        return centre + self.y_scale * samples["intercept"].double() - shift

    def weight_posterior(self, posterior) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and sd of ``W`` in data units, each of shape ``weight_shape``.

        Parameters
        ----------
        posterior : Posterior or dict
            A fitted posterior, or site values with one flat leading sample dim.

        Returns
        -------
        mean, sd : np.ndarray
            For a 2-D ``input_shape`` these are images
            (:func:`bayestensor.viz.regression.plot_weights` draws them).
        """
        samples = posterior.flat_samples() if hasattr(posterior, "flat_samples") else posterior
        w = self.weights(samples).double()
        return w.mean(0).numpy(), w.std(0, unbiased=False).numpy()

    # --- persistence ------------------------------------------------------------------------
    def config(self) -> dict:
        return {"input_shape": list(self.input_shape), "format": self.format,
                "max_rank": self.max_rank, "prior": self.prior_name,
                "prior_params": self.prior_params, "likelihood": self.likelihood,
                "n_outputs": self.n_outputs, "noise_a": self.noise_a, "noise_b": self.noise_b,
                "intercept_scale": self.intercept_scale, "standardize": self.standardize,
                "max_params": self.max_params}

    def state(self) -> dict:
        return {"x_mean": self.x_mean.tolist(), "x_scale": self.x_scale,
                "y_center": self.y_center.tolist(), "y_scale": self.y_scale}

    def load_state(self, state: dict) -> None:
        if "x_mean" in state:
            self.x_mean = torch.as_tensor(state["x_mean"], dtype=torch.float64).reshape(
                self.input_shape)
        self.x_scale = float(state.get("x_scale", 1.0))
        if "y_center" in state:
            self.y_center = torch.as_tensor(state["y_center"], dtype=torch.float64).reshape(-1)
        self.y_scale = float(state.get("y_scale", 1.0))

    def __repr__(self) -> str:
        out = f", n_outputs={self.n_outputs}" if self.is_vector else ""
        return (f"TensorRegression(input_shape={self.input_shape}, format={self.format!r}, "
                f"max_rank={self.max_rank}, prior={self.prior_name!r}, "
                f"likelihood={self.likelihood!r}{out})")


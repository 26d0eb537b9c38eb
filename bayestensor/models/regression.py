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

from bayestensor.formats import get_format
from bayestensor.priors import LowRankPrior, noise_precision
from bayestensor.models.base import BayesModel

LIKELIHOODS = ("gaussian", "bernoulli")
#: The ridge initialization uses at most this many rows (a random subset beyond it).
MAX_INIT_ROWS = 20_000


def _positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number, got {value!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name}: expected a positive number, got {value!r}")
    return v


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

    Predictions, ``weights`` and ``intercepts`` are returned in the data's own units.

    Parameters
    ----------
    input_shape : sequence of int
        Shape of one input ``X_i`` (e.g. ``(32, 32)`` for an image). ``W`` needs at least two
        modes: a 1-D input is allowed only with ``n_outputs``.
    format : {"cp", "tucker", "tt"}
        Low-rank format of ``W``.
    max_rank : int or sequence of int
        Largest rank considered, per rank dimension; the prior prunes the rest.
    prior : {"gamma", "half_cauchy", "log_uniform"}
        Hyperprior on the per-slice scales.
    prior_params : dict, optional
        Its parameters (see :class:`bayestensor.priors.RankPrior`).
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
        (recommended: the default priors assume unit scale).

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

    def __init__(self, input_shape, format: str = "cp", max_rank=5, prior="gamma",
                 prior_params: dict | None = None, likelihood: str = "gaussian",
                 n_outputs: int | None = None, noise_a: float = 1.0, noise_b: float = 1e-2,
                 intercept_scale: float = 10.0, standardize: bool = True):
        try:
            shape = tuple(int(s) for s in input_shape)
        except TypeError:
            raise ValueError(f"input_shape: expected a sequence of positive integers, got "
                             f"{input_shape!r}") from None
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"input_shape: expected a sequence of positive integers, got "
                             f"{input_shape!r}")
        fmt = get_format(format)
        if fmt.format_name == "ttm":
            raise ValueError("format: expected 'cp', 'tucker' or 'tt' for a regression "
                             "coefficient tensor, got 'ttm'")
        if n_outputs is not None:
            if isinstance(n_outputs, bool) or not isinstance(n_outputs, (int, np.integer)) \
                    or n_outputs < 1:
                raise ValueError(f"n_outputs: expected a positive integer or None, got "
                                 f"{n_outputs!r}")
            n_outputs = int(n_outputs)
        weight_shape = shape + ((n_outputs,) if n_outputs is not None else ())
        if len(weight_shape) < 2:
            raise ValueError(f"input_shape: a low-rank coefficient tensor needs at least two "
                             f"modes, got input_shape {shape}; reshape the input into a matrix "
                             "or tensor")
        if isinstance(max_rank, (int, np.integer)) and max_rank < 1:
            raise ValueError(f"max_rank: expected a positive integer, got {max_rank}")
        if isinstance(max_rank, (list, tuple)) and any(int(r) < 1 for r in max_rank):
            raise ValueError(f"max_rank: expected positive integers, got {max_rank}")
        lik = str(likelihood).lower()
        if lik not in LIKELIHOODS:
            raise ValueError(f"likelihood: expected one of {LIKELIHOODS}, got {likelihood!r}")
        self.noise_a = _positive("noise_a", noise_a)
        self.noise_b = _positive("noise_b", noise_b)
        self.intercept_scale = _positive("intercept_scale", intercept_scale)
        self.input_shape = shape
        self.n_outputs = n_outputs
        self.weight_shape = weight_shape
        self.n_features = math.prod(shape)
        self.likelihood = lik
        self.format = fmt.format_name
        self.max_rank = list(max_rank) if isinstance(max_rank, tuple) else max_rank
        self.prior_name = prior if isinstance(prior, str) else prior.kind
        self.prior_params = dict(prior_params or {})
        self.weight_prior = LowRankPrior("W", weight_shape, max_rank, fmt, prior, prior_params)
        self.standardize = bool(standardize)
        k = n_outputs or 1
        self.x_mean = torch.zeros(shape, dtype=torch.float64)
        self.x_scale = 1.0
        self.y_center = torch.zeros(k, dtype=torch.float64)
        self.y_scale = 1.0
        self._X: torch.Tensor | None = None
        self._y: torch.Tensor | None = None

    # --- shapes -----------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the coefficient tensor ``W`` (``input_shape`` plus the output mode)."""
        return self.weight_shape

    @property
    def is_vector(self) -> bool:
        return self.n_outputs is not None

    # --- data -------------------------------------------------------------------------------
    def _check_X(self, X, name: str = "X") -> np.ndarray:
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

    def set_data(self, data) -> None:
        """Bind the data ``(X, y)`` (a pair or a dict with keys ``"X"`` and ``"y"``).

        ``X`` has shape ``(n, *input_shape)``; ``y`` has shape ``(n,)`` (``(n, k)`` with
        ``n_outputs=k``), binary for ``likelihood="bernoulli"``. Everything must be finite.

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
        self._X = self._standardize_X(torch.as_tensor(X))
        yt = torch.as_tensor(y2)
        if self.likelihood == "gaussian":
            yt = (yt - self.y_center) / self.y_scale
        self._y = (yt if self.is_vector else yt[:, 0]).float()

    def _standardize_X(self, X: torch.Tensor) -> torch.Tensor:
        """``(n, *input_shape)`` raw inputs -> ``(n, P)`` standardized float32."""
        Xs = (X.double() - self.x_mean.double()) / self.x_scale
        return Xs.reshape(X.shape[0], self.n_features).float()

    def to(self, device) -> "TensorRegression":
        """Move the bound (standardized) data to ``device``; predictions stay on the CPU."""
        self._require_data()
        device = torch.device(device)
        self._X, self._y = self._X.to(device), self._y.to(device)
        return self

    def _require_data(self):
        if self._X is None:
            raise RuntimeError("TensorRegression: no data bound; call set_data() or fit()")

    def model_args(self) -> tuple:
        self._require_data()
        return (self._X, self._y)

    def n_data(self) -> int:
        self._require_data()
        return int(self._X.shape[0])

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
        """Pyro model over standardized ``X`` ``(n, P)`` and ``y`` (``None`` to simulate)."""
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
        """The model's log joint on batched values ``(C, ...)`` without tracing Pyro."""
        X, y = self.model_args()
        b = values["intercept"]
        lp = self.weight_prior.log_prob(values) + self._intercept_dist(b.device).log_prob(b)
        ind = subsample.get("obs")
        n = X.shape[0]
        if ind is not None:
            Xb, yb, scale = X[ind], y[ind], n / ind.shape[0]
        else:
            Xb, yb, scale = X, y, 1.0
        eta = self._eta(self.weight_prior.build(values).reconstruct(), Xb, b)
        if self.likelihood == "gaussian":
            tau = values["noise_precision"]
            lp = lp + dist.Gamma(torch.tensor(self.noise_a),
                                 torch.tensor(self.noise_b)).log_prob(tau)
            sd = tau.rsqrt().reshape(tau.shape + (1,) * (eta.ndim - tau.ndim))
            ll = dist.Normal(eta, sd).log_prob(yb)
        else:
            ll = dist.Bernoulli(logits=eta).log_prob(yb)
        ll = ll.reshape(ll.shape[: ll.ndim - (2 if self.is_vector else 1)] + (-1,)).sum(-1)
        return lp + scale * ll

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
        X, y = self._X.double(), self._y.double()
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
        for lam in float(s2.max().clamp_min(1e-12)) * np.logspace(-6, 1, 36):
            d = s2 / (s2 + lam)
            resid = outside + float(((1 - d).unsqueeze(-1) * uty).pow(2).sum())
            df = float(d.sum())
            gcv = n * resid / max(n - df, 1e-3) ** 2
            if gcv < best:
                best, best_lam = gcv, float(lam)
                noise_var = resid / max(n - df, 1e-3) / y.shape[1]
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
        """
        self._require_data()
        if init not in ("svd", "random", "map"):
            raise ValueError(f"init: expected 'svd', 'random' or 'map', got {init!r}")
        if init == "map":
            return self._map_start(seed)
        cls = self.weight_prior.format_cls
        ranks = self.weight_prior.ranks
        w0 = self.ridge_estimate(seed=seed)
        if init == "svd" and float(w0.norm()) > 0:
            if self.format == "cp" and ranks[0] > min(self.weight_shape):
                # An SVD start gives at most min(shape) components (e.g. 2 for two outputs);
                # a CP rank above that needs a random-start ALS to reach all of them.
                tensor = _cp_random_als(w0.numpy(), ranks[0], seed)
            else:
                tensor = cls.from_tensor(w0.numpy(), ranks, seed=seed, n_iter_max=50)
        else:
            scale = float(w0.std()) if float(w0.std()) > 0 else 1.0 / math.sqrt(self.n_features)
            tensor = cls.random(self.weight_shape, ranks, scale=scale, seed=seed)
        values = self.weight_prior.init_values(tensor)
        y = self._y.double().reshape(self.n_data(), -1)
        if self.likelihood == "gaussian":
            b0 = y.mean(0)
            values["noise_precision"] = torch.tensor(1.0 / max(float(y.var()), 1e-8))
        else:
            p = y.mean(0).clamp(1e-3, 1 - 1e-3)
            b0 = (p / (1 - p)).log()
        values["intercept"] = (b0 if self.is_vector else b0[0]).float()
        return values

    def _map_start(self, seed: int, num_steps: int = 2000) -> dict:
        """The posterior mode found from the ``"svd"`` start (what ``init="map"`` returns)."""
        from bayestensor.infer.baselines import map_fit
        from bayestensor.infer.log_density import LogDensity

        start = self.init_values(seed=seed, init="svd")
        potential = LogDensity(self.pyro_model, self.model_args(), init_values=start,
                              fast_log_joint=self.fast_log_joint, seed=seed)
        theta, _ = map_fit(potential, potential.init_theta(1), num_steps=num_steps,
                           progress=False)
        return {k: v[0].detach() for k, v in potential.constrain(theta).items()}

    def block_axes(self) -> dict[str, int]:
        """Each low-rank parameter splits by its first rank axis (e.g. CP factor columns)."""
        wp = self.weight_prior
        return {site: min(spec.rank_axes) for site, spec in zip(wp.param_sites, wp.specs)
                if spec.rank_axes}

    # --- predictions ------------------------------------------------------------------------
    def check_predict_inputs(self, inputs) -> torch.Tensor:
        """An ``(n, *input_shape)`` finite array, returned as a float64 tensor (raw units)."""
        return torch.as_tensor(self._check_X(inputs))

    def predict_entries(self, samples: dict, X) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample predicted means ``(S, n)`` and noise sd ``(S,)`` in data units.

        For a vector response the means are ``(S, n * k)``, row-major in ``(n, k)``. For
        ``likelihood="bernoulli"`` the means are probabilities ``P(y=1)`` and the noise sd is
        zero (see the class notes). ``samples`` holds site values with one flat leading dim.
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

    def low_rank(self, samples: dict):
        """The low-rank ``W`` (in data units) for given (batched) site values."""
        w = self.weight_prior.build(samples)
        params = list(w.params)
        params[0] = params[0] * (self.y_scale / self.x_scale)
        return type(w)(w.shape, params)

    def slice_scales(self, samples: dict) -> list[torch.Tensor]:
        """Slice scales per rank dimension, ``(S, R_d)`` each (see ``LowRankTensor.slice_norms``)."""
        return self.weight_prior.build(samples).slice_norms()

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
            For a 2-D ``input_shape`` these are images (``plot_weights`` draws them).
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
                "intercept_scale": self.intercept_scale, "standardize": self.standardize}

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


def _cp_random_als(tensor: np.ndarray, rank: int, seed: int):
    """CP decomposition by ALS from a random start (TensorLy), columns balanced across modes."""
    import tensorly as tl

    from bayestensor.formats.cp import CPTensor, balance_cp_factors

    weights, factors = tl.decomposition.parafac(tl.tensor(tensor), rank=rank, init="random",
                                                n_iter_max=200, random_state=seed)
    factors = [np.asarray(f) * (np.asarray(weights) if n == 0 else 1.0)
               for n, f in enumerate(factors)]
    factors = balance_cp_factors(factors)
    return CPTensor(tensor.shape, [torch.as_tensor(f, dtype=torch.float32) for f in factors])


def plot_weights(mean, sd=None, truth=None, path=None, title: str | None = None):
    """Draw a 2-D coefficient matrix: truth (if known), posterior mean and posterior sd.

    Parameters
    ----------
    mean : array_like, 2-D
        Posterior mean of ``W`` (e.g. from :meth:`TensorRegression.weight_posterior`).
    sd : array_like, 2-D, optional
        Posterior sd of ``W``.
    truth : array_like, 2-D, optional
        The true ``W`` of a synthetic problem, drawn on the same colour scale as the mean.
    path : path, optional
        Write a PNG here.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    mean = np.asarray(mean, dtype=np.float64)
    if mean.ndim != 2:
        raise ValueError(f"mean: expected a 2-D array (an image-shaped W), got shape {mean.shape}")
    panels = []
    if truth is not None:
        panels.append(("true W", np.asarray(truth, dtype=np.float64), "RdBu_r", True))
    panels.append(("posterior mean", mean, "RdBu_r", True))
    if sd is not None:
        panels.append(("posterior sd", np.asarray(sd, dtype=np.float64), "viridis", False))
    lim = max(float(np.abs(p[1]).max()) for p in panels if p[3]) or 1.0
    fig = Figure(figsize=(3.2 * len(panels), 3.0))
    FigureCanvasAgg(fig)
    for k, (name, arr, cmap, symmetric) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        kw = {"vmin": -lim, "vmax": lim} if symmetric else {"vmin": 0.0}
        im = ax.imshow(arr, cmap=cmap, **kw)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig

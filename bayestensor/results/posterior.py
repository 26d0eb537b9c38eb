"""The result of ``fit``: samples with (chain, draw) dims, statistics, predictions."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bayestensor.checks import choice, positive_int, real_number
from bayestensor.io import load_tensors, save_tensors
from bayestensor.models import model_from_config
from bayestensor.priors import effective_rank as rank_mod
from bayestensor.results import arviz_adapter, convergence, inference_data
from bayestensor.results.quantiles import normal_mixture_cdf, normal_mixture_quantiles

#: Methods whose draws form Markov chains (R-hat and ESS apply).
MARKOV_METHODS = {"sghmc", "nuts"}
#: Draws x inputs predicted at once by default in ``Posterior.predict``.
PREDICT_CHUNK_ELEMENTS = 1 << 18


def coverage_from_pit(pit, levels) -> list[float]:
    """Share of PIT values inside each central interval: a value lies in the central interval
    of level ``L`` exactly when its PIT is within ``L / 2`` of 0.5."""
    dist = np.abs(np.asarray(pit, dtype=np.float64) - 0.5)
    return [float(np.mean(dist <= lv / 2)) for lv in levels]


def _column_moments(draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Variance and mean over draws of each column of ``draws`` ``(S, n)``, in float64, a
    block of columns at a time (a whole float64 copy of 1,000 draws x 100,000 entries is
    800 MB, whose allocation cost more than the sums)."""
    step = max(1, PREDICT_CHUNK_ELEMENTS // max(1, draws.shape[0]))
    var, mean = [], []
    for i in range(0, draws.shape[1], step):
        block = draws[:, i:i + step].to(torch.float64, copy=True)  # changed in place below
        mean.append(block.mean(0))
        # two passes of plain sums: torch.var_mean over the draws' axis is 5x slower
        var.append(block.sub_(mean[-1]).square_().mean(0))
    return torch.cat(var), torch.cat(mean)


@dataclass
class Prediction:
    """Posterior predictions at a set of indices.

    Attributes
    ----------
    mean : np.ndarray
        Posterior mean of each entry.
    sd : np.ndarray
        Posterior predictive sd of a new noisy observation (entry uncertainty plus noise).
    sd_mean : np.ndarray
        Posterior sd of the noise-free entry (zero for MAP: one point, no spread).
    draws : torch.Tensor
        ``(S, n)`` per-sample entry values.
    noise_sd : torch.Tensor
        ``(S,)`` per-sample noise sd.

    Notes
    -----
    For ``method="map"`` there is one sample: ``interval(kind="mean")`` is degenerate (lower =
    upper = mean) and ``interval(kind="predictive")`` reflects the noise only.
    """

    mean: np.ndarray
    sd: np.ndarray
    sd_mean: np.ndarray
    draws: torch.Tensor = field(repr=False)
    noise_sd: torch.Tensor = field(repr=False)

    def interval(self, level: float = 0.9, kind: str = "predictive") -> tuple[np.ndarray, np.ndarray]:
        """Central credible interval at ``level``.

        Parameters
        ----------
        level : float in (0, 1)
        kind : {"predictive", "mean"}
            ``"predictive"`` for a new noisy observation (quantiles of the Gaussian mixture over
            samples), ``"mean"`` for the noise-free entry (empirical quantiles over samples).
        """
        if not 0 < level < 1:
            raise ValueError(f"level: expected a number in (0, 1), got {level}")
        lo_p, hi_p = (1 - level) / 2, (1 + level) / 2
        if kind == "mean":
            q = torch.quantile(self.draws.double(), torch.tensor([lo_p, hi_p], dtype=torch.float64), dim=0)
            return q[0].numpy(), q[1].numpy()
        if kind != "predictive":
            raise ValueError(f"kind: expected 'predictive' or 'mean', got {kind!r}")
        lo, hi = normal_mixture_quantiles(self.draws, self.noise_sd, [lo_p, hi_p])
        return lo.numpy(), hi.numpy()

    def pit(self, values) -> np.ndarray:
        """Probability integral transform: the predictive CDF of each entry at ``values``.

        Uniform on (0, 1) for a calibrated predictive distribution; a U shape means intervals
        too narrow, a hump in the middle intervals too wide.

        Parameters
        ----------
        values : array_like, shape (n,)
            Observed values, one per predicted entry.

        Returns
        -------
        np.ndarray, shape (n,)
        """
        values = self._observed("values", values)
        return normal_mixture_cdf(self.draws, self.noise_sd, values).numpy()

    def _observed(self, name: str, values) -> np.ndarray:
        """``values`` as a float64 array of one finite number per predicted entry, or a
        ``ValueError`` naming the argument."""
        try:
            out = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected {len(self.mean)} real numbers, one per "
                             f"predicted entry, got {type(values).__name__}") from None
        if out.shape != np.shape(self.mean):
            raise ValueError(f"{name}: expected shape {np.shape(self.mean)}, one value per "
                             f"predicted entry, got {out.shape}")
        if not np.isfinite(out).all():
            raise ValueError(f"{name}: expected finite values, got "
                             f"{int((~np.isfinite(out)).sum())} NaN or infinite")
        return out

    def coverage(self, truth, level: float = 0.9, kind: str = "predictive"):
        """Fraction of ``truth`` inside the central interval at ``level``.

        Parameters
        ----------
        truth : array_like, shape (n,)
        level : float in (0, 1), or a sequence of them
            With several levels, a list of coverages (one pass: ``truth`` is inside the
            central predictive interval of level ``L`` exactly when its PIT is within ``L / 2``
            of 0.5).
        kind : {"predictive", "mean"}
        """
        levels = [level] if np.ndim(level) == 0 else list(level)
        for lv in levels:
            if not 0 < lv < 1:
                raise ValueError(f"level: expected numbers in (0, 1), got {level}")
        choice("kind", kind, ("predictive", "mean"))
        t = self._observed("truth", truth)
        if kind == "predictive":
            out = coverage_from_pit(self.pit(t), levels)
        else:
            out = []
            for lv in levels:
                lo, hi = self.interval(lv, kind)
                out.append(float(np.mean((t >= lo) & (t <= hi))))
        return out[0] if np.ndim(level) == 0 else out


class Posterior:
    """Samples of a fitted model, in constrained space, with ``(chain, draw, ...)`` dims.

    Parameters
    ----------
    samples : dict of str to tensor
        Site values, each ``(chain, draw, *site_shape)``.
    sample_stats : dict of str to tensor, optional
        Per-draw statistics ``(chain, draw)`` (e.g. ``potential``, ``step_size``).
    method : str
        The method that produced the samples.
    model : BayesModel, optional
        The built-in model (enables ``predict`` and ``effective_rank``).
    info : dict, optional
        Run metadata: seed, settings, timings, interruption state.

    Notes
    -----
    For ``"svgd"`` the draw dimension holds particles, for ``"map"`` one point, for ``"vi"``
    independent draws from the variational posterior: none of these is a Markov chain, so
    R-hat and ESS do not apply (``summary`` leaves them out and says so).
    """

    def __init__(self, samples: dict, sample_stats: dict | None = None, method: str = "",
                 model=None, info: dict | None = None):
        self.samples = {k: torch.as_tensor(v).detach() for k, v in samples.items()}
        self.sample_stats = {k: torch.as_tensor(v).detach() for k, v in (sample_stats or {}).items()}
        self.method = method
        self.model = model
        self.info = dict(info or {})
        self.pyro_model = None  # (model, args, kwargs) of a user's Pyro model, see attach_model
        shapes = {tuple(v.shape[:2]) for v in self.samples.values()}
        if len(shapes) != 1:
            raise ValueError(f"samples: all sites need the same (chain, draw) dims, got {shapes}")

    # --- shape ------------------------------------------------------------------------------
    @property
    def num_chains(self) -> int:
        """The leading dimension of every site's samples: the chains of SGHMC and NUTS, the
        independent runs of SVGD and VI (1 unless ``fit`` was asked for more; a run's particles
        or draws are one chain's draws), 1 for MAP."""
        return int(next(iter(self.samples.values())).shape[0])

    @property
    def num_draws(self) -> int:
        """Draws per chain: the second dimension of every site's samples."""
        return int(next(iter(self.samples.values())).shape[1])

    @property
    def is_markov_chain(self) -> bool:
        """Whether R-hat/ESS apply (SGHMC, NUTS)."""
        return self.method in MARKOV_METHODS

    def flat_samples(self) -> dict:
        """Site values with chain and draw merged into one leading dim."""
        return {k: v.reshape((-1,) + tuple(v.shape[2:])) for k, v in self.samples.items()}

    def mean(self) -> dict:
        """Posterior mean of every site."""
        return {k: v.float().mean((0, 1)) for k, v in self.samples.items()}

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.samples[name]

    def __repr__(self) -> str:
        return (f"Posterior(method={self.method!r}, chains={self.num_chains}, "
                f"draws={self.num_draws}, sites={list(self.samples)})")

    # --- model-aware ------------------------------------------------------------------------
    def _require_model(self, what: str):
        if self.model is None or not hasattr(self.model, "predict_entries"):
            raise TypeError(f"{what}: needs a built-in bayestensor model; for a custom Pyro "
                            "model use pyro.infer.Predictive with posterior.flat_samples()")

    def predict(self, inputs, chunk_size: int | None = None) -> Prediction:
        """Predict at new inputs, averaging over all samples.

        Parameters
        ----------
        inputs : array_like
            What the model predicts at: an ``(n, ndim)`` index array for completion (validated
            against the model's shape), input tensors for regression.
        chunk_size : int, optional
            Inputs evaluated at once (bounds memory to ``S * chunk_size`` floats); a positive
            integer. Default: about :data:`PREDICT_CHUNK_ELEMENTS` draws x inputs, small enough
            for the gathered factor rows to stay in cache (4x faster than one large chunk for
            20,000 entries x 400 draws).

        Returns
        -------
        Prediction
            Mean, predictive sd, sd of the mean, and ``interval(level)``.

        Raises
        ------
        ValueError
            Inputs the model refuses (for completion: indices out of range, no indices), or
            a ``chunk_size`` that is not a positive integer.
        """
        if chunk_size is not None:
            positive_int("chunk_size", chunk_size)
        self._require_model("predict")
        idx = self.model.check_predict_inputs(inputs)
        flat = self.flat_samples()
        if chunk_size is None:
            draws = max(1, self.num_chains * self.num_draws)
            model_chunk = getattr(self.model, "predict_chunk_size", lambda *_: None)(draws, idx)
            chunk_size = model_chunk or max(64, PREDICT_CHUNK_ELEMENTS // draws)
        draws = []
        for start in range(0, idx.shape[0], chunk_size):
            mu, noise_sd = self.model.predict_entries(flat, idx[start:start + chunk_size])
            draws.append(mu.detach())
        draws = draws[0] if len(draws) == 1 else torch.cat(draws, -1)
        noise_sd = noise_sd.detach()
        var_mean, mean = _column_moments(draws)
        pred_var = var_mean + noise_sd.double().pow(2).mean()
        return Prediction(mean=mean.numpy(), sd=pred_var.sqrt().numpy(),
                          sd_mean=var_mean.sqrt().numpy(), draws=draws, noise_sd=noise_sd)

    def predict_dense(self, max_entries: int = 10_000_000) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and predictive sd of the whole tensor (only when it fits).

        Raises
        ------
        ValueError
            When the tensor has more than ``max_entries`` entries.
        """
        self._require_model("predict_dense")
        shape = tuple(self.model.shape)
        n = math.prod(shape)
        if n > max_entries:
            raise ValueError(f"max_entries: the dense tensor has {n} entries, more than "
                             f"{max_entries}; predict at chosen indices instead")
        idx = np.indices(shape).reshape(len(shape), -1).T
        pred = self.predict(idx)
        return pred.mean.reshape(shape), pred.sd.reshape(shape)

    def slice_scales(self) -> list[torch.Tensor]:
        """Slice scales per rank dimension, ``(chain, draw, R_d)``."""
        self._require_model("slice_scales")
        flat = self.flat_samples()
        scales = self.model.slice_scales(flat)
        return [s.reshape(self.num_chains, self.num_draws, -1) for s in scales]

    def effective_rank(self, threshold: float = rank_mod.DEFAULT_THRESHOLD) -> rank_mod.RankPosterior:
        """Distribution of the effective rank over samples (see
        :mod:`bayestensor.priors.effective_rank`; samples whose low-rank part is at most
        ``threshold`` times the data's sd have rank 0, see the model's ``rank_signal``)."""
        scales = self.slice_scales()
        signal = self.model.rank_signal(self.flat_samples())
        if signal is not None:
            signal = signal.reshape(self.num_chains, self.num_draws)
        return rank_mod.rank_posterior(scales, threshold, signal=signal)

    def low_rank(self, i: int | None = None):
        """The posterior-mean low-rank tensor, or sample ``i`` (flattened index)."""
        self._require_model("low_rank")
        if i is None:
            return self.model.low_rank({k: v.unsqueeze(0) for k, v in self.mean().items()}).sample(0)
        return self.model.low_rank(self.flat_samples()).sample(i)

    # --- ArviZ ------------------------------------------------------------------------------
    def attach_model(self, model, model_args=(), model_kwargs: dict | None = None) -> None:
        """Remember a user's Pyro model and its arguments for :meth:`to_arviz` (not saved).

        ``fit`` does this for a model that is not a built-in one.

        Parameters
        ----------
        model : callable
            The Pyro model function the posterior's sites come from.
        model_args : sequence
            Positional arguments of ``model`` (stored as a tuple).
        model_kwargs : dict, optional
            Keyword arguments of ``model``; ``None`` for none.

        Raises
        ------
        TypeError
            When ``model`` is not callable.
        """
        if not callable(model):
            raise TypeError(f"model: expected a Pyro model function, got {type(model).__name__}")
        self.pyro_model = (model, tuple(model_args), dict(model_kwargs or {}))

    def to_arviz(self, posterior_predictive: bool = False, *, model=None, model_args=(),
                 model_kwargs: dict | None = None, seed: int = 0, log_likelihood: bool = True):
        """``InferenceData`` (ArviZ 0.2x) or ``DataTree`` (ArviZ 1.x) of the run.

        Groups: ``posterior`` (site axes named ``rank0``..., ``mode0``...; with the
        ``log_likelihood`` group, a Pyro model's ``pyro.deterministic`` sites too), ``sample_stats``
        (the sampler's per-draw statistics, ``lp`` = log density of each draw and, for NUTS,
        ``diverging``) and, when the model and its data are known, ``log_likelihood`` (one
        value per observation and draw, in the data's units) and ``observed_data``, so that
        ``az.loo``, ``az.waic`` and ``az.compare`` apply.

        Parameters
        ----------
        posterior_predictive : bool
            Also draw one replicate of the observations per draw (``az.plot_ppc``,
            ``az.plot_loo_pit``).
        model, model_args, model_kwargs
            A Pyro model and its arguments, for a posterior of a user's model that ``fit`` did
            not attach (e.g. after ``load``); ignored for a built-in model.
        seed : int
            Seed of the posterior predictive draws.
        log_likelihood : bool
            Build the ``log_likelihood`` and ``observed_data`` groups (one model evaluation
            per draw); ``False`` skips them where only the draws are needed.

        Examples
        --------
        >>> import arviz as az
        >>> import bayestensor as bt
        >>> data = bt.data.synthetic_tensor((8, 8, 8), rank=2, observed=0.5, seed=0)
        >>> model = bt.TensorCompletion(data.shape, max_rank=4)
        >>> post = bt.fit(model, data.train, method="vi", seed=0, progress=False)
        >>> loo = az.loo(post.to_arviz())
        """
        shape = (self.num_chains, self.num_draws)
        post = {k: v.double().cpu().numpy() for k, v in self.samples.items()}
        stats = inference_data.sample_stats(self.sample_stats, self.info, shape, self.method)
        if model is None and self.pyro_model is not None:
            model, model_args, model_kwargs = self.pyro_model
        groups, dims = inference_data.data_groups(
            self, posterior_predictive=posterior_predictive, model=model,
            model_args=model_args, model_kwargs=model_kwargs, seed=seed,
            log_likelihood=log_likelihood or posterior_predictive)
        if posterior_predictive and "posterior_predictive" not in groups:
            raise ValueError("posterior_predictive: needs the model and its data (a built-in "
                             "model fitted or saved with its data, or model= and model_args=)")
        dims["posterior"] = inference_data.posterior_dims(self)
        post.update(groups.get("deterministic", {}))
        attrs = {"method": self.method, "inference_library": "bayestensor"}
        return arviz_adapter.to_inference_data(
            post, stats, groups.get("observed_data"), attrs,
            log_likelihood=groups.get("log_likelihood"),
            posterior_predictive=groups.get("posterior_predictive"), dims=dims)

    def summary(self, var_names=None, ci_prob: float = 0.9):
        """Table of mean, sd, credible interval and (for Markov chains) R-hat and ESS.

        For SVGD, VI and MAP the draws are not a Markov chain: the R-hat, ESS and MCSE
        columns are removed. A MAP run is one point: its ``sd`` is 0 and its interval is the
        point (``table.attrs["note"]`` says so). For a built-in model's chains the note says
        that the raw sites' R-hat is no convergence check (factors and slice precisions are
        not identified) and names :meth:`diagnostics`, which checks what is.

        Parameters
        ----------
        var_names : None, str or list of str
            The sites to summarize: ``None`` for all of them, one site name, or a list of site
            names.
        ci_prob : float in (0, 1)
            Probability mass of the credible interval, which ArviZ computes from the draws (a
            MAP run's interval is the point).

        Returns
        -------
        pandas.DataFrame
            One row per scalar element of each site (e.g. ``X.precision0[2]``), with columns
            ``mean``, ``sd`` and the interval's lower and upper bounds (``hdi_5%`` and
            ``hdi_95%`` at the default ``ci_prob``; ArviZ 1.x names them its own way), plus
            ArviZ's MCSE, ESS and R-hat columns for SGHMC and NUTS chains.
            ``table.attrs["note"]``, where set, says how to read the table: a MAP or non-Markov
            run (SVGD, VI) always has one; Markov chains of a built-in model have the R-hat
            warning above; a user model's Markov chains have none.

        Raises
        ------
        ValueError
            When ``ci_prob`` is not a number in (0, 1), or ``var_names`` names no site or a
            site this posterior does not have.
        """
        real_number("ci_prob", ci_prob, high=1.0, high_open=True)
        if var_names is not None:
            var_names = self._site_names([var_names] if isinstance(var_names, str)
                                         else var_names)
        if self.num_chains * self.num_draws == 1:
            return self._point_summary(var_names, ci_prob)
        data = self.to_arviz(log_likelihood=False)
        if not self.is_markov_chain:
            table = arviz_adapter.summary(data, var_names=var_names, ci_prob=ci_prob,
                                          kind="stats")
            table.attrs["note"] = (f"{self.method}: draws are not a Markov chain; R-hat and "
                                   "ESS do not apply")
            return table
        table = arviz_adapter.summary(data, var_names=var_names, ci_prob=ci_prob)
        if hasattr(self.model, "low_rank"):
            table.attrs["note"] = (
                "r_hat of factors and slice precisions is no convergence check: they are "
                "identified only up to sign, order and scale, and switched-off slices wander "
                "under the prior; Posterior.diagnostics() checks the identified quantities")
        return table

    def _site_names(self, var_names, also=()) -> list[str]:
        """``var_names`` as a list of this posterior's sites (or of the names in ``also``), or
        a ``ValueError`` naming the argument and the sites there are."""
        try:
            names = list(var_names)
        except TypeError:
            raise ValueError(f"var_names: expected a list of site names, got "
                             f"{var_names!r}") from None
        known = list(dict.fromkeys([*self.samples, *also]))
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise ValueError(f"var_names: {unknown or names} are not sites of this posterior; "
                             f"it has {known}")
        return names

    def _derived_wanted(self, var_names) -> bool:
        """Whether a list of names asks for something other than the sampled sites (a Pyro
        model's ``pyro.deterministic`` sites, computed only when asked for)."""
        try:
            return any(name not in self.samples for name in var_names)
        except TypeError:
            return False

    def _point_summary(self, var_names, ci_prob: float):
        """The summary of a single draw: its value, sd 0, the interval collapsed on it."""
        names = list(self.samples) if var_names is None else var_names
        pct = round(100 * ci_prob)
        rows, index = [], []
        for name in names:
            value = self.samples[name][0, 0].double().reshape(-1).numpy()
            shape = tuple(self.samples[name].shape[2:])
            for flat, v in enumerate(value):
                pos = np.unravel_index(flat, shape) if shape else ()
                index.append(name + (f"[{', '.join(map(str, pos))}]" if shape else ""))
                rows.append({"mean": v, "sd": 0.0, f"hdi_{(100 - pct) / 2:g}%": v,
                             f"hdi_{100 - (100 - pct) / 2:g}%": v})
        import pandas as pd  # on first use: a fit need not pay its import

        table = pd.DataFrame(rows, index=index)
        table.attrs["note"] = (f"{self.method}: one point; sd is 0 and the interval is the "
                               "point (no posterior spread was estimated)")
        return table

    def diagnostics(self, var_names=None, entries=None) -> dict:
        """R-hat and ESS of the chains: worst values, one row per variable and a verdict.

        Parameters
        ----------
        var_names : None, "all" or list of str
            ``None`` (default): the quantities the likelihood identifies, as the report checks
            them (:func:`~bayestensor.results.convergence.key_variables`: the noise precision,
            the norm of the low-rank tensor and a few predicted entries), for a built-in
            model; every site for a Pyro model. Raw factors are left out by default because
            they are not identified (sign, permutation and scale, and switched-off slices
            that wander under the prior): their R-hat can be 2 on chains whose every
            prediction agrees. ``"all"``: every site; a list: those sites, where a Pyro
            model's ``pyro.deterministic`` sites count too (computed on the pass that scores
            the log-likelihood; often what the data identify, ``a * b`` where the signs of
            ``a`` and ``b`` are free).
        entries : array-like, optional
            Indices (completion) or inputs (regression) of the predicted entries checked with
            ``var_names=None``; default: 4 entries drawn at a fixed seed (completion), none
            (regression).

        Returns
        -------
        dict
            ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``, ``variables`` (per variable),
            ``checked`` (``"identified quantities"`` or ``"sites"``), ``converged`` (worst
            R-hat at most 1.01 and bulk ESS at least 100 per chain, with two chains or more)
            and the thresholds. For draws that are not Markov chains (MAP, VI, SVGD) the
            numbers are NaN and ``note`` says why; a single chain (``num_chains=1``) is never
            called converged, and ``note`` says so; nor is a run with draws where a site's
            transform saturates (``saturated_draws``, the count per site; ``note`` says what
            it means).

        Examples
        --------
        >>> import bayestensor as bt
        >>> data = bt.data.synthetic_tensor((12, 12, 12), rank=2, seed=0)
        >>> model = bt.TensorCompletion(data.shape, max_rank=4)
        >>> post = bt.fit(model, data.train, method="sghmc", num_chains=2, num_samples=100,
        ...               num_warmup=100, seed=0, progress=False)
        >>> d = post.diagnostics()
        >>> d["checked"], sorted(r["var"] for r in d["variables"])
        ('identified quantities', ['entry', 'noise_precision', 'tensor_norm'])
        """
        if not self.is_markov_chain:
            return {"max_rhat": float("nan"), "min_ess_bulk": float("nan"),
                    "min_ess_tail": float("nan"), "variables": [], "checked": None,
                    "converged": False,
                    "note": f"{self.method}: not a Markov chain; R-hat does not apply"}
        identified = var_names is None and hasattr(self.model, "low_rank")
        if entries is not None and not identified:
            raise ValueError("entries: predicted entries are checked with var_names=None on a "
                             "built-in model's posterior only; got var_names="
                             f"{var_names!r} on a {type(self.model).__name__} posterior")
        if identified:
            heldout, count = None, convergence.N_KEY_ENTRIES
            if entries is not None:
                try:
                    checked = self.model.check_predict_inputs(entries)
                except (TypeError, ValueError) as err:
                    raise ValueError(f"entries: {err}") from None
                heldout = {"inputs": np.asarray(checked)}
                count = len(heldout["inputs"])
            _, _, check = convergence.check_identified(self, heldout, count)
            return self._saturation_checked({**check, "checked": "identified quantities"})
        if isinstance(var_names, str):
            if var_names != "all":
                raise ValueError(f"var_names: expected None, 'all' or a list of site names, "
                                 f"got {var_names!r}")
            var_names = None
        # a Pyro model's pyro.deterministic sites come with the log-likelihood pass
        derived = var_names is not None and self._derived_wanted(var_names)
        data = self.to_arviz(log_likelihood=derived)
        if var_names is not None:
            also = list(arviz_adapter.posterior_group(data).data_vars) if derived else ()
            var_names = self._site_names(var_names, also=also)
        check = convergence.check_chains(data, self.num_chains, var_names)
        return self._saturation_checked({**check, "checked": "sites"})

    def _saturation_checked(self, check: dict) -> dict:
        """``check``, failed where the run has draws at a saturated transform (R-hat cannot
        see chains stuck at one rounded value: their draws do not vary, and ArviZ's R-hat of
        them is NaN)."""
        message = convergence.saturated_message(self)
        if message is None:
            return check
        return {**check, "converged": False, "saturated_draws": self.info["saturated_draws"],
                "note": message}

    # --- persistence ------------------------------------------------------------------------
    def save(self, path, include_data: bool = True) -> Path:
        """Write samples, statistics, run info and the model's config/state to ``path``.

        The file holds tensors, numbers, strings and plain containers only, written atomically.
        With ``include_data`` a built-in model's bound data (standardized, as the model uses
        it) is saved too, so that a loaded posterior still has its pointwise log-likelihood
        (:meth:`to_arviz`, model comparison).

        Parameters
        ----------
        path : str or path-like
            Destination file; its folder is created when missing. :meth:`load` reads it back.
        include_data : bool
            Also save a built-in model's bound data (ignored when no data is bound or the
            model is a user's Pyro model, whose model is never saved).

        Returns
        -------
        pathlib.Path
            ``path``.
        """
        payload: dict[str, Any] = {
            "format_version": 1,
            "samples": self.samples,
            "sample_stats": self.sample_stats,
            "method": self.method,
            "info": _plain(self.info),
        }
        if self.model is not None and hasattr(self.model, "config"):
            payload["model"] = {"class": type(self.model).__name__,
                                "config": _plain(self.model.config()),
                                "state": _plain(self.model.state())}
            if include_data and getattr(self.model, "has_data", False):
                payload["model"]["data"] = self.model.data_state()
        return save_tensors(path, payload)

    @classmethod
    def load(cls, path) -> "Posterior":
        """Read what :meth:`save` wrote; the built-in model is rebuilt from its config.

        Raises
        ------
        ValueError
            When the file is missing, unreadable, or not a posterior file (nothing in it is run).
        """
        payload = load_tensors(path, what="posterior file")
        if not isinstance(payload, dict) or not {"samples", "sample_stats", "method"} <= set(payload):
            raise ValueError(f"posterior file: {str(path)!r} is not a saved bayestensor Posterior")
        model = None
        if "model" in payload:
            model = model_from_config(payload["model"]["class"], payload["model"]["config"])
            model.load_state(payload["model"]["state"])
            if "data" in payload["model"]:
                model.load_data_state(payload["model"]["data"])
        return cls(payload["samples"], payload["sample_stats"], payload["method"], model,
                   payload.get("info", {}))


def _plain(obj):
    """Convert numpy scalars/arrays and tuples to plain Python for safe serialization."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, str):
        return str(obj)  # drops str subclasses such as torch's TorchVersion
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    return obj

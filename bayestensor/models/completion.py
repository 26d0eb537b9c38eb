"""Bayesian tensor completion: a low-rank tensor with a rank-revealing prior, Gaussian noise."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from bayestensor.checks import flag, positive_float, positive_int
from bayestensor.data.observations import Observations, as_observations
from bayestensor.formats import as_index_tensor, get_format
from bayestensor.formats.ranks import MAX_PARAMS
from bayestensor.models.base import (MIN_START_VARIANCE, BayesModel, check_max_rank,
                                     saved_max_rank, start_noise_precision)
from bayestensor.models.cp_block_ascent import CPGammaBlockAscent, sites_and_priors
from bayestensor.models.cp_row_gibbs import CPRowGibbs
from bayestensor.models.empty_rows import EmptyRows, unobserved_indices
from bayestensor.models.cp_variational import CPGammaVariational
from bayestensor.priors import LowRankPrior, noise_precision
from bayestensor.priors.conditionals import OffsetConditional
from bayestensor.priors.effective_rank import SIGNAL_POINTS, signal_rms
from bayestensor.priors.densities import (centered_normal_log_density, gamma_log_density,
                                          gaussian_log_likelihood)

#: Above this many dense entries the SVD initialization is skipped (random start instead).
MAX_DENSE_INIT = 20_000_000
#: ALS iterations of the SVD start: enough to settle the large components, the prior and the
#: fit do the rest.
INIT_ALS_ITERATIONS = 30
#: ... except for the Tucker start behind the residual noise start (``noise_start="residual"``):
#: one pass (the HOSVD of the mean-filled tensor, then one masked HOOI sweep), since 30 passes
#: fit the observed entries of a small tensor almost exactly (20 x 15 x 10, 900 entries, max
#: rank 10: residual precision 350-430 against 1.2-1.4 on entries it did not see), and a
#: start that fits the noise says nothing about its level (docs/benchmarks.md, "The residual
#: noise start as a candidate of map_hold='auto'"). TT's start, a TT-SVD, is one pass too.
RESIDUAL_START_ITERATIONS = 1
#: Predictions reconstruct each sample's dense tensor (or the box of it that the predicted
#: indices fill) when it has that many numbers at most ...
DENSE_PREDICT_ELEMENTS = 1 << 25
#: ... and the box has at most this many entries per predicted index.
DENSE_PREDICT_RATIO = 8


#: The rank hyperpriors under which a CP completion has the closed-form VI
#: (:mod:`bayestensor.models.cp_variational`).
CLOSED_FORM_VI_PRIORS = ("gamma", "half_cauchy", "log_uniform")


def closed_form_vi_runs(format: str, prior: str, batch_size: int | None = None,
                        device=None) -> bool:
    """Whether ``fit(method="vi")`` runs the closed-form VI: CP under any of the three rank
    priors, full batch, on the CPU."""
    on_cpu = device is None or torch.device(device).type == "cpu"
    return (format == "cp" and prior in CLOSED_FORM_VI_PRIORS and batch_size is None
            and on_cpu)


def default_method(format: str, prior: str, batch_size: int | None = None,
                   device=None) -> str:
    """The method ``fit`` and ``bayestensor complete`` use when none is given.

    ``"vi"`` where the closed-form VI runs (:func:`closed_form_vi_runs`), ``"map"``
    elsewhere. On the rank study's seven settings (six seeds) the closed-form VI from the
    starting values is within 1.02x of the published VB's held-out error in every setting
    (1.003 at 0 dB, where the MAP is 1.027), finds the exact rank in 41 of 42 runs (the MAP
    42, VB 29) and takes 0.16-1.62x VB's time (the MAP 0.10-7.4x), and it gives credible
    intervals (90% coverage 0.882 of the noise-free entries where the MAP gives none;
    ``docs/benchmarks.md``, "The default fit: closed-form VI from the starting values").
    Under the half-Cauchy prior, on the same settings, the closed-form VI is within 1.02x of
    VB's error in every setting and finds the exact rank in 41 of 42 runs in 0.04-0.7 s,
    where the MAP takes 2.8-6.7 s to 1.02-1.66x VB's error ("The closed-form VI under the
    half-Cauchy and log-uniform priors"); under the log-uniform prior likewise (41 of 42,
    0.995-1.018x VB's error, where the MAP reached 1.10x at 0 dB).
    """
    return "vi" if closed_form_vi_runs(format, prior, batch_size, device) else "map"


class TensorCompletion(BayesModel):
    """Low-rank tensor completion with automatic rank determination.

    The model, on standardized observed values ``y = (v - center) / scale``::

        X      ~ low-rank format with a rank-revealing prior (see bayestensor.priors)
        c      ~ Normal(0, offset_scale)                      (offset of every entry)
        tau    ~ Gamma(noise_a, noise_b)                      (noise precision)
        y_i    ~ Normal(c + X[idx_i], tau^{-1/2})             for each observed entry i

    The likelihood gathers factor rows at the observed index tuples only, so memory grows with
    the number of observations and parameters, never with the size of the dense tensor.
    Predictions are returned in the data's own units. ``set_data`` (or ``fit``) takes
    ``Observations``, ``(indices, values)``, ``(dense, mask)`` or a dense array with NaN for
    the missing entries (see :func:`bayestensor.data.observations.as_observations`).

    Parameters
    ----------
    shape : sequence of int
        Shape of the tensor (for ``"ttm"``: ``(I_1..I_N, J_1..J_N)``).
    format : {"cp", "tucker", "tt", "ttm"}
        Low-rank format.
    max_rank : int or sequence of int
        Largest rank considered, per rank dimension; the prior prunes the rest.
    prior : {"gamma", "half_cauchy", "log_uniform"}
        Hyperprior on the per-slice scales.
    prior_params : dict, optional
        Its parameters (see :class:`bayestensor.priors.RankPrior`).
    noise_a, noise_b : float
        Gamma prior on the noise precision of the standardized data.
    standardize : bool
        Center and scale the observed values before modelling (recommended: the default
        priors assume unit scale). Only ``True`` or ``False``.
    offset_scale : float or None
        Prior sd of the offset ``c`` (site ``"offset"``), on the standardized scale. The
        observed mean is an estimate, and a low-rank tensor minus a constant is one rank
        higher: without ``c`` the prior switches off the slice that would carry the
        difference where it is small against the entries but not against the noise (a 20^3
        rank-3 tensor, 20% observed, 20 dB: held-out error 1.14-1.42x the published VB's;
        with ``c`` 0.99-1.01x, ``benchmarks/centring_cost.py``). ``None`` leaves ``c`` out
        (the model of VB, Zhao et al. 2015).
    max_params : int or None
        Refuse a model whose low-rank tensor has more parameters than this (``ValueError``
        naming ``max_rank``); ``None`` lifts the limit. A ``max_rank`` above what the shape
        supports is capped with a warning (see :func:`bayestensor.formats.ranks.rank_caps`).

    Examples
    --------
    >>> import bayestensor as bt
    >>> data = bt.data.synthetic_tensor((20, 20, 20), rank=3, seed=0)
    >>> model = bt.TensorCompletion(data.shape, format="cp", max_rank=8)
    >>> post = bt.fit(model, data.train, method="map", seed=0, progress=False)
    >>> int(post.effective_rank().mode()[0])
    3
    """

    name = "completion"
    # MAP continuation for ``fit`` (``map_hold``). Holding the noise precision at its start,
    # 1 / Var(y), for the first tenth of the MAP steps (CP: for the first sweeps of the block
    # ascent, see baselines.HOLD_SWEEPS) lets the rank prior prune before the
    # noise level tightens: at 0 dB and 10% observed it turns rank 8 of 8 (error 0.84) into
    # the true rank 3 in 5/5 seeds (error 0.35). Always holding also prunes real but weak
    # components (30^3 rank 10, 20%, 10 dB: rank 9 in 2/5 seeds), so the default, "auto",
    # decides per data set by a validation split (choose_map_hold): exact rank in 5/5 seeds in
    # all seven settings of benchmarks/completion_study.py --study rank, at 2-3x the MAP cost.
    map_hold = "auto"
    map_hold_candidate = {"noise_precision": 0.1}  # what ``map_hold="auto"`` may choose
    #: SGHMC steps per kept draw of a Tucker model (``sghmc_thin``). Its core mixes slower per
    #: step than the other formats' factors: on the 30^3 completion grid, 4 chains x 1000
    #: draws at one step a draw gave a bulk ESS of 285-452 for the held-out entries under
    #: the half-Cauchy prior, against 669-887 at two (docs/benchmarks.md, "Tucker at its
    #: default of two steps a draw"; one run under log-uniform: 292 against 612); CP, TT and
    #: TT-matrix reach 450-900 at one.
    TUCKER_THIN = 2
    #: Prior sd of the fitted offset ``c`` on the standardized scale (``offset_scale``).
    OFFSET_SCALE = 10.0

    def __init__(self, shape, format: str = "cp", max_rank=10, prior="gamma",
                 prior_params: dict | None = None, noise_a: float = 1.0, noise_b: float = 1e-2,
                 standardize: bool = True, offset_scale: float | None = OFFSET_SCALE,
                 max_params: int | None = MAX_PARAMS):
        get_format(format)
        check_max_rank(max_rank)
        self.standardize = flag("standardize", standardize)
        self.offset_scale = None if offset_scale is None else positive_float("offset_scale",
                                                                             offset_scale)
        self.max_params = None if max_params is None else positive_int("max_params", max_params)
        self.noise_a = positive_float("noise_a", noise_a)
        self.noise_b = positive_float("noise_b", noise_b)
        self.format = str(format).lower()
        self.prior_name = prior if isinstance(prior, str) else prior.kind
        self.prior_params = dict(prior_params or {})
        self.tensor_prior = LowRankPrior("X", shape, max_rank, format, prior, prior_params,
                                         rank_name="max_rank", max_params=self.max_params)
        self.shape = self.tensor_prior.shape
        self.max_rank = saved_max_rank(max_rank, self.tensor_prior)
        self.center, self.scale = 0.0, 1.0
        self.observations: Observations | None = None
        self._start_cache: tuple | None = None
        self._block_ascent: tuple | None = None

    @property
    def sghmc_thin(self) -> int:
        """SGHMC steps per kept draw by default: ``TUCKER_THIN`` for Tucker, else 1."""
        return self.TUCKER_THIN if self.format == "tucker" else 1

    @property
    def low_rank_prior(self) -> LowRankPrior:
        return self.tensor_prior

    # --- data -------------------------------------------------------------------------------
    def _prepare_data(self, data) -> tuple[torch.Tensor, torch.Tensor]:
        """Observed indices and standardized values of ``data`` (see :func:`as_observations`)."""
        obs = as_observations(data, self.shape)
        self.observations = obs
        if self.standardize:
            self.center = float(obs.values.double().mean())
            sd = float(obs.values.double().std()) if len(obs) > 1 else 1.0
            self.scale = sd if sd > 0 else 1.0
        return obs.indices, ((obs.values.double() - self.center) / self.scale).float()

    def to(self, device) -> "TensorCompletion":
        """Move the observed indices and values to ``device``."""
        super().to(device)
        obs = self.observations
        if obs is not None and obs.indices is not self._inputs:  # moved: rebind the copies
            self.observations = Observations(self._inputs, obs.values.to(self._inputs.device),
                                             obs.shape)
        return self

    # --- model ------------------------------------------------------------------------------
    def pyro_model(self, indices, values=None, subsample_size: int | None = None):
        """Pyro model over observed entries (``values`` standardized; ``None`` to simulate).

        Parameters
        ----------
        indices : torch.Tensor
            ``(n, ndim)`` integer indices of the observed entries.
        values : torch.Tensor, optional
            ``(n,)`` standardized observed values; ``None`` simulates them.
        subsample_size : int, optional
            Entries per mini-batch of the plate ``"obs"`` (likelihood scaled by n/B);
            ``None`` uses all ``n``.

        Returns
        -------
        torch.Tensor
            The site ``"y"`` of the plate's entries (all ``n``, or the ``B`` of the batch):
            the given values, or simulated ones, on the standardized scale.
        """
        x = self.tensor_prior.sample()
        offset = 0.0
        if self.offset_scale is not None:
            offset = pyro.sample("offset", dist.Normal(torch.zeros((), device=indices.device),
                                                       self.offset_scale))
        tau = noise_precision("noise_precision", self.noise_a, self.noise_b)
        with pyro.plate("obs", indices.shape[0], subsample_size=subsample_size) as ind:
            mu = x.entries(indices[ind], check=False) + offset
            obs = None if values is None else values[ind]
            return pyro.sample("y", dist.Normal(mu, tau.rsqrt()), obs=obs)

    has_fast_path = True

    def fast_log_joint(self, values: dict, subsample: dict) -> torch.Tensor:
        """The model's log joint on batched values ``(C, ...)`` without tracing Pyro.

        Parameters
        ----------
        values : dict of str to torch.Tensor
            Constrained values of the low-rank tensor's sites (``X.*``), of ``offset`` and
            of ``noise_precision``, each ``(C,) + site shape``.
        subsample : dict of str to torch.Tensor
            ``{"obs": index}``: the mini-batch's positions among the bound observations
            (likelihood scaled by n/B); empty for all of them.

        Returns
        -------
        torch.Tensor
            ``(C,)`` log prior of the sites plus the Gaussian log-likelihood of the
            standardized observations.
        """
        idx, yb, scale = self._data_batch(subsample)
        tau = values["noise_precision"]
        lp = self.tensor_prior.log_prob(values)
        lp = lp + gamma_log_density(tau, self.noise_a, self.noise_b)
        mu = self.tensor_prior.build(values).entries(idx, check=False)
        if self.offset_scale is not None:
            offset = values["offset"]
            lp = lp + centered_normal_log_density(offset, self.offset_scale ** -2,
                                                  2 * math.log(self.offset_scale), 0)
            mu = mu + offset.unsqueeze(-1)
        return lp + scale * gaussian_log_likelihood(yb, mu, tau)

    def block_ascent(self) -> CPGammaBlockAscent | None:
        """The MAP's closed-form block updates on the bound data (see
        :mod:`bayestensor.models.cp_block_ascent`): CP format under the gamma prior; ``None``
        otherwise. Made once per data set (its row groups sort the observations per mode)."""
        keywords = sites_and_priors(self.tensor_prior, self.noise_a, self.noise_b)
        if keywords is None:
            return None
        self._require_data()
        cached = self._block_ascent
        if cached is None or cached[0] is not self.observations:
            ascent = CPGammaBlockAscent(self._inputs, self._y, self.shape,
                                        self.tensor_prior.ranks[0], **self._offset_keywords(),
                                        **keywords)
            self._block_ascent = cached = (self.observations, ascent)
        return cached[1]

    def closed_form_vi(self) -> CPGammaVariational | None:
        """Mean-field VI by closed-form coordinate ascent on the bound data (see
        :mod:`bayestensor.models.cp_variational`): CP format under any of the three rank
        priors; ``None`` otherwise."""
        keywords = sites_and_priors(self.tensor_prior, self.noise_a, self.noise_b,
                                    kinds=CLOSED_FORM_VI_PRIORS)
        if keywords is None:
            return None
        self._require_data()
        return CPGammaVariational(self._inputs, self._y, self.shape, self.tensor_prior.ranks[0],
                                  **self._offset_keywords(), **keywords)

    def factor_redraws(self) -> CPRowGibbs | None:
        """SGHMC's exact redraws of the factor rows (see
        :mod:`bayestensor.models.cp_row_gibbs`): CP format, any rank prior; ``None``
        otherwise."""
        prior = self.tensor_prior
        if prior.format_cls.format_name != "cp":
            return None
        self._require_data()
        return CPRowGibbs(self._inputs, self._y, self.shape, prior.ranks[0],
                          factor_sites=prior.param_sites, hyper_site=prior.hyper_sites[0],
                          variance=prior.prior.variance, noise_site="noise_precision",
                          **self._offset_keywords())

    def unobserved_indices(self) -> list[torch.Tensor]:
        """Per mode, the indices no bound observation has (a user or an item with no data):
        every entry there is predicted from the prior of its parameters alone.

        Returns
        -------
        list of torch.Tensor
            One sorted index tensor per mode, empty where every index is observed.
        """
        self._require_data()
        return unobserved_indices(self._inputs, self.shape)

    def empty_row_redraws(self) -> EmptyRows | None:
        """SGHMC's exact redraws of the parameter slices the data leave empty (see
        :mod:`bayestensor.models.empty_rows`): any format whose data leave an index of some
        mode unobserved; ``None`` otherwise."""
        self._require_data()
        return EmptyRows.of(self._inputs, self.tensor_prior)

    def _offset_keywords(self) -> dict:
        """The offset's site and prior sd for the closed forms (none without an offset)."""
        if self.offset_scale is None:
            return {}
        return {"offset_site": "offset", "offset_scale": self.offset_scale}

    def gibbs_sites(self, factor_redraws: bool = False, start_at_mode: bool = True) -> dict:
        """:meth:`BayesModel.gibbs_sites`, the noise precision and the offset: with ``n``
        observed entries, ``tau | X, c ~ Gamma(noise_a + n / 2, noise_b + RSS / 2)`` and ``c |
        X, tau`` Normal (:class:`~bayestensor.priors.conditionals.OffsetConditional`). The
        same with or without ``factor_redraws`` (CP's slice precisions move by SGHMC either
        way). The offset's redraw reads the residual sum off the gradient SGHMC has already
        taken, so it costs nothing; on the SGHMC grid its runs equal those without it to the
        second decimal of R-hat (29 and 28 of 33 meeting the bar, docs/benchmarks.md).

        Parameters
        ----------
        factor_redraws, start_at_mode : bool
            As in :meth:`BayesModel.gibbs_sites
            <bayestensor.models.BayesModel.gibbs_sites>`.
        """
        sites = {**super().gibbs_sites(factor_redraws, start_at_mode),
                 "noise_precision": self.noise_a + self.n_data() / 2}
        if self.offset_scale is not None:
            sites["offset"] = OffsetConditional(self.n_data(), self.offset_scale,
                                                "noise_precision")
        return sites

    @property
    def residual_start_candidate(self) -> bool:
        """Whether ``map_hold="auto"`` also tries the MAP with the noise precision started at
        the start's residual (``init_values(noise_start="residual")``): for TT, TT-matrix and
        Tucker, whose MAPs from ``1 / Var(y)`` switch off real components on small tensors
        (docs/benchmarks.md, "Completion from few observations"). Not for CP: there the
        residual start kept surplus slices in every small-tensor run measured, and CP's
        default fit is the closed-form VI, which chooses its noise start by ELBO."""
        return self.format != "cp"

    def init_values(self, seed: int = 0, init: str = "svd",
                    noise_start: str = "variance") -> dict:
        """Starting values: SVD-based decomposition of the mean-filled data, a spectral start
        from the observed entries (CP), or random.

        ``init="svd"`` uses TensorLy's decomposition of the observed tensor with missing
        entries filled by the mean. When the dense tensor would exceed ``MAX_DENSE_INIT``
        entries, CP starts from the observed entries alone (as ``"spectral"``) and the other
        formats at random. ``init="spectral"`` (CP only) starts from the observed entries
        alone at any size: each mode's subspace from its unfolding's Gram matrix with the
        diagonal deleted, refined by ridge ALS (``CPTensor.from_entries``). When most entries
        are missing the mean-filled tensor is mostly the fill, and the fit from its SVD can
        keep fewer components than the data support (Indian Pines at 95% missing, CP max
        rank 20: rank 4 and held-out error 0.102 from ``"svd"``, rank 12 and 0.075 from
        ``"spectral"``); on denser data, or at the rank study's 10-50% observed, ``"svd"`` is
        as good or better (docs/benchmarks.md). ``init="random"`` draws factors whose
        reconstruction has unit scale. The noise precision starts at ``1 / Var(y)``
        (``noise_start="variance"``), or at the reciprocal of the start's mean squared residual
        on the observed entries (``"residual"``, the noise level the start implies; one of the
        candidates of ``map_hold="auto"``, see :attr:`residual_start_candidate`; a Tucker start
        then takes ``RESIDUAL_START_ITERATIONS`` masked HOOI passes instead of
        ``INIT_ALS_ITERATIONS``, so that it does not fit the noise). The start is kept and
        reused while the data, ``seed``, ``init`` and the passes stay the same.

        Parameters
        ----------
        seed : int
            Seed of the decomposition or of the random factors.
        init : {"svd", "spectral", "random"}
            The kind of start, as above.
        noise_start : {"variance", "residual"}
            Where the noise precision starts, as above.

        Returns
        -------
        dict of str to torch.Tensor
            Constrained value of every latent site, without a batch dim: the low-rank
            tensor's parameters and slice hyper-parameters (``X.*``, see
            :meth:`LowRankPrior.init_values`), the scalar ``offset`` (zero: the start fits the
            values as they are) and the scalar ``noise_precision``. A new copy on every call.

        Raises
        ------
        ValueError
            When ``init`` is not one of the three kinds, or is ``"spectral"`` for a format
            other than CP, or ``noise_start`` is not ``"variance"`` or ``"residual"``.
        """
        self._require_data()
        if init not in ("svd", "spectral", "random"):
            raise ValueError(f"init: expected 'svd', 'spectral' or 'random', got {init!r}")
        if noise_start not in ("variance", "residual"):
            raise ValueError(f"noise_start: expected 'variance' or 'residual', got "
                             f"{noise_start!r}")
        if init == "spectral" and self.tensor_prior.format_cls.format_name != "cp":
            raise ValueError(f"init: 'spectral' starts CP models only, got format "
                             f"{self.tensor_prior.format_cls.format_name!r}; use 'svd' or "
                             f"'random'")
        # Fits on the same data share the start (map_hold="auto" runs two on one split); at
        # 1e6 observations it is a minute of spectral start and ALS.
        passes = (RESIDUAL_START_ITERATIONS if noise_start == "residual"
                  and self.format == "tucker" else INIT_ALS_ITERATIONS)
        key = (seed, init, passes, self.center, self.scale)
        cached = self._start_cache
        if cached is None or cached[0] is not self.observations or cached[1] != key:
            self._start_cache = (self.observations, key, self._start_values(seed, init, passes))
        values = {name: v.clone() for name, v in self._start_cache[2].items()}
        if noise_start == "residual":
            values["noise_precision"] = self._residual_precision(values)
        return values

    def _residual_precision(self, values: dict) -> torch.Tensor:
        """``1 / mean((y - start)^2)`` over the observed entries, standardized (at least
        ``1 / Var(y)``: a start that fits worse than the mean implies no lower noise)."""
        obs = self.observations
        batched = {name: v.unsqueeze(0) for name, v in values.items()}
        mean, _ = self.predict_entries(batched, obs.indices)
        residual = (mean[0].double() - obs.values.double()) / self.scale
        floor = float(start_noise_precision(self._y))
        mse = max(float(residual.pow(2).mean()), MIN_START_VARIANCE)
        precision = max(floor, 1.0 / mse)
        return torch.tensor(precision, dtype=values["noise_precision"].dtype)

    def _start_values(self, seed: int, init: str, passes: int) -> dict:
        cls = self.tensor_prior.format_cls
        ranks = self.tensor_prior.ranks
        obs = self.observations
        if init == "svd" and math.prod(self.shape) <= MAX_DENSE_INIT:
            dense = np.zeros(self.shape)
            mask = np.zeros(self.shape, dtype=bool)
            idx = tuple(obs.indices.T.numpy())
            dense[idx] = self._y.double().numpy()
            mask[idx] = True
            tensor = cls.from_tensor(dense, ranks, mask=mask, seed=seed,
                                     n_iter_max=passes,
                                     dtype=torch.get_default_dtype())
        elif init in ("svd", "spectral") and cls.format_name == "cp":
            tensor = cls.from_entries(obs.indices, self._y, self.shape, ranks, seed=seed)
        else:
            tensor = cls.random(self.shape, ranks, scale=1.0, seed=seed)
        values = self.tensor_prior.init_values(tensor)
        if self.offset_scale is not None:
            values["offset"] = torch.zeros((), dtype=self._y.dtype)
        values["noise_precision"] = start_noise_precision(self._y)
        return values

    # --- predictions ------------------------------------------------------------------------
    def check_predict_inputs(self, inputs) -> torch.Tensor:
        """An ``(n, ndim)`` index array within the tensor's shape, with ``n >= 1``."""
        idx = as_index_tensor(inputs, len(self.shape), self.shape)
        if idx.shape[0] == 0:
            raise ValueError(f"indices: no entries to predict (shape {tuple(idx.shape)}); "
                             f"pass an (n, {len(self.shape)}) index array with n >= 1")
        return idx

    def predict_entries(self, samples: dict, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample entry means ``(S, n)`` and noise sd ``(S,)`` in data units.

        ``samples`` holds site values with one flat leading sample dim. Indices that fill a
        small box of the tensor (all of it, or a run of consecutive entries such as a slab)
        are read from each sample's dense reconstruction of that box; scattered indices
        gather factor rows per index (see :meth:`_dense_box`).

        Parameters
        ----------
        samples : dict of str to torch.Tensor
            Site values, ``(S,) + site shape`` each.
        indices : array_like
            ``(n, ndim)`` integer indices within the tensor's shape (as
            :meth:`check_predict_inputs` returns them).

        Returns
        -------
        mean : torch.Tensor
            ``(S, n)`` entry of each sample's low-rank tensor at each index, in data units.
        noise_sd : torch.Tensor
            ``(S,)`` noise sd of each sample, ``noise_precision ** -0.5`` in data units.
        """
        idx = torch.as_tensor(indices)
        x = self.tensor_prior.build(samples)
        box = self._dense_box(idx)
        if box is None:
            mu = x.entries(idx)
        else:
            mu = self._entries_from_box(x, idx, *box)
        mu = (mu + self._offset(samples, mu)).mul_(self.scale).add_(self.center)
        noise_sd = samples["noise_precision"].rsqrt() * self.scale
        return mu, noise_sd

    def predict_chunk_size(self, num_samples: int, indices=None) -> int | None:
        """Indices per call of :meth:`predict_entries` in ``Posterior.predict``: all at once when
        the dense tensors of every sample fit in ``DENSE_PREDICT_ELEMENTS`` (then one dense
        reconstruction serves every index) or when ``indices`` fill a small box (read from its
        reconstruction, :meth:`_dense_box`), else ``None`` (the caller's default).

        Parameters
        ----------
        num_samples : int
            Samples the prediction runs over (chains x draws).
        indices : array_like, optional
            ``(n, ndim)`` integer indices to predict; ``None`` decides on the tensor's size
            alone.

        Returns
        -------
        int or None
            ``2**62`` (one call for every index) or ``None``.
        """
        if math.prod(self.shape) * num_samples <= DENSE_PREDICT_ELEMENTS:
            return 1 << 62
        if indices is not None and self._dense_box(torch.as_tensor(indices)) is not None:
            return 1 << 62
        return None

    def _dense_box(self, idx: torch.Tensor) -> tuple[list[int], list[int]] | None:
        """``(first index, size)`` per mode of the smallest box holding ``idx`` when
        reconstructing it beats gathering factor rows per index, else ``None``.

        A batched product over the box is far faster than ``n`` scattered row gathers per
        factor (15x for 20,000 of 27,000 entries at 800 samples; 5x for a block of 25,000
        consecutive entries of Indian Pines at 800 samples, ``benchmarks/predict_speed.py``)
        as long as the box has at most ``DENSE_PREDICT_RATIO`` entries per index. One sample's
        box must fit in ``DENSE_PREDICT_ELEMENTS``; samples are reconstructed as many at a time
        as fit.
        """
        if idx.shape[0] == 0:
            return None
        first = idx.min(0).values.tolist()
        size = [hi - lo + 1 for lo, hi in zip(first, idx.max(0).values.tolist())]
        volume = math.prod(size)
        if volume > DENSE_PREDICT_ELEMENTS or volume > DENSE_PREDICT_RATIO * idx.shape[0]:
            return None
        return first, size

    def _entries_from_box(self, x, idx: torch.Tensor, first, size) -> torch.Tensor:
        """Entries at ``idx`` from each sample's dense reconstruction of the box ``first`` +
        ``size`` (a mode narrower than the tensor is cut out by a row-selection product, which
        every format applies to one parameter)."""
        for mode, (lo, n) in enumerate(zip(first, size)):
            if n < self.shape[mode]:
                rows = torch.arange(lo, lo + n, device=idx.device)
                select = torch.nn.functional.one_hot(rows, self.shape[mode])
                x = x.mode_dot(select.to(x.params[0].dtype), mode)
        local = idx - torch.as_tensor(first, device=idx.device)
        linear = torch.as_tensor(np.ravel_multi_index(local.cpu().numpy().T, size))
        # every entry of the box in order (a block of whole slabs): the box is the answer
        whole = len(linear) == math.prod(size) and torch.equal(linear, torch.arange(len(linear)))
        batch = x.batch_shape
        per_pass = max(1, DENSE_PREDICT_ELEMENTS // math.prod(size))
        out = []
        for start in range(0, math.prod(batch), per_pass):
            dense = x.sample(slice(start, start + per_pass)).reconstruct()
            dense = dense.reshape(dense.shape[0], -1)
            out.append(dense if whole else dense.index_select(-1, linear.to(dense.device)))
        out = out[0] if len(out) == 1 else torch.cat(out)
        return out.reshape(batch + (idx.shape[0],))

    def observed_data(self) -> torch.Tensor:
        """The observed values ``(n,)`` in data units."""
        self._require_data()
        return self._y.double() * self.scale + self.center

    def observation_distribution(self, samples: dict) -> dist.Normal:
        """``Normal(entry, noise sd)`` of each observed entry per sample, ``(S, n)``, data units."""
        self._require_data()
        mu = self.tensor_prior.build(samples).entries(self._inputs, check=False).double()
        mu = mu + self._offset(samples, mu)
        sd = samples["noise_precision"].double().rsqrt().unsqueeze(-1) * self.scale
        return dist.Normal(mu * self.scale + self.center, sd)

    @staticmethod
    def _offset(samples: dict, entries: torch.Tensor) -> torch.Tensor | float:
        """The offset of each sample ``(S, 1)``, to add to its entries ``(S, n)``; zero for
        samples without one (a model with ``offset_scale=None``)."""
        if "offset" not in samples:
            return 0.0
        return samples["offset"].to(entries).reshape(-1, 1)

    def load_data_state(self, data: dict) -> None:
        super().load_data_state(data)
        values = (self._y.double() * self.scale + self.center).float()
        self.observations = Observations(self._inputs, values, self.shape)

    def low_rank(self, samples: dict):
        """The low-rank tensor(s) for given (batched) site values."""
        return self.tensor_prior.build(samples)

    def rank_signal(self, samples: dict) -> torch.Tensor | None:
        """``(S,)`` root mean square of each sample's low-rank part (the offset left out) over
        ``SIGNAL_POINTS`` entries drawn once uniformly over the tensor (fixed seed), on the
        standardized scale, where the observed values have unit sd; ``None`` when the model
        does not standardize (no unit to measure in).

        The effective rank counts no slice of a sample whose low-rank part is below the rank
        rule's threshold in these units (:mod:`bayestensor.priors.effective_rank`): on data with
        nothing but an offset and noise every slice is equally negligible, and the relative
        rule alone would count them all.
        """
        if not self.standardize:
            return None
        generator = torch.Generator().manual_seed(0)
        idx = torch.stack([torch.randint(size, (SIGNAL_POINTS,), generator=generator)
                           for size in self.shape], 1)
        idx = idx.to(next(iter(samples.values())).device)
        return signal_rms(samples, lambda chunk: self.tensor_prior.build(chunk).entries(idx))

    # --- persistence ------------------------------------------------------------------------
    def config(self) -> dict:
        return {"shape": list(self.shape), "format": self.format, "max_rank": self.max_rank,
                "prior": self.prior_name, "prior_params": self.prior_params,
                "noise_a": self.noise_a, "noise_b": self.noise_b,
                "standardize": self.standardize, "offset_scale": self.offset_scale,
                "max_params": self.max_params}

    def state(self) -> dict:
        return {"center": self.center, "scale": self.scale}

    def load_state(self, state: dict) -> None:
        self.center = float(state.get("center", 0.0))
        self.scale = float(state.get("scale", 1.0))

    def __repr__(self) -> str:
        return (f"TensorCompletion(shape={self.shape}, format={self.format!r}, "
                f"max_rank={self.max_rank}, prior={self.prior_name!r})")

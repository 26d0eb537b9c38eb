"""What a built-in model offers ``fit`` beyond being a Pyro model, and the data binding they share."""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

from bayestensor.checks import rank_value
from bayestensor.priors import LowRankPrior
from bayestensor.priors.conditionals import GammaConditional

#: Below this variance of the response (constant data, or a single value, whose variance is
#: undefined) ``1 / Var(y)`` carries no information about the noise: the noise precision then
#: starts at one, the precision of unit-scale noise on the standardized data, instead of at
#: a huge value the samplers cannot move from.
MIN_START_VARIANCE = 1e-8


def check_max_rank(max_rank):
    """``max_rank`` as a positive int or a tuple of them; ``ValueError`` naming it otherwise.

    ``2.5``, ``"3"`` and ``True`` are refused (see :func:`bayestensor.checks.rank_value`).
    """
    return rank_value("max_rank", max_rank)


def saved_max_rank(max_rank, prior: LowRankPrior):
    """``max_rank`` as a model's config records it: as given (a tuple as a list), or the
    ranks it was capped at (see ``LowRankPrior``), so that a reloaded model needs no cap."""
    if prior.ranks != prior.requested_ranks:
        return list(prior.ranks)
    return list(max_rank) if isinstance(max_rank, tuple) else max_rank


def start_noise_precision(y: torch.Tensor) -> torch.Tensor:
    """``1 / Var(y)``: the noise precision that treats all variation of ``y`` as noise.

    The built-in models start there so that the rank prior switches off unsupported slices
    before the fit tightens; starting from the (overfit) residual variance of a decomposition
    leaves noise-fitting components in local optima of the joint MAP (measured on completion:
    rank 15 kept instead of the true 3). Without variation to measure (fewer than two values,
    or all equal) it starts at one (see ``MIN_START_VARIANCE``).
    """
    var = float(y.var()) if y.numel() > 1 else math.nan
    if not math.isfinite(var) or var < MIN_START_VARIANCE:
        return torch.tensor(1.0)
    return torch.tensor(1.0 / var)


class BayesModel:
    """Base class of the built-in models.

    A built-in model is bound to its data by :meth:`set_data`, after which
    :meth:`pyro_model` called with :meth:`model_args` (``(inputs, y)``: what the model
    conditions on and the standardized response) is an ordinary Pyro model. It may also offer
    a vectorized log joint (:meth:`fast_log_joint`) that must agree with the Pyro model,
    data-driven starting values (:meth:`init_values`), and per-sample predictions.
    """

    #: Name of the plate over data points that ``batch_size`` sub-samples.
    data_plate = "obs"
    #: Pyro's ``max_plate_nesting`` for this model.
    max_plate_nesting = 1
    has_fast_path = False
    #: SGHMC steps per kept draw that ``fit(..., thin=None)`` takes for this model.
    sghmc_thin = 1
    #: Whether SGHMC's default ``factor_redraws="auto"`` runs the model's exact factor
    #: redraws (``factor_redraws()``) where they can run (full batch, on the CPU).
    sghmc_factor_redraws = False

    _inputs: torch.Tensor | None = None
    _y: torch.Tensor | None = None

    # --- data -------------------------------------------------------------------------------
    def set_data(self, data) -> None:
        """Validate, standardize and bind ``data`` (the forms the model's class docs list).

        Raises
        ------
        ValueError
            On bad input, before anything is bound.
        """
        self._inputs, self._y = self._prepare_data(data)

    def _prepare_data(self, data) -> tuple[torch.Tensor, torch.Tensor]:
        """Validated ``(inputs, standardized y)``; sets the standardization state."""
        raise NotImplementedError

    @property
    def has_data(self) -> bool:
        """Whether data are bound (``set_data``, ``fit``, or a posterior saved with them)."""
        return self._y is not None

    def _require_data(self) -> None:
        if not self.has_data:
            raise RuntimeError(f"{type(self).__name__}: no data bound; call set_data() or fit()")

    def model_args(self) -> tuple:
        """Positional arguments of :meth:`pyro_model` for the bound data: ``(inputs, y)``."""
        self._require_data()
        return (self._inputs, self._y)

    def n_data(self) -> int:
        """Number of data points in :attr:`data_plate`."""
        self._require_data()
        return int(self._y.shape[0])

    def to(self, device) -> "BayesModel":
        """Move the bound data to ``device`` (the samplers then run there)."""
        self._require_data()
        device = torch.device(device)
        self._inputs, self._y = self._inputs.to(device), self._y.to(device)
        return self

    def _data_batch(self, subsample: dict) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Inputs, response and likelihood scale N/B of the mini-batch in ``subsample``."""
        inputs, y = self.model_args()
        ind = subsample.get(self.data_plate)
        if ind is None:
            return inputs, y, 1.0
        return inputs[ind], y[ind], inputs.shape[0] / ind.shape[0]

    # --- model ------------------------------------------------------------------------------
    def pyro_model(self, *args, subsample_size: int | None = None):
        """The Pyro model.

        Parameters
        ----------
        *args
            What the model conditions on, as :meth:`model_args` gives it for the bound data:
            ``(inputs, y)`` with ``y`` standardized (``y=None`` simulates the response).
        subsample_size : int, optional
            Mini-batch size of the data plate :attr:`data_plate`, whose log-likelihood Pyro
            then scales by N/B; ``None`` uses every data point.

        Returns
        -------
        torch.Tensor
            The value of the observed site :attr:`observed_site` (the data given, or a
            simulated response).
        """
        raise NotImplementedError

    def fast_log_joint(self, values: dict, subsample: dict) -> torch.Tensor:
        """Vectorized log joint of batched constrained values; ``None`` if not offered.

        A model offers one when :attr:`has_fast_path` is true. Otherwise ``fit`` passes
        ``None`` in its place and the samplers trace :meth:`pyro_model` (this base method
        raises ``NotImplementedError``).

        Parameters
        ----------
        values : dict of str to torch.Tensor
            Constrained value of every latent site, each with one leading batch dim ``C``
            (chains or particles): ``(C,) + site shape``.
        subsample : dict of str to torch.Tensor
            Integer indices of the data points in the mini-batch, keyed by plate name
            (:attr:`data_plate`); empty (or without that plate) for all the data. The
            log-likelihood of a mini-batch of ``B`` of ``N`` points is scaled by N/B.

        Returns
        -------
        torch.Tensor
            ``(C,)`` log joint of each batch member, the same number as the Pyro model's.
        """
        raise NotImplementedError

    def init_values(self, seed: int = 0) -> dict:
        """Constrained starting values of the latent sites."""
        return {}

    @property
    def low_rank_prior(self) -> LowRankPrior | None:
        """The prior of the model's low-rank tensor (``None`` for a model without one)."""
        return None

    @property
    def sghmc_start_noncentred(self) -> bool:
        """Whether SGHMC's chains start at the mode of the non-centred parametrization of the
        low-rank prior (entries = slice sd x standardized entries: the joint log density plus
        :meth:`LowRankPrior.standardizing_log_jacobian
        <bayestensor.priors.LowRankPrior.standardizing_log_jacobian>`) instead of the joint
        mode (the MAP). No by default (see :class:`~bayestensor.models.TensorRegression`'s)."""
        return False

    def gibbs_sites(self, factor_redraws: bool = False, start_at_mode: bool = True) -> dict:
        """Sites whose full conditional given the rest SGHMC redraws exactly, with the
        conditional (a number is a Gamma conditional's shape), on the bound data
        (``SGHMC(gibbs=...)``, see :mod:`bayestensor.infer.gibbs`).

        The low-rank tensor's slice precisions (gamma prior) or scales (half-Cauchy prior),
        :meth:`LowRankPrior.conditionals`, when an entry's prior variance is a product of
        several of them (Tucker core, inner TT cores): there a precision and its slices form
        a curved valley that small steps cross slowly, and the redraws raised the smallest ESS
        of TT's held-out entries from 186 to 598. For CP (one precision per entry) they made the
        chains stick to a slice half switched on, and R-hat of the 30^3 rank-3 case rose from
        1.015-1.017 to 1.02-1.05 (3 seeds), so CP's precisions move by SGHMC. With the factor
        rows redrawn as well (a whole Gibbs sweep), 5 of the 24 CP runs of the SGHMC grid met
        its bar, against 22 without either (docs/benchmarks.md).

        Parameters
        ----------
        factor_redraws : bool
            Whether SGHMC also redraws the factors exactly (``factor_redraws()``), with which
            a model may redraw more sites (a Gaussian regression: its slice precisions).
        start_at_mode : bool
            Whether the chains start at a mode (the MAP) rather than at the starting values,
            which sets when a Tucker prior's redraws begin (:meth:`LowRankPrior.conditionals
            <bayestensor.priors.LowRankPrior.conditionals>`).
        """
        prior = self.low_rank_prior
        if prior is None or prior.one_scale_per_entry:
            return {}
        return prior.conditionals(start_at_mode)

    def hyper_gradient(self, target):
        """The gradient of ``target``'s log density on the low-rank prior's hyper sites, from
        the prior alone (``None`` without a low-rank prior): nothing else in a built-in model
        depends on them, so on those coordinates it equals the full gradient without the
        likelihood's cost. SGHMC's later redraw stages read their rates off it (a Tucker
        completion's SGHMC took 1.26x its former time with the full gradient there).

        Parameters
        ----------
        target : LogDensity
            The model's bound log density (its sites and transforms).

        Returns
        -------
        callable or None
            ``theta (C, D) -> (C, D)``: exact on the hyper sites' coordinates (zero or
            partial elsewhere, which the redraws do not read).
        """
        prior = self.low_rank_prior
        if prior is None:
            return None
        return functools.partial(target.gradient_of, prior.log_prob)

    def prior_precisions(self, values: dict) -> dict[str, torch.Tensor]:
        """The Gaussian prior precision of every entry of the low-rank tensor's parameters.

        SGHMC reads it each step to keep its update stable on entries that a slice-precision
        redraw has stiffened (:class:`~bayestensor.infer.prior_step_cap.PriorStepCap`).

        Parameters
        ----------
        values : dict of str to torch.Tensor
            Constrained values with a leading batch dim (chains), including the slice
            hyper-parameters.

        Returns
        -------
        dict of str to torch.Tensor
            ``{parameter site: precision}``, each ``batch_shape + parameter shape``: one over
            the product of the entry's slice variances (a fixed ``core_variance`` included);
            empty for a model without a low-rank prior.
        """
        prior = self.low_rank_prior
        if prior is None:
            return {}
        return {site: std.pow(-2) for site, std in prior.entry_stds(values).items()}

    def gamma_shapes(self) -> dict[str, float]:
        """``{site: shape}`` of the positive sites whose log density in ``u = log x`` is
        ``shape * u - x * rate`` (the Gamma conditionals' shapes: the low-rank prior's slice
        precisions under the gamma prior, and those of :meth:`gibbs_sites`, the noise
        precision): SGHMC takes their curvature exactly, ``shape - gradient`` (its
        ``exact_curvature``)."""
        prior = self.low_rank_prior
        conds = {} if prior is None else dict(prior.conditionals())
        conds.update(self.gibbs_sites())
        return {name: float(c) if isinstance(c, (int, float)) else c.shape
                for name, c in conds.items()
                if isinstance(c, (int, float, GammaConditional))}

    def block_axes(self) -> dict[str, int]:
        """For SVGD's per-slice kernel: site name -> axis whose index names the block.

        Each low-rank parameter splits by its first rank axis (e.g. CP factor columns).
        """
        prior = self.low_rank_prior
        if prior is None:
            return {}
        return {site: min(spec.rank_axes) for site, spec in zip(prior.param_sites, prior.specs)
                if spec.rank_axes}

    def slice_scales(self, samples: dict) -> list[torch.Tensor]:
        """Slice scales per rank dimension, ``(S, R_d)`` each (see ``LowRankTensor.slice_norms``)."""
        return self.low_rank_prior.build(samples).slice_norms()

    def rank_signal(self, samples: dict) -> torch.Tensor | None:
        """``(S,)`` size of each sample's low-rank part in units of the data's sd, below which
        the effective rank rule counts no slice (see :mod:`bayestensor.priors.effective_rank`);
        ``None`` where the model has no such unit (the relative rule alone)."""
        return None

    # --- predictions ------------------------------------------------------------------------
    def check_predict_inputs(self, inputs) -> torch.Tensor:
        """Validate what ``Posterior.predict`` receives; raise ``ValueError`` when it is wrong."""
        raise NotImplementedError

    def predict_entries(self, samples: dict, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample predicted means ``(S, n)`` and noise sd ``(S,)`` at validated inputs.

        Parameters
        ----------
        samples : dict of str to torch.Tensor
            Site values with one flat leading sample dim ``S``.
        inputs : torch.Tensor
            ``n`` inputs as :meth:`check_predict_inputs` returned them.

        Returns
        -------
        mean : torch.Tensor
            ``(S, n)`` predicted mean of each input under each sample, in data units.
        noise_sd : torch.Tensor
            ``(S,)`` noise sd of each sample, in data units.
        """
        raise NotImplementedError

    # --- pointwise likelihood (model comparison) ----------------------------------------------
    #: Name of the observed sample site of :meth:`pyro_model`.
    observed_site = "y"

    def observed_data(self) -> torch.Tensor:
        """The bound observations in the data's own units (what the likelihood scores)."""
        raise NotImplementedError

    def observation_distribution(self, samples: dict) -> torch.distributions.Distribution:
        """Per-sample distribution of every bound observation, in data units.

        ``samples`` holds site values with one flat leading sample dim ``S``; the batch shape
        is ``(S,) + observed_data().shape``.
        """
        raise NotImplementedError

    def pointwise_log_likelihood(self, samples: dict) -> torch.Tensor:
        """Log-likelihood of each observation under each sample, ``(S, n)``, in data units.

        The density is that of the data as given, so it differs from the density of the
        standardized response by the log-Jacobian ``-log(scale)`` per observation and runs
        with and without standardization compare on one scale. A vector response scores each
        row (its outputs summed), as Pyro's ``log_prob`` of the ``to_event(1)`` site does.
        """
        ll = self.observation_distribution(samples).log_prob(self.observed_data())
        return ll.reshape(ll.shape[0], self.n_data(), -1).sum(-1)

    def arviz_dims(self) -> dict[str, list[str]]:
        """Named axes of the sites (without chain and draw) for ArviZ.

        Rank axes are ``rank0``, ``rank1``...; the other axes of a parameter are the tensor
        modes it spans (``mode0``...); the observed site's axis is ``obs``.
        """
        prior = self.low_rank_prior
        dims: dict[str, list[str]] = {self.observed_site: ["obs"]}
        if prior is None:
            return dims
        for d, site in enumerate(prior.hyper_sites):
            dims[site] = [f"rank{d}"]
        fmt = prior.format_cls.format_name
        for site, spec in zip(prior.param_sites, prior.specs):
            k = int("".join(c for c in spec.name if c.isdigit()) or 0)
            if fmt == "ttm":  # a TT-matrix core (R, I_k, J_k, R) spans modes k and N + k
                modes = ["edge", f"mode{k}", f"mode{k + len(prior.shape) // 2}", "edge"]
            elif fmt == "tt":  # a TT core (R, I_k, R); the outer ranks are 1 ("edge")
                modes = ["edge", f"mode{k}", "edge"]
            elif spec.name == "core":  # a Tucker core (R_0, ..., R_{N-1}), also at a fixed
                modes = [f"rank{a}" for a in range(len(spec.shape))]  # variance (no rank axes)
            else:  # CP and Tucker factors (I_k, R)
                modes = [f"mode{k}", "rank"]
            dims[site] = [f"rank{spec.rank_axes[a]}" if a in spec.rank_axes else modes[a]
                          for a in range(len(spec.shape))]
        return dims

    def data_state(self) -> dict[str, torch.Tensor]:
        """The bound data as the model uses it (standardized), for saving with a posterior."""
        self._require_data()
        return {"inputs": self._inputs.cpu(), "y": self._y.cpu()}

    def load_data_state(self, data: dict[str, torch.Tensor]) -> None:
        """Bind what :meth:`data_state` returned (after :meth:`load_state`)."""
        self._inputs, self._y = data["inputs"], data["y"]

    # --- persistence ------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """Constructor arguments, for saving."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """Data-derived state needed to predict after loading (not the data itself)."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""

    def __call__(self, *args, **kwargs):
        return self.pyro_model(*args, **kwargs)

"""What a built-in model offers ``fit`` beyond being a Pyro model, and the data binding they share."""

from __future__ import annotations

import math
from typing import Any

import torch

from bayestensor.checks import rank_value
from bayestensor.priors import LowRankPrior

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

    def _require_data(self) -> None:
        if self._y is None:
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
        """The Pyro model."""
        raise NotImplementedError

    def fast_log_joint(self, values: dict, subsample: dict) -> torch.Tensor:
        """Vectorized log joint of batched constrained values; ``None`` if not offered."""
        raise NotImplementedError

    def init_values(self, seed: int = 0) -> dict:
        """Constrained starting values of the latent sites."""
        return {}

    @property
    def low_rank_prior(self) -> LowRankPrior | None:
        """The prior of the model's low-rank tensor (``None`` for a model without one)."""
        return None

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

    # --- predictions ------------------------------------------------------------------------
    def check_predict_inputs(self, inputs) -> torch.Tensor:
        """Validate what ``Posterior.predict`` receives; raise ``ValueError`` when it is wrong."""
        raise NotImplementedError

    def predict_entries(self, samples: dict, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample predicted means ``(S, n)`` and noise sd ``(S,)`` at validated inputs."""
        raise NotImplementedError

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

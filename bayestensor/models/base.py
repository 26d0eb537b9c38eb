"""What a built-in model offers ``fit`` beyond being a Pyro model."""

from __future__ import annotations

from typing import Any

import torch


class BayesModel:
    """Base class of the built-in models.

    A built-in model is bound to its data by :meth:`set_data`, after which
    :meth:`pyro_model` called with :meth:`model_args` is an ordinary Pyro model. It may also
    offer a vectorized log joint (:meth:`fast_log_joint`) that must agree with the Pyro model,
    data-driven starting values (:meth:`init_values`), and per-sample predictions.
    """

    #: Name of the plate over data points that ``batch_size`` sub-samples.
    data_plate = "obs"
    #: Pyro's ``max_plate_nesting`` for this model.
    max_plate_nesting = 1

    def set_data(self, data) -> None:
        """Validate and store the data; raise ``ValueError`` on bad input."""
        raise NotImplementedError

    def model_args(self) -> tuple:
        """Positional arguments of :meth:`pyro_model` for the bound data."""
        raise NotImplementedError

    def pyro_model(self, *args, subsample_size: int | None = None):
        """The Pyro model."""
        raise NotImplementedError

    def fast_log_joint(self, values: dict, subsample: dict) -> torch.Tensor:
        """Vectorized log joint of batched constrained values; ``None`` if not offered."""
        raise NotImplementedError

    has_fast_path = False

    def init_values(self, seed: int = 0) -> dict:
        """Constrained starting values of the latent sites."""
        return {}

    def block_axes(self) -> dict[str, int]:
        """For SVGD's per-slice kernel: site name -> axis whose index names the block."""
        return {}

    def check_predict_inputs(self, inputs) -> torch.Tensor:
        """Validate what ``Posterior.predict`` receives; raise ``ValueError`` when it is wrong."""
        raise NotImplementedError

    def predict_entries(self, samples: dict, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample predicted means ``(S, n)`` and noise sd ``(S,)`` at validated inputs."""
        raise NotImplementedError

    def n_data(self) -> int:
        """Number of data points in :attr:`data_plate`."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Constructor arguments, for saving."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """Data-derived state needed to predict after loading (not the data itself)."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""

    def to(self, device) -> "BayesModel":
        """Move the bound data to ``device`` (the samplers then run there)."""
        return self

    def __call__(self, *args, **kwargs):
        return self.pyro_model(*args, **kwargs)

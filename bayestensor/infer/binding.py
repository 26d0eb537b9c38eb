"""Binding a model and its data to a :class:`~bayestensor.infer.log_density.LogDensity`.

A built-in model binds its data and supplies its own start and vectorized fast path; a custom
Pyro model receives its data through ``model_args`` / ``model_kwargs``. Either way the result
is the model function, its arguments, the starting values and the fast path (or ``None``).
"""

from __future__ import annotations

import pyro
import torch

from bayestensor.seeds import legacy_seed
from bayestensor.models.base import BayesModel


def check_device(device) -> torch.device | None:
    """``device`` as a ``torch.device`` (``None`` stays ``None``); CUDA must be available."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: expected a torch device such as 'cpu' or 'cuda', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} was asked for but CUDA is not available")
    return dev


def check_custom_batch_size(model, model_args, model_kwargs, batch_size: int) -> None:
    """A custom model's sub-sampled plates fix their own size; refuse a different one, and a
    ``batch_size`` for a model without any (it would be ignored: the model reads all its
    data whatever ``fit`` is told)."""
    trace = pyro.poutine.trace(pyro.poutine.block(model, hide_types=["param"])).get_trace(
        *model_args, **(model_kwargs or {}))
    subsampled = False
    for name, node in trace.nodes.items():
        fn = node.get("fn")
        if node["type"] == "sample" and type(fn).__name__ == "_Subsample":
            if fn.subsample_size is not None and int(fn.subsample_size) < int(fn.size):
                subsampled = True
                if int(fn.subsample_size) != int(batch_size):
                    raise ValueError(
                        f"batch_size: the model's plate {name!r} declares subsample_size="
                        f"{int(fn.subsample_size)}; set the mini-batch size there (and leave "
                        f"batch_size unset) or make them equal, got batch_size={batch_size}")
    if not subsampled:
        raise ValueError(
            f"batch_size: the model has no sub-sampled plate, so batch_size={batch_size} would "
            "be ignored; declare the mini-batch in the model (pyro.plate(name, N, "
            "subsample_size=B), indexing the data with the plate's indices) or leave "
            "batch_size unset")


def check_batch_size(model: BayesModel, batch_size: int | None) -> None:
    """Refuse a mini-batch larger than the model's bound data (``None``: full batch).

    Raises
    ------
    ValueError
        When ``batch_size`` exceeds the number of bound data points.
    """
    if batch_size is not None and batch_size > model.n_data():
        raise ValueError(f"batch_size: {batch_size} exceeds the {model.n_data()} observations")


def bind(model, data, model_args, model_kwargs, batch_size, init, seed, device=None):
    """Model function, its arguments and keyword arguments, starting values and fast path.

    Parameters
    ----------
    model : BayesModel or callable
    data : optional
        Data of a built-in model (bound with ``set_data``); must be ``None`` for a custom model.
    model_args, model_kwargs
        Arguments of a custom Pyro model (moved to ``device``).
    batch_size : int, optional
        Mini-batch size of the data plate (built-in) or the sub-sampled plates (custom).
    init : {"svd", "random"} or dict
        A built-in model's starting point, or constrained starting values.
    seed : int
    device : torch.device, optional
    """
    if isinstance(model, BayesModel):
        if data is not None:
            model.set_data(data)
        check_batch_size(model, batch_size)
        kwargs = {"subsample_size": batch_size} if batch_size is not None else {}
        model.to("cpu")  # the data-driven start is computed on the CPU
        # The starting point may use NumPy's legacy generator (TensorLy's decompositions).
        init_values = (init if isinstance(init, dict)
                       else model.init_values(seed=legacy_seed(seed), init=init))
        model.to(device or "cpu")
        fast = model.fast_log_joint if model.has_fast_path else None
        return model.pyro_model, model.model_args(), kwargs, init_values, fast
    if not callable(model):
        raise TypeError(f"model: expected a bayestensor model or a Pyro model function, got {type(model).__name__}")
    if data is not None:
        raise ValueError("data: a custom Pyro model receives its data through model_args / model_kwargs")
    init_values = init if isinstance(init, dict) else {}
    if batch_size is not None:
        check_custom_batch_size(model, model_args, model_kwargs, batch_size)
    args = tuple(a.to(device) if (device is not None and isinstance(a, torch.Tensor)) else a
                 for a in model_args)
    return model, args, dict(model_kwargs or {}), init_values, None

"""Built-in models: Pyro models with a vectorized fast path and data-driven starts."""

from bayestensor.models.base import BayesModel
from bayestensor.models.completion import TensorCompletion
from bayestensor.models.regression import TensorRegression

MODELS: dict[str, type[BayesModel]] = {"TensorCompletion": TensorCompletion,
                                       "TensorRegression": TensorRegression}


def model_from_config(class_name: str, config: dict) -> BayesModel:
    """Rebuild a built-in model from its class name and ``config()``."""
    if class_name not in MODELS:
        raise ValueError(f"model: unknown built-in model class {class_name!r}")
    return MODELS[class_name](**config)


__all__ = ["BayesModel", "TensorCompletion", "TensorRegression", "MODELS", "model_from_config"]

"""Built-in models: Pyro models with a vectorized fast path and data-driven starts."""

from bayestensor.models.base import BayesModel
from bayestensor.models.completion import TensorCompletion
from bayestensor.models.regression import TensorRegression

MODELS: dict[str, type[BayesModel]] = {"TensorCompletion": TensorCompletion,
                                       "TensorRegression": TensorRegression}


def model_from_config(class_name: str, config: dict) -> BayesModel:
    """Rebuild a built-in model from its class name and ``config()``.

    Parameters
    ----------
    class_name : str
        A key of :data:`MODELS`: ``"TensorCompletion"`` or ``"TensorRegression"``.
    config : dict
        Constructor arguments, as the model's ``config()`` returned them.

    Returns
    -------
    BayesModel
        A new model of that class, with no data bound and no data-derived state (restore
        those with ``load_state`` and ``load_data_state``).

    Raises
    ------
    ValueError
        When ``class_name`` is not a built-in model class, or ``config`` holds a value the
        constructor refuses.
    """
    if class_name not in MODELS:
        raise ValueError(f"model: unknown built-in model class {class_name!r}")
    if class_name == "TensorCompletion":  # saved before the offset site existed: none
        config = {"offset_scale": None, **config}
    return MODELS[class_name](**config)


__all__ = ["BayesModel", "TensorCompletion", "TensorRegression", "MODELS", "model_from_config"]

"""Data: observations validated once, synthetic and real tensors, regression and image data.

Nothing here downloads: real data come from installed packages (TensorLy, scikit-image,
scikit-learn) or from a path the user gives.

* :mod:`~bayestensor.data.observations`: :class:`Observations` (COO indices and values);
* :mod:`~bayestensor.data.tensors`: synthetic low-rank tensors and bundled real tensors;
* :mod:`~bayestensor.data.regression`: tensor-regression data sets;
* :mod:`~bayestensor.data.images`: labelled image data for networks (digits, MNIST).
"""

from bayestensor.data.observations import Observations, as_observations
from bayestensor.data.tensors import (IMAGES, RealTensor, SyntheticTensor, load_il2, load_image,
                                      load_indian_pines, load_kinetic, synthetic_tensor)

__all__ = ["Observations", "as_observations", "SyntheticTensor", "synthetic_tensor", "RealTensor",
           "load_kinetic", "load_indian_pines", "load_il2", "load_image", "IMAGES"]

"""Tensor regression on image-shaped inputs: find a low-rank coefficient image, with its sd.

Each input is a noise image; the response is ``<W, X> + b + noise`` where the true ``W`` is a
cross (rank 2). With fewer images than pixels least squares cannot find ``W``; a CP ``W`` of
rank at most 5 under the shrinkage prior can. SGHMC gives the posterior mean and sd of ``W``,
drawn beside the truth, and held-out predictions with intervals.

Usage::

    python examples/regression_images.py [OUT_DIR]
"""

import os
import sys
import tempfile
from pathlib import Path

import bayestensor as bt
from bayestensor.data.regression import synthetic_image_regression
from bayestensor.viz.regression import plot_weights

FAST = os.environ.get("BAYESTENSOR_EXAMPLES_FAST") == "1"
SIZE, N_TRAIN, STEPS = (16, 200, 80) if FAST else (32, 500, 400)

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bt-regress-"))

data = synthetic_image_regression("cross", size=SIZE, n_train=N_TRAIN, n_test=500, seed=0)
model = bt.TensorRegression(data.input_shape, format="cp", max_rank=5)
post = bt.fit(model, data.train, method="sghmc", num_chains=2, num_samples=STEPS,
              num_warmup=STEPS, seed=0, progress=False)

w_mean, w_sd = model.weight_posterior(post)
print(f"{N_TRAIN} images of {SIZE} x {SIZE} pixels")
print("rank posterior of W:", post.effective_rank().distribution(0), f"(true rank {data.rank})")
print(f"relative error of the posterior-mean W: {data.weight_relative_error(w_mean):.3f}")

pred = post.predict(data.X_test)
print(f"held-out relative error: {data.relative_error(pred.mean):.3f}")
print(f"90% interval coverage of noisy held-out responses: {pred.coverage(data.y_test, 0.9):.2f}")

plot_weights(w_mean, w_sd, truth=data.weight, path=out / "weights.png",
             title="coefficient image W")
print("figure:", out / "weights.png")

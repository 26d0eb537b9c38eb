"""Complete a partly observed tensor, with credible intervals, and write an uncertainty report.

A synthetic 3-way tensor of CP rank 3 is observed at 20% of its entries with noise. The model
allows rank 8; the prior switches off the slices the data do not need. Four SGHMC chains of
1,000 draws (two steps a draw) give the posterior; we check that they converged, then read
held-out predictions with 90% intervals, their coverage and the rank posterior, and write
``report.html`` / ``report.json``.

Usage::

    python examples/complete_tensor.py [OUT_DIR]

``BAYESTENSOR_EXAMPLES_FAST=1`` shrinks the problem and the chains so the script runs in
seconds; its chains are then too short to converge, and it says so.
"""

import os
import sys
import tempfile
from pathlib import Path

import bayestensor as bt

FAST = os.environ.get("BAYESTENSOR_EXAMPLES_FAST") == "1"
# Fast mode: a smaller tensor needs a larger observed fraction to pin down rank 3.
SIZE, OBSERVED, STEPS, MAP_STEPS = (12, 0.3, 60, 500) if FAST else (20, 0.2, 1000, 1000)
CHAINS, THIN = (2, 1) if FAST else (4, 2)

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bt-complete-"))

data = bt.data.synthetic_tensor((SIZE, SIZE, SIZE), rank=3, snr_db=10, observed=OBSERVED,
                                n_test=500, seed=0)
model = bt.TensorCompletion(data.shape, format="cp", max_rank=8, prior="gamma")
post = bt.fit(model, data.train, method="sghmc", num_samples=STEPS, num_warmup=STEPS,
              num_chains=CHAINS, thin=THIN, map_steps=MAP_STEPS, seed=0, progress=False)
check = post.diagnostics()  # R-hat and ESS of the noise precision, tensor norm, 4 entries
print(f"chains converged: {check['converged']} (max R-hat {check['max_rhat']:.3f}, "
      f"min bulk ESS {check['min_ess_bulk']:.0f})")

pred = post.predict(data.test.indices)
lower, upper = pred.interval(0.9)
print(f"observed entries: {len(data.train)} of {SIZE ** 3}")
print(f"held-out relative error: {data.relative_error(pred.mean):.3f}")
print(f"90% interval coverage of noisy held-out entries: "
      f"{pred.coverage(data.test_noisy.values, 0.9):.2f}")
print(f"first held-out entry: {float(pred.mean[0]):.3f} in [{float(lower[0]):.3f}, "
      f"{float(upper[0]):.3f}], true {float(data.test_noisy.values[0]):.3f}")
ranks = post.effective_rank()
print("rank posterior:", ranks.distribution(0), "(true rank 3)")

heldout = {"indices": data.test.indices.numpy(), "truth": data.test.values.numpy(),
           "noisy": data.test_noisy.values.numpy()}
paths = bt.report(post, out / "run", heldout=heldout)
print("report:", paths["html"])

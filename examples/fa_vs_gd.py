"""Feedback alignment (FA) versus gradient descent (GD) on a matrix factorization, across seeds.

``Y ~ Z W`` with ``Y`` of rank 5 and a rank-3 model. GD follows the gradient; FA replaces ``W``
in the backward pass by a fixed random matrix ``B``. Every learner runs on the same replicate
problems (one seed each); the comparison reports the success probability (excess error over the
best rank-3 fit, Eckart-Young, below 1e-6) with a Wilson interval, and bootstrap intervals of the
mean final metrics, so a difference between the rules is judged against its uncertainty.

Usage::

    python examples/fa_vs_gd.py [OUT_DIR]
"""

import json
import os
import sys
import tempfile
from pathlib import Path

from bayestensor.dynamics import FactorizationLearner, FactorizationProblem, compare

FAST = os.environ.get("BAYESTENSOR_EXAMPLES_FAST") == "1"
SEEDS, STEPS = (4, 400) if FAST else (10, 3000)

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bt-fa-"))

problem = FactorizationProblem(n=30, m=20, rank=5, r=3)
learners = [FactorizationLearner(rule, steps=STEPS) for rule in ("gd", "fa")]
result = compare(problem, learners, seeds=SEEDS, seed=0, progress=False)

print(f"{SEEDS} seeds, {STEPS} steps each")
success = result.success_table(method="wilson")
print(success[["learner", "successes", "n", "p", "ci_low", "ci_high"]].to_string(index=False))
summary = result.summary(["error", "excess", "alignment_row"])
print(summary[["learner", "metric", "mean", "ci_low", "ci_high"]].round(4).to_string(index=False))

(out / "fa_vs_gd.json").write_text(json.dumps(result.to_dict(), indent=2))
print("written:", out / "fa_vs_gd.json")

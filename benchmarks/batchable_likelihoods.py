"""A user's Pyro model with a multinomial or ordinal likelihood, fitted by every method.

Torch's ``Multinomial.log_prob`` and Pyro's ``OrderedLogistic`` cannot run under
``torch.func.vmap`` as written, so such a model's chains (SVGD's particles) were evaluated one
at a time; :mod:`bayestensor.batchable` makes them batchable. Two plain Pyro models, as a
user writes them, each fitted by ``bt.fit`` at its defaults:

* ``multinomial``: a multinomial logistic regression, 200 observations of 20 counts over 4
  categories from 3 inputs; score: the relative error of the posterior mean weights, centred
  over the categories (the likelihood sees only their differences);
* ``ordinal``: ordinal ratings (5 levels) of a 15 x 15 x 15 rank-2 CP tensor, 1,200 observed
  (latent sd 4 against the logistic noise's 1.8), modelled as a rank-3 CP tensor with
  Normal(0, 1) factors and ordered cutpoints; scores on 500 held-out entries: accuracy of the
  predicted rating (the posterior predictive's mode), the mean absolute error of its expected
  rating, and for reference the accuracy of the mode under the true latent tensor and
  cutpoints (``oracle_accuracy``).

Per run: seconds, the score, and whether the loop's fallback warning was raised.

Run: ``OMP_NUM_THREADS=1 python benchmarks/batchable_likelihoods.py [--seeds 3]
[--models multinomial ordinal] [--methods map vi sghmc svgd nuts] [--out FILE]``
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import OrderedTransform

import bayestensor as bt
from tables import write_result

RESULTS = Path(__file__).parent / "results"
METHODS = ["map", "vi", "sghmc", "svgd", "nuts"]
SHAPE, TRUE_RANK, MODEL_RANK, LEVELS = (15, 15, 15), 2, 3, 5
#: Standard deviation of the true latent ratings, against the logistic noise's 1.8.
SIGNAL = 4.0
N_TRAIN, N_TEST = 1200, 500


def multinomial_model(x, counts):
    weights = pyro.sample("W", dist.Normal(0.0, 1.0).expand([3, 4]).to_event(2))
    with pyro.plate("obs", x.shape[0]):
        pyro.sample("y", dist.Multinomial(20, logits=x @ weights), obs=counts)


def cp_latent(factors, index):
    return (factors[0][..., index[:, 0], :] * factors[1][..., index[:, 1], :]
            * factors[2][..., index[:, 2], :]).sum(-1)


def ordinal_model(index, ratings):
    factors = [pyro.sample(f"U{k}", dist.Normal(0.0, 1.0).expand([n, MODEL_RANK]).to_event(2))
               for k, n in enumerate(SHAPE)]
    cutpoints = pyro.sample("cutpoints", dist.TransformedDistribution(
        dist.Normal(0.0, 3.0).expand([LEVELS - 1]).to_event(1), OrderedTransform()))
    with pyro.plate("obs", len(ratings)):
        pyro.sample("y", dist.OrderedLogistic(cp_latent(factors, index), cutpoints),
                    obs=ratings)


def multinomial_problem(seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(200, 3, generator=gen)
    weights = torch.randn(3, 4, generator=gen)
    draws = torch.multinomial(torch.softmax(x @ weights, -1), 20, replacement=True,
                              generator=gen)
    counts = torch.nn.functional.one_hot(draws, 4).sum(-2).float()
    return {"model": multinomial_model, "args": (x, counts), "truth": weights}


def ordinal_problem(seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    factors = [torch.randn(n, TRUE_RANK, generator=gen) for n in SHAPE]
    index = torch.stack([torch.randint(0, n, (N_TRAIN + N_TEST,), generator=gen)
                         for n in SHAPE], -1)
    latent = cp_latent(factors, index)
    latent = latent / latent.std()
    cutpoints = torch.tensor([-1.5, -0.5, 0.5, 1.5])
    truth = dist.OrderedLogistic(SIGNAL * latent, cutpoints)
    ratings = torch.multinomial(truth.probs, 1, generator=gen).squeeze(-1)
    oracle = float((truth.probs.argmax(-1) == ratings)[N_TRAIN:].double().mean())
    return {"model": ordinal_model, "args": (index[:N_TRAIN], ratings[:N_TRAIN]),
            "test": (index[N_TRAIN:], ratings[N_TRAIN:]), "oracle_accuracy": oracle}


def score(name: str, problem: dict, samples: dict) -> dict:
    """The problem's score from the posterior draws (every chain's, pooled)."""
    if name == "multinomial":
        draws = samples["W"].reshape(-1, 3, 4)
        centred = lambda w: w - w.mean(-1, keepdim=True)  # noqa: E731
        mean, truth = centred(draws.mean(0)), centred(problem["truth"])
        return {"weight_error": float((mean - truth).norm() / truth.norm())}
    index, ratings = problem["test"]
    factors = [samples[f"U{k}"].reshape(-1, n, MODEL_RANK) for k, n in enumerate(SHAPE)]
    cutpoints = samples["cutpoints"].reshape(-1, 1, LEVELS - 1)
    probs = dist.OrderedLogistic(cp_latent(factors, index), cutpoints).probs.mean(0)
    expected = (probs * torch.arange(LEVELS)).sum(-1)
    return {"accuracy": float((probs.argmax(-1) == ratings).double().mean()),
            "mae": float((expected - ratings).abs().mean()),
            "oracle_accuracy": problem["oracle_accuracy"]}


def run(name: str, method: str, seed: int) -> dict:
    problem = (multinomial_problem if name == "multinomial" else ordinal_problem)(seed)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post = bt.fit(problem["model"], method=method, model_args=problem["args"], seed=seed,
                      progress=False)
    seconds = time.perf_counter() - start
    looped = any("vmap" in str(w.message) for w in caught)
    samples = {k: torch.as_tensor(v) for k, v in post.samples.items()}
    return {"model": name, "method": method, "seed": seed, "seconds": round(seconds, 2),
            "looped": looped, **score(name, problem, samples)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["multinomial", "ordinal"],
                        choices=["multinomial", "ordinal"])
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--out", type=Path, default=RESULTS / "batchable_likelihoods.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name in args.models:
        for method in args.methods:
            for seed in range(args.seeds):
                rows.append(run(name, method, seed))
                print(rows[-1], flush=True)
    summary = {f"{name}/{method}": {
        key: statistics.median(r[key] for r in rows if r["model"] == name
                               and r["method"] == method)
        for key in ("seconds", "weight_error", "accuracy", "mae")
        if key in next(r for r in rows if r["model"] == name)}
        for name in args.models for method in args.methods}
    return write_result(args, rows, summary)


if __name__ == "__main__":
    main()

"""Likelihoods whose torch/Pyro code ``vmap`` refuses, evaluated for all chains at once, and a
user's model scored for all posterior draws at once.

The oracle is the original code, one chain (or draw) at a time: the stand-ins must give its
values and gradients, a user's model with such a likelihood must be evaluated batched (no
fallback warning) to the same numbers, and the pointwise scores must be Pyro's trace's.
"""

import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.distributions.transforms import OrderedTransform

from bayestensor.infer import LogDensity
from bayestensor.results.pointwise import DRAW_CHUNK, pyro_log_likelihood
from bayestensor.batchable import (STAND_INS, batchable_distributions,
                                         multinomial_log_prob)


def _ordinal_model(index, ratings, levels=5):
    """A rank-2 CP tensor of ordinal ratings, written as a user would."""
    factors = [pyro.sample(f"U{k}", dist.Normal(0.0, 1.0).expand([6, 2]).to_event(2))
               for k in range(3)]
    cut = pyro.sample("cutpoints", dist.TransformedDistribution(
        dist.Normal(0.0, 3.0).expand([levels - 1]).to_event(1), OrderedTransform()))
    latent = (factors[0][index[:, 0]] * factors[1][index[:, 1]]
              * factors[2][index[:, 2]]).sum(-1)
    with pyro.plate("obs", len(ratings)):
        pyro.sample("y", dist.OrderedLogistic(latent, cut), obs=ratings)


def _multinomial_model(x, counts):
    weights = pyro.sample("W", dist.Normal(0.0, 1.0).expand([3, 4]).to_event(2))
    with pyro.plate("obs", x.shape[0]):
        pyro.sample("y", dist.Multinomial(20, logits=x @ weights), obs=counts)


def test_the_multinomial_stand_in_gives_the_originals_log_prob_and_gradient():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    counts = torch.randint(0, 4, (7, 5), generator=gen).double()
    counts[:, 2] = 0  # a zero count of an impossible category: the 0 * log 0 = 0 case
    impossible = torch.where(torch.arange(5) == 2, -math.inf, 0.0).double()
    total = int(counts.sum(-1).max())
    for shift in (0.0, impossible):
        ours = multinomial_log_prob(dist.Multinomial(total, logits=logits + shift), counts)
        theirs = dist.Multinomial(total, logits=logits + shift).log_prob(counts)
        assert torch.isfinite(theirs).all()
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
        torch.testing.assert_close(torch.autograd.grad(ours.sum(), logits)[0],
                                   torch.autograd.grad(theirs.sum(), logits)[0],
                                   rtol=0, atol=1e-12)


def test_the_ordered_logistic_stand_in_gives_the_originals_probabilities():
    gen = torch.Generator().manual_seed(1)
    predictor = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    cutpoints = torch.randn(4, 1, 3, generator=gen, dtype=torch.float64).sort(-1).values
    original = dist.OrderedLogistic(predictor, cutpoints)
    with batchable_distributions():
        ours = dist.OrderedLogistic(predictor, cutpoints)
    torch.testing.assert_close(ours.probs, original.probs, rtol=0, atol=1e-15)
    assert ours.batch_shape == original.batch_shape == (4, 6)
    assert ours.cutpoints.shape == original.cutpoints.shape == (4, 6, 3)
    value = torch.randint(0, 4, (4, 6), generator=gen)
    torch.testing.assert_close(ours.log_prob(value), original.log_prob(value))


@pytest.mark.parametrize("make", [
    lambda p: dist.Multinomial(10, logits=p.expand(5, 4))
    .log_prob(torch.tensor([[4.0, 3, 3, 0]] * 5)),
    lambda p: dist.OrderedLogistic(p[0].expand(5), p[1:].sort().values)
    .log_prob(torch.tensor([0, 1, 2, 3, 1])),
], ids=["multinomial", "ordered_logistic"])
def test_under_vmap_the_stand_ins_give_each_chains_value(make):
    chains = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    with pytest.raises(RuntimeError, match="vmap"):  # what the originals do under vmap
        torch.func.vmap(lambda p: make(p).sum())(chains)
    with batchable_distributions():
        batched = torch.func.vmap(lambda p: make(p).sum())(chains)
    torch.testing.assert_close(batched, torch.stack([make(p).sum() for p in chains]))


def test_the_originals_are_restored_after_the_block_even_on_an_error():
    before = [cls.__dict__[name] for cls, name, _ in STAND_INS]
    with pytest.raises(ZeroDivisionError):
        with batchable_distributions():
            assert [cls.__dict__[name] for cls, name, _ in STAND_INS] == \
                [stand_in for _, _, stand_in in STAND_INS]
            1 / 0
    assert [cls.__dict__[name] for cls, name, _ in STAND_INS] == before


@pytest.mark.parametrize("which", ["multinomial", "ordinal"])
def test_a_users_model_with_such_a_likelihood_is_evaluated_for_all_chains_at_once(which):
    gen = torch.Generator().manual_seed(3)
    if which == "multinomial":
        x = torch.randn(40, 3, generator=gen)
        counts = dist.Multinomial(20, logits=x @ torch.randn(3, 4, generator=gen)).sample()
        target = LogDensity(_multinomial_model, model_args=(x, counts))
    else:
        index = torch.randint(0, 6, (60, 3), generator=gen)
        ratings = torch.randint(0, 5, (60,), generator=gen)
        target = LogDensity(_ordinal_model, model_args=(index, ratings))
    theta = torch.randn(4, target.dim, generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the loop's fallback warning
        logp, grad = target.value_and_grad(theta)
    assert target._vmap_ok is True
    one_by_one = [target.value_and_grad(row.unsqueeze(0)) for row in theta]  # no vmap
    torch.testing.assert_close(logp, torch.cat([lp for lp, _ in one_by_one]))
    torch.testing.assert_close(grad, torch.cat([g for _, g in one_by_one]))


def _scored_draw_by_draw(model, samples, args):
    """The oracle: Pyro's own trace per draw, each observed site's ``log_prob``."""
    out = []
    for i in range(next(iter(samples.values())).shape[0]):
        draw = {k: v[i] for k, v in samples.items()}
        trace = poutine.trace(poutine.condition(model, data=draw)).get_trace(*args)
        out.append(trace.nodes["y"]["fn"].log_prob(trace.nodes["y"]["value"]))
    return torch.stack(out)


def _branching_model(x, y):
    """A model ``vmap`` cannot trace: Python control flow on a latent value."""
    slope = pyro.sample("slope", dist.Normal(0.0, 1.0))
    mean = slope * x if bool(slope > 0) else -slope * x
    pyro.deterministic("first_mean", mean[0])
    pyro.deterministic("constant", torch.tensor(3.0))
    with pyro.plate("obs", len(y)):
        pyro.sample("y", dist.Normal(mean, 1.0), obs=y)


@pytest.mark.parametrize("which", ["ordinal", "branching"])
def test_pointwise_scores_of_a_users_model_equal_pyros_trace_draw_by_draw(which):
    gen = torch.Generator().manual_seed(4)
    if which == "ordinal":
        model = _ordinal_model
        args = (torch.randint(0, 6, (50, 3), generator=gen),
                torch.randint(0, 5, (50,), generator=gen))
        samples = {f"U{k}": torch.randn(300, 6, 2, generator=gen) for k in range(3)}
        samples["cutpoints"] = torch.randn(300, 4, generator=gen).sort(-1).values
    else:
        model = _branching_model
        args = (torch.linspace(-1, 1, 20), torch.randn(20, generator=gen))
        samples = {"slope": torch.randn(300, generator=gen)}
    calls = []

    def counted(*a):
        calls.append(1)
        return model(*a)

    log_lik, observed, derived = pyro_log_likelihood(counted, samples, args)
    # batched: one prototype trace and one per chunk of draws; else one more per draw
    assert len(calls) == (1 + math.ceil(300 / DRAW_CHUNK) if which == "ordinal" else 1 + 1 + 300)
    torch.testing.assert_close(log_lik["y"], _scored_draw_by_draw(model, samples, args))
    torch.testing.assert_close(observed["y"], args[1])
    if which == "branching":  # a model vmap cannot trace is scored draw by draw
        slope = samples["slope"]
        torch.testing.assert_close(derived["first_mean"], slope.abs() * args[0][0])
        torch.testing.assert_close(derived["constant"], torch.full((300,), 3.0))

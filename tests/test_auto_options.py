"""Options a method settles from the fit (``Method.settle``): VI's start and SGHMC's cap."""

import pyro
import pyro.distributions as dist
import pytest
import torch

import bayestensor as bt
from bayestensor.infer import METHODS
from bayestensor.infer.auto_options import FitPlan


def normal_model():
    pyro.sample("x", dist.Normal(torch.zeros(2), 1.0).to_event(1))


def plan(model, **changes):
    settings = dict(model=model, num_samples=1000, samples_given=False, num_chains=4,
                    chain_groups=None, batch_size=None, device=None, init="svd")
    return FitPlan(**{**settings, **changes})


def settled(method, options, fit_plan):
    options = dict(options)
    METHODS[method].settle_options(options, fit_plan)
    return options


@pytest.fixture
def cp_model():
    return bt.TensorCompletion((6, 6, 6), max_rank=2)


def test_vi_starts_the_closed_form_at_the_starting_values_and_else_at_the_map(cp_model):
    assert settled("vi", {}, plan(cp_model))["init_from"] == "init"
    # a random start, mini-batches, the stochastic fit, a Pyro model: the MAP
    assert settled("vi", {}, plan(cp_model, init="random"))["init_from"] == "map"
    assert settled("vi", {}, plan(cp_model, batch_size=10))["init_from"] == "map"
    assert settled("vi", {"closed_form": False}, plan(cp_model))["init_from"] == "map"
    assert settled("vi", {}, plan(normal_model))["init_from"] == "map"
    assert settled("vi", {"init_from": "map"}, plan(cp_model))["init_from"] == "map"


def test_sghmc_caps_draws_only_where_its_check_can_run(cp_model):
    assert settled("sghmc", {}, plan(cp_model))["max_samples"] == 4000
    assert settled("sghmc", {}, plan(cp_model, samples_given=True))["max_samples"] is None
    assert settled("sghmc", {}, plan(cp_model, num_chains=1))["max_samples"] is None
    assert settled("sghmc", {}, plan(cp_model, chain_groups=2))["max_samples"] is None
    assert settled("sghmc", {}, plan(normal_model))["max_samples"] == 4000
    assert settled("sghmc", {"max_samples": 1500}, plan(cp_model))["max_samples"] == 1500
    with pytest.raises(ValueError, match="max_samples: expected at least num_samples"):
        settled("sghmc", {"max_samples": 999}, plan(cp_model))


def test_methods_without_fit_dependent_options_are_left_as_given(cp_model):
    for method in ("map", "nuts"):
        assert settled(method, {"init_jitter": 0.1}, plan(cp_model)) == {"init_jitter": 0.1}


def test_svgd_starts_from_the_closed_form_vi_where_it_runs_and_else_at_the_map(cp_model):
    assert settled("svgd", {}, plan(cp_model))["init_from"] == "vi"
    assert settled("svgd", {}, plan(cp_model, init="random"))["init_from"] == "map"
    assert settled("svgd", {}, plan(cp_model, batch_size=10))["init_from"] == "map"
    assert settled("svgd", {"init_from": "prior"}, plan(cp_model))["init_from"] == "prior"
    tt = bt.TensorCompletion((6, 5, 4), "tt", max_rank=2)
    assert settled("svgd", {}, plan(tt))["init_from"] == "map"
    with pytest.raises(ValueError, match="init_from: 'vi' starts the particles"):
        settled("svgd", {"init_from": "vi"}, plan(tt))


@pytest.mark.parametrize("method, option", [("vi", "init_from"), ("sghmc", "max_samples"),
                                            ("svgd", "init_from")])
def test_a_local_fit_refuses_an_option_left_unsettled(method, option):
    from bayestensor.infer.runners import run_method
    with pytest.raises(ValueError, match=f"{option}: 'auto' is settled by fit"):
        run_method(METHODS[method], normal_model, options={option: "auto"}, num_samples=2,
                   num_warmup=1, progress=False, init="random")


def test_each_settled_option_is_one_a_settle_resolves():
    from bayestensor.infer.runners import ALL_METHODS
    declared = {m.name: m.settled for m in ALL_METHODS if m.settled}
    assert declared == {"vi": ("init_from",), "sghmc": ("max_samples",),
                        "svgd": ("init_from",)}
    for m in ALL_METHODS:
        assert all(m.options[name] == "auto" for name in m.settled) and (
            m.settle is not None or not m.settled)

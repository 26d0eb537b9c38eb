"""SGHMC drawing until its chains pass their convergence check (``max_samples``)."""

import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import bayestensor as bt
from bayestensor.data.regression import synthetic_cp_regression
from bayestensor.infer.sghmc import SGHMC
from bayestensor.infer.stopping import (MONITORED_ENTRIES, DrawUntilConverged,
                                        auto_max_samples, chain_check)
from bayestensor.results.convergence import entries_words, fixed_entries, monitored_entries
from bayestensor.results.posterior import Posterior


def normal_model():
    pyro.sample("x", dist.Normal(torch.zeros(2), 1.0).to_event(1))


def posterior_of(draws):
    """A Markov-chain posterior of a Pyro model with one site ``x`` of draws (chain, draw)."""
    return Posterior({"x": torch.as_tensor(draws)}, method="sghmc")


def test_check_agrees_with_the_reports_arviz_check():
    rng = np.random.default_rng(0)
    for shift in (0.0, 0.2):
        draws = rng.standard_normal((4, 300))
        draws[0] += shift
        post = posterior_of(draws)
        ours, arviz = chain_check(post, None), post.diagnostics()
        assert ours["max_rhat"] == pytest.approx(arviz["max_rhat"], rel=1e-12)
        assert ours["min_ess_bulk"] == pytest.approx(arviz["min_ess_bulk"], rel=1e-12)
        assert ours["converged"] == arviz["converged"]


def autoregressive(rng, rho, shape):
    x = rng.standard_normal(shape)
    for t in range(1, shape[1]):
        x[:, t] += rho * x[:, t - 1]
    return x


def test_completion_check_is_the_reports_and_its_entries_look_further():
    data = bt.data.synthetic_tensor((8, 8, 8), rank=2, observed=0.4, seed=0)
    model = bt.TensorCompletion(data.shape, "cp", max_rank=3)
    post = bt.fit(model, data.train, method="sghmc", num_samples=60, num_warmup=30,
                  num_chains=2, map_steps=30, seed=1, progress=False)
    entries = fixed_entries(model, MONITORED_ENTRIES)
    ours, arviz = chain_check(post, entries), post.diagnostics()
    assert ours["max_rhat"] == pytest.approx(arviz["max_rhat"], rel=1e-12)
    assert ours["min_ess_bulk"] == pytest.approx(arviz["min_ess_bulk"], rel=1e-12)
    wide = post.diagnostics(entries=entries)["variables"]
    entry_row = next(row for row in wide if row["var"] == "entry")
    assert ours["entries_max_rhat"] == pytest.approx(entry_row["max_rhat"], rel=1e-12)
    assert ours["entries_min_ess_bulk"] == pytest.approx(entry_row["min_ess_bulk"], rel=1e-12)
    assert ours["converged"] == (arviz["converged"] and ours["entries_max_rhat"] <= 1.015
                                 and ours["entries_min_ess_bulk"] >= 200)


def test_the_checked_entries_are_every_entry_of_a_small_tensor_and_a_fixed_sample_of_a_large():
    small = bt.TensorCompletion((8, 9, 10), "cp", max_rank=2)
    every = fixed_entries(small, MONITORED_ENTRIES)
    assert len(every) == 720 and len({tuple(i) for i in every}) == 720
    large = bt.TensorCompletion((30, 30, 30), "cp", max_rank=2)
    sample = fixed_entries(large, MONITORED_ENTRIES)
    assert sample.shape == (MONITORED_ENTRIES, 3) and (sample < 30).all()
    np.testing.assert_array_equal(sample, fixed_entries(large, MONITORED_ENTRIES))


def test_a_regressions_check_reads_its_predictions_at_the_training_inputs():
    """A regression's check reads the predictions at (up to 1,000 of) its training inputs,
    given back in data units: without them it read the noise precision and the coefficients'
    norm alone (and a binary regression the norm alone). The entries' R-hat equals ArviZ's on
    the same predictions."""
    data = synthetic_cp_regression((4, 3, 5), rank=2, n_train=150, n_test=10, seed=0)
    X = data.train[0] * 3.0 + 2.0  # inputs off the standard scale
    model = bt.TensorRegression(data.input_shape, max_rank=3)
    post = bt.fit(model, (X, data.train[1]), method="sghmc", num_samples=60, num_warmup=30,
                  num_chains=2, map_steps=30, seed=1, progress=False)
    inputs = fixed_entries(model, MONITORED_ENTRIES)
    np.testing.assert_allclose(inputs, X, rtol=1e-5, atol=1e-5)
    assert fixed_entries(model, 40).shape == (40, 4, 3, 5)
    ours = chain_check(post, inputs)
    assert ours["entries_count"] == 150
    rows = post.diagnostics(entries=inputs)["variables"]
    entry_row = next(row for row in rows if row["var"] == "entry")
    assert ours["entries_max_rhat"] == pytest.approx(entry_row["max_rhat"], rel=1e-12)
    assert bt.TensorRegression(data.input_shape, max_rank=3).monitor_inputs(10) is None
    with pytest.raises(ValueError, match="^k: "):
        model.monitor_inputs(0)
    post.info["convergence_checks"] = [{"draws": post.num_draws, **ours}]
    assert "over the 150 monitored predictions at training inputs" in entries_words(
        monitored_entries(post))


def test_the_rule_extends_slow_chains_and_stops_converged_apart_or_full_ones():
    rng = np.random.default_rng(1)
    chains = {"mixed": rng.standard_normal((4, 400)),
              "slow": autoregressive(rng, 0.9, (4, 400)),
              "apart": rng.standard_normal((4, 400)) + np.arange(4)[:, None] * 3.0}
    for name, draws in chains.items():
        log = []
        rule = DrawUntilConverged(lambda d, info, state: posterior_of(np.stack(d, 1)),
                                  num_samples=400, max_samples=1000, thin=3, model=None,
                                  log=log)
        more = rule(list(draws.T), None)
        assert more == {"mixed": 0, "slow": 200 * 3, "apart": 200 * 3}[name], (name, log)
        assert log[0]["draws"] == 400
    # apart at two checks in a row: stopped at the second (one check apart could be slow chains)
    log = []
    rule = DrawUntilConverged(lambda d, info, state: posterior_of(np.stack(d, 1)),
                              num_samples=400, max_samples=1000, thin=3, model=None, log=log)
    apart = rng.standard_normal((4, 600)) + np.arange(4)[:, None] * 3.0
    assert rule(list(apart[:, :400].T), None) == 200 * 3
    assert rule(list(apart.T), None) == 0 and [c["draws"] for c in log] == [400, 600]
    # apart, then within RHAT_APART as the chains forget their starts: the run goes on
    log = []
    rule = DrawUntilConverged(lambda d, info, state: posterior_of(np.stack(d, 1)),
                              num_samples=400, max_samples=1000, thin=3, model=None, log=log)
    joining = np.concatenate([rng.standard_normal((4, 400)) + np.arange(4)[:, None] * 0.4,
                              rng.standard_normal((4, 200))], axis=1)
    assert rule(list(joining[:, :400].T), None) == 200 * 3
    assert rule(list(joining.T), None) == 200 * 3
    assert log[0]["max_rhat"] > 1.1 > log[1]["max_rhat"]
    full = DrawUntilConverged(lambda d, info, state: posterior_of(np.stack(d, 1)), 400, 400, 1,
                              None, [])
    assert full(list(chains["slow"].T), None) == 0
    last = DrawUntilConverged(lambda d, info, state: posterior_of(np.stack(d, 1)), 400, 500, 1,
                              None, [])
    assert last(list(chains["slow"].T), None) == 100  # up to max_samples, not a whole block


def test_the_draws_stop_at_the_memory_bound_and_the_last_check_reads_them_all(monkeypatch):
    """Slow chains would go on to max_samples; with room for 700 draws they stop there, with a
    last check on all 700, which says why. The bound never cuts num_samples. (Chains this
    slow read as apart, which stops the rule: that limit is lifted here.)"""
    monkeypatch.setattr("bayestensor.infer.stopping.RHAT_APART", float("inf"))
    rng = np.random.default_rng(2)
    slow = autoregressive(rng, 0.95, (4, 1000))
    per_draw = slow[:, 0].nbytes  # 4 chains x 8 bytes
    monkeypatch.setattr("bayestensor.infer.stopping.MAX_KEPT_BYTES", 700 * per_draw)
    log = []
    rule = DrawUntilConverged(lambda d, info, state: posterior_of(np.stack(d, 1)),
                              num_samples=400, max_samples=1000, thin=1, model=None, log=log)
    assert rule(list(slow[:, :400].T), None) == 200
    assert rule(list(slow[:, :600].T), None) == 100  # to the bound, not a whole block
    assert rule(list(slow[:, :700].T), None) == 0
    assert [c["draws"] for c in log] == [400, 600, 700]
    assert log[-1]["stopped"] == "memory" and log[-1]["kept_bytes"] == 700 * per_draw
    whole = chain_check(posterior_of(slow[:, :700]))
    assert log[-1]["max_rhat"] == pytest.approx(whole["max_rhat"], rel=1e-12)
    monkeypatch.setattr("bayestensor.infer.stopping.MAX_KEPT_BYTES", 10 * per_draw)
    log = []
    rule = DrawUntilConverged(lambda d, info, state: posterior_of(np.stack(d, 1)),
                              num_samples=400, max_samples=1000, thin=1, model=None, log=log)
    assert rule(list(slow[:, :400].T), None) == 0 and log[-1]["stopped"] == "memory"


def test_fit_says_when_the_memory_bound_stopped_its_draws(monkeypatch, capsys):
    from bayestensor.report.sections import diagnostics_section

    per_draw = 4 * (2 + 1 + 1) * 4  # chains x (positions, potential, gradient norm) x float32
    monkeypatch.setattr("bayestensor.infer.stopping.MAX_KEPT_BYTES", 75 * per_draw)
    with pytest.warns(bt.infer.ChainsNotConvergedWarning,
                      match=r"stopped there, holding 0\.00 GiB, because more would pass"):
        post = bt.fit(normal_model, method="sghmc", num_samples=50, num_warmup=10,
                      num_chains=4, max_samples=2000, lr=1e-4, seed=0, progress=False)
    assert post.num_draws == 75 and post.info["convergence_checks"][-1]["stopped"] == "memory"
    assert "stopped at 75 because more draws would hold more than" in (
        diagnostics_section(post)["markdown"])
    from bayestensor.cli.options import convergence, echo_convergence

    echo_convergence(convergence(post))  # the command line's chains line says it too
    assert "(75 draws per chain, drawn until converged; stopped there, holding 0.00 GiB, at " \
        "the memory bound on kept draws" in capsys.readouterr().out


def test_sghmc_draws_until_converged_and_records_its_checks():
    post = bt.fit(normal_model, method="sghmc", num_samples=50, num_warmup=50, num_chains=4,
                  max_samples=2000, seed=0, progress=False)
    checks = post.info["convergence_checks"]
    assert [c["draws"] for c in checks] == list(range(50, post.num_draws + 1, 25))
    assert checks[-1]["converged"] and not any(c["converged"] for c in checks[:-1])
    assert post.num_draws < 2000
    assert post.diagnostics()["converged"]  # the report's check, by ArviZ, agrees
    fixed = bt.fit(normal_model, method="sghmc", num_samples=50, num_warmup=50, num_chains=4,
                   seed=0, progress=False)
    assert fixed.num_draws == 50 and fixed.info["max_samples"] is None
    torch.testing.assert_close(post["x"][:, :50], fixed["x"], rtol=0, atol=0)


def assert_same_checks(got: list, expected: list):
    assert [c["draws"] for c in got] == [c["draws"] for c in expected]
    for a, b in zip(got, expected):
        assert a.get("stopped") == b.get("stopped")
        numbers = [k for k in b if k != "stopped"]
        assert {k: a[k] for k in numbers} == pytest.approx({k: b[k] for k in numbers}, rel=1e-12)


def test_a_completion_run_stops_at_max_samples_and_resumes_past_num_samples(tmp_path,
                                                                             interrupted_at,
                                                                             monkeypatch):
    """Two chains of 50 draws cannot reach an ESS of 200: the run goes on in blocks of 10 to
    max_samples. Interrupted after num_samples, it resumes to the uninterrupted draws. (Chains
    this short can be 'apart', which stops the rule: that limit is lifted here.)"""
    from bayestensor.infer import RunInterrupted

    monkeypatch.setattr("bayestensor.infer.stopping.RHAT_APART", float("inf"))
    data = bt.data.synthetic_tensor((8, 8, 8), rank=2, observed=0.4, seed=0)
    model = bt.TensorCompletion(data.shape, "cp", max_rank=3)
    kw = dict(method="sghmc", num_samples=20, num_warmup=10, num_chains=2, map_steps=20,
              max_samples=np.int64(50), seed=3, progress=False)  # a NumPy integer counts too
    full = bt.fit(model, data.train, **kw)
    assert full.num_draws == 50
    assert [c["draws"] for c in full.info["convergence_checks"]] == [20, 30, 40, 50]
    assert full.info["convergence_checks"][-1]["stopped"] == "max_samples"
    entries = fixed_entries(full.model, MONITORED_ENTRIES)
    for check in full.info["convergence_checks"]:  # block by block = all the draws at once
        first = Posterior({k: v[:, :check["draws"]] for k, v in full.samples.items()},
                          method="sghmc", model=full.model)
        assert chain_check(first, entries) == pytest.approx(
            {k: v for k, v in check.items() if k not in ("draws", "stopped")}, rel=1e-12)
    ckpt = tmp_path / "run.ckpt"
    with interrupted_at(SGHMC, 45), pytest.raises(RunInterrupted):
        bt.fit(model, data.train, checkpoint=ckpt, checkpoint_every=5, **kw)
    resumed = bt.fit(model, data.train, resume=ckpt, checkpoint=ckpt, **kw)
    assert resumed.num_draws == 50
    for name in ("noise_precision", "X.factor0"):
        torch.testing.assert_close(resumed.samples[name], full.samples[name], rtol=0, atol=0)
    # the checks before the interrupt are made again, the cut block is finished first
    assert_same_checks(resumed.info["convergence_checks"], full.info["convergence_checks"])


def test_a_run_resumed_mid_block_stops_where_the_uninterrupted_one_does(tmp_path,
                                                                         interrupted_at):
    from bayestensor.infer import RunInterrupted

    kw = dict(method="sghmc", num_samples=50, num_warmup=50, num_chains=4, max_samples=2000,
              seed=0, progress=False)
    full = bt.fit(normal_model, **kw)
    points = [c["draws"] for c in full.info["convergence_checks"]]
    assert len(points) >= 3  # the uninterrupted run checks at 50, 75, 100, ...
    ckpt = tmp_path / "run.ckpt"
    with interrupted_at(SGHMC, 50 + points[1] + 10), pytest.raises(RunInterrupted):
        bt.fit(normal_model, checkpoint=ckpt, checkpoint_every=1, **kw)  # 10 draws past a check
    resumed = bt.fit(normal_model, resume=ckpt, checkpoint=ckpt, **kw)
    assert resumed.num_draws == full.num_draws
    assert_same_checks(resumed.info["convergence_checks"], full.info["convergence_checks"])
    torch.testing.assert_close(resumed["x"], full["x"], rtol=0, atol=0)


def test_auto_draws_until_converged_only_where_the_check_applies():
    model = bt.TensorCompletion((6, 6, 6), max_rank=2)
    assert auto_max_samples(model, None, 1000, 4) == 4000
    assert auto_max_samples(model, 1000, 1000, 4) is None  # a number given is drawn exactly
    assert auto_max_samples(model, None, 1000, 1) is None  # one chain: R-hat cannot compare
    assert auto_max_samples(normal_model, None, 1000, 4) == 4000  # a Pyro model's sites


@pytest.mark.parametrize("value,match", [(0, "max_samples"), ("many", "max_samples"),
                                         (10, "at least num_samples")])
def test_bad_max_samples_is_refused_before_any_work(value, match):
    with pytest.raises(ValueError, match=match):
        bt.fit(normal_model, method="sghmc", num_samples=20, max_samples=value, progress=False)


def test_the_report_says_where_the_rule_checked_and_why_it_stopped(monkeypatch):
    from bayestensor.report.sections import diagnostics_section

    data = bt.data.synthetic_tensor((8, 8, 8), rank=2, observed=0.4, seed=0)
    model = bt.TensorCompletion(data.shape, "cp", max_rank=3)
    kw = dict(method="sghmc", num_samples=20, num_warmup=10, num_chains=2, map_steps=20,
              max_samples=40, seed=3, progress=False)
    apart = diagnostics_section(bt.fit(model, data.train, **kw))
    assert apart["numbers"]["convergence_checks"][0]["draws"] == 20
    assert "checked at 20, 30 draws per chain; stopped at 30 because the chains were apart" in (
        apart["markdown"])
    monkeypatch.setattr("bayestensor.infer.stopping.RHAT_APART", float("inf"))
    full = diagnostics_section(bt.fit(model, data.train, **kw))["markdown"]
    assert "checked at 20, 30, 40 draws per chain; stopped at 40 because it reached max_samples" in (
        full)


def test_the_command_lines_convergence_line_gives_the_draws_taken(capsys):
    from bayestensor.cli.options import convergence, echo_convergence

    data = bt.data.synthetic_tensor((8, 8, 8), rank=2, observed=0.4, seed=0)
    model = bt.TensorCompletion(data.shape, "cp", max_rank=3)
    kw = dict(method="sghmc", num_samples=20, num_warmup=10, num_chains=2, map_steps=20,
              seed=3, progress=False)
    check = convergence(bt.fit(model, data.train, max_samples=40, **kw))
    echo_convergence(check)
    assert "(30 draws per chain, drawn until converged)" in capsys.readouterr().out
    assert "draws_until_converged" not in convergence(bt.fit(model, data.train, **kw))


def test_a_run_resumed_past_its_last_step_extends_from_where_it_is():
    from bayestensor.infer.driver import Run

    asked = []

    def extend(draws, state):
        asked.append(len(draws))
        return 10 if len(draws) < 40 else 0

    run = Run(lambda state, t: (state, torch.zeros(1)), lambda state, t: {"t": t}, 20,
              lambda draws, info, state: draws, lambda state: "", torch.Generator(), object,
              progress=False, extend=extend)
    draws = run.run(None, start=25, draws=[{"t": t} for t in range(25)])  # resumed at step 25
    assert asked == [25, 35, 45] and len(draws) == 45  # 10 steps from 25, not to 20 + 10


def test_fit_warns_when_its_chains_fail_their_check():
    """On pure noise the CP chains at the defaults are apart (R-hat 1.41 after drawing on to
    1,500 draws, where NUTS's chains of the same posterior read 1.09): ``fit`` warns with the
    last check's numbers and the advice for chains apart. A run of 50 draws is told to draw
    more. Chains that pass (a Gaussian mean) do not warn."""
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(12, 10, 8))
    noise[rng.random(noise.shape) < 0.5] = np.nan
    model = bt.TensorCompletion(noise.shape, "cp", max_rank=5)
    obs = bt.Observations.from_dense(noise)
    with pytest.warns(bt.infer.ChainsNotConvergedWarning) as caught:
        post = bt.fit(model, obs, method="sghmc", seed=0, progress=False)
    last = post.info["convergence_checks"][-1]
    assert not last["converged"] and last["max_rhat"] > 1.1
    message = str(caught[-1].message)
    assert f"after {post.num_draws:,} draws each: max R-hat {last['max_rhat']:.3f}" in message
    assert f"max R-hat {last['entries_max_rhat']:.3f} (wanted <= 1.015)" in message
    assert "the chains sit in different regions" in message

    with pytest.warns(bt.infer.ChainsNotConvergedWarning, match="50 draws per chain are too few"):
        bt.fit(model, obs, method="sghmc", num_samples=50, num_warmup=50, num_chains=2,
               seed=0, progress=False)

    with warnings.catch_warnings():
        warnings.simplefilter("error", bt.infer.NotConvergedWarning)
        post = bt.fit(normal_model, method="sghmc", seed=0, progress=False)
    assert post.diagnostics()["converged"]


def product_model(y):
    a = pyro.sample("a", dist.Normal(0.0, 2.0))
    b = pyro.sample("b", dist.Normal(0.0, 2.0))
    mean = pyro.deterministic("m", a * b)
    with pyro.plate("n", len(y)):
        pyro.sample("y", dist.Normal(mean, 0.5), obs=y)


def test_a_symmetric_pyro_model_is_pointed_to_what_its_data_identify():
    """``y ~ N(a b, 0.5)``: the signs of ``a`` and ``b`` are free, so their chains disagree
    (R-hat 2.4) while ``a b`` agrees. The warning says so and names the check to run;
    ``diagnostics`` takes the ``pyro.deterministic`` site and agrees with ArviZ on it."""
    import arviz as az

    y = 1.5 + 0.5 * torch.randn(60, generator=torch.Generator().manual_seed(0))
    with pytest.warns(bt.infer.ChainsNotConvergedWarning, match="symmetry of the model"):
        post = bt.fit(product_model, method="sghmc", model_args=(y,), seed=0, progress=False)
    check = post.diagnostics(var_names=["a", "m"])
    rhat = {row["var"]: row["max_rhat"] for row in check["variables"]}
    assert rhat["a"] > 1.5
    product = post.to_arviz().posterior["m"]
    assert rhat["m"] == pytest.approx(float(az.rhat(product)["m"]), rel=1e-9)
    assert rhat["m"] < 1.05
    with pytest.raises(ValueError, match="var_names: \\['zz'\\] are not sites"):
        post.diagnostics(var_names=["zz"])


def test_the_report_and_the_command_line_say_when_the_monitored_entries_fail(capsys,
                                                                          monkeypatch):
    """The rule also checks some 1,000 predicted entries (all 512 of an 8^3 tensor); the
    report and the command line read a few key variables only, and said "converged" or "draw
    more samples" for a run that stopped because its chains were apart on the entries. They
    now give the entries' numbers from the last check, fail the verdict on them, and advise
    from the worst R-hat."""
    from bayestensor.cli.options import convergence, echo_convergence
    from bayestensor.report.sections import diagnostics_section

    data = bt.data.synthetic_tensor((8, 8, 8), rank=2, observed=0.4, seed=0)
    model = bt.TensorCompletion(data.shape, "cp", max_rank=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = bt.fit(model, data.train, method="sghmc", num_samples=20, num_warmup=10,
                      num_chains=2, map_steps=20, max_samples=40, seed=3, progress=False)
    last = post.info["convergence_checks"][-1]
    assert last["entries_count"] == 512 and last["draws"] == post.num_draws
    last.update(entries_max_rhat=1.25, entries_min_ess_bulk=12.0, entries_converged=False,
                stopped="apart")
    check = convergence(post)
    assert check["monitored_entries"]["max_rhat"] == 1.25 and not check["converged"]
    echo_convergence(check)
    line = capsys.readouterr().out
    assert "max R-hat 1.250 (wanted <= 1.015) and min bulk ESS 12 over the 512 monitored " \
        "entries" in line
    section = diagnostics_section(post)
    assert "over the 512 monitored entries" in " ".join(section["warnings"])
    worst = max(last["max_rhat"], 1.25)
    assert f"apart (R-hat above 1.1, or none; {worst:.3f} at the last check)" in (
        section["markdown"])
    assert section["numbers"]["monitored_entries"]["converged"] is False
    # key variables that pass (a threshold they all meet), entries that do not: still failed
    monkeypatch.setattr("bayestensor.report.sections.RHAT_MAX", 100.0)
    monkeypatch.setattr("bayestensor.report.sections.ESS_PER_CHAIN_MIN", 0)
    warned = " ".join(diagnostics_section(post)["warnings"])
    assert "Chains have not converged on the predicted entries: max R-hat 1.250" in warned
    check.update(max_rhat=1.005, draws=600)  # the advice reads the entries' 1.25
    echo_convergence(check)
    assert "NOT converged" in (line := capsys.readouterr().out)
    assert "the chains sit in different regions" in line

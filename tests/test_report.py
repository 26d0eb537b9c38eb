"""Uncertainty reports: completion (SGHMC, SVGD, unconverged), network and dynamics run dirs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import arviz as az
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import bayestensor as bt
import tensorly as tl
from bayestensor.data import tensors as datasets
from bayestensor.io import versions
from bayestensor.cli import main
from bayestensor.report import read_run, write_heldout, write_run

CHROMIUM = Path("/usr/bin/chromium")
SHAPE = (12, 12, 12)


def _data():
    return datasets.synthetic_tensor(SHAPE, rank=2, format="cp", snr_db=10, observed=0.3, seed=0)


def _completion_run(tmp, method, **opts):
    data = _data()
    model = bt.TensorCompletion(SHAPE, format="cp", max_rank=5, prior="gamma")
    post = bt.fit(model, data.train, method=method, seed=0, progress=False, **opts)
    post.save(tmp / "posterior.pt")
    write_run(tmp, "completion", settings={"method": method, "seed": 0},
              data={"shape": list(SHAPE), "observed": len(data.train)})
    write_heldout(tmp, indices=data.test.indices.numpy(), truth=data.test.values.numpy(),
                  noisy=data.test_noisy.values.numpy())
    return data, post


@pytest.fixture(scope="module")
def sghmc_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sghmc")
    data, post = _completion_run(tmp, "sghmc", num_samples=60, num_warmup=60, num_chains=2)
    result = CliRunner().invoke(main, ["report", str(tmp)])
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output
    return tmp, data, _load(tmp)


def _load(tmp):
    return bt.Posterior.load(tmp / "posterior.pt")


def test_completion_report_numbers_match_posterior(sghmc_run):
    tmp, data, post = sghmc_run
    rep = json.loads((tmp / "report.json").read_text())
    secs = rep["sections"]
    assert list(secs) == ["settings", "diagnostics", "rank", "calibration", "predictions"]
    # held-out error and coverage, recomputed from the posterior
    pred = post.predict(data.test.indices)
    assert secs["predictions"]["numbers"]["heldout_relative_error"] == pytest.approx(
        data.relative_error(pred.mean), rel=1e-9)
    noisy = data.test_noisy.values.numpy()
    cal = secs["calibration"]["numbers"]
    assert cal["levels"] == [0.5, 0.8, 0.9, 0.95]
    for lv, c in zip(cal["levels"], cal["coverage"]):  # oracle: the quantile interval itself
        lo, hi = pred.interval(lv)
        assert c == pytest.approx(np.mean((noisy >= lo) & (noisy <= hi)), abs=1e-12)
    # R-hat / ESS: key variables recomputed independently with ArviZ
    c, d = post.num_chains, post.num_draws
    model = post.model
    norm = model.low_rank(post.flat_samples()).norm().double().numpy().reshape(c, d)
    # the oracle of the norm: TensorLy's dense reconstruction of one draw
    dense = tl.cp_to_tensor(post.model.low_rank(post.flat_samples()).sample(5).to_tensorly())
    assert norm.reshape(-1)[5] == pytest.approx(float(np.linalg.norm(np.asarray(dense))), rel=1e-5)
    key = {"noise_precision": post["noise_precision"].double().numpy(),
           "tensor_norm": norm,
           "entry": post.predict(data.test.indices[:4]).draws.double().numpy().reshape(c, d, -1)}
    columns = [x for v in key.values() for x in np.moveaxis(v.reshape(c, d, -1), -1, 0)]
    diag = secs["diagnostics"]["numbers"]
    assert diag["max_rhat"] == pytest.approx(max(float(az.rhat(x)) for x in columns), rel=1e-6)
    assert diag["min_ess_bulk"] == pytest.approx(min(float(az.ess(x, method="bulk")) for x in columns),
                                                 rel=1e-6)
    assert set(secs["diagnostics"]["figures"]) == {"trace.png", "rank_plot.png"}
    # rank posterior
    rp = post.effective_rank()
    assert secs["rank"]["numbers"]["mode"] == rp.mode().tolist()
    assert secs["rank"]["numbers"]["distribution"][0] == {str(k): v for k, v in rp.distribution(0).items()}
    assert secs["rank"]["numbers"]["below_floor"] == 0.0  # a rank-3 signal: no draw at rank 0
    assert "times the data's sd has rank 0" in (tmp / "report.md").read_text()
    # run metadata
    run = rep["run"]
    assert run["kind"] == "completion" and run["data"]["shape"] == list(SHAPE)
    assert set(run["versions"]) == set(versions())  # bayestensor.io.versions: one helper
    assert {"python", "torch", "pyro", "bayestensor", "arviz", "tensorly"} <= set(run["versions"])
    # HTML: self-contained, one section per key, figures embedded
    html = (tmp / "report.html").read_text()
    for key in secs:
        assert f'id="{key}"' in html
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert html.count("data:image/png;base64,") == sum(len(s["figures"]) for s in secs.values())
    md = (tmp / "report.md").read_text()
    assert "## Calibration" in md and (tmp / "report_files" / "trace.png").exists()


def test_warning_banner_for_unconverged_and_diverged_chains(tmp_path):
    # a deliberately short run: 2 chains x 20 draws (20 burn-in steps) from the default start
    _, post = _completion_run(tmp_path, "sghmc", num_samples=20, num_chains=2)
    paths = bt.report(tmp_path)
    rep = json.loads(paths["json"].read_text())
    diag = rep["sections"]["diagnostics"]["numbers"]
    assert diag["max_rhat"] > 1.01 and diag["min_ess_bulk"] < 200
    assert any("not converged" in w for w in rep["warnings"])
    assert any("effective sample size" in w for w in rep["warnings"])
    html = paths["html"].read_text()
    banner = html.index('class="warn"')
    assert banner < html.index('<section'), "the warning must be above every section"
    assert "not converged" in html[banner:html.index("<section")]
    # a diverged run says so too
    post.info["diverged_at_step"] = 17
    post.info["diverged_chains"] = [1]
    paths = bt.report(post, tmp_path / "diverged")
    rep = json.loads(paths["json"].read_text())
    assert any("diverged" in w and "17" in w for w in rep["warnings"])


def test_report_of_a_pyro_models_posterior(tmp_path):
    """``bt.report`` of a user's Pyro model, fresh and saved then loaded: it raised ArviZ's
    "Can not extract posterior" (no built-in key quantities to check). Now its sites are
    checked, with R-hat equal to ArviZ's on the same draws, and plotted, the kind is "model",
    and no text speaks of low-rank tensors."""
    import pyro
    import pyro.distributions as dist

    def model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        scale = pyro.sample("scale", dist.HalfNormal(5.0))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(mu, scale), obs=y)

    y = torch.randn(30, generator=torch.Generator().manual_seed(0)) + 3
    post = bt.fit(model, method="sghmc", model_args=(y,), num_samples=200, seed=0,
                  progress=False)
    post.save(tmp_path / "posterior.pt")
    for source, out in ((post, tmp_path / "fresh"),
                        (bt.Posterior.load(tmp_path / "posterior.pt"), tmp_path / "loaded")):
        rep = json.loads(bt.report(source, out)["json"].read_text())
        assert read_run(out)["kind"] == "model"
        diag = rep["sections"]["diagnostics"]
        rhat = {row["var"]: row["max_rhat"] for row in diag["numbers"]["key_variables"]}
        assert rhat == pytest.approx({k: float(az.rhat(post.samples[k].double().numpy()))
                                      for k in ("mu", "scale")})
        assert {f for f in (out / "report_files").iterdir()} >= {
            out / "report_files" / "trace.png", out / "report_files" / "rank_plot.png"}
        assert not any("plotting failed" in w for w in rep["warnings"])
        text = (out / "report.md").read_text()
        assert "every site of the model" in text
        assert "low-rank" not in text and "factors are identified" not in text
    point = bt.fit(model, method="map", model_args=(y,), seed=0, progress=False)
    rep = json.loads(bt.report(point, tmp_path / "map")["json"].read_text())
    assert any(w.startswith("MAP: a single point estimate") and "rank" not in w
               for w in rep["warnings"])


def test_svgd_report_marks_rhat_not_applicable(tmp_path):
    _completion_run(tmp_path, "svgd", num_samples=8, num_steps=60)
    rep = json.loads(bt.report(tmp_path)["json"].read_text())
    diag = rep["sections"]["diagnostics"]["numbers"]
    assert diag["rhat"] == "not applicable"
    assert diag["diversity"]["particles"] == 8 and diag["diversity"]["mean_pairwise_distance"] > 0
    assert not any("R-hat" in w for w in rep["warnings"])
    html = (tmp_path / "report.html").read_text()
    assert "not applicable" in html and 'id="no-warnings"' in html


def test_vi_report_says_how_the_fit_ended(tmp_path):
    (tmp_path / "closed").mkdir()
    (tmp_path / "short").mkdir()
    _completion_run(tmp_path / "closed", "vi", num_samples=50)  # CP, gamma: the closed form
    rep = json.loads(bt.report(tmp_path / "closed")["json"].read_text())
    fit = rep["sections"]["diagnostics"]["numbers"]["vi_fit"]
    post = bt.Posterior.load(tmp_path / "closed" / "posterior.pt")
    starts = fit.pop("noise_starts")
    assert fit == {"closed_form": True, "sweeps": post.info["vi_sweeps"], "converged": True,
                   "final_elbo": pytest.approx(post.info["final_elbo"])}
    assert starts.keys() == {"point", "null"}  # a rank-3 tensor: far above the null fit
    assert starts["point"] == pytest.approx(post.info["final_elbo"])
    assert starts["point"] > starts["null"] + 100
    assert not any("VI" in w for w in rep["warnings"])
    _completion_run(tmp_path / "short", "vi", num_samples=50, closed_form=False, num_steps=5,
                    map_steps=20)
    rep = json.loads(bt.report(tmp_path / "short")["json"].read_text())
    fit = rep["sections"]["diagnostics"]["numbers"]["vi_fit"]
    assert fit["closed_form"] is False and fit["converged"] is False
    assert any(w.startswith("VI (stochastic-gradient ELBO ascent) did not converge")
               for w in rep["warnings"])
    from bayestensor.report.sections import _vi_fit

    fit, note = _vi_fit({"vi_closed_form": True, "interrupted_at_step": 3})
    assert fit["converged"] is False and note.startswith("VI was interrupted after 3 sweeps")
    two = {"vi_closed_form": True, "vi_sweeps": 40, "vi_converged": True,
           "vi_noise_starts": {"point": -401.2, "residual": -18.9}}
    fit, note = _vi_fit(two)
    assert fit["noise_starts"] == two["vi_noise_starts"]
    assert note.endswith("ELBO -401.2 from the first start, -18.9 from the second; the second "
                         "was kept.")
    null = {**two, "vi_noise_starts": {"point": -3475.4, "null": -3426.2}}
    assert _vi_fit(null)[1].endswith(
        "The fit from the start kept slices at an ELBO of -3475.4, below the -3426.2 of the fit "
        "without a low-rank part, which was kept: the VI finds no low-rank structure here.")
    three = {**two, "vi_noise_starts": {"point": -401.2, "residual": -18.9, "null": -10.0}}
    assert "; the fit without a low-rank part was kept. The fit from the start kept slices at " \
        "an ELBO of -18.9" in _vi_fit(three)[1]
    assert _vi_fit({**two, "vi_noise_starts": {"point": -40.0, "null": -400.0}})[1] == \
        "VI (coordinate ascent in closed form) converged in 40 sweeps."



def test_report_says_what_map_hold_auto_chose(sghmc_run):
    """The chains started at a MAP chosen on a validation split: the report names the choice
    and the errors it was chosen by, as the posterior recorded them."""
    tmp, _, post = sghmc_run
    choice = post.info["map_hold_auto"]
    rep = json.loads((tmp / "report.json").read_text())
    assert rep["sections"]["diagnostics"]["numbers"]["map_hold_auto"] == choice
    text = (tmp / "report.md").read_text()
    mse = choice["validation_mse"]
    assert set(mse) == {"none", "hold"}  # CP: no residual candidate
    assert f"none {mse['none']:.3g}, hold {mse['hold']:.3g}" in text
    from bayestensor.report.sections import _map_choice

    assert _map_choice(choice) in text
    residual = {"chosen": None, "noise_start": "residual", "validation": 0.2, "margin": 0.05,
                "validation_mse": {"none": 1.17, "hold": 1.19, "residual": 0.016}}
    assert _map_choice(residual) == (
        "The MAP was chosen by fits to 80% of the observations (map_hold 'auto'): the noise "
        "precision started at the start's residual (mean squared error on the other 20%: none "
        "1.17, hold 1.19, residual 0.016; a candidate must beat the plain fit by 5%).")
    held = {**residual, "chosen": {"noise_precision": 0.1}, "noise_start": "variance"}
    assert "held at its start while the prior pruned" in _map_choice(held)
    assert f"the mean of the fitted observations {choice['mean_mse']:.3g}" in text
    assert "worse than their mean" not in text  # a rank-3 signal: the fits beat the mean
    noise = {**held, "validation_mse": {"none": 1.53, "hold": 1.77}, "mean_mse": 1.07}
    assert _map_choice(noise).endswith(
        "; the mean of the fitted observations 1.07; a candidate must beat the plain fit by 5%)."
        " Every fit predicted those observations worse than their mean does: the MAP fitted "
        "noise with slices the data do not support.")
    assert _map_choice({"chosen": None, "noise_start": "variance", "validation_mse": None}) == ""
    assert _map_choice(None) == ""


NETWORK = {
    "layers": [
        {"name": "fc1", "format": "tt", "in_shape": [4, 7, 4, 7], "out_shape": [4, 4, 4, 4],
         "ranks_before": [1, 8, 8, 8, 1], "ranks_after": [1, 3, 5, 2, 1], "dense_params": 200960,
         "compressed_params": 1520, "ratio": 132.2},
        {"name": "fc2", "format": "cp", "in_shape": [16, 16], "out_shape": [10], "ranks_before": [10],
         "ranks_after": [4], "dense_params": 2570, "compressed_params": 178, "ratio": 14.44},
    ],
    "linear_ratio": 116.1, "model_ratio": 98.7,
    "metrics": {"dense": {"accuracy": 0.981, "nll": 0.064, "ece": 0.011},
                "sghmc": {"accuracy": 0.975, "nll": 0.081, "ece": 0.008}},
    "reliability": {"sghmc": {"bin_edges": [0.5, 0.75, 1.0], "accuracy": [0.62, 0.98],
                              "confidence": [0.65, 0.97], "counts": [40, 960]}},
    "shift": {"description": "rotated digits", "sghmc": {"entropy_in": 0.1, "entropy_shifted": 0.9,
                                                         "accuracy_shifted": 0.41}},
    "train_seconds": {"dense": 12.0, "sghmc": 40.5},
}


def test_network_report(tmp_path):
    (tmp_path / "network.json").write_text(json.dumps(NETWORK))
    write_run(tmp_path, "network", settings={"method": "sghmc"}, data={"dataset": "mnist"})
    rep = json.loads(bt.report(tmp_path)["json"].read_text())
    assert list(rep["sections"]) == ["settings", "network"]
    num = rep["sections"]["network"]["numbers"]
    assert [lay["ratio"] for lay in num["layers"]] == [132.2, 14.44]
    assert [lay["ranks_after"] for lay in num["layers"]] == [[1, 3, 5, 2, 1], [4]]
    assert num["model_ratio"] == 98.7 and num["linear_ratio"] == 116.1
    assert num["metrics"] == NETWORK["metrics"] and num["shift"]["sghmc"]["accuracy_shifted"] == 0.41
    html = (tmp_path / "report.html").read_text()
    assert "132.2" in html and "rotated digits" in html and "0.975" in html
    assert len(rep["sections"]["network"]["figures"]) == 3


@pytest.fixture(scope="module")
def dynamics_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dyn")
    result = CliRunner().invoke(main, ["dynamics", "fa-vs-gd", "--seeds", "3", "--n", "8", "--m", "6",
                                       "--rank", "3", "--r-low", "2", "--r-high", "3", "--steps", "40",
                                       "--no-bayes", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def test_dynamics_report(dynamics_run):
    out = dynamics_run
    assert read_run(out)["settings"]["study"] == "fa_vs_gd"
    rep = json.loads(bt.report(out)["json"].read_text())
    assert list(rep["sections"]) == ["settings", "dynamics"]
    num = rep["sections"]["dynamics"]["numbers"]
    results = json.loads((out / "results.json").read_text())
    assert set(num) == {"under", "over"}
    for tag in ("under", "over"):
        assert num[tag]["success"] == results[tag]["success_summary"]
        assert num[tag]["summary"] == results[tag]["summary"]
        assert num[tag]["learners"] == ["GD", "FA", "FA*"]
    # a dynamics folder without run.json (older runs) gets one written
    (out / "run.json").unlink()
    assert read_run(out)["kind"] == "dynamics"
    assert len(rep["sections"]["dynamics"]["figures"]) == 4


def _screenshot(html: Path, tmp: Path) -> tuple[np.ndarray, str]:
    shot = tmp / "shot.png"
    proc = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0",
         f"--screenshot={shot}", "--window-size=1200,2000", html.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert shot.exists(), proc.stderr[-2000:]
    import matplotlib.image as mpimg

    return mpimg.imread(shot), proc.stderr


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_html_renders_in_headless_chromium(sghmc_run, dynamics_run, tmp_path):
    for i, run_dir in enumerate((sghmc_run[0], dynamics_run)):
        img, log = _screenshot(run_dir / "report.html", tmp_path / str(i))
        assert img.shape[0] >= 1000 and img[..., :3].std() > 0.05, "blank page"
        # not mostly a single colour: text, tables and figures are drawn
        assert (img[..., :3].mean(-1) < 0.5).mean() > 0.005
        console = [ln for ln in log.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]
        assert not console, console


def test_demo_and_complete_write_report_by_default(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["demo", "--method", "map", "--out", str(tmp_path / "demo"), "--quiet"])
    assert res.exit_code == 0, res.output
    html = tmp_path / "demo" / "report.html"
    assert f"report: {html}" in res.output and html.exists()
    rep = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert rep["run"]["settings"]["command"] == "demo" and "calibration" in rep["sections"]
    # MAP: intervals are noise-only, and a found rank, not a rank posterior
    assert any(w.startswith("MAP: a single point estimate") and "--method sghmc" in w
               for w in rep["warnings"])
    assert rep["sections"]["calibration"]["numbers"]["noise_only_intervals"] is True
    rank = rep["sections"]["rank"]
    assert rank["numbers"]["point_estimate"] is True and "distribution" not in rank["numbers"]
    post = bt.Posterior.load(tmp_path / "demo" / "posterior.pt")
    assert rank["numbers"]["found_rank"] == post.effective_rank().mode().tolist()
    html = html.read_text()
    assert "Rank found (point estimate)" in html and "noise-only" in html
    assert "Rank posterior" not in html
    # image completion: observed with NaN -> image.npz -> mean and uncertainty map in the report
    rng = np.random.default_rng(0)
    img = np.clip(rng.random((10, 1, 1)) * rng.random((1, 10, 1)) + np.zeros((1, 1, 3)), 0, 1)
    obs = np.where(rng.random(img.shape) < 0.6, img, np.nan)
    np.save(tmp_path / "img.npy", obs)
    res = runner.invoke(main, ["complete", str(tmp_path / "img.npy"), "--out", str(tmp_path / "img"),
                               "--method", "map", "--max-rank", "3", "--quiet", "--no-figures",
                               "--holdout", "0.2"])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "img" / "report.json").read_text())
    assert "image_panel.png" in rep["sections"]["predictions"]["figures"]
    n_obs = int(np.isfinite(obs).sum())
    n_held = round(0.2 * n_obs)
    assert rep["run"]["data"]["observed"] == n_obs - n_held and rep["run"]["data"]["heldout"] == n_held
    # the held-out entries: the split at the seed, scored against the observed values
    _, test = bt.Observations.from_dense(obs).split(0.2, seed=0)
    held = np.load(tmp_path / "img" / "heldout.npz")
    np.testing.assert_array_equal(held["indices"], test.indices.numpy())
    np.testing.assert_allclose(held["truth"], obs[tuple(test.indices.numpy().T)], rtol=1e-6)  # float32 data
    post = bt.Posterior.load(tmp_path / "img" / "posterior.pt")
    pred = post.predict(test.indices)
    cal = rep["sections"]["calibration"]["numbers"]
    assert cal["n"] == n_held
    assert cal["coverage"][2] == pytest.approx(pred.coverage(held["truth"], 0.9), abs=1e-12)
    assert rep["sections"]["predictions"]["numbers"]["truth"] == "held-out observations (with noise)"
    summary = json.loads((tmp_path / "img" / "summary.json").read_text())
    assert summary["heldout"]["coverage"] == pytest.approx(pred.coverage(held["truth"], 0.9), abs=1e-12)
    # the sd map is the entry sd (zero for MAP), not the predictive sd (the noise)
    dense = post.predict(np.indices(obs.shape).reshape(3, -1).T)
    numbers = rep["sections"]["predictions"]["numbers"]
    assert numbers["image_entry_sd_mean"] == pytest.approx(float(dense.sd_mean.mean()), abs=1e-12)
    assert numbers["image_noise_sd"] > 10 * numbers["image_entry_sd_mean"]
    res = runner.invoke(main, ["complete", str(tmp_path / "img.npy"), "--out", str(tmp_path / "bad"),
                               "--holdout", "1", "--quiet"])
    assert res.exit_code == 2 and "--holdout" in res.output
    res = runner.invoke(main, ["complete", str(tmp_path / "img.npy"), "--out", str(tmp_path / "img2"),
                               "--max-rank", "3", "--quiet", "--no-report"])
    assert res.exit_code == 0 and not (tmp_path / "img2" / "report.html").exists()
    assert not (tmp_path / "img2" / "heldout.npz").exists()  # no hold-out by default


# --- reports that tell the truth ----------------------------------------------------------------
def _iid_posterior(model, point, rng, draws=500):
    """Two chains of independent draws around ``point``: every identified quantity mixes, but the
    switched-off last CP column has a different tiny scale in each chain (it is not identified)."""
    samples = {}
    for k, v in point.items():
        v = v[0, 0].double().numpy()
        noise = rng.normal(0, 0.01 * (np.abs(v).mean() + 1e-12), (2, draws) + v.shape)
        x = v + noise if k.startswith("X.factor") else v * np.exp(noise / (np.abs(v).mean() + 1e-12))
        if k.startswith("X.factor"):
            x[..., -1] = rng.normal(0, 1e-4, x[..., -1].shape) * np.array([1.0, 5.0])[:, None, None]
        samples[k] = torch.as_tensor(x)
    return bt.Posterior(samples, method="sghmc", model=model, info={"seed": 0})


def test_switched_off_slices_raise_no_false_alarm_in_report_or_diagnostics(tmp_path):
    data = _data()
    model = bt.TensorCompletion(SHAPE, format="cp", max_rank=3, prior="gamma")
    point = bt.fit(model, data.train, method="map", seed=0, progress=False).samples
    post = _iid_posterior(model, point, np.random.default_rng(0))
    # the unidentified slice scales disagree across chains: ArviZ's R-hat there is large
    scales = -np.sort(-post.slice_scales()[0].double().numpy(), -1)
    assert float(az.rhat(scales[..., -1])) > 1.5
    paths = bt.report(post, tmp_path, heldout={"indices": data.test.indices.numpy(),
                                               "truth": data.test.values.numpy(),
                                               "noisy": data.test_noisy.values.numpy()})
    rep = json.loads(paths["json"].read_text())
    diag = rep["sections"]["diagnostics"]["numbers"]
    assert {r["var"] for r in diag["key_variables"]} == {"noise_precision", "tensor_norm", "entry"}
    assert diag["max_rhat"] < 1.01 and diag["min_ess_bulk"] > 200
    assert rep["warnings"] == []
    assert 'id="no-warnings"' in paths["html"].read_text()
    # Posterior.diagnostics checks the same quantities by default, and the raw sites on request
    same = post.diagnostics(entries=data.test.indices[:4])
    assert same["checked"] == "identified quantities" and same["converged"]
    assert same["max_rhat"] == pytest.approx(diag["max_rhat"], rel=1e-9)
    assert same["min_ess_bulk"] == pytest.approx(diag["min_ess_bulk"], rel=1e-9)
    raw = post.diagnostics("all")
    assert raw["checked"] == "sites" and raw["max_rhat"] > 1.3 and not raw["converged"]
    assert "note" not in same
    # the first chain alone mixes as well (its ESS is large; ArviZ gives no R-hat for one chain),
    # but one chain is never called converged, and the result says why
    one = bt.Posterior({k: v[:1] for k, v in post.samples.items()}, method="sghmc",
                       model=model, info={"seed": 0}).diagnostics(entries=data.test.indices[:4])
    assert one["min_ess_bulk"] > 200 and not one["converged"]
    assert one["note"].startswith("one chain: R-hat cannot see chains that disagree")


def test_rank_at_cap_warns_per_rank_dimension():
    from types import SimpleNamespace

    from bayestensor.report.sections import rank_cap_warnings

    cp = SimpleNamespace(model=bt.TensorCompletion(SHAPE, format="cp", max_rank=3))
    assert rank_cap_warnings([2], cp) == []
    (w,) = rank_cap_warnings([3], cp)
    assert "rank at max_rank (3 of 3): increase max_rank" in w
    # Tucker on (2, 12, 12): mode 0 is capped at 2 by the shape, so it is full rank, not short
    with pytest.warns(UserWarning):
        tucker = SimpleNamespace(model=bt.TensorCompletion((2, 12, 12), format="tucker", max_rank=4))
    found = rank_cap_warnings([2, 4, 3], tucker)
    assert len(found) == 2
    assert found[0].startswith("Rank dimension 0") and "full rank" in found[0]
    assert found[1].startswith("Rank dimension 1") and "increase max_rank" in found[1]


def test_missing_pixels_are_hatched_not_black(tmp_path):
    from bayestensor.viz.images import image_completion_figures

    rng = np.random.default_rng(1)
    img = 0.6 + 0.4 * rng.random((12, 12, 3))  # bright: no pixel near black
    obs = img.copy()
    obs[3:9, 3:9] = np.nan
    paths = image_completion_figures(obs, img, np.full(img.shape, 0.1), tmp_path)
    import matplotlib.image as mpimg

    shot = mpimg.imread(paths["observed"])[..., :3]
    # the missing block is a quarter of the image: drawn black it would darken ~15% of the panel
    dark = shot.mean(-1) < 0.15  # black-ish pixels: only the title, legend text and frame
    assert dark.mean() < 0.05, f"{dark.mean():.3f} of the panel is black"
    face = np.abs(shot - 0xD9 / 255).max(-1) < 0.02  # the light-grey face of missing pixels
    assert face.mean() > 0.03


def test_regress_report_calls_y_test_observations(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 4))
    X = rng.normal(size=(60, 4, 4))
    y = np.einsum("nij,ij->n", X, w) + 0.3 * rng.normal(size=60)
    Xt = rng.normal(size=(20, 4, 4))
    yt = np.einsum("nij,ij->n", Xt, w) + 0.3 * rng.normal(size=20)
    np.savez(tmp_path / "reg.npz", X=X, y=y, X_test=Xt, y_test=yt)
    res = CliRunner().invoke(main, ["regress", str(tmp_path / "reg.npz"), "--method", "map",
                                    "--max-rank", "2", "--out", str(tmp_path / "r"), "--quiet"])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    pred = rep["sections"]["predictions"]["numbers"]
    assert pred["truth"] == "held-out observations (with noise)"
    post = bt.Posterior.load(tmp_path / "r" / "posterior.pt")
    assert pred["heldout_rmse"] == pytest.approx(
        float(np.sqrt(np.mean((post.predict(Xt).mean - yt) ** 2))), rel=1e-9)
    assert "noise-free" not in (tmp_path / "r" / "report.html").read_text()


def test_reliability_diagram_draws_bin_counts():
    from bayestensor.viz.calibration import reliability_figure

    fig = reliability_figure(NETWORK["reliability"])
    bars = [p.get_height() for p in fig.axes[1].patches]
    assert bars == NETWORK["reliability"]["sghmc"]["counts"]
    assert fig.axes[1].get_ylabel() == "count"


@pytest.mark.slow
def test_default_demo_report_has_no_warning(tmp_path):
    res = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo"), "--quiet"])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert rep["warnings"] == [], rep["warnings"]
    diag = rep["sections"]["diagnostics"]["numbers"]
    assert diag["max_rhat"] <= 1.01 and diag["min_ess_bulk"] >= 200
    # the console says so too, from the same check of the same draws
    assert "chains: max R-hat" in res.output and ": converged" in res.output
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["convergence"]["converged"]
    assert summary["convergence"]["max_rhat"] == pytest.approx(diag["max_rhat"], rel=1e-9)


def test_loo_section_matches_arviz_and_compares_runs(sghmc_run, tmp_path):
    """``report --loo --compare``: elpd and p_loo equal ArviZ's az.loo on the same draws, the
    comparison ranks both runs, and a MAP run says LOO does not apply."""
    run_dir, _, post = sghmc_run
    other = tmp_path / "svgd"
    other.mkdir()
    _completion_run(other, "svgd", num_samples=25, num_steps=200)
    out = tmp_path / "with_loo"
    res = CliRunner().invoke(main, ["report", str(run_dir), "--out", str(out), "--compare", str(other)])
    assert res.exit_code == 0, res.output
    secs = json.loads((out / "report.json").read_text())["sections"]
    assert list(secs)[-1] == "loo"
    numbers = secs["loo"]["numbers"]
    want = az.loo(post.to_arviz())
    old_names = hasattr(want, "elpd_loo")  # ArviZ 0.2x; 1.x calls them elpd and p
    assert numbers["elpd_loo"] == pytest.approx(
        float(want.elpd_loo if old_names else want.elpd), rel=1e-6)
    assert numbers["p_loo"] == pytest.approx(float(want.p_loo if old_names else want.p), rel=1e-6)
    assert numbers["pareto_k_limit"] == pytest.approx(1 - 1 / np.log10(120))
    assert {row["run"] for row in numbers["comparison"]} == {run_dir.name, "svgd"}
    assert secs["loo"]["figures"] == ["loo_pit.png"]
    assert (out / "report_files" / "loo_pit.png").exists()
    # remade without LOO in the same folder: no LOO-PIT figure of the former report is left
    res = CliRunner().invoke(main, ["report", str(run_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "loo" not in json.loads((out / "report.json").read_text())["sections"]
    assert not (out / "report_files" / "loo_pit.png").exists()
    assert (out / "report_files" / "trace.png").exists()
    # a folder that is not a run is refused by name before any work
    res = CliRunner().invoke(main, ["report", str(run_dir), "--out", str(tmp_path / "x"),
                                    "--compare", str(tmp_path)])
    assert res.exit_code != 0 and "run.json" in res.output
    map_dir = tmp_path / "map"
    map_dir.mkdir()
    _completion_run(map_dir, "map")
    bt.report(map_dir, loo=True, progress=False)
    secs = json.loads((map_dir / "report.json").read_text())["sections"]
    assert secs["loo"]["numbers"]["loo"] is None
    assert "does not apply" in (map_dir / "report.md").read_text()


@pytest.mark.parametrize("run, out, match", [
    (42, None, "run: expected a run folder .a path. or a Posterior, got int"),
    ("no/such/run", None, "run_dir: .* is not a directory"),
])
def test_report_refuses_what_is_not_a_run(run, out, match, tmp_path):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        bt.report(run if not isinstance(run, str) else tmp_path / run, out)


def test_report_names_an_out_folder_it_cannot_create(tmp_path):
    """A file where the folder should be: refused before the posterior is saved."""
    (tmp_path / "taken").write_text("")
    data = bt.data.synthetic_tensor((6, 5, 4), rank=2, observed=0.5, seed=0)
    post = bt.fit(bt.TensorCompletion(data.shape, max_rank=2), data.train, method="map",
                  progress=False)
    with pytest.raises(ValueError, match=r"^out: cannot create the folder .*taken/run"):
        bt.report(post, tmp_path / "taken" / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


@pytest.mark.filterwarnings("error")
def test_rank_figure_of_draws_without_any_slice_says_so_without_warnings():
    """The closed-form VI's fit without a low-rank part has every slice exactly zero (float32
    scales): the relative scales are zero, not 0/0, and the log-scale panel says there is
    no slice instead of drawing empty boxes."""
    from bayestensor.viz.figures import close
    from bayestensor.viz.report import rank_figure

    none = bt.priors.rank_posterior([torch.zeros(2, 50, 8)])
    some = bt.priors.rank_posterior([torch.tensor([1.0, 0.5, 0.0]).expand(2, 50, 3)])
    for rp, said in ((none, True), (some, False)):
        fig = rank_figure(rp)
        texts = [t.get_text() for t in fig.axes[1].texts]
        assert ("no slice in any draw" in texts) is said
        close(fig)


def test_report_of_a_fit_without_a_low_rank_part_on_held_out_entries(tmp_path):
    """On pure noise the closed-form VI keeps no low-rank part, so every held-out entry has the
    same sd (the offset's) to within 1e-17: the diversity histogram used to stop the command
    there (numpy cannot cut that spread into 30 bins). It is drawn as one bar."""
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(10, 9, 8))
    noise[rng.random(noise.shape) >= 0.5] = np.nan
    np.save(tmp_path / "noise.npy", noise)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["complete", str(tmp_path / "noise.npy"), "--max-rank", "3",
                                    "--holdout", "0.2", "--quiet", "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["found_rank_mode"] == [0]
    numbers = json.loads((out / "report.json").read_text())
    assert (out / "report.html").exists() and "diagnostics" in json.dumps(numbers)
    from bayestensor.viz.figures import close
    from bayestensor.viz.report import diversity_figure
    close(diversity_figure(np.zeros(6), np.array([0.06215027676066878, 0.06215027676066879] * 36)))

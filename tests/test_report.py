"""Uncertainty reports: completion (SGHMC, SVGD, unconverged), network and dynamics run dirs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import bayestensor as bt
from bayestensor.data import tensors as datasets
from bayestensor.io import versions
from bayestensor.cli import main
from bayestensor.results import arviz_adapter
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
    for lv, c in zip(cal["levels"], cal["coverage"]):
        assert c == pytest.approx(pred.coverage(noisy, lv), abs=1e-12)
    # R-hat / ESS: key variables recomputed independently with ArviZ, all parameters via Posterior
    c, d = post.num_chains, post.num_draws
    key = {"noise_precision": post["noise_precision"].double().numpy(),
           "slice_scale_d0": -np.sort(-post.slice_scales()[0].double().numpy(), -1),
           "entry": post.predict(data.test.indices[:4]).draws.double().numpy().reshape(c, d, -1)}
    expect = arviz_adapter.rhat_ess(arviz_adapter.to_inference_data(key))
    diag = secs["diagnostics"]["numbers"]
    assert diag["max_rhat"] == pytest.approx(expect["max_rhat"], rel=1e-6)
    assert diag["min_ess_bulk"] == pytest.approx(expect["min_ess_bulk"], rel=1e-6)
    assert diag["all_parameters"]["max_rhat"] == pytest.approx(post.diagnostics()["max_rhat"], rel=1e-6)
    assert set(secs["diagnostics"]["figures"]) == {"trace.png", "rank_plot.png"}
    # rank posterior
    rp = post.effective_rank()
    assert secs["rank"]["numbers"]["mode"] == rp.mode().tolist()
    assert secs["rank"]["numbers"]["distribution"][0] == {str(k): v for k, v in rp.distribution(0).items()}
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
    # two chains from random starts, almost no burn-in: they disagree
    _, post = _completion_run(tmp_path, "sghmc", num_samples=20, num_warmup=2, num_chains=2,
                              init="random")
    paths = bt.report(tmp_path)
    rep = json.loads(paths["json"].read_text())
    assert rep["sections"]["diagnostics"]["numbers"]["max_rhat"] > 1.01
    assert any("R-hat" in w for w in rep["warnings"])
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


def test_svgd_report_marks_rhat_not_applicable(tmp_path):
    _completion_run(tmp_path, "svgd", num_samples=8, num_steps=60)
    rep = json.loads(bt.report(tmp_path)["json"].read_text())
    diag = rep["sections"]["diagnostics"]["numbers"]
    assert diag["rhat"] == "not applicable"
    assert diag["diversity"]["particles"] == 8 and diag["diversity"]["mean_pairwise_distance"] > 0
    assert not any("R-hat" in w for w in rep["warnings"])
    html = (tmp_path / "report.html").read_text()
    assert "not applicable" in html and 'id="no-warnings"' in html


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
    # image completion: observed with NaN -> image.npz -> mean and uncertainty map in the report
    rng = np.random.default_rng(0)
    img = np.clip(rng.random((10, 1, 1)) * rng.random((1, 10, 1)) + np.zeros((1, 1, 3)), 0, 1)
    obs = np.where(rng.random(img.shape) < 0.6, img, np.nan)
    np.save(tmp_path / "img.npy", obs)
    res = runner.invoke(main, ["complete", str(tmp_path / "img.npy"), "--out", str(tmp_path / "img"),
                               "--max-rank", "3", "--quiet", "--no-figures"])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "img" / "report.json").read_text())
    assert "image_panel.png" in rep["sections"]["predictions"]["figures"]
    assert rep["run"]["data"]["observed_fraction"] == pytest.approx(np.isfinite(obs).mean())
    res = runner.invoke(main, ["complete", str(tmp_path / "img.npy"), "--out", str(tmp_path / "img2"),
                               "--max-rank", "3", "--quiet", "--no-report"])
    assert res.exit_code == 0 and not (tmp_path / "img2" / "report.html").exists()

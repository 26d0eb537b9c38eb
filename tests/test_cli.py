"""The ``bayestensor complete`` command on small files (``demo`` is too slow for unit tests)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from bayestensor.cli import main
from bayestensor.formats import CPTensor


def low_rank_with_missing(seed=0):
    truth = CPTensor.random((8, 8, 8), 2, seed=seed).reconstruct().double().numpy()
    mask = np.random.default_rng(seed).random(truth.shape) >= 0.5
    return truth, mask


def check_predictions(out_dir, truth, mask, level=0.9):
    with np.load(out_dir / "predictions.npz") as z:
        mean, sd, lower, upper = z["mean"], z["sd"], z["lower"], z["upper"]
        observed = z["observed"]
        assert float(z["level"]) == pytest.approx(level)
    for arr in (mean, sd, lower, upper):
        assert arr.shape == truth.shape
        assert np.isfinite(arr).all()
    assert (lower <= mean).all() and (mean <= upper).all()
    assert (upper - lower > 0).all()
    np.testing.assert_array_equal(observed, mask)
    # the low-rank fit actually completes the tensor: held-out error well below the signal
    err = np.linalg.norm((mean - truth)[~mask]) / np.linalg.norm(truth[~mask])
    assert err < 0.5
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["shape"] == list(truth.shape)
    assert summary["observed"] == int(mask.sum())
    assert (out_dir / "posterior.pt").exists()


def test_complete_npy_with_nan(tmp_path):
    truth, mask = low_rank_with_missing()
    path = tmp_path / "x.npy"
    np.save(path, np.where(mask, truth, np.nan))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["complete", str(path), "--method", "map", "--max-rank", "4",
                                    "--quiet", "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "rank found" in res.output and "predictions.npz" in res.output
    check_predictions(out, truth, mask)


def test_complete_npz_with_mask(tmp_path):
    truth, mask = low_rank_with_missing(seed=1)
    data = truth.copy()
    data[~mask] = 1e6  # unobserved entries hold junk; the mask must hide it
    path = tmp_path / "x.npz"
    np.savez(path, data=data, mask=mask)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["complete", str(path), "--method", "map", "--max-rank", "4",
                                    "--steps", "300", "--level", "0.8", "--quiet",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    check_predictions(out, truth, mask, level=0.8)


def test_complete_bad_extension(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("1,2,3\n")
    res = CliRunner().invoke(main, ["complete", str(path), "--quiet", "--out",
                                    str(tmp_path / "out")])
    assert res.exit_code != 0
    assert ".npy or .npz" in res.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args,message", [
    # the rank check does not name the option (cli.py's _rank_arg has no param_hint)
    (["--max-rank", "0"], "positive integer"),
    (["--level", "1.5"], "level"),
    (["--format", "hierarchical"], "format"),
])
def test_complete_bad_options(tmp_path, args, message):
    path = tmp_path / "x.npy"
    np.save(path, np.ones((3, 4, 5)))
    res = CliRunner().invoke(main, ["complete", str(path), "--quiet", "--out",
                                    str(tmp_path / "out")] + args)
    assert res.exit_code != 0
    assert message in res.output.lower()


def test_complete_all_missing_is_a_usage_error(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.full((3, 4, 5), np.nan))
    res = CliRunner().invoke(main, ["complete", str(path), "--quiet", "--out",
                                    str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "no observed entries" in res.output


def test_complete_map_hold_auto_and_bad_method(tmp_path):
    truth, mask = low_rank_with_missing()
    path = tmp_path / "x.npy"
    np.save(path, np.where(mask, truth, np.nan))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["complete", str(path), "--method", "map", "--max-rank", "4",
                                    "--map-hold", "auto", "--quiet", "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["map_hold_auto"]["validation_mse"]) == {"none", "hold"}
    res = CliRunner().invoke(main, ["complete", str(path), "--method", "vi", "--map-hold", "noise",
                                    "--quiet", "--out", str(tmp_path / "bad")])
    assert res.exit_code != 0 and "--map-hold" in res.output
    assert not (tmp_path / "bad").exists()

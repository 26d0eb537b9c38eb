"""The command line on small files (``demo`` is too slow for unit tests): ``complete``,
usage errors instead of tracebacks, run folders that are never mixed, and the matplotlib
backend left alone."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from bayestensor.cli import main
from bayestensor.cli.compress import compress
from bayestensor.formats import CPTensor
from bayestensor.results.posterior import Posterior
from bayestensor.report import prepare_run_dir, read_run, report, write_run
from bayestensor.report.rundir import MARKER_FILE, timestamped_dir


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


@pytest.fixture
def tensor_file(tmp_path):
    truth, mask = low_rank_with_missing()
    path = tmp_path / "x.npy"
    np.save(path, np.where(mask, truth, np.nan))
    return path


def test_complete_npy_with_nan(tmp_path, tensor_file):
    truth, mask = low_rank_with_missing()
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["complete", str(tensor_file), "--method", "map",
                                    "--max-rank", "4", "--quiet", "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "rank found" in res.output and "predictions.npz" in res.output
    assert "R-hat" not in res.output  # one MAP point: no chains to check
    assert json.loads((out / "summary.json").read_text())["convergence"] is None
    check_predictions(out, truth, mask)


def test_samplers_default_to_four_chains_and_other_methods_to_one(tmp_path, tensor_file):
    """Without --num-chains, SGHMC runs enough chains for R-hat (the report's one-chain warning
    stays away); MAP keeps one start."""
    from bayestensor.cli.options import SAMPLER_CHAINS, chains_for

    assert SAMPLER_CHAINS == 4
    assert [chains_for(m, None) for m in ("sghmc", "nuts", "map", "vi", "svgd")] == [4, 4, 1, 1, 1]
    assert chains_for("sghmc", 2) == 2
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["complete", str(tensor_file), "--method", "sghmc",
                                    "--max-rank", "4", "--num-samples", "20", "--num-warmup",
                                    "20", "--no-report", "--quiet", "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    post = Posterior.load(out / "posterior.pt")
    assert (post.num_chains, post.num_draws) == (4, 20)
    assert read_run(out)["settings"]["num_chains"] == 4
    # the console and summary.json say whether the chains converged, on identified quantities
    check = json.loads((out / "summary.json").read_text())["convergence"]
    assert check["checked"] == "identified quantities"
    assert check["max_rhat"] == pytest.approx(post.diagnostics()["max_rhat"], rel=1e-9)
    assert not check["converged"] and "NOT converged" in res.output  # 20 draws a chain
    assert f"max R-hat {check['max_rhat']:.3f}" in res.output
    from bayestensor.results.convergence import convergence_advice
    assert convergence_advice(check["max_rhat"], 20) in res.output
    assert "20 draws per chain are too few" in res.output


def test_convergence_advice_tells_slow_chains_from_chains_apart():
    from bayestensor.results.convergence import RHAT_APART, convergence_advice
    assert RHAT_APART == 1.1
    for rhat in (1.011, 1.05, 1.1, float("nan")):  # slowly mixing (or unknown): run longer
        assert convergence_advice(rhat) == "draw more samples or chains"
    for rhat in (1.2, 2.3):  # IL-2's chains: in different modes, NUTS's as well
        assert convergence_advice(rhat).startswith("the chains sit in different regions")
        assert convergence_advice(rhat, 1000).startswith("the chains sit in different")
        # a few draws a chain cannot tell the two apart: draw more first
        assert convergence_advice(rhat, 60).startswith("draw more samples: 60 draws")


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


@pytest.mark.parametrize("arrays, message", [
    ({"mask": "mask", "x": "truth"}, None),  # the mask saved first is not taken for the data
    ({"a": "truth", "b": "truth"}, "found arrays ['a', 'b']"),
    ({"mask": "mask"}, "found arrays ['mask']"),
])
def test_complete_npz_names_its_data_array(tmp_path, arrays, message):
    truth, mask = low_rank_with_missing(seed=1)
    path = tmp_path / "x.npz"
    np.savez(path, **{k: {"mask": mask, "truth": truth}[v] for k, v in arrays.items()})
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["complete", str(path), "--method", "map", "--max-rank", "4",
                                    "--steps", "300", "--level", "0.8", "--quiet", "--no-report",
                                    "--out", str(out)])
    if message is None:
        assert res.exit_code == 0, res.output + repr(res.exception)
        check_predictions(out, truth, mask, level=0.8)
    else:
        assert res.exit_code != 0 and message in res.output and "'data'" in res.output
        assert not out.exists()


def test_progress_bars_show_on_a_terminal_only(tmp_path, monkeypatch):
    import io
    from bayestensor.cli import options
    truth, mask = low_rank_with_missing(seed=1)
    path = tmp_path / "x.npz"
    np.savez(path, data=truth, mask=mask)
    res = CliRunner().invoke(main, ["complete", str(path), "--method", "map", "--max-rank", "4",
                                    "--steps", "50", "--no-report", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    # no --quiet, but stderr is not a terminal here: no bar redraws in the captured output
    assert "it/s" not in res.output and "\r" not in res.output

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert options.show_progress(quiet=False) and not options.show_progress(quiet=True)


def test_warnings_print_as_one_line_without_our_source(tmp_path):
    import warnings
    truth, mask = low_rank_with_missing(seed=1)  # 3-way, so a TT max rank of 100 is capped
    path = tmp_path / "x.npz"
    np.savez(path, data=truth, mask=mask)
    before = warnings.showwarning
    res = CliRunner().invoke(main, ["complete", str(path), "--format", "tt", "--max-rank", "100",
                                    "--method", "map", "--steps", "30", "--map-hold", "none",
                                    "--quiet", "--no-report", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if "max_rank: 100" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: max_rank: 100 is more than")
    assert ".py:" not in res.output and "UserWarning" not in res.output
    assert warnings.showwarning is before  # restored after the command


def test_complete_bad_extension(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("1,2,3\n")
    res = CliRunner().invoke(main, ["complete", str(path), "--quiet", "--out",
                                    str(tmp_path / "out")])
    assert res.exit_code != 0
    assert ".npy or .npz" in res.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args,message", [
    (["--max-rank", "0"], "positive integer"),
    (["--level", "1.5"], "level"),
    (["--format", "hierarchical"], "format"),
    (["--offset-scale", "-1"], "positive number or 'none'"),
    (["--offset-scale", "nan"], "--offset-scale"),
    (["--core-variance", "1"], "applies to --format tucker, not cp"),
    (["--format", "tucker", "--core-variance", "0"], "--core-variance"),
])
def test_complete_bad_options(tmp_path, args, message):
    path = tmp_path / "x.npy"
    np.save(path, np.ones((3, 4, 5)))
    res = CliRunner().invoke(main, ["complete", str(path), "--quiet", "--out",
                                    str(tmp_path / "out")] + args)
    assert res.exit_code != 0
    assert message in res.output.lower()


def test_complete_core_variance_reaches_the_tucker_model(tmp_path, tensor_file):
    """``--core-variance`` gives the Tucker core a fixed prior variance, in the model the
    posterior file rebuilds and in the summary."""
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["complete", str(tensor_file), "--format", "tucker",
                                    "--max-rank", "3", "--core-variance", "0.5", "--method",
                                    "map", "--steps", "30", "--map-hold", "none", "--quiet",
                                    "--no-report", "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    post = Posterior.load(out / "posterior.pt")
    assert post.model.low_rank_prior.core_variance == 0.5
    assert json.loads((out / "summary.json").read_text())["core_variance"] == 0.5


def test_complete_all_missing_is_a_usage_error(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.full((3, 4, 5), np.nan))
    res = CliRunner().invoke(main, ["complete", str(path), "--quiet", "--out",
                                    str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "no observed entries" in res.output


def test_complete_map_hold_auto_and_bad_method(tmp_path, tensor_file):
    path = tensor_file
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["complete", str(path), "--method", "map", "--max-rank", "4",
                                    "--map-hold", "auto", "--quiet", "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["map_hold_auto"]["validation_mse"]) == {"none", "hold"}
    res = CliRunner().invoke(main, ["complete", str(path), "--method", "nuts", "--map-hold", "noise",
                                    "--quiet", "--out", str(tmp_path / "bad")])
    assert res.exit_code != 0 and "--map-hold" in res.output
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("given,expected", [("none", None), ("2.5", 2.5), (None, 10.0)])
def test_complete_offset_scale(tmp_path, tensor_file, given, expected):
    """``--offset-scale`` reaches the model the posterior file rebuilds; 'none' leaves the
    site out."""
    out = tmp_path / "out"
    args = [] if given is None else ["--offset-scale", given]
    res = CliRunner().invoke(main, ["complete", str(tensor_file), "--method", "map",
                                    "--steps", "30", "--map-hold", "none", "--quiet",
                                    "--no-report", "--out", str(out)] + args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    post = Posterior.load(out / "posterior.pt")
    assert post.model.offset_scale == expected
    assert ("offset" in post.samples) == (expected is not None)
    assert json.loads((out / "summary.json").read_text())["offset_scale"] == expected


def test_complete_spectral_init(tmp_path, tensor_file):
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["complete", str(tensor_file), "--max-rank", "4", "--init",
                                    "spectral", "--map-hold", "none", "--quiet", "--no-report",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert json.loads((out / "summary.json").read_text())["init"] == "spectral"
    res = CliRunner().invoke(main, ["complete", str(tensor_file), "--format", "tucker", "--init",
                                    "spectral", "--quiet", "--out", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "--init" in res.output and "CP models only" in res.output
    assert not (tmp_path / "bad").exists()


# --- usage errors: exit status 2, one line naming the option or the file, no traceback -------
def _usage_error(res, name):
    assert res.exit_code == 2, res.output + repr(res.exception)
    assert "Traceback" not in res.output
    assert name in res.output, res.output
    assert res.output.strip().splitlines()[-1].startswith("Error:"), res.output


def test_complete_svgd_start_from_the_command_line(tmp_path):
    """On pure noise the particles started from the closed-form VI (the default for CP) keep
    no slice; started from the MAP (``--init-from map``) they keep the MAP's."""
    noise = np.random.default_rng(0).normal(size=(10, 9, 8))
    noise[np.random.default_rng(1).random(noise.shape) < 0.5] = np.nan
    np.save(tmp_path / "noise.npy", noise)
    found = {}
    for start in (None, "map"):
        out = tmp_path / f"out_{start}"
        args = ["complete", str(tmp_path / "noise.npy"), "--method", "svgd", "--quiet",
                "--no-report", "--out", str(out)] + (["--init-from", start] if start else [])
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output + repr(res.exception)
        summary = json.loads((out / "summary.json").read_text())
        found[summary["init_from"]] = summary["found_rank_mode"][0]
    assert found["vi"] == 0 and found["map"] >= 2, found


@pytest.mark.parametrize("args,name", [
    (["--num-chains", "0"], "--num-chains"),
    (["--num-samples", "0"], "--num-samples"),
    (["--max-rank", "abc"], "--max-rank"),
    (["--max-rank", "2,x"], "--max-rank"),
    (["--seed", "-1"], "--seed"),
    (["--steps", "0"], "--steps"),
    (["--method", "map", "--init-from", "init"], "--init-from"),
    (["--method", "svgd", "--init-from", "init"], "--init-from"),
    (["--method", "svgd", "--format", "tt", "--init-from", "vi"], "--init-from"),
    # sizes the method would ignore (--num-warmup was dropped, --num-samples ignored by MAP)
    (["--method", "vi", "--num-warmup", "10"], "--num-warmup"),
    (["--method", "map", "--num-samples", "10"], "--num-samples"),
    (["--method", "sghmc", "--steps", "10"], "--steps"),
    (["--method", "vi", "--steps", "10"], "--steps"),  # CP: closed form, no steps
])
def test_complete_bad_option_values_name_the_option(tmp_path, tensor_file, args, name):
    res = CliRunner().invoke(main, ["complete", str(tensor_file), "--quiet", "--out",
                                    str(tmp_path / "out")] + args)
    _usage_error(res, name)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args,name", [
    (["--method", "sghmc", "--steps", "10"], "--steps"),  # it was dropped without a word
    (["--method", "map", "--num-warmup", "10"], "--num-warmup"),
])
def test_regress_refuses_sizes_its_method_would_ignore(tmp_path, args, name):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "xy.npz", X=rng.normal(size=(20, 3, 3)), y=rng.normal(size=20))
    res = CliRunner().invoke(main, ["regress", str(tmp_path / "xy.npz"), "--quiet", "--out",
                                    str(tmp_path / "out")] + args)
    _usage_error(res, name)
    assert not (tmp_path / "out").exists()


def test_a_refusal_from_the_fit_leaves_no_run_folder(tmp_path, tensor_file, monkeypatch):
    """A setting refused by ``fit`` itself, after the command made its folder, removes the
    folder (it held nothing but the marker)."""
    import bayestensor.cli.complete as complete_module

    monkeypatch.setattr(complete_module, "check_sizes", lambda *a, **k: None)  # let fit refuse
    res = CliRunner().invoke(main, ["complete", str(tensor_file), "--method", "map",
                                    "--num-samples", "10", "--quiet", "--out",
                                    str(tmp_path / "out")])
    _usage_error(res, "--num-samples")
    assert not (tmp_path / "out").exists()


def test_wrong_shape_mask_names_the_option(tmp_path, tensor_file):
    np.save(tmp_path / "mask.npy", np.ones((2, 2), dtype=bool))
    res = CliRunner().invoke(main, ["complete", str(tensor_file), "--mask",
                                    str(tmp_path / "mask.npy"), "--out", str(tmp_path / "out")])
    _usage_error(res, "--mask")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name,content", [
    ("empty.npy", b""),
    ("junk.npy", b"not a numpy file at all"),
    ("empty.npz", b""),
    ("junk.npz", b"PK\x03\x04 truncated zip"),
])
def test_corrupt_input_files_name_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    res = CliRunner().invoke(main, ["complete", str(path), "--out", str(tmp_path / "out")])
    _usage_error(res, name)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, why", [("absent.npy", "no such file"), ("folder.npy", "not a file")])
def test_complete_names_a_file_that_is_not_there(tmp_path, name, why):
    (tmp_path / "folder.npy").mkdir()
    res = CliRunner().invoke(main, ["complete", str(tmp_path / name), "--quiet", "--out",
                                    str(tmp_path / "out")])
    _usage_error(res, "FILE")
    assert f"{name}' ({why})" in res.output
    assert not (tmp_path / "out").exists()


def test_truncated_npy_names_the_file(tmp_path):
    path = tmp_path / "cut.npy"
    np.save(path, np.ones((6, 6, 6)))
    path.write_bytes(path.read_bytes()[:200])
    res = CliRunner().invoke(main, ["complete", str(path), "--out", str(tmp_path / "out")])
    _usage_error(res, "cut.npy")


def test_pickled_object_array_is_refused(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    res = CliRunner().invoke(main, ["complete", str(path), "--out", str(tmp_path / "out")])
    _usage_error(res, "obj.npy")


def test_regress_batch_size_above_n_names_the_option(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "xy.npz", X=rng.normal(size=(10, 3, 3)), y=rng.normal(size=10))
    res = CliRunner().invoke(main, ["regress", str(tmp_path / "xy.npz"), "--method", "map",
                                    "--batch-size", "50", "--quiet", "--out", str(tmp_path / "out")])
    _usage_error(res, "--batch-size")


def test_corrupt_run_json_names_the_file(tmp_path):
    (tmp_path / "run.json").write_text("{not json")
    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    _usage_error(res, str(tmp_path / "run.json"))


def test_compress_bad_data_names_the_argument(tmp_path):
    res = CliRunner().invoke(compress, [str(tmp_path / "nothing.csv"), "--out", str(tmp_path / "o")])
    _usage_error(res, "DATA")
    assert not (tmp_path / "o").exists()


# --- run folders ------------------------------------------------------------------------------
def test_existing_out_is_refused_before_any_fitting(tmp_path, tensor_file):
    out = tmp_path / "old"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    res = CliRunner().invoke(main, ["complete", str(tensor_file), "--out", str(out)])
    _usage_error(res, "--out")
    assert "not empty" in res.output and "--force" in res.output
    # --force never deletes files that no bayestensor run wrote
    res = CliRunner().invoke(main, ["complete", str(tensor_file), "--out", str(out), "--force"])
    _usage_error(res, "--out")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_force_empties_a_previous_run_folder(tmp_path):
    out = prepare_run_dir(tmp_path / "run")
    (out / "posterior.pt").write_bytes(b"old")
    (out / "sub").mkdir()
    with pytest.raises(ValueError, match="out: .*not empty"):
        prepare_run_dir(out)
    prepare_run_dir(out, force=True)
    assert [p.name for p in out.iterdir()] == [MARKER_FILE]
    prepare_run_dir(out)  # only the marker: a new, empty run folder
    with pytest.raises(ValueError, match="out: .*is a file"):
        prepare_run_dir(out / MARKER_FILE)


def test_default_out_is_a_new_timestamped_folder(tmp_path):
    path = timestamped_dir(tmp_path / "runs", "demo")
    assert path.parent == tmp_path / "runs"
    assert path.name.startswith("demo-") and len(path.name) == len("demo-20261130-214500")


def test_report_reads_only_the_files_the_run_wrote(tmp_path):
    # a stale network.json from another run sits in the folder; this run wrote none
    (tmp_path / "network.json").write_text(json.dumps({"layers": [], "linear_ratio": 3.0}))
    write_run(tmp_path, "completion", settings={"method": "map"}, files=[])
    assert read_run(tmp_path)["files"] == []
    rep = json.loads(report(tmp_path)["json"].read_text())
    assert list(rep["sections"]) == ["settings"]
    write_run(tmp_path, "network", files=[tmp_path / "network.json"])
    assert read_run(tmp_path)["files"] == ["network.json"]
    rep = json.loads(report(tmp_path)["json"].read_text())
    assert list(rep["sections"]) == ["settings", "network"]


def test_complete_records_its_files_and_no_report_flag(tmp_path, tensor_file):
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["complete", str(tensor_file), "--method", "map", "--steps",
                                    "50", "--max-rank", "3", "--quiet", "--no-report",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert read_run(out)["files"] == ["posterior.pt", "predictions.npz", "summary.json"]
    assert not (out / "report.html").exists()


# --- the user's matplotlib backend ------------------------------------------------------------
def test_import_leaves_the_matplotlib_backend_alone():
    code = ("import matplotlib; matplotlib.use('svg'); "
            "import bayestensor, bayestensor.report, bayestensor.viz.images, bayestensor.cli; "
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().lower() == "svg"


# --- sub-commands loaded when used ------------------------------------------------------------
HEAVY_MODULES = ("torch", "pyro", "arviz", "matplotlib", "tensorly", "scipy")


def test_help_imports_no_heavy_library():
    """``bayestensor --help`` lists every command without importing PyTorch, Pyro, ArviZ,
    matplotlib or TensorLy (they cost seconds; the listing needs none of them)."""
    code = ("import sys\n"
            "from bayestensor.cli import main\n"
            "try:\n"
            "    main(['--help'])\n"
            "except SystemExit as exit:\n"
            "    assert exit.code == 0, exit.code\n"
            f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    *listing, loaded = out.stdout.strip().splitlines()
    assert loaded == "[]"
    from bayestensor.cli.main import COMMANDS
    listed = [line.split()[0] for line in listing[listing.index("Commands:") + 1:]
              if line.startswith("  ") and not line.startswith("   ")]
    assert listed == sorted(COMMANDS)


def test_every_lazy_command_loads_under_its_name():
    """Each entry of the lazy map is the click command of that name, and the group lists
    exactly the map."""
    import click

    from bayestensor.cli.main import COMMANDS, load_command
    ctx = click.Context(main)
    assert main.list_commands(ctx) == sorted(COMMANDS)
    for name, (target, summary) in COMMANDS.items():
        cmd = load_command(target)
        assert isinstance(cmd, click.Command) and cmd.name == name
        assert main.get_command(ctx, name) is cmd
        assert summary.endswith(".") and len(summary) < 70
    assert main.get_command(ctx, "no-such-command") is None


@pytest.mark.parametrize("args", [["demo"], ["complete"], ["regress"], ["compress"], ["report"],
                                  ["compare"],
                                  ["dynamics"], ["dynamics", "fa-vs-gd"],
                                  ["dynamics", "overparam"], ["dynamics", "diagonal"],
                                  ["dynamics", "all"]])
def test_every_command_help(args):
    res = CliRunner().invoke(main, [*args, "--help"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert res.output.startswith(f"Usage: main {' '.join(args)} ")


def test_compare_refuses_a_single_run_naming_run_dirs(tmp_path):
    res = CliRunner().invoke(main, ["compare", str(tmp_path), "--out", str(tmp_path / "c")])
    assert res.exit_code == 2 and "RUN_DIRS" in res.output and "got 1" in res.output
    assert not (tmp_path / "c").exists()


def test_commands_draw_with_agg():
    """The group selects matplotlib's Agg backend before a command runs (the user's backend is
    restored after the test)."""
    import matplotlib

    previous = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        res = CliRunner().invoke(main, ["report", "--help"])
        assert res.exit_code == 0, res.output
        assert matplotlib.get_backend().lower() == "agg"
    finally:
        matplotlib.use(previous)

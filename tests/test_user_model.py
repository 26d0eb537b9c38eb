"""Compressing a network the user already trained: loading it, and the fine-tune workflow."""

import json
import re
import pickle

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from bayestensor.cli.compress import compress
from bayestensor.data.images import load_dataset
from bayestensor.nets import metrics
from bayestensor.nets.train import predict_dense, train_dense
from bayestensor.nets.user_model import eager_from_script, load_user_model
from bayestensor.nets.workflow import FINETUNE_LR, TRAIN_LR, run_finetune

FACTORY = '''
from torch import nn

def make():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
'''


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 16), nn.Tanh(), nn.Linear(16, 10))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A dense MLP trained on digits, saved as a module file plus a state dict."""
    folder = tmp_path_factory.mktemp("user")
    (folder / "mynet.py").write_text(FACTORY)
    namespace = {}
    exec(FACTORY, namespace)  # the same architecture the file builds
    model = namespace["make"]()
    torch.manual_seed(0)
    data = load_dataset("digits")
    train_dense(model, data.x_train, data.y_train, epochs=10, batch_size=128, lr=1e-2, seed=0,
                progress=False)
    torch.save(model.state_dict(), folder / "mynet.pt")
    return folder, model.eval(), data


def test_factory_and_state_dict_give_the_trained_model(trained):
    folder, model, data = trained
    loaded = load_user_model(f"{folder / 'mynet.py'}:make", folder / "mynet.pt")
    x = data.x_test[:32]
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_torchscript_sequential_is_rebuilt_with_the_files_outputs(tmp_path):
    scripted = torch.jit.script(small_cnn().eval())
    torch.jit.save(scripted, tmp_path / "cnn.pt")
    x = torch.randn(5, 1, 8, 8)
    eager = load_user_model(tmp_path / "cnn.pt", probe=x)
    assert isinstance(eager[0], nn.Conv2d) and isinstance(eager[4], nn.Linear)
    with torch.no_grad():
        torch.testing.assert_close(eager(x), scripted(x), rtol=0, atol=1e-6)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x):
        return x + self.linear(x)


def test_torchscript_layer_that_cannot_be_rebuilt_is_named():
    with pytest.raises(ValueError, match=r"model: TorchScript layer '1' \(Residual\)"):
        eager_from_script(torch.jit.script(nn.Sequential(nn.Linear(4, 4), Residual())))


class Payload:
    def __reduce__(self):
        return (print, ("this ran",))


def test_bad_model_specs_and_state_dicts_are_named(trained, tmp_path):
    folder, _, _ = trained
    spec = f"{folder / 'mynet.py'}:make"
    with pytest.raises(ValueError, match="model: expected a TorchScript file or 'module:factory'"):
        load_user_model(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="model: .* has no callable 'build'"):
        load_user_model(f"{folder / 'mynet.py'}:build", folder / "mynet.pt")
    with pytest.raises(ValueError, match="state_dict: 'module:factory' builds an untrained"):
        load_user_model(spec)
    with pytest.raises(ValueError, match="state_dict: does not fit"):
        torch.save({"0.weight": torch.zeros(3)}, tmp_path / "wrong.pt")
        load_user_model(spec, tmp_path / "wrong.pt")
    (tmp_path / "code.pt").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ValueError, match="state_dict: .* is not a plain state dict"):
        load_user_model(spec, tmp_path / "code.pt")


def test_a_users_failing_code_is_named_not_a_traceback(trained, tmp_path):
    weights = trained[0] / "mynet.pt"
    (tmp_path / "needs_args.py").write_text("from torch import nn\nmake = nn.Linear\n")
    with pytest.raises(ValueError, match=r"model: .*needs_args.py:make\(\) failed: TypeError: "
                                         r".*\(the factory is called with no arguments\)"):
        load_user_model(f"{tmp_path / 'needs_args.py'}:make", weights)
    (tmp_path / "broken.py").write_text("1 / 0\n")
    with pytest.raises(ValueError, match="model: running .*broken.py' failed: ZeroDivisionError"):
        load_user_model(f"{tmp_path / 'broken.py'}:make", weights)
    # missing weights are named before the user's code runs (this file would fail to run)
    with pytest.raises(ValueError, match="state_dict: no such file"):
        load_user_model(f"{tmp_path / 'broken.py'}:make", tmp_path / "absent.pt")


def test_compress_names_a_missing_data_file(tmp_path):
    res = CliRunner().invoke(compress, [str(tmp_path / "absent.npz"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "Invalid value for 'DATA': no such file" in res.output


def test_cli_finetunes_a_users_model_and_reports_before_and_after(trained, tmp_path):
    folder, model, data = trained
    out = tmp_path / "run"
    res = CliRunner().invoke(compress, [
        "digits", "--model", f"{folder / 'mynet.py'}:make", "--state-dict",
        str(folder / "mynet.pt"), "--format", "cp", "--max-rank", "8", "--epochs", "3",
        "--scratch-epochs", "1", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    network = json.loads((out / "network.json").read_text())
    m = network["metrics"]
    assert list(m) == ["dense", "decomposed", "map", "map_pruned", "scratch_pruned"]
    # the dense row is the user's model itself, evaluated independently here
    own = metrics.accuracy(predict_dense(model, data.x_test), data.y_test)
    assert m["dense"]["accuracy"] == pytest.approx(own)
    assert m["map"]["accuracy"] > m["decomposed"]["accuracy"] + 0.05  # the fine-tune helped
    assert set(network["train_seconds"]) == {"finetune", "scratch"}
    assert network["training"]["mode"] == "finetune"
    # the fine-tune's own rate, and the training rate for the run from scratch
    assert (network["training"]["lr"], network["training"]["scratch_lr"]) == (FINETUNE_LR,
                                                                              TRAIN_LR)
    assert (out / "model.pt").exists() and "fine-tune" in (out / "summary.md").read_text()
    assert "finetune wall time" in res.output


def test_interrupted_run_from_scratch_keeps_the_finished_fine_tune(trained, tmp_path,
                                                                   monkeypatch):
    import bayestensor.nets.workflow as workflow
    from bayestensor import RunInterrupted
    _, model, data = trained
    original, calls = workflow.fit_net, []

    def fit(*args, **kwargs):  # the fine-tune runs; the run from scratch is interrupted
        calls.append(kwargs["epochs"])
        if len(calls) == 2:
            raise RunInterrupted("fit_net map: interrupted at step 3 of 160")
        return original(*args, **kwargs)

    monkeypatch.setattr(workflow, "fit_net", fit)
    out = tmp_path / "run"
    with pytest.raises(RunInterrupted, match="fine-tune finished and its run folder .* complete"), \
            pytest.warns(UserWarning, match="run from scratch was interrupted"):
        run_finetune(data, out, model, fmt="cp", epochs=1, scratch_epochs=2, progress=False)
    assert calls == [1, 2]
    network = json.loads((out / "network.json").read_text())
    assert list(network["metrics"]) == ["dense", "decomposed", "map", "map_pruned"]
    assert set(network["train_seconds"]) == {"finetune"}
    assert any("run from scratch was interrupted" in w for w in network["warnings"])
    assert "run from scratch was interrupted" in (out / "summary.md").read_text()
    assert (out / "model.pt").exists() and not (out / "model-interrupted.pt").exists()


@pytest.mark.parametrize("bad", [{"lr": 0.0}, {"lr": "0.02"},
                                 {"scratch_epochs": 1, "scratch_lr": -1e-2}])
def test_finetune_refuses_a_bad_rate_before_any_work(trained, tmp_path, bad):
    _, model, data = trained
    name = "scratch_lr" if "scratch_lr" in bad else "lr"
    with pytest.raises(ValueError, match=f"^{name}: expected a finite number"):
        run_finetune(data, tmp_path / "run", model, epochs=1, progress=False, **bad)
    assert not (tmp_path / "run").exists()


def test_cli_refuses_options_of_the_other_mode(tmp_path):
    res = CliRunner().invoke(compress, ["digits", "--state-dict", str(tmp_path / "x.pt"),
                                        "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "--state-dict and --scratch-epochs go with --model" in res.output
    res = CliRunner().invoke(compress, ["digits", "--model", "m.py:make", "--hidden", "64",
                                        "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "--hidden describe a network to train" in res.output
    res = CliRunner().invoke(compress, ["digits", "--model", "m.py:make", "--dense-lr", "0.01",
                                        "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "--dense-lr trains the dense baseline" in res.output
    assert not (tmp_path / "o").exists()


WRONG_SHAPES = '''
from torch import nn

def other_inputs():
    return nn.Sequential(nn.Flatten(), nn.Linear(100, 10))

def fewer_classes():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 7))
'''


@pytest.mark.parametrize("factory,message", [
    ("other_inputs", r"model: fails on the data's images \(a batch of shape \(64, 1, 8, 8\)\): "
                     r"RuntimeError: mat1 and mat2 shapes cannot be multiplied \(64x64 and "
                     r"100x10\)$"),
    ("fewer_classes", r"model: gives outputs of shape \(64, 7\) for a batch of shape "
                      r"\(64, 1, 8, 8\), expected \(64, 10\): one score per class")])
@pytest.mark.parametrize("form", ["factory", "torchscript"])
def test_a_model_for_other_images_or_classes_is_named_before_any_work(tmp_path, factory,
                                                                      message, form):
    """Both forms of the command line, and run_finetune for a module given directly: one
    line naming the shapes, no run folder, no traceback from deep in the fine-tune."""
    (tmp_path / "wrong.py").write_text(WRONG_SHAPES)
    namespace = {}
    exec(WRONG_SHAPES, namespace)
    model = namespace[factory]()
    if form == "factory":
        torch.save(model.state_dict(), tmp_path / "w.pt")
        args = ["--model", f"{tmp_path / 'wrong.py'}:{factory}", "--state-dict",
                str(tmp_path / "w.pt")]
    else:
        torch.jit.save(torch.jit.script(model), tmp_path / "scripted.pt")
        args = ["--model", str(tmp_path / "scripted.pt")]
    res = CliRunner().invoke(compress, ["digits", *args, "--out", str(tmp_path / "o"), "--quiet"])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert re.search("^Error: " + message, res.output.strip().splitlines()[-1]), res.output
    assert not (tmp_path / "o").exists()
    model.train()
    with pytest.raises(ValueError, match=message):
        run_finetune(load_dataset("digits"), tmp_path / "run", model, epochs=1, progress=False)
    assert model.training and not (tmp_path / "run").exists()

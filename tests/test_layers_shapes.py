"""Tensorized layers as drop-in PyTorch modules: nn.Linear / nn.Conv2d shapes and numbers,
the particle broadcasting rule, DataLoaders, plain training loops, and fair compression runs."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bayestensor.data.images import load_digits
from bayestensor.formats import get_format
from bayestensor.nets import (TensorizedConv2d, TensorizedLinear, fit_net, predict_dense,
                              tensorize, tensorized_shape, train_dense)
from bayestensor.nets import metrics
from bayestensor.nets.workflow import (NOT_PRUNED, TRAIN_LRS, VI_LR, build_model, default_lr,
                                       run_compress, tensorize_smaller)

torch.set_num_threads(1)
FORMATS = ["ttm", "cp", "tucker", "tt"]
LEADS = [(), (5,), (4, 3), (2, 3, 2)]  # (in,), (B, in), (B, T, in), more leading dims


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("lead", LEADS)
def test_one_particle_acts_like_nn_linear_with_its_weight(fmt, lead):
    layer = TensorizedLinear(24, 20, fmt, max_rank=3, seed=0)
    with torch.no_grad():
        layer.particle_bias.normal_()
    lin = nn.Linear(24, 20)
    with torch.no_grad():
        lin.weight.copy_(layer.weight)
        lin.bias.copy_(layer.bias)
    assert layer.weight.shape == lin.weight.shape and layer.bias.shape == lin.bias.shape
    x = torch.randn(*lead, 24)
    y = layer(x)
    assert y.shape == lin(x).shape == (*lead, 20)
    torch.testing.assert_close(y, lin(x), atol=1e-5, rtol=1e-5)
    # the weight view is the low-rank tensor itself, reshaped (checked without the layer)
    w = get_format(fmt)(layer.tensor_shape, [p[0] for p in layer.factors]).reconstruct()
    torch.testing.assert_close(layer.weight, w.reshape(24, 20).T)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("lead", LEADS)
def test_several_particles_broadcast_a_shared_input(fmt, lead):
    layer = TensorizedLinear(24, 20, fmt, max_rank=3, num_particles=3, seed=0)
    with torch.no_grad():
        layer.particle_bias.normal_()
    assert layer.weight.shape == (3, 20, 24) and layer.bias.shape == (3, 20)
    x = torch.randn(*lead, 24)
    y = layer(x)
    assert y.shape == (3, *lead, 20)
    for p in range(3):
        torch.testing.assert_close(y[p], F.linear(x, layer.weight[p], layer.bias[p]),
                                   atol=1e-5, rtol=1e-5)
    # particle_forward: particle p maps its own input x[p]
    xp = torch.randn(3, *lead, 24)
    yp = layer.particle_forward(xp)
    for p in range(3):
        torch.testing.assert_close(yp[p], F.linear(xp[p], layer.weight[p], layer.bias[p]),
                                   atol=1e-5, rtol=1e-5)


def test_bad_inputs_name_x():
    layer = TensorizedLinear(24, 20, "ttm", max_rank=3, num_particles=2, seed=0)
    with pytest.raises(ValueError, match="x: expected 24 features"):
        layer(torch.randn(5, 23))
    with pytest.raises(ValueError, match="x: expected a leading particle dim"):
        layer.particle_forward(torch.randn(3, 5, 24))
    with pytest.raises(TypeError, match="x: expected a torch.Tensor"):
        layer([1.0] * 24)


@pytest.mark.parametrize("particles", [1, 2])
def test_conv_acts_like_nn_conv2d(particles):
    conv = TensorizedConv2d(3, 5, 3, padding=1, max_rank=2, num_particles=particles, seed=0)
    w, b = conv.weight, conv.bias
    for shape in [(3, 7, 7), (4, 3, 7, 7)]:
        x = torch.randn(*shape)
        y = conv(x)
        if particles == 1:
            torch.testing.assert_close(y, F.conv2d(x, w, b, padding=1), atol=1e-5, rtol=1e-5)
        else:
            assert y.shape == (particles, *F.conv2d(x, w[0], b[0], padding=1).shape)
            for p in range(particles):
                torch.testing.assert_close(y[p], F.conv2d(x, w[p], b[p], padding=1),
                                           atol=1e-5, rtol=1e-5)


def test_tensorized_network_takes_sequences_and_averages_probabilities():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 6))
    bnet = tensorize(model, format="tt", max_rank=3, num_particles=3, init="random",
                     min_features=1, seed=0)
    x = torch.randn(4, 7, 16)  # (B, T, features), transformer style
    outs = bnet.particle_outputs(x)
    assert outs.shape == (3, 4, 7, 6)
    first, second = bnet.net[0], bnet.net[2]
    for p in range(3):  # each particle is the dense network with that particle's weights
        h = F.relu(F.linear(x, first.weight[p], first.bias[p]))
        torch.testing.assert_close(outs[p], F.linear(h, second.weight[p], second.bias[p]),
                                   atol=1e-5, rtol=1e-5)
    logp = bnet(x)
    assert logp.shape == (4, 7, 6)
    torch.testing.assert_close(logp, outs.softmax(-1).mean(0).log(), atol=1e-5, rtol=1e-5)
    assert F.cross_entropy(bnet(x[:, 0]), torch.arange(4)).ndim == 0


def test_no_size_one_modes():
    assert tensorized_shape(784, 10, 3) == ((14, 8, 7), (5, 2))
    assert tensorized_shape(784, 10, 3, same_count=True) == ((28, 28), (5, 2))
    for fmt in FORMATS:
        for n_in, n_out in [(784, 10), (128, 10), (64, 6), (512, 12)]:
            layer = TensorizedLinear(n_in, n_out, fmt, max_rank=2, seed=0)
            assert 1 not in layer.in_shape + layer.out_shape, (fmt, layer.in_shape,
                                                               layer.out_shape)
            assert math.prod(layer.in_shape) == n_in and math.prod(layer.out_shape) == n_out


def _digits():
    d = load_digits(seed=0)
    return d.x_train.flatten(1), d.y_train, d.x_test.flatten(1), d.y_test


def _mlp(hidden=64):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def test_fit_net_takes_a_data_loader_and_gives_what_tensors_give():
    x, y = _digits()[:2]
    x, y = x[:300], y[:300]
    a = tensorize(_mlp(), format="ttm", max_rank=4, init="random", min_features=1, seed=0)
    b = tensorize(_mlp(), format="ttm", max_rank=4, init="random", min_features=1, seed=0)
    # one full batch per epoch: the order of the examples does not change the loss
    h_tensors = fit_net(a, x, y, epochs=5, batch_size=300, lr=1e-2, seed=0, progress=False)
    loader = DataLoader(TensorDataset(x, y), batch_size=300, shuffle=False)
    h_loader = fit_net(b, loader, epochs=5, lr=1e-2, seed=0, progress=False)
    assert len(h_loader["loss"]) == 5
    torch.testing.assert_close(torch.tensor(h_loader["loss"]), torch.tensor(h_tensors["loss"]),
                               atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="y: a DataLoader yields the labels"):
        fit_net(b, loader, y, epochs=1)
    bad = DataLoader(TensorDataset(x, y + 10), batch_size=100)
    with pytest.raises(ValueError, match=r"y: class labels must lie in \[0, 10\)"):
        fit_net(b, bad, epochs=1)


def test_tensorized_network_trains_in_a_plain_torch_loop():
    x, y, xt, yt = _digits()
    bnet = tensorize(_mlp(), format="ttm", max_rank=4, num_particles=2, init="random",
                     min_features=1, seed=0)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(bnet.parameters(), lr=1e-2)
    epoch_loss = []
    for _ in range(4):
        total = 0.0
        for xb, yb in loader:
            loss = F.cross_entropy(bnet(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss) * len(yb)
        epoch_loss.append(total / len(y))
    assert epoch_loss[-1] < 0.5 * epoch_loss[0], epoch_loss
    # bnet(x) is the log of the predictive probabilities predict_proba returns
    with torch.no_grad():
        torch.testing.assert_close(bnet(xt).exp(), bnet.predict_proba(xt).float(), atol=1e-5,
                                   rtol=1e-4)
    assert metrics.accuracy(bnet.predict_proba(xt), yt) > 0.8


def test_a_layer_larger_tensorized_stays_dense():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 16), nn.ReLU(),
                          nn.Linear(16, 10))
    # 16 -> 10 in Tucker (4, 4) x (5, 2) at full rank: a 160-entry core alone, 170 dense
    bnet, kept = tensorize_smaller(model, format="tucker", max_rank=8, init="random", seed=0)
    assert [row["name"] for row in kept] == ["4"]
    assert set(bnet.tensorized()) == {"0", "2"}
    specs = get_format("tucker").specs((4, 4, 5, 2), (4, 4, 5, 2))
    assert kept[0]["compressed_params"] == sum(s.numel() for s in specs) + 10
    assert kept[0]["dense_params"] == 170 and kept[0]["ratio"] < 1
    with pytest.raises(ValueError, match="max_rank"):
        tensorize_smaller(nn.Sequential(nn.Linear(8, 4)), format="tucker", max_rank=8,
                          init="random")


def _dense_oracle(data, hidden: int, lr: float, arch: str = "mlp") -> dict:
    """Test metrics of ``train_dense``'s network at ``lr``: what a compress run's dense baseline
    must equal."""
    dense = build_model(arch, data.input_shape, data.classes, hidden, 0)
    train_dense(dense, data.x_train, data.y_train, epochs=1, lr=lr, seed=0, progress=False)
    return metrics.summarize(predict_dense(dense, data.x_test), data.y_test)


def test_compress_trains_the_baseline_at_its_own_rate_when_asked(tmp_path):
    data = load_digits(seed=0)
    net = run_compress(data, tmp_path / "run", hidden=32, epochs=1, max_rank=2, lr=5e-3,
                       dense_lr=2e-2, progress=False)
    assert (net["training"]["lr"], net["training"]["dense_lr"]) == (5e-3, 2e-2)
    # the baseline is train_dense's network at dense_lr (the oracle), not at lr
    assert net["metrics"]["dense"] == pytest.approx(_dense_oracle(data, 32, 2e-2), rel=1e-6)
    assert "trained alike but for the rate: Adam, lr 0.005 (the dense baseline: 0.02)" in (
        tmp_path / "run" / "summary.md").read_text()
    with pytest.raises(ValueError, match="^dense_lr: expected a finite number"):
        run_compress(data, tmp_path / "bad", epochs=1, dense_lr=0.0, progress=False)
    assert not (tmp_path / "bad").exists()


def test_compress_trains_the_baseline_at_its_default_rate_and_warns_when_nothing_pruned(tmp_path):
    data = load_digits(seed=0)
    with pytest.warns(UserWarning, match="prior did not prune"):
        net = run_compress(data, tmp_path / "run", hidden=32, epochs=1, max_rank=2, lr=5e-3,
                           progress=False)
    assert NOT_PRUNED in net["warnings"]
    assert (net["training"]["lr"], net["training"]["dense_lr"]) == (5e-3, TRAIN_LRS["mlp"][1])
    # the baseline is the dense network trained by train_dense at the MLP's dense rate, 1e-2
    want = _dense_oracle(data, 32, 1e-2)
    assert net["metrics"]["dense"] == pytest.approx(want, rel=1e-6)
    text = (tmp_path / "run" / "summary.md").read_text()
    assert "prior did not prune" in text and "lr 0.005 (the dense baseline: 0.01)" in text
    assert f"| dense | {want['accuracy']:.4f} | {want['nll']:.4f} | {want['ece']:.4f} |" in text


@pytest.mark.filterwarnings("ignore:max_rank:UserWarning", "ignore:layer 3 kept dense")
def test_compress_trains_cp_at_forty_slices_and_the_others_at_eight_by_default(tmp_path):
    """CP's default cap is 40 (at 8 every slice of the mnist10k MLP stayed on and it lost 7
    points, docs/benchmarks.md); TT-matrix keeps 8."""
    data = load_digits(seed=0)
    cp = run_compress(data, tmp_path / "cp", fmt="cp", hidden=16, epochs=1, progress=False)
    ttm = run_compress(data, tmp_path / "ttm", hidden=16, epochs=1, progress=False)
    assert [layer["ranks_before"] for layer in cp["layers"]] == [[40]]
    assert max(max(layer["ranks_before"]) for layer in ttm["layers"]) <= 8


@pytest.mark.parametrize("arch, rates", [("mlp", (4e-2, 1e-2)), ("cnn", (1e-2, 1e-2))])
def test_compress_trains_each_network_at_its_architectures_rate_by_default(tmp_path, arch, rates):
    data = load_digits(seed=0)
    net = run_compress(data, tmp_path / "run", arch=arch, hidden=16, epochs=1, max_rank=2,
                       progress=False)
    assert (net["training"]["lr"], net["training"]["dense_lr"]) == rates == TRAIN_LRS[arch]
    # the baseline is train_dense's network at the architecture's dense rate (the oracle)
    assert net["metrics"]["dense"] == pytest.approx(_dense_oracle(data, 16, rates[1], arch),
                                                    rel=1e-6)


def test_compress_refuses_an_unknown_architecture_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="^arch"):
        run_compress(load_digits(seed=0), tmp_path / "run", arch="resnet", progress=False)
    assert not (tmp_path / "run").exists()


def test_compress_trains_vi_at_its_own_default_rate(tmp_path):
    net = run_compress(load_digits(seed=0), tmp_path / "run", method="vi", hidden=16, epochs=1,
                       max_rank=2, progress=False)
    assert (net["training"]["lr"], net["training"]["dense_lr"]) == (VI_LR, TRAIN_LRS["mlp"][1])
    assert VI_LR == 1e-2
    assert [default_lr(m, a) for m, a in [("vi", "mlp"), ("vi", "cnn"), ("svgd", "mlp"),
                                          ("sghmc", "cnn")]] == [VI_LR, VI_LR, 4e-2, 1e-2]

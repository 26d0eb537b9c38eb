"""Bayesian tensorized networks: layers vs dense oracles, particles, pruning, metrics, CLI."""

import copy
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bayestensor.io import save_tensors
from bayestensor.nets import (TensorizedConv2d, TensorizedLinear, factorize, fit_net,
                              load_exported, predict_dense, save_exported, tensorize,
                              tensorized_shape, train_dense)
from bayestensor.nets import metrics
from bayestensor.data.images import load_digits, load_dataset, load_npz, read_idx

torch.set_num_threads(1)
MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist10k.npz"


@pytest.mark.parametrize("fmt", ["ttm", "cp", "tucker", "tt"])
def test_linear_forward_equals_dense_matmul_per_particle(fmt):
    layer = TensorizedLinear(48, 30, fmt, max_rank=3, num_particles=3, seed=1)
    x = torch.randn(3, 7, 48)
    y = layer(x)
    w = layer.dense_weight()
    ref = torch.stack([F.linear(x[p], w[p].T, layer.bias[p]) for p in range(3)])
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    # stacked (P*B, in) input, as passed inside a converted network, and a single particle
    torch.testing.assert_close(layer(x.reshape(21, 48)), ref.reshape(21, 30), atol=1e-5, rtol=1e-5)
    one = copy.deepcopy(layer)
    one.factors = torch.nn.ParameterList([torch.nn.Parameter(p[1:2]) for p in layer.factors])
    one.bias = torch.nn.Parameter(layer.bias[1:2])
    torch.testing.assert_close(one(x[1]), ref[1], atol=1e-5, rtol=1e-5)


def test_conv_forward_equals_conv2d():
    conv = TensorizedConv2d(3, 6, 3, stride=2, padding=1, max_rank=2, num_particles=2, seed=0)
    x = torch.randn(2, 4, 3, 9, 9)
    w = conv.dense_weight()
    ref = torch.stack([F.conv2d(x[p], w[p], conv.bias[p], stride=2, padding=1) for p in range(2)])
    torch.testing.assert_close(conv(x), ref, atol=1e-5, rtol=1e-5)


def test_from_linear_and_conv_decomposition_at_full_rank_reproduces_dense():
    torch.manual_seed(0)
    lin = nn.Linear(16, 12)
    t = TensorizedLinear.from_linear(lin, "ttm", max_rank=12, num_modes=2)  # full TT rank
    x = torch.randn(5, 16)
    torch.testing.assert_close(t(x), lin(x), atol=1e-4, rtol=1e-4)
    conv = nn.Conv2d(4, 5, 3, padding=1)
    tc = TensorizedConv2d.from_conv(conv, max_rank=5)
    xi = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(tc(xi), conv(xi), atol=1e-4, rtol=1e-4)


def test_init_scale_is_kaiming_like():
    for fmt in ["ttm", "tt", "tucker"]:
        w = TensorizedLinear(256, 256, fmt, max_rank=8, seed=0).dense_weight()
        assert 0.5 < float(w.std()) / (2 / 256) ** 0.5 < 2.0, fmt


def test_shapes():
    assert factorize(784, 4) == (7, 7, 4, 4)
    assert factorize(512, 3) == (8, 8, 8)
    assert factorize(10, 3) == (5, 2, 1)
    assert np.prod(factorize(1000, 3)) == 1000
    assert tensorized_shape(64, 128, 3) == ((4, 4, 4), (8, 4, 4))
    assert tensorized_shape(6, 4, shape=((2, 3), (2, 2))) == ((2, 3), (2, 2))
    with pytest.raises(ValueError, match="shape"):
        tensorized_shape(6, 4, shape=((2, 2), (2, 2)))
    with pytest.raises(ValueError, match="k"):
        factorize(10, 0)
    with pytest.raises(ValueError, match="format"):
        TensorizedLinear(8, 8, "blocktt")


def test_ece_matches_hand_computation():
    probs = torch.tensor([[0.9, 0.1], [0.75, 0.25], [0.3, 0.7], [0.45, 0.55]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 0])
    # 2 bins: (0, .5] empty, (.5, 1]: all 4, conf = (.9+.75+.7+.55)/4, acc = 2/4
    assert metrics.ece(probs, labels, 2) == pytest.approx(abs(0.5 - 2.9 / 4))
    # 5 bins: (.4,.6]: {0.55 wrong}; (.6,.8]: {0.75 wrong, 0.7 right}; (.8,1]: {0.9 right}
    hand = 1 / 4 * 0.55 + 2 / 4 * abs(0.5 - 0.725) + 1 / 4 * 0.1
    assert metrics.ece(probs, labels, 5) == pytest.approx(hand)
    r = metrics.reliability(probs, labels, 5)
    assert r["counts"] == [0, 0, 1, 2, 1]
    assert metrics.accuracy(probs, labels) == 0.5
    assert metrics.nll(probs, labels) == pytest.approx(-np.mean(np.log([0.9, 0.25, 0.7, 0.45])))
    assert float(metrics.entropy(torch.tensor([[0.5, 0.5]]))[0]) == pytest.approx(np.log(2))


def test_data_loader_errors(tmp_path):
    with pytest.raises(ValueError, match="path"):
        load_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="images"):
        load_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "lab.npz", images=np.zeros((4, 5, 5)), labels=np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="labels"):
        load_npz(tmp_path / "lab.npz")
    (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="IDX"):
        read_idx(tmp_path / "junk")
    with pytest.raises(ValueError, match="data"):
        load_dataset(tmp_path / "x.csv")
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=1.5)


def test_idx_reader_roundtrip(tmp_path):
    import struct
    imgs = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "f").write_bytes(struct.pack(">BBBB3I", 0, 0, 8, 3, 2, 3, 4) + imgs.tobytes())
    np.testing.assert_array_equal(read_idx(tmp_path / "f"), imgs)


@pytest.mark.skipif(not MNIST.exists(), reason="mnist10k.npz not available")
def test_mnist10k_split():
    from bayestensor.data.images import load_mnist10k
    d = load_mnist10k(MNIST)
    assert d.x_train.shape == (8000, 1, 28, 28) and d.x_test.shape == (2000, 1, 28, 28)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


@pytest.fixture(scope="module")
def digits():
    d = load_digits(seed=0)
    return d.x_train.flatten(1), d.y_train, d.x_test.flatten(1), d.y_test


@pytest.fixture(scope="module")
def dense_and_map(digits):
    xtr, ytr, xte, yte = digits
    dense = _mlp()
    train_dense(dense, xtr, ytr, epochs=60, lr=3e-3, seed=0)
    bnet = tensorize(_mlp(), format="ttm", max_rank=8, prior="gamma", init="random",
                     min_features=1, seed=0)
    fit_net(bnet, xtr, ytr, method="map", epochs=60, lr=1e-2, seed=0)
    return dense, bnet


def test_map_compresses_with_small_accuracy_loss_and_pruning_is_exact(digits, dense_and_map):
    xtr, ytr, xte, yte = digits
    dense, bnet = dense_and_map
    acc_dense = metrics.accuracy(predict_dense(dense, xte), yte)
    bnet = copy.deepcopy(bnet)
    before = bnet.predict_proba(xte)
    layers = bnet.tensorized()
    masks = {n: m.keep_masks(1e-2) for n, m in layers.items()}
    scales = {n: [s.detach()[0] for s in m.scales()] for n, m in layers.items()}
    info = bnet.prune(1e-2)
    after = bnet.predict_proba(xte)
    assert (after - before).abs().max() < 1e-5
    removed = sum(int((~k).sum()) for ks in masks.values() for k in ks)
    assert removed > 0  # the prior switched slices off
    for n, ks in masks.items():
        for k, s in zip(ks, scales[n]):  # removed slices are the ones whose scale collapsed
            if (~k).any():
                assert float(s[~k].max()) < 1e-2 * float(s.max())
        assert info[n]["ranks_after"] == [int(k.sum()) for k in ks]
    assert bnet.compression()["linear_ratio"] > 5
    exported = bnet.export()
    torch.testing.assert_close(predict_dense(exported, xte), after.float(), atol=1e-5, rtol=1e-4)
    assert not any(isinstance(m, TensorizedLinear) for m in exported.modules())


def test_accuracy_within_3_points_of_dense(digits, dense_and_map):
    """Issue target on digits: > 5x compression, accuracy within 3 points of the dense net.

    The hidden layer (64 x 128, 8,320 of the 9,610 parameters) is the one worth compressing;
    tensorizing the 128 x 10 read-out too costs 3-5 points at this size (measured: 94.0-97.1%).
    """
    xtr, ytr, xte, yte = digits
    dense = dense_and_map[0]
    bnet = tensorize(_mlp(), layers=["0"], format="ttm", max_rank=8, num_modes=2, prior="gamma",
                     init="random", seed=0)
    fit_net(bnet, xtr, ytr, method="map", epochs=60, lr=1e-2, seed=0)
    bnet.prune(1e-2)
    acc_dense = metrics.accuracy(predict_dense(dense, xte), yte)
    acc = metrics.accuracy(bnet.predict_proba(xte), yte)
    comp = bnet.compression()
    assert comp["linear_ratio"] > 5 and comp["model_ratio"] > 5, comp
    assert acc >= acc_dense - 0.03, (acc, acc_dense)


def test_export_save_load(tmp_path, digits, dense_and_map):
    xte = digits[2]
    exported = dense_and_map[1].export()
    save_exported(exported, tmp_path / "m.pt")
    loaded = load_exported(tmp_path / "m.pt", _mlp())
    torch.testing.assert_close(loaded(xte), exported(xte))
    layer = exported[0]
    torch.testing.assert_close(layer.to_dense()(xte), layer(xte), atol=1e-5, rtol=1e-4)


class _Exploit:
    """Unpickling this object would create ``marker`` (a stand-in for arbitrary code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_load_exported_refuses_a_pickle_that_runs_code(tmp_path, writer):
    marker = tmp_path / "pwned"
    blob = {"state_dict": {}, "layers": {}, "config": _Exploit(marker)}
    with open(tmp_path / "model.pt", "wb") as f:
        torch.save(blob, f) if writer == "torch" else pickle.dump(blob, f, protocol=2)
    with pytest.raises(ValueError, match="model file"):
        load_exported(tmp_path / "model.pt", _mlp())
    assert not marker.exists()


def test_load_exported_rejects_a_file_that_does_not_fit(tmp_path):
    save_tensors(tmp_path / "plain.pt", {"weights": torch.zeros(3)})
    with pytest.raises(ValueError, match="save_exported"):
        load_exported(tmp_path / "plain.pt", _mlp())


@pytest.mark.parametrize("method", ["svgd", "sghmc", "vi"])
def test_bayesian_methods_train_and_predict(digits, method):
    xtr, ytr, xte, yte = digits
    bnet = tensorize(_mlp(), format="ttm", max_rank=6, prior="gamma", init="random",
                     num_particles=1 if method == "vi" else 3, min_features=1, seed=0)
    h = fit_net(bnet, xtr, ytr, method=method, epochs=12, lr=1e-2, seed=0, num_samples=4)
    probs = bnet.predict_proba(xte)
    assert torch.allclose(probs.sum(-1), torch.ones(len(yte), dtype=probs.dtype), atol=1e-5)
    assert metrics.accuracy(probs, yte) > 0.85, method
    if method == "sghmc":
        assert len(bnet.samples) == 4
    assert np.isfinite(h["loss"]).all()


def test_rotation_raises_entropy(digits, dense_and_map):
    xte = digits[2]
    bnet = dense_and_map[1]
    imgs = xte.reshape(-1, 1, 8, 8)
    rot = metrics.rotate(imgs, 60).flatten(1)
    assert torch.allclose(metrics.rotate(imgs, 0), imgs, atol=1e-5)
    assert metrics.entropy(bnet.predict_proba(rot)).mean() > metrics.entropy(bnet.predict_proba(xte)).mean()


def test_bad_inputs(digits):
    xtr, ytr = digits[:2]
    bnet = tensorize(_mlp(), min_features=1)
    with pytest.raises(ValueError, match="method"):
        fit_net(bnet, xtr, ytr, method="nuts")
    with pytest.raises(ValueError, match="epochs"):
        fit_net(bnet, xtr, ytr, epochs=0)
    with pytest.raises(ValueError, match="layers"):
        tensorize(_mlp(), layers=["nope"])
    with pytest.raises(ValueError, match="threshold"):
        bnet.prune(2.0)


def test_cli_compress_tiny(tmp_path):
    from click.testing import CliRunner
    from bayestensor.cli.compress import compress
    out = tmp_path / "run"
    res = CliRunner().invoke(compress, ["digits", "--epochs", "2", "--hidden", "32",
                                        "--max-rank", "3", "--method", "svgd", "--particles", "2",
                                        "--out", str(out)])
    assert res.exit_code == 0, res.output
    for f in ["model.pt", "ranks.csv", "reliability.png", "run.json", "network.json"]:
        assert (out / f).exists(), f
    run = json.loads((out / "run.json").read_text())
    assert run["kind"] == "network" and run["data"]["name"] == "digits"
    net = json.loads((out / "network.json").read_text())
    assert {"layers", "linear_ratio", "model_ratio", "metrics", "reliability", "shift",
            "train_seconds"} <= set(net)
    assert {"dense", "svgd"} <= set(net["metrics"])
    row = net["layers"][0]
    assert {"name", "format", "in_shape", "out_shape", "ranks_before", "ranks_after",
            "dense_params", "compressed_params", "ratio"} <= set(row)
    bad = CliRunner().invoke(compress, [str(tmp_path / "nothing.csv"), "--out", str(out)])
    assert bad.exit_code != 0


def test_live_masks_freeze_slices_collapsed_in_one_chain_only():
    layer = TensorizedLinear(12, 8, "cp", max_rank=3, num_particles=2, seed=0, num_modes=2)
    with torch.no_grad():
        for f in layer.factors:          # slice 1 collapsed in particle 1 only
            f[1, :, 1] = 1e-9
        layer.log_scales[0][1, 1] = -30.0
    keep = layer.particle_keep_masks(1e-2)[0]
    assert keep.tolist() == [[True, True, True], [True, False, True]]
    assert layer.keep_masks(1e-2)[0].all()  # kept: alive in particle 0
    masks = layer.live_masks(1e-2)
    params = layer.particle_params()
    assert [m.shape for m in masks] == [p.shape for p in params]
    for f, m in zip(layer.factors, masks):
        assert not m[1, :, 1].any() and m[0].all() and m[1, :, [0, 2]].all()
    assert masks[len(layer.factors)].tolist() == keep.tolist()


def test_sghmc_leaves_frozen_slices_unchanged(digits):
    xtr, ytr = digits[0][:256], digits[1][:256]
    bnet = tensorize(_mlp(), layers=["0"], format="cp", max_rank=4, prior="gamma",
                     init="random", num_particles=2, num_modes=2, seed=0)
    layer = bnet.tensorized()["0"]
    with torch.no_grad():
        for f in layer.factors:
            f[1, :, 3] = 1e-9
        layer.log_scales[0][1, 3] = -12.0
    at_transition = {}
    live_masks = bnet.live_masks

    def record(threshold):  # the masks and values SGHMC starts from
        masks = live_masks(threshold)
        at_transition.update(masks=masks, values=[p.detach().clone()
                                                  for p in bnet.particle_params()])
        return masks

    bnet.live_masks = record
    fit_net(bnet, xtr, ytr, method="sghmc", epochs=4, burnin=0.25, lr=1e-3, seed=0,
            num_samples=2)
    masks, before = at_transition["masks"], at_transition["values"]
    assert any(not m.all() for m in masks)  # something was frozen
    for m, b, p in zip(masks, before, bnet.particle_params()):
        assert torch.equal(p.detach()[~m], b[~m])      # frozen: bit-identical
        if m.any():
            assert not torch.equal(p.detach()[m], b[m])  # live: moved

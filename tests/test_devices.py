"""Every inference method on every device this machine has: the CPU always, CUDA when present.

Without a GPU only the CPU runs here (CI has none); on a machine with one the same fits run on
it too, and each is checked against the CPU's answer. The SVGD case is the one that failed on
an H200 before its kernel's index vectors followed the particles' device
(``benchmarks/gpu_check.py``, ``docs/benchmarks.md``).
"""

import pytest
import torch
from torch import nn

import bayestensor as bt
from bayestensor.nets import fit_net, tensorize

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# the short MAP starts below stop before their drift rule is met; the test reads the answer
pytestmark = pytest.mark.filterwarnings("ignore::bayestensor.infer.baselines.NotConvergedWarning")
#: Short runs of each method (enough to land near the answer, not to converge fully).
METHODS = {
    "map": dict(method="map", map_hold=None, num_steps=300),
    "sghmc": dict(method="sghmc", num_chains=2, num_samples=100, num_warmup=100,
                  map_hold=None, map_steps=200),
    # after 200 mini-batch Adam steps a chain can start with a switched-off slice's precision
    # at 1e6 and its norm not yet near zero: with Hutchinson's estimate of that precision's
    # curvature the first step overflowed here (SGHMC's exact_curvature)
    "sghmc_minibatch": dict(method="sghmc", num_chains=2, num_samples=100, num_warmup=100,
                            batch_size=300, map_hold=None, map_steps=200),
    "svgd": dict(method="svgd", num_samples=10, num_steps=150, map_hold=None, map_steps=200),
    "vi": dict(method="vi", num_steps=300, map_steps=200),
}


@pytest.fixture(scope="module")
def data():
    return bt.data.synthetic_tensor((12, 12, 12), rank=2, snr_db=20, observed=0.5, n_test=200,
                                    seed=0)


@pytest.fixture(scope="module")
def cpu_errors(data):
    return {name: _heldout_error(data, "cpu", options) for name, options in METHODS.items()}


def _heldout_error(data, device, options):
    model = bt.TensorCompletion(data.shape, format="cp", max_rank=4)
    post = bt.fit(model, data.train, seed=0, progress=False, device=device, **options)
    assert all(v.device.type == "cpu" for v in post.samples.values())  # draws come back
    return data.relative_error(post.predict(data.test.indices).mean)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_fits_on_every_device(data, cpu_errors, device, name):
    error = _heldout_error(data, device, METHODS[name])
    # rank 2 at 20 dB, half observed: every method lands at 0.033-0.036 on the CPU; on another
    # device only the random streams differ
    assert error < 0.05, (name, device, error)
    assert error == pytest.approx(cpu_errors[name], abs=0.01)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["map", "svgd"])
def test_fit_net_trains_on_every_device(device, method):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 16, generator=gen)
    y = x[:, :3].argmax(1)
    torch.manual_seed(0)
    bnet = tensorize(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3)),
                     layers=["0"], format="ttm", max_rank=3, seed=0,
                     num_particles=1 if method == "map" else 3).to(device)
    fit_net(bnet, x.to(device), y.to(device), method=method, epochs=20, batch_size=64, seed=0,
            progress=False)
    probs = bnet.predict_proba(x.to(device))
    assert probs.device.type == device
    accuracy = float((probs.argmax(1).cpu() == y).float().mean())
    assert accuracy > 0.8, (method, device, accuracy)  # chance is 1/3

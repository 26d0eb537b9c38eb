"""bayestensor next to TensorLy-Torch, whose import switches TensorLy's global backend.

``import tltorch`` calls ``tl.set_backend("pytorch")``. Our TensorLy calls (the SVD starting
points) pin NumPy for their own thread only, and ``to_tensorly`` follows whatever backend the
user has. The end-to-end check runs in a fresh interpreter that imports ``tltorch`` first, so
the switched backend cannot leak into other tests; the in-process tests restore the backend in
a ``finally``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import tensorly as tl
import torch

import bayestensor as bt
from bayestensor.formats.decompose import cp_start, numpy_backend

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("tltorch") is None,
                       reason="tensorly-torch is not installed (test extra)"),
    # The fits are deliberately tiny; only their numbers matter here.
    pytest.mark.filterwarnings("ignore::bayestensor.infer.baselines.NotConvergedWarning"),
]

#: format -> (shape, class, TensorLy's reconstruction of that format)
CASES = {
    "cp": ((5, 4, 3), bt.CPTensor, tl.cp_to_tensor),
    "tucker": ((5, 4, 3), bt.TuckerTensor, tl.tucker_to_tensor),
    "tt": ((5, 4, 3), bt.TTTensor, tl.tt_to_tensor),
    "ttm": ((4, 2, 4, 2), bt.TTMatrix, tl.tt_matrix_to_tensor),
}
#: The cheapest settings of MAP and of one sampler (SVGD particles started at the MAP).
METHODS = {
    "map": dict(num_steps=30, map_hold=None),
    "svgd": dict(num_samples=3, num_steps=5, map_steps=20, map_hold=None),
}

# Run in a fresh interpreter: ``tltorch`` is imported before anything else.
CHILD = textwrap.dedent('''
    import tltorch  # noqa: F401  (sets TensorLy's backend to pytorch)
    import sys
    import numpy as np
    import tensorly as tl
    import torch
    import bayestensor as bt
    sys.path.insert(0, sys.argv[2])
    from test_tltorch import CASES, METHODS, problem

    out = {"backend_before": tl.get_backend()}
    for fmt, (shape, cls, to_tensor) in CASES.items():
        dense, mask = problem(shape)
        for method, options in METHODS.items():
            post = bt.fit(bt.TensorCompletion(shape, format=fmt, max_rank=2), (dense, mask),
                          method=method, seed=0, progress=False, **options)
            out[f"{fmt}/{method}/mean"] = post.predict_dense()[0]
        low = post.low_rank()
        obj = low.to_tensorly()
        rebuilt = to_tensor(obj)
        out[f"{fmt}/is_torch"] = isinstance(rebuilt, torch.Tensor)
        out[f"{fmt}/tensorly"] = tl.to_numpy(rebuilt)
        out[f"{fmt}/ours"] = low.reconstruct().numpy()
        out[f"{fmt}/back"] = cls.from_tensorly(obj).reconstruct().numpy()
    out["backend_after"] = tl.get_backend()
    np.savez(sys.argv[1], **out)
''')


def problem(shape):
    """A small completion problem: rank-2-ish data, 70% of entries observed."""
    rng = np.random.default_rng(0)
    dense = rng.normal(size=shape)
    return dense, rng.random(shape) < 0.7


@pytest.fixture
def pytorch_backend():
    """TensorLy's pytorch backend for one test, as after ``import tltorch``; restored after."""
    previous = tl.get_backend()
    try:
        tl.set_backend("pytorch")
        yield
    finally:
        tl.set_backend(previous)


@pytest.mark.slow  # a fresh interpreter and eight small fits: ~50 s on two busy cores
def test_fit_and_roundtrip_after_import_tltorch(tmp_path):
    """Every format fits (MAP and SVGD) with tltorch imported first, to the same numbers as
    under NumPy, and round-trips through TensorLy's own reconstructions."""
    result = tmp_path / "child.npz"
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", CHILD, str(result),
                           str(Path(__file__).parent)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    child = dict(np.load(result))
    assert str(child["backend_before"]) == "pytorch"
    assert str(child["backend_after"]) == "pytorch"  # the user's backend is left alone
    assert tl.get_backend() == "numpy"
    for fmt, (shape, _, _) in CASES.items():
        dense, mask = problem(shape)
        for method, options in METHODS.items():
            # Oracle: the same fit in this process, under TensorLy's NumPy backend.
            post = bt.fit(bt.TensorCompletion(shape, format=fmt, max_rank=2), (dense, mask),
                          method=method, seed=0, progress=False, **options)
            np.testing.assert_allclose(child[f"{fmt}/{method}/mean"], post.predict_dense()[0],
                                       rtol=1e-6, atol=1e-6, err_msg=f"{fmt}/{method}")
        assert bool(child[f"{fmt}/is_torch"]), fmt
        np.testing.assert_allclose(child[f"{fmt}/tensorly"], child[f"{fmt}/ours"], atol=1e-6)
        np.testing.assert_allclose(child[f"{fmt}/back"], child[f"{fmt}/ours"], atol=1e-6)


@pytest.mark.parametrize("fmt", ["cp", "tucker"])
def test_map_fit_under_pytorch_backend(fmt, pytorch_backend):
    """CP and Tucker starts (TensorLy's parafac / tucker) work under the pytorch backend and
    give the same MAP fit as under NumPy; the caller's backend is unchanged."""
    shape = CASES[fmt][0]
    dense, mask = problem(shape)

    def map_mean():
        post = bt.fit(bt.TensorCompletion(shape, format=fmt, max_rank=2), (dense, mask),
                      method="map", seed=0, progress=False, **METHODS["map"])
        return post.predict_dense()[0]

    under_pytorch = map_mean()
    assert tl.get_backend() == "pytorch"
    tl.set_backend("numpy")
    try:
        under_numpy = map_mean()
    finally:
        tl.set_backend("pytorch")
    np.testing.assert_allclose(under_pytorch, under_numpy, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fmt", sorted(CASES))
def test_to_tensorly_follows_the_backend(fmt, pytorch_backend):
    """Under pytorch, to_tensorly gives torch tensors in the parameters' dtype, copies, and
    TensorLy's reconstruction equals ours; from_tensorly takes them back."""
    shape, cls, to_tensor = CASES[fmt]
    low = cls.random(shape, 2, seed=1, dtype=torch.float64)
    obj = low.to_tensorly()
    arrays = obj.factors if fmt == "tt" or fmt == "ttm" else list(obj)[1]
    assert all(isinstance(a, torch.Tensor) and a.dtype == torch.float64 for a in arrays)
    rebuilt = to_tensor(obj)
    torch.testing.assert_close(rebuilt, low.reconstruct(), atol=1e-12, rtol=0)
    arrays[0].zero_()  # a copy: the format's own parameters are untouched
    assert low.params[0].abs().sum() > 0
    back = cls.from_tensorly(obj)
    torch.testing.assert_close(back.reconstruct(), to_tensor(obj), atol=1e-12, rtol=0)


@pytest.mark.parametrize("fmt", sorted(CASES))
def test_to_tensorly_under_numpy(fmt):
    """Under TensorLy's default backend, to_tensorly gives NumPy arrays."""
    shape, cls, to_tensor = CASES[fmt]
    low = cls.random(shape, 2, seed=1, dtype=torch.float32)
    obj = low.to_tensorly()
    rebuilt = to_tensor(obj)
    assert isinstance(rebuilt, np.ndarray) and rebuilt.dtype == np.float32
    np.testing.assert_allclose(rebuilt, low.reconstruct().numpy(), atol=1e-5)


def test_cp_weights_follow_the_backend(pytorch_backend):
    """CP weights (ones when the tensor has none) are arrays of the current backend too."""
    low = bt.CPTensor.random((4, 3, 2), 3, seed=0, dtype=torch.float64)
    weights, _ = low.to_tensorly()
    torch.testing.assert_close(weights, torch.ones(3, dtype=torch.float64))


def test_starting_point_pins_numpy_in_this_thread_only(pytorch_backend):
    """A starting point decomposes under NumPy while another thread keeps seeing pytorch, and
    the caller's backend is pytorch again afterwards."""
    seen = {}
    inside = threading.Event()
    release = threading.Event()

    def other_thread():
        inside.wait(timeout=30)
        seen["other"] = tl.get_backend()
        release.set()

    worker = threading.Thread(target=other_thread)
    worker.start()
    with numpy_backend():
        seen["inside"] = tl.get_backend()
        inside.set()
        release.wait(timeout=30)
    worker.join()
    assert seen == {"inside": "numpy", "other": "pytorch"}
    assert tl.get_backend() == "pytorch"

    # The same data give the same CP start as under NumPy (a start is pinned, never switched).
    data = torch.as_tensor(problem((5, 4, 3))[0])
    under_pytorch = cp_start(data, 2, seed=0)
    tl.set_backend("numpy")
    try:
        under_numpy = cp_start(data, 2, seed=0)
    finally:
        tl.set_backend("pytorch")
    for a, b in zip(under_pytorch, under_numpy):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert tl.get_backend() == "pytorch"

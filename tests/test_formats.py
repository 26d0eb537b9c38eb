"""Low-rank formats against TensorLy's reconstructions and hand-computed counts."""

import math
import warnings

import numpy as np
import pytest
import tensorly as tl
import torch

from bayestensor.data import Observations
from bayestensor.formats import CPTensor, TTMatrix, TTTensor, TuckerTensor, get_format
from bayestensor.formats.design import linear_design
from bayestensor.formats.ranks import cap_ranks, check_param_count, rank_caps

# (format class, tensor shape, rank) -- several shapes and ranks per format.
CASES = [
    (CPTensor, (4, 5, 6), 3),
    (CPTensor, (3, 4), 2),
    (CPTensor, (2, 3, 4, 5), 4),
    (TuckerTensor, (4, 5, 6), (2, 3, 4)),
    (TuckerTensor, (3, 4), 2),
    (TuckerTensor, (2, 3, 2, 3), (1, 2, 2, 3)),
    (TTTensor, (4, 5, 6), 3),
    (TTTensor, (3, 4), [2]),
    (TTTensor, (2, 3, 4, 3), [1, 2, 3, 2, 1]),
    (TTMatrix, (2, 3, 3, 2), 2),
    (TTMatrix, (2, 3, 2, 3, 2, 2), (2, 3)),
    (CPTensor, (3, 6, 4), 2),  # the largest mode in the middle (CP reconstructs over it)
]
IDS = [f"{c.format_name}-{'x'.join(map(str, s))}-r{r}" for c, s, r in CASES]


def tensorly_dense(cls, params):
    """Dense tensor by TensorLy's own functions from one sample's raw parameters."""
    ps = [p.detach().numpy().astype(np.float64) for p in params]
    if cls is CPTensor:
        return tl.cp_to_tensor((np.ones(ps[0].shape[1]), ps))
    if cls is TuckerTensor:
        return tl.tucker_to_tensor((ps[0], ps[1:]))
    if cls is TTTensor:
        return tl.tt_to_tensor(ps)
    if cls is TTMatrix:
        return tl.tt_matrix_to_tensor(ps)
    raise AssertionError(cls)


@pytest.mark.parametrize("cls,shape,rank", CASES, ids=IDS)
def test_reconstruct_matches_tensorly(cls, shape, rank):
    x = cls.random(shape, rank, seed=1)
    assert x.batch_shape == ()
    dense = x.reconstruct()
    assert dense.dtype == torch.float32
    assert tuple(dense.shape) == shape
    np.testing.assert_allclose(dense.numpy(), tensorly_dense(cls, x.params), rtol=1e-5, atol=1e-5)
    # to_tensorly gives an object TensorLy reconstructs to the same tensor
    conv = {CPTensor: tl.cp_to_tensor, TuckerTensor: tl.tucker_to_tensor,
            TTTensor: tl.tt_to_tensor, TTMatrix: tl.tt_matrix_to_tensor}[cls]
    np.testing.assert_allclose(dense.numpy(), conv(x.to_tensorly()), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls,shape,rank", CASES, ids=IDS)
def test_batched_reconstruct_matches_tensorly_per_sample(cls, shape, rank):
    x = cls.random(shape, rank, batch_shape=(3,), seed=2)
    assert x.batch_shape == (3,)
    dense = x.reconstruct()
    assert tuple(dense.shape) == (3,) + shape
    for i in range(3):
        ref = tensorly_dense(cls, [p[i] for p in x.params])
        np.testing.assert_allclose(dense[i].numpy(), ref, rtol=1e-5, atol=1e-5)
    # the samples differ (the batch dimension is not broadcast)
    assert not torch.allclose(dense[0], dense[1])
    with pytest.raises(ValueError, match="to_tensorly"):
        x.to_tensorly()


@pytest.mark.parametrize("batch", [(), (3,)])
@pytest.mark.parametrize("cls,shape,rank", CASES, ids=IDS)
def test_entries_match_reconstruction(cls, shape, rank, batch):
    x = cls.random(shape, rank, batch_shape=batch, seed=3)
    rng = np.random.default_rng(4)
    idx = np.stack([rng.integers(0, s, size=40) for s in shape], axis=1)
    got = x.entries(idx)
    assert tuple(got.shape) == tuple(batch) + (40,)
    ref = x.reconstruct()[(Ellipsis,) + tuple(torch.as_tensor(idx).T)]
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)
    # list input and torch input give the same, as does check=False
    np.testing.assert_array_equal(x.entries(idx.tolist()).numpy(), got.numpy())
    np.testing.assert_array_equal(x.entries(torch.as_tensor(idx), check=False).numpy(),
                                  got.numpy())
    # corner entries (first and last index of every mode)
    corners = np.array([[0] * len(shape), [s - 1 for s in shape]])
    ref_c = x.reconstruct()[(Ellipsis,) + tuple(torch.as_tensor(corners).T)]
    np.testing.assert_allclose(x.entries(corners).numpy(), ref_c.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,batch", [((6, 5, 4), ()), ((6, 5, 4), (3,)), ((7, 5), (2, 2)),
                                         ((3, 4, 2, 5), (2,))])
def test_cp_entries_from_the_dense_tensor_equal_the_gathered_ones(shape, batch):
    """CP entries picked from the dense tensor (small tensors, many indices) and gathered from
    factor rows agree, weights included, and so do their gradients; entries chooses the
    dense route only when the tensor is small next to the indices."""
    from bayestensor.formats.cp import DENSE_PICK_RATIO

    gen = torch.Generator().manual_seed(0)
    factors = [torch.randn(batch + (n, 3), generator=gen, dtype=torch.float64,
                           requires_grad=True) for n in shape]
    weights = torch.rand(batch + (3,), generator=gen, dtype=torch.float64) + 0.5
    x = CPTensor(shape, factors, weights=weights)
    idx = torch.stack([torch.randint(0, n, (50,), generator=gen) for n in shape], 1)
    dense, gathered = x._entries_from_dense(idx), x._gathered_entries(idx)
    torch.testing.assert_close(dense, gathered)
    torch.testing.assert_close(dense, x.reconstruct()[(Ellipsis,) + tuple(idx.T)])
    probe = torch.randn(dense.shape, generator=gen, dtype=torch.float64)
    grads = [torch.autograd.grad((e * probe).sum(), x.params) for e in (dense, gathered)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
    calls = []
    x._entries_from_dense = lambda i: calls.append(len(i)) or gathered
    assert math.prod(shape) > DENSE_PICK_RATIO and math.prod(shape) <= DENSE_PICK_RATIO * 50
    x.entries(idx[:1], check=False), x.entries(idx, check=False)
    assert calls == [50]


def test_cp_entries_of_a_tensor_past_int64_entries_are_gathered():
    """10^7 x 10^7 x 10^5 has 10^19 entries, past int64's 9.2e18: NumPy's product of the shape
    wrapped to a negative size and sent five entries to the dense route (8 TB). The entries
    are the sums of their factor rows' products (NumPy), and the observed fraction is exact."""
    shape = (10 ** 7, 10 ** 7, 10 ** 5)
    gen = torch.Generator().manual_seed(0)
    factors = [torch.randn(n, 2, generator=gen, dtype=torch.float64) for n in shape]
    idx = torch.stack([torch.randint(0, n, (5,), generator=gen) for n in shape], 1)
    rows = [f.numpy()[i] for f, i in zip(factors, idx.T.numpy())]
    np.testing.assert_allclose(CPTensor(shape, factors).entries(idx).numpy(),
                               (rows[0] * rows[1] * rows[2]).sum(1))
    obs = Observations.from_coo(idx.numpy(), np.ones(5), shape)
    assert obs.observed_fraction == 5 / 10 ** 19


PREFIX_CASES = [(TuckerTensor, (6, 5, 4), (3, 2, 4), ()), (TuckerTensor, (5, 4, 3, 3), 2, (2, 3)),
                (TTTensor, (6, 5, 4), (3, 2), (3,)), (TTTensor, (4, 3, 5, 3), (2, 3, 2), ()),
                (TTMatrix, (3, 4, 2, 2, 3, 2), (2, 3), (2,))]


@pytest.mark.parametrize("cls,shape,rank,batch", PREFIX_CASES,
                         ids=[f"{c.format_name}-{len(s)}-{b}" for c, s, _, b in PREFIX_CASES])
def test_entries_through_every_dense_prefix_agree(cls, shape, rank, batch, monkeypatch):
    """Tucker and train entries through a dense prefix of every length (0 = the core per
    entry for Tucker; 1 = the first core for trains; all modes = the dense tensor) equal the
    reconstruction's entries in float64, and so do their gradients."""
    import bayestensor.formats.tt as tt_module
    import bayestensor.formats.tucker as tucker_module

    x = cls.random(shape, rank, batch_shape=batch, seed=5)
    x = type(x)(x.shape, [p.double().requires_grad_(True) for p in x.params])
    gen = torch.Generator().manual_seed(1)
    idx = torch.stack([torch.randint(0, n, (60,), generator=gen) for n in shape], 1)
    want = x.reconstruct()[(Ellipsis,) + tuple(idx.T)]
    probe = torch.randn(want.shape, generator=gen, dtype=torch.float64)
    want_grads = torch.autograd.grad((want * probe).sum(), x.params)
    module, chooser = ((tucker_module, "tucker_prefix_modes") if cls is TuckerTensor
                       else (tt_module, "train_prefix_modes"))
    n_cores = len(x.params) - 1 if cls is TuckerTensor else len(x.params)
    first = 0 if cls is TuckerTensor else 1
    for m in range(first, n_cores + 1):
        monkeypatch.setattr(module, chooser, lambda *args, m=m: m)
        got = x.entries(idx, check=False)
        torch.testing.assert_close(got, want)
        for a, b in zip(torch.autograd.grad((got * probe).sum(), x.params), want_grads):
            torch.testing.assert_close(a, b)


def test_dense_prefix_is_chosen_by_its_cost():
    """Many entries of a small tensor go through the whole dense tensor; a 1000^3 rank-20
    Tucker tensor at 100,000 entries contracts the core per entry (a prefix of the first mode
    gathers 400 numbers an entry, which measured slower), and a prefix never exceeds
    ``PREFIX_MAX`` elements over the batch."""
    from bayestensor.formats.prefix_entries import (PREFIX_MAX, train_prefix_modes,
                                                    tucker_prefix_modes)

    assert tucker_prefix_modes((40, 35, 30), (10, 10, 10), 11_468, 1) == 3
    assert tucker_prefix_modes((40, 35, 30), (10, 10, 10), 1, 1) == 0
    assert tucker_prefix_modes((1000,) * 3, (20,) * 3, 100_000, 1) == 0
    assert train_prefix_modes((40, 35, 30), (10, 10), 11_468, 4) == 3
    assert train_prefix_modes((40, 35, 30), (10, 10), 1, 4) == 1
    m = train_prefix_modes((1000,) * 3, (20, 20), 1_000_000, 4)
    assert m < 3 and 1000 ** m * 20 * 4 <= max(PREFIX_MAX, 1000 * 20 * 4)


@pytest.mark.parametrize("cls,shape,rank", CASES, ids=IDS)
def test_n_params_is_sum_of_parameter_sizes(cls, shape, rank):
    x = cls.random(shape, rank, batch_shape=(2,), seed=0)
    assert x.n_params() == sum(p[0].numel() for p in x.params)
    assert x.n_params() == sum(p.numel() for p in x.params) // 2
    assert x.dense_size() == math.prod(shape)
    assert x.compression_ratio() == pytest.approx(math.prod(shape) / x.n_params())


def test_random_scale_gives_entry_std():
    x = CPTensor.random((20, 20, 20), 5, scale=2.0, batch_shape=(4,), seed=0)
    assert float(x.reconstruct().std()) == pytest.approx(2.0, rel=0.15)


@pytest.mark.parametrize("rank", [3, [3, 3], (3, 3), [1, 3, 3, 1]])
def test_tt_rank_forms(rank):
    x = TTTensor.random((4, 5, 6), rank, seed=0)
    assert x.ranks == (3, 3)
    assert [tuple(c.shape) for c in x.params] == [(1, 4, 3), (3, 5, 3), (3, 6, 1)]
    m = TTMatrix.random((2, 3, 4, 2, 2, 2), rank, seed=0)
    assert m.ranks == (3, 3)
    assert [tuple(c.shape) for c in m.params] == [(1, 2, 2, 3), (3, 3, 2, 3), (3, 4, 2, 1)]


def test_tt_uneven_ranks():
    x = TTTensor.random((4, 5, 6, 3), [1, 2, 3, 2, 1], seed=0)
    assert x.ranks == (2, 3, 2)
    assert TTTensor.random((4, 5, 6, 3), [2, 3, 2], seed=0).ranks == (2, 3, 2)


# prune: (class, shape, rank, keep masks, hand-computed parameter count after pruning)
PRUNE_CASES = [
    # CP (4,5,6), R=4 -> 2 kept columns: (4 + 5 + 6) * 2
    (CPTensor, (4, 5, 6), 4, [[True, False, True, False]], (4 + 5 + 6) * 2),
    # Tucker ranks (2,3,4) -> (2,2,2): core 2*2*2, factors 4*2 + 5*2 + 6*2
    (TuckerTensor, (4, 5, 6), (2, 3, 4),
     [[True, True], [True, False, True], [False, True, False, True]],
     2 * 2 * 2 + 4 * 2 + 5 * 2 + 6 * 2),
    # TT (4,5,6,3) ranks (2,3,2) -> (1,2,2): 1*4*1 + 1*5*2 + 2*6*2 + 2*3*1
    (TTTensor, (4, 5, 6, 3), (2, 3, 2), [[True, False], [True, True, False], [True, True]],
     1 * 4 * 1 + 1 * 5 * 2 + 2 * 6 * 2 + 2 * 3 * 1),
    # TTM (2,3 | 3,2) rank 3 -> 2: 1*2*3*2 + 2*3*2*1
    (TTMatrix, (2, 3, 3, 2), 3, [[True, False, True]], 1 * 2 * 3 * 2 + 2 * 3 * 2 * 1),
]


@pytest.mark.parametrize("batch", [(), (2,)])
@pytest.mark.parametrize("cls,shape,rank,keep,expected", PRUNE_CASES,
                         ids=[c[0].format_name for c in PRUNE_CASES])
def test_prune_counts_and_zero_slices(cls, shape, rank, keep, expected, batch):
    x = cls.random(shape, rank, batch_shape=batch, seed=5)
    pruned = x.prune(keep)
    assert type(pruned) is cls
    assert pruned.n_params() == expected
    assert pruned.ranks == tuple(sum(k) for k in keep)
    assert pruned.batch_shape == tuple(batch)

    # Zero every dropped slice in one parameter carrying that rank axis: the dropped slices
    # then contribute nothing, so pruning them must not change the tensor.
    nb = len(batch)
    params = [p.clone() for p in x.params]
    for d, mask in enumerate(keep):
        dropped = [k for k, m in enumerate(mask) if not m]
        for spec, p in zip(x.param_specs, params):
            axes = [a for a, dim in spec.rank_axes.items() if dim == d]
            if axes:
                p.index_fill_(nb + axes[0], torch.tensor(dropped, dtype=torch.long), 0.0)
                break
    zeroed = cls(shape, params)
    before = zeroed.reconstruct()
    assert not torch.allclose(before, x.reconstruct(), atol=1e-3)  # zeroing mattered
    after = zeroed.prune(keep).reconstruct()
    np.testing.assert_allclose(after.numpy(), before.numpy(), rtol=1e-5, atol=1e-6)


def test_prune_empty_mask_keeps_largest_slice():
    x = CPTensor.random((4, 5, 6), 4, seed=0)
    params = [p.clone() for p in x.params]
    params[1][:, 2] *= 10.0
    x = CPTensor(x.shape, params)
    pruned = x.prune([[False] * 4])
    assert pruned.ranks == (1,)
    for p, q in zip(pruned.params, x.params):
        np.testing.assert_array_equal(p[:, 0].numpy(), q[:, 2].numpy())


def test_prune_bad_masks():
    x = TuckerTensor.random((3, 4, 5), 2, seed=0)
    with pytest.raises(ValueError, match="keep"):
        x.prune([[True, True]])
    with pytest.raises(ValueError, match=r"keep\[1\]"):
        x.prune([[True, True], [True], [True, True]])
    with pytest.raises(ValueError, match=r"keep\[0\]: expected a boolean mask of length 2"):
        CPTensor.random((3, 4, 5), 2, seed=0).prune(["x"])


@pytest.mark.parametrize("batch", [(), (3,)])
def test_cp_slice_norms_are_products_of_column_norms(batch):
    x = CPTensor.random((4, 5, 6), 3, batch_shape=batch, seed=6)
    (norms,) = x.slice_norms()
    assert tuple(norms.shape) == tuple(batch) + (3,)
    fs = [p.numpy().astype(np.float64) for p in x.params]
    expected = np.prod([np.linalg.norm(f, axis=-2) for f in fs], axis=0)
    np.testing.assert_allclose(norms.numpy(), expected, rtol=1e-5)


def test_tucker_and_tt_slice_norms():
    t = TuckerTensor.random((3, 4, 5), (2, 3, 4), seed=7)
    core = t.params[0].numpy().astype(np.float64)
    for n, norms in enumerate(t.slice_norms()):
        u = t.params[1 + n].numpy().astype(np.float64)
        g = np.moveaxis(core, n, 0).reshape(core.shape[n], -1)
        expected = np.linalg.norm(u, axis=0) * np.linalg.norm(g, axis=1)
        np.testing.assert_allclose(norms.numpy(), expected, rtol=1e-5)
    tt = TTTensor.random((3, 4, 5), (2, 3), seed=8)
    cores = [c.numpy().astype(np.float64) for c in tt.params]
    for k, norms in enumerate(tt.slice_norms()):
        left = cores[k].reshape(-1, cores[k].shape[-1])
        right = cores[k + 1].reshape(cores[k + 1].shape[0], -1)
        expected = np.linalg.norm(left, axis=0) * np.linalg.norm(right, axis=1)
        np.testing.assert_allclose(norms.numpy(), expected, rtol=1e-5)


FROM_CASES = [
    (CPTensor, (6, 7, 8), 3),
    (TuckerTensor, (4, 5, 6), (2, 3, 4)),
    (TTTensor, (4, 5, 6, 3), (2, 3, 2)),
    (TTMatrix, (2, 3, 4, 3, 2, 2), (2, 3)),
]


@pytest.mark.parametrize("cls,shape,rank", FROM_CASES, ids=[c[0].format_name for c in FROM_CASES])
def test_from_tensor_recovers_exact_low_rank(cls, shape, rank):
    truth = cls.random(shape, rank, seed=9).reconstruct().double().numpy()
    x = cls.from_tensor(truth, rank, n_iter_max=500)
    assert x.shape == shape
    assert x.ranks == cls.normalize_rank(shape, rank)
    rec = x.reconstruct().double().numpy()
    assert np.linalg.norm(rec - truth) / np.linalg.norm(truth) < 1e-4


@pytest.mark.parametrize("cls,shape,rank", FROM_CASES, ids=[c[0].format_name for c in FROM_CASES])
def test_from_tensor_with_mask_returns_right_shapes(cls, shape, rank):
    truth = cls.random(shape, rank, seed=10).reconstruct().double().numpy()
    mask = np.random.default_rng(0).random(shape) > 0.3
    data = np.where(mask, truth, np.nan)  # missing entries must not leak in
    x = cls.from_tensor(data, rank, mask=mask, n_iter_max=20)
    ranks = cls.normalize_rank(shape, rank)
    assert x.shape == shape and x.ranks == ranks and x.batch_shape == ()
    for spec, p in zip(cls.specs(shape, ranks), x.params):
        assert tuple(p.shape) == spec.shape
    rec = x.reconstruct()
    assert tuple(rec.shape) == shape
    assert bool(torch.isfinite(rec).all())


def test_from_tensor_pads_rank_beyond_data():
    truth = CPTensor.random((3, 4, 5), 2, seed=0).reconstruct().double().numpy()
    x = CPTensor.from_tensor(truth, 6)
    assert x.ranks == (6,)
    t = TuckerTensor.from_tensor(truth, (5, 5, 5))
    assert t.ranks == (5, 5, 5)
    assert bool(torch.isfinite(t.reconstruct()).all())


def test_cp_start_fits_components_beyond_the_smallest_mode():
    """A CP rank-6 tensor with a mode of size 3: an SVD start gives 3 components there, and
    the ALS must fit all 6 (a start that fitted 3 and padded the rest left a third of the
    tensor's norm unexplained, and the padded slices at 1e-6 of the data's scale)."""
    truth = CPTensor.random((3, 8, 9), 6, seed=2).reconstruct().double().numpy()
    x = CPTensor.from_tensor(truth, 6, n_iter_max=500)
    rec = x.reconstruct().double().numpy()
    assert np.linalg.norm(rec - truth) / np.linalg.norm(truth) < 1e-2
    three = CPTensor.from_tensor(truth, 3, n_iter_max=500).reconstruct().double().numpy()
    assert np.linalg.norm(three - truth) / np.linalg.norm(truth) > 0.05  # 6 are needed
    norms = np.prod([np.linalg.norm(f.double().numpy(), axis=0) for f in x.params], axis=0)
    assert norms.min() > 1e-2 * norms.max()  # no slice left at the padding's scale


@pytest.mark.parametrize("cls,shape,rank", CASES[::3], ids=IDS[::3])
def test_entries_bad_indices(cls, shape, rank):
    x = cls.random(shape, rank, seed=0)
    nd = len(shape)
    with pytest.raises(ValueError, match="indices"):
        x.entries(np.zeros((5, nd + 1), dtype=np.int64))
    with pytest.raises(ValueError, match="indices"):
        x.entries(np.zeros(nd, dtype=np.int64))
    with pytest.raises(ValueError, match="indices"):
        x.entries(np.zeros((2, nd), dtype=np.float64))
    too_big = np.zeros((3, nd), dtype=np.int64)
    too_big[1, nd - 1] = shape[-1]
    with pytest.raises(ValueError, match="indices.*out of range"):
        x.entries(too_big)
    negative = np.zeros((3, nd), dtype=np.int64)
    negative[2, 0] = -1
    with pytest.raises(ValueError, match="indices.*out of range"):
        x.entries(negative)


@pytest.mark.parametrize("cls,shape,rank", [
    (CPTensor, (3, 4, 5), 0),
    (CPTensor, (3, 4, 5), -2),
    (TuckerTensor, (3, 4, 5), (2, 0, 2)),
    (TuckerTensor, (3, 4, 5), (2, 2)),
    (TTTensor, (3, 4, 5), 0),
    (TTTensor, (3, 4, 5), [2, 0]),
    (TTTensor, (3, 4, 5), [2, 2, 2]),
    (TTMatrix, (2, 3, 2, 3), 0),
])
def test_bad_rank(cls, shape, rank):
    with pytest.raises(ValueError, match="rank"):
        cls.random(shape, rank, seed=0)


@pytest.mark.parametrize("cls,shape", [(TTTensor, (3, 4, 5)), (TTMatrix, (2, 3, 4, 2, 2, 2))])
@pytest.mark.parametrize("rank", [[2, 3, 3, 1], [1, 3, 3, 2], [2, 3, 3, 2]])
def test_tt_boundary_ranks_must_be_one(cls, shape, rank):
    with pytest.raises(ValueError, match="rank.*boundary"):
        cls.random(shape, rank, seed=0)
    with pytest.raises(ValueError, match="rank"):
        cls.from_tensor(np.ones(shape), rank)


def test_bad_shapes_and_params():
    with pytest.raises(ValueError, match="shape"):
        TTTensor.random((5,), 2)
    with pytest.raises(ValueError, match="shape"):
        TTMatrix.random((2, 3, 4), 2)
    for cls in (CPTensor, TuckerTensor, TTTensor):
        with pytest.raises(ValueError, match=r"shape: expected positive integer sizes, got \(3, -4, 5\)"):
            cls.random((3, -4, 5), 2)
        with pytest.raises(ValueError, match="shape: expected positive integer sizes"):
            cls.random((3, 4.5, 5), 2)
    x = CPTensor.random((3, 4, 5), 2, seed=0)
    with pytest.raises(ValueError, match="factor1"):
        CPTensor((3, 4, 5), [x.params[0], x.params[1][:3], x.params[2]])
    with pytest.raises(ValueError, match="params"):
        CPTensor((3, 4, 5), [x.params[0], x.params[1].expand(2, 4, 2), x.params[2]])
    with pytest.raises(ValueError, match="format"):
        get_format("parafac2")


def test_sample_and_to():
    x = TTTensor.random((3, 4, 5), 2, batch_shape=(2, 3), seed=0)
    dense = x.reconstruct()
    assert tuple(dense.shape) == (2, 3, 3, 4, 5)
    one = x.sample(4)  # flat index 4 == (1, 1)
    assert one.batch_shape == ()
    np.testing.assert_allclose(one.reconstruct().numpy(), dense[1, 1].numpy(), rtol=1e-6)
    some = x.sample(slice(2, 5))  # flat indices 2, 3, 4 as one sample dim
    assert some.batch_shape == (3,)
    np.testing.assert_allclose(some.reconstruct().numpy(),
                               dense.reshape(6, 3, 4, 5)[2:5].numpy(), rtol=1e-6)
    assert x.to(torch.float64).reconstruct().dtype == torch.float64


@pytest.mark.parametrize("batch", [(), (2,)])
@pytest.mark.parametrize("cls,shape,rank", CASES[::3], ids=IDS[::3])
def test_entries_empty_index(cls, shape, rank, batch):
    x = cls.random(shape, rank, batch_shape=batch, seed=0)
    out = x.entries(np.zeros((0, len(shape)), dtype=np.int64))
    assert tuple(out.shape) == tuple(batch) + (0,)


# --- degenerate data and the ranks a shape supports (issue 14) --------------------------------

@pytest.mark.parametrize("fmt,shape,caps", [
    ("cp", (6, 5, 4), (20,)),
    ("cp", (4, 3), (3,)),
    ("cp", (1,) * 8, (1,)),
    ("tucker", (6, 5, 4), (6, 5, 4)),
    ("tucker", (10, 2, 2), (4, 2, 2)),
    ("tt", (6, 5, 4), (6, 4)),
    ("tt", (2, 3, 4, 5), (2, 6, 5)),
    ("ttm", (4, 4, 4, 4, 4, 2), (16, 8)),
])
def test_rank_caps_by_hand(fmt, shape, caps):
    assert rank_caps(fmt, shape) == caps


def test_cap_ranks_warns_naming_the_argument_and_the_cap():
    with pytest.warns(UserWarning, match=r"max_rank: 1000 .* capped at \(6, 5, 4\)"):
        assert cap_ranks("tucker", (6, 5, 4), (1000,) * 3, 1000) == (6, 5, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cap_ranks("cp", (6, 5, 4), (3,), 3) == (3,)  # nothing capped, no warning


def test_param_count_above_the_limit_is_refused():
    check_param_count(100, "a tensor", 4, max_params=100)
    check_param_count(10**12, "a tensor", 4, max_params=None)
    with pytest.raises(ValueError, match="max_rank: 4 gives a tensor 101 parameters.*max_params=None"):
        check_param_count(101, "a tensor", 4, max_params=100)


@pytest.mark.parametrize("cls", [CPTensor, TuckerTensor, TTTensor])
def test_one_dimensional_shape_is_refused(cls):
    with pytest.raises(ValueError, match="shape: .* at least 2 modes .*1-D"):
        cls.random((10,), 2, seed=0)


@pytest.mark.parametrize("cls,rank", [(CPTensor, 3), (TuckerTensor, 3), (TTTensor, 3)])
def test_from_tensor_of_zeros_is_a_small_finite_start(cls, rank):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0 / 0 inside a decomposition either
        x = cls.from_tensor(np.zeros((6, 5, 4)), rank, mask=np.ones((6, 5, 4), dtype=bool))
    rec = x.reconstruct()
    assert bool(torch.isfinite(rec).all()) and float(rec.abs().max()) < 1e-3


@pytest.mark.parametrize("n_obs", [1, 2])
def test_cp_start_from_one_or_two_entries_is_not_singular(n_obs):
    """TensorLy's masked ALS meets a singular system here (LinAlgError); the start retries
    it with a small ridge."""
    data = np.zeros((6, 5, 4))
    mask = np.zeros((6, 5, 4), dtype=bool)
    for (i, j, k), v in list(zip([(0, 0, 0), (5, 4, 3)], [1.5, -0.5]))[:n_obs]:
        data[i, j, k], mask[i, j, k] = v, True
    x = CPTensor.from_tensor(data, 3, mask=mask, n_iter_max=30)
    assert x.ranks == (3,) and bool(torch.isfinite(x.reconstruct()).all())


def test_cp_start_of_a_rank_one_tensor_at_rank_three_keeps_the_fit():
    truth = CPTensor.random((6, 5, 4), 1, seed=0).reconstruct().double().numpy()
    x = CPTensor.from_tensor(truth, 3)
    np.testing.assert_allclose(x.reconstruct().double().numpy(), truth, atol=1e-3)


@pytest.mark.parametrize("cls,shape,rank", CASES, ids=IDS)
def test_linear_design_matches_tensorly(cls, shape, rank):
    """Column ``j`` of parameter ``k``'s design is ``<X_n, W>`` with ``p_k`` the ``j``-th unit
    array (row-major) and the other parameters kept, ``W`` by TensorLy; so ``design @
    vec(p_k)`` is every input's inner product with the tensor."""
    x = cls.random(shape, rank, seed=2)
    params = [p.double() for p in x.params]
    tensor = cls(shape, params)
    inputs = torch.randn((5,) + shape, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64)
    flat = inputs.reshape(5, -1).numpy()
    for k, p in enumerate(params):
        design = linear_design(inputs, tensor, k).numpy()
        columns = []
        for j in range(p.numel()):
            unit = torch.zeros(p.numel(), dtype=torch.float64)
            unit[j] = 1.0
            basis = params[:k] + [unit.reshape(p.shape)] + params[k + 1:]
            columns.append(flat @ tensorly_dense(cls, basis).reshape(-1))
        np.testing.assert_allclose(design, np.stack(columns, 1), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(design @ p.reshape(-1).numpy(),
                                   flat @ tensorly_dense(cls, params).reshape(-1), rtol=1e-10)


def test_linear_design_names_a_bad_index_or_input_shape():
    tensor = CPTensor.random((4, 3, 5), 2, seed=0)
    with pytest.raises(ValueError, match=r"^k: expected a parameter index in \[0, 3\)"):
        linear_design(torch.zeros(2, 4, 3, 5), tensor, 3)
    with pytest.raises(ValueError, match=r"^inputs: expected shape \(N, \*\(4, 3, 5\)\)"):
        linear_design(torch.zeros(2, 4, 3), tensor, 0)

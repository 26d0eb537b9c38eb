"""CP starts from observed entries alone (``bayestensor.formats.entry_start``).

Each piece is checked against NumPy on the dense array the entries come from (zeros where
unobserved): the diagonal-deleted Gram matrix of an unfolding, the projected core and the
per-row ridge least squares. The whole start is checked on a tensor at a sample size where
ALS from random factors does not recover it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bayestensor as bt
from bayestensor.formats import entry_start
from bayestensor.formats.cp import CPTensor


def _sparse_cp(shape, rank, n_obs, seed=0):
    gen = torch.Generator().manual_seed(seed)
    truth = CPTensor.random(shape, rank, seed=seed)
    truth = CPTensor(shape, [p.double() for p in truth.params])
    linear = torch.randperm(int(np.prod(shape)), generator=gen)[:n_obs]
    idx = torch.as_tensor(np.stack(np.unravel_index(linear.numpy(), shape), 1))
    return truth, idx, truth.entries(idx)


def _dense_with_zeros(idx, y, shape):
    dense = np.zeros(shape)
    dense[tuple(idx.numpy().T)] = y.numpy()
    return dense


def _projector(basis):
    q, _ = np.linalg.qr(np.asarray(basis))
    return q @ q.T


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_unfolding_subspace_is_numpys_top_eigenspace_of_the_diagonal_deleted_gram(mode):
    shape = (9, 7, 8)
    _, idx, y = _sparse_cp(shape, 2, 150)
    dense = _dense_with_zeros(idx, y, shape)
    unfolding = np.moveaxis(dense, mode, 0).reshape(shape[mode], -1)
    gram = unfolding @ unfolding.T
    np.fill_diagonal(gram, 0.0)
    values, vectors = np.linalg.eigh(gram)
    expected = vectors[:, np.argsort(values)[::-1][:3]]
    got = entry_start.unfolding_subspace(idx, y, shape, mode, 3)
    assert got.shape == (shape[mode], 3)
    np.testing.assert_allclose(_projector(got), _projector(expected), atol=1e-8)


def test_unfolding_subspace_uses_sparse_eigsh_above_the_dense_size(monkeypatch):
    shape = (30, 20, 20)
    _, idx, y = _sparse_cp(shape, 2, 3000)
    dense = entry_start.unfolding_subspace(idx, y, shape, 0, 2)
    monkeypatch.setattr(entry_start, "DENSE_EIGH_SIZE", 10)
    sparse = entry_start.unfolding_subspace(idx, y, shape, 0, 2)
    np.testing.assert_allclose(_projector(sparse), _projector(dense), atol=1e-6)


def test_projected_core_matches_numpy_multilinear_product(monkeypatch):
    shape = (6, 5, 4)
    _, idx, y = _sparse_cp(shape, 2, 60)
    gen = torch.Generator().manual_seed(1)
    bases = [torch.randn(s, k, generator=gen, dtype=torch.float64)
             for s, k in zip(shape, (3, 2, 4))]
    dense = _dense_with_zeros(idx, y, shape)
    expected = np.einsum("ijk,ia,jb,kc->abc", dense, *[b.numpy() for b in bases])
    monkeypatch.setattr(entry_start, "CORE_BLOCK_ELEMENTS", 16)  # several blocks of entries
    np.testing.assert_allclose(entry_start.projected_core(idx, y, bases).numpy(), expected,
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("block_elements", [2 ** 24, 40])
def test_als_rows_solve_each_rows_ridge_least_squares(monkeypatch, block_elements):
    monkeypatch.setattr(entry_start, "ALS_BLOCK_ELEMENTS", block_elements)
    shape, rank, ridge = (12, 6, 5), 3, 0.1
    gen = torch.Generator().manual_seed(2)
    # Skewed rows: row 0 holds a third of the entries, row 11 none.
    rows = torch.cat([torch.zeros(60, dtype=torch.long), torch.randint(1, 11, (120,), generator=gen)])
    idx = torch.stack([rows, torch.randint(0, 6, (180,), generator=gen),
                       torch.randint(0, 5, (180,), generator=gen)], 1)
    y = torch.randn(180, generator=gen, dtype=torch.float64)
    factors = [torch.randn(s, rank, generator=gen, dtype=torch.float64) for s in shape]
    got, fitted = entry_start.als_rows(factors, entry_start.RowGroups(idx, y, 0, 12, rank), ridge)
    design = (factors[1][idx[:, 1]] * factors[2][idx[:, 2]]).numpy()
    grams = [design[rows.numpy() == i].T @ design[rows.numpy() == i] for i in range(12)]
    lam = ridge * np.mean([np.trace(g) / rank for g in grams]) + entry_start.ALS_JITTER
    for i in range(12):
        d, t = design[rows.numpy() == i], y.numpy()[rows.numpy() == i]
        expected = np.linalg.solve(d.T @ d + lam * np.eye(rank), d.T @ t)
        np.testing.assert_allclose(got[i].numpy(), expected, rtol=1e-8, atol=1e-12)
    assert torch.all(got[11] == 0)
    groups = entry_start.RowGroups(idx, y, 0, 12, rank)
    expected_fit = (got[groups.rows] * factors[1][groups.indices[:, 1]]
                    * factors[2][groups.indices[:, 2]]).sum(1)
    torch.testing.assert_close(fitted, expected_fit)


def test_row_blocks_cover_every_row_once_within_the_budget(monkeypatch):
    monkeypatch.setattr(entry_start, "ALS_BLOCK_ELEMENTS", 60)
    rows = torch.tensor([0] * 25 + [2] * 3 + [3] * 4 + [5] * 2)
    indices = torch.stack([rows, torch.zeros_like(rows)], 1)
    groups = entry_start.RowGroups(indices, torch.zeros(34), 0, 7, rank=2)
    blocks = groups.blocks
    assert [b[:2] for b in blocks] == [(0, 1), (1, 7)]
    assert [b[2:4] for b in blocks] == [(0, 25), (25, 34)]
    assert all((end - first) * widest <= 30 or end - first == 1
               for first, end, _, _, widest in blocks)


def test_spectral_start_recovers_where_random_als_does_not():
    # 100^3, rank 5, 12,000 entries: about 2.4 n^1.5 r, noise free.
    truth, idx, y = _sparse_cp((100, 100, 100), 5, 12_000, seed=0)
    test_idx = torch.randint(0, 100, (2000, 3), generator=torch.Generator().manual_seed(9))
    clean = truth.entries(test_idx)

    def error(start):
        fit = CPTensor.from_entries(idx, y, truth.shape, 5, start=start, ridge=1e-6)
        return float((fit.entries(test_idx).double() - clean).norm() / clean.norm())

    assert error("spectral") < 0.02
    assert error("random") > 0.5


@pytest.mark.parametrize("bad, name", [
    ({"start": "svd"}, "start"), ({"n_sweeps": 0}, "n_sweeps"), ({"tol": -1.0}, "tol"),
    ({"ridge": "big"}, "ridge"), ({"indices": torch.zeros(3, 2, dtype=torch.long)}, "indices"),
    ({"indices": torch.full((3, 3), 4)}, "indices"), ({"values": torch.ones(2)}, "values"),
])
def test_from_entries_refuses_bad_input_naming_it(bad, name):
    args = {"indices": torch.zeros(3, 3, dtype=torch.long), "values": torch.ones(3), **bad}
    options = {k: v for k, v in args.items() if k not in ("indices", "values")}
    with pytest.raises(ValueError, match=name):
        CPTensor.from_entries(args["indices"], args["values"], (4, 4, 4), 2, **options)


def test_completion_too_large_to_hold_densely_starts_from_the_entries():
    # 400^3 = 6.4e7 entries, above MAX_DENSE_INIT: the start is spectral + ALS on the entries.
    shape = (400, 400, 400)
    data = bt.data.synthetic_tensor(shape, rank=3, snr_db=30, observed=60_000 / 400 ** 3,
                                    n_test=2000, seed=0)
    model = bt.TensorCompletion(shape, "cp", max_rank=5)
    model.set_data(data.train)
    values = model.init_values()
    x = model.tensor_prior.build({k: v.unsqueeze(0) for k, v in values.items()})
    pred = x.entries(data.test.indices)[0] * model.scale + model.center
    assert data.relative_error(pred) < 0.05


def test_completion_spectral_start_at_any_size_and_cp_only():
    """``init="spectral"`` starts a dense-sized CP model from the entries, as a model too
    large to hold densely starts: the same factors as ``CPTensor.from_entries`` on the
    standardized data, close to the truth; other formats refuse it, naming ``init``."""
    shape = (40, 40, 40)
    data = bt.data.synthetic_tensor(shape, rank=3, snr_db=30, observed=0.05, n_test=2000,
                                    seed=0)
    model = bt.TensorCompletion(shape, "cp", max_rank=5)
    model.set_data(data.train)
    values = model.init_values(init="spectral")
    expected = CPTensor.from_entries(model.observations.indices, model._y, shape, 5, seed=0)
    x = model.tensor_prior.build({k: v.unsqueeze(0) for k, v in values.items()})
    rec = x.reconstruct()[0]
    torch.testing.assert_close(rec, expected.reconstruct().to(rec.dtype),
                               rtol=1e-4, atol=1e-5)
    pred = x.entries(data.test.indices)[0] * model.scale + model.center
    assert data.relative_error(pred) < 0.1
    tucker = bt.TensorCompletion(shape, "tucker", max_rank=3)
    with pytest.raises(ValueError, match="init: 'spectral' starts CP models only"):
        bt.fit(tucker, data.train, method="map", init="spectral", progress=False)

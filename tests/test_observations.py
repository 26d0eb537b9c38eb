"""Observations (COO form) and the validation of data given to TensorCompletion."""

import warnings

import numpy as np
import pytest
import torch

from bayestensor import Observations, TensorCompletion
from bayestensor.data.observations import as_observations


def dense_with_nan(shape=(4, 5, 3), missing=0.4, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shape)
    mask = rng.random(shape) >= missing
    return data, mask, np.where(mask, data, np.nan)


def test_from_dense_with_nan():
    data, mask, nan_data = dense_with_nan()
    obs = Observations.from_dense(nan_data)
    assert obs.shape == (4, 5, 3)
    assert len(obs) == int(mask.sum())
    assert obs.observed_fraction == pytest.approx(mask.mean())
    assert obs.indices.dtype == torch.long and obs.values.dtype == torch.float32
    np.testing.assert_array_equal(obs.indices.numpy(), np.argwhere(mask))
    np.testing.assert_allclose(obs.values.numpy(), data[mask].astype(np.float32))


def test_from_dense_with_mask_ignores_unobserved_values():
    data, mask, _ = dense_with_nan(seed=1)
    garbage = data.copy()
    garbage[~mask] = np.inf  # unobserved: anything goes, even inf
    obs = Observations.from_dense(garbage, mask)
    assert len(obs) == int(mask.sum())
    np.testing.assert_array_equal(obs.mask(), mask)
    np.testing.assert_allclose(obs.to_dense()[mask], data[mask], rtol=1e-6)


def test_from_coo():
    idx = np.array([[0, 1], [2, 3], [1, 0]])
    obs = Observations.from_coo(idx, [1.5, -2.0, 3.25], (3, 4))
    assert obs.shape == (3, 4) and obs.ndim == 2 and len(obs) == 3
    dense = obs.to_dense()
    assert dense[0, 1] == 1.5 and dense[2, 3] == -2.0 and dense[1, 0] == 3.25
    assert np.isnan(dense).sum() == 12 - 3
    np.testing.assert_array_equal(obs.to_dense(fill=0.0).sum(), 1.5 - 2.0 + 3.25)
    assert obs.mask().sum() == 3 and obs.mask()[2, 3]


def test_dense_round_trip():
    data, mask, nan_data = dense_with_nan(shape=(3, 4, 2, 5), seed=2)
    obs = Observations.from_dense(nan_data)
    np.testing.assert_array_equal(obs.mask(), mask)
    back = obs.to_dense()
    np.testing.assert_array_equal(np.isnan(back), ~mask)
    np.testing.assert_allclose(back[mask], data[mask], rtol=1e-6)
    again = Observations.from_dense(back)
    assert torch.equal(again.indices, obs.indices) and torch.equal(again.values, obs.values)


@pytest.mark.parametrize("frac", [0.1, 0.25, 0.5])
def test_split_sizes_and_disjointness(frac):
    data, mask, nan_data = dense_with_nan(shape=(6, 7, 5), missing=0.2, seed=3)
    obs = Observations.from_dense(nan_data)
    train, test = obs.split(frac, seed=4)
    n = len(obs)
    assert len(test) == max(1, round(frac * n)) and len(train) + len(test) == n
    tr = {tuple(r) for r in train.indices.tolist()}
    te = {tuple(r) for r in test.indices.tolist()}
    assert not tr & te
    assert tr | te == {tuple(r) for r in obs.indices.tolist()}
    # values travel with their indices
    for part in (train, test):
        np.testing.assert_allclose(part.values.numpy(), nan_data[tuple(part.indices.T.numpy())],
                                   rtol=1e-6)
    # deterministic for a seed, different for another
    assert torch.equal(obs.split(frac, seed=4)[1].indices, test.indices)
    assert not torch.equal(obs.split(frac, seed=5)[1].indices, test.indices)


@pytest.mark.parametrize("frac", [0.0, 1.0, -0.1, 1.5])
def test_split_bad_fraction(frac):
    obs = Observations.from_coo([[0, 0], [1, 1]], [1.0, 2.0], (2, 2))
    with pytest.raises(ValueError, match="test_fraction"):
        obs.split(frac)


@pytest.mark.parametrize("indices,values,shape,match", [
    (np.zeros((0, 2), dtype=int), [], (3, 3), "indices.*empty"),
    ([[0, 0], [3, 1]], [1.0, 2.0], (3, 3), "indices.*out of range"),
    ([[0, 0], [-1, 1]], [1.0, 2.0], (3, 3), "indices.*out of range"),
    ([[0, 0, 0]], [1.0], (3, 3), "indices.*shape"),
    ([[0.0, 1.0]], [1.0], (3, 3), "indices.*integer"),
    ([[0, 0], [1, 1]], [1.0], (3, 3), "values.*2 values"),
    ([[0, 0], [1, 1]], [1.0, np.nan], (3, 3), "values.*not finite"),
    ([[0, 0], [1, 1]], [np.inf, 1.0], (3, 3), "values.*not finite"),
    ([[0, 0]], [1.0], (3, 0), "shape"),
    ([[0, 0]], [1.0], 5, "shape"),
])
def test_from_coo_bad_input(indices, values, shape, match):
    with pytest.raises(ValueError, match=match):
        Observations.from_coo(indices, values, shape)


def test_from_dense_bad_input():
    data, mask, nan_data = dense_with_nan()
    with pytest.raises(ValueError, match="mask.*shape"):
        Observations.from_dense(data, mask[:, :, :2])
    with pytest.raises(ValueError, match="mask.*boolean"):
        Observations.from_dense(data, mask.astype(int))
    with pytest.raises(ValueError, match="data.*inf"):
        Observations.from_dense(np.where(mask, data, np.inf))
    with pytest.raises(ValueError, match="data.*no observed"):
        Observations.from_dense(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="data"):
        Observations.from_dense(np.zeros((0, 3)))
    bad = data.copy()
    bad[mask.nonzero()[0][0], mask.nonzero()[1][0], mask.nonzero()[2][0]] = np.nan
    with pytest.raises(ValueError, match="values.*not finite"):
        Observations.from_dense(bad, mask)  # NaN at an entry the mask says is observed


def test_as_observations_forms():
    data, mask, nan_data = dense_with_nan(seed=6)
    ref = Observations.from_dense(nan_data)
    forms = [ref, nan_data, (data, mask), {"data": data, "mask": mask},
             (ref.indices.numpy(), ref.values.numpy()),
             (np.nonzero(mask), data[mask]),  # NumPy's per-mode index arrays
             {"indices": ref.indices, "values": ref.values, "shape": ref.shape}]
    for form in forms:
        obs = as_observations(form, shape=(4, 5, 3))
        assert torch.equal(obs.indices, ref.indices)
        np.testing.assert_allclose(obs.values.numpy(), ref.values.numpy())
    with pytest.raises(ValueError, match="shape"):
        as_observations((ref.indices.numpy(), ref.values.numpy()))
    with pytest.raises(ValueError, match="data.*differs"):
        as_observations(nan_data, shape=(4, 5, 4))


# --- TensorCompletion: bad input to the constructor and to set_data ------------------------

@pytest.mark.parametrize("kwargs,match", [
    ({"format": "parafac"}, "format"),
    ({"prior": "horseshoe"}, "prior"),
    ({"prior": "gamma", "prior_params": {"scale": 1.0}}, "prior_params"),
    ({"max_rank": 0}, "max_rank"),
    ({"max_rank": -3}, "max_rank"),
    ({"format": "tucker", "max_rank": [2, 0, 2]}, "max_rank"),
    ({"format": "tucker", "max_rank": [2, 2]}, "rank"),
    ({"format": "tt", "max_rank": [2, 3, 3, 1]}, "rank"),
    ({"noise_a": 0.0}, "noise_a"),
    ({"noise_b": float("inf")}, "noise_b"),
    ({"max_rank": 2.5}, "max_rank"),
    ({"max_rank": "3"}, "max_rank"),
    ({"max_rank": True}, "max_rank"),
    ({"format": "tucker", "max_rank": [2.5, 2, 2]}, "max_rank"),
    ({"standardize": "no"}, "standardize"),
    ({"standardize": 1}, "standardize"),
    ({"standardize": None}, "standardize"),
    ({"max_params": 0}, "max_params"),
    ({"max_params": 1e9}, "max_params"),
])
def test_completion_constructor_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TensorCompletion((4, 5, 3), **kwargs)


def test_completion_constructor_bad_shape():
    with pytest.raises(ValueError, match="shape"):
        TensorCompletion((4, 0, 3))
    with pytest.raises(ValueError, match="shape"):
        TensorCompletion((4, 5, 3), format="ttm")


def _set_data_cases():
    data, mask, nan_data = dense_with_nan()
    nan_at_observed = data.copy()
    i = tuple(np.argwhere(mask)[0])
    nan_at_observed[i] = np.nan
    inf_at_observed = data.copy()
    inf_at_observed[i] = np.inf
    idx = np.argwhere(mask)
    vals = data[mask]
    out_idx = idx.copy()
    out_idx[3, 1] = 5
    return [
        ("nan-coo", (idx, np.where(np.arange(len(vals)) == 2, np.nan, vals)), "values.*not finite"),
        ("inf-coo", (idx, np.where(np.arange(len(vals)) == 0, -np.inf, vals)), "values.*not finite"),
        ("nan-mask", (nan_at_observed, mask), "values.*not finite"),
        ("inf-mask", (inf_at_observed, mask), "values.*not finite"),
        ("inf-dense", np.where(mask, data, np.inf), "data.*inf"),
        ("out-of-range", (out_idx, vals), "indices.*out of range"),
        ("mask-shape-dict", {"data": data, "mask": mask[:, :4]}, "mask.*shape"),
        ("mask-shape-tuple", (data, mask[:, :4]), "mask.*shape"),
        ("empty-coo", (np.zeros((0, 3), dtype=int), np.zeros(0)), "indices.*empty"),
        ("empty-mask", (data, np.zeros_like(mask)), "data.*no observed"),
        ("all-nan", np.full((4, 5, 3), np.nan), "data.*no observed"),
        ("wrong-shape", nan_data[:, :, :2], "data.*differs"),
    ]


@pytest.mark.parametrize("data,match", [c[1:] for c in _set_data_cases()],
                         ids=[c[0] for c in _set_data_cases()])
def test_completion_set_data_bad_input(data, match):
    model = TensorCompletion((4, 5, 3), format="cp", max_rank=2)
    with pytest.raises(ValueError, match=match):
        model.set_data(data)
    assert model.observations is None  # nothing half-bound


def test_completion_set_data_standardizes():
    data, mask, nan_data = dense_with_nan(seed=7)
    model = TensorCompletion((4, 5, 3), format="cp", max_rank=2)
    with pytest.raises(RuntimeError, match="set_data"):
        model.model_args()
    model.set_data(3.0 + 10.0 * nan_data)
    idx, y = model.model_args()
    assert model.n_data() == int(mask.sum()) and idx.shape == (int(mask.sum()), 3)
    assert float(y.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(y.double().std()) == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(y.numpy() * model.scale + model.center,
                               3.0 + 10.0 * data[mask], rtol=1e-5)


# --- silently accepted input (issue 14) --------------------------------------------------------

def test_duplicate_coordinates_are_averaged_with_a_warning():
    idx = np.array([[0, 0, 0], [1, 2, 2], [0, 0, 0], [3, 4, 1], [0, 0, 0]])
    vals = np.array([1.0, 2.0, 3.0, 4.0, 8.0])
    with pytest.warns(UserWarning, match="indices: 2 duplicate index row.*1 entries"):
        obs = Observations.from_coo(idx, vals, (4, 5, 3))
    assert len(obs) == 3
    assert obs.observed_fraction == pytest.approx(3 / 60)
    dense = obs.to_dense()
    assert dense[0, 0, 0] == pytest.approx(4.0) and dense[1, 2, 2] == 2.0 and dense[3, 4, 1] == 4.0


def test_without_duplicates_the_order_and_values_are_kept_silently():
    idx = np.array([[3, 4, 1], [0, 0, 0], [1, 2, 2]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        obs = Observations.from_coo(idx, np.array([1.0, 2.0, 3.0]), (4, 5, 3))
    np.testing.assert_array_equal(obs.indices.numpy(), idx)
    np.testing.assert_array_equal(obs.values.numpy(), [1.0, 2.0, 3.0])


@pytest.mark.parametrize("dtype", [np.float64, np.int64])
def test_a_non_boolean_mask_is_refused_in_every_form(dtype):
    data, mask, _ = dense_with_nan()
    with pytest.raises(ValueError, match="mask: expected a boolean array"):
        Observations.from_dense(data, mask.astype(dtype))
    with pytest.raises(ValueError, match="mask: expected a boolean array"):
        as_observations({"data": data, "mask": mask.astype(dtype)})
    # as a pair, a non-boolean second element means (indices, values): the data are no indices
    with pytest.raises(ValueError, match="indices"):
        as_observations((data, mask.astype(dtype)), shape=data.shape)

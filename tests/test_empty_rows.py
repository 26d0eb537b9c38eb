"""The redraws of the parameter slices no observed entry reads, in every format."""

import warnings

import numpy as np
import pytest
import torch

import bayestensor as bt
from bayestensor.models.empty_rows import EmptyRows
from bayestensor.results.rank_normalized import rhat_and_bulk_ess
from bayestensor.priors import LowRankPrior

CHAINS = 4000


def _precisions(prior) -> dict:
    """Fixed slice precisions per rank dimension, distinct per slice: 0.25, 4, 1, ..."""
    levels = torch.tensor([0.25, 4.0, 1.0, 2.0])
    return {site: levels[:r].expand(CHAINS, r) for site, r in zip(prior.hyper_sites, prior.ranks)}


def _expected_variance(fmt: str, name: str, precisions: list, shape) -> np.ndarray:
    """Each entry's prior variance written out per format (not through ``entry_std``)."""
    v = [1.0 / p[0].numpy() for p in precisions]
    k = int(name[-1])
    if fmt in ("cp", "tucker"):
        rank_dim = 0 if fmt == "cp" else k
        return np.broadcast_to(v[rank_dim], (shape[k], len(v[rank_dim])))
    n = len(precisions) + 1
    left = v[k - 1] if k > 0 else np.ones(1)
    right = v[k] if k < n - 1 else np.ones(1)
    if fmt == "tt":
        return left[:, None, None] * np.ones(shape[k])[None, :, None] * right[None, None, :]
    cols = shape[n + k]
    return left[:, None, None, None] * np.ones((shape[k], cols))[None, :, :, None] \
        * right[None, None, None, :]


@pytest.mark.parametrize("fmt, shape, indices, empty", [
    ("cp", (5, 3, 4), [[1, 0, 2], [2, 1, 0], [1, 2, 1], [4, 0, 0]], [[0, 3], [], [3]]),
    ("tucker", (5, 3, 4), [[1, 0, 2], [2, 1, 0], [1, 2, 1], [4, 0, 0]], [[0, 3], [], [3]]),
    ("tt", (5, 3, 4), [[1, 0, 2], [2, 1, 0], [1, 2, 1], [4, 0, 0]], [[0, 3], [], [3]]),
    ("ttm", (3, 2, 2, 3), [[0, 0, 1, 0], [1, 1, 0, 1], [0, 1, 1, 0]], [[2], [], [], [2]]),
])
def test_empty_slices_are_drawn_from_their_prior_at_the_slice_variances(fmt, shape, indices,
                                                                        empty):
    """Over 4,000 chains at fixed slice precisions the redrawn slices have the prior's
    variances (the product over the rank axes; within 6%), and every other slice and site
    is left as it was."""
    prior = LowRankPrior("X", shape, 3, fmt)
    redraws = EmptyRows.of(torch.tensor(indices), prior)
    assert [rows.tolist() for rows in redraws.empty] == empty
    precisions = _precisions(prior)
    values = {**precisions, **{site: torch.full((CHAINS,) + spec.shape, 7.0)
                               for site, spec in zip(prior.param_sites, prior.specs)}}
    out = redraws.redraw(values, torch.Generator().manual_seed(0))
    axes_of = prior.format_cls.index_axes(shape)
    for site, spec, axes in zip(prior.param_sites, prior.specs, axes_of):
        drawn = torch.zeros(spec.shape, dtype=torch.bool)
        for axis, mode in axes.items():
            index = [slice(None)] * len(spec.shape)
            index[axis] = empty[mode]
            drawn[tuple(index)] = True
        assert torch.all(out[site][:, ~drawn] == 7.0), site
        if drawn.any():
            expected = _expected_variance(fmt, spec.name, list(precisions.values()), shape)
            got = out[site].var(0).numpy()
            np.testing.assert_allclose(got[drawn.numpy()], expected[drawn.numpy()], rtol=0.06)
            np.testing.assert_allclose(out[site].mean(0)[drawn].numpy(), 0.0,
                                       atol=0.1 * expected.max() ** 0.5)
    for site in prior.hyper_sites:
        assert out[site] is values[site]


def test_no_redraws_when_every_index_is_observed():
    prior = LowRankPrior("X", (2, 2), 2, "tt")
    assert EmptyRows.of(torch.tensor([[0, 0], [1, 1]]), prior) is None


def _fits_with_an_empty_slice(fmt: str, num_samples: int):
    """SGHMC with and without the redraws on a 10 x 9 x 8 completion (rank 2, 40% observed,
    20 dB, max rank 3) whose first mode-0 slice is never observed; and its model and data."""
    data = bt.data.synthetic_tensor((10, 9, 8), rank=2, snr_db=20, observed=0.4, n_test=50,
                                    seed=0)
    keep = data.train.indices[:, 0] != 0
    obs = bt.Observations(data.train.indices[keep], data.train.values[keep], (10, 9, 8))
    model = bt.TensorCompletion((10, 9, 8), fmt, max_rank=3)
    kw = dict(method="sghmc", num_samples=num_samples, num_warmup=300, seed=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = bt.fit(model, obs, **kw)
        plain = bt.fit(model, obs, factor_redraws=False, **kw)
    assert post.info["empty_row_redraws"] and not post.info["factor_redraws"]
    assert not plain.info["empty_row_redraws"]
    return post, plain, model, obs


def test_sghmc_redraws_the_empty_rows_of_a_cp_completion_by_default():
    """The CP factor row of the empty slice: redrawn from its prior every 4 steps, its bulk
    ESS over 4 x 500 draws is 450 or more on the two true slices (12-72 by SGHMC's steps
    alone); its mean square is the mean slice variance, as its conditional says. Mini-batch
    runs keep the redraws."""
    post, plain, model, obs = _fits_with_an_empty_slice("cp", 500)
    row = post["X.factor0"][:, :, 0, :2].double().numpy()
    _, ess = rhat_and_bulk_ess(row)
    _, plain_ess = rhat_and_bulk_ess(plain["X.factor0"][:, :, 0, :2].double().numpy())
    assert ess.min() >= 450 and plain_ess.max() < 150
    variance = 1.0 / post["X.precision0"][:, :, :2].double().numpy()
    np.testing.assert_allclose((row ** 2).mean((0, 1)), variance.mean((0, 1)), rtol=0.25)
    with warnings.catch_warnings():  # the conditional reads no data: mini-batches redraw too
        warnings.simplefilter("ignore")
        batched = bt.fit(model, obs, method="sghmc", num_samples=20, num_warmup=20,
                         batch_size=100, seed=0, progress=False)
    assert batched.info["empty_row_redraws"]


@pytest.mark.parametrize("fmt", ["tucker", "tt"])
def test_sghmc_redraws_the_empty_slices_of_tucker_and_tt_completions(fmt):
    """The parameters of the empty slice's index (a Tucker factor row, a TT core slice) are
    redrawn by default, and their bulk ESS over 4 x 300 draws is at least 200 (8-46 by
    SGHMC's steps alone)."""
    post, plain, _, _ = _fits_with_an_empty_slice(fmt, 300)
    site = "X.factor0" if fmt == "tucker" else "X.core0"

    def row_ess(p):
        row = p[site][:, :, 0] if fmt == "tucker" else p[site][:, :, 0, 0]
        return rhat_and_bulk_ess(row.double().numpy())[1]

    assert row_ess(post).min() >= 200 and row_ess(plain).max() < 100


def test_the_report_names_the_indices_no_entry_observes():
    """A completion whose data leave three indices of mode 0 unobserved: the model lists
    them, and the report's predictions section says which, and that their entries come from
    the prior alone; a fully observed one says nothing."""
    from bayestensor.report.sections import predictions_section

    data = bt.data.synthetic_tensor((10, 9, 8), rank=2, snr_db=20, observed=0.4, n_test=20,
                                    seed=0)
    keep = data.train.indices[:, 0] >= 3
    obs = bt.Observations(data.train.indices[keep], data.train.values[keep], (10, 9, 8))
    model = bt.TensorCompletion((10, 9, 8), "cp", max_rank=3)
    post = bt.fit(model, obs, method="map", seed=0, progress=False)
    assert [rows.tolist() for rows in model.unobserved_indices()] == [[0, 1, 2], [], []]
    heldout = {"indices": data.test.indices.numpy(), "truth": data.test.values.numpy()}
    section = predictions_section(post, heldout)
    assert section["numbers"]["unobserved_indices"] == {"0": 3}
    assert "Indices with no observed entry: mode 0: 3 of 10 (0, 1, 2)" in section["markdown"]
    full = bt.TensorCompletion((10, 9, 8), "cp", max_rank=3)
    whole = predictions_section(bt.fit(full, data.train, method="map", seed=0, progress=False),
                                heldout)
    assert "unobserved_indices" not in whole["numbers"]

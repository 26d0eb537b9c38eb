"""The shared argument checks: strict types, bounds, messages that print the value as given."""

import numpy as np
import pytest
import torch

import bayestensor as bt
from bayestensor import checks
from bayestensor.checks import check_shape
from bayestensor.seeds import MAX_SEED


@pytest.mark.parametrize("value", ["3", 2.5, True, None, 0, -1])
def test_positive_int_refuses_strings_floats_bools_and_small(value):
    with pytest.raises(ValueError, match="^n: expected an integer >= 1"):
        checks.positive_int("n", value)


def test_positive_int_accepts_numpy_integers():
    assert checks.positive_int("n", np.int64(3)) == 3 and checks.positive_int("n", 0, 0) == 0


@pytest.mark.parametrize("value", ["0.1", True, np.bool_(True), None, [0.1], 0.0, -1.0,
                                   float("nan"), float("inf"), 10**400])
def test_positive_float_refuses(value):
    with pytest.raises(ValueError, match="^lr: expected a finite number"):
        checks.positive_float("lr", value)


def test_positive_float_bounds_and_zero():
    assert checks.positive_float("x", 0, allow_zero=True) == 0.0
    assert checks.positive_float("x", np.float32(0.5)) == 0.5
    assert checks.positive_float("x", 1e39) == 1e39  # no bound unless asked
    with pytest.raises(ValueError) as err:
        checks.positive_float("lr", 1e39, max_value=checks.FLOAT32_MAX)
    assert "1e+39" in str(err.value) and "inf" not in str(err.value), str(err.value)


def test_real_number_interval_ends():
    assert checks.real_number("burnin", 0.0, high=1.0, low_open=False, high_open=True) == 0.0
    with pytest.raises(ValueError, match=r"burnin: .*\[0, 1\)"):
        checks.real_number("burnin", 1.0, high=1.0, low_open=False, high_open=True)
    with pytest.raises(ValueError, match=r"lr: .*\(0, 3.40282e\+38\], got 1e\+39"):
        checks.real_number("lr", 1e39)


@pytest.mark.parametrize("value", [-1, 2**70, MAX_SEED + 1, 1.5, "3", True, None])
def test_seed_value_refuses(value):
    with pytest.raises(ValueError, match="^seed: expected an integer in"):
        checks.seed_value(value)


def test_seed_value_bounds_and_optional():
    assert checks.seed_value(MAX_SEED) == MAX_SEED and checks.seed_value(np.int32(0)) == 0
    assert checks.seed_value(None, optional=True) is None


@pytest.mark.parametrize("value", ["no", "false", 0, 1, 0.5, None])
def test_flag_refuses_all_but_bools(value):
    with pytest.raises(ValueError, match="^standardize: expected True or False"):
        checks.flag("standardize", value)


def test_flag_accepts_bools():
    assert checks.flag("x", True) is True and checks.flag("x", np.bool_(False)) is False


@pytest.mark.parametrize("value,expected", [(3, 3), (np.int64(2), 2), ([2, 3], (2, 3)),
                                            ((1, 4, 2), (1, 4, 2))])
def test_rank_value_accepts(value, expected):
    assert checks.rank_value("max_rank", value) == expected


@pytest.mark.parametrize("value", [2.5, "3", True, 0, [], [2.5, 2], [2, "3"], [2, 0], None])
def test_rank_value_refuses(value):
    with pytest.raises(ValueError, match="^max_rank: expected a positive integer"):
        checks.rank_value("max_rank", value)


@pytest.mark.parametrize("shape", [(3.5, 4), (3.0, 4), ("3", 4), (True, 4), (0, 4), (-2, 4), (),
                                   5, None, (np.float64(2), 3)])
def test_check_shape_refuses(shape):
    with pytest.raises(ValueError, match=r"^tensor_shape: expected a sequence of positive "
                                         r"integers, got"):
        check_shape(shape, "tensor_shape")


def test_check_shape_accepts_ints_numpy_ints_and_sizes():
    assert check_shape([3, np.int64(4), 5]) == (3, 4, 5)
    assert check_shape(torch.Size([2, 7])) == (2, 7)
    assert check_shape(np.zeros((6, 2)).shape) == (6, 2)


@pytest.mark.parametrize("make", [lambda s: bt.TensorCompletion(s), lambda s: bt.TensorRegression(s),
                                  lambda s: bt.data.synthetic_tensor(s, rank=2),
                                  lambda s: bt.low_rank_tensor("W", s, 2)])
def test_a_fractional_size_is_refused_not_truncated(make):
    """(3.5, 5, 4) was a (3, 5, 4) model without a word."""
    with pytest.raises(ValueError, match=r"shape: expected a sequence of positive integers, got "
                                         r"\(3\.5, 5, 4\)"):
        make((3.5, 5, 4))

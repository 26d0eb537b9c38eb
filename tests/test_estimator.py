"""The scikit-learn estimator around TensorRegression: conventions, model selection, pipelines.

Scores are checked against TensorLy's ``CPRegressor`` on the same data (the oracle) and R^2
against the formula computed with NumPy.
"""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils.estimator_checks import (check_get_params_invariance,
                                            check_no_attributes_set_in_init,
                                            check_parameters_default_constructible,
                                            check_set_params)
from tensorly.regression.cp_regression import CPRegressor

from bayestensor.data.regression import synthetic_cp_regression
from bayestensor.models.estimator import TensorRegressor

torch.set_num_threads(1)

#: MAP settings that converge on these small problems in a few hundred steps.
FAST = {"num_steps": 300, "lr": 0.1}
SHAPE = (6, 6)


@pytest.fixture(scope="module")
def data():
    return synthetic_cp_regression(SHAPE, rank=2, n_train=120, n_test=300, snr_db=10, seed=0)


def _r2(y, pred):
    return 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)


def _to_matrices(flat):
    return np.asarray(flat).reshape(-1, *SHAPE)


def test_sklearn_conventions_params_clone_and_not_fitted():
    est = TensorRegressor(max_rank=[3], method="vi", fit_options=FAST)
    for check in (check_no_attributes_set_in_init, check_get_params_invariance, check_set_params,
                  check_parameters_default_constructible):
        check("TensorRegressor", est)
    params = est.get_params()
    assert params["max_rank"] is est.max_rank and params["fit_options"] is FAST
    twin = clone(est)
    assert twin is not est and twin.get_params()["max_rank"] == [3]
    assert est.set_params(max_rank=2, method="map") is est and est.max_rank == 2
    with pytest.raises(NotFittedError):
        est.predict(np.zeros((2, *SHAPE)))
    bad = TensorRegressor(max_rank=-1)  # stored unchanged, checked by fit
    assert bad.max_rank == -1
    with pytest.raises(ValueError, match="max_rank"):
        bad.fit(np.zeros((4, *SHAPE)), np.zeros(4))
    with pytest.raises(ValueError, match="X"):
        TensorRegressor().fit(np.zeros(4), np.zeros(4))


def test_fit_predict_score_against_tensorly(data):
    est = TensorRegressor(max_rank=4, fit_options=FAST).fit(*data.train)
    assert est.coef_.shape == SHAPE and est.n_features_in_ == 36 and est.input_shape_ == SHAPE
    ours = est.score(data.X_test, data.y_test)
    assert ours == pytest.approx(_r2(data.y_test, est.predict(data.X_test)), abs=1e-12)
    tl_est = CPRegressor(weight_rank=2, verbose=0, random_state=0).fit(*data.train)
    theirs = _r2(data.y_test, tl_est.predict(data.X_test))
    assert ours >= theirs - 0.05, (ours, theirs)
    # MAP: the predictive sd is the noise sd, close to the residual sd of the training fit
    mean, std = est.predict(data.X_test[:7], return_std=True)
    assert mean.shape == std.shape == (7,)
    resid = data.train[1] - est.predict(data.train[0])
    assert np.ptp(std) == pytest.approx(0.0, abs=1e-9)
    assert std[0] == pytest.approx(resid.std(), rel=0.2)
    with pytest.raises(ValueError, match="X"):
        est.predict(np.zeros((3, 5, 6)))


def test_grid_search_prefers_a_rank_that_holds_the_truth(data):
    search = GridSearchCV(TensorRegressor(fit_options=FAST), {"max_rank": [1, 3]},
                          cv=KFold(2, shuffle=True, random_state=0))
    search.fit(*data.train)
    assert search.best_params_ == {"max_rank": 3}
    scores = search.cv_results_["mean_test_score"]
    assert scores[1] > scores[0] + 0.1  # a rank-1 W cannot fit a rank-2 truth
    assert search.best_estimator_.score(data.X_test, data.y_test) > 0.8


def test_pipeline_and_cross_val_score(data):
    X, y = data.train
    flat = X.reshape(len(X), -1)
    pipe = make_pipeline(StandardScaler(), FunctionTransformer(_to_matrices),
                         TensorRegressor(max_rank=3, fit_options=FAST))
    scores = cross_val_score(pipe, flat, y, cv=KFold(3, shuffle=True, random_state=0))
    assert scores.shape == (3,) and (scores > 0.7).all(), scores
    pipe.fit(flat, y)
    pred = pipe.predict(data.X_test.reshape(len(data.X_test), -1))
    assert _r2(data.y_test, pred) > 0.8


def test_import_bayestensor_does_not_import_sklearn():
    import subprocess
    import sys

    code = "import sys, bayestensor; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""ntkdsl.sklearn: the kernel against closed forms and the API, the estimators against the kernel-flow
formulas, and scikit-learn's own estimator checks."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.linalg

pytest.importorskip("sklearn")

from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import WhiteKernel
from sklearn.kernel_ridge import KernelRidge
from sklearn.svm import SVC
from sklearn.utils.estimator_checks import parametrize_with_checks

import ntkdsl
from ntkdsl.sklearn import NTKClassifier, NTKKernel, NTKRegressor

RELU = """\
let w = 1.5
let b = 0.3
let width = 64

network n(input = 3) {
    dense(width, w_std = w, b_std = b)
    relu
    dense(1, w_std = w, b_std = b)
}
"""
LINEAR = """\
let w = 1.3
let b = 0.4

network lin(input = 3) {
    dense(1, w_std = w, b_std = b)
}
"""


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(12, 3)), rng.normal(size=(5, 3))


# scikit-learn's estimator checks (all of those that apply to a regressor and a classifier; two
# need optional packages and skip themselves: pandas inputs, and array-API inputs).
@parametrize_with_checks([NTKRegressor(), NTKClassifier()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_kernel_is_the_networks_kernel(data):
    x, z = data
    net = ntkdsl.loads(RELU)
    for kind in ("ntk", "nngp"):
        kernel = NTKKernel(RELU, kind=kind)
        expected = getattr(net.kernels(x, z), kind)
        np.testing.assert_array_equal(kernel(x, z), expected)        # the same evaluator, the same arithmetic
        np.testing.assert_allclose(kernel.diag(x), np.diag(getattr(net.kernels(x), kind)), rtol=1e-14)  # ulps
    assert not NTKKernel(RELU).is_stationary()


def test_lets_are_the_hyperparameters(data):
    x, _ = data
    kernel = NTKKernel(RELU)
    names = {h.name: h for h in kernel.hyperparameters}
    assert set(names) == {"w", "b", "width"} and names["width"].fixed and not names["w"].fixed
    np.testing.assert_allclose(np.exp(kernel.theta), [1.5, 0.3])   # log scale, in file order
    changed = kernel.clone_with_theta(np.log([1.1, 0.7]))
    written = ntkdsl.loads(RELU.replace("w = 1.5", "w = 1.1").replace("b = 0.3", "b = 0.7"))  # the oracle: the text
    np.testing.assert_allclose(changed(x), written.ntk(x), rtol=1e-15, atol=0)   # 1.1 vs exp(log 1.1): an ulp
    assert clone(kernel).get_params() == kernel.get_params()
    copy = pickle.loads(pickle.dumps(kernel.set_params(b=0.2)))
    np.testing.assert_array_equal(copy(x), ntkdsl.loads(RELU.replace("b = 0.3", "b = 0.2")).ntk(x))
    with pytest.raises(ValueError, match="'depth' is not a number let of the spec"):
        NTKKernel(RELU, depth=3)


def test_gradient_matches_the_closed_form(data):
    x, _ = data
    w, b, d = 1.3, 0.4, 3
    dot = x @ x.T
    kernel = NTKKernel(LINEAR, kind="nngp")
    k, grad = kernel(x, eval_gradient=True)
    np.testing.assert_allclose(k, w * w * dot / d + b * b, rtol=1e-14, atol=1e-15)
    # Σ = w²·x·x'/d + b² (NTK parameterization): ∂Σ/∂log w = 2w²·x·x'/d, ∂Σ/∂log b = 2b². The central
    # difference with step h = 1e-4 in log θ is exact up to a factor sinh(2h)/(2h) = 1 + 6.7e-9.
    np.testing.assert_allclose(grad[..., 0], 2 * w * w * dot / d, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(grad[..., 1], np.full(k.shape, 2 * b * b), rtol=1e-8)
    with pytest.raises(ValueError, match="only supported when Y is None"):
        kernel(x, x, eval_gradient=True)


def test_the_kernel_in_sklearn_models(data):
    x, _ = data
    y = np.sin(x[:, 0])
    kernel = NTKKernel(RELU)
    gp = GaussianProcessRegressor(kernel + WhiteKernel(1e-2, (1e-9, 1.0)), random_state=0).fit(x, y)
    start = GaussianProcessRegressor(kernel + WhiteKernel(1e-2), optimizer=None).fit(x, y)
    assert gp.log_marginal_likelihood_value_ >= start.log_marginal_likelihood_value_   # the optimiser moved θ up
    assert SVC(kernel=kernel).fit(x, y > 0).score(x, y > 0) > 0.5
    ridge = KernelRidge(kernel=kernel, alpha=0.1).fit(x, y)
    k = ntkdsl.loads(RELU).ntk(x)
    np.testing.assert_allclose(ridge.dual_coef_, np.linalg.solve(k + 0.1 * np.eye(len(x)), y), rtol=1e-10)


def test_regressor_follows_the_gradient_flow(data):
    x, z = data
    y = np.sin(x[:, 0]) + x[:, 1]
    net = ntkdsl.loads(RELU)
    k, kz = net.ntk(x), net.ntk(z, x)
    n = len(x)
    # t = inf with a ridge: kernel ridge regression, ridge = diag_reg·trace(K)/N (KernelFlow's convention)
    ridge = 1e-3 * np.trace(k) / n
    fitted = NTKRegressor(RELU, diag_reg=1e-3).fit(x, y)
    np.testing.assert_allclose(fitted.predict(z), kz @ np.linalg.solve(k + ridge * np.eye(n), y), rtol=1e-8,
                               atol=1e-10)   # two factorisations of a matrix of condition ~1e4
    # finite t without a ridge: f_t(x*) = K* K⁻¹ (I − exp(−ηtK/N)) y  (Jacot et al. 2018; Lee et al. 2019)
    t, eta = 7.0, 0.5
    oracle = kz @ np.linalg.solve(k, (np.eye(n) - scipy.linalg.expm(-eta * t * k / n)) @ y)
    fitted = NTKRegressor(RELU, t=t, diag_reg=0.0, learning_rate=eta).fit(x, y)
    np.testing.assert_allclose(fitted.predict(z), oracle, rtol=1e-8, atol=1e-10)  # expm vs eigh: round-off
    two = NTKRegressor(RELU).fit(x, np.stack([y, -y], axis=1)).predict(z)
    np.testing.assert_allclose(two[:, 0], -two[:, 1], rtol=1e-12)    # outputs share the kernel


def test_classifier_on_two_blobs():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-2, 1, size=(20, 3)), rng.normal(2, 1, size=(20, 3))])
    labels = np.array(["left"] * 20 + ["right"] * 20)
    model = NTKClassifier(RELU, diag_reg=1e-2).fit(x, labels)
    assert list(model.classes_) == ["left", "right"]
    assert model.score(x, labels) == 1.0
    assert model.decision_function(x).shape == (40,)
    with pytest.raises(ValueError, match="X has 2 features"):
        model.predict(x[:, :2])

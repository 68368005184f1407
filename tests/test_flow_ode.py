"""Losses without a closed form: the ODE path against the closed form, explicit Euler and finite
differences."""

from pathlib import Path

import numpy as np
import pytest

import ntkdsl
from ntkdsl.flow import KernelFlow, Loss, ODEOptions, cross_entropy, squared

SPEC = Path(__file__).resolve().parents[1] / "examples" / "jacot_fig1.ntk"


@pytest.fixture(scope="module")
def problem():
    net = ntkdsl.load(SPEC)
    rng = np.random.default_rng(0)
    g, gt = rng.uniform(-np.pi, np.pi, 15), rng.uniform(-np.pi, np.pi, 4)
    x, xt = np.stack([np.cos(g), np.sin(g)], 1), np.stack([np.cos(gt), np.sin(gt)], 1)
    labels = (np.digitize(g, [-1.0, 1.0]))                # three classes by angle
    onehot = np.eye(3)[labels]
    return dict(net=net, x=x, xt=xt, onehot=onehot, k=net.ntk(x), kt=net.ntk(xt, x))


def test_squared_loss_through_the_ode_equals_the_closed_form(problem):
    k, kt, y = problem["k"], problem["kt"], problem["onehot"]
    n = len(y)
    ode = KernelFlow.from_kernels(k, y, learning_rate=2.0, diag_reg=0.01, loss=squared(n),
                                  ode=ODEOptions(rtol=1e-10, atol=1e-12))
    closed = KernelFlow.from_kernels(k, y, learning_rate=2.0, diag_reg=0.01)
    f0 = (np.full(y.shape, 0.3), np.full((len(kt), 3), -0.2))
    t = [0.0, 5.0, 60.0, 20.0]                             # unsorted on purpose
    # DOP853 at rtol 1e-10/atol 1e-12 on O(1) outputs: the global error stays ~1e-9 over t ≤ 60.
    np.testing.assert_allclose(ode.predict(kt, t, f0), closed.predict(kt, t, f0), atol=1e-8)
    np.testing.assert_allclose(ode.predict_train(t, f0), closed.predict_train(t, f0), atol=1e-8)
    np.testing.assert_allclose(ode.loss(t, f0), closed.loss(t, f0), rtol=1e-7)
    np.testing.assert_allclose(ode.eigen().components(t, f0[0]), closed.eigen().components(t, f0[0]), atol=1e-8)


def test_cross_entropy_gradient_is_the_finite_difference_of_its_value():
    rng = np.random.default_rng(1)
    f, y = rng.normal(size=(4, 3)), rng.dirichlet(np.ones(3), size=4)
    loss = cross_entropy(4)
    h = 1e-6
    fd = np.zeros_like(f)
    for idx in np.ndindex(f.shape):
        e = np.zeros_like(f)
        e[idx] = h
        fd[idx] = (loss.value(f + e, y) - loss.value(f - e, y)) / (2 * h)
    # central differences: truncation O(h²·f''') ≈ 1e-12, round-off ε·L/h ≈ 1e-10
    np.testing.assert_allclose(loss.grad(f, y), fd, atol=1e-8)


def test_cross_entropy_flow_equals_explicit_euler(problem):
    k, kt, y = problem["k"], problem["kt"], problem["onehot"]
    n, lr, t_end = len(y), 4.0, 30.0
    flow = KernelFlow(problem["net"], problem["x"], y, learning_rate=lr, loss="cross_entropy")
    got = np.concatenate([flow.predict_train(t_end), flow.predict(problem["xt"], t_end)])
    ce = cross_entropy(n)
    k_all = np.concatenate([k, kt])

    def euler(dt):                                        # df/dt = −η K ∇L on train and test rows
        f = np.zeros((n + len(kt), 3))
        for _ in range(int(round(t_end / dt))):
            f -= dt * lr * k_all @ ce.grad(f[:n], y)
        return f

    coarse, fine = euler(1.0 / 128), euler(1.0 / 256)
    # Euler is first order: the deviation from our solution must halve with dt (measured 1.8e-4 and
    # 8.9e-5; the ratio is 2 up to O(dt)), and Richardson's 2·fine − coarse, second order, must agree
    # to ~dt² ≈ 1e-5 (measured 1.3e-8; DOP853 itself is at rtol 1e-9).
    ratio = np.abs(coarse - got).max() / np.abs(fine - got).max()
    assert 1.8 < ratio < 2.2
    np.testing.assert_allclose(got, 2 * fine - coarse, atol=1e-5)
    losses = flow.loss(np.linspace(0, 200, 9))
    assert np.all(np.diff(losses) < 0)                    # gradient flow decreases the loss
    np.testing.assert_allclose(losses[0], np.log(3), rtol=1e-12)   # uniform softmax at f = 0


def test_custom_loss_pair_carries_its_own_normalisation(problem):
    k, kt, y = problem["k"], problem["kt"], problem["onehot"][:, 0]
    n = len(y)
    # ‖f − y‖²/N is twice the default loss: the flow is the closed form at twice the learning rate
    pair = (lambda f, y: float(np.sum((f - y) ** 2)) / n, lambda f, y: 2 * (f - y) / n)
    flow = KernelFlow.from_kernels(k, y, loss=pair, ode=ODEOptions(rtol=1e-10, atol=1e-12))
    closed = KernelFlow.from_kernels(k, y, learning_rate=2.0)
    t = [3.0, 40.0]
    np.testing.assert_allclose(flow.predict(kt, t), closed.predict(kt, t), atol=1e-8)  # as above
    np.testing.assert_allclose(flow.loss(t), 2 * closed.loss(t), rtol=1e-7)
    # a non-quadratic convex loss, (1/N)·Σ cosh(f − y) − 1, decreases along the flow
    cosh = Loss(lambda f, y: float(np.sum(np.cosh(f - y) - 1)) / n, lambda f, y: np.sinh(f - y) / n, "cosh")
    losses = KernelFlow.from_kernels(k, y, loss=cosh).loss(np.linspace(0, 100, 6))
    assert losses[0] == pytest.approx(np.sum(np.cosh(y) - 1) / n) and np.all(np.diff(losses) < 0)


def test_errors(problem):
    k, kt, y = problem["k"], problem["kt"], problem["onehot"]
    flow = KernelFlow.from_kernels(k, y, loss="cross_entropy")
    with pytest.raises(ValueError, match="times must be finite"):
        flow.predict(kt, np.inf)
    with pytest.raises(ValueError, match="squared loss"):
        flow.ensemble(kt, 1.0)
    with pytest.raises(ValueError, match="classes"):
        KernelFlow.from_kernels(k, y[:, 0], loss="cross_entropy")
    bad = Loss(lambda f, y: 0.0, lambda f, y: np.zeros(3))
    with pytest.raises(ValueError, match="gradient of loss 'custom' has shape"):
        KernelFlow.from_kernels(k, y, loss=bad).predict_train(1.0)
    with pytest.raises(ValueError, match="loss must be"):
        KernelFlow.from_kernels(k, y, loss=42)

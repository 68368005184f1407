"""The closed-form kernel flow against independent oracles (kernel-math.md §4).

Oracles: a fine explicit-Euler integration of the ODE, scipy.linalg.expm of the kernel, kernel
ridge regression by numpy.linalg.solve, the Gaussian-process posterior (Rasmussen & Williams 2006,
eq. 2.19), Monte Carlo over f0 ~ GP(0, Σ), and discrete gradient descent for the stability limit.
"""

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg

import ntkdsl
from ntkdsl.flow import IllConditionedWarning, KernelFlow, TestKernels

SPEC = Path(__file__).resolve().parents[1] / "examples" / "jacot_fig1.ntk"


@pytest.fixture(scope="module")
def net():
    return ntkdsl.load(SPEC)


def circle(n, seed):
    g = np.random.default_rng(seed).uniform(-np.pi, np.pi, n)
    return np.stack([np.cos(g), np.sin(g)], axis=1)


@pytest.fixture(scope="module")
def data(net):
    x, xt = circle(12, 0), circle(5, 1)
    y = np.stack([x[:, 0] * x[:, 1], np.cos(3 * x[:, 0])], axis=1)   # two outputs
    k, kt, ktt = net.kernels(x), net.kernels(xt, x), net.kernels(xt)
    return dict(x=x, xt=xt, y=y, k=k, kt=kt, ktt=ktt)


def euler(k_all, k_train, y, f0_all, n, rate, t_end, dt, ridge=0.0):
    """Explicit Euler on df(x)/dt = −c·[K(x, X)(f(X) − y) + σ(f(x) − f0(x))] for train+test rows."""
    f = f0_all.copy()
    for _ in range(int(round(t_end / dt))):
        f = f - dt * rate * (k_all @ (f[:n] - y) + ridge * (f - f0_all))
    return f


@pytest.mark.parametrize("ridge", [0.0, 0.05])
def test_closed_form_equals_fine_euler(data, ridge):
    x, y, k, kt = data["x"], data["y"], data["k"].ntk, data["kt"].ntk
    n, lr = len(x), 2.0
    flow = KernelFlow.from_kernels(k, y, learning_rate=lr, diag_reg=ridge)
    rng = np.random.default_rng(3)
    f0x, f0s = rng.normal(size=y.shape), rng.normal(size=(len(kt),) + y.shape[1:])
    k_all = np.concatenate([k, kt])
    times = [7.0, 40.0]
    dt = 1.0 / 512
    got_test = flow.predict(kt, times, f0=(f0x, f0s))
    got_train = flow.predict_train(times, f0=f0x)
    # Euler's error on a mode of rate r after time t is |e^{−rt} − (1 − r·dt)^{t/dt}|
    # ≈ e^{−rt}·r²·t·dt/2 ≤ r·dt/(2e) (max of x·e^{−x} is 1/e). So on the training outputs the error
    # is ≤ r_max·dt/(2e)·‖f0 − y‖, and on the test outputs, where the mode's weight is g = (1 − e^{−rt})/λ,
    # ≤ ‖K(x*, X)‖₂·c·dt/(2e)·‖f0 − y‖. A factor 2 covers the second-order terms and the ridge.
    c = lr / n
    r0 = np.linalg.norm(f0x - y)
    r_max = c * (np.linalg.eigvalsh(k).max() + flow.ridge)
    tol_train = 2 * r_max * dt / (2 * np.e) * r0
    tol_test = 2 * np.linalg.norm(kt, 2) * c * dt / (2 * np.e) * r0 * (1 + flow.ridge)
    for i, t in enumerate(times):
        ref = euler(k_all, k, y, np.concatenate([f0x, f0s]), n, c, t, dt, flow.ridge)
        assert np.abs(got_train[i] - ref[:n]).max() <= tol_train
        assert np.abs(got_test[i] - ref[n:]).max() <= tol_test
        assert max(tol_test, tol_train) < 1e-3 * r0           # the check is not vacuous


def test_closed_form_equals_matrix_exponential(data):
    k, kt, y = data["k"].ntk, data["kt"].ntk, data["y"]
    n = len(y)
    flow = KernelFlow.from_kernels(k, y)
    t = 25.0
    a = kt @ np.linalg.solve(k, np.eye(n) - scipy.linalg.expm(-k * t / n))
    # Both are O(1) float64 computations from a kernel with condition number ~1e3: 1e-10 leaves
    # room for the solve's cond·ε ≈ 1e-13 and expm's own ~1e-13 error.
    np.testing.assert_allclose(flow.predict(kt, t), a @ y, atol=1e-10)
    np.testing.assert_allclose(flow.predict_train(t), y - scipy.linalg.expm(-k * t / n) @ y, atol=1e-10)


@pytest.mark.parametrize("diag_reg", [0.0, 1e-3, 0.1])
def test_infinite_time_is_kernel_ridge_regression(data, diag_reg):
    k, kt, y = data["k"].ntk, data["kt"].ntk, data["y"]
    n = len(y)
    sigma = diag_reg * np.trace(k) / n
    ridge = np.linalg.solve(k + sigma * np.eye(n), y)
    # Cholesky path (t = ∞ only) and eigendecomposition path (with a finite time) must agree with
    # numpy.linalg.solve; cond(K) ≈ 1e3, so 1e-10 is ~1e3 above their round-off.
    chol = KernelFlow.from_kernels(k, y, diag_reg=diag_reg)
    np.testing.assert_allclose(chol.predict(kt, np.inf), kt @ ridge, atol=1e-10)
    np.testing.assert_allclose(chol.predict_train(np.inf), k @ ridge, atol=1e-10)
    assert "_spectrum" not in chol.__dict__                  # t = ∞ alone: no eigendecomposition
    eig = KernelFlow.from_kernels(k, y, diag_reg=diag_reg)
    both = eig.predict(kt, [1.0, np.inf])
    np.testing.assert_allclose(both[1], kt @ ridge, atol=1e-10)
    # and t = ∞ is the limit of large t (the slowest rate is ~1e-3 per step: t = 1e6 is e^{-1000})
    np.testing.assert_allclose(eig.predict(kt, 1e6), kt @ ridge, atol=1e-10)


def test_predict_train_is_predict_on_training_points(net, data):
    x, y = data["x"], data["y"][:, 0]
    flow = KernelFlow(net, x, y, diag_reg=0.01)
    # Same formula with K(X, X) as the test block; only the clipping of round-off eigenvalues differs.
    np.testing.assert_allclose(flow.predict(x, [0, 3, 50, np.inf]), flow.predict_train([0, 3, 50, np.inf]),
                               atol=1e-12)


def test_from_kernels_equals_network_flow(net, data):
    x, xt, y = data["x"], data["xt"], data["y"]
    a = KernelFlow(net, x, y, learning_rate=0.5)
    b = KernelFlow.from_kernels(data["k"].ntk, y, data["k"].nngp, learning_rate=0.5)
    t = [0, 10, np.inf]
    np.testing.assert_array_equal(a.predict(xt, t), b.predict(data["kt"].ntk, t))
    ma, ca = a.ensemble(xt, t)
    mb, cb = b.ensemble(TestKernels(data["kt"].ntk, data["kt"].nngp, data["ktt"].nngp), t)
    np.testing.assert_array_equal(ma, mb)
    np.testing.assert_array_equal(ca, cb)


def test_shapes(data):
    k, kt, y = data["k"].ntk, data["kt"].ntk, data["y"]
    flow = KernelFlow.from_kernels(k, y, data["k"].nngp)
    nt = len(kt)
    assert flow.predict(kt, 3).shape == (nt, 2)
    assert flow.predict(kt, np.array(3.0)).shape == (nt, 2)
    assert flow.predict(kt, [0, 1, 2]).shape == (3, nt, 2)
    assert flow.predict_train([1, np.inf]).shape == (2, len(y), 2)
    assert isinstance(flow.loss(3), float) and flow.loss([0, 1]).shape == (2,)
    blocks = TestKernels(kt, data["kt"].nngp, data["ktt"].nngp)
    mean, cov = flow.ensemble(blocks, [1, 2])
    assert mean.shape == (2, nt, 2) and cov.shape == (2, nt, nt)
    mean, var = flow.ensemble(blocks, 1, compute_cov=False)
    assert mean.shape == (nt, 2) and var.shape == (nt,)
    # only the diagonal of Σ(x*, x*) is needed for variances
    diag_only = TestKernels(kt, data["kt"].nngp, np.diagonal(data["ktt"].nngp))
    np.testing.assert_array_equal(flow.ensemble(diag_only, 1, compute_cov=False)[1], var)
    eig = flow.eigen()
    assert eig.components(2).shape == (len(y), 2) and eig.components([1, 2]).shape == (2, len(y), 2)


def test_components_and_rates(data):
    k, y = data["k"].ntk, data["y"]
    n, lr = len(y), 3.0
    flow = KernelFlow.from_kernels(k, y, learning_rate=lr)
    eig = flow.eigen()
    lam = np.sort(np.linalg.eigvalsh(k))[::-1]
    # two LAPACK eigensolvers on the same matrix: they differ by ~ε·λ_max, inside rtol 1e-10 for the
    # large eigenvalues and atol 1e-14 (rates of O(1) kernels) for the tiny ones
    np.testing.assert_allclose(eig.rates, lr * lam / n, rtol=1e-10, atol=1e-14)
    assert np.all(np.diff(eig.rates) <= 0)
    f0 = np.random.default_rng(0).normal(size=y.shape)
    t = np.array([0.0, 5.0, 30.0])
    c = eig.components(t, f0)
    # O(1) residuals, one eigendecomposition shared by both sides: 1e-12 is round-off room
    # the definition: coordinates of f_t(X) − y along the eigenvectors ...
    np.testing.assert_allclose(c, np.einsum("nk,tno->tko", eig.vectors, flow.predict_train(t, f0) - y), atol=1e-12)
    # ... which decay as e^{−rate·t} (kernel-math.md §4)
    expected = np.exp(-np.outer(t, eig.rates))[:, :, None] * (eig.vectors.T @ (f0 - y))[None]
    np.testing.assert_allclose(c, expected, atol=1e-12)
    np.testing.assert_allclose(flow.loss(t, f0), 0.5 * np.sum(c ** 2, axis=(1, 2)) / n, rtol=1e-12)


def test_max_learning_rate_is_the_stability_limit_of_gradient_descent(data):
    k, y = data["k"].ntk, data["y"][:, 0]
    n = len(y)
    eta_max = KernelFlow.from_kernels(k, y).max_learning_rate()
    np.testing.assert_allclose(eta_max, 2 * n / np.linalg.eigvalsh(k).max(), rtol=1e-12)

    def gd(eta, steps=3000):   # discrete gradient descent of the linearised model: f ← f − (η/N)K(f − y)
        f = np.zeros(n)
        for _ in range(steps):
            f = f - eta / n * k @ (f - y)
        return np.abs(f - y).max()

    # just below η_max the top mode contracts by |1 − ηλ/N| = 0.98 per step; just above it grows by
    # 1.02: after 3000 steps that is e^{−60} against e^{+60}.
    assert gd(0.99 * eta_max) < 1e-3
    assert gd(1.01 * eta_max) > 1e3


def test_entries_normalisation_rescales_time(data):
    k, y = data["k"].ntk, data["y"]
    kt = data["kt"].ntk
    points = KernelFlow.from_kernels(k, y)
    entries = KernelFlow.from_kernels(k, y, loss_normalization="entries")
    # 1/(2Nk) with k = 2 outputs halves every rate: entries at time t equals points at t/2
    np.testing.assert_allclose(entries.predict(kt, [4.0, 10.0]), points.predict(kt, [2.0, 5.0]), atol=1e-13)
    np.testing.assert_allclose(entries.loss(4.0), points.loss(2.0) / 2, rtol=1e-12)
    np.testing.assert_allclose(entries.max_learning_rate(), 2 * points.max_learning_rate(), rtol=1e-12)


def test_nngp_kernel_at_infinity_is_the_gp_posterior(net, data):
    x, xt, y = data["x"], data["xt"], data["y"][:, 0]
    flow = KernelFlow(net, x, y, kernel="nngp")
    s, st, stt = data["k"].nngp, data["kt"].nngp, data["ktt"].nngp
    mean, cov = flow.ensemble(xt, np.inf)
    # Rasmussen & Williams (2006), eq. 2.19; cond(Σ) ≈ 1e4 here, so 1e-9 is far above round-off.
    np.testing.assert_allclose(mean, st @ np.linalg.solve(s, y), atol=1e-9)
    np.testing.assert_allclose(cov, stt - st @ np.linalg.solve(s, st.T), atol=1e-9)
    # the spectral path (a finite time in the same call) gives the same limit
    _, cov2 = flow.ensemble(xt, [1.0, np.inf])
    np.testing.assert_allclose(cov2[1], cov, atol=1e-9)


def test_ensemble_matches_monte_carlo_over_initialisations(data):
    """Mean and covariance over f0 ~ GP(0, Σ) against samples pushed through expm's linear map."""
    k, kt, y = data["k"].ntk, data["kt"].ntk, data["y"][:, 0]
    s = np.block([[data["k"].nngp, data["kt"].nngp.T], [data["kt"].nngp, data["ktt"].nngp]])
    n, t = len(y), 20.0
    flow = KernelFlow.from_kernels(k, y, data["k"].nngp)
    mean, cov = flow.ensemble(TestKernels(kt, data["kt"].nngp, data["ktt"].nngp), t)
    samples = 40000
    rng = np.random.default_rng(11)
    chol = np.linalg.cholesky(s + 1e-12 * np.trace(s) * np.eye(len(s)))   # jitter: Σ is PSD, rank-full here
    f0 = rng.standard_normal((samples, len(s))) @ chol.T
    a = kt @ np.linalg.solve(k, np.eye(n) - scipy.linalg.expm(-k * t / n))   # oracle for A
    f_t = f0[:, n:] + (y[None] - f0[:, :n]) @ a.T
    mc_mean, mc_cov = f_t.mean(axis=0), np.cov(f_t, rowvar=False)
    # Standard errors: sqrt(c_ii/S) for the mean; sqrt((c_ii c_jj + c_ij²)/S) for the covariance of
    # a Gaussian. With 5 + 15 distinct entries compared, 5 standard errors fail by chance < 1e-5.
    se_mean = np.sqrt(np.diag(cov) / samples)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov ** 2) / samples)
    assert np.all(np.abs(mc_mean - mean) <= 5 * se_mean)
    assert np.all(np.abs(mc_cov - cov) <= 5 * se_cov)
    _, var = flow.ensemble(TestKernels(kt, data["kt"].nngp, data["ktt"].nngp), t, compute_cov=False)
    np.testing.assert_allclose(var, np.diag(cov), atol=1e-13)


def test_one_eigendecomposition_serves_every_time_and_test_set(net, data, monkeypatch):
    calls = []
    real = scipy.linalg.eigh
    monkeypatch.setattr(scipy.linalg, "eigh", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    flow = KernelFlow(net, data["x"], data["y"])
    for xt in (data["xt"], circle(7, 5), data["xt"]):
        flow.predict(xt, [0, 1, 10, np.inf])
        flow.ensemble(xt, [2, 5])
        flow.loss([3, 4])
        flow.eigen().components(9)
    assert len(calls) == 1


def test_singular_kernel_warns_and_uses_the_pseudo_inverse(net):
    x = circle(6, 2)
    xd = np.concatenate([x, x[:3]])                       # three duplicated points: K is singular
    y = x[:, 0] - x[:, 1]
    yd = np.concatenate([y, y[:3]])
    xt = circle(4, 9)
    with pytest.warns(IllConditionedWarning, match="condition number"):
        got = KernelFlow(net, xd, yd).predict(xt, np.inf)
    # With consistent targets the duplicates add no information: the t → ∞ limit (pseudo-inverse)
    # is the regression on the distinct points. The pseudo-inverse cuts at N·ε·λ_max, so agreement
    # is to ~cond(K on distinct points)·ε·N ≈ 1e-10.
    np.testing.assert_allclose(got, KernelFlow(net, x, y).predict(xt, np.inf), atol=1e-8)
    with pytest.warns(IllConditionedWarning):
        KernelFlow(net, xd, yd).predict(xt, [1.0, np.inf])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # a ridge makes it well-conditioned
        KernelFlow(net, xd, yd, diag_reg=1e-4).predict(xt, np.inf)


def test_negative_round_off_eigenvalues_are_clipped():
    v = np.linalg.qr(np.random.default_rng(0).normal(size=(5, 5)))[0]
    k = v @ np.diag([2.0, 1.0, 0.5, 0.0, -1e-15]) @ v.T   # PSD up to round-off
    flow = KernelFlow.from_kernels(k, np.ones(5))
    assert flow.eigen().values.min() == 0.0
    f = flow.predict_train([1.0, 1e3])
    assert np.all(np.isfinite(f))


@pytest.mark.parametrize("bad, match", [
    (dict(t=-1.0), "≥ 0"),
    (dict(t=float("nan")), "≥ 0"),
    (dict(t=[[1.0]]), "1-D"),
    (dict(f0=(np.zeros(3), None)), "f0_train has shape"),
    (dict(f0=np.zeros(12)), "pair"),
    (dict(test=np.zeros((5, 3))), "expected"),
])
def test_bad_arguments(data, bad, match):
    flow = KernelFlow.from_kernels(data["k"].ntk, data["y"][:, 0])
    args = dict(test=data["kt"].ntk, t=1.0, f0=None) | bad
    with pytest.raises(ValueError, match=match):
        flow.predict(args["test"], args["t"], args["f0"])


@pytest.mark.parametrize("kwargs, match", [
    (dict(kernel="cnn"), "kernel must be"),
    (dict(loss_normalization="mean"), "loss_normalization"),
    (dict(learning_rate=0.0), "learning_rate"),
    (dict(diag_reg=-1.0), "diag_reg"),
    (dict(loss="hinge"), "unknown loss"),
    (dict(kernel="nngp"), "needs the nngp training kernel"),
    (dict(learning_rate="fast"), "learning_rate must be a finite number"),
    (dict(diag_reg=float("inf")), "diag_reg"),
])
def test_bad_options(data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        KernelFlow.from_kernels(data["k"].ntk, data["y"], **kwargs)


def test_nngp_flow_without_the_ntk(data):
    y = data["y"][:, 0]
    flow = KernelFlow.from_kernels(None, y, data["k"].nngp, kernel="nngp")
    s, st = data["k"].nngp, data["kt"].nngp
    # cond(Σ) ≈ 1e4: 1e-9 is far above the round-off of either solve
    np.testing.assert_allclose(flow.predict(st, np.inf), st @ np.linalg.solve(s, y), atol=1e-9)


def test_bad_kernels():
    with pytest.raises(ValueError, match="square"):
        KernelFlow.from_kernels(np.ones((2, 3)), np.ones(2))
    with pytest.raises(ValueError, match="not symmetric"):
        KernelFlow.from_kernels(np.array([[1.0, 0.5], [0.0, 1.0]]), np.ones(2))
    with pytest.raises(ValueError, match="y_train has shape"):
        KernelFlow.from_kernels(np.eye(3), np.ones(2))
    with pytest.raises(ValueError, match="NaN"):
        KernelFlow.from_kernels(np.full((2, 2), np.nan), np.ones(2))
    flow = KernelFlow.from_kernels(np.eye(2), np.ones(2))
    with pytest.raises(ValueError, match="NNGP training kernel"):
        flow.ensemble(TestKernels(np.ones((1, 2))), 1.0)

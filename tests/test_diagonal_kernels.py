"""net.kernels(x, diagonal=True): Σ(x, x) and Θ(x, x) of each point alone, in O(N) (neural-tangents'
diagonal_batch). The oracle is the diagonal of the full self-kernel kernels(x) (itself checked against
neural-tangents, closed forms and Monte Carlo elsewhere): the diagonal request runs the same layer
statements on the pairs (x_i, x_i) only, with Σ(x, x) set to the variance wherever kernels() sets its
diagonal, so on the NumPy backend the two agree bit for bit."""

import tracemalloc

import numpy as np
import pytest

import ntkdsl
from ntkdsl.codegen.overflow import KernelOverflowError
from ntkdsl.flow import KernelFlow, TestKernels

from shared import needs_numba

NETS = {
    "relu": "network m(input = 5) { dense(16, w_std = 1.4, b_std = 0.1); relu; dense(16, w_std = 1.2); relu; dense(1) }",
    "erf_gelu": "network e(input = 5) { dense(16, b_std = 0.2); erf; dense(16, w_std = 1.3); gelu; dense(2) }",
    "tanh": "network t(input = 5) { dense(8, b_std = 0.1); tanh; dense(8); softplus; dense(1) }",  # numerical duals
    "standard": "network s(input = 5, parameterization = standard) { dense(32, w_std = 1.5, b_std = 0.3); relu; "
                "dense(16); erf; dense(1, b_std = 0.1) }",
    "residual": "network r(input = 5) { dense(8); residual(scale = 0.7) { relu; dense(8, b_std = 0.2) }; "
                "residual { erf; dense(8) }; relu; dense(1) }",
    "cnn": """network c(input = [6, 5, 2]) {
    conv(4, kernel = 3, padding = same, b_std = 0.2)
    relu
    avg_pool((2, 2), stride = (1, 2), padding = same)
    conv(4, kernel = (2, 3), stride = (2, 1), padding = circular, w_std = 1.2)
    residual(scale = 0.5) { erf; conv(4, kernel = 1) }
    gelu
    flatten
    dense(3)
    relu
    dense(1)
}""",
    "cnn_gap": """network g(input = [5, 4, 3], parameterization = standard) {
    conv(6, kernel = 2, padding = valid, b_std = 0.1)
    relu
    conv(6, kernel = 3, padding = same)
    layer_norm
    relu
    global_avg_pool
    dense(1)
}""",
}


def _points(net, n=9, seed=0):
    x = np.random.default_rng(seed).normal(size=(n,) + tuple(net.ir.input_shape))
    x[3] = x[1]  # a duplicate point
    x[5] = 0.0  # a zero-norm input
    return x


@pytest.fixture(scope="module", params=sorted(NETS))
def net(request):
    return ntkdsl.loads(NETS[request.param])


def test_numpy_diagonal_is_the_self_kernels_diagonal_bit_for_bit(net):
    x = _points(net)
    full = net.kernels(x, backend="numpy")
    k = net.kernels(x, backend="numpy", diagonal=True)
    assert k.nngp.shape == k.ntk.shape == (len(x),)
    np.testing.assert_array_equal(k.nngp, np.diag(full.nngp))
    np.testing.assert_array_equal(k.ntk, np.diag(full.ntk))
    # float32: the float64 values rounded once, as the NumPy backend's float32 kernels
    k32 = net.kernels(x, backend="numpy", dtype=np.float32, diagonal=True)
    assert k32.nngp.dtype == k32.ntk.dtype == np.float32
    np.testing.assert_array_equal(k32.nngp, np.diag(full.nngp).astype(np.float32))
    np.testing.assert_array_equal(k32.ntk, np.diag(full.ntk).astype(np.float32))


@needs_numba
@pytest.mark.filterwarnings("ignore::ntkdsl.codegen.dispatch.BackendFallbackWarning")  # image + numerical dual
def test_numba_diagonal_agrees_with_the_fused_self_kernel(net):
    x = _points(net)
    k = net.kernels(x, backend="numba", diagonal=True)
    np.testing.assert_array_equal(k.nngp, net.kernels(x, backend="numpy", diagonal=True).nngp)  # NumPy's entry point
    full = net.kernels(x, backend="numba")
    # the fused loops evaluate the same formulas with other roundings (simplified variances such as
    # q/2 after relu, a vectorised atan2: ≤ 2 ulp each, tests/test_fused*.py); measured ≤ 3.4e-16
    # over these networks; 1e-15 relative is a few ulp, a wrong term is O(1)
    np.testing.assert_allclose(k.nngp, np.diag(full.nngp), rtol=1e-15, atol=0)
    np.testing.assert_allclose(k.ntk, np.diag(full.ntk), rtol=1e-15, atol=0)
    full32 = net.kernels(x, backend="numba", dtype=np.float32)
    k32 = net.kernels(x, backend="numba", dtype=np.float32, diagonal=True)
    assert k32.ntk.dtype == np.float32
    # the fused float32 kernels compute each layer in float32 (ulp 1.2e-7); the diagonal request
    # rounds the float64 values once: measured ≤ 2 float32 ulp (2.4e-7), 1e-6 allows 8
    np.testing.assert_allclose(k32.ntk, np.diag(full32.ntk), rtol=1e-6, atol=0)
    np.testing.assert_allclose(k32.nngp, np.diag(full32.nngp), rtol=1e-6, atol=0)


def test_x2_is_refused_and_arguments_are_checked():
    net = ntkdsl.loads(NETS["relu"])
    x = _points(net)
    with pytest.raises(ValueError, match="diagonal=True .* x2 must be None"):
        net.kernels(x, x, diagonal=True)
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        net.kernels(x, diagonal=True, backend="gpu")
    with pytest.raises(ValueError, match="dtype must be float64 or float32"):
        net.kernels(x, diagonal=True, dtype=np.int32)
    with pytest.raises(ValueError, match="shape"):
        net.kernels(x[:, :3], diagonal=True)
    assert net.kernels(x[:0], diagonal=True).nngp.shape == (0,)


def test_an_overflow_names_the_row_and_the_layer():
    net = ntkdsl.loads("network o(input = 4) {\n    repeat 4 { dense(4, w_std = 1e100); relu }\n    dense(1)\n}\n",
                       filename="t.ntk")
    x = np.zeros((6, 4))
    x[4] = 1.0  # variance x·x/4 = 1; dense 1e200, relu 1/2, dense: 5e399 > 1.8e308 at layer 3; zeros stay finite
    with pytest.raises(KernelOverflowError, match=r"t.ntk:2:16: the kernels overflow float64 at layer 3 .* of x1\[4\]"):
        net.kernels(x, diagonal=True)


def test_cupy_backend_runs_the_array_module_with_cupy(monkeypatch):
    import cupy_standin

    cupy_standin.install(monkeypatch)  # `cupy` bound to NumPy: the CuPy module's own text runs
    net = ntkdsl.loads(NETS["cnn"])
    x = _points(net)
    k = net.kernels(x, backend="cupy", diagonal=True, to_numpy=True)
    assert "cupy-arrays" in net._modules  # the array module with xp = cupy, not NumPy's
    expected = net.kernels(x, backend="numpy", diagonal=True)
    np.testing.assert_array_equal(k.nngp, expected.nngp)
    np.testing.assert_array_equal(k.ntk, expected.ntk)


def test_memory_is_linear_in_the_number_of_points():
    net = ntkdsl.loads(NETS["erf_gelu"])
    n = 20000
    x = np.random.default_rng(1).normal(size=(n, 5))
    net.kernels(x[:10], diagonal=True)  # the module loaded outside the measurement
    tracemalloc.start()
    try:
        k = net.kernels(x, diagonal=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert k.ntk.shape == (n,)
    # N² bytes is 400 MB (the full float64 kernel 3.2 GB); 40 float64 arrays of N entries are 6.4 MB
    assert peak < 40 * 8 * n < n * n / 50


def test_flow_ensemble_variances_use_the_diagonal_and_are_unchanged():
    net = ntkdsl.loads(NETS["relu"])
    rng = np.random.default_rng(2)
    x, y, xt = rng.normal(size=(12, 5)), rng.normal(size=(12, 2)), rng.normal(size=(7, 5))
    requests = []

    class Spy:
        def kernels(self, x1, x2=None, **options):
            requests.append((x2 is None, options.get("diagonal", False)))
            return net.kernels(x1, x2, **options)

    t = [1.0, np.inf]
    mean, var = KernelFlow(Spy(), x, y, learning_rate=0.5).ensemble(xt, t, compute_cov=False)
    assert (True, True) in requests and (True, False) not in requests[1:]  # no (N_test, N_test) kernel built
    # before: the variances from the full test kernel's diagonal (here through a from_kernels flow)
    k, kt, ktt = net.kernels(x), net.kernels(xt, x), net.kernels(xt)
    before = KernelFlow.from_kernels(k.ntk, y, k.nngp, learning_rate=0.5)
    mean_b, var_b = before.ensemble(TestKernels(kt.ntk, kt.nngp, ktt.nngp), t, compute_cov=False)
    np.testing.assert_array_equal(mean, mean_b)
    np.testing.assert_array_equal(var, var_b)

"""The fused numba backend (ntkdsl/codegen/fused.py): the same kernels as the NumPy backend to 1e-12,
exact symmetry and diagonals, float32, the overflow-safe perp, the fallbacks, readable source.

Compiling a fused module takes seconds; numba caches it on disk, so a second run loads it. The
tests share two networks: EVERY (one dense + activation pair per closed-form dual the fused kernel
evaluates) and RELU.
"""

import ast
import warnings

import numpy as np
import pytest

import ntkdsl
from ntkdsl.codegen import dispatch
from ntkdsl.codegen.dispatch import BackendFallbackWarning
from ntkdsl.codegen.fused import NotFusable, emit_fused_module, fusable
from shared import EVERY, close, needs_numba

RELU = """
network relu5(input = 5) {
    repeat 3 {
        dense(64, w_std = 1.4, b_std = 0.1)
        relu
    }
    dense(1, w_std = 1.4, b_std = 0.1)
}
"""
TANH = "network t(input = 2) {\n    dense(8)\n    tanh\n    dense(1)\n}\n"


@pytest.fixture(scope="module")
def every():
    return ntkdsl.loads(EVERY, filename="every.ntk")


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(7)
    return rng.standard_normal((40, 3)), rng.standard_normal((25, 3))


@needs_numba
@pytest.mark.parametrize("pair", [False, True], ids=["x1-x1", "x1-x2"])
def test_fused_agrees_with_numpy_on_every_closed_form_dual(every, points, pair):
    x, y = points
    args = (x, y) if pair else (x,)
    fused = every.kernels(*args, backend="numba")
    reference = every.kernels(*args, backend="numpy")
    for a, b in zip(fused, reference):
        assert a.dtype == np.float64 and a.shape == b.shape
        close(a, b)


@needs_numba
def test_fused_self_kernel_is_exactly_symmetric_with_the_variances_on_the_diagonal(every, points):
    x, _ = points
    fused = every.kernels(x, backend="numba")
    reference = every.kernels(x, backend="numpy")
    for a in fused:
        assert np.array_equal(a, a.T)
    np.testing.assert_allclose(np.diag(fused.nngp), np.diag(reference.nngp), rtol=1e-14)
    relu = ntkdsl.loads(RELU)  # closed forms whose diagonal simplifies exactly: bit for bit
    z = np.random.default_rng(1).standard_normal((30, 5))
    assert np.array_equal(np.diag(relu.kernels(z, backend="numba").nngp), np.diag(relu.kernels(z, backend="numpy").nngp))


@needs_numba
def test_float32_results(every, points):
    x, y = points
    for args in ((x,), (x, y)):
        single = every.kernels(*args, backend="numba", dtype="float32")
        double = every.kernels(*args, backend="numba")
        for a, b in zip(single, double):
            assert a.dtype == np.float32
            close(a, b, rtol=1e-5)
    self_kernel = every.kernels(x, backend="numba", dtype=np.float32)
    assert np.array_equal(self_kernel.ntk, self_kernel.ntk.T)


@needs_numba
def test_huge_variances_do_not_overflow_perp():
    """q ≈ 1e200: q1·q2 overflows float64 unless perp rescales by exact powers of two (hoisted)."""
    net = ntkdsl.loads(RELU)
    x = np.random.default_rng(2).standard_normal((20, 5)) * 1e100
    fused, reference = net.kernels(x, backend="numba"), net.kernels(x, backend="numpy")
    assert np.all(np.isfinite(fused.ntk))
    for a, b in zip(fused, reference):
        close(a, b)


def test_fused_backend_falls_back_to_numpy_without_numba(monkeypatch):
    monkeypatch.setattr(dispatch, "module_available", lambda name: False)  # as if `import numba` failed
    net = ntkdsl.loads(RELU)
    x = np.random.default_rng(3).standard_normal((12, 5))
    with pytest.warns(BackendFallbackWarning, match=r"pip install 'ntkdsl\[fast\]'"):
        k = net.kernels(x, backend="numba")
    np.testing.assert_array_equal(k.ntk, net.kernels(x, backend="numpy").ntk)
    assert dispatch.resolve(net.program, "auto", 10**10) == ("numpy", "")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "auto" falls back silently
        net.kernels(x, backend="auto")
    assert "import numba" in net.to_python(backend="numba")  # emitting needs no numba


def test_auto_takes_the_fused_kernels_only_where_they_pay(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # a cold disk cache: numba would compile first
    net = ntkdsl.loads(RELU)
    monkeypatch.setattr(dispatch, "module_available", lambda name: True)
    assert dispatch.resolve(net.program, None, 100)[0] == "numpy"
    assert dispatch.resolve(net.program, None, 10**10)[0] == "numba"  # NumPy would take far longer than a compile
    assert dispatch.resolve(ntkdsl.loads(TANH).program, None, 10**10)[0] == "numba"  # numerical duals fuse too
    with pytest.raises(ValueError, match="unknown backend"):
        dispatch.resolve(net.program, "torch")


def test_image_networks_with_numerical_duals_fall_back_to_numpy():
    net = ntkdsl.loads("network t(input = [3, 3, 1]) { conv(2, kernel = 2); tanh; flatten; dense(1) }")
    assert "numerical dual" in fusable(net.program)
    with pytest.raises(NotFusable):
        emit_fused_module(net.program)
    x = np.random.default_rng(4).standard_normal((6, 3, 3, 1))
    tile = {"batch_size": 8}  # one tile, chosen here: no memory-model calibration
    with pytest.warns(BackendFallbackWarning, match="numerical dual"):
        k = net.kernels(x, backend="numba", **tile)
    np.testing.assert_array_equal(k.nngp, net.kernels(x, backend="numpy", **tile).nngp)
    assert "backend: numpy" in net.to_python(backend="numba")
    assert "mehler_series(" in ntkdsl.loads(TANH).to_python(backend="numba")  # vector networks fuse them


def test_fused_source_is_readable():
    source = ntkdsl.loads(RELU, filename="relu5.ntk").to_python(backend="numba")
    assert source.startswith('"""NNGP and NTK kernels of the network `relu5`')
    assert "backend: numba (fused CPU kernels)" in source and "relu5.ntk (sha256 " in source
    tree = ast.parse(source)
    lines = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.stmt)]
    assert len(lines) == len(set(lines)), "one statement a line"
    kernel = source[source.index("def _fused_layers"):source.index("def kernels")]
    for k in (1, 2, 7):
        assert f"# layer {k}: " in kernel  # every layer a commented loop, named after its source line
    assert kernel.count("for j in range(lo, hi):") == 8  # 7 layers and the results
    assert "nngp_2[j] = " in kernel and "atan2(" in kernel and "perp_scaled(" in kernel
    assert max(map(len, source.splitlines())) < 200


def test_generated_fused_module_matches_the_api(tmp_path):
    pytest.importorskip("numba")
    from ntkdsl.codegen.cache import load_cached_module

    net = ntkdsl.loads(RELU)
    module = load_cached_module(net.to_python(backend="numba"), "relu5", cache_dir=tmp_path)
    assert list(tmp_path.glob("kernels/relu5_*.py"))  # the text is kept where numba's cache finds it
    x = np.random.default_rng(5).standard_normal((9, 5))
    nngp, ntk = module.kernels(x)
    np.testing.assert_array_equal(ntk, net.kernels(x, backend="numba").ntk)
    with pytest.raises(ValueError, match=r"shape \(N, 5\)"):
        module.kernels(np.zeros((3, 4)))


@pytest.mark.parametrize("name", ["exp(a = 0.5, b = 0.3)", "gaussian", "rbf"])
def test_duals_whose_derivative_reads_the_kernel(name):
    """K̇ = β²·K style duals: the fused loop has K at hand; compared with NumPy once that backend runs them."""
    net = ntkdsl.loads(f"network n(input = 3) {{\n    dense(8, w_std = 1.1, b_std = 0.2)\n    {name}\n    dense(1)\n}}\n")
    x = np.random.default_rng(6).standard_normal((10, 3))
    try:
        reference = net.kernels(x, backend="numpy")
    except (NameError, TypeError) as exc:  # the NumPy dual function names the layer's own Σ (reported)
        pytest.xfail(f"NumPy backend: {type(exc).__name__}: {exc}")
    if not dispatch.module_available("numba"):
        pytest.skip("numba is not installed")
    for a, b in zip(net.kernels(x, backend="numba"), reference):
        close(a, b)

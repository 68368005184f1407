"""What several test files share: backend availability marks, the closed-form-dual network, and
two ways of comparing arrays (each states what its tolerance is relative to)."""

import contextlib

import numpy as np
import pytest

from ntkdsl.codegen import dispatch


def gpu_available() -> bool:
    """CuPy installed and a CUDA device present."""
    if not dispatch.module_available("cupy"):
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - any CUDA failure means: no usable GPU
        return False


needs_numba = pytest.mark.skipif(not dispatch.module_available("numba"), reason="numba is not installed ([fast] extra)")
needs_gpu = pytest.mark.skipif(not gpu_available(), reason="CuPy with a CUDA GPU not available")

# one dense + activation pair per closed-form dual that the fused and CUDA kernels evaluate
ACTIVATIONS = ["relu", "abs", "leaky_relu", "abrelu(a = -0.5, b = 2)", "step", "sign", "rectified_monomial(n = 2)",
               "erf", "erf(a = 2, b = 0.5, c = 0.1)", "sigmoid_like", "gelu", "gabor", "sin", "cos(b = 2)",
               "monomial(n = 3)", "polynomial(1, 0.5, 0.25)", "hermite(k = 3)"]
EVERY = ("network every_dual(input = 3) {\n"
         + "".join(f"    dense(16, w_std = 1.1, b_std = 0.2)\n    {a}\n" for a in ACTIVATIONS)
         + "    dense(1, w_std = 1, b_std = 0.1)\n}\n")


def _finite(actual, expected):
    """Both arrays finite: assert_allclose counts NaN as equal to NaN, so two sides that both produce NaN
    (tiles vs whole, one backend vs another) would otherwise agree."""
    assert np.all(np.isfinite(actual)), "actual holds NaN or infinite entries"
    assert np.all(np.isfinite(expected)), "expected holds NaN or infinite entries"


def close(actual, expected, rtol=1e-12):
    """Relative agreement, with an absolute floor at rtol times the largest entry (odd duals cross 0)."""
    _finite(actual, expected)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.max(np.abs(expected)))


def close_to_scale(actual, expected, rtol):
    """|actual − expected| ≤ rtol times the largest |expected| entry (finite differences: the
    error of an entry scales with the largest derivative, not with the entry)."""
    _finite(actual, expected)
    scale = max(np.abs(expected).max(), 1e-300)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


@contextlib.contextmanager
def numba_compilations():
    """A list, filled while the block runs, of the names of the functions numba compiles."""
    from numba.core import event

    compiled = []

    class Count(event.Listener):
        def on_start(self, ev):
            compiled.append(ev.data["dispatcher"].py_func.__name__)

        def on_end(self, ev):
            pass

    with event.install_listener("numba:compile", Count()):
        yield compiled


def assert_progress_counts(net, args, total):
    """A progress callable sees increasing counts ending at ``total`` (with ``total`` each time), and
    the numba kernels are the same with and without it."""
    calls = []
    counted = net.kernels(*args, backend="numba", progress=lambda done, n: calls.append((done, n)))
    plain = net.kernels(*args, backend="numba", progress=False)
    assert calls and calls[-1] == (total, total)
    assert all(n == total for _, n in calls) and [d for d, _ in calls] == sorted({d for d, _ in calls})
    for a, b in zip(counted, plain):
        assert np.array_equal(a, b)


# neural-tangents computes in float64 with the same formulas up to the order of operations: 1e-12 of
# the kernel's scale leaves room for a few hundred roundings through a network
NT_RTOL = 1e-12


def assert_agrees_with_neural_tangents(cross, self_kernels, ref):
    """Kernels (x1 vs x2, and x1 vs itself or None) against a reference of tests/data/nt_new_layers.json."""
    close_to_scale(cross.nngp, np.asarray(ref["nngp"]), NT_RTOL)
    close_to_scale(cross.ntk, np.asarray(ref["ntk"]), NT_RTOL)
    if self_kernels is None or "nngp_11" not in ref:
        return
    off = ~np.eye(len(self_kernels.nngp), dtype=bool)
    for got, want in ((self_kernels.nngp, np.asarray(ref["nngp_11"])), (self_kernels.ntk, np.asarray(ref["ntk_11"]))):
        close_to_scale(got[off], want[off], NT_RTOL)
        # neural-tangents evaluates the diagonal at a ρ rounded off 1, where arccos-type duals lose
        # √ε ≈ 1e-8 (measured up to 8e-10 of scale); ntkdsl's diagonal takes ρ = 1 exactly
        close_to_scale(got.diagonal(), want.diagonal(), 1e-8)

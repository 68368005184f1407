"""Hyperparameter sweeps: run-time parameters of the generated modules, one compilation per structure.

Each sweep point is checked against a fresh compile of the spec text with that value, and against
the independent NumPy recursion of tests/test_kernel_oracles.py (closed forms written there).
"""

import numpy as np
import pytest
from shared import needs_numba, numba_compilations
from test_kernel_oracles import RTOL, reference

import ntkdsl
from ntkdsl.codegen import dispatch
from ntkdsl.codegen.cache import compiled_on_disk

# one dense, ReLU, dense, a·erf(b·x) + c, dense: every kind of run-time parameter of a vector network
SPEC = """
let beta = 0.1
network {name}(input = 5) {{
    dense(32, w_std = {w}, b_std = beta)
    relu
    dense(32, w_std = {w}, b_std = beta)
    erf(a = {a}, b = 0.5, c = 0.3)
    dense(1, w_std = {w}, b_std = beta)
}}
"""

# a sweep point and a fresh compile evaluate the same printed statements with the same numbers,
# except σ_w² = w·w in floating point against the exact square of the spec's decimal: ~1 ulp per layer
SAME = 1e-13


def _layers(w, beta, a):
    return [("dense", 32, w, beta), ("relu",), ("dense", 32, w, beta), ("erf", a, 0.5, 0.3), ("dense", 1, w, beta)]


@pytest.fixture(scope="module")
def points():
    return np.random.default_rng(3).normal(size=(9, 5))


def _close(actual, expected, rtol):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.max(np.abs(expected)))


@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba", marks=needs_numba)])
def test_sweep_points_equal_fresh_compiles_and_the_reference(points, backend):
    base = ntkdsl.loads(SPEC.format(name="sweep_ref", w=1.4, a=1.0))
    for values in ({"w_std": 1.5}, {"beta": 0.0}, {"w_std": 0.9, "beta": 0.25, "erf_a": 2.0}):
        net = base.with_hyperparameters(**values)
        got = net.kernels(points, backend=backend)
        w, beta, a = values.get("w_std", 1.4), values.get("beta", 0.1), values.get("erf_a", 1.0)
        fresh = ntkdsl.loads(SPEC.format(name="sweep_ref", w=w, a=a).replace("beta = 0.1", f"beta = {beta}"))
        expected = fresh.kernels(points, backend="numpy")
        _close(got.nngp, expected.nngp, SAME)
        _close(got.ntk, expected.ntk, SAME)
        ref_k, ref_t = reference(_layers(w, beta, a), 5, "ntk", points)
        np.testing.assert_allclose(got.nngp, ref_k, rtol=RTOL, atol=0)  # same closed forms (test_kernel_oracles.RTOL)
        np.testing.assert_allclose(got.ntk, ref_t, rtol=RTOL, atol=0)
        assert f"{next(iter(values))} = " in net.filename and net.to_ntk() == fresh.to_ntk()


@needs_numba
def test_a_sweep_compiles_once(points, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # a cold disk cache: the first point must compile
    small = "network sweep_probe(input = 5) {{ dense(8, w_std = {w}, b_std = 0.1); relu; dense(1, w_std = {w}) }}"
    base = ntkdsl.loads(small.format(w=1.4))  # small: the compilation it counts takes a few seconds
    results = []
    with numba_compilations() as compiled:
        for w in (1.4, 1.5, 1.6):
            results.append(base.with_hyperparameters(w_std=w).kernels(points, backend="numba"))
        assert compiled.count("_fused_layers") == 1
        # a fresh load of the same structure (another value in the text) finds the compiled module too
        fresh = ntkdsl.loads(small.format(w=1.7)).kernels(points, backend="numba")
        assert compiled.count("_fused_layers") == 1
    assert not np.allclose(results[0].ntk, results[1].ntk)  # the values did reach the kernels
    assert compiled_on_disk(base.to_python("numba"), "sweep_probe")  # "auto" would load it, not compile it
    ref_k, ref_t = reference([("dense", 8, 1.7, 0.1), ("relu",), ("dense", 1, 1.7, None)], 5, "ntk", points)
    np.testing.assert_allclose(fresh.ntk, ref_t, rtol=RTOL, atol=0)  # same closed forms (test_kernel_oracles.RTOL)


def test_structural_values_stay_compile_time():
    net = ntkdsl.loads(SPEC.format(name="s", w=1.4, a=1.0))
    names = {str(s) for s in net.program.runtime_parameters}
    assert names == {"w_std_1", "b_std_1", "w_std_3", "b_std_3", "erf_a_4", "erf_b_4", "erf_c_4", "w_std_5", "b_std_5"}
    source = net.to_python()
    assert "1.4" not in source.split("PARAMETERS = {")[0].split('"""', 2)[2]  # only the table holds the numbers
    tanh = ntkdsl.loads("network t(input = 2) { dense(3, w_std = 1.3); tanh; dense(1) }").program
    assert {str(s) for s in tanh.fixed_parameters} == set()  # tanh has no parameters; its σ_w stay run-time
    custom = ntkdsl.loads("activation sq(x, k = 2) = tanh(k*x)\nnetwork t(input = 2) { dense(3); sq(k = 3); dense(1) }")
    assert {str(s) for s in custom.program.fixed_parameters} == {"sq_k_2"}  # inside a quadrature: compile-time


def test_unknown_or_bad_hyperparameters_are_clear_errors():
    net = ntkdsl.loads(SPEC.format(name="s", w=1.4, a=1.0))
    with pytest.raises(ValueError, match="unknown hyperparameter 'w_sdt'; did you mean 'w_std'"):
        net.with_hyperparameters(w_sdt=1.0)
    with pytest.raises(ValueError, match="finite real number"):
        net.with_hyperparameters(w_std=float("nan"))
    with pytest.raises(ValueError, match="unknown parameter 'nope'"):
        net._module.kernels(np.ones((2, 5)), params={"nope": 1.0})
    assert net.with_hyperparameters() is net


# the 2-conv GAP CNN on 8 x 8 x 3 images of benchmarks/workloads.py (cnn2-gap-8x8)
GAP_CNN = """network cnn2_gap(input = [8, 8, 3]) {
    conv(64, kernel = 3, padding = same, w_std = sqrt(2), b_std = 0.1)
    relu
    conv(64, kernel = 3, padding = same, w_std = sqrt(2), b_std = 0.1)
    relu
    global_avg_pool
    dense(1, w_std = sqrt(2), b_std = 0.1)
}
"""


def test_auto_pays_for_a_compile_only_where_numpy_would_take_longer(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # a cold disk cache
    monkeypatch.setattr(dispatch, "module_available", lambda name: True)
    net = ntkdsl.loads(GAP_CNN)
    pairs, modules = 64 * 64, {}
    # a one-off mid-size request: NumPy (0.57 s on the development machine) beats a compile (~4 s)
    assert dispatch.resolve(net.program, None, pairs, modules)[0] == "numpy"
    # the NumPy seconds spent on this structure count towards the compile (ski rental)
    dispatch._record_numpy(modules, net.program, pairs, 0.5 * dispatch.compile_seconds(net.program))
    assert dispatch.resolve(net.program, None, pairs, modules)[0] == "numpy"
    dispatch._record_numpy(modules, net.program, pairs, 0.5 * dispatch.compile_seconds(net.program))
    assert dispatch.resolve(net.program, None, pairs, modules)[0] == "numba"
    # compiled in this process: the fused kernels (0.13 s) for this request, NumPy for a tiny one
    compiled = {"numba": type("Module", (), {"_loop_0": type("Dispatcher", (), {"signatures": [("float64",)]})})}
    assert dispatch.resolve(net.program, None, pairs, compiled)[0] == "numba"
    assert dispatch.resolve(net.program, None, 4, compiled)[0] == "numpy"

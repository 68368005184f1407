"""Every backend runs the same tests (design principle 12); the CuPy case skips without a GPU.

The CuPy module's text (fused CUDA kernels, ntkdsl/codegen/cuda.py) is checked everywhere (golden
lines) and executed wherever a C++ compiler exists by the CPU stand-in of CuPy (``cupy_standin.py``:
NumPy arrays, the kernels' CUDA text compiled for the CPU): the "cupy-standin" case of the
parametrised tests. On a machine with a GPU the "cupy" case runs them on CuPy itself.
More CuPy tests: test_cupy_backend.py.
"""


import numpy as np
import pytest

import cupy_standin
import ntkdsl
from ntkdsl.codegen import dispatch
from ntkdsl.arraycode.backends import BACKENDS
from ntkdsl.arraycode.loader import load_module
from shared import close, needs_gpu

SPEC = """
network mixed(input = 4) {
    dense(32, w_std = 1.3, b_std = 0.2)
    relu
    dense(32, w_std = 1.3, b_std = 0.2)
    erf
    dense(1, w_std = 1.3, b_std = 0.2)
}
"""


BACKEND_CASES = [
    pytest.param("numpy"),
    pytest.param("numba", marks=pytest.mark.skipif(not dispatch.module_available("numba"), reason="numba not installed")),
    pytest.param("cupy", marks=needs_gpu),
    pytest.param("cupy-standin", marks=pytest.mark.skipif(cupy_standin.CXX is None, reason="no C++ compiler")),
]


@pytest.fixture(scope="module")
def net():
    return ntkdsl.loads(SPEC, filename="mixed.ntk")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    return rng.standard_normal((30, 4)), rng.standard_normal((17, 4))


@pytest.fixture
def backend(request, monkeypatch, net):
    """The backend name; "cupy-standin" runs backend "cupy" with the CPU stand-in bound to ``cupy``."""
    if request.param != "cupy-standin":
        yield request.param
        return
    cupy_standin.install(monkeypatch)
    modules = net.__dict__.setdefault("_backend_modules", {})
    modules.pop("cupy", None)  # never mix a module bound to the stand-in with one bound to CuPy
    yield "cupy"
    modules.pop("cupy", None)


@pytest.fixture(scope="module")
def reference(net, data):
    """Float64 kernels of the NumPy backend."""
    x, y = data
    return net.kernels(x, backend="numpy"), net.kernels(x, y, backend="numpy")


@pytest.mark.parametrize("backend", BACKEND_CASES, indirect=True)
def test_kernels_agree_across_backends(net, data, reference, backend):
    x, y = data
    same = net.kernels(x, backend=backend, to_numpy=True)
    pair = net.kernels(x, y, backend=backend, to_numpy=True)
    for got, want in ((same, reference[0]), (pair, reference[1])):
        for a, b in zip(got, want):
            assert isinstance(a, np.ndarray) and a.shape == b.shape and a.dtype == np.float64
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())
    assert np.array_equal(same.ntk, same.ntk.T) and np.array_equal(same.nngp, same.nngp.T)


@pytest.mark.parametrize("backend", BACKEND_CASES, indirect=True)
def test_float32_on_every_backend(net, data, reference, backend):
    x, _ = data
    k = net.kernels(x, backend=backend, dtype="float32", to_numpy=True)
    assert k.nngp.dtype == np.float32 and k.ntk.dtype == np.float32
    # float32 arithmetic (the fused loops): each entry carries roundings of the kernel's scale, so an
    # entry 300x below the diagonal gets ~1e-5 relative: 1e-5 of the largest entry bounds them all
    close(k.ntk, reference[0].ntk, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKEND_CASES, indirect=True)
def test_bad_inputs_are_value_errors_on_every_backend(net, backend):
    with pytest.raises(ValueError, match=r"x1 has shape \(3, 5\); this network needs \(N, 4\)"):
        net.kernels(np.zeros((3, 5)), backend=backend)


def test_cupy_module_golden_lines(net):
    source = net.to_python(backend="cupy")
    lines = source.splitlines()
    assert "Source: mixed.ntk (sha256 " in source and "backend: cupy (fused CUDA kernels)." in source
    imports = [line for line in lines if line.startswith(("import ", "from "))]
    assert imports == ["import cupy as xp"]  # these duals need no special functions (erf's is atan2/hypot)
    assert "numpy" not in source.replace("neural-tangents", "") and "scipy" not in source
    assert "    nngp_0 = (a1 @ a2.T) / 4  # the GEMM (cuBLAS), in dtype" in lines
    assert "_layers_1_5 = xp.ElementwiseKernel(" in lines  # the five layers after the GEMM: one kernel
    assert "    const double t2_0 = perp(nngp_1, cov1_1, cov2_1);" in lines
    # arrays, per-point arrays, then the run-time parameters (scalars)
    assert ("    _layers_1_5(nngp_0, cov1_0, cov1_1, cov2_1, cov1_2, cov1_3, cov2_3, cov1_4, cov1_5, b_std_1, w_std_1, "
            "b_std_3, w_std_3, erf_a_4, erf_b_4, erf_c_4, b_std_5, w_std_5, n1, n2, same, nngp_5, ntk_5)") in lines


def test_cupy_module_runs_with_the_cpu_standin(net, data, reference, monkeypatch):
    """No GPU needed: cupy bound to NumPy, the module's CUDA kernels compiled for the CPU."""
    if cupy_standin.CXX is None:
        pytest.skip("no C++ compiler")
    cupy_standin.install(monkeypatch)
    module = load_module(net.to_python(backend="cupy"), "mixed-on-cupy-standin")
    x, y = data
    for got, want in ((module.kernels(x), reference[0]), (module.kernels(x, y), reference[1])):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())


@pytest.mark.skipif(dispatch.module_available("cupy"), reason="CuPy is installed here")
def test_cupy_backend_without_cupy_says_how_to_install_it(net, data):
    with pytest.raises(ImportError, match=r"ntkdsl\[gpu\]"):
        net.kernels(data[0], backend="cupy")


def test_backend_table_and_cli_choices():
    from ntkdsl.cli.main import _parser

    assert set(BACKENDS) == {"numpy", "numba", "cupy"}
    assert BACKENDS["cupy"].imports({"xp", "xps"}) == "import cupy as xp\nimport cupyx.scipy.special as xps"
    sub = _parser()._subparsers._group_actions[0].choices
    compile_backend = next(a for a in sub["compile"]._actions if a.dest == "backend")
    eval_backend = next(a for a in sub["eval"]._actions if a.dest == "backend")
    assert set(compile_backend.choices) == set(BACKENDS) and set(eval_backend.choices) == {"auto", *BACKENDS}


def test_cli_compile_and_eval_with_a_backend(tmp_path, capsys):
    from ntkdsl.cli import main

    spec = tmp_path / "mixed.ntk"
    spec.write_text(SPEC)
    out = tmp_path / "mixed_cupy.py"
    assert main(["compile", str(spec), "--backend", "cupy", "-o", str(out)]) == 0
    assert "import cupy as xp" in out.read_text()
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((5, 4)))
    assert main(["eval", str(spec), "--x1", str(tmp_path / "x.npy"), "--backend", "numpy", "--dtype", "float32",
                 "-o", str(tmp_path / "k.npz")]) == 0
    with np.load(tmp_path / "k.npz") as k:
        assert k["ntk"].dtype == np.float32 and k["ntk"].shape == (5, 5)
    if not dispatch.module_available("cupy"):
        capsys.readouterr()
        assert main(["eval", str(spec), "--x1", str(tmp_path / "x.npy"), "--backend", "cupy"]) == 2
        assert "ntkdsl[gpu]" in capsys.readouterr().err

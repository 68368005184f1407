"""The CuPy backend (ntkdsl/codegen/cuda.py): fused CUDA kernels printed from the KernelProgram.

Three levels, so that the CUDA path is tested as far as each machine allows:

1. everywhere: the CUDA printer's golden strings and the generated module's structure (one
   ElementwiseKernel for a whole fully connected network, readable, typed parameters);
2. with a C++ compiler (no GPU): the CPU stand-in (``cupy_standin.py``) compiles the very kernel
   text of each generated module and runs it in place of ``cupy.ElementwiseKernel``: the printed
   CUDA expressions agree with the NumPy backend to 1e-12 on every closed-form dual, on image
   networks, branches, and the fallbacks (quadrature, Owen's T); with nvcc, the kernels compile as CUDA;
3. with CuPy and a GPU: the same comparisons on the device, NumPy and CuPy inputs.
"""

import ast
import re

import numpy as np
import pytest
import sympy as sp

import ntkdsl
import cupy_standin
from shared import EVERY, close, needs_gpu
from ntkdsl.codegen import dispatch
from ntkdsl.codegen.cuda import emit_cupy_module
from ntkdsl.codegen.cuda_printer import CudaPrinter
from ntkdsl.arraycode.loader import load_module
from ntkdsl.arraycode.printer import CodegenError
from ntkdsl.algebra.functions import angle, hypot, perp, smaller
from ntkdsl.algebra.special import owens_t_angle

needs_cxx = pytest.mark.skipif(cupy_standin.CXX is None, reason="no C++ compiler for the CPU stand-in of CuPy")
needs_nvcc = pytest.mark.skipif(cupy_standin.NVCC is None, reason="nvcc is not installed")


def fcn(act: str, depth: int = 3, d: int = 5) -> str:
    layers = "".join(f"    dense(64, w_std = 1.4, b_std = 0.1)\n    {act}\n" for _ in range(depth))
    return f"network fcn_{re.sub(r'[^a-z]', '', act)}(input = {d}) {{\n{layers}    dense(1, w_std = 1.4, b_std = 0.1)\n}}\n"


CNN = """network cnn_{readout}(input = [6, 6, 2]) {{
    conv(8, kernel = 3, padding = same, w_std = 1.4, b_std = 0.1)
    relu
    conv(8, kernel = 3, padding = same, w_std = 1.4, b_std = 0.1)
    erf
    {readout}
    dense(1, w_std = 1.4, b_std = 0.1)
}}
"""
BRANCHES = """network branches(input = [5, 5, 2]) {
    conv(8, kernel = 3, padding = same, w_std = 1.3, b_std = 0.2)
    residual { relu; conv(8, kernel = 3, padding = same, w_std = 1.2, b_std = 0.1) }
    avg_pool(2, stride = 1)
    relu
    flatten
    dense(1)
}
"""
STANDARD = """network standard(input = 4, parameterization = standard) {
    dense(16, w_std = 1.3, b_std = 0.2)
    gelu
    dense(1, w_std = 1.1, b_std = 0.0)
}
"""
TANH = "network t(input = 2) {\n    dense(8, w_std = 1.2, b_std = 0.1)\n    tanh\n    dense(1)\n}\n"
ELU = "network e(input = 3) {\n    dense(8, w_std = 1.2, b_std = 0.1)\n    elu\n    dense(4)\n    relu\n    dense(1)\n}\n"


def _kernel_bodies(source):
    return {name: body for name, _, _, body in cupy_standin.kernels_of(source)}


# ---------------------------------------------------------------- 1. golden strings, everywhere


def test_cuda_printer_golden_strings():
    c, q1, q2, x = sp.symbols("c q1 q2 x", real=True)
    printer = CudaPrinter()
    cases = {
        x / 2 + sp.Rational(1, 25): "(1.0/2.0)*x + 1.0/25.0",
        sp.pi * x: "3.141592653589793*x",
        x**2 + (q1 + 1) ** 3: "(x*x) + ((q1 + 1.0)*(q1 + 1.0)*(q1 + 1.0))",
        1 / (q1 * q2): "1.0/(q1*q2)",
        sp.sqrt(2) * x: "sqrt(2.0)*x",
        x ** sp.Rational(-1, 2): "(1.0/sqrt(x))",
        x ** sp.Rational(5, 2): "pow(x, 2.5)",
        perp(c, q1 * q2): "perp(c, q1, q2)",
        sp.atan2(perp(c, q1 * q2), c): "atan2(perp(c, q1, q2), c)",
        angle(c, q1 * q2): "atan2(perp(c, q1, q2), c)",
        sp.asin(x): "asin(fmin(fmax(x, -1.0), 1.0))",
        hypot(x, c): "hypot(x, c)",
        sp.erf(x) + sp.exp(-x): "erf(x) + exp(-x)",
        smaller(q1, q2): "fmin(q1, q2)",
        sp.Max(q1, q2, x): "fmax(q1, fmax(q2, x))",
        sp.Piecewise((x, x > 0), (0, True)): "((x > 0.0) ? (x) : (0.0))",
    }
    for expr, text in cases.items():
        assert printer.doprint(expr) == text, expr
    assert printer.helpers == {"perp"}
    for expr in (owens_t_angle(x, c), sp.Function("mystery")(x), sp.Heaviside(x)):
        with pytest.raises(CodegenError, match="no CUDA form"):
            printer.doprint(expr)


@pytest.mark.parametrize("act", ["relu", "erf", "gelu"])
def test_fcn_is_one_readable_kernel(act):
    net = ntkdsl.loads(fcn(act), filename=f"{act}.ntk")
    source = net.to_python(backend="cupy")
    assert source == emit_cupy_module(net.program, net.source, net.filename)
    ast.parse(source)
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports == ["import cupy as xp"]
    assert "numpy" not in source and "scipy" not in source
    assert "backend: cupy (fused CUDA kernels)" in source and f"Source: {act}.ntk (sha256 " in source
    assert "    nngp_0 = (a1 @ a2.T) / 5  # the GEMM (cuBLAS), in dtype" in source
    bodies = _kernel_bodies(source)
    assert list(bodies) == ["_layers_1_7"]  # every layer after the Gram matrix: one kernel
    body = bodies["_layers_1_7"]
    for k in range(1, 8):
        assert f"    // layer {k}: " in body and f"double nngp_{k} = " in body
        assert f"if (diagonal) nngp_{k} = cov1_{k};" in body  # Σ(x, x) is the variance, exactly
    assert body.rstrip().endswith("nngp_7_out = nngp_7;\n    ntk_7_out = ntk_7;".rstrip())
    assert "(double) nngp_0_in" in body  # the Gram matrix (float32 or float64), read in float64
    assert '"R nngp_7_out, R ntk_7_out"' in source and '"G nngp_0_in, float64 cov1_0, ' in source
    assert "_CUDA_OPTIONS = ('--fmad=false',)" in source
    assert "__device__ double perp(" in source  # GELU's Δ too: hypot(√(1 + q1 + q2), perp)
    assert {"relu": "perp(nngp_", "erf": "hypot(", "gelu": "atan2("}[act] in body
    assert "xp." not in body and "**" not in body and "M_PI" not in body
    call = next(line for line in source.splitlines() if line.startswith("    _layers_1_7("))
    assert call.startswith("    _layers_1_7(nngp_0, cov1_0, cov1_1, cov2_1, ") and call.endswith("n1, n2, same, nngp_7, ntk_7)")
    assert max(map(len, body.splitlines())) < 200


def test_image_networks_fuse_between_the_structural_operations():
    source = ntkdsl.loads(CNN.format(readout="global_avg_pool")).to_python(backend="cupy")
    assert list(_kernel_bodies(source)) == ["_layers_1_2", "_layers_3_4", "_layers_5_6"]
    lines = source.splitlines()
    # conv: the sum over the filter's taps as array operations, the affine map and the activation fused
    assert "    h3_0 = conv_taps(nngp_2, shape=(6, 6), kernel=(3, 3), stride=(1, 1), padding='same', full=True)" in lines
    assert "    h5_0 = global_pool(nngp_4, shape=(6, 6), mode='avg')" in lines
    # σ_w and σ_b are run-time parameters: scalar arguments of the kernel (after the arrays)
    assert "double nngp_3 = (b_std_3*b_std_3) + h3_0*t3_0;" in _kernel_bodies(source)["_layers_3_4"]
    assert "float64 h4_1, float64 b_std_3, float64 w_std_3, float64 erf_a_4, " in source
    assert "pixel_variance(" in source  # per-point inputs of the full-layout activations


def test_numerical_duals_and_wedge_integrals_fall_back_to_array_operations():
    tanh = ntkdsl.loads(TANH).to_python(backend="cupy")
    assert "mehler_expectations(((_sigma_0, _sigma_0),), " in tanh and "class _Quiet:" in tanh
    assert "_layer_1 = xp.ElementwiseKernel(" in tanh and "_layers_2_3 = xp.ElementwiseKernel(" in tanh
    assert "    h2_0 = mehler_expectations(((_sigma_0, _sigma_0),), cov1_1, cov2_1, nngp_1, kinks=())[0]" in tanh
    elu = ntkdsl.loads(ELU).to_python(backend="cupy")  # the ELU dual's wedge integrals: CuPy array routines
    assert "def wedge(a, beta):" in elu and "xps.erfcx(" in elu
    assert "wedge(" not in "".join(_kernel_bodies(elu).values())  # never inside a CUDA kernel


def test_user_text_cannot_escape_a_cuda_comment():
    net = ntkdsl.loads(fcn("relu", 1), filename="evil\\\n}\n.ntk\\")
    source = net.to_python(backend="cupy")
    ast.parse(source)
    for body in _kernel_bodies(source).values():
        for line in body.splitlines():
            assert not line.rstrip().endswith("\\")  # a // comment that a backslash would continue
            assert "evil" not in line or line.strip().startswith("// layer ")


# ---------------------------------------------------------------- 2. the CUDA text on the CPU stand-in


@pytest.fixture
def standin(monkeypatch):
    """``cupy`` bound to the CPU stand-in; networks made inside the test load their modules with it."""
    if cupy_standin.CXX is None:
        pytest.skip("no C++ compiler for the CPU stand-in of CuPy")
    return cupy_standin.install(monkeypatch)


def _run_against_numpy(text, shape, standin, n=(9, 6), rtol=1e-12, seed=0):
    net = ntkdsl.loads(text, filename="net.ntk")
    module = load_module(net.to_python(backend="cupy"), net.name + "-cupy-standin")
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((n[0],) + shape), rng.standard_normal((n[1],) + shape)
    before = sum(k.calls for k in standin.ElementwiseKernel.instances)
    for args in ((x,), (x, y)):
        got, want = module.kernels(*args), net.kernels(*args, backend="numpy")
        for a, b in zip(got, want):
            assert a.dtype == np.float64 and a.shape == b.shape
            close(a, b, rtol)
        if len(args) == 1:
            assert np.array_equal(got[0], got[0].T) and np.array_equal(got[1], got[1].T)
            np.testing.assert_allclose(np.diag(got[0]), np.diag(want[0]), rtol=1e-14)
    assert sum(k.calls for k in standin.ElementwiseKernel.instances) > before  # the CUDA text did run
    return net, module, x


def test_every_closed_form_dual_agrees_with_numpy(standin):
    net, module, x = _run_against_numpy(EVERY, (3,), standin)
    assert len(_kernel_bodies(net.to_python(backend="cupy"))) == 1


@pytest.mark.parametrize("act", ["relu", "erf", "gelu"])
def test_fcn_float32_and_float64(standin, act):
    net, module, x = _run_against_numpy(fcn(act), (5,), standin)
    double = module.kernels(x)
    single = module.kernels(x, dtype="float32")
    for a, b in zip(single, double):
        assert a.dtype == np.float32
        close(a, b, 1e-5)
    assert np.array_equal(single.ntk if hasattr(single, "ntk") else single[1], single[1].T)


def test_fcn_diagonal_is_exact_and_huge_variances_do_not_overflow(standin):
    net, module, x = _run_against_numpy(fcn("relu", 4), (5,), standin)
    np.testing.assert_array_equal(np.diag(module.kernels(x)[0]), np.diag(net.kernels(x, backend="numpy").nngp))
    big = x * 1e100  # q ≈ 1e200: q1·q2 overflows unless perp rescales by exact powers of two
    got, want = module.kernels(big), net.kernels(big, backend="numpy")
    assert np.all(np.isfinite(got[1]))
    for a, b in zip(got, want):
        close(a, b)


@pytest.mark.parametrize("readout", ["global_avg_pool", "flatten"])
def test_cnn_agrees_with_numpy(standin, readout):
    _run_against_numpy(CNN.format(readout=readout), (6, 6, 2), standin, n=(4, 3))


def test_branches_and_standard_parameterization(standin):
    _run_against_numpy(BRANCHES, (5, 5, 2), standin, n=(4, 3))
    _run_against_numpy(STANDARD, (4,), standin)


MORE = {
    "layer-norm": "network a(input = [4, 4, 2]) {\n conv(4, kernel = 3, padding = same, b_std = 0.1)\n layer_norm\n"
                  " relu\n global_avg_pool\n dense(1)\n}\n",
    "concat-product": "network a(input = 3) {\n dense(4, b_std = 0.1)\n relu\n parallel(merge = concat) {\n dense(3); erf\n"
                      " } {\n dense(5); gelu\n }\n dense(1)\n}\n",
    "pool-selu-standard": "network a(input = [6, 6, 2], parameterization = standard) {\n conv(4, kernel = 3, padding = valid,"
                          " b_std = 0.1)\n relu\n avg_pool(2, stride = 2)\n conv(4, kernel = 2, padding = circular)\n selu\n"
                          " flatten\n dense(1)\n}\n",
}


@pytest.mark.parametrize("name", sorted(MORE))
def test_more_architectures_agree_with_numpy(standin, name):
    net = ntkdsl.loads(MORE[name])
    _run_against_numpy(MORE[name], tuple(net.ir.input_shape), standin, n=(4, 3))


def test_fallbacks_agree_with_numpy(standin):
    _run_against_numpy(TANH, (2,), standin, n=(5, 4))
    _run_against_numpy(ELU, (3,), standin, n=(6, 4))


def test_the_api_and_cli_run_the_cupy_backend(standin, tmp_path):
    """backend="cupy" through net.kernels and `ntkdsl eval` (the stand-in plays CuPy)."""
    net = ntkdsl.loads(fcn("erf"))
    x = np.random.default_rng(1).standard_normal((8, 5))
    k = net.kernels(x, backend="cupy", dtype="float32", to_numpy=True)
    assert isinstance(k.ntk, np.ndarray) and k.ntk.dtype == np.float32
    close(k.ntk, net.kernels(x, backend="numpy").ntk, 1e-5)
    from ntkdsl.cli import main

    spec = tmp_path / "erf.ntk"
    spec.write_text(fcn("erf"))
    np.save(tmp_path / "x.npy", x)
    assert main(["eval", str(spec), "--x1", str(tmp_path / "x.npy"), "--backend", "cupy", "--dtype", "float32",
                 "-o", str(tmp_path / "k.npz")]) == 0
    with np.load(tmp_path / "k.npz") as saved:
        assert saved["ntk"].dtype == np.float32
        close(saved["ntk"], k.ntk, 1e-6)
    out = tmp_path / "erf_cupy.py"
    assert main(["compile", str(spec), "--backend", "cupy", "-o", str(out)]) == 0
    assert "_layers_1_7 = xp.ElementwiseKernel(" in out.read_text()


@needs_nvcc
def test_kernels_compile_with_nvcc(tmp_path):
    """The kernel text is valid CUDA C++ (no GPU needed to compile): relu, erf, gelu FCNs and a CNN."""
    sources = [ntkdsl.loads(fcn(act)).to_python(backend="cupy") for act in ("relu", "erf", "gelu")]
    sources.append(ntkdsl.loads(EVERY).to_python(backend="cupy"))
    sources.append(ntkdsl.loads(CNN.format(readout="flatten")).to_python(backend="cupy"))
    cupy_standin.nvcc_check(sources, str(tmp_path))
    assert (tmp_path / "kernels.o").stat().st_size > 0
    assert (tmp_path / "kernels.cu").read_text().count("__global__") == 3 + 1 + 3


# ---------------------------------------------------------------- 3. on a GPU




@needs_gpu
@pytest.mark.parametrize("text,shape", [(EVERY, (3,)), (fcn("gelu"), (5,)), (CNN.format(readout="global_avg_pool"), (6, 6, 2)),
                                        (BRANCHES, (5, 5, 2)), (TANH, (2,)), (ELU, (3,))],
                         ids=["every-dual", "gelu", "cnn-gap", "branches", "tanh-quadrature", "elu-owens-t"])
def test_on_the_gpu(text, shape):
    cupy = pytest.importorskip("cupy")
    net = ntkdsl.loads(text)
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((7,) + shape), rng.standard_normal((5,) + shape)
    for args in ((x,), (x, y), (cupy.asarray(x), cupy.asarray(y))):
        got = net.kernels(*args, backend="cupy")
        assert isinstance(got.ntk, cupy.ndarray) and got.ntk.dtype == np.float64
        want = net.kernels(*(cupy.asnumpy(a) for a in args), backend="numpy")
        for a, b in zip(got, want):
            close(cupy.asnumpy(a), b)
    single = net.kernels(x, backend="cupy", dtype="float32", to_numpy=True)
    assert isinstance(single.ntk, np.ndarray) and single.ntk.dtype == np.float32
    assert np.array_equal(single.ntk, single.ntk.T)
    close(single.ntk, net.kernels(x, backend="numpy").ntk, 1e-5)


# ---------------------------------------------------------------- 4. the kernel-flow solver on every backend

FLOW_BACKENDS = [
    pytest.param("numpy"),
    pytest.param("cupy-standin", marks=needs_cxx),
    pytest.param("cupy", marks=needs_gpu),
]


@pytest.fixture
def flow_backend(request, monkeypatch):
    """The flow's backend= ("cupy-standin": backend "cupy" with the CPU stand-in bound to cupy)."""
    if request.param == "cupy-standin":
        cupy_standin.install(monkeypatch)
        return "cupy"
    return request.param


@pytest.fixture(scope="module")
def flow_data():
    net = ntkdsl.loads(fcn("relu", 2, d=3))
    rng = np.random.default_rng(5)
    x, xt = rng.standard_normal((14, 3)), rng.standard_normal((6, 3))
    y = np.stack([np.sin(x[:, 0]), x[:, 1] * x[:, 2]], axis=1)
    k, kt, ktt = (net.kernels(*a, backend="numpy") for a in ((x,), (xt, x), (xt,)))
    return dict(net=net, x=x, xt=xt, y=y, k=k, kt=kt, ktt=ktt)


def _host(a):
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


@pytest.mark.parametrize("flow_backend", FLOW_BACKENDS, indirect=True)
@pytest.mark.parametrize("ridge", [0.0, 1e-3])
def test_flow_predictions_agree_across_backends(flow_data, flow_backend, ridge):
    from ntkdsl.flow import KernelFlow, TestKernels

    d = flow_data
    reference = KernelFlow.from_kernels(d["k"].ntk, d["y"], d["k"].nngp, learning_rate=0.5, diag_reg=ridge)
    flow = KernelFlow(d["net"], d["x"], d["y"], learning_rate=0.5, diag_reg=ridge, backend=flow_backend)
    assert flow.backend == flow_backend
    times = [0.0, 3.0, 50.0, np.inf]
    test = TestKernels(d["kt"].ntk, d["kt"].nngp, d["ktt"].nngp)
    f0 = (np.full((14, 2), 0.1), np.full((6, 2), -0.2))
    pairs = [
        (flow.predict(d["xt"], times, f0=f0), reference.predict(d["kt"].ntk, times, f0=f0)),
        (flow.predict(d["xt"], np.inf), reference.predict(d["kt"].ntk, np.inf)),  # Cholesky path
        (flow.predict_train(times), reference.predict_train(times)),
        (flow.loss(times), reference.loss(times)),
        (flow.eigen().rates, reference.eigen().rates),
        (flow.eigen().components(3.0), reference.eigen().components(3.0)),
    ]
    for mean_cov_new, mean_cov_ref in zip(flow.ensemble(d["xt"], [2.0, np.inf]), reference.ensemble(test, [2.0, np.inf])):
        pairs.append((mean_cov_new, mean_cov_ref))
    pairs.append((flow.ensemble(d["xt"], np.inf, compute_cov=False)[1], reference.ensemble(test, np.inf, compute_cov=False)[1]))
    for got, want in pairs:
        got = _host(got)
        assert got.shape == np.shape(want)
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10 * np.max(np.abs(want)))
    assert flow.max_learning_rate() == pytest.approx(reference.max_learning_rate(), rel=1e-10)
    if flow_backend == "cupy":  # results are arrays of the backend (the stand-in's are NumPy's)
        import cupy

        assert isinstance(flow.predict(d["xt"], 1.0), cupy.ndarray)
        assert isinstance(flow.ensemble(d["xt"], 1.0)[1], cupy.ndarray)


@pytest.mark.parametrize("flow_backend", FLOW_BACKENDS, indirect=True)
def test_flow_from_kernels_and_ode_losses_on_every_backend(flow_data, flow_backend):
    from ntkdsl.flow import KernelFlow

    d = flow_data
    labels = np.eye(2)[(d["x"][:, 0] > 0).astype(int)]
    kwargs = dict(learning_rate=1.0, loss="cross_entropy")
    reference = KernelFlow.from_kernels(d["k"].ntk, labels, **kwargs)
    flow = KernelFlow.from_kernels(d["k"].ntk, labels, backend=flow_backend, **kwargs)
    for got, want in ((flow.predict(d["kt"].ntk, [1.0, 4.0]), reference.predict(d["kt"].ntk, [1.0, 4.0])),
                      (flow.loss([0.0, 2.0]), reference.loss([0.0, 2.0]))):
        np.testing.assert_allclose(_host(got), want, rtol=1e-9, atol=1e-12)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # NumPy standing in for CuPy warns; CuPy does not
@pytest.mark.parametrize("flow_backend", FLOW_BACKENDS, indirect=True)
def test_flow_singular_kernels_on_every_backend(flow_data, flow_backend):
    """A repeated training point: Cholesky is refused (or warned about) and t = ∞ uses the pseudo-inverse."""
    from ntkdsl.flow import IllConditionedWarning, KernelFlow

    d = flow_data
    x = np.concatenate([d["x"][:5], d["x"][:1]])
    y = np.arange(6.0)
    k = d["net"].kernels(x, backend="numpy")
    with pytest.warns(IllConditionedWarning):
        want = KernelFlow.from_kernels(k.ntk, y).predict_train(np.inf)
    with pytest.warns(IllConditionedWarning):
        got = KernelFlow.from_kernels(k.ntk, y, backend=flow_backend).predict_train(np.inf)
    np.testing.assert_allclose(_host(got), want, rtol=1e-6, atol=1e-8)


def test_cupy_condition_estimate_matches_the_exact_condition_number(monkeypatch):
    """The Hager–Higham estimate on the CuPy path (run here on the stand-in) against ‖K‖₁‖K⁻¹‖₁."""
    cupy_standin.install(monkeypatch)
    from ntkdsl.flow.arrays import NUMPY, CupyArrays

    rng = np.random.default_rng(0)
    for n, spread in ((30, 1e3), (60, 1e9)):
        q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        k = (q * np.geomspace(1.0, 1.0 / spread, n)) @ q.T
        k = 0.5 * (k + k.T)
        norm = np.abs(k).sum(axis=0).max()
        exact = norm * np.abs(np.linalg.inv(k)).sum(axis=0).max()
        cupy = CupyArrays()
        estimate = cupy.condition_number(cupy.cho_factor(k.copy()), norm)
        lapack = NUMPY.condition_number(NUMPY.cho_factor(k.copy()), norm)
        assert exact / 3 <= estimate <= exact * (1 + 1e-6)
        assert estimate == pytest.approx(lapack, rel=0.5)


def test_flow_backend_names():
    from ntkdsl.flow import KernelFlow

    k = np.eye(3)
    with pytest.raises(ValueError, match="backend must be 'numpy' or 'cupy'"):
        KernelFlow.from_kernels(k, np.ones(3), backend="torch")
    if not dispatch.module_available("cupy"):
        with pytest.raises(ImportError, match=r"ntkdsl\[gpu\]"):
            KernelFlow.from_kernels(k, np.ones(3), backend="cupy")


@pytest.mark.parametrize("flow_backend", FLOW_BACKENDS, indirect=True)
def test_flow_cli_backend(flow_backend, tmp_path, capsys):
    """`ntkdsl flow --backend cupy` writes the same NumPy arrays as --backend numpy."""
    from ntkdsl.cli import main

    rng = np.random.default_rng(2)
    x, xt = rng.standard_normal((10, 5)), rng.standard_normal((4, 5))
    np.savez(tmp_path / "train.npz", x=x, y=np.sin(x[:, 0]))
    np.savez(tmp_path / "test.npz", x=xt, y=np.sin(xt[:, 0]))
    (tmp_path / "net.ntk").write_text(fcn("erf"))
    outputs = {}
    for backend in ("numpy", flow_backend):
        out = tmp_path / f"{backend}.npz"
        assert main(["flow", str(tmp_path / "net.ntk"), "--train", str(tmp_path / "train.npz"), "--test",
                     str(tmp_path / "test.npz"), "--times", "0,5,inf", "--backend", backend, "-o", str(out)]) == 0
        with np.load(out) as saved:
            outputs[backend] = {k: saved[k] for k in saved.files}
    capsys.readouterr()
    for key, want in outputs["numpy"].items():
        np.testing.assert_allclose(outputs[flow_backend][key], want, rtol=1e-9, atol=1e-12)


@pytest.mark.skipif(dispatch.module_available("cupy"), reason="CuPy is installed here")
def test_flow_cli_backend_cupy_without_cupy_is_a_user_error(tmp_path, capsys):
    from ntkdsl.cli import main

    np.savez(tmp_path / "train.npz", x=np.eye(5), y=np.arange(5.0))
    (tmp_path / "net.ntk").write_text(fcn("relu", 1))
    assert main(["flow", str(tmp_path / "net.ntk"), "--train", str(tmp_path / "train.npz"), "--backend", "cupy"]) == 2
    assert "ntkdsl[gpu]" in capsys.readouterr().err

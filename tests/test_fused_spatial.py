"""The fused numba backend of image and signal networks (ntkdsl/codegen/fused_spatial.py).

Oracles: neural-tangents' float64 kernels of every image architecture of the reference set
(tests/data/nt_architectures.json: 18 networks, flatten and pooling readouts, both layouts), and
the NumPy backend (itself checked against neural-tangents, Monte Carlo and hand values in
test_architectures*.py) on four networks that together use every option: 1-, 2- and 3-D
inputs; strides; valid, same and circular padding; rectangular filters; average and sum pooling,
global pooling; residual, concat and product branches; layer norm; closed-form activations of
several families; dense layers after flatten; both parameterizations. Compiling one of these
modules takes a few seconds (cached on disk after).
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import ntkdsl
from ntkdsl import tiling
from ntkdsl.codegen import dispatch
from ntkdsl.codegen.dispatch import BackendFallbackWarning
from ntkdsl.codegen.fused import fusable
from shared import close, needs_numba

# fused vs NumPy backend: the same formulas, with the Σ⁰ dot products summed in another order and a
# vectorisable atan2 (≤ 2e-16 relative each); measured ≤ 4e-16 over these networks, 1e-12 leaves
# room for amplification through depth while a wrong term or index is O(1)
AGREE = 1e-12

NETS = {
    "image": """network image(input = [6, 5, 2]) {
    conv(4, kernel = (3, 2), stride = (2, 1), padding = same, b_std = 0.1)
    erf
    conv(4, kernel = 3, padding = circular, w_std = 1.3)
    residual(scale = 0.7) {
        relu
        conv(4, kernel = 3, padding = same, b_std = 0.2)
    }
    parallel(merge = concat) {
        conv(4, kernel = 1)
        gelu
    } {
        conv(4, kernel = 3, padding = same)
        abs
    }
    conv(3, kernel = 2, padding = valid)
    layer_norm
    conv(3, kernel = 1)
    parallel(merge = prod) {
        identity
    } {
        sin
        conv(3, kernel = 1)
    }
    flatten
    dense(3)
    relu
    dense(1)
}
""",
    "signal": """network signal(input = [9, 3], parameterization = standard) {
    conv(5, kernel = 3, stride = 2, padding = valid, b_std = 0.3)
    relu
    conv(5, kernel = 4, stride = 3, padding = circular)
    leaky_relu(alpha = 0.2)
    conv(5, kernel = 2, padding = same)
    flatten
    dense(1, b_std = 0.1)
}
""",
    "pooled": """network pooled(input = [6, 5, 2]) {
    conv(4, kernel = 3, padding = same, b_std = 0.2)
    relu
    avg_pool((2, 2), stride = (1, 2), padding = same)
    conv(4, kernel = (2, 3), stride = (2, 1), padding = circular, w_std = 1.2)
    residual(scale = 0.5) {
        erf
        conv(4, kernel = 1)
    }
    sum_pool(2, padding = valid)
    gelu
    global_avg_pool
    dense(2)
    relu
    dense(1)
}
""",
    "volume": """network volume(input = [3, 4, 3, 2]) {
    conv(4, kernel = (2, 3, 2), padding = same)
    relu
    conv(4, kernel = 2, stride = (1, 2, 1), padding = valid)
    erf(a = 2, b = 0.5, c = 0.1)
    flatten
    dense(1)
}
""",
}
REFERENCE = json.loads((Path(__file__).resolve().parent / "data" / "nt_architectures.json").read_text())["architectures"]
IMAGE_REFERENCES = sorted(name for name, ref in REFERENCE.items() if ntkdsl.loads(ref["spec"]).ir.input_shape[1:])


@pytest.fixture(scope="module", params=sorted(NETS))
def net(request):
    return ntkdsl.loads(NETS[request.param], filename=f"{request.param}.ntk")


def images(net, n, seed):
    """Random inputs with a duplicate of the first, a scaled copy, a negation and a zero input."""
    x = np.random.default_rng(seed).standard_normal((n,) + net.ir.input_shape)
    return np.concatenate([x, x[:1], 2.5 * x[1:2], -x[2:3], np.zeros_like(x[:1])])


def well_conditioned(n):
    """The indices of images(net, n, ·) without the scaled copy and the negation: with them ρ = ±1
    in exact arithmetic, θ ≈ √(2(1 − |ρ|)) turns a rounding of Σ⁰ (1e-16) into 1e-8 of K̇, on
    either path; the duplicate is exact (tiling.exact_duplicates), the zero input is exactly 0."""
    return np.r_[0:n + 1, n + 3]


def test_every_feature_network_is_fusable(net):
    assert fusable(net.program) is None


@needs_numba
@pytest.mark.parametrize("name", IMAGE_REFERENCES)
def test_agrees_with_neural_tangents(name):
    ref = REFERENCE[name]
    net = ntkdsl.loads(ref["spec"])
    assert fusable(net.program) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", BackendFallbackWarning)  # the fused kernels, not a fallback
        got = net.kernels(np.array(ref["x1"]), np.array(ref["x2"]), backend="numba")
    # the NumPy path agrees with these to ≤ 1.9e-15 (test_architectures.py); the pair loops add
    # the Σ⁰ dot products in another order and a vectorisable atan2 (≤ 2e-16 relative each):
    # measured ≤ 1.7e-15 over the 18 networks
    close(got.nngp, np.array(ref["nngp"]), 1e-13)
    close(got.ntk, np.array(ref["ntk"]), 1e-13)


def test_neural_tangents_references_cover_both_layouts():
    # the comparison above is not vacuous: flatten CNNs (diagonal layout) and pooling networks (full)
    layouts = {ntkdsl.loads(REFERENCE[name]["spec"]).program.steps[0].state.layout for name in IMAGE_REFERENCES}
    assert layouts == {"diagonal", "full"} and len(IMAGE_REFERENCES) >= 18


@needs_numba
def test_self_kernel_matches_numpy_exactly_symmetric_with_the_variances_on_the_diagonal(net):
    x = images(net, 9, 1)
    fused, reference = net.kernels(x, backend="numba"), net.kernels(x, backend="numpy")
    good = np.ix_(well_conditioned(9), well_conditioned(9))
    for a, b in zip(fused, reference):
        assert a.dtype == np.float64 and np.array_equal(a, a.T) and np.all(np.isfinite(a))
        close(a[good], b[good], AGREE)
        close(a, b, 1e-7)  # ρ = ±1 pairs: √ε amplification (see well_conditioned), on both paths
    # Σ(x, x) is the last layer's variance, as when x is evaluated alone (NumPy's sums over pixels
    # round differently for one point and for a batch: a few ulps, as on the NumPy path)
    alone = [net.kernels(x[i:i + 1], backend="numba").nngp[0, 0] for i in range(len(x))]
    np.testing.assert_allclose(np.diag(fused.nngp), alone, rtol=1e-14, atol=0)
    close(np.diag(fused.nngp), np.diag(reference.nngp), 1e-14)
    assert np.array_equal(fused.nngp[0], fused.nngp[-4])  # the duplicate of point 0: the same row


@needs_numba
def test_cross_kernel_matches_numpy_and_transposes(net):
    x1, x2 = images(net, 6, 2), images(net, 3, 3)[:3]  # independent points: no ρ = ±1 pair
    a, b = net.kernels(x1, x2, backend="numba"), net.kernels(x2, x1, backend="numba")
    reference = net.kernels(x1, x2, backend="numpy")
    for got, back, ref in zip(a, b, reference):
        close(got, ref, AGREE)
        close(got, back.T, 1e-14)  # (x2, x1): the same arithmetic transposed, but for Σ⁰'s summation


@needs_numba
def test_blocks_of_pairs_cover_every_pair():
    # the signal network has 9 pixels: 64 pairs a block, so 150 points make three blocks a row and
    # ragged last blocks; a single row (N1 = 1) and a single column too
    net = ntkdsl.loads(NETS["signal"])
    x = np.random.default_rng(4).standard_normal((150,) + net.ir.input_shape)
    reference = net.kernels(x, backend="numpy")
    for got, ref in zip(net.kernels(x, backend="numba"), reference):
        close(got, ref, AGREE)
    for got, ref in zip(net.kernels(x[:1], x, backend="numba"), reference):
        close(got, ref[:1], AGREE)
    for got, ref in zip(net.kernels(x, x[7:8], backend="numba"), reference):
        close(got, ref[:, 7:8], AGREE)


@needs_numba
def test_float32_results():
    net = ntkdsl.loads(NETS["volume"])
    x = images(net, 5, 5)[well_conditioned(5)]
    single, double = net.kernels(x, backend="numba", dtype=np.float32), net.kernels(x, backend="numba")
    assert single.nngp.dtype == np.float32 and single.ntk.dtype == np.float32
    # the layers compute in float64 either way: only the final rounding to float32 (2^-24) differs
    close(single.nngp, double.nngp, 2.0**-23)
    close(single.ntk, double.ntk, 2.0**-23)


@needs_numba
def test_one_thread_gives_the_same_kernels():
    net = ntkdsl.loads(NETS["signal"])
    module = net._backend_module("numba")
    x = images(net, 20, 6)
    threaded = module.kernels(x)
    threads = module.THREADS
    module.THREADS = 1
    try:
        alone = module.kernels(x)
    finally:
        module.THREADS = threads
    for a, b in zip(threaded, alone):
        assert np.array_equal(a, b)  # each pair's arithmetic is the same whichever thread runs it


@needs_numba
def test_memory_model_bounds_the_measured_peak():
    # everything the module allocates is a NumPy array, so tracemalloc sees it all
    for name in ("image", "signal", "pooled"):
        net = ntkdsl.loads(NETS[name])
        module = net._backend_module("numba")
        model = tiling.MemoryModel(*module.MEMORY_MODEL)
        for n1, n2 in ((40, 40), (120, None), (200, 30)):
            x = images(net, n1 - 4, 7)
            y = None if n2 is None else images(net, n2 - 4, 8)
            module.kernels(x, y)  # compiled before measuring
            peak = tiling._peak(lambda: module.kernels(x, y))
            estimate = model.peak(n1, n1 if n2 is None else n2)
            assert peak <= estimate <= 3 * peak + 2**21, (name, n1, n2, peak, estimate)


@needs_numba
def test_memory_budget_tiles_the_fused_path():
    net = ntkdsl.loads(NETS["image"])
    x = images(net, 60, 9)
    whole = net.kernels(x, backend="numba")
    budget = int(tiling.MemoryModel(*net._backend_module("numba").MEMORY_MODEL).peak(20, 20)) + 16 * len(x) ** 2
    assert net._tile(x, None, "numba", None, budget) is not None  # the budget forces tiles
    tiled = net.kernels(x, backend="numba", memory_budget=budget, progress=False)
    for a, b in zip(tiled, whole):
        close(a, b, 1e-13)  # a tile's pairs are computed by the same loops; Σ⁰ row blocks may round apart


def test_numerical_duals_in_images_stay_on_numpy():
    tanh = ntkdsl.loads("network t(input = [3, 3, 1]) { conv(2, kernel = 2); tanh; flatten; dense(1) }")
    assert "numerical dual" in fusable(tanh.program)


def test_auto_counts_pixels_for_image_networks(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # a cold disk cache: numba would compile first
    net = ntkdsl.loads(NETS["image"])
    monkeypatch.setattr(dispatch, "module_available", lambda name: True)
    assert dispatch.resolve(net.program, None, 10) == ("numpy", "")
    assert dispatch.resolve(net.program, None, 10**8) == ("numba", "")  # NumPy: ~30 pixels a pair, far over a compile


@needs_numba
def test_auto_reaches_the_fused_image_kernels(monkeypatch):
    # 36 x 36 points take NumPy a few ms: with the compile and the fused call's overheads counted as
    # free, the request goes to the fused kernels
    monkeypatch.setattr(dispatch, "compile_seconds", lambda program: 0.0)
    monkeypatch.setattr(dispatch, "NUMBA_LOAD_SECONDS", 0.0)
    monkeypatch.setattr(dispatch, "SMALL_SECONDS", 0.0)
    net = ntkdsl.loads(NETS["image"])
    x = images(net, 36, 15)
    got = net.kernels(x)
    assert "numba" in net.__dict__.get("_backend_modules", {})
    good = np.ix_(well_conditioned(36), well_conditioned(36))
    for a, b in zip(got, net.kernels(x, backend="numpy")):
        close(a[good], b[good], AGREE)


def test_generated_source_is_readable_and_shares_identical_layers():
    deep = ntkdsl.loads("network deep(input = [8, 8, 3]) {\n    repeat 6 {\n        conv(8, kernel = 3, padding = same, b_std = 0.1)\n"
                        "        relu\n    }\n    flatten\n    dense(1)\n}\n", filename="deep.ntk")
    text = deep.to_python(backend="numba")
    compile(text, "deep_fused.py", "exec")
    assert "eval(" not in text and "exec(" not in text
    assert "backend: numba (fused CPU kernels, blocks of input pairs)" in text
    assert "# layer 12: relu  (deep.ntk:4:9)" in text  # every layer named with its source line
    # 6 conv + 6 relu layers share: one window sum (of any grid), the first conv's loop and the
    # others' (Θ⁰ = 0 makes the first differ), the first relu's and the others', flatten's, dense's
    assert text.count("\ndef _loop_") == 7
    assert text.count("_window_pass(") == 3  # its definition and the two axes of the one window sum


@needs_numba
def test_compiled_module_file_is_standalone(tmp_path):
    import importlib.util

    net = ntkdsl.loads(NETS["signal"], filename="signal.ntk")
    path = tmp_path / "signal_fused.py"
    path.write_text(net.to_python(backend="numba"))
    spec = importlib.util.spec_from_file_location("signal_fused", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x = images(net, 4, 10)
    for a, b in zip(module.kernels(x), net.kernels(x, backend="numpy")):
        close(a, b, AGREE)


ELU_NETS = [("network e(input = 3) { dense(4, w_std = 3); elu; dense(3); elu(alpha = 2.5); dense(1) }", (3,)),
            ("network s(input = [3, 3, 1]) { conv(4, kernel = 2, w_std = 3); selu; flatten; dense(1) }", (3, 3, 1))]


@needs_numba
@pytest.mark.parametrize("spec, shape", ELU_NETS)
def test_elu_and_selu_fuse(spec, shape):
    # the wedge integrals of the ELU dual (arraycode/wedge_support.py) compile as numba scalar routines;
    # agreement 1e-12: the scalar and array routines differ by ≤ 6e-14 (erfc vs erfcx near x = 5)
    net = ntkdsl.loads(spec)
    assert fusable(net.program) is None
    x = np.random.default_rng(11).standard_normal((5,) + shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BackendFallbackWarning)
        for args in ((x,), (x, 1.7 * x[:3])):
            for a, b in zip(net.kernels(*args, backend="numba"), net.kernels(*args, backend="numpy")):
                close(a, b, AGREE)


@pytest.mark.parametrize("spec, shape", ELU_NETS)
def test_a_dual_without_a_scalar_form_is_found_before_running_and_falls_back(spec, shape, monkeypatch):
    # a function without a scalar translation (simulated: the wedge routine): fusable() finds it
    # from a trial emission, and backend="numba" warns and runs the NumPy module
    from ntkdsl.codegen.fused import ScalarPrinter
    from ntkdsl.arraycode.printer import CodegenError

    def refuse(self, expr):
        raise CodegenError("wedge has no scalar translation")

    monkeypatch.setattr(ScalarPrinter, "_print_wedge", refuse)
    net = ntkdsl.loads(spec)
    assert "wedge" in fusable(net.program)
    x = np.random.default_rng(11).standard_normal((4,) + shape)
    with pytest.warns(BackendFallbackWarning, match="wedge"):
        got = net.kernels(x, backend="numba", dtype=np.float32)
    assert got.ntk.dtype == np.float32
    np.testing.assert_array_equal(got.ntk, net.kernels(x, backend="numpy").ntk.astype(np.float32))


@needs_numba
@pytest.mark.parametrize("spec, shape", [("network a(input = 3) { dense(4); relu; dense(1) }", (3,)),
                                         ("network b(input = [3, 3, 2]) { conv(3, kernel = 2); relu; global_avg_pool; dense(1) }",
                                          (3, 3, 2))])
def test_no_points_gives_empty_kernels(spec, shape, capfd):
    net = ntkdsl.loads(spec)
    x = np.random.default_rng(12).standard_normal((2,) + shape)
    for args, expected in (((x, x[:0]), (2, 0)), ((x[:0], x), (0, 2)), ((x[:0],), (0, 0))):
        k = net.kernels(*args, backend="numba", dtype=np.float32)
        assert k.nngp.shape == k.ntk.shape == expected and k.ntk.dtype == np.float32
    assert "illegal value" not in capfd.readouterr().err  # BLAS is not handed an empty matrix


def test_check_says_whether_the_fused_kernels_apply(tmp_path, capsys):
    from ntkdsl.cli import main

    specs = {"image.ntk": NETS["pooled"], "tanh.ntk": "network t(input = [3, 3, 1]) { conv(2, kernel = 2); tanh; flatten; dense(1) }"}
    for name, text in specs.items():
        (tmp_path / name).write_text(text)
    assert main(["check", str(tmp_path / "image.ntk")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "fused CPU kernels" in x)
    assert line.strip().startswith("fused CPU kernels (backend numba): yes") and "per point" in line
    assert main(["check", str(tmp_path / "tanh.ntk")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "fused CPU kernels" in x)
    assert "no, the NumPy evaluator runs" in line and "numerical dual" in line


@needs_numba
@pytest.mark.parametrize("spec, n1, n2", [
    ("network a(input = [4, 2]) { conv(2, kernel = 2); flatten; dense(3); rbf; dense(1) }", 3, None),
    ("network b(input = [5, 4, 2]) { conv(3, kernel = 3, padding = same); rbf; conv(3, kernel = 3, padding = same); relu; "
     "flatten; dense(1) }", 4, 3),
    ("network c(input = [5, 4, 2]) { conv(3, kernel = 3, padding = same); parallel(merge = concat) "
     "{ rbf; conv(3, kernel = 3, padding = same); relu } { conv(3, kernel = 1); relu }; flatten; dense(1) }", 4, 2),
    ("network d(input = [4, 4, 1]) { conv(2, kernel = 2); gaussian(b = 0); avg_pool(2); conv(2, kernel = 1); relu; "
     "global_avg_pool; dense(1) }", 5, None)])
def test_variances_that_do_not_depend_on_the_point(spec, n1, n2):
    # after rbf the variance K(x, x) is a constant (a number, or per pixel an array without a point
    # axis): it fills every point's stack row. Found by a review: a crash, and for P = 20 pixels and
    # N = 2 or 4 points a silently transposed stack
    net = ntkdsl.loads(spec)
    rng = np.random.default_rng(13)
    x1 = rng.standard_normal((n1,) + net.ir.input_shape)
    x2 = None if n2 is None else rng.standard_normal((n2,) + net.ir.input_shape)
    fused, reference = net.kernels(x1, x2, backend="numba"), net.kernels(x1, x2, backend="numpy")
    for a, b in zip(fused, reference):
        close(a, b, AGREE)
    if x2 is not None:
        for a, b in zip(net.kernels(x1, backend="numba"), net.kernels(x1, backend="numpy")):
            close(a, b, AGREE)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba", marks=needs_numba)])
@pytest.mark.parametrize("spec, nngp, ntk", [
    # gaussian(b = 0) is the constant 1: every later kernel is a number, the same for every pair (by hand:
    # relu of a fully correlated GP of variance 1 is 1/2 with K̇ = 1/2; Θ before it is Σ = 1; dense adds Σ)
    ("network d(input = [4, 4, 1]) { conv(2, kernel = 2); gaussian(b = 0); avg_pool(2); conv(2, kernel = 1); relu; "
     "global_avg_pool; dense(1) }", 0.5, 1.0),
    ("network e(input = 3) { dense(2); gaussian(b = 0); dense(1) }", 1.0, 1.0),
    ("network g(input = [3, 3, 1]) { conv(2, kernel = 2); gaussian(b = 0); global_avg_pool }", 1.0, 0.0)])
def test_a_constant_activation_gives_kernels_of_every_pair(spec, nngp, ntk, backend):
    # found while fixing the above: the NumPy module returned a (1, 1) array, or failed on the int
    net = ntkdsl.loads(spec)
    x = np.random.default_rng(14).standard_normal((5,) + net.ir.input_shape)
    for args, shape in (((x,), (5, 5)), ((x, x[:2]), (5, 2))):
        k = net.kernels(*args, backend=backend)
        assert k.nngp.shape == k.ntk.shape == shape and k.nngp.flags.writeable
        np.testing.assert_allclose(k.nngp, nngp, rtol=1e-15)  # sums and halvings of exact numbers: ≤ 1 ulp
        np.testing.assert_allclose(k.ntk, ntk, rtol=1e-15)


def test_a_failing_fused_generator_falls_back_instead_of_breaking_requests(monkeypatch):
    from ntkdsl.codegen import fused, fused_spatial

    def broken(*args, **kwargs):
        raise KeyError("a defect")

    monkeypatch.setattr(fused_spatial, "emit_fused_spatial_module", broken)
    net = ntkdsl.loads("network n(input = [3, 3, 1]) { conv(2, kernel = 2); relu; flatten; dense(1) }")
    assert "fused code generator failed (KeyError" in fused.fusable(net.program)
    x = np.random.default_rng(16).standard_normal((3, 3, 3, 1))
    with pytest.warns(BackendFallbackWarning, match="please report it"):
        got = net.kernels(x, backend="numba")
    np.testing.assert_array_equal(got.ntk, net.kernels(x, backend="numpy").ntk)

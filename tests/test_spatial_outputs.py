"""Networks that end in an image or signal (``readout = none``): kernels per output pixel, (N1, N2, *S).

Oracles: neural-tangents 0.6.5 (tests/data/nt_spatial_outputs.json, benchmarks/neural_tangents_spatial_outputs.py;
``kernel_fn(..., diagonal_spatial=True)``, and every pixel pair without it), the existing readouts of the same
network (flatten + dense(1) averages the pixel diagonal, global_avg_pool every pixel pair: kernel-math.md §2),
Monte Carlo over finite networks per pixel, and the untiled request for tiles, disk and the diagonal.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import ntkdsl
from ntkdsl.errors import ArgumentSpecError, ShapeSpecError

from shared import assert_agrees_with_neural_tangents, close_to_scale

DATA = json.loads((Path(__file__).resolve().parent / "data" / "nt_spatial_outputs.json").read_text())["architectures"]
DIAGONAL = [n for n, r in DATA.items() if not r["full"]]
FULL = [n for n, r in DATA.items() if r["full"]]

BODY = "conv(6, kernel = 3, stride = (2, 1), padding = same, w_std = 1.3, b_std = 0.2); relu; conv(4, kernel = 2, b_std = 0.1)"
CNN = f"network c(input = [6, 5, 2], readout = none) {{ {BODY} }}"


def _points(n, shape, seed):
    return np.random.default_rng(seed).standard_normal((n,) + tuple(shape))


def _nt_order(k, rank, reversed_axes=False):
    """ntkdsl's full layout (N1, N2, *S, *S') in neural-tangents' order (N1, N2, S0, S0', S1, S1', ...)
    (reversed: the last spatial axis first, as its Kernel.is_reversed)."""
    dims = range(rank - 1, -1, -1) if reversed_axes else range(rank)
    return np.transpose(k, (0, 1) + tuple(a for i in dims for a in (2 + i, 2 + rank + i)))


@pytest.mark.parametrize("name", DIAGONAL)
def test_pixel_diagonal_agrees_with_neural_tangents(name):
    ref = DATA[name]
    net = ntkdsl.loads(ref["spec"])
    x1, x2 = np.asarray(ref["x1"]), np.asarray(ref["x2"])
    self_kernels = net.kernels(x1) if "nngp_11" in ref else None
    assert_agrees_with_neural_tangents(net.kernels(x1, x2), self_kernels, ref)


@pytest.mark.parametrize("name", FULL)
def test_all_pixel_pairs_agree_with_neural_tangents(name):
    """layout = "full": every state, the output too, holds all pixel pairs: (N1, N2, *S, *S)."""
    ref = DATA[name]
    rank = len(ref["input_shape"]) - 1
    full = ntkdsl.loads(ref["spec"], layout="full")
    x1, x2 = np.asarray(ref["x1"]), np.asarray(ref["x2"])
    k = full.kernels(x1, x2)
    for got, want in ((k.nngp, ref["nngp"]), (k.ntk, ref["ntk"])):
        close_to_scale(_nt_order(got, rank, ref.get("axes_reversed", False)), np.asarray(want), 1e-12)  # NT_RTOL's reason
    # the default layout returns the pixel diagonal of the same kernel
    auto = ntkdsl.loads(ref["spec"]).kernels(x1, x2)
    pixels = int(np.prod(auto.nngp.shape[2:]))
    for got, whole in ((auto.nngp, k.nngp), (auto.ntk, k.ntk)):
        diagonal = np.diagonal(whole.reshape(3, 4, pixels, pixels), axis1=2, axis2=3).reshape(got.shape)
        close_to_scale(got, diagonal, 1e-13)  # the same formulas on other array layouts: round-off only


def test_readouts_of_the_spatial_output():
    """flatten + dense(1, σ, b) reads the mean over pixels p of Σ(p): Σ' = σ²·mean_p Σ(p) + b²,
    Θ' = Σ' + σ²·mean_p Θ(p); global_avg_pool + dense(1) reads the mean over all pairs (p, p′) of the full
    output (kernel-math.md §2)."""
    s, b = 1.3, 0.4
    x1, x2 = _points(3, (6, 5, 2), 1), _points(5, (6, 5, 2), 2)
    spatial = ntkdsl.loads(CNN).kernels(x1, x2)
    flat = ntkdsl.loads(f"network f(input = [6, 5, 2]) {{ {BODY}; flatten; dense(1, w_std = {s}, b_std = {b}) }}").kernels(x1, x2)
    nngp = s**2 * spatial.nngp.mean(axis=(2, 3)) + b**2
    close_to_scale(flat.nngp, nngp, 1e-13)  # sums in another order: round-off
    close_to_scale(flat.ntk, nngp + s**2 * spatial.ntk.mean(axis=(2, 3)), 1e-13)
    full = ntkdsl.loads(CNN, layout="full").kernels(x1, x2)
    gap = ntkdsl.loads(f"network g(input = [6, 5, 2]) {{ {BODY}; global_avg_pool; dense(1, w_std = {s}) }}").kernels(x1, x2)
    close_to_scale(gap.nngp, s**2 * full.nngp.mean(axis=(2, 3, 4, 5)), 1e-13)
    close_to_scale(gap.ntk, s**2 * (full.nngp + full.ntk).mean(axis=(2, 3, 4, 5)), 1e-13)


@pytest.mark.parametrize("layout", ["auto", "full"])
def test_diagonal_tiles_disk_and_fallbacks_equal_the_whole_request(layout, tmp_path):
    net = ntkdsl.loads(CNN, layout=layout)
    x, y = _points(7, (6, 5, 2), 3), _points(5, (6, 5, 2), 4)
    x[5], y[2] = x[1], x[1]  # identical points: the exact value at (x, x) whatever the tiles
    whole, cross = net.kernels(x), net.kernels(x, y)
    assert cross.nngp.shape == (7, 5) + ((2, 4) if layout == "auto" else (2, 4, 2, 4))
    swap = (1, 0, 2, 3) if layout == "auto" else (1, 0, 4, 5, 2, 3)  # K(x′, x)(p′, p)
    np.testing.assert_array_equal(whole.nngp, np.transpose(whole.nngp, swap))  # exactly symmetric
    diagonal = net.kernels(x, diagonal=True)
    for got, k in zip(diagonal, whole):
        np.testing.assert_array_equal(got, np.moveaxis(np.diagonal(k, axis1=0, axis2=1), -1, 0))  # the same statements
    for tiled, want in ((net.kernels(x, batch_size=3), whole), (net.kernels(x, y, batch_size=3), cross),
                        (net.kernels_to_disk(x, directory=str(tmp_path / "self"), batch_size=3), whole),
                        (net.kernels_to_disk(x, y, directory=str(tmp_path / "cross"), batch_size=2), cross)):
        for got, k in zip(tiled, want):
            close_to_scale(np.asarray(got), k, 1e-13)  # per-tile Gram matrices: round-off (test_architectures_tiling.py)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fused = net.kernels(x, y, backend="numba")
    assert any("readout = none" in str(w.message) for w in caught) or not _has_numba()
    np.testing.assert_array_equal(fused.nngp, cross.nngp)  # NumPy's module ran


def _has_numba():
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def test_cupy_module_on_the_cpu_standin(monkeypatch):
    """The CuPy module's result statements (xp.moveaxis, xp.transpose) on tests/cupy_standin.py, against NumPy."""
    import cupy_standin
    from ntkdsl.arraycode.loader import load_module
    from ntkdsl.codegen.emit import emit_module

    if cupy_standin.CXX is None:
        pytest.skip("no C++ compiler for the CPU stand-in of CuPy")
    cupy_standin.install(monkeypatch)
    net = ntkdsl.loads(CNN)
    module = load_module(net.to_python(backend="cupy"), net.name + "-spatial-standin")
    x, y = _points(4, (6, 5, 2), 5), _points(3, (6, 5, 2), 6)
    for args in ((x,), (x, y)):
        for got, want in zip(module.kernels(*args), net.kernels(*args, backend="numpy")):
            close_to_scale(np.asarray(got), want, 1e-12)  # the same formulas, CUDA's C++ arithmetic: round-off
    for got, want in zip(module.kernels(x, y, dtype=np.float32), net.kernels(x, y, backend="numpy")):
        assert got.dtype == np.float32
        close_to_scale(np.asarray(got), want, 1e-5)  # float32 arithmetic through two layers: ~100 roundings of 6e-8
    arrays = load_module(emit_module(net.program, "cupy"), net.name + "-spatial-arrays")  # diagonal=True on "cupy"
    for got, want in zip(arrays.kernels_diagonal(x), net.kernels(x, diagonal=True)):
        np.testing.assert_array_equal(np.asarray(got), want)  # the same array statements on NumPy


def test_monte_carlo_per_pixel():
    """Finite networks' f(x)(p)·f(x′)(p)/C and per-pixel empirical NTK, averaged over draws, against the
    analytic kernel (a 1-D signal out: 4 pixels, 4 channels)."""
    from ntkdsl.sampler import monte_carlo

    net = ntkdsl.loads("network s(input = [5, 2], readout = none) { conv(8, kernel = 3, padding = same, b_std = 0.2); "
                       "relu; conv(4, kernel = 2, w_std = 1.2) }")
    x1, x2 = _points(2, (5, 2), 7), _points(2, (5, 2), 8)
    fnet = net.finite(seed=0)
    assert fnet.apply(x1).shape == (2, 4, 4)  # (N, *S, C)
    pairs = fnet.ntk(x1, x2, trace=False)  # every output pair (m, m′), by the structured contraction
    per_pixel = np.einsum("ijpcpc->ijp", pairs.reshape(2, 2, 4, 4, 4, 4)) / 4
    np.testing.assert_allclose(fnet.ntk(x1, x2), per_pixel, rtol=1e-12, atol=0)  # Jacobians vs structured: round-off
    mc = monte_carlo(net, x1, x2, width=256, n_samples=400, seed=1)
    exact = net.kernels(x1, x2)
    # 5 standard errors over 16 entries each: a false alarm < 1e-4 (Gaussian tails); the O(1/width) bias of
    # the NTK's mean (kernel-math.md §5) is below a standard error at width 256
    assert np.all(np.abs(mc.nngp - exact.nngp) <= 5 * mc.nngp_stderr)
    assert np.all(np.abs(mc.ntk - exact.ntk) <= 5 * mc.ntk_stderr)
    for k, err in ((exact.nngp, mc.nngp_stderr), (exact.ntk, mc.ntk_stderr)):  # power: a kernel off by 2x fails
        assert 5 * err.max() < np.abs(k).mean()


def test_spec_errors_and_refusals():
    with pytest.raises(ShapeSpecError, match="readout = none") as info:
        ntkdsl.loads("network t(input = [5, 3]) {\n  conv(8, kernel = 3)\n}")
    assert ":2:3:" in str(info.value)
    with pytest.raises(ShapeSpecError, match="ends in a vector"):
        ntkdsl.loads("network t(input = [5, 3], readout = none) { conv(8, kernel = 3); flatten }")
    with pytest.raises(ArgumentSpecError, match="did you mean 'none'"):
        ntkdsl.loads("network t(input = [5, 3], readout = non) { conv(8, kernel = 3) }")
    net = ntkdsl.loads(CNN)
    assert ntkdsl.loads(net.to_ntk()).ir == net.ir and "readout = none" in net.to_ntk()
    x = _points(4, (6, 5, 2), 9)
    from ntkdsl.flow import KernelFlow

    with pytest.raises(ValueError, match="readout = none"):
        KernelFlow(net, x, np.ones((4, 1)))
    with pytest.raises(ValueError, match="readout = none"):
        net.finite().train(x, np.ones((4, 1)))


def test_memory_estimates_count_the_pixels_of_the_outputs():
    """A request's estimate bounds its measured peak (tracemalloc), and a tiled one holds the two
    (N1, N2, *S) float64 outputs: 16·P bytes a pair."""
    from ntkdsl.tiling import _peak

    net = ntkdsl.loads("network t(input = [8, 8, 3], readout = none) { conv(8, kernel = 3, padding = same); relu; "
                       "conv(4, kernel = 3, padding = same) }")
    x = _points(40, (8, 8, 3), 10)
    net.kernels(x[:2], backend="numpy")  # the module loaded before measuring
    assert _peak(lambda: net.kernels(x, x[:30], backend="numpy")) <= net.memory_estimate(40, 30)
    assert net.memory_estimate(40, 30, batch_size=5) >= 16 * 64 * 40 * 30


def test_cli_eval_writes_and_check_reports_the_pixel_axes(tmp_path, capsys):
    from ntkdsl.cli import main

    spec = tmp_path / "c.ntk"
    spec.write_text(CNN + "\n")
    x = _points(5, (6, 5, 2), 11)
    np.save(tmp_path / "x.npy", x)
    assert main(["eval", str(spec), "--x1", str(tmp_path / "x.npy"), "-o", str(tmp_path / "k.npz")]) == 0
    with np.load(tmp_path / "k.npz") as out:
        np.testing.assert_array_equal(out["nngp"], ntkdsl.loads(CNN).kernels(x).nngp)  # the same module, same numbers
    assert main(["check", str(spec)]) == 0
    assert "N1 x N2 x 2 x 4 array" in capsys.readouterr().out
    assert main(["eval", str(spec), "--x1", str(tmp_path / "x.npy"), "--layout", "full", "-o", str(tmp_path / "f.npz")]) == 0
    with np.load(tmp_path / "f.npz") as full, np.load(tmp_path / "k.npz") as out:
        assert full["ntk"].shape == (5, 5, 2, 4, 2, 4)  # every pixel pair: (N1, N2, *S, *S)
        pixel_diagonal = np.einsum("abijij->abij", full["ntk"])
        close_to_scale(pixel_diagonal, out["ntk"], 1e-13)  # two layouts' programs: a few roundings apart
    spec.write_text(CNN.replace(", readout = none", "") + "\n")
    assert main(["eval", str(spec), "--x1", str(tmp_path / "x.npy")]) == 2
    assert "readout = none" in capsys.readouterr().err


@pytest.mark.slow
def test_dask_store_equals_the_whole_request(tmp_path):
    pytest.importorskip("dask")
    pytest.importorskip("zarr")
    from ntkdsl import distributed

    net = ntkdsl.loads(CNN)
    x = _points(7, (6, 5, 2), 12)
    x[5] = x[1]
    whole = net.kernels(x)
    store = distributed.kernels(net, x, store=str(tmp_path / "k.zarr"), tile=3)
    for got, want in zip(store, whole):
        close_to_scale(np.asarray(got), want, 1e-13)  # per-tile Gram matrices: round-off (test_architectures_tiling.py)

"""The fused image kernels on the spatial operations of the new layers (ntkdsl/codegen/fused_spatial_maps.py):
transposed convolutions, resizing, spatial indexing, the recurrent time shift, the unshared-weight
embedding, layer_norm over space (a per-point mean) and dropout (the same-point indicator).

Oracles: neural-tangents 0.6.5's float64 kernels (tests/data/nt_new_layers.json, the networks of
test_new_layers_nt.py: the same specs, so that a suite run compiles each module once, here or there,
and loads it from numba's disk cache in the other file) and the NumPy backend, itself checked against
neural-tangents, Monte Carlo and closed forms. The loops' routines also run as plain Python against
the NumPy path's map routines (ntkdsl/arraycode/spatial_maps.py), without numba.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import ntkdsl
from ntkdsl.algebra import spatial as ops
from ntkdsl.arraycode import spatial_maps
from ntkdsl.codegen import fused_spatial_routines as routines
from ntkdsl.codegen.dispatch import BackendFallbackWarning
from ntkdsl.codegen.fused import emit_fused_module, fusable
from ntkdsl.codegen.fused_spatial_maps import MapTables, map_grid, map_lines
from shared import assert_agrees_with_neural_tangents, close_to_scale, needs_numba

DATA = json.loads((Path(__file__).resolve().parent / "data" / "nt_new_layers.json").read_text())["architectures"]
PREFIXES = ("conv-transpose-", "conv-local-", "resize-", "index-", "layer-norm-", "dropout-")
FUSED = [name for name in DATA if name.startswith(PREFIXES) and name != "conv-transpose-spatial-output"]

# fused vs NumPy backend: the same formulas, with sums (Σ⁰ dot products, linear-resize weights, a tap sum
# on the pixel diagonal) in another order and a vectorisable atan2 (≤ 2e-16 relative each); measured
# ≤ 4e-15 of the scale over these networks; 1e-13 leaves room for depth, a wrong term or index is O(1)
AGREE = 1e-13
K = sp.Symbol("nngp_1")  # the kernel a map applies to (its name does not matter here)


def _run_map(op, grid: np.ndarray) -> np.ndarray:
    """The block statements of a spatial map on one pair's flat grid, run as plain Python."""
    tables = MapTables()
    lines, _, largest = map_lines(op, "src", "dst", 0, tables)
    namespace = {"xp": np, "transpose_taps": spatial_maps.transpose_taps, "resize_matrix": spatial_maps.resize_matrix,
                 "transpose_geometry": spatial_maps.transpose_geometry, "fold_matrix": spatial_maps.fold_matrix}
    namespace.update({name: getattr(routines, name) for name in dir(routines) if name.startswith("_")})
    exec(tables.source(), namespace)  # noqa: S102 - the generator's own text, as a module would run it
    assert largest >= map_grid(op)[0]
    # scratch grids exactly as large as map_lines says (NaN beyond: a pass that reads or writes past it shows)
    tmp = [np.concatenate([np.zeros(largest), np.full(64, np.nan)]) for _ in range(2)]
    namespace.update(src=grid.ravel().copy(), dst=np.zeros(map_grid(op)[0]), tmp_0=tmp[0], tmp_1=tmp[1], nb=1)
    exec("\n".join(line for line in lines if not line.startswith("#")), namespace)  # noqa: S102
    assert all(np.isnan(t[largest:]).all() for t in tmp)  # nothing written past the stated size
    return namespace["dst"]


def _grid(shape, full, seed=0):
    """A random kernel array in the NumPy path's layout (*S[, *S], 1, 1) and its flat pair grid."""
    k = np.random.default_rng(seed).standard_normal(tuple(shape) * (2 if full else 1) + (1, 1))
    return k, k.ravel()


@pytest.mark.parametrize("padding", ["valid", "same", "circular"])
@pytest.mark.parametrize("stride", [(1, 1), (2, 3)])
@pytest.mark.parametrize("layout", ["full", "diagonal"])
def test_transposed_convolution_pass_matches_the_numpy_routine(padding, stride, layout):
    shape, kernel = (3, 4), (3, 2)
    k, grid = _grid(shape, layout == "full")
    want = spatial_maps.conv_transpose_taps(k, shape, kernel, stride, padding, layout == "full").ravel()
    got = _run_map(ops.conv_transpose(K, shape, kernel, stride, padding, layout), grid)
    if padding != "circular" and layout == "full":
        np.testing.assert_array_equal(got, want)  # one input pixel per output and tap: the same sums, bit for bit
    else:
        close_to_scale(got, want, 1e-15)  # a row of ≤ 4 terms summed in another order (BLAS)


@pytest.mark.parametrize("method, size, antialias", [("linear", (5, 2), True), ("linear", (2, 7), False),
                                                     ("nearest", (6, 3), True), ("nearest", (2, 4), True)])
@pytest.mark.parametrize("layout", ["full", "diagonal"])
def test_resize_pass_matches_the_numpy_routine(method, size, antialias, layout):
    if layout == "diagonal" and method == "linear":
        pytest.skip("linear resizing needs the full layout (a pixel's output mixes its neighbours)")
    shape = (3, 4)
    k, grid = _grid(shape, layout == "full", 1)
    want = spatial_maps.resize_map(k, shape, size, method, antialias, layout == "full").ravel()
    got = _run_map(ops.resize(K, shape, size, method, antialias, layout), grid)
    if method == "nearest":
        np.testing.assert_array_equal(got, want)  # picks: exact
    else:
        close_to_scale(got, want, 1e-15)  # ≤ 4 weighted terms a row, summed in another order (BLAS)


@pytest.mark.parametrize("picks, drops", [(((4, 2, 0), (0, 1, 2)), (0, 0)), (((1,), (3, 1)), (1, 0)),
                                          (((0, 1, 2, 3, 4), (0, 1, 2, 3)), (0, 0))])
@pytest.mark.parametrize("layout", ["full", "diagonal"])
def test_index_and_time_shift_passes_are_exact_gathers(picks, drops, layout):
    shape = (5, 4)
    k, grid = _grid(shape, layout == "full", 2)
    want = spatial_maps.spatial_index(k, shape, picks, drops, layout == "full").ravel()
    np.testing.assert_array_equal(_run_map(ops.index(K, shape, picks, drops, layout), grid), want)
    k, grid = _grid((6,), layout == "full", 3)
    want = spatial_maps.time_shift(k, (6,), layout == "full").ravel()
    np.testing.assert_array_equal(_run_map(ops.shift(K, (6,), layout), grid), want)


def test_diagonal_embedding_pass_is_exact():
    k, grid = _grid((3, 2), False, 4)
    want = spatial_maps.diagonal_embed(k, (3, 2)).ravel()
    np.testing.assert_array_equal(_run_map(ops.embed(K, (3, 2)), grid), want)


@pytest.mark.parametrize("name", FUSED)
def test_every_new_layer_network_fuses(name):
    """No NumPy fallback for these layers (emitting only: no compile)."""
    net = ntkdsl.loads(DATA[name]["spec"])
    assert fusable(net.program) is None


def test_full_layout_transposed_convolution_uses_the_two_axis_pass():
    text = emit_fused_module(ntkdsl.loads(DATA["conv-transpose-1d-gap"]["spec"]).program)
    assert "_matrix_pass2(" in text and "transpose_taps(5, 4, 2, 'circular')" in text


# a branch that reads its full-layout input diagonally (erf before conv_local) beside one that keeps it
BRANCH = ("network r(input = [5, 2]) { conv(3, kernel = 2, padding = circular); "
          "residual { erf; conv_local(3, kernel = 3, padding = circular) }; global_avg_pool; dense(1) }")


def test_per_point_diagonals_and_means_become_stacked_numbers():
    text = emit_fused_module(ntkdsl.loads(BRANCH).program)
    assert "diag_cov1_1 = spatial_diagonal(cov1_1" in text  # the branch's per-point Σ(x, x)(p, p), in NumPy
    text = emit_fused_module(ntkdsl.loads(DATA["layer-norm-spatial-2d"]["spec"]).program)
    assert "mean_cov1_1 = flatten_mean(cov1_1" in text  # layer_norm over space: each input's mean variance


@needs_numba
@pytest.mark.slow
def test_branch_read_diagonally_agrees_with_numpy():
    net = ntkdsl.loads(BRANCH)
    x1, x2 = np.random.default_rng(0).standard_normal((3, 5, 2)), np.random.default_rng(1).standard_normal((2, 5, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", BackendFallbackWarning)
        got = net.kernels(x1, x2, backend="numba")
    want = net.kernels(x1, x2, backend="numpy")
    close_to_scale(got.nngp, want.nngp, AGREE)
    close_to_scale(got.ntk, want.ntk, AGREE)


def test_graph_aggregation_is_still_refused_with_its_reason():
    assert "per-point graphs" in fusable(ntkdsl.loads(DATA["gnn-sum-pool"]["spec"]).program)


# one network per operation, those of test_new_layers_nt.py (compiled once in a suite run)
REPRESENTATIVES = ["conv-transpose-1d-gap", "conv-transpose-same-s2-ntk", "index-gap-and-integer", "conv-local-circular-gap",
                   "resize-linear-mixed", "layer-norm-spatial-2d", "dropout-cnn-gap"]


@needs_numba
@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_fused_kernels_agree_with_numpy_and_neural_tangents(name):
    ref = DATA[name]
    net = ntkdsl.loads(ref["spec"])
    x1, x2 = np.asarray(ref["x1"]), np.asarray(ref["x2"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", BackendFallbackWarning)
        cross = net.kernels(x1, x2, backend="numba")
        self_kernels = net.kernels(x1, backend="numba")
    assert_agrees_with_neural_tangents(cross, self_kernels if "nngp_11" in ref else None, ref)
    for got, want in ((cross, net.kernels(x1, x2, backend="numpy")), (self_kernels, net.kernels(x1, backend="numpy"))):
        close_to_scale(got.nngp, want.nngp, AGREE)
        close_to_scale(got.ntk, want.ntk, AGREE)


@needs_numba
def test_dropout_boosts_only_a_self_requests_own_pairs():
    """δ(x, x′) by index: x against a copy of itself is a cross request (no boost on its diagonal)."""
    ref = DATA["dropout-cnn-gap"]
    net = ntkdsl.loads(ref["spec"])
    x = np.asarray(ref["x1"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", BackendFallbackWarning)
        own, copy = net.kernels(x, backend="numba"), net.kernels(x, x.copy(), backend="numba")
    numpy_copy, off = net.kernels(x, x.copy(), backend="numpy").ntk, ~np.eye(len(x), dtype=bool)
    close_to_scale(copy.ntk[off], numpy_copy[off], AGREE)
    # a point against its copy meets itself at ρ = 1 up to rounding, which the relu dual's √(1 − ρ) amplifies to
    # ~1e-8 on either path (only a self request's own pairs take the exact variance; fused.py); measured 4e-11
    close_to_scale(copy.ntk.diagonal(), numpy_copy.diagonal(), 1e-8)
    close_to_scale(own.ntk, net.kernels(x, backend="numpy").ntk, AGREE)
    assert np.all(own.ntk.diagonal() > copy.ntk.diagonal() * (1 + 1e-3))  # rate 0.8: a 25% larger variance at one layer
    close_to_scale(own.ntk[off], copy.ntk[off], AGREE)


"""Memory budget and tiling: tiled == untiled, exact symmetry of tiled self-kernels,
automatic tiles under a budget, clear errors; the layout and memory report of ``ntkdsl check``."""

import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import ntkdsl
from ntkdsl import tiling
from ntkdsl.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CNN = """network cnn(input = [5, 5, 2]) {
    conv(8, kernel = 3, padding = same, w_std = 1.4, b_std = 0.1); relu
    avg_pool(2, stride = 1); conv(8, kernel = 2); erf; global_avg_pool; dense(1) }"""
MLP = "network mlp(input = 6) { dense(16, b_std = 0.1); relu; dense(16); erf; dense(1) }"


def inputs(net, n, seed):
    return np.random.default_rng(seed).standard_normal((n,) + net.ir.input_shape)


# Tiles change only the shapes of the GEMMs of the input Gram matrix (BLAS blocks its sums by
# shape): a few ulps, far below 1e-13. Duplicate points (θ = 0, where arc-cosine kernels would
# amplify that round-off to √eps) get exact values: test_tiles_agree_to_1e_13_even_with_duplicate_points.
@pytest.mark.parametrize("spec", [CNN, MLP], ids=["cnn", "mlp"])
@pytest.mark.parametrize("batch", [1, 3, 4, 100])
def test_tiled_equals_untiled(spec, batch):
    net = ntkdsl.loads(spec)
    x1, x2 = inputs(net, 11, 1), inputs(net, 7, 2)
    whole, tiled = net.kernels(x1, x2), net.kernels(x1, x2, batch_size=batch)
    for a, b in ((tiled.nngp, whole.nngp), (tiled.ntk, whole.ntk)):
        assert a.shape == (11, 7)
        assert np.max(np.abs(a - b)) <= 1e-13 * np.max(np.abs(b))


@pytest.mark.parametrize("spec", [CNN, MLP], ids=["cnn", "mlp"])
@pytest.mark.parametrize("batch", [1, 4, 5])
def test_tiled_self_kernel_is_exactly_symmetric_with_exact_diagonal(spec, batch):
    net = ntkdsl.loads(spec)
    x = inputs(net, 13, 3)
    whole, tiled = net.kernels(x), net.kernels(x, batch_size=batch)
    for a, b in ((tiled.nngp, whole.nngp), (tiled.ntk, whole.ntk)):
        assert np.array_equal(a, a.T)
        assert np.max(np.abs(a - b)) <= 1e-13 * np.max(np.abs(b))
        # diagonal tiles are self-kernels: the same arithmetic as the whole request's diagonal
        np.testing.assert_allclose(np.diag(a), np.diag(b), rtol=1e-14, atol=0)


@pytest.mark.parametrize("spec", [CNN, MLP, None], ids=["cnn", "mlp", "mlp-784"])
def test_tiles_agree_to_1e_13_even_with_duplicate_points(spec):
    # identical points sit at θ = 0, where one rounding of x·x' moves an arc-cosine NTK by ~1e-8:
    # their pairs get the exact value at (x, x), so tiles (other GEMM blockings) cannot show there
    net = ntkdsl.loads(spec) if spec else ntkdsl.load(EXAMPLES / "mlp.ntk")
    x = inputs(net, 40, 10)
    x[23], x[31], x[37] = x[3], x[11], x[3]
    whole = net.kernels(x)
    for k in (whole.nngp, whole.ntk):
        assert np.array_equal(k, k.T)
        assert k[3, 23] == k[3, 37] == k[23, 37] == k[3, 3] and k[11, 31] == k[11, 11]
    for batch in (1, 7, 16):
        tiled = net.kernels(x, batch_size=batch)
        for a, b in ((tiled.nngp, whole.nngp), (tiled.ntk, whole.ntk)):
            assert np.array_equal(a, a.T)
            assert np.max(np.abs(a - b)) <= 1e-13 * np.max(np.abs(b))
    cross, cross_tiled = net.kernels(x, x[:20]), net.kernels(x, x[:20], batch_size=6)
    for a, b, s in ((cross.nngp, cross_tiled.nngp, whole.nngp), (cross.ntk, cross_tiled.ntk, whole.ntk)):
        assert np.max(np.abs(a - b)) <= 1e-13 * np.max(np.abs(b))
        assert a[23, 3] == b[23, 3] and a[3, 3] == pytest.approx(s[3, 3], rel=1e-14)


def test_budget_tiles_automatically(monkeypatch):
    net = ntkdsl.loads(CNN)
    x1, x2 = inputs(net, 9, 4), inputs(net, 6, 5)
    calls = []
    evaluate = net._evaluate
    monkeypatch.setattr(net, "_evaluate", lambda *a: calls.append(np.shape(a[0])[0]) or evaluate(*a))
    whole = net.kernels(x1, x2)
    assert calls == [9]
    calls.clear()
    budget = int(net.memory_estimate(3, 3)) + 16 * 9 * 6  # room for 3 x 3 tiles and the outputs
    tiled = net.kernels(x1, x2, memory_budget=budget)
    assert len(calls) > 1 and max(calls) <= 3
    assert np.max(np.abs(tiled.ntk - whole.ntk)) <= 1e-13 * np.max(np.abs(whole.ntk))


def test_process_budget_is_settable(monkeypatch):
    net = ntkdsl.loads(CNN)
    x = inputs(net, 6, 6)
    try:
        ntkdsl.set_memory_budget(int(net.memory_estimate(2, 2)) + 16 * 36)
        assert tiling.memory_budget() == int(net.memory_estimate(2, 2)) + 16 * 36
        k = net.kernels(x)
        assert np.array_equal(k.nngp, k.nngp.T)
    finally:
        ntkdsl.set_memory_budget(None)
    assert tiling.memory_budget() == int(tiling.BUDGET_FRACTION * tiling.available_memory())
    with pytest.raises(ValueError, match="positive number of bytes"):
        ntkdsl.set_memory_budget(0)


def test_over_budget_is_a_clear_error():
    net = ntkdsl.loads(CNN)
    x = inputs(net, 4, 7)
    with pytest.raises(ntkdsl.MemoryBudgetError) as info:
        net.kernels(x, memory_budget=1000)
    message = str(info.value)
    assert re.match(r"a kernel of 4 x 4 points needs about [\d.]+ (KiB|MiB) and the budget is 1000 bytes; even in tiles it "
                    r"needs 256 bytes for the two output arrays plus [\d.]+ (KiB|MiB) for one pair: raise the budget "
                    r"\(memory_budget=, ntkdsl.set_memory_budget, or --memory-budget on the command line\) or ask for fewer "
                    r"points at a time$", message), message
    assert isinstance(info.value, MemoryError)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_batch_size_must_be_a_positive_integer(bad):
    net = ntkdsl.loads(MLP)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        net.kernels(np.ones((2, 6)), batch_size=bad)


def test_plan_fills_the_budget_with_square_tiles():
    model = tiling.MemoryModel(per_pair=1000.0, per_point=100.0, fixed=5000.0)
    assert tiling.plan(10, 10, model, 10**9) is None  # fits whole
    budget = 16 * 500 * 300 + int(model.peak(40, 40))
    t1, t2 = tiling.plan(500, 300, model, budget)
    assert (t1, t2) == (40, 40) or (t1 >= 40 and model.peak(t1, t2) <= budget - 16 * 500 * 300)
    assert model.peak(t1, t2) <= budget - 16 * 500 * 300 < model.peak(t1 + 1, t2 + 1)


@pytest.mark.parametrize("path, n", [(EXAMPLES / "wrn.ntk", 12), (EXAMPLES / "mlp.ntk", 600)], ids=["wrn", "mlp"])
def test_memory_estimate_bounds_the_measured_peak(path, n):
    net = ntkdsl.load(path)
    x = inputs(net, n, 8)
    net.kernels(x[:2])  # compile and calibrate first
    tracemalloc.start()
    try:
        net.kernels(x, batch_size=n)  # one piece (image kernels would otherwise run in cache-sized tiles)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = net.memory_estimate(n)
    assert peak <= estimate <= 3 * peak, (peak, estimate)


@pytest.mark.parametrize("batch", [100, 250])
def test_memory_estimate_of_a_tiled_request_bounds_its_peak(batch):
    net = ntkdsl.load(EXAMPLES / "mlp.ntk")
    x = inputs(net, 600, 8)
    # the same request once first: the backend "auto" picks for 600 points may compile or load a module
    # from disk (once per process, not per request; a cold cache made the peak 4x the arrays)
    net.kernels(x, batch_size=batch)
    tracemalloc.start()
    try:
        net.kernels(x, batch_size=batch)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = net.memory_estimate(600, batch_size=batch)
    assert estimate >= 16 * 600 * 600 + net.memory_estimate(batch)
    assert peak <= estimate <= 3 * peak, (peak, estimate)


def test_memory_estimate_covers_the_input_stage():
    # 300 x 50 points of 784 features: the input stage's temporaries (x·x, 8·784 bytes a point)
    # outweigh the kernel arrays (a model fitted on the layers alone said half the measured peak)
    net = ntkdsl.load(EXAMPLES / "mlp.ntk")
    x1, x2 = inputs(net, 300, 8), inputs(net, 50, 9)
    net.kernels(x1[:2])
    tracemalloc.start()
    try:
        net.kernels(x1, x2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert net.memory_model.input_per_point >= 8 * 784
    assert peak <= net.memory_estimate(300, 50) <= 3 * peak, (peak, net.memory_estimate(300, 50))


def test_plan_keeps_the_input_stage_within_the_budget():
    # the layers alone would allow 31 x 31 tiles; the input stage (10 kB a point) only 5 x 5
    model = tiling.MemoryModel(per_pair=100.0, per_point=0.0, fixed=0.0, input_per_point=10_000.0, input_fixed=0.0)
    t1, t2 = tiling.plan(1000, 1000, model, 16 * 1000 * 1000 + 100_000)
    assert (t1, t2) == (5, 5) and model.peak(t1, t2) <= 100_000


# ---------------------------------------------------------------------- CLI
def test_check_reports_layout_and_memory(capsys):
    assert main(["check", str(EXAMPLES / "wrn.ntk")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "network wrn: input [8, 8, 3], ntk parameterization, 9 layers, output width 10"
    assert any(line.strip() == "in residual(scale = 1) at line 8, body" for line in out)
    layout = next(line for line in out if line.strip().startswith("layout: full"))
    assert layout.strip() == ("layout: full (all pixel pairs (p, p')) after steps 0–19, for avg_pool((2, 2), stride = "
                              "(2, 2), padding = valid) at 10:5, global_avg_pool at 16:5")
    assert any(line.strip() == "largest kernel arrays: (8, 8, 8, 8, N1, N2) after step 0, 32.0 KiB per input pair each"
               for line in out)
    memory = next(line for line in out if line.strip().startswith("numpy evaluator: memory"))
    assert re.search(r"per input pair \+ .* per point; [\d.]+ TiB in one piece, tiles of \d+ x \d+ under the budget "
                     r"of .*; time about [\d.]+ (h|days)", memory)
    assert out[-1].strip().startswith("kernels: nngp and ntk")


def test_check_of_a_flatten_network_reports_the_diagonal_layout(tmp_path, capsys):
    spec = tmp_path / "flat.ntk"
    spec.write_text("network f(input = [6, 6, 3]) { conv(8, kernel = 3); relu; flatten; dense(1) }\n")
    assert main(["check", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "layout: diagonal (pixel pairs (p, p) only) after steps 0–2" in out and "layout: full" not in out


def test_eval_takes_images_and_a_batch_size(tmp_path, capsys):
    net = ntkdsl.loads(CNN)
    x = inputs(net, 5, 9)
    spec, data, out = tmp_path / "cnn.ntk", tmp_path / "x.npy", tmp_path / "k.npz"
    spec.write_text(CNN + "\n")
    np.save(data, x)
    assert main(["eval", str(spec), "--x1", str(data), "--batch-size", "2", "-o", str(out)]) == 0
    with np.load(out) as z:
        assert np.max(np.abs(z["ntk"] - net.kernels(x).ntk)) <= 1e-13 * np.max(np.abs(z["ntk"]))
    np.save(data, x[:, :4])
    assert main(["eval", str(spec), "--x1", str(data)]) == 2
    assert capsys.readouterr().err.strip().endswith("has shape (5, 4, 5, 2); this network needs (N, 5, 5, 2)")

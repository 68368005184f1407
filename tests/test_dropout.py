"""dropout(rate): neural-tangents 0.6.5's training-mode Dropout (rate = keep probability), against its
numbers (tests/data/nt_new_layers.json, written by benchmarks/neural_tangents_new_layers.py), a closed
form written here, Monte Carlo over finite networks with random masks, and the evaluation paths (tiles,
diagonal requests) that must keep the same-point indicator by index."""


import numpy as np
import pytest

import ntkdsl

from shared import close_to_scale



W, B, W2, B2, RATE = 1.3, 0.2, 0.9, 0.1, 0.6
HAND = f"network h(input = 4) {{ dense(8, w_std = {W}, b_std = {B}); dropout({RATE}); dense(1, w_std = {W2}, b_std = {B2}) }}"


def _hand(x1, x2, same):
    """kernel-math.md §2 by hand: Σ¹ = σ_w²·x·x′/d + σ_b², Θ¹ = Σ¹; dropout multiplies Σ¹, Θ¹ by 1/rate where
    a point meets itself (``same``: the (i, i) pairs of a self request); Σ² = σ_w2²·Σ + σ_b2², Θ² = Σ² + σ_w2²·Θ."""
    s1 = W**2 * x1 @ x2.T / 4 + B**2
    factor = np.where(same, 1 / RATE, 1.0)
    sd, td = s1 * factor, s1 * factor
    s2 = W2**2 * sd + B2**2
    return s2, s2 + W2**2 * td


def test_dense_dropout_dense_closed_form_by_index():
    net = ntkdsl.loads(HAND)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 4))
    x[3] = x[1]  # two equal rows i ≠ j: different points, no factor (neural-tangents keys on the index too)
    y = rng.standard_normal((2, 4))
    self_nngp, self_ntk = _hand(x, x, np.eye(5, dtype=bool))
    k = net.kernels(x)
    close_to_scale(k.nngp, self_nngp, 1e-14)  # the same few operations in another order
    close_to_scale(k.ntk, self_ntk, 1e-14)
    assert k.nngp[1, 3] < k.nngp[1, 1]  # the repeated row really lacks the factor (the closed form has it at (1, 1) only)
    for other in (x.copy(), y):  # a cross request: never the factor, even against x itself
        nngp, ntk = _hand(x, other, np.zeros((5, len(other)), dtype=bool))
        k = net.kernels(x, other)
        close_to_scale(k.nngp, nngp, 1e-14)
        close_to_scale(k.ntk, ntk, 1e-14)
    d = net.kernels(x, diagonal=True)
    close_to_scale(d.nngp, self_nngp.diagonal(), 1e-14)  # as above: the closed form, in another order
    close_to_scale(d.ntk, self_ntk.diagonal(), 1e-14)


@pytest.mark.parametrize("spec", [
    HAND,
    "network m(input = 3) { dense(8); relu; dropout(0.7); dense(8); erf; dropout(0.9); dense(1) }",
    "network c(input = [4, 3, 2]) { conv(4, kernel = 2, padding = same); relu; dropout(0.8); conv(3, kernel = 2); relu; "
    "global_avg_pool; dense(1) }",
    "network f(input = [4, 3, 2]) { conv(4, kernel = 2); relu; dropout(0.5); flatten; dense(1) }",
])
def test_tiles_and_diagonal_requests_keep_the_indicator(spec):
    net = ntkdsl.loads(spec)
    shape = net.ir.input_shape
    x = np.random.default_rng(5).standard_normal((7,) + tuple(shape))
    x[4] = x[0]  # a repeated row in another tile: not the same point
    whole = net.kernels(x)
    tiled = net.kernels(x, batch_size=3)  # diagonal tiles are self requests, off-diagonal tiles cross ones
    for a, b in ((tiled.nngp, whole.nngp), (tiled.ntk, whole.ntk)):
        # off the diagonal the Gram matrix's BLAS blocking differs per tile (an ulp or so, as
        # test_architectures_tiling.py allows); a misplaced factor 1/rate would be off by O(1)
        close_to_scale(a, b, 1e-13)
        # the diagonal (factor 1/rate included) to round-off, as test_architectures_tiling.py (pooling sums pixel pairs)
        np.testing.assert_allclose(a.diagonal(), b.diagonal(), rtol=1e-14, atol=0)
    cross = net.kernels(x, x[4:5].copy())
    close_to_scale(cross.nngp[[0, 4], 0], whole.nngp[[0, 0], 4], 1e-13)  # (4, 4) of a cross request: no factor, as (0, 4)
    assert whole.nngp[4, 4] > whole.nngp[0, 4]
    d = net.kernels(x, diagonal=True)
    np.testing.assert_array_equal(d.nngp, whole.nngp.diagonal())
    np.testing.assert_array_equal(d.ntk, whole.ntk.diagonal())


def test_monte_carlo_over_finite_networks_with_masks():
    """One hidden layer: every hidden unit is i.i.d., so the mean of the empirical kernels is the analytic
    kernel at any width; the diagonal of a self request (one mask for both factors) carries 1/rate, a cross
    request (independent masks per forward pass) never, even between a point and its copy."""
    net = ntkdsl.loads("network m(input = 4) { dense(32, b_std = 0.1); relu; dropout(0.6); dense(1, w_std = 1.2) }")
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 4))
    no_factor = ntkdsl.loads("network m(input = 4) { dense(32, b_std = 0.1); relu; dense(1, w_std = 1.2) }")
    for x2 in (None, x.copy()):
        mc = ntkdsl.monte_carlo(net, x, x2, n_samples=600, seed=2)
        k = net.kernels(x, x2)
        # 5 standard errors over 18 entries: a false alarm has probability < 1e-5 (the mean of 600 draws is
        # close to normal); the closed form is exact in expectation at this width, so no width bias to allow for
        assert np.all(np.abs(mc.nngp - k.nngp) <= 5 * mc.nngp_stderr), (mc.nngp - k.nngp) / mc.nngp_stderr
        assert np.all(np.abs(mc.ntk - k.ntk) <= 5 * mc.ntk_stderr), (mc.ntk - k.ntk) / mc.ntk_stderr
        if x2 is None:  # the test has the power to see the factor: without it the diagonal is far off
            plain = no_factor.kernels(x)
            assert np.all(np.abs(mc.ntk.diagonal() - plain.ntk.diagonal()) > 5 * mc.ntk_stderr.diagonal())


def test_finite_network_masks_are_fresh_and_shared_by_f_and_its_gradient():
    net = ntkdsl.loads("network m(input = 3) { dense(16); relu; dropout(0.5); dense(2) }")
    fnet = net.finite(seed=0)
    x = np.random.default_rng(0).standard_normal((2, 3))
    assert not np.array_equal(fnet.apply(x), fnet.apply(x))  # a fresh mask per forward pass
    # f(x) and ∇f(x) from one pass: the explicit Jacobian contracted equals the structured NTK of a pass
    # with the same mask stream position (both draw one mask per pass, so replay the stream)
    state = fnet.mask_rng.bit_generator.state
    structured = fnet.ntk(x)
    fnet.mask_rng.bit_generator.state = state
    explicit = fnet.ntk(x, method="jacobian")
    np.testing.assert_allclose(structured, explicit, rtol=1e-12, atol=1e-12)  # two contraction orders


@pytest.mark.parametrize("text, where, message", [
    ("dense(4); relu; dropout(0); dense(1)", "1:48", "0 < rate <= 1, got 0"),
    ("dense(4); relu; dropout(1.5); dense(1)", "1:48", "0 < rate <= 1, got 3/2"),
    ("dense(4); dropout(0.5); relu; dense(1)", "1:48",
     "'relu' needs a Gaussian input (an affine layer such as dense before it), but its input is the output of dropout"),
    ("dropout(0.5); dense(1)", "1:24", "dropout cannot act on the network input"),
])
def test_mistakes_are_located(text, where, message):
    with pytest.raises(ntkdsl.SpecError) as info:
        ntkdsl.loads(f"network n(input = 3) {{ {text} }}", filename="d.ntk")
    text = str(info.value)
    assert f"d.ntk:{where}: error:" in text and message in text and "^" in text, text


def test_prints_parses_and_renders():
    net = ntkdsl.loads("network n(input = 3) { dense(8); relu; dropout(0.75); dense(1) }")
    assert "dropout(rate = 3/4)" in net.to_ntk()
    assert ntkdsl.loads(net.to_ntk()).ir == net.ir
    assert r"\delta_{x x'}" in net.to_latex()


@pytest.mark.parametrize("spec, shape", [
    ("network m(input = 3) { dense(16, b_std = 0.1); relu; dropout(0.7); dense(8); erf; dropout(0.9); dense(1) }", (3,)),
    ("network c(input = [4, 3, 2]) { conv(4, kernel = 2, padding = same); relu; dropout(0.8); conv(3, kernel = 2); relu; "
     "global_avg_pool; dense(1) }", (4, 3, 2)),
])
def test_cupy_module_on_the_cpu_standin(spec, shape, monkeypatch):
    """The CuPy module (the dropout step as CuPy array code between CUDA kernels: δ(x, x′) is an (N1, N2)
    array) run on tests/cupy_standin.py, against NumPy: the same formulas, round-off apart (1e-12 of scale)."""
    import cupy_standin
    from ntkdsl.arraycode.loader import load_module

    if cupy_standin.CXX is None:
        pytest.skip("no C++ compiler for the CPU stand-in of CuPy")
    cupy_standin.install(monkeypatch)
    net = ntkdsl.loads(spec)
    module = load_module(net.to_python(backend="cupy"), net.name + "-dropout-standin")
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((5,) + shape), rng.standard_normal((3,) + shape)
    for args in ((x,), (x, y), (x, x.copy())):
        for got, want in zip(module.kernels(*args), net.kernels(*args, backend="numpy")):
            close_to_scale(np.asarray(got), want, 1e-12)


def test_streamed_and_distributed_self_kernels_keep_the_indicator(tmp_path):
    net = ntkdsl.loads(HAND)
    x = np.random.default_rng(6).standard_normal((7, 4))
    x[5] = x[1]
    whole = net.kernels(x)
    disk = net.kernels_to_disk(x, directory=str(tmp_path), batch_size=3)
    for a, b in ((disk.nngp, whole.nngp), (disk.ntk, whole.ntk)):
        close_to_scale(np.asarray(a), b, 1e-13)  # per-tile Gram matrices: round-off apart (test_architectures_tiling.py)
    assert disk.nngp[5, 5] > disk.nngp[1, 5]  # the repeated row is another point: no factor off the diagonal


def test_distributed_self_kernel_keeps_the_indicator(tmp_path):
    pytest.importorskip("dask")
    pytest.importorskip("zarr")
    from ntkdsl import distributed

    net = ntkdsl.loads(HAND)
    x = np.random.default_rng(6).standard_normal((7, 4))
    x[5] = x[1]
    whole = net.kernels(x)
    client = distributed.local_client(1, dashboard_address=":0")
    try:
        k = distributed.kernels(net, x, None, tmp_path / "d.zarr", client, tile=3, progress=False)
    finally:
        client.close()
    for a, b in ((k.nngp, whole.nngp), (k.ntk, whole.ntk)):
        close_to_scale(np.asarray(a), b, 1e-13)  # per-tile Gram matrices: round-off apart (test_architectures_tiling.py)
    assert k.nngp[5, 5] > k.nngp[1, 5]  # the repeated row is another point: no factor off the diagonal


def test_monte_carlo_image_network_pixel_diagonal():
    """An image network whose readout sums pixel pairs (global_avg_pool: the full layout, where only p = p′ of
    one point carries 1/rate). One hidden conv layer: its channels are i.i.d., so the mean of the empirical
    kernels is the analytic one at any width; 5 standard errors as in the MLP test."""
    net = ntkdsl.loads("network c(input = [3, 3, 2]) { conv(16, kernel = 2, padding = same, b_std = 0.1); relu; "
                       "dropout(0.5); global_avg_pool; dense(1, w_std = 1.1) }")
    x = np.random.default_rng(8).standard_normal((3, 3, 3, 2))
    mc = ntkdsl.monte_carlo(net, x, n_samples=400, seed=5)
    k = net.kernels(x)
    assert np.all(np.abs(mc.nngp - k.nngp) <= 5 * mc.nngp_stderr), (mc.nngp - k.nngp) / mc.nngp_stderr
    assert np.all(np.abs(mc.ntk - k.ntk) <= 5 * mc.ntk_stderr), (mc.ntk - k.ntk) / mc.ntk_stderr
    # power: without the factor (measured ~14 standard errors off) or with it on every pixel pair (~9 off for Σ,
    # whose readout adds no bias: 1/rate·Σ without dropout) the diagonal would be rejected
    plain = ntkdsl.loads(net.to_ntk().replace("dropout(rate = 1/2)", "identity")).kernels(x)
    assert np.all(np.abs(mc.ntk.diagonal() - plain.ntk.diagonal()) > 5 * mc.ntk_stderr.diagonal())
    assert np.all(np.abs(mc.nngp.diagonal() - 2 * plain.nngp.diagonal()) > 5 * mc.nngp_stderr.diagonal())

"""The finite-width sampler on every architecture layer kind: conv, pooling, global pooling, flatten,
layer norm, residual, parallel (sum, concat, prod), identity; both parameterizations.

Oracles:
* central finite differences of ``fnet.apply`` over the flat parameter vector (the Jacobian, hence
  the structured NTK, the explicit-Jacobian NTK and the training gradient) and over the input (the
  backward rules, composed through the whole network);
* the hand-written NumPy CNNs/ResNets of ``tests/test_architectures_montecarlo.py`` (im2col convs,
  written-out backward pass), given the *same* weights: their empirical NTK must equal ours to
  round-off, draw by draw;
* Monte Carlo over random finite networks against the analytic ``net.kernels``.
"""

import functools
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import ntkdsl
from ntkdsl.cli import main
from ntkdsl.layers.arrays import array_module
from ntkdsl.layers.branching import _drain, walk
from oracles import fd_jacobian
from shared import close_to_scale

ROOT = Path(__file__).resolve().parents[1]

# Central differences, h = 1e-5: truncation h²·|f'''|/6 ≈ 2e-11 and round-off eps·|f|/h ≈ 2e-11 for
# O(1) derivatives, so 1e-7 relative to the largest entry leaves a wide margin (as in
# test_sampler_jacobian.py); a wrong rule (a missed tap, a scale, an unfolded circular pad) is O(1).
# Only smooth activations here: a kink within h of a pre-activation would break the expansion.
H = 1e-5
RTOL = 1e-7
_close = functools.partial(close_to_scale, rtol=RTOL)

NETWORKS = {
    "conv-valid-stride-ntk": "network t(input = [5, 6, 2]) { conv(3, kernel = (2, 3), stride = (1, 2), w_std = 1.3, "
                             "b_std = 0.2); tanh; flatten; dense(2, b_std = 0.1) }",
    "conv-same-stride-standard": "network t(input = [5, 5, 2], parameterization = standard) { conv(3, kernel = 3, "
                                 "stride = 2, padding = same, w_std = 1.2, b_std = 0.3); erf; global_avg_pool; "
                                 "dense(2, b_std = 0) }",
    "conv-circular-1d": "network t(input = [6, 2]) { conv(3, kernel = 4, padding = circular, b_std = 0.1); gelu; "
                        "conv(2, kernel = 3, stride = 2, padding = circular); global_sum_pool; dense(2) }",
    "conv-3d": "network t(input = [3, 4, 3, 2]) { conv(2, kernel = 2, padding = same, b_std = 0.2); tanh; "
               "conv(2, kernel = (1, 2, 2)); flatten; dense(2) }",
    "pools-on-input": "network t(input = [6, 5, 2]) { avg_pool(2, stride = 1, padding = same); "
                      "conv(3, kernel = 2, b_std = 0.1); softplus; sum_pool(2, padding = circular); "
                      "avg_pool((2, 1), stride = (1, 1)); flatten; dense(2) }",
    "layer-norm-image": "network t(input = [4, 4, 3]) { conv(4, kernel = 3, padding = same); layer_norm; tanh; "
                        "global_avg_pool; dense(2, b_std = 0.1) }",
    "conv-local": "network t(input = [4, 3, 2]) { conv_local(3, kernel = 2, padding = same, b_std = 0.3); tanh; "
                  "conv_local(2, kernel = (2, 1), stride = (2, 1), w_std = 1.2); avg_pool(2, stride = 1); flatten; dense(2) }",
    "conv-local-standard": "network t(input = [5, 2], parameterization = standard) { conv_local(3, kernel = 3, "
                           "padding = circular, w_std = 1.1, b_std = 0.2); erf; global_avg_pool; dense(2) }",
    "conv-transpose": "network t(input = [3, 2, 2]) { conv_transpose(3, kernel = (3, 2), stride = (2, 1), b_std = 0.3); "
                      "tanh; conv_transpose(2, kernel = 2, padding = same, w_std = 1.2); flatten; dense(2) }",
    "conv-transpose-circular-standard": "network t(input = [3, 2], parameterization = standard) { conv_transpose(3, "
                                        "kernel = 3, stride = 2, padding = circular, w_std = 1.1, b_std = 0.2); erf; "
                                        "global_avg_pool; dense(2) }",
    "index": "network t(input = [5, 4, 2]) { conv(3, kernel = 2, padding = same, b_std = 0.3); index[1:4, ::-1]; "
             "tanh; index[::2, 1]; conv(2, kernel = 2); flatten; dense(2) }",
    "resize": "network t(input = [4, 3, 2]) { conv(3, kernel = 2, padding = same, b_std = 0.3); "
              "resize((3, 5), method = linear, antialias = false); tanh; resize((5, -1), method = nearest); flatten; dense(2) }",
    "layer-norm-spatial": "network t(input = [4, 3, 3]) { conv(4, kernel = 2, padding = same, b_std = 0.3); "
                          "layer_norm(axes = spatial_and_channels, eps = 0.01); tanh; flatten; dense(2) }",
    "layer-norm-vector-standard": "network t(input = 3, parameterization = standard) { dense(5, b_std = 0.2); "
                                  "layer_norm; tanh; dense(2) }",
    "residual": "network t(input = [4, 4, 2]) { conv(3, kernel = 2, padding = same, b_std = 0.1); "
                "residual(scale = 0.5) { tanh; conv(3, kernel = 3, padding = same, b_std = 0.1) }; "
                "identity; global_avg_pool; dense(2) }",
    "residual-standard": "network t(input = 3, parameterization = standard) { dense(4, b_std = 0.1); "
                         "residual { erf; dense(4, b_std = 0.2) }; residual(scale = 2) { tanh; dense(4) }; dense(2) }",
    "parallel-concat": "network t(input = [4, 4, 2]) { conv(3, kernel = 2); parallel(merge = concat) "
                       "{ conv(2, kernel = 1); tanh } { conv(3, kernel = 3, padding = same, b_std = 0.1); erf }; "
                       "flatten; dense(2) }",
    "parallel-sum-nested": "network t(input = 3) { dense(4); parallel(merge = sum) { dense(4, b_std = 0.1) } "
                           "{ dense(4, b_std = 0.3); residual { tanh; dense(4) }; dense(4) } { identity }; erf; dense(2) }",
    "parallel-prod": "network t(input = [5, 2]) { conv(3, kernel = 2, b_std = 0.2); parallel(merge = prod) "
                     "{ conv(3, kernel = 1) } { tanh; conv(3, kernel = 2, padding = same, b_std = 0.1) } { identity }; "
                     "global_avg_pool; dense(2) }",
}


def _inputs(ir, n, seed):
    return np.random.default_rng(seed).standard_normal((n,) + tuple(ir.input_shape))


def fd_input_gradient(fnet, x):
    """∂f/∂x by central differences, (N, k, *input_shape)."""
    flat = x.reshape(len(x), -1)
    cols = []
    for j in range(flat.shape[1]):
        e = np.zeros_like(flat)
        e[:, j] = H
        plus, minus = fnet.apply((flat + e).reshape(x.shape)), fnet.apply((flat - e).reshape(x.shape))
        cols.append((plus - minus) / (2 * H))
    return np.stack(cols, axis=-1).reshape((len(x), fnet.output_width) + x.shape[1:])


def input_gradient(fnet, x):
    """∂f/∂x by the backward rules of every layer (one walk with the input cotangent)."""
    f, caches = fnet._forward(x)
    return _drain(walk(fnet.ir.layers, fnet.params, caches, fnet._output_cotangents(f), need_input=True))


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_ntk_and_backward_match_finite_differences(name):
    net = ntkdsl.loads(NETWORKS[name])
    fnet = net.finite(seed=3)
    x1, x2 = _inputs(net.ir, 3, seed=1), _inputs(net.ir, 2, seed=2)
    j1, j2 = fd_jacobian(fnet, x1, H), fd_jacobian(fnet, x2, H)
    full = np.einsum("aip,bjp->abij", j1, j2)
    traced = np.einsum("abii->ab", full) / fnet.output_width
    _close(fnet.ntk(x1, x2, trace=False), full)
    _close(fnet.ntk(x1, x2), traced)
    _close(fnet.ntk(x1, x2, method="jacobian"), traced)
    _close(fnet.jacobian(x1), j1)
    _close(fnet.ntk(x1), np.einsum("aip,bip->ab", j1, j1) / fnet.output_width)  # one shared backward pass
    _close(input_gradient(fnet, x1), fd_input_gradient(fnet, x1))


@pytest.mark.parametrize("name", ["residual", "parallel-concat", "pools-on-input", "layer-norm-vector-standard", "conv-local",
                                  "conv-transpose-circular-standard"])
def test_training_gradient_matches_finite_differences(name):
    net = ntkdsl.loads(NETWORKS[name])
    fnet = net.finite(seed=5)
    x = _inputs(net.ir, 4, seed=7)
    y = np.random.default_rng(8).standard_normal((4, 2))
    grad = np.einsum("nkp,nk->p", fd_jacobian(fnet, x, H), fnet.apply(x) - y) / 4  # L = Σ(f − y)²/(2N)
    theta = fnet.flat_params()
    fnet.train(x, y, learning_rate=0.3, steps=1)
    _close((theta - fnet.flat_params()) / 0.3, grad)


def test_both_conv_contractions_are_exact_and_the_cheaper_is_chosen():
    """conv_ntk_terms picks structured Gram products or per-example Jacobians by cost; both are exact."""
    from ntkdsl.layers import conv as sl

    net = ntkdsl.loads("network t(input = [6, 6, 3]) { conv(5, kernel = 3, padding = same, b_std = 0.3); "
                       "relu; flatten; dense(4) }")
    fnet = net.finite(seed=0)
    conv, p = net.ir.layers[0], fnet.params[0]
    (a1, _), (a2, _) = conv.forward(p, _inputs(net.ir, 3, 1))[1], conv.forward(p, _inputs(net.ir, 2, 2))[1]
    rng = np.random.default_rng(4)
    d1, d2 = rng.standard_normal((3, 4, 36, 5)), rng.standard_normal((2, 4, 36, 5))
    a1, a2 = a1.reshape(3, 36, 27), a2.reshape(2, 36, 27)
    full = np.einsum("apf,aipc,bqf,bjqc->abij", a1, d1, a2, d2, optimize=True)  # Σ_{p,q} (a·a′)(δ·δ′)
    for trace in (True, False):
        want = np.einsum("abii->ab", full) if trace else full
        for contract in (sl._conv_ntk_structured, sl._conv_ntk_jacobian):
            _close(contract(a1, d1, a2, d2, trace, False), want, rtol=1e-12)
    # few positions, wide layers: structured; many positions and outputs: Jacobian
    assert sl.conv_ntk_method((4, 25, 4608), (4, 25, 4608), 1, 512, True) == "structured"
    assert sl.conv_ntk_method((8, 64, 288), (8, 64, 288), 10, 32, False) == "jacobian"


# --- the hand-written NumPy networks, with the same weights ----------------------------------------

def _oracle_module():
    path = ROOT / "tests" / "test_architectures_montecarlo.py"
    spec = importlib.util.spec_from_file_location("architectures_oracle", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _copy_weights(draw_layers, fnet_layers, params):
    """Copy the oracle's drawn weights (W as (fan_in, C), patches ordered tap-major then channel,
    i.e. our (*kernel, C_in, C_out) in C order) into our parameter dicts, walking both in step."""
    from ntkdsl.layers.branching import unpack

    for (kind, cfg), layer, p in zip(draw_layers, fnet_layers, params):
        if kind in ("conv", "dense"):
            p["w"][...] = cfg["W"].reshape(p["w"].shape)
            if "bias" in cfg:
                p["b"][...] = cfg["bias"]
        elif kind == "residual":
            _copy_weights(cfg["body"], layer.body, unpack(p, (layer.body,))[0])
        elif kind == "concat":
            for b, (branch, inner) in enumerate(zip(cfg["branches"], unpack(p, layer.branches))):
                _copy_weights(branch, layer.branches[b], inner)


@pytest.mark.parametrize("arch", ["cnn-flatten", "cnn-pool-gap", "resnet-concat", "standard-cnn"])
def test_sampler_equals_the_hand_written_networks_draw_by_draw(arch):
    oracle = _oracle_module()
    layers, body = oracle.ARCHITECTURES[arch]
    param = oracle.PARAM.get(arch, "ntk")
    net = ntkdsl.loads(f"network o(input = [5, 5, 2], parameterization = {param}) {{ {body} }}")
    x = np.random.default_rng(100).standard_normal((3,) + oracle.SHAPE)
    # one draw: the comparison is exact, and the oracle at width 512 is slow
    draw = oracle.Draw(layers, oracle.SHAPE[-1], np.random.default_rng(0), param)
    _, ntk_oracle = draw.kernels(x)  # draws every weight on its first forward pass
    fnet = net.finite(seed=0)
    _copy_weights(draw.layers, net.ir.layers, fnet.params)
    # the same sums (GEMMs, pools) in another order: round-off of ~depth·ε, far below 1e-11
    np.testing.assert_allclose(fnet.ntk(x), ntk_oracle, rtol=1e-11, atol=0)
    phi, _ = draw.forward(draw.layers, x)
    np.testing.assert_allclose(fnet.apply(x), phi, rtol=1e-11, atol=1e-13)  # the full forward pass


# --- Monte Carlo against the analytic kernels ------------------------------------------------------
# Tolerance: |mean − analytic| ≤ Z·SE + B·max|analytic| entrywise, SE the standard error measured from
# the draws (Z = 4.5: a two-sided Gaussian tail of 7e-6 per entry), B = 4/n the O(1/n) finite-width
# bias of networks deeper than one hidden layer (kernel-math.md §5; Hanin & Nica 2020), the same
# constant as test_architectures_montecarlo.py, where measured deviations stay below 2 SE + 1/n.
MC_WIDTH = 192
MC_DRAWS = 24
MC_OUTPUTS = 32  # one draw's NNGP f·f′/k averages k outputs: its noise shrinks like 1/√k
MC_CASES = {
    "cnn-gap": "conv({n}, kernel = 3, padding = same, w_std = 1.4, b_std = 0.1); relu; "
               "avg_pool(2, stride = 1); conv({n}, kernel = 2, padding = circular); erf; global_avg_pool; dense({k})",
    "cnn-flatten-standard": "conv({n}, kernel = 3, stride = 2, padding = same, w_std = 1.3, b_std = 0.2, "
                            "parameterization = standard); relu; flatten; dense({k}, parameterization = standard)",
    "resnet-block": "conv({n}, kernel = 3, padding = same, b_std = 0.1); "
                    "residual(scale = 0.7) {{ relu; conv({n}, kernel = 3, padding = same, w_std = 1.2) }}; "
                    "relu; global_avg_pool; dense({k}, b_std = 0.1)",
    "parallel-concat": "conv({n}, kernel = 2); parallel(merge = concat) {{ conv({n}, kernel = 1); relu }} "
                       "{{ conv({h}, kernel = 3, padding = same, b_std = 0.2); erf }}; flatten; dense({k})",
    "layer-norm": "conv({n}, kernel = 3, padding = same, w_std = 1.5, b_std = 0.5); layer_norm; relu; "
                  "global_avg_pool; dense({k})",
    "conv-local": "conv_local({n}, kernel = 3, padding = same, w_std = 1.3, b_std = 0.3); relu; "
                  "avg_pool(2, stride = 1); conv({n}, kernel = 2); global_avg_pool; dense({k})",
    "conv-transpose": "conv_transpose({n}, kernel = 3, stride = 2, padding = circular, w_std = 1.3, b_std = 0.3); relu; "
                      "avg_pool(2); conv({n}, kernel = 2); global_avg_pool; dense({k})",
    "index": "conv({n}, kernel = 2, padding = same, b_std = 0.1); index[::-1, 1:]; relu; "
             "conv({n}, kernel = 2, padding = circular); index[:, 1]; global_avg_pool; dense({k})",
    "resize-flatten": "conv({n}, kernel = 2, padding = same, b_std = 0.1); resize((3, 5), method = linear); relu; "
                      "resize((-1, 3), method = linear, antialias = false); flatten; dense({k})",
    "layer-norm-spatial": "conv({n}, kernel = 2, padding = same, w_std = 1.5, b_std = 0.5); "
                          "layer_norm(axes = spatial_and_channels); relu; global_avg_pool; dense({k})",
    "sum-pool-parallel-prod": "conv({n}, kernel = 2, padding = same, b_std = 0.3); relu; sum_pool(2, stride = 1, "
                              "padding = circular); parallel(merge = prod) {{ conv({n}, kernel = 1, w_std = 0.5, "
                              "b_std = 0.2) }} {{ conv({n}, kernel = 2, padding = same, w_std = 0.5); erf }}; global_sum_pool; dense({k})",
}


def _mc_inputs():
    x = np.random.default_rng(11).standard_normal((3, 4, 4, 2))
    x[2] = 0.5 * x[0]  # a pair with ρ = 1
    return x


@functools.lru_cache(maxsize=None)
def _monte_carlo(case):
    """(network, Monte Carlo kernels) of a case; cached, the power test reuses the draws."""
    body = MC_CASES[case].format(n=MC_WIDTH, h=MC_WIDTH // 2, k=MC_OUTPUTS)
    net = ntkdsl.loads(f"network mc(input = [4, 4, 2]) {{ {body} }}")
    return net, ntkdsl.monte_carlo(net, _mc_inputs(), n_samples=MC_DRAWS, seed=1)


@pytest.mark.parametrize("case", sorted(MC_CASES))
def test_monte_carlo_converges_to_the_analytic_kernels(case):
    net, mc = _monte_carlo(case)
    exact = net.kernels(_mc_inputs())
    for name in ("nngp", "ntk"):
        k, mean, se = getattr(exact, name), getattr(mc, name), getattr(mc, f"{name}_stderr")
        tol = 4.5 * se + 4 / MC_WIDTH * np.abs(k).max()
        assert np.all(np.abs(mean - k) <= tol), (case, name, mean, k, se)


def test_monte_carlo_detects_a_wrong_kernel():
    """Power: the same draws miss the kernel of a different residual scale by far more than the tolerance."""
    net, mc = _monte_carlo("resnet-block")
    text = net.to_ntk()
    assert "scale = 7/10" in text
    wrong = ntkdsl.loads(text.replace("scale = 7/10", "scale = 1"))
    k = wrong.kernels(_mc_inputs()).ntk
    assert np.any(np.abs(mc.ntk - k) > 4.5 * mc.ntk_stderr + 4 / MC_WIDTH * np.abs(k).max())


# --- the CLI and training ------------------------------------------------------------------------

def test_sample_cli_on_the_wide_resnet_example(capsys):
    status = main(["sample", str(ROOT / "examples" / "wrn.ntk"), "--widths", "16,32", "--samples", "2",
                   "--points", "3"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "random images" in out and "Traceback" not in err
    rows = [line.split() for line in out.splitlines() if line.split() and line.split()[0] in ("16", "32")]
    assert len(rows) == 2 and all(np.isfinite(float(v)) for row in rows for v in row[1:])


def test_width_override_reaches_into_branches():
    net = ntkdsl.load(str(ROOT / "examples" / "wrn.ntk"))
    fnet = net.finite(width=8)
    assert fnet.params[1]["0.1.w"].shape == (3, 3, 8, 8)  # the residual body's conv
    assert fnet.params[-1]["w"].shape[1] == 10  # the readout keeps its width
    end = ntkdsl.loads("network e(input = 3) { dense(7); parallel(merge = sum) { dense(5) } { tanh; dense(5) }; "
                       "residual { tanh; dense(5) } }")
    assert end.finite(width=4).apply(np.ones((1, 3))).shape == (1, 5)


def test_training_a_small_cnn_reduces_the_loss():
    net = ntkdsl.loads("network c(input = [6, 6, 1]) { conv(16, kernel = 3, padding = same, b_std = 0.1); relu; "
                       "avg_pool(2); conv(16, kernel = 2); relu; global_avg_pool; dense(1) }")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 6, 6, 1))
    y = x[:, :3, :3, 0].mean(axis=(1, 2)).reshape(8, 1)
    fnet = net.finite(seed=0)
    # λ_max(Θ) ≈ 0.49 here, so the stable limit 2N/λ_max ≈ 33 (kernel-math.md §4): η = 5 is well inside
    record = fnet.train(x, y, learning_rate=5.0, steps=40, record_every=20)
    assert record.loss[-1] < 0.25 * record.loss[0]  # measured: 0.0747 -> 0.0055
    assert np.all(np.isfinite(record.ntk_drift)) and record.ntk_drift[-1] > 0


def test_cupy_backend_matches_numpy():
    try:
        array_module("cupy").zeros(1)
    except Exception:  # ImportError, or CuPy without a GPU
        pytest.skip("CuPy with a GPU is not available")
    net = ntkdsl.loads(NETWORKS["parallel-concat"])
    x = _inputs(net.ir, 3, 0)
    host, dev = net.finite(seed=2), net.finite(seed=2, backend="cupy")
    from ntkdsl.layers.arrays import to_numpy

    np.testing.assert_allclose(to_numpy(dev.ntk(x)), host.ntk(x), rtol=1e-10)
    np.testing.assert_allclose(to_numpy(dev.ntk(x, trace=False)), host.ntk(x, trace=False), rtol=1e-10)
    np.testing.assert_allclose(to_numpy(dev.apply(x)), host.apply(x), rtol=1e-10)


def test_missing_cupy_is_a_clear_import_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` raises ImportError
    with pytest.raises(ImportError, match="pip install 'ntkdsl\\[gpu\\]'"):
        ntkdsl.loads(NETWORKS["residual"]).finite(backend="cupy")
    with pytest.raises(ValueError, match="backend"):
        ntkdsl.loads(NETWORKS["residual"]).finite(backend="torch")
    monkeypatch.setitem(sys.modules, "cupy", None)
    status = main(["sample", str(ROOT / "examples" / "mlp.ntk"), "--widths", "8", "--samples", "2",
                   "--backend", "cupy"])
    assert status == 2  # a user error with the install hint, no traceback

"""The finite-width sampler against finite differences and exact recursions (no Monte Carlo here).

Oracles:
* the Jacobian ∂f/∂θ by central finite differences of ``fnet.apply`` over the flat parameter
  vector: checks the structured NTK (traced and per output pair), the explicit-Jacobian NTK, the
  per-example Jacobian and the training gradient, for every layer kind and both parameterizations;
* a network linear in its parameters (one dense layer), where gradient descent is exactly the
  recursion f ← f − (η/Z)·Θ·(f − y) with Θ the (constant) empirical NTK: checks ``train``.
"""

import functools

import numpy as np
import pytest
import sympy as sp

import ntkdsl
from ntkdsl.layers.sigma import compile_elementwise
from oracles import fd_jacobian
from shared import close_to_scale

# Central differences: truncation error h²·|f'''|/6 ≈ 2e-11 and round-off eps·|f|/h ≈ 2e-11 for
# h = 1e-5 and O(1) derivatives, so 1e-7 (relative to the largest entry) leaves a wide margin;
# a real mistake (a wrong scale, a missing term) is O(1).
H = 1e-5
RTOL = 1e-7
_close = functools.partial(close_to_scale, rtol=RTOL)

# Layer kinds with parameters, each inside a small network with k = 2 outputs; new layer kinds
# (conv, pooling, layer norm, residual, ...) add a line here.
NETWORKS = {
    "dense-ntk-bias": "network t(input = 3) { dense(5, w_std = 1.3, b_std = 0.4); tanh; dense(4, b_std = 0.2); relu; "
                      "dense(2, b_std = 0.1) }",
    "dense-ntk-nobias": "network t(input = 3) { dense(6, w_std = 0.7); erf; dense(2, w_std = 1.5) }",
    "dense-ntk-zero-bias": "network t(input = 3) { dense(6, b_std = 0); gelu; dense(2, b_std = 0) }",
    "dense-standard": "network t(input = 3, parameterization = standard) { dense(5, w_std = 1.2, b_std = 0.3); softplus; "
                      "dense(4); silu; dense(2, b_std = 0) }",
    "mixed-parameterization": "network t(input = 3) { dense(5, b_std = 0.1, parameterization = standard); relu; dense(2, b_std = 0.2) }",
    "identity-and-composition": "network t(input = 3) { dense(5, b_std = 0.1); identity; tanh; relu; identity; dense(2) }",
    "custom-activation": "activation act(x, s = 2) = tanh(s * x) + 0.1 * x\n"
                         "network t(input = 3) { dense(5); act(s = 3); dense(2, b_std = 0.5) }",
    "polynomial": "network t(input = 3) { dense(4, b_std = 0.3); polynomial(0.1, 1, 0.5); dense(2) }",
}


def _inputs(n, d=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_ntk_matches_finite_difference_jacobian(name):
    net = ntkdsl.loads(NETWORKS[name])
    fnet = net.finite(seed=3)
    x1, x2 = _inputs(4, seed=1), _inputs(3, seed=2)
    j1, j2 = fd_jacobian(fnet, x1, H), fd_jacobian(fnet, x2, H)
    full = np.einsum("aip,bjp->abij", j1, j2)
    traced = np.einsum("abii->ab", full) / fnet.output_width
    _close(fnet.ntk(x1, x2, trace=False), full)
    _close(fnet.ntk(x1, x2), traced)
    _close(fnet.ntk(x1, x2, method="jacobian"), traced)
    _close(fnet.ntk(x1, x2, trace=False, method="jacobian"), full)
    _close(fnet.jacobian(x1), j1)
    same = np.einsum("aip,bip->ab", j1, j1) / fnet.output_width
    _close(fnet.ntk(x1), same)  # x2 = None shares one backward pass


@pytest.mark.parametrize("name", ["dense-ntk-bias", "dense-standard", "custom-activation"])
@pytest.mark.parametrize("normalization", ["points", "entries"])
def test_training_gradient_matches_finite_differences(name, normalization):
    net = ntkdsl.loads(NETWORKS[name])
    fnet = net.finite(seed=5)
    x, y = _inputs(6, seed=7), _inputs(6, d=2, seed=8)
    z = 6 * (2 if normalization == "entries" else 1)
    jac = fd_jacobian(fnet, x, H)
    grad = np.einsum("nkp,nk->p", jac, fnet.apply(x) - y) / z  # ∂L/∂θ for L = Σ(f − y)²/(2Z)
    theta = fnet.flat_params()
    eta = 0.3
    fnet.train(x, y, learning_rate=eta, steps=1, loss_normalization=normalization)
    _close((theta - fnet.flat_params()) / eta, grad)


@pytest.mark.parametrize("normalization", ["points", "entries"])
def test_training_a_linear_model_follows_the_exact_recursion(normalization):
    """One dense layer is linear in θ: its NTK is constant and f_{t+1} = f_t − (η/Z)·Θ·(f_t − y) exactly."""
    net = ntkdsl.loads("network t(input = 4) { dense(3, w_std = 1.1, b_std = 0.5) }")
    fnet = net.finite(seed=0)
    x, y, probe = _inputs(5, d=4, seed=1), _inputs(5, d=3, seed=2), _inputs(2, d=4, seed=3)
    theta_train = fnet.ntk(x, trace=False)      # (N, N, k, k)
    theta_probe = fnet.ntk(probe, x, trace=False)
    f, g = fnet.apply(x), fnet.apply(probe)
    eta, steps, z = 0.7, 12, 5 * (3 if normalization == "entries" else 1)
    record = fnet.train(x, y, learning_rate=eta, steps=steps, probe=probe, record_every=4,
                        loss_normalization=normalization)
    outputs, probes, losses = [f], [g], []
    for _ in range(steps):
        losses.append(0.5 * np.sum((f - y) ** 2) / z)
        r = f - y
        f = f - eta / z * np.einsum("abij,bj->ai", theta_train, r)
        g = g - eta / z * np.einsum("abij,bj->ai", theta_probe, r)
        outputs.append(f)
        probes.append(g)
    losses.append(0.5 * np.sum((f - y) ** 2) / z)
    np.testing.assert_array_equal(record.steps, [0, 4, 8, 12])
    # the same sums in another order: round-off only (1e-12 relative)
    np.testing.assert_allclose(record.loss, losses, rtol=1e-12)
    np.testing.assert_allclose(record.train_outputs, np.array(outputs)[[0, 4, 8, 12]], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(record.probe_outputs, np.array(probes)[[0, 4, 8, 12]], rtol=1e-12, atol=1e-12)
    assert np.all(record.ntk_drift < 1e-14)  # the NTK of a linear model does not move
    assert record.loss[-1] < record.loss[0]


def test_shapes_params_and_apply():
    net = ntkdsl.loads(NETWORKS["dense-ntk-bias"])
    fnet = net.finite(seed=0)
    assert [sorted(p) for p in fnet.params] == [["b", "w"], [], ["b", "w"], [], ["b", "w"]]
    assert fnet.params[0]["w"].shape == (3, 5) and fnet.params[0]["w"].dtype == np.float64
    assert fnet.num_params == 3 * 5 + 5 + 5 * 4 + 4 + 4 * 2 + 2
    x = _inputs(7)
    assert fnet.apply(x).shape == (7, 2)
    assert fnet.nngp(x).shape == (7, 7) and fnet.nngp(x, x[:2]).shape == (7, 2)
    assert fnet.ntk(x, x[:3], trace=False).shape == (7, 3, 2, 2)
    np.testing.assert_allclose(fnet.nngp(x), fnet.apply(x) @ fnet.apply(x).T / 2)
    # same seed, same draw; another seed, another draw
    np.testing.assert_array_equal(net.finite(seed=0).apply(x), fnet.apply(x))
    assert not np.allclose(net.finite(seed=1).apply(x), fnet.apply(x))


def test_width_override_keeps_the_output_layer():
    net = ntkdsl.loads(NETWORKS["dense-ntk-bias"])
    fnet = net.finite(width=17)
    assert [getattr(layer, "width", None) for layer in fnet.ir.layers] == [17, None, 17, None, 2]
    wide = net.with_width(17)
    assert wide.ir == fnet.ir and net.with_width(None) is net
    std = ntkdsl.loads(NETWORKS["dense-standard"])
    x = _inputs(3)
    # the standard parameterization's NTK grows with the width (kernel-math.md §2); NTK's does not
    assert std.with_width(64).ntk(x)[0, 0] > std.with_width(8).ntk(x)[0, 0]
    np.testing.assert_allclose(net.with_width(64).ntk(x), net.ntk(x), rtol=1e-12)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_bad_width_is_rejected(bad):
    net = ntkdsl.loads(NETWORKS["dense-ntk-bias"])
    with pytest.raises(ValueError, match="width"):
        net.finite(width=bad)


def test_bad_inputs_and_options_are_rejected():
    net = ntkdsl.loads(NETWORKS["dense-ntk-bias"])
    fnet = net.finite()
    with pytest.raises(ValueError, match=r"needs \(N, 3\)"):
        fnet.apply(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        fnet.ntk(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="method"):
        fnet.ntk(_inputs(2), method="autodiff")
    x = _inputs(4)
    with pytest.raises(ValueError, match="y has shape"):
        fnet.train(x, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="loss_normalization"):
        fnet.train(x, np.zeros((4, 2)), loss_normalization="mean")
    with pytest.raises(ValueError, match="learning_rate"):
        fnet.train(x, np.zeros((4, 2)), learning_rate=-1)
    with pytest.raises(ValueError, match="record_every"):
        fnet.train(x, np.zeros((4, 2)), record_every=0)


def test_diverging_training_warns():
    net = ntkdsl.loads("network t(input = 3) { dense(8, b_std = 1); erf; dense(1) }")
    with pytest.warns(RuntimeWarning, match="diverged"):
        net.finite().train(_inputs(4), np.ones(4), learning_rate=1e3, steps=200, record_every=100)


def test_elementwise_jumps_and_overflow():
    x = sp.Symbol("x", real=True)
    step = compile_elementwise(sp.Lambda(x, sp.Heaviside(x) + sp.sign(x)))
    z = np.array([-2.0, -0.5, 0.5, 2.0])
    np.testing.assert_array_equal(step.sigma(z), [-1, -1, 2, 2])
    np.testing.assert_array_equal(step.sigma_prime(z), 0)  # the DiracDeltas are dropped (σ' a.e.)
    softplus = compile_elementwise(sp.Lambda(x, sp.log(1 + sp.exp(x))))
    big = np.array([-800.0, 0.0, 800.0])
    # exp(800) overflows float64; the mpmath fallback gives log(1 + e^800) = 800 and σ' = 1
    np.testing.assert_allclose(softplus.sigma(big), [0.0, np.log(2), 800.0], atol=1e-300)
    np.testing.assert_allclose(softplus.sigma_prime(big), [0.0, 0.5, 1.0], atol=1e-300)
    const = compile_elementwise(sp.Lambda(x, 2 * x))
    assert const.sigma_prime(z).shape == z.shape  # a constant derivative is broadcast


def test_benchmark_script_smoke(capsys):
    """benchmarks/empirical_ntk.py --quick runs and its two methods agree (it asserts that itself)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "empirical_ntk.py"
    spec = importlib.util.spec_from_file_location("empirical_ntk", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--quick"])
    assert "explicit Jacobian" in capsys.readouterr().out

"""Custom activations, composition and numerical duals, against independent oracles."""

import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

import ntkdsl
from ntkdsl.activations import REGISTRY
from ntkdsl.activations.evaluate import evaluate_dual

from oracles import gauss_expectation

X = np.random.default_rng(3).normal(size=(6, 4))


def _net(activation_line, layers):
    return ntkdsl.loads(f"{activation_line}\nnetwork n(input = 4) {{ {layers} }}")


def _step_notes(net):
    return [s.note for s in net.program.steps if s.note]


@pytest.mark.parametrize("body, builtin", [
    ("relu(x)", "relu"),
    ("erf(x)", "erf"),
    ("tanh(x)", "tanh"),
    ("Phi(x)", "erf(a = 0.5, b = sqrt(0.5), c = 0.5)"),  # Φ(x) = ½ + ½·erf(x/√2)
    ("x/(1 + exp(-x))", "silu"),
])
def test_custom_activation_matching_a_catalog_row_gives_its_values(body, builtin):
    layers = "dense(5, w_std = 1.3, b_std = 0.2); {}; dense(3, b_std = 0.1); {}; dense(1)"
    custom = _net(f"activation mine(x) = {body}", layers.format("mine", "mine")).kernels(X)
    catalog = _net("", layers.format(builtin, builtin)).kernels(X)
    # same closed form (or the same quadrature of the same σ): only float evaluation order differs
    np.testing.assert_allclose(custom.nngp, catalog.nngp, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(custom.ntk, catalog.ntk, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("body, method", [
    ("x**3 - 2*x + 1", "Hermite"),
    ("2*relu(3*x) - 1", "relu with affine"),
    ("erf(0.5*x)", "erf with affine"),
    ("step(2*x)", "step with affine"),
    ("exp(x/2) + 1", "exp with affine"),
    ("erf(x) + x**2", "odd + even"),
    ("tanh(x)", "numerical"),
    ("relu(x) + tanh(x)", "numerical"),
])
def test_dual_is_exact_when_derivable_and_agrees_with_quadrature(body, method):
    net = _net(f"activation mine(x) = {body}", "dense(3, w_std = 1.2, b_std = 0.3); mine")
    (note,) = _step_notes(net)
    assert method in note
    x = sp.Symbol("x")
    layer = net.ir.layers[1]
    sigma = sp.lambdify(x, layer.body.subs(sp.Symbol("x", real=True), x), ["numpy", "scipy"])
    kernels = net.kernels(X[:3])
    cov = 1.2**2 * (X[:3] @ X[:3].T) / 4 + 0.3**2  # the dense layer's Σ (kernel-math §2)
    for i, j in ((0, 0), (0, 1), (1, 2)):
        q1, q2, c = cov[i, i], cov[j, j], cov[i, j]
        rho = c / np.sqrt(q1 * q2)
        points = (-1.0, 0.0, 0.5, 1.0)  # kinks of the bodies above lie at 0
        expected = gauss_expectation(sigma, sigma, q1, q2, rho, points)
        # exact forms: float round-off; quadrature: ≤ 1e-8 relative to |K| + √(q1q2) (docs/numerical-duals.md)
        assert kernels.nngp[i, j] == pytest.approx(expected, abs=1e-8 * (abs(expected) + np.sqrt(q1 * q2)))


def test_composed_activations_are_one_elementwise_function():
    # relu ∘ relu = relu: the composition is recognised exactly
    twice = _net("", "dense(5, b_std = 0.1); relu; identity; relu; dense(1)")
    once = _net("", "dense(5, b_std = 0.1); relu; dense(1)")
    np.testing.assert_allclose(twice.kernels(X).ntk, once.kernels(X).ntk, rtol=1e-14)
    assert "composed 2 activations" in _step_notes(twice)[0]
    # erf ∘ tanh against quadrature of E[erf(tanh(u))·erf(tanh(v))]
    net = _net("", "dense(3, w_std = 1.5); tanh; erf")
    from scipy.special import erf

    sigma = lambda t: erf(np.tanh(t))  # noqa: E731
    cov = 1.5**2 * (X[:2] @ X[:2].T) / 4
    q1, q2, c = cov[0, 0], cov[1, 1], cov[0, 1]
    expected = gauss_expectation(sigma, sigma, q1, q2, c / np.sqrt(q1 * q2), (-1.0, 0.0, 1.0))
    got = net.kernels(X[:2]).nngp[0, 1]
    assert got == pytest.approx(expected, abs=1e-8 * (abs(expected) + np.sqrt(q1 * q2)))  # quadrature bound


def test_check_reports_composition_and_method(tmp_path):
    spec = tmp_path / "c.ntk"
    spec.write_text("network n(input = 2) {\n  dense(3)\n  tanh\n  relu\n  dense(1)\n}\n")
    out = subprocess.run([sys.executable, "-m", "ntkdsl", "check", str(spec)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "relu ∘ tanh" in out.stdout
    assert "composed 2 activations" in out.stdout and "numerical" in out.stdout


@pytest.mark.parametrize("name", [r.name for r in REGISTRY if not r.exact])
def test_numerical_rows_price_and_finiteness(name):
    q1, q2 = np.array([0.5, 2.0, 0.0, 1.0, 1.0]), np.array([1.5, 2.0, 1.0, 1.0, 1.0])
    c = np.array([0.3, -0.995, 0.0, 1.0, -1.0]) * np.sqrt(np.maximum(q1 * q2, 0))
    k, kdot = evaluate_dual(name, q1, q2, c)
    assert np.all(np.isfinite(k)) and np.all(np.isfinite(kdot))  # ρ = ±1 and q = 0 included
    # Price's theorem: K̇ = ∂K/∂c; central difference with h = 1e-4: truncation O(h²·K''') ~ 1e-8,
    # quadrature noise 1e-12/h ~ 1e-8
    h = 1e-4
    kp, _ = evaluate_dual(name, q1[:2], q2[:2], c[:2] + h)
    km, _ = evaluate_dual(name, q1[:2], q2[:2], c[:2] - h)
    np.testing.assert_allclose(kdot[:2], (kp - km) / (2 * h), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus", "silu", "mish", "mine"])
def test_deep_stacks_stay_finite(activation):
    net = _net("activation mine(x) = relu(x) + tanh(x)/2",
               f"repeat 20 {{ dense(4, w_std = 1.4, b_std = 0.1); {activation} }}; dense(1)")
    k = net.kernels(X[:3])
    assert np.all(np.isfinite(k.nngp)) and np.all(np.isfinite(k.ntk))
    assert np.array_equal(k.nngp, k.nngp.T)


def test_activation_parameters_stay_symbols_and_differentiate():
    text = "activation a(x, s = 2) = erf(s*x)\nnetwork n(input = 4) {{ dense(3); a(s = {s}); dense(1) }}"
    net = ntkdsl.loads(text.format(s=0.7))
    s_sym = next(sym for sym in net.program.parameters if str(sym).startswith("a_s_"))
    program = net.program
    theta = program.output.ntk
    for step in reversed(program.steps):
        for sym, value in reversed(step.assignments):
            theta = theta.subs(sym, value)
    theta = theta.xreplace({k: v for k, v in program.parameters.items() if k != s_sym})
    first = program.steps[0].state
    x1, x2 = X[0], X[1]
    inputs = {first.cov1: x1 @ x1 / 4, first.cov2: x2 @ x2 / 4, first.nngp: x1 @ x2 / 4}
    derivative = float(sp.diff(theta, s_sym).subs(inputs).subs(s_sym, 0.7).evalf())
    h = 1e-6  # central difference: truncation ~1e-12, round-off ~1e-10
    plus = ntkdsl.loads(text.format(s=0.7 + h)).ntk([x1], [x2])[0, 0]
    minus = ntkdsl.loads(text.format(s=0.7 - h)).ntk([x1], [x2])[0, 0]
    assert derivative == pytest.approx((plus - minus) / (2 * h), rel=1e-7)


@pytest.mark.parametrize("text, message", [
    ("activation a(x = 1) = x", "is its variable and takes no default"),
    ("activation a(x, s, s) = x", "two parameters named 's'"),
    ("activation a(x) = tahn(x)", "unknown function 'tahn'; did you mean 'tanh'?"),
    ("activation a(x) = max(x)", "max takes exactly 2 positional arguments"),
    ("activation a(x) = x + y", "undefined name 'y'"),
    ("activation relu(x) = x", "would shadow the built-in layer or activation 'relu'"),
    ("activation a(x) = __import__('os')", "unexpected character"),
])
def test_bad_activation_definitions_are_spec_errors(text, message):
    with pytest.raises(ntkdsl.SpecError, match=None) as info:
        ntkdsl.loads(text + "\nnetwork n(input = 2) { dense(2); a }")
    assert message in str(info.value)
    assert "<string>:1:" in str(info.value)

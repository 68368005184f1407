"""Code generation: the printer's safe forms, readable straight-line output, the loader."""

import linecache
import re
import traceback

import numpy as np
import pytest
import sympy as sp

import ntkdsl
from ntkdsl.arraycode.printer import ArrayPrinter
from ntkdsl.algebra.functions import angle, perp

TINY = """
network tiny(input = 3) {
    dense(4, w_std = 1.5, b_std = 0.1)
    relu
    dense(1)
}
"""


def _body(source: str) -> str:
    return source[source.index("def kernels"):]


def test_generated_module_names_only_the_array_modules():
    source = ntkdsl.loads(TINY).to_python()
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports == ["import numpy as xp"]  # ReLU needs no special functions
    body = _body(source)
    assert not re.search(r"\b(numpy|scipy|math)\.", body.replace("kernel-math.md", ""))
    assert "arccos" not in body  # θ comes from arctan2 (kernel-math.md §3)


def test_generated_lines_follow_the_dense_and_relu_rules():
    source = ntkdsl.loads(TINY).to_python()
    body = _body(source)
    # σ_w and σ_b are run-time parameters, the spec's values their defaults (kernel-math.md §2:
    # Σ' = σ_w²·Σ + σ_b², with σ_w² and σ_b² computed once and shared)
    assert "    'w_std_1': 1.5,\n    'b_std_1': 0.1,\n" in source
    assert "    w_std_1, b_std_1, w_std_3 = _parameters(params)\n" in body
    assert "    t1_0 = b_std_1**2\n    t1_1 = w_std_1**2\n" in body
    assert "    cov1_1 = cov1_0*t1_1 + t1_0\n" in body
    assert "    nngp_1 = nngp_0*t1_1 + t1_0\n" in body
    # the ReLU layer is one dual function: √max(q1·q2 − c², 0) by the overflow-safe support routine,
    # then θ = atan2(that, c), each computed once (CSE); variances and covariances go through it alike
    dual = source[source.index("def dual_2(q1, q2, c):"):source.index("def _as_points")]
    assert dual.count("perp(c, q1, q2)") == 1 and dual.count("xp.arctan2(") == 1
    assert "    cov1_2, _ = dual_2(cov1_1, cov1_1, cov1_1)\n" in body
    assert "    nngp_2, nngp_dot_2 = dual_2(cov1_1, cov2_1, nngp_1)\n" in body
    # one statement per line, a comment naming each layer and its source position
    assert re.search(r"# layer 2: relu  \(<string>:4:5\)", body)


def test_erf_uses_the_stable_arctan2_form():
    source = ntkdsl.loads("network e(input = 2) { dense(3); erf(b = 2) }").to_python()
    # arcsin(u) near |u| = 1 and (1+2sq1)(1+2sq2) − 4s²c² cancel; atan2 and hypot do not (erf.py)
    assert "xp.arctan2(" in source and "xp.hypot(" in source and "arcsin" not in source


def test_printer_refuses_unknown_functions():
    with pytest.raises(Exception, match="foo|Unsupported"):
        ArrayPrinter().doprint(sp.Function("foo")(sp.Symbol("x")))


def test_printer_prints_the_safe_primitives():
    c, q1, q2 = sp.symbols("c q1 q2")
    printer = ArrayPrinter()
    assert printer.doprint(perp(c, q1 * q2)) == "perp(c, q1, q2)"
    assert printer.doprint(angle(c, q1 * q2)) == "xp.arctan2(perp(c, q1, q2), c)"
    assert "perp" in printer.functions  # the support routine is emitted into the module


def test_perp_support_is_exact_on_the_diagonal_and_never_overflows():
    from ntkdsl.arraycode.support import perp as safe_perp

    q = np.array([1e-300, 1e-160, 0.3, 7.0, 1e160, 1e300])
    assert np.array_equal(safe_perp(q, q, q), np.zeros_like(q))  # θ = 0 exactly (kernel-math §3)
    # orthogonal inputs: √(q1q2) exactly representable where q1 = q2 (rounding only: 1 ulp)
    np.testing.assert_allclose(safe_perp(0 * q, q, q), q, rtol=2e-16)
    assert safe_perp(np.array([0.0]), np.array([0.0]), np.array([5.0]))[0] == 0  # zero-norm input


def test_emission_is_deterministic_and_the_api_runs_the_same_text():
    net = ntkdsl.loads(TINY)
    source = net.to_python()
    assert source == ntkdsl.loads(TINY).to_python()
    module = net._module
    lines = linecache.getlines(module.__file__)
    assert "".join(lines) == source


def test_tracebacks_show_generated_lines():
    net = ntkdsl.loads(TINY)
    with pytest.raises(ValueError) as info:
        net._module.kernels(np.ones((2, 5)))  # the module itself (net.kernels checks inputs before it)
    text = "".join(traceback.format_exception(info.value))
    assert "ntkdsl-generated tiny" in text
    assert 'raise ValueError(f"{name} must have shape (N, 3)' in text
    assert "x1 must have shape (N, 3) for this network, got (2, 5)" in str(info.value)


@pytest.mark.parametrize("activation", ["tanh", "softplus", "relu(x) + tanh(x)"])
def test_numerical_self_kernel_equals_the_cross_kernel(activation):
    """Self-kernels of numerical duals are exactly symmetric and agree with the cross kernel of x
    and a copy of x (zero-norm and duplicate inputs included)."""
    custom = "activation act(x) = " + activation + "\n" if "(" in activation else ""
    name = "act" if custom else activation
    net = ntkdsl.loads(custom + f"network n(input = 3) {{ dense(5, b_std = 0.1); {name}; dense(4); {name}; dense(1) }}")
    x = np.random.default_rng(7).normal(size=(9, 3))
    x[4] = 0.0  # a zero-norm input
    x[6] = x[2]  # two identical inputs
    same, cross = net.kernels(x), net.kernels(x, x.copy())
    assert np.array_equal(same.nngp, same.nngp.T) and np.array_equal(same.ntk, same.ntk.T)
    # Both within the documented bound of the numerical dual (docs/numerical-duals.md: 1e-9 of the
    # entry's scale): the Mehler series picks its degree per block of entries, and the duplicate
    # inputs are exactly diagonal (ρ = 1) only in the self-kernel, so the two may differ by twice that.
    for a, b in ((same.nngp, cross.nngp), (same.ntk, cross.ntk)):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-9 * np.abs(b).max())

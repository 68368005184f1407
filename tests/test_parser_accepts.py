"""What the parser accepts: comments, separators, line ends, forward references, exact values, round trips.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import sympy as sp

import ntkdsl
from error_cases import error, lines

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


COMPACT = "let w = 2; network n(input = 3, parameterization = ntk) { dense(4, w_std = w); relu; dense(1) }"


def test_comments_separators_blank_lines_and_bracket_newlines():
    text = lines(
        "# a leading comment",
        "",
        "let w = 2   # a trailing comment",
        "",
        "",
        "network n(",
        "    input = [",
        "        3",
        "    ],",
        "    parameterization = ntk,   # trailing comma",
        ") {",
        "",
        "    dense(4,",
        "          w_std = w);   relu;",
        "    # a comment between statements",
        "    dense(1);",
        "",
        "};",
        "",
    )
    assert ntkdsl.loads(text).ir == ntkdsl.loads(COMPACT).ir


def test_trailing_semicolons_and_no_final_newline():
    assert ntkdsl.loads(COMPACT + ";").ir == ntkdsl.loads(COMPACT).ir
    assert ntkdsl.loads(";;" + COMPACT.replace("; ", ";\n;") + "\n\n").ir == ntkdsl.loads(COMPACT).ir


def test_crlf_line_ends():
    assert ntkdsl.loads(COMPACT.replace("; ", "\r\n")).ir == ntkdsl.loads(COMPACT).ir


def test_names_may_be_used_before_their_definition():
    text = lines(
        "network n(input = 3) {",
        "    hidden(width)",
        "    dense(1)",
        "}",
        "block hidden(k) {",
        "    dense(k, w_std = w)",
        "    relu",
        "}",
        "let width = half * 2",
        "let half = 2",
        "let w = 2",
    )
    assert ntkdsl.loads(text).ir == ntkdsl.loads(COMPACT).ir


@pytest.mark.parametrize("shape", ["784", "[784]", "(784,)", "(784)", "[784,]", "[\n784\n]"])
def test_sequences_where_a_sequence_is_expected(shape):
    net = ntkdsl.loads(f"network n(input = {shape}) {{ dense(2) }}")
    assert net.ir.input_shape == (784,) and net.ir.input_dim == 784
    assert net.ir == ntkdsl.loads("network n(input = 784) { dense(2) }").ir


def test_round_and_square_sequences_are_the_same():
    square = ntkdsl.loads("network n(input = [8, 8, 3]) { flatten; dense(2) }").ir
    round_ = ntkdsl.loads("network n(input = (8, 8, 3)) { flatten; dense(2) }").ir
    assert square == round_ and square.input_shape == (8, 8, 3)
    messages = [error(f"network n(input = {shape}) {{ dense(2) }}").message for shape in ("[8, 8, 3]", "(8, 8, 3)")]
    assert messages[0] == messages[1] and "shape [8, 8, 3]" in messages[0]


def test_exact_values():
    net = ntkdsl.loads("network n(input = 3) { dense(4, w_std = sqrt(2), b_std = 0.1); relu; "
                       "dense(2, w_std = .5, b_std = 1e-1); relu; dense(1, w_std = 2**(1/2) * 3/2, b_std = pi/4) }")
    first, _, second, _, third = net.ir.layers
    assert first.w_std == sp.sqrt(2) and not first.w_std.is_Float  # √2 stays √2, not 1.414...
    assert first.b_std == sp.Rational(1, 10) and isinstance(first.b_std, sp.Rational)
    assert second.w_std == sp.Rational(1, 2) and second.b_std == sp.Rational(1, 10)
    assert sp.simplify(third.w_std - 3 * sp.sqrt(2) / 2) == 0 and not third.w_std.is_Float
    assert third.b_std == sp.pi / 4
    assert "sqrt(2)" in net.to_ntk() and "1/10" in net.to_ntk()


def test_block_defaults_refer_to_lets_and_earlier_parameters():
    text = lines(
        "let beta = 0.1",
        "block h(n, w = 2 * beta, b = w / 4, m = n + 1) {",
        "    dense(m, w_std = w, b_std = b)",
        "    relu",
        "}",
        "network x(input = 3) {",
        "    h(4)",
        "    h(2, w = 1)",
        "    h(1, m = 7, b = none)",
        "}",
    )
    d1, _, d2, _, d3, _ = ntkdsl.loads(text).ir.layers
    assert (d1.width, d1.w_std, d1.b_std) == (5, sp.Rational(1, 5), sp.Rational(1, 20))
    assert (d2.width, d2.w_std, d2.b_std) == (3, 1, sp.Rational(1, 4))
    assert (d3.width, d3.w_std, d3.b_std) == (7, sp.Rational(1, 5), None)


def test_nested_repeats():
    net = ntkdsl.loads("network n(input = 3) { repeat 2 { repeat 3 { dense(5) }; relu }; dense(1) }")
    names = [type(layer).__name__ for layer in net.ir.layers]
    assert names == (["Dense"] * 3 + ["Activation"]) * 2 + ["Dense"]


def test_b_std_none_is_no_bias_and_b_std_zero_is_a_zero_bias():
    x = np.random.default_rng(0).normal(size=(4, 3))
    kernels = {}
    for param in ("standard", "ntk"):
        for b in ("none", "0"):
            net = ntkdsl.loads(f"network n(input = 3, parameterization = {param}) {{ dense(2, b_std = {b}) }}")
            kernels[param, b] = net.kernels(x)
    assert ntkdsl.loads("network n(input = 3) { dense(2, b_std = none) }").ir.layers[0].b_std is None
    assert ntkdsl.loads("network n(input = 3) { dense(2, b_std = 0) }").ir.layers[0].b_std == 0
    # the NNGP is the same; the standard-parameterization NTK counts the bias' gradient: +1 (kernel-math.md §2)
    np.testing.assert_allclose(kernels["standard", "0"].nngp, kernels["standard", "none"].nngp, rtol=0, atol=0)
    np.testing.assert_allclose(kernels["standard", "0"].ntk - kernels["standard", "none"].ntk, 1.0, rtol=1e-14)
    np.testing.assert_allclose(kernels["ntk", "0"].ntk, kernels["ntk", "none"].ntk, rtol=1e-15, atol=0)


ROUND_TRIP = [
    pytest.param(open(os.path.join(EXAMPLES, "mlp.ntk")).read(), id="examples-mlp"),
    pytest.param(open(os.path.join(EXAMPLES, "jacot_fig1.ntk")).read(), id="examples-jacot_fig1"),
    pytest.param("network c(input = 2) { dense(3, w_std = sqrt(2), b_std = pi/10); erf(b = 2); "
                 "dense(4, w_std = exp(1) - 1, b_std = 0); leaky_relu(alpha = 0.2); dense(1, w_std = 2**(1/3)) }",
                 id="exact-constants"),
    pytest.param("network s(input = 5, parameterization = standard) { dense(3, b_std = none); relu; "
                 "dense(3, b_std = 0, parameterization = ntk); tanh; dense(2, w_std = 1.5, b_std = 0.1) }",
                 id="standard-and-mixed-parameterization"),
    pytest.param("network p(input = 2) { dense(3); polynomial(1, 0, -1/2); dense(2); monomial(3); dense(1); "
                 "hermite(2); identity }", id="variadic-and-natural-parameters"),
    pytest.param("activation act(x, a = 2, b = a/2) = a*relu(x) - b*x**2 + sin(x)\n"
                 "network c(input = 3) { dense(4); act; dense(2); act(a = 1); dense(1) }", id="custom-activation"),
    pytest.param("block h(n, w = 1.5) { dense(n, w_std = w, b_std = 0.1); relu }\n"
                 "network b(input = 4) { repeat 2 { h(8) }; h(3, w = sqrt(3)); dense(1) }", id="blocks-and-repeats"),
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_printer_round_trip(text):
    net = ntkdsl.loads(text)
    canonical = net.to_ntk()
    again = ntkdsl.loads(canonical)
    assert again.ir == net.ir
    assert again.to_ntk() == canonical  # the canonical form is a fixed point

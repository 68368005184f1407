"""Golden error messages about a network's structure (shapes, orders of layers, blocks), and what is not an error.
"""

from __future__ import annotations

import pytest

import ntkdsl
from error_cases import check_message, lines
from ntkdsl.errors import ArgumentSpecError, StructureSpecError


# (id, source, network, error class, the full expected message)
CASES = [
    pytest.param(
        lines("network n(input = 3) {",
              "    relu",
              "    dense(4)",
              "}"),
        None, StructureSpecError,
        lines("t.ntk:2:5: error: activation 'relu' needs a Gaussian input (an affine layer such as dense before "
              "it), but its input is the network input itself, whose kernel is x·x'/d, not a Gaussian process",
              "        relu",
              "        ^^^^"),
        id="activation-at-the-input"),
    pytest.param(
        lines("network n(input = 3) {",
              "    identity",
              "    relu",
              "    dense(4)",
              "}"),
        None, StructureSpecError,
        lines("t.ntk:3:5: error: activation 'relu' needs a Gaussian input (an affine layer such as dense before "
              "it), but its input is the network input itself, whose kernel is x·x'/d, not a Gaussian process",
              "        relu",
              "        ^^^^"),
        id="activation-at-the-input-after-identity"),
    pytest.param(
        lines("block b(n) {",
              "    dense(n)",
              "    b(n)",
              "}",
              "network n(input = 3) {",
              "    b(4)",
              "}"),
        None, StructureSpecError,
        lines("t.ntk:3:5: error: block 'b' calls itself (b -> b)",
              "        b(n)",
              "        ^"),
        id="block-calls-itself"),
    pytest.param(
        lines("block a(n) {",
              "    dense(n)",
              "    c(n)",
              "}",
              "block c(n) {",
              "    relu",
              "    a(n)",
              "}",
              "network n(input = 3) {",
              "    a(4)",
              "}"),
        None, StructureSpecError,
        lines("t.ntk:7:5: error: block 'a' calls itself (a -> c -> a)",
              "        a(n)",
              "        ^"),
        id="block-calls-itself-via-another"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(3) { relu }",
              "}"),
        None, StructureSpecError,
        lines("t.ntk:2:14: error: 'dense' takes no { } body",
              "        dense(3) { relu }",
              "                 ^^^^^^^^"),
        id="body-given-to-a-layer-without-one"),
    pytest.param(
        lines("network n(input = [8, 8, 3]) {",
              "    dense(4)",
              "}"),
        None, StructureSpecError,
        lines("t.ntk:2:5: error: dense needs a vector input, but its input has shape [8, 8, 3] (an image or "
              "signal with channels last); add flatten or global_avg_pool before it",
              "        dense(4)",
              "        ^^^^^^^^"),
        id="image-input-into-dense"),
    pytest.param(
        lines("network n(input = 0) {",
              "    dense(4)",
              "}"),
        None, ArgumentSpecError,
        lines("t.ntk:1:19: error: each input dimension must be a positive integer, got 0",
              "    network n(input = 0) {",
              "                      ^"),
        id="input-zero"),
]


@pytest.mark.parametrize("text, network, cls, expected", CASES)
def test_error_message(text, network, cls, expected):
    check_message(text, network, cls, expected)


# ---------------------------------------------------------------------- what is not an error
def test_an_activation_after_another_activation_composes():
    # kernel-math.md §3: consecutive activations are one elementwise function, not an error
    net = ntkdsl.loads("network n(input = 3) {\n    dense(4)\n    relu\n    tanh\n    dense(1)\n}")
    assert [type(layer).__name__ for layer in net.ir.layers] == ["Dense", "Activation", "Activation", "Dense"]

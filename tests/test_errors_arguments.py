"""Golden error messages about arguments: values, types, ranges and missing or repeated arguments.
"""

from __future__ import annotations

import os

import pytest

from error_cases import check_message, lines
from ntkdsl.errors import ArgumentSpecError, NameSpecError

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


# (id, source, network, error class, the full expected message)
CASES = [
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(10, 1, 0.1, ntk, 5)",
              "}"),
        None, ArgumentSpecError,
        lines("t.ntk:2:28: error: dense takes at most 4 arguments (width, w_std, b_std, parameterization), got 5",
              "        dense(10, 1, 0.1, ntk, 5)",
              "                               ^"),
        id="too-many-arguments"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(3)",
              "    relu(2)",
              "}"),
        None, ArgumentSpecError,
        lines("t.ntk:3:10: error: activation 'relu' takes no arguments, got 1",
              "        relu(2)",
              "             ^"),
        id="arguments-to-an-activation-without-parameters"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(10, w_sdt = 2)",
              "}"),
        None, ArgumentSpecError,
        lines("t.ntk:2:15: error: dense has no parameter 'w_sdt'; did you mean 'w_std'? "
              "(parameters: width, w_std, b_std, parameterization)",
              "        dense(10, w_sdt = 2)",
              "                  ^^^^^"),
        id="unknown-keyword"),
    pytest.param(
        lines("block hidden(n, w = 1) {",
              "    dense(n, w_std = w)",
              "}",
              "network net(input = 3) {",
              "    hidden(4, ww = 2)",
              "}"),
        None, ArgumentSpecError,
        lines("t.ntk:5:15: error: block 'hidden' has no parameter 'ww'; did you mean 'w'? (parameters: n, w)",
              "        hidden(4, ww = 2)",
              "                  ^^"),
        id="unknown-keyword-of-a-block"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(10, w_std = 2, w_std = 3)",
              "}"),
        None, ArgumentSpecError,
        lines("t.ntk:2:26: error: dense: 'w_std' is given twice",
              "        dense(10, w_std = 2, w_std = 3)",
              "                             ^^^^^"),
        id="keyword-given-twice"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(w_std = 2, 10)",
              "}"),
        None, ArgumentSpecError,
        lines("t.ntk:2:22: error: dense: a positional argument follows a keyword argument",
              "        dense(w_std = 2, 10)",
              "                         ^^"),
        id="positional-after-keyword"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(0)",
              "}"),
        None, ArgumentSpecError,
        lines("t.ntk:2:11: error: width must be a positive integer, got 0",
              "        dense(0)",
              "              ^"),
        id="width-zero"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(-3)",
              "}"),
        None, ArgumentSpecError,
        lines("t.ntk:2:11: error: width must be a positive integer, got -3",
              "        dense(-3)",
              "              ^^"),
        id="width-negative"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(2.5)",
              "}"),
        None, ArgumentSpecError,
        lines("t.ntk:2:11: error: width must be a positive integer, got 5/2",
              "        dense(2.5)",
              "              ^^^"),
        id="width-not-an-integer"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(4)",
              "    repeat 0 { dense(4) }",
              "}"),
        None, ArgumentSpecError,
        lines("t.ntk:3:12: error: the repeat count must be a positive integer, got 0",
              "        repeat 0 { dense(4) }",
              "               ^"),
        id="repeat-zero"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(4)",
              "    repeat -2 { dense(4) }",
              "}"),
        None, ArgumentSpecError,
        lines("t.ntk:3:12: error: the repeat count must be a positive integer, got -2",
              "        repeat -2 { dense(4) }",
              "               ^^"),
        id="repeat-negative"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(4)",
              "    repeat 1.5 { dense(4) }",
              "}"),
        None, ArgumentSpecError,
        lines("t.ntk:3:12: error: the repeat count must be a positive integer, got 3/2",
              "        repeat 1.5 { dense(4) }",
              "               ^^^"),
        id="repeat-not-an-integer"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(w_std = 2)",
              "}"),
        None, ArgumentSpecError,
        lines("t.ntk:2:5: error: dense needs the argument 'width'",
              "        dense(w_std = 2)",
              "        ^^^^^"),
        id="missing-required-argument"),
    pytest.param(
        lines("network n() {",
              "    dense(4)",
              "}"),
        None, ArgumentSpecError,
        lines("t.ntk:1:9: error: network 'n' needs the argument 'input'",
              "    network n() {",
              "            ^"),
        id="missing-input"),
    pytest.param(
        lines("block hidden(n) { dense(n); relu }",
              "network n(input = 3) {",
              "    hidden",
              "}"),
        None, ArgumentSpecError,
        lines("t.ntk:3:5: error: block 'hidden' needs the argument 'n'",
              "        hidden",
              "        ^^^^^^"),
        id="missing-block-argument"),
    pytest.param(
        lines("network n(input = 3, parameterization = stnadard) {",
              "    dense(4)",
              "}"),
        None, ArgumentSpecError,
        lines("t.ntk:1:41: error: parameterization must be one of ntk, standard; got 'stnadard'; "
              "did you mean 'standard'?",
              "    network n(input = 3, parameterization = stnadard) {",
              "                                            ^^^^^^^^"),
        id="enumeration-word-misspelt"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(4, b_std = nne)",
              "}"),
        None, NameSpecError,
        lines("t.ntk:2:22: error: b_std must be a number or `none`, got undefined name 'nne'; did you mean 'none'?",
              "        dense(4, b_std = nne)",
              "                         ^^^"),
        id="b_std-none-misspelt"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(4, w_std = -1)",
              "}"),
        None, ArgumentSpecError,
        lines("t.ntk:2:22: error: w_std is a standard deviation and must be non-negative, got -1",
              "        dense(4, w_std = -1)",
              "                         ^^"),
        id="negative-w_std"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(4, w_std = 1/(2 - 2))",
              "}"),
        None, ArgumentSpecError,
        lines("t.ntk:2:22: error: division by zero",
              "        dense(4, w_std = 1/(2 - 2))",
              "                         ^^^^^^^^^"),
        id="division-by-zero"),
    pytest.param(
        lines("let s = [1, 2]",
              "network n(input = 3) {",
              "    dense(4)",
              "}"),
        None, ArgumentSpecError,
        lines("t.ntk:1:9: error: expected a number, got a sequence",
              "    let s = [1, 2]",
              "            ^^^^^^"),
        id="let-of-a-sequence",),
    pytest.param(
        lines("block hidden(n) {",
              "    dense(n)",
              "    relu",
              "}",
              "network net(input = 3) {",
              "    hidden(4)",
              "    hidden(0)",
              "}"),
        None, ArgumentSpecError,
        lines("t.ntk:2:11: error: width must be a positive integer, got 0",
              "        dense(n)",
              "              ^",
              "note: in block 'hidden' called at t.ntk:7:5"),
        id="bad-argument-inside-a-block-names-the-call",),
]


@pytest.mark.parametrize("text, network, cls, expected", CASES)
def test_error_message(text, network, cls, expected):
    check_message(text, network, cls, expected)

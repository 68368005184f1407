"""User-facing error messages (one golden test per kind of mistake) and what the parser accepts.

Every mistake in a .ntk file is a :class:`ntkdsl.SpecError` whose ``str()`` is the one-screen
message the CLI prints: ``file:line:col: error: ...``, the source line, a caret line under the
span and optional notes. The golden texts below are what a user should read; where ntkdsl prints
something worse today the test keeps the better text and is marked ``xfail(strict=True)``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import sympy as sp

import ntkdsl
from ntkdsl.errors import ArgumentSpecError, NameSpecError, StructureSpecError, SyntaxSpecError

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def lines(*rows: str) -> str:
    """A multi-line text, one argument per line (keeps leading spaces visible and exact)."""
    return "\n".join(rows)


def error(text: str, network=None, filename="t.ntk") -> ntkdsl.SpecError:
    with pytest.raises(ntkdsl.SpecError) as info:
        ntkdsl.loads(text, network=network, filename=filename)
    return info.value


def xfail(reason: str):
    return pytest.mark.xfail(strict=True, reason=reason)


# (id, source, network, error class, the full expected message)
CASES = [
    # ------------------------------------------------------------------ syntax
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(4) relu",
              "}"),
        None, SyntaxSpecError,
        lines("t.ntk:2:14: error: unexpected 'relu'; expected one of ';', '{', '}', a newline",
              "        dense(4) relu",
              "                 ^^^^"),
        id="syntax-missing-separator-between-statements"),
    pytest.param(
        lines("let a = 3 network n(input = 3) { dense(4) }"),
        None, SyntaxSpecError,
        lines("t.ntk:1:11: error: unexpected 'network'; expected one of '*', '**', '+', '-', '/', ';', a newline, "
              "end of file",
              "    let a = 3 network n(input = 3) { dense(4) }",
              "              ^^^^^^^"),
        id="syntax-missing-separator-between-items"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(4,, 3)",
              "}"),
        None, SyntaxSpecError,
        lines("t.ntk:2:13: error: unexpected ','; expected one of '(', ')', '+', '-', '[', a name, a number",
              "        dense(4,, 3)",
              "                ^"),
        id="syntax-unexpected-token"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(4",
              "    relu",
              "}"),
        None, SyntaxSpecError,
        lines("t.ntk:3:5: error: unexpected 'relu'; expected one of ')', '*', '**', '+', ',', '-', '/'",
              "        relu",
              "        ^^^^"),
        id="syntax-unclosed-parenthesis-before-next-line"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(3, w_std = $)",
              "}"),
        None, SyntaxSpecError,
        lines("t.ntk:2:22: error: unexpected character '$'; expected one of '(', '+', '-', '[', a name, a number",
              "        dense(3, w_std = $)",
              "                         ^"),
        id="syntax-unexpected-character"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(4 @ 2)",
              "}"),
        None, SyntaxSpecError,
        lines("t.ntk:2:13: error: unexpected character '@'; expected one of ')', '*', '**', '+', ',', '-', '/'",
              "        dense(4 @ 2)",
              "                ^"),
        id="syntax-unexpected-character-in-arguments",),
    pytest.param(
        lines("network n(input = 3) { dense(4); relu } @"),
        None, SyntaxSpecError,
        lines("t.ntk:1:41: error: unexpected character '@'; expected one of ';', a newline, end of file",
              "    network n(input = 3) { dense(4); relu } @",
              "                                            ^"),
        id="syntax-unexpected-character-after-network",),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(4"),
        None, SyntaxSpecError,
        lines("t.ntk:2:12: error: unexpected end of file; expected one of ')', ','",
              "        dense(4",
              "               ^"),
        id="syntax-unexpected-end-of-file-in-call"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(4)",
              "    relu",
              ""),
        None, SyntaxSpecError,
        lines("t.ntk:3:9: error: unexpected end of file; expected one of ';', 'repeat', '}', a name, a newline",
              "        relu",
              "            ^"),
        id="syntax-unexpected-end-of-file-in-body"),
    pytest.param(
        lines("network n(input = 3)",
              "{",
              "    dense(4)",
              "}"),
        None, SyntaxSpecError,
        lines("t.ntk:1:21: error: unexpected newline; expected '{'",
              "    network n(input = 3)",
              "                        ^",
              "note: a '{' opens on the line of its header"),
        id="syntax-brace-on-the-next-line"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(4)",
              "}",
              "}"),
        None, SyntaxSpecError,
        lines("t.ntk:4:1: error: unexpected '}'; expected one of ';', 'activation', 'block', 'let', 'network', "
              "a newline, end of file",
              "    }",
              "    ^"),
        id="syntax-stray-closing-brace"),
    # ------------------------------------------------------------------ names
    pytest.param(
        lines("network n(input = 3) {",
              "    dence(10)",
              "    relu",
              "}"),
        None, NameSpecError,
        lines("t.ntk:2:5: error: unknown layer or activation 'dence'; did you mean 'dense'?",
              "        dence(10)",
              "        ^^^^^"),
        id="unknown-layer"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(10)",
              "    rleu",
              "}"),
        None, NameSpecError,
        lines("t.ntk:3:5: error: unknown layer or activation 'rleu'; did you mean 'relu'?",
              "        rleu",
              "        ^^^^"),
        id="unknown-activation"),
    pytest.param(
        lines("let width = 10",
              "network n(input = 3) {",
              "    dense(widht)",
              "}"),
        None, NameSpecError,
        lines("t.ntk:3:11: error: undefined name 'widht'; did you mean 'width'?",
              "        dense(widht)",
              "              ^^^^^"),
        id="undefined-name"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(4, w_std = sqr(2))",
              "}"),
        None, NameSpecError,
        lines("t.ntk:2:22: error: unknown function 'sqr'; did you mean 'sqrt'? "
              "(expressions may call sqrt, exp, log, sin, cos)",
              "        dense(4, w_std = sqr(2))",
              "                         ^^^"),
        id="unknown-function"),
    pytest.param(
        lines("let w = 2",
              "let w = 3",
              "network n(input = 3) {",
              "    dense(4, w_std = w)",
              "}"),
        None, NameSpecError,
        lines("t.ntk:2:5: error: 'w' is defined twice",
              "    let w = 3",
              "        ^",
              "note: first defined at t.ntk:1:5"),
        id="defined-twice"),
    pytest.param(
        lines("block h(n) { dense(n) }",
              "let h = 3",
              "network n(input = 3) {",
              "    h(4)",
              "}"),
        None, NameSpecError,
        lines("t.ntk:2:5: error: 'h' is defined twice",
              "    let h = 3",
              "        ^",
              "note: first defined at t.ntk:1:7"),
        id="defined-twice-as-block-and-let"),
    pytest.param(
        lines("block relu() {",
              "    dense(3)",
              "}",
              "network n(input = 3) {",
              "    dense(4)",
              "}"),
        None, NameSpecError,
        lines("t.ntk:1:7: error: block 'relu' would shadow the built-in layer or activation 'relu'",
              "    block relu() {",
              "          ^^^^"),
        id="block-shadows-builtin"),
    pytest.param(
        lines("let a = b + 1",
              "let b = 2 * a",
              "network n(input = 3) {",
              "    dense(4)",
              "}"),
        None, NameSpecError,
        lines("t.ntk:1:5: error: the let 'a' depends on itself (a -> b -> a)",
              "    let a = b + 1",
              "        ^"),
        id="let-cycle"),
    # ------------------------------------------------------------------ arguments
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
    # ------------------------------------------------------------------ structure
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
    # ------------------------------------------------------------------ choosing a network
    pytest.param(
        lines("network a(input = 3) {",
              "    dense(4)",
              "}",
              "network b(input = 3) {",
              "    dense(2)",
              "}"),
        None, StructureSpecError,
        lines("t.ntk:4:9: error: the file defines 2 networks (a, b); choose one (--network NAME on the command "
              "line, network= in Python)",
              "    network b(input = 3) {",
              "            ^"),
        id="several-networks-none-chosen"),
    pytest.param(
        lines("network n(input = 3) {",
              "    dense(4)",
              "}",
              "network n(input = 5) {",
              "    dense(4)",
              "}"),
        None, NameSpecError,
        lines("t.ntk:4:9: error: 'n' is defined twice",
              "    network n(input = 5) {",
              "            ^",
              "note: first defined at t.ntk:1:9"),
        id="network-defined-twice"),
    pytest.param(
        "", None, StructureSpecError,
        "t.ntk: error: the file defines no network (expected `network NAME(input = D) { ... }`)",
        id="empty-file"),
    pytest.param(
        lines("# helpers only",
              "let x = 3"),
        None, StructureSpecError,
        "t.ntk: error: the file defines no network (expected `network NAME(input = D) { ... }`)",
        id="no-network",
        ),
    pytest.param(
        lines("network mlp(input = 3) {",
              "    dense(4)",
              "}",
              "network cnn(input = 3) {",
              "    dense(2)",
              "}"),
        "mpl", NameSpecError,
        lines("t.ntk: error: no network 'mpl' in t.ntk; did you mean 'mlp'?",
              "note: the file defines mlp, cnn"),
        id="unknown-network-name"),
    pytest.param(
        lines("# two networks",
              "network mlp(input = 3) {",
              "    dense(4)",
              "}",
              "network cnn(input = 3) {",
              "    dense(2)",
              "}"),
        "mpl", NameSpecError,
        lines("t.ntk: error: no network 'mpl' in t.ntk; did you mean 'mlp'?",
              "note: the file defines mlp, cnn"),
        id="unknown-network-name-file-starting-with-a-comment",
        ),
    pytest.param(
        "let x = 3", "mlp", NameSpecError,
        "t.ntk: error: no network 'mlp': t.ntk defines no network",
        id="network-name-in-a-file-without-networks"),
]


@pytest.mark.parametrize("text, network, cls, expected", CASES)
def test_error_message(text, network, cls, expected):
    exc = error(text, network)
    assert str(exc) == expected
    assert isinstance(exc, ntkdsl.SpecError)
    assert isinstance(exc, cls), type(exc).__name__


def test_error_attributes_locate_the_mistake():
    exc = error(lines("network n(input = 3) {", "    dence(10)", "}"))
    assert exc.span.file == "t.ntk" and (exc.span.line, exc.span.col, exc.span.end_col) == (2, 5, 10)
    assert exc.message == "unknown layer or activation 'dence'; did you mean 'dense'?"
    assert exc.format() == str(exc)


def test_load_names_the_file_in_errors(tmp_path):
    path = tmp_path / "bad.ntk"
    path.write_text("network n(input = 3) {\n    dence(10)\n}\n")
    with pytest.raises(NameSpecError) as info:
        ntkdsl.load(path)
    assert str(info.value).startswith(f"{path}:2:5: error: unknown layer or activation 'dence'")


def test_tabs_in_the_source_line_keep_the_caret_aligned():
    exc = error("network n(input = 3) {\n\tdence(10)\n}")
    assert str(exc) == lines("t.ntk:2:2: error: unknown layer or activation 'dence'; did you mean 'dense'?",
                             "     dence(10)",
                             "     ^^^^^")


# ---------------------------------------------------------------------- what is not an error
def test_an_activation_after_another_activation_composes():
    # kernel-math.md §3: consecutive activations are one elementwise function, not an error
    net = ntkdsl.loads("network n(input = 3) {\n    dense(4)\n    relu\n    tanh\n    dense(1)\n}")
    assert [type(layer).__name__ for layer in net.ir.layers] == ["Dense", "Activation", "Activation", "Dense"]


# ---------------------------------------------------------------------- security
@pytest.mark.parametrize("expression", [
    "__import__('os').system('x')",
    '__import__("os").system("x")',
    "__import__(os)",
    "eval(1)",
    "exec(x)",
    "open(x)",
    "x.__class__",
])
def test_python_in_an_expression_is_a_spec_error_never_executed(expression, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a) or 0)
    for text in (f"network n(input = 3) {{\n    dense(3, w_std = {expression})\n}}",
                 f"let w = {expression}\nnetwork n(input = 3) {{\n    dense(3, w_std = w)\n}}"):
        with pytest.raises(ntkdsl.SpecError) as info:
            ntkdsl.loads(text, filename="t.ntk").kernels(np.ones((1, 3)))
        assert isinstance(info.value, (SyntaxSpecError, NameSpecError))
        assert str(info.value).startswith("t.ntk:")
    assert calls == []


def test_python_syntax_error_message_points_at_the_string_quote():
    exc = error("network n(input = 3) {\n    dense(3, w_std = __import__('os').system('x'))\n}")
    assert str(exc) == lines(
        "t.ntk:2:33: error: unexpected character \"'\"; expected one of '(', ')', '+', '-', '[', a name, a number",
        "        dense(3, w_std = __import__('os').system('x'))",
        "                                    ^")


def test_filename_is_never_executed_as_code(tmp_path):
    marker = tmp_path / "pwned"
    filename = f"x.ntk\n    open({str(marker)!r}, 'w').close()\n    #"
    net = ntkdsl.loads("network n(input = 2) {\n    dense(3)\n    relu\n    dense(1)\n}", filename=filename)
    try:
        net.kernels(np.ones((2, 2)))
    finally:
        assert not marker.exists(), "code in the filename was executed"


def test_filename_with_quotes_still_compiles():
    net = ntkdsl.loads("network n(input = 2) {\n    dense(3)\n    relu\n    dense(1)\n}", filename='q""".ntk')
    assert net.kernels(np.ones((2, 2))).ntk.shape == (2, 2)


def test_custom_activation_with_a_parameter_dependent_kink_compiles():
    x = np.random.default_rng(0).normal(size=(3, 3))
    fixed = ntkdsl.loads("activation sh(x) = relu(x - 1)\nnetwork n(input = 3) { dense(4); sh; dense(1) }")
    param = ntkdsl.loads("activation sh(x, t = 1) = relu(x - t)\nnetwork n(input = 3) { dense(4); sh; dense(1) }")
    np.testing.assert_allclose(param.kernels(x).ntk, fixed.kernels(x).ntk, rtol=1e-10)


# ---------------------------------------------------------------------- what the parser accepts
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

"""Golden error messages about names: unknown layers, activations, parameters, networks (with suggestions).
"""

from __future__ import annotations

import pytest

import ntkdsl
from error_cases import check_message, error, lines
from ntkdsl.errors import NameSpecError, StructureSpecError


# (id, source, network, error class, the full expected message)
CASES = [
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
    check_message(text, network, cls, expected)


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

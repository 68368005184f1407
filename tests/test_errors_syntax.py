"""Golden error messages of the parsing stage: characters, tokens, brackets and the caret under them.
"""

from __future__ import annotations

import pytest

from error_cases import check_message, error, lines
from ntkdsl.errors import SyntaxSpecError


# (id, source, network, error class, the full expected message)
CASES = [
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
]


@pytest.mark.parametrize("text, network, cls, expected", CASES)
def test_error_message(text, network, cls, expected):
    check_message(text, network, cls, expected)


def test_tabs_in_the_source_line_keep_the_caret_aligned():
    exc = error("network n(input = 3) {\n\tdence(10)\n}")
    assert str(exc) == lines("t.ntk:2:2: error: unknown layer or activation 'dence'; did you mean 'dense'?",
                             "     dence(10)",
                             "     ^^^^^")

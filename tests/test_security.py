"""A .ntk file is data: Python written in a spec or a filename is a located error, never executed.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import ntkdsl
from error_cases import error, lines
from ntkdsl.errors import NameSpecError, SyntaxSpecError


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

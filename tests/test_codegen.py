"""Code generation: the printer's safe forms, readable straight-line output, the loader."""

import linecache
import re
import traceback

import numpy as np
import pytest
import sympy as sp

import ntkdsl
from ntkdsl.codegen.printer import ArrayPrinter
from ntkdsl.symbolic.functions import angle, perp

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
    body = _body(ntkdsl.loads(TINY).to_python())
    # σ_w² = 9/4 and σ_b² = 1/100 substituted exactly (kernel-math.md §2)
    assert "    cov1_1 = (9/4)*cov1_0 + 1/100\n" in body
    assert "    nngp_1 = (9/4)*nngp_0 + 1/100\n" in body
    # the ReLU layer: √max(q1·q2 − c², 0), then θ = atan2(that, c), each computed once (CSE)
    assert body.count("xp.sqrt(xp.maximum(cov1_1*cov2_1 - nngp_1**2, 0))") == 1
    assert body.count("xp.arctan2(") == 1
    assert "    cov1_2 = (1/2)*cov1_1\n" in body  # diagonal: θ = 0 exactly, K(q, q, q) = q/2
    # one statement per line, a comment naming each layer and its source position
    assert re.search(r"# layer 2: relu  \(<string>:4:5\)", body)


def test_erf_uses_a_clipped_arcsin():
    body = _body(ntkdsl.loads("network e(input = 2) { dense(3); erf(b = 2) }").to_python())
    assert "xp.arcsin(xp.clip(" in body


def test_printer_refuses_unknown_functions():
    with pytest.raises(Exception, match="foo|Unsupported"):
        ArrayPrinter().doprint(sp.Function("foo")(sp.Symbol("x")))


def test_printer_prints_the_safe_primitives():
    c, p = sp.symbols("c p")
    printer = ArrayPrinter()
    assert printer.doprint(perp(c, p)) == "xp.sqrt(xp.maximum(-c**2 + p, 0))"
    assert printer.doprint(angle(c, p)) == "xp.arctan2(xp.sqrt(xp.maximum(-c**2 + p, 0)), c)"


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
        net.kernels(np.ones((2, 5)))
    text = "".join(traceback.format_exception(info.value))
    assert "ntkdsl-generated tiny" in text
    assert 'raise ValueError(f"{name} must have shape (N, 3)' in text
    assert "x1 must have shape (N, 3) for this network, got (2, 5)" in str(info.value)

"""The LaTeX of the recursion is a well-formed document fragment; with pdflatex installed, it compiles."""

import re
import shutil
import subprocess

import pytest

import ntkdsl

SPECS = {
    "mlp": "network n(input = 3) { dense(4, w_std = 1.5, b_std = 0.1); relu; dense(1) }",
    "erf_standard": "network n(input = 3, parameterization = standard) { dense(4, b_std = 0); erf(a = 2); dense(1) }",
    "numerical_and_custom": "activation mine(x, s = 2) = tanh(s*x) + relu(x)\n"
                            "network n(input = 3) { dense(4); mine(s = 0.5); dense(3); tanh; relu; dense(1) }",
    "polynomial_custom": "activation p(x) = x**3 - x\nnetwork n(input = 3) { dense(4); p; dense(1) }",
}


def _structure_ok(tex: str) -> None:
    body = re.sub(r"%.*", "", tex)  # comments may contain anything
    depth = 0
    for ch in body.replace(r"\{", "").replace(r"\}", ""):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    assert body.count(r"\begin{align*}") == body.count(r"\end{align*}") == 1
    assert body.count(r"\left") == body.count(r"\right")
    for raw in ("GaussianExpectation", "Lambda(", "Derivative", "angle(", "perp("):
        assert raw not in body  # every ntkdsl function has a LaTeX form


@pytest.mark.parametrize("name", sorted(SPECS))
def test_latex_is_structurally_sound(name):
    _structure_ok(ntkdsl.loads(SPECS[name]).to_latex())


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (structural check above runs)")
@pytest.mark.parametrize("name", sorted(SPECS))
def test_latex_compiles(name, tmp_path):
    tex = ntkdsl.loads(SPECS[name]).to_latex()
    doc = "\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n\\begin{document}\n" + tex + "\\end{document}\n"
    (tmp_path / "k.tex").write_text(doc)
    out = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "k.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:]

"""Run-time overflow is refused: a kernel is finite, or a clear error names the layer whose variance
left the float64 range (ntkdsl/codegen/overflow.py), from the API and the CLI (exit 2, no output
file), on NumPy and numba, in one piece, in tiles and streamed to disk; `ntkdsl check` says so for
unit-variance inputs.

Oracle: the variance chain of dense/relu layers without bias in closed form, in exact rational
arithmetic: dense(w) multiplies the variance by w², relu halves it (Cho & Saul 2009), the input's is
x·x/d (kernel-math.md §1). The first layer whose exact variance exceeds the largest float64 is the
one the error must name.
"""

from __future__ import annotations

import re
import sys
from fractions import Fraction

import numpy as np
import pytest

import ntkdsl
from ntkdsl.cli import main
from ntkdsl.codegen.dispatch import module_available
from ntkdsl.codegen.overflow import KernelOverflowError

FLOAT_MAX = Fraction(sys.float_info.max)
SPEC = "network big(input = 4) {\n    repeat 4 { dense(4, w_std = 1e100); relu }\n    dense(1)\n}\n"
BACKENDS = ["numpy"] + (["numba"] if module_available("numba") else [])


def first_overflow(q0: Fraction) -> int:
    """The step of SPEC (1-based: dense 1, relu 2, dense 3, ...) whose exact variance exceeds FLOAT_MAX."""
    q = q0
    for step in range(1, 10):
        q = q * Fraction(10) ** 200 if step % 2 else q / 2  # dense(w_std = 1e100): w² = 1e200; relu: 1/2
        if step == 9:
            q = q / 10**200  # dense(1): w_std = 1
        if q > FLOAT_MAX:
            return step
    return 0


@pytest.fixture
def net():
    return ntkdsl.loads(SPEC, filename="t.ntk")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale, row", [(1.0, 0), (1e-100, 2), (2e-150, 1)])
def test_the_first_overflowing_layer_is_named(net, backend, scale, row):
    x = np.zeros((4, 4))
    x[row] = scale           # every other point has variance 0: finite at every layer
    q0 = Fraction(scale) ** 2  # x·x/d with d = 4 equal entries (exact: the float scale as a fraction)
    layer = first_overflow(q0)
    assert layer in (3, 5, 7)  # the cases reach different depths
    with pytest.raises(KernelOverflowError) as info:
        net.kernels(x, backend=backend)
    message = str(info.value)
    assert message.startswith("t.ntk:2:16: the kernels overflow float64 at layer "
                              f"{layer} (dense(4, w_std = 1e100)): the variance Σ(x, x) of x1[{row}] is inf there")
    assert message.splitlines()[1:] == ["        repeat 4 { dense(4, w_std = 1e100); relu }",
                                        "                   " + "^" * len("dense(4, w_std = 1e100)")]
    assert isinstance(info.value, FloatingPointError)  # the CLI's class of run-time refusals


def test_tiles_and_x2_name_the_rows_of_the_request(net, tmp_path):
    x = np.zeros((12, 4))
    x[9] = 1.0
    for kwargs, pair in (({"batch_size": 4}, "x1[9]"), ({}, "x1[9]")):
        with pytest.raises(KernelOverflowError, match=re.escape(f"Σ(x, x) of {pair} is inf")):
            net.kernels(x, **kwargs)
    with pytest.raises(KernelOverflowError, match=re.escape("Σ(x, x) of x2[1] is inf")):
        net.kernels(x[:3], x[8:], batch_size=2)
    with pytest.raises(KernelOverflowError, match=re.escape("Σ(x, x) of x1[9] is inf")):
        net.kernels_to_disk(x, None, tmp_path / "k", batch_size=4)
    assert not (tmp_path / "k" / "nngp.npy").exists()  # only resumable partial files, no result


def test_overflowing_inputs_are_named():
    net = ntkdsl.loads("network n(input = 3) {\n    dense(2)\n    relu\n    dense(1)\n}\n", filename="t.ntk")
    x = np.ones((3, 3))
    x[1] = 1e200  # x·x/3 = 1e400: beyond float64 before any layer
    with pytest.raises(KernelOverflowError, match=re.escape("the input variance Σ⁰(x, x) = x·x/d of x1[1] overflows")):
        net.kernels(x)
    x[1] = 1e150  # 1e300 fits: a finite result, as before
    k = net.kernels(x)
    assert np.isfinite(k.nngp).all() and np.isfinite(k.ntk).all()


def test_large_finite_results_are_kept():
    net = ntkdsl.loads(SPEC.replace("1e100", "1e30"), filename="t.ntk")
    x = np.ones((2, 4))
    x[1] = -1.0
    k = net.kernels(x)
    # exact: Σ(x, x) = 1 · (1e60 / 2)⁴ = 6.25e238 (each dense multiplies by w² = 1e60, each relu halves)
    np.testing.assert_allclose(np.diag(k.nngp), [6.25e238, 6.25e238], rtol=1e-14)  # a few roundings of exact powers
    assert np.isfinite(k.nngp).all() and np.isfinite(k.ntk).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_refuses_with_exit_2_and_writes_nothing(tmp_path, capsys, backend):
    spec = tmp_path / "t.ntk"
    spec.write_text(SPEC)
    x = np.zeros((5, 4))
    x[3] = 1.0
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "k.npz"
    assert main(["eval", str(spec), "--x1", str(tmp_path / "x.npy"), "--backend", backend, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ntkdsl: error: {spec}:2:16: the kernels overflow float64 at layer 3 "), err
    assert "Traceback" not in err and "RuntimeWarning" not in err
    assert not out.exists()


def test_check_reports_unit_variance_overflow(tmp_path, capsys):
    spec = tmp_path / "t.ntk"
    spec.write_text(SPEC)
    assert main(["check", str(spec)]) == 0
    out = capsys.readouterr().out
    assert first_overflow(Fraction(1)) == 3
    assert (f"unit-variance input (Σ⁰(x, x) = 1): not finite: {spec}:2:16: the kernels overflow float64 at layer 3"
            in out)
    spec.write_text(SPEC.replace("1e100", "2"))
    assert main(["check", str(spec)]) == 0
    assert "unit-variance input (Σ⁰(x, x) = 1): finite kernels at every layer" in capsys.readouterr().out


def test_image_networks_name_the_layer():
    net = ntkdsl.loads("network c(input = [4, 4, 1]) {\n    conv(2, kernel = 3, padding = same, w_std = 1e120)\n"
                       "    relu\n    conv(2, kernel = 3, padding = same, w_std = 1e120)\n    flatten\n    dense(1)\n}\n",
                       filename="c.ntk")
    x = np.zeros((2, 4, 4, 1))
    x[1] = 1.0  # conv(w = 1e120): variance ≤ 1e240 at layer 1, then ≤ 1e480 / 2: inf at layer 3
    with pytest.raises(KernelOverflowError, match=r"^c\.ntk:4:5: the kernels overflow float64 at layer 3 \(conv"):
        net.kernels(x)

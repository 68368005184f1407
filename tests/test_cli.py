"""The ``ntkdsl`` command line: compile (python, latex, ir), eval, check, --network, and user errors.

User errors exit with status 2 and a one-screen message on stderr, never a Python traceback, and
never leave an existing output file truncated or half-written.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import ntkdsl
from ntkdsl.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MLP = os.path.join(ROOT, "examples", "mlp.ntk")

SMALL = """\
# a small network for the command line
network small(input = 3) {
    dense(4, w_std = 1.5, b_std = 0.1)
    relu
    dense(1)
}
"""

# needs scipy.special (elu) and the numerical quadrature (tanh) in the generated module
SPECIAL = """\
network special(input = 3, parameterization = standard) {
    dense(4, w_std = 1.2, b_std = 0.2)
    elu(alpha = 0.5)
    dense(3, b_std = 0.1)
    tanh
    dense(2)
}
"""

TWO = """\
network first(input = 3) {
    dense(4)
    relu
    dense(1)
}

network second(input = 3, parameterization = standard) {
    dense(5, b_std = 0.1)
    erf
    dense(2)
}
"""

BAD = """\
network small(input = 3) {
    dence(4)
}
"""
BAD_MESSAGE = """\
{path}:2:5: error: unknown layer or activation 'dence'; did you mean 'dense'?
        dence(4)
        ^^^^^
"""


def run_cli(*args, cwd=None):
    """``python -m ntkdsl ARGS`` in a fresh interpreter."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "ntkdsl", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def assert_user_error(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout and "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.fixture
def files(tmp_path):
    """Specs and inputs in a temporary directory."""
    rng = np.random.default_rng(1)
    paths = {}
    for name, text in (("small.ntk", SMALL), ("special.ntk", SPECIAL), ("two.ntk", TWO), ("bad.ntk", BAD)):
        paths[name] = tmp_path / name
        paths[name].write_text(text)
    for name, array in (("a.npy", rng.normal(size=(5, 3))), ("b.npy", rng.normal(size=(4, 3))),
                        ("wide.npy", rng.normal(size=(5, 4))), ("flat.npy", rng.normal(size=3))):
        paths[name] = tmp_path / name
        np.save(paths[name], array)
    return paths


def import_file(path, name="generated_kernels"):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def imported_modules(source: str):
    """Every module an import statement of ``source`` names (at any depth, e.g. inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


# ---------------------------------------------------------------------- compile
@pytest.mark.parametrize("spec", ["small.ntk", "special.ntk"])
def test_compile_emits_a_standalone_module_that_agrees_with_the_api(files, tmp_path, capsys, spec):
    assert main(["compile", str(files[spec])]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    path = tmp_path / f"generated_{spec.replace('.ntk', '')}.py"
    path.write_text(out)
    module = import_file(path, path.stem)
    api = ntkdsl.load(files[spec])
    x1, x2 = np.load(files["a.npy"]), np.load(files["b.npy"])
    for args in ((x1,), (x1, x2), (x1, None)):
        nngp, ntk = module.kernels(*args)
        expected = api.kernels(*args)
        np.testing.assert_allclose(nngp, expected.nngp, rtol=1e-12, atol=0)
        np.testing.assert_allclose(ntk, expected.ntk, rtol=1e-12, atol=0)
    # imports only the array modules
    modules = imported_modules(out)
    assert modules and all(m.split(".")[0] in ("numpy", "scipy") for m in modules), modules
    if spec == "special.ntk":
        assert "scipy.special" in modules
    # a provenance header naming the source file
    docstring = ast.get_docstring(ast.parse(out))
    assert docstring is not None and f"Source: {files[spec]} " in docstring
    assert "ntkdsl" in docstring.splitlines()[0]


def test_compile_subprocess_writes_only_the_module_to_stdout(files):
    result = run_cli("compile", files["small.ntk"])
    assert result.returncode == 0 and result.stderr == ""
    compile(result.stdout, "generated", "exec")  # valid Python on its own
    assert result.stdout.startswith('"""')


def test_compile_emit_latex(files, capsys):
    for spec in ("small.ntk", "special.ntk"):
        assert main(["compile", str(files[spec]), "--emit", "latex"]) == 0
        out = capsys.readouterr().out
        assert "\\begin{align*}" in out and "\\end{align*}" in out
        assert out.index("\\begin{align*}") < out.index("\\end{align*}")
        braces = out.replace("\\{", "").replace("\\}", "")
        depth = 0
        for ch in braces:
            depth += (ch == "{") - (ch == "}")
            assert depth >= 0, "a '}' closes nothing"
        assert depth == 0, "unbalanced braces"


@pytest.mark.parametrize("spec", ["small.ntk", "special.ntk", "mlp"])
def test_compile_emit_ir_parses_back_to_the_same_ir(files, capsys, spec):
    path = MLP if spec == "mlp" else files[spec]
    assert main(["compile", str(path), "--emit", "ir"]) == 0
    out = capsys.readouterr().out
    assert ntkdsl.loads(out).ir == ntkdsl.load(path).ir


@pytest.mark.parametrize("emit", ["python", "latex", "ir"])
def test_compile_o_writes_the_file(files, tmp_path, capsys, emit):
    target = tmp_path / f"out.{emit}"
    assert main(["compile", str(files["small.ntk"]), "--emit", emit, "-o", str(target)]) == 0
    written = capsys.readouterr().out
    assert written == ""  # nothing on stdout
    assert main(["compile", str(files["small.ntk"]), "--emit", emit]) == 0
    assert target.read_text() == capsys.readouterr().out
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # no temporary left behind


def test_compile_o_replaces_an_existing_file(files, tmp_path, capsys):
    target = tmp_path / "existing.py"
    target.write_text("old contents\n")
    assert main(["compile", str(files["small.ntk"]), "-o", str(target)]) == 0
    assert target.read_text().startswith('"""NNGP and NTK kernels of the network `small`')


# ---------------------------------------------------------------------- eval
def test_eval_writes_nngp_and_ntk(files, tmp_path, capsys):
    out = tmp_path / "k.npz"
    api = ntkdsl.load(files["small.ntk"])
    x1, x2 = np.load(files["a.npy"]), np.load(files["b.npy"])
    assert main(["eval", str(files["small.ntk"]), "--x1", str(files["a.npy"]), "--x2", str(files["b.npy"]),
                 "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}: nngp, ntk of shape (5, 4)\n"
    with np.load(out) as z:
        assert sorted(z.files) == ["nngp", "ntk"]
        expected = api.kernels(x1, x2)
        np.testing.assert_allclose(z["nngp"], expected.nngp, rtol=1e-12, atol=0)
        np.testing.assert_allclose(z["ntk"], expected.ntk, rtol=1e-12, atol=0)
        assert z["nngp"].dtype == np.float64
    # without --x2: the kernels of x1 with itself
    assert main(["eval", str(files["small.ntk"]), "--x1", str(files["a.npy"]), "-o", str(out)]) == 0
    with np.load(out) as z:
        expected = api.kernels(x1)
        assert z["ntk"].shape == (5, 5)
        np.testing.assert_allclose(z["nngp"], expected.nngp, rtol=1e-12, atol=0)
        np.testing.assert_allclose(z["ntk"], expected.ntk, rtol=1e-12, atol=0)


def test_eval_without_o_prints_a_summary(files, capsys):
    api = ntkdsl.load(files["small.ntk"]).kernels(np.load(files["a.npy"]))
    assert main(["eval", str(files["small.ntk"]), "--x1", str(files["a.npy"])]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "network small: kernels of shape (5, 5)"
    for name in ("nngp", "ntk"):
        line = next(row for row in out.splitlines() if row.strip().startswith(name + " "))
        low, high = map(float, re.search(r"min (\S+)\s+max (\S+)", line).groups())
        a = getattr(api, name)
        assert low == pytest.approx(a.min(), rel=1e-5) and high == pytest.approx(a.max(), rel=1e-5)
    assert out.count("diagonal") == 2


def test_eval_subprocess(files, tmp_path):
    out = tmp_path / "k.npz"
    result = run_cli("eval", files["special.ntk"], "--x1", files["a.npy"], "--x2", files["b.npy"], "-o", out)
    assert result.returncode == 0, result.stderr
    expected = ntkdsl.load(files["special.ntk"]).kernels(np.load(files["a.npy"]), np.load(files["b.npy"]))
    with np.load(out) as z:
        np.testing.assert_allclose(z["nngp"], expected.nngp, rtol=1e-12, atol=0)
        np.testing.assert_allclose(z["ntk"], expected.ntk, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------- check
def test_check_summarises_the_network_and_its_layers(files, capsys):
    assert main(["check", str(files["small.ntk"])]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "network small: input 3, ntk parameterization, 3 layers, output width 1"
    assert re.fullmatch(r"\s+1\s+3:5\s+dense\(4, w_std = 3/2, b_std = 1/10, parameterization = ntk\)", out[1])
    assert re.fullmatch(r"\s+2\s+4:5\s+relu", out[2])
    assert "dual:" in out[3]
    assert re.fullmatch(r"\s+3\s+5:5\s+dense\(1, w_std = 1, b_std = none, parameterization = ntk\)", out[4])
    assert out[-1].strip().startswith("kernels: nngp and ntk")


def test_check_without_network_summarises_every_network(files, capsys):
    assert main(["check", str(files["two.ntk"])]) == 0
    out = capsys.readouterr().out
    headers = [line for line in out.splitlines() if line.startswith("network ")]
    assert headers == ["network first: input 3, ntk parameterization, 3 layers, output width 1",
                       "network second: input 3, standard parameterization, 3 layers, output width 2"]


# ---------------------------------------------------------------------- --network
def test_network_chooses_among_several(files, tmp_path, capsys):
    x = np.load(files["a.npy"])
    for name in ("first", "second"):
        out = tmp_path / f"{name}.npz"
        assert main(["eval", str(files["two.ntk"]), "--network", name, "--x1", str(files["a.npy"]),
                     "-o", str(out)]) == 0
        expected = ntkdsl.load(files["two.ntk"], name).kernels(x)
        with np.load(out) as z:
            np.testing.assert_allclose(z["ntk"], expected.ntk, rtol=1e-12, atol=0)
        assert main(["compile", str(files["two.ntk"]), "--network", name, "--emit", "ir"]) == 0
        assert f"network {name}(" in capsys.readouterr().out
        assert main(["check", str(files["two.ntk"]), "--network", name]) == 0
        (header,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("network ")]
        assert header.startswith(f"network {name}:")
    first = np.load(tmp_path / "first.npz")["ntk"]
    second = np.load(tmp_path / "second.npz")["ntk"]
    assert not np.allclose(first, second)


def test_several_networks_without_network_is_a_user_error(files):
    result = run_cli("compile", files["two.ntk"])
    assert_user_error(result, f"{files['two.ntk']}:7:9: error: the file defines 2 networks (first, second); "
                              "choose one (--network NAME on the command line")


def test_unknown_network_is_a_user_error(files):
    result = run_cli("eval", files["two.ntk"], "--network", "frist", "--x1", files["a.npy"])
    assert_user_error(result, "error: no network 'frist' in", "did you mean 'first'?",
                      "note: the file defines first, second")


# ---------------------------------------------------------------------- user errors
@pytest.mark.parametrize("command", ["compile", "check", "eval"])
def test_bad_spec(files, command):
    extra = ["--x1", files["a.npy"]] if command == "eval" else []
    result = run_cli(command, files["bad.ntk"], *extra)
    assert_user_error(result)
    assert result.stderr == BAD_MESSAGE.format(path=files["bad.ntk"])


@pytest.mark.parametrize("command", ["compile", "check", "eval"])
def test_missing_spec_file(files, tmp_path, command):
    missing = tmp_path / "missing.ntk"
    extra = ["--x1", files["a.npy"]] if command == "eval" else []
    result = run_cli(command, missing, *extra)
    assert_user_error(result)
    assert result.stderr == f"ntkdsl: error: cannot read {str(missing)!r}: No such file or directory\n"


def test_missing_npy(files, tmp_path):
    missing = tmp_path / "missing.npy"
    result = run_cli("eval", files["small.ntk"], "--x1", missing)
    assert_user_error(result, "ntkdsl: error: cannot load --x1 from", repr(str(missing)), "No such file or directory")


def test_npy_with_the_wrong_number_of_columns(files):
    result = run_cli("eval", files["small.ntk"], "--x1", files["a.npy"], "--x2", files["wide.npy"])
    assert_user_error(result)
    assert result.stderr == (f"ntkdsl: error: --x2 in {str(files['wide.npy'])!r} has shape (5, 4); "
                             "this network needs (N, 3)\n")


def test_npy_of_one_dimension(files, capsys):
    assert main(["eval", str(files["small.ntk"]), "--x1", str(files["flat.npy"])]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"ntkdsl: error: --x1 in {str(files['flat.npy'])!r} has shape (3,); this network needs (N, 3)\n"


def test_npy_with_non_finite_values(files, tmp_path, capsys):
    path = tmp_path / "nan.npy"
    np.save(path, np.array([[0.0, np.nan, 1.0]]))
    assert main(["eval", str(files["small.ntk"]), "--x1", str(path)]) == 2
    assert capsys.readouterr().err == f"ntkdsl: error: --x1 in {str(path)!r} holds 1 NaN or infinite value\n"


def test_a_file_that_is_not_npy(files, tmp_path, capsys):
    path = tmp_path / "text.npy"
    path.write_text("0.1 0.2 0.3\n")
    assert main(["eval", str(files["small.ntk"]), "--x1", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ntkdsl: error: cannot load --x1 from {str(path)!r}: ")
    assert "not a .npy file" in err
    assert "pickle" not in err
    path.write_bytes(b"")  # an empty file (numpy raises EOFError)
    assert main(["eval", str(files["small.ntk"]), "--x1", str(path)]) == 2
    assert "not a .npy file" in capsys.readouterr().err


@pytest.mark.parametrize("emit", ["python", "ir"])
def test_failed_compile_leaves_an_existing_output_untouched(files, tmp_path, emit):
    target = tmp_path / "existing.py"
    target.write_text("precious\n")
    before = os.stat(target).st_mtime_ns
    result = run_cli("compile", files["bad.ntk"], "--emit", emit, "-o", target)
    assert_user_error(result, "unknown layer or activation 'dence'")
    assert target.read_text() == "precious\n" and os.stat(target).st_mtime_ns == before
    assert sorted(os.listdir(tmp_path)) == sorted([p.name for p in files.values()] + ["existing.py"])


@pytest.mark.parametrize("x1", ["wide.npy", "missing.npy", "flat.npy"])
def test_failed_eval_leaves_an_existing_output_untouched(files, tmp_path, x1):
    target = tmp_path / "existing.npz"
    target.write_bytes(b"precious")
    result = run_cli("eval", files["small.ntk"], "--x1", tmp_path / x1, "-o", target)
    assert_user_error(result, "ntkdsl: error:", "--x1")
    assert target.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == sorted([p.name for p in files.values()] + ["existing.npz"])


def test_failed_eval_with_a_bad_spec_leaves_an_existing_output_untouched(files, tmp_path, capsys):
    target = tmp_path / "existing.npz"
    target.write_bytes(b"precious")
    assert main(["eval", str(files["bad.ntk"]), "--x1", str(files["a.npy"]), "-o", str(target)]) == 2
    assert "unknown layer or activation 'dence'" in capsys.readouterr().err
    assert target.read_bytes() == b"precious"


def test_unwritable_output_is_a_user_error(files, tmp_path):
    result = run_cli("eval", files["small.ntk"], "--x1", files["a.npy"], "-o", tmp_path)  # a directory
    assert_user_error(result, f"ntkdsl: error: cannot write {str(tmp_path)!r}: Is a directory")
    result = run_cli("compile", files["small.ntk"], "-o", tmp_path / "no" / "such" / "dir.py")
    assert_user_error(result, "ntkdsl: error: cannot write", "No such file or directory")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


# ---------------------------------------------------------------------- found while testing
def test_a_spec_path_is_never_executed(tmp_path):
    name = "x.ntk\n    open('pwned', 'w').close()\n    #"
    (tmp_path / name).write_text(SMALL)
    np.save(tmp_path / "a.npy", np.ones((2, 3)))
    result = run_cli("eval", name, "--x1", "a.npy", cwd=tmp_path)
    assert not (tmp_path / "pwned").exists(), "code in the spec's file name was executed"
    assert result.returncode == 0 and "Traceback" not in result.stderr


def test_a_spec_path_with_quotes(tmp_path):
    name = 'q"""x.ntk'
    (tmp_path / name).write_text(SMALL)
    np.save(tmp_path / "a.npy", np.ones((2, 3)))
    compiled = run_cli("compile", name, cwd=tmp_path)
    assert compiled.returncode == 0
    ast.parse(compiled.stdout)
    result = run_cli("eval", name, "--x1", "a.npy", cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr


def test_custom_activation_with_a_parameter_dependent_kink_has_no_traceback(tmp_path):
    path = tmp_path / "kink.ntk"
    path.write_text("activation shifted(x, t = 1) = relu(x - t)\nnetwork k(input = 3) {\n    dense(4)\n"
                    "    shifted\n    dense(1)\n}\n")
    result = run_cli("check", path)
    assert "Traceback" not in result.stderr
    assert result.returncode == 0


def test_memory_budget_option_tiles_or_refuses(tmp_path, capsys):
    spec = tmp_path / "mlp.ntk"
    spec.write_text("network n(input = 20) { dense(64, b_std = 0.1); relu; dense(1) }\n")
    x = np.random.default_rng(3).normal(size=(300, 20))
    np.save(tmp_path / "x.npy", x)
    whole, tiled = tmp_path / "whole.npz", tmp_path / "tiled.npz"
    assert main(["eval", str(spec), "--x1", str(tmp_path / "x.npy"), "-o", str(whole)]) == 0
    # 4 MiB is below the static model's one-piece estimate (about 7.3 MiB) but above outputs + one
    # pair (about 2.7 MiB): it must tile
    assert main(["eval", str(spec), "--x1", str(tmp_path / "x.npy"), "--memory-budget", "4M", "-o", str(tiled)]) == 0
    a, b = np.load(whole), np.load(tiled)
    for key in ("nngp", "ntk"):  # the tiling contract: 1e-13 relative to the kernel's scale (the
        # BLAS blocking of x·x' differs by tile; entries near 0 carry the round-off of their larger neighbours)
        np.testing.assert_allclose(b[key], a[key], rtol=0, atol=1e-13 * np.abs(a[key]).max())
    capsys.readouterr()
    assert main(["eval", str(spec), "--x1", str(tmp_path / "x.npy"), "--memory-budget", "1K"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ntkdsl: error: a kernel of 300 x 300 points needs about") and "--memory-budget" in err
    with pytest.raises(SystemExit) as exit_:  # argparse: a malformed size is a usage error (status 2)
        main(["eval", str(spec), "--x1", str(tmp_path / "x.npy"), "--memory-budget", "lots"])
    assert exit_.value.code == 2

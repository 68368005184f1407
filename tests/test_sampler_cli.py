"""``ntkdsl sample`` and the Jacot Fig. 1 example: output, user errors (exit 2, no traceback), plots."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from ntkdsl.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPEC = str(ROOT / "examples" / "jacot_fig1.ntk")


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_sample_prints_errors_spreads_and_slope(capsys):
    status, out, err = run(capsys, "sample", SPEC, "--widths", "128,32", "--samples", "6", "--points", "4")
    assert status == 0, err
    lines = out.splitlines()
    assert "4 inputs (random, unit sphere), 6 draws per width" in lines[0]
    assert lines[3].split()[0] == "32" and lines[4].split()[0] == "128"  # sorted
    assert all(np.isfinite(float(v)) for v in lines[3].split()[1:])
    assert "log-log slope" in out and "theory -0.5" in out
    assert err == ""  # stderr is not a terminal: no progress bar


def test_sample_with_inputs_and_progress_bar(capsys, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).standard_normal((3, 2)))
    status, out, err = run(capsys, "sample", SPEC, "--widths", "16", "--samples", "3", "--x1", str(x),
                           "--progress")
    assert status == 0, err
    assert f"3 inputs ({x})" in out and "slope" not in out  # one width: nothing to fit
    assert "3/3" in err and "draw" in err  # tqdm's bar or the built-in one


@pytest.mark.parametrize("argv, message", [
    (["--widths", "64,abc"], "--widths: 'abc' is not a positive integer"),
    (["--widths", "0,64"], "--widths: '0' is not a positive integer"),
    (["--widths", "64,64"], "repeats a width"),
    (["--samples", "1"], "--samples must be at least 2"),
    (["--points", "0"], "--points must be at least 1"),
])
def test_sample_bad_options_exit_2(capsys, argv, message):
    status, out, err = run(capsys, "sample", SPEC, *argv)
    assert status == 2 and message in err and "Traceback" not in err


def test_sample_bad_inputs_exit_2(capsys, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((3, 5)))
    status, _, err = run(capsys, "sample", SPEC, "--x1", str(x))
    assert status == 2 and "has shape (3, 5); this network needs (N, 2)" in err
    status, _, err = run(capsys, "sample", SPEC, "--x1", str(tmp_path / "missing.npy"))
    assert status == 2 and "cannot load --x1" in err
    status, _, err = run(capsys, "sample", str(tmp_path / "missing.ntk"))
    assert status == 2 and "cannot read" in err


def test_sample_plot_without_matplotlib_exit_2(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    status, out, err = run(capsys, "sample", SPEC, "--plot", str(tmp_path / "p.png"))
    assert status == 2 and "--plot needs matplotlib" in err
    assert out == "" and not (tmp_path / "p.png").exists()  # failed before any work


def test_sample_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "spread.png"
    status, out, err = run(capsys, "sample", SPEC, "--widths", "16,64", "--samples", "3", "--points", "3",
                           "--plot", str(path))
    assert status == 0, err
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {path}" in out
    status, _, err = run(capsys, "sample", SPEC, "--plot", str(tmp_path / "p.nope"))
    assert status == 2 and "cannot write 'nope' files" in err


def test_jacot_fig1_example_reduced(tmp_path, capsys):
    """The example at reduced size (its assertions are the test), with its plot."""
    spec = importlib.util.spec_from_file_location("jacot_fig1", ROOT / "examples" / "jacot_fig1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    plot = tmp_path / "fig1.png"
    # test_examples.py runs the default reduced size; this run adds the plot, with a cheaper wide width
    module.main(["--quick", "--widths", "25,250", "--points", "41", "--plot", str(plot)])
    out = capsys.readouterr().out
    assert "all five values agree to 4 digits" in out and "wider is closer" in out
    if importlib.util.find_spec("matplotlib") is not None:
        assert plot.read_bytes()[:4] == b"\x89PNG"

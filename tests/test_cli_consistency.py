"""The command line as one tool: help on every argument, one --progress flag, user errors that exit 2
with one line (never a traceback), results saved with -o, progress shown in a real terminal."""

from __future__ import annotations

import argparse
import os
import pty
import select
import subprocess
import sys
import types

import numpy as np
import pytest

import ntkdsl
from ntkdsl.cli.main import _parser, main
from ntkdsl.cli.sample import parameter_count
from ntkdsl.sampler.network import FiniteNetwork, override_widths

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = """\
network small(input = 3) {
    dense(4, w_std = 1.5, b_std = 0.1)
    relu
    dense(1)
}
"""
CNN = """\
network cnn(input = [4, 4, 2]) {
    conv(5, kernel = 3, padding = same)
    relu
    avg_pool(2)
    flatten
    dense(6, b_std = 0.2)
    relu
    dense(2)
}
"""


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_every_argument_of_every_command_has_help():
    root = _parser()
    missing = [f"ntkdsl {a.dest}" for a in root._actions if not a.help]
    for name, sub in _subparsers(root).items():
        missing += [f"ntkdsl {name} {'/'.join(a.option_strings) or a.dest}" for a in sub._actions if not a.help]
    assert missing == []


@pytest.mark.parametrize("command", ["eval", "sample", "flow"])
def test_one_progress_flag_with_one_meaning(command):
    sub = _subparsers(_parser())[command]
    (action,) = [a for a in sub._actions if a.dest == "progress"]
    assert isinstance(action, argparse.BooleanOptionalAction)
    assert action.option_strings == ["--progress", "--no-progress"] and action.default is None
    assert "default: only when stderr is a terminal" in action.help


@pytest.fixture
def files(tmp_path):
    spec = tmp_path / "small.ntk"
    spec.write_text(SMALL)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    np.savez(tmp_path / "one.npz", points=x)
    np.savez(tmp_path / "two.npz", a=x, b=x[:2])
    np.savez(tmp_path / "train.npz", x=x, y=np.sin(x[:, 0]))
    np.savez(tmp_path / "empty_train.npz", x=np.zeros((0, 3)), y=np.zeros(0))
    return tmp_path


def _user_error(capsys, argv, message):
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("ntkdsl: error: ")
    assert message in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("argv, message", [
    (["eval", "{d}/small.ntk", "--x1", "{d}/empty.npy"], "holds no points"),
    (["eval", "{d}/small.ntk", "--x1", "{d}/two.npz"], "holds several arrays (a, b); choose one as"),
    (["eval", "{d}/small.ntk", "--x1", "{d}/two.npz:c"], "has no array 'c' (a, b)"),
    (["eval", "{d}/small.ntk", "--x1", "{d}/x.npy:a"], "cannot load --x1"),
    (["flow", "{d}/small.ntk", "--train", "{d}/empty_train.npz"], "holds no training points"),
    (["flow", "{d}/small.ntk", "--train", "{d}/x.npy"], "is a .npy file (one array); flow reads an .npz"),
    (["sample", "{d}/small.ntk", "--widths", "1000000000", "--samples", "2"], "in float64 before any activation"),
    (["sample", "{d}/small.ntk", "--widths", "9" * 5000], "is not a positive integer"),
    (["sample", "{d}/small.ntk", "--x1", "{d}/empty.npy"], "holds no points"),
])
def test_user_mistakes_exit_2_with_one_line(files, capsys, argv, message):
    err = _user_error(capsys, [a.format(d=files) for a in argv], message)
    assert len(err.strip().splitlines()) == 1


def test_seed_error_is_argparse_exit_2(files, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["sample", str(files / "small.ntk"), "--seed", "-1"])
    assert stop.value.code == 2
    assert "--seed: expected an integer >= 0, got '-1'" in capsys.readouterr().err


def test_an_npz_input_holding_one_array_or_a_named_one(files, capsys):
    expected = ntkdsl.load(str(files / "small.ntk")).kernels(np.load(files / "x.npy"))
    for source in ("one.npz", "two.npz:a"):
        out = files / "k.npz"
        assert main(["eval", str(files / "small.ntk"), "--x1", str(files / source), "-o", str(out)]) == 0
        with np.load(out) as k:
            np.testing.assert_array_equal(k["ntk"], expected.ntk)  # the same points: the same arithmetic


def _broken_cupy():
    """A CuPy that imports but cannot run on this machine (as on a host without a usable GPU)."""
    cupy = types.ModuleType("cupy")
    cupy.float64 = np.float64

    def arange(*args, **kwargs):
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    cupy.arange = arange
    return cupy


@pytest.mark.parametrize("argv", [
    ["eval", "{d}/small.ntk", "--x1", "{d}/x.npy", "--backend", "cupy"],
    ["flow", "{d}/small.ntk", "--train", "{d}/train.npz", "--backend", "cupy"],
    ["sample", "{d}/small.ntk", "--widths", "4", "--samples", "2", "--backend", "cupy"],
])
def test_cupy_without_a_usable_gpu_is_one_line(files, capsys, monkeypatch, argv):
    monkeypatch.setitem(sys.modules, "cupy", _broken_cupy())
    err = _user_error(capsys, [a.format(d=files) for a in argv], "--backend cupy: no usable CUDA GPU")
    assert "cudaErrorNoDevice" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("spec", [SMALL, CNN], ids=["dense", "cnn"])
@pytest.mark.parametrize("width", [1, 7, 40])
def test_parameter_count_extrapolates_exactly(spec, width):
    ir = ntkdsl.loads(spec).ir
    allocated = FiniteNetwork.initialise(override_widths(ir, width), 0).num_params  # the oracle: count them
    assert parameter_count(ir, width) == allocated


def test_sample_out_saves_the_study(files, capsys):
    out = files / "study.npz"
    assert main(["sample", str(files / "small.ntk"), "--widths", "8,32", "--samples", "3", "--points", "4",
                 "-o", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    with np.load(out) as saved:
        assert sorted(saved.files) == ["n_samples", "nngp_error", "nngp_spread", "ntk_error", "ntk_spread",
                                       "widths", "x"]
        assert saved["widths"].tolist() == [8, 32] and int(saved["n_samples"]) == 3 and saved["x"].shape == (4, 3)
        row = [float(v) for v in printed[3].split()[1:]]   # the width-8 row, printed to 4 significant digits
        np.testing.assert_allclose(row, [saved[k][0] for k in ("nngp_error", "ntk_error", "nngp_spread",
                                                                  "ntk_spread")], rtol=5e-4)


def test_activations_filter_and_wrapping(capsys):
    assert main(["activations", "swish"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("silu (alias swish)") and "relu" not in out
    assert main(["activations", "relu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("relu ") and "leaky_relu" not in out     # an exact name shows that one only
    assert main(["activations", "elu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("elu(") and "selu" not in out
    assert main(["activations", "monom"]) == 0   # not a name: every name containing it
    out = capsys.readouterr().out
    assert out.startswith("monomial") and "\nrectified_monomial" in out and "relu" not in out
    assert main(["activations"]) == 0
    for line in capsys.readouterr().out.splitlines():  # wrapped at 100 columns (stdout is not a terminal)
        assert len(line) <= 100 or " " not in line[100:].strip() or len(line.split()[-1]) > 60
    _user_error(capsys, ["activations", "nosuch"], "no activation named 'nosuch'; the catalog has: abrelu")


def test_flow_warns_when_the_learning_rate_is_unstable(files, capsys):
    net = ntkdsl.load(str(files / "small.ntk"))
    x = np.load(files / "x.npy")
    largest = np.linalg.eigvalsh(net.ntk(x))[-1]
    stable = 2 * len(x) / largest  # gradient descent on (1/2N)|f - y|^2 is stable for eta < 2N/lambda_max
    for rate, warned in ((0.9 * stable, False), (1.1 * stable, True)):
        assert main(["flow", str(files / "small.ntk"), "--train", str(files / "train.npz"),
                     "--learning-rate", str(float(rate)), "--times", "0,1"]) == 0
        err = capsys.readouterr().err
        assert ("exceeds the largest stable one" in err) == warned
        if warned:
            assert f"{stable:.6g} (2n/λ_max)" in err


def _in_a_terminal(argv, timeout=120):
    """Run ``python -m ntkdsl argv`` with stderr on a pseudo-terminal; returns (status, stderr text)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "ntkdsl", *argv], stdout=subprocess.DEVNULL, stderr=slave,
                            cwd=ROOT)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            proc.kill()
            raise AssertionError("no output for %s s" % timeout)
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(), b"".join(chunks).decode("utf-8", "replace")


def test_progress_is_shown_in_a_terminal_and_only_there(files):
    argv = ["sample", str(files / "small.ntk"), "--widths", "4,8", "--samples", "2", "--points", "3"]
    status, err = _in_a_terminal(argv)
    assert status == 0, err
    assert "4/4" in err and "draw" in err  # one bar over the 2 widths x 2 draws
    status, err = _in_a_terminal(argv + ["--no-progress"])
    assert status == 0 and err == ""
    status = subprocess.run([sys.executable, "-m", "ntkdsl", *argv], capture_output=True, text=True, cwd=ROOT)
    assert status.returncode == 0 and status.stderr == ""  # stderr not a terminal: no bar


def test_a_first_numba_compile_says_so_once(tmp_path, monkeypatch, capsys):
    pytest.importorskip("numba")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spec = tmp_path / "note.ntk"
    spec.write_text(SMALL.replace("network small", f"network compile_note_{os.getpid()}"))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(5, 3)))
    argv = ["eval", str(spec), "--x1", str(tmp_path / "x.npy"), "--backend", "numba", "--progress"]
    assert main(argv) == 0
    assert "ntkdsl: compiling the numba kernels of network compile_note_" in capsys.readouterr().err
    assert main(argv) == 0
    assert "compiling" not in capsys.readouterr().err   # loaded: nothing to say


def test_slow_requests_say_so(capsys):
    from ntkdsl import progress

    tanh = ntkdsl.loads("network t(input = 3) {\n dense(8)\n tanh\n dense(1)\n}\n")
    progress.request_note(tanh, 150, 150, True)
    assert "numerical duals by quadrature on 150 x 150 input pairs" in capsys.readouterr().err
    progress.request_note(tanh, 150, 150, False)   # --no-progress
    progress.request_note(tanh, 20, 20, True)      # small: quick
    relu = ntkdsl.loads(SMALL)
    progress.request_note(relu, 1000, 1000, True)  # closed-form duals: fast
    assert capsys.readouterr().err == ""


def test_the_flow_ode_shows_its_time(capsys):
    from ntkdsl import progress

    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3))
    y = np.eye(2)[rng.integers(0, 2, 6)]
    flow = ntkdsl.KernelFlow(ntkdsl.loads(SMALL.replace("dense(1)", "dense(2)")), x, y, loss="cross_entropy")
    progress.set_default(True)
    try:
        flow.loss([0.0, 5.0])
    finally:
        progress.set_default(None)
    err = capsys.readouterr().err
    assert "flow ODE" in err and "100%" in err


def _captured_figure(monkeypatch, module):
    pytest.importorskip("matplotlib")
    figures = []
    monkeypatch.setattr(module, "save_figure", lambda plt, fig, path: figures.append(fig))
    return figures


def test_flow_plot_has_log_time_from_early_times_and_the_test_loss(files, monkeypatch, capsys):
    from ntkdsl.cli import flow as flow_cli

    figures = _captured_figure(monkeypatch, flow_cli)
    rng = np.random.default_rng(3)
    xt = rng.normal(size=(4, 3))
    np.savez(files / "test.npz", x=xt, y=np.sin(xt[:, 0]))
    assert main(["flow", str(files / "small.ntk"), "--train", str(files / "train.npz"), "--test",
                 str(files / "test.npz"), "--plot", str(files / "f.png")]) == 0
    (fig,) = figures
    loss, components = fig.axes
    assert loss.get_xscale() == "log" and loss.get_yscale() == "log" and components.get_xscale() == "log"
    assert [t.get_text() for t in loss.get_legend().get_texts()] == ["training loss", "test loss"]
    net = ntkdsl.load(str(files / "small.ntk"))
    x = np.load(files / "x.npy")
    fastest = np.linalg.eigvalsh(net.ntk(x))[-1] / len(x)   # the top decay rate per step, η = 1
    assert loss.get_xlim()[0] <= 0.01 / fastest              # starts before the fastest component moves


def test_sampler_plot_shows_the_noise_floor(files, monkeypatch, capsys):
    from ntkdsl.cli import sample as sampler_cli

    figures = _captured_figure(monkeypatch, sampler_cli)
    assert main(["sample", str(files / "small.ntk"), "--widths", "4,16", "--samples", "3", "--points", "3",
                 "--plot", str(files / "s.png")]) == 0
    (fig,) = figures
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert "NTK noise floor (spread/√S)" in labels and "NNGP noise floor (spread/√S)" in labels

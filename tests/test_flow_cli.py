"""``ntkdsl flow``: output agrees with the API; user mistakes exit 2 with one line, no traceback."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ntkdsl
from ntkdsl.cli import main
from ntkdsl.flow import KernelFlow

SPEC = str(Path(__file__).resolve().parents[1] / "examples" / "jacot_fig1.ntk")


def circle(n, seed):
    g = np.random.default_rng(seed).uniform(-np.pi, np.pi, n)
    return np.stack([np.cos(g), np.sin(g)], axis=1)


@pytest.fixture()
def files(tmp_path):
    x, xt = circle(10, 0), circle(4, 1)
    np.savez(tmp_path / "train.npz", x=x, y=x[:, 0] * x[:, 1])
    np.savez(tmp_path / "test.npz", x=xt, y=xt[:, 0] * xt[:, 1])
    np.savez(tmp_path / "test_noy.npz", x=xt)
    return tmp_path


def test_flow_prints_and_saves_what_the_api_computes(files, capsys):
    out = files / "out.npz"
    rc = main(["flow", SPEC, "--train", str(files / "train.npz"), "--test", str(files / "test.npz"),
               "--times", "0,10,inf", "--learning-rate", "2", "-o", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "train loss" in text and "test loss" in text and "wrote" in text
    with np.load(files / "train.npz") as tr, np.load(files / "test.npz") as te:
        flow = KernelFlow(ntkdsl.load(SPEC), tr["x"], tr["y"], learning_rate=2.0)
        pred = flow.predict(te["x"], [0, 10, np.inf])
        test_loss = 0.5 * np.mean((pred - te["y"]) ** 2, axis=1)
    with np.load(out) as saved:
        # the CLI runs the same KernelFlow on the same kernels; only the test loss is summed in
        # another order (sum/2N against 0.5·mean): round-off only, far below 1e-12
        np.testing.assert_array_equal(saved["times"], [0, 10, np.inf])
        np.testing.assert_allclose(saved["test_pred"], pred, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(saved["train_loss"], flow.loss([0, 10, np.inf]), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(saved["test_loss"], test_loss, rtol=1e-12, atol=1e-15)


def test_flow_without_test_targets_or_test_set(files, capsys):
    assert main(["flow", SPEC, "--train", str(files / "train.npz"), "--test", str(files / "test_noy.npz")]) == 0
    assert "test loss" not in capsys.readouterr().out
    assert main(["flow", SPEC, "--train", str(files / "train.npz"), "--kernel", "nngp"]) == 0


def test_flow_plot(files, capsys):
    pytest.importorskip("matplotlib")
    png = files / "flow.png"
    assert main(["flow", SPEC, "--train", str(files / "train.npz"), "--times", "0,50,inf",
                 "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, message", [
    (["--times", "1,x"], "is not a number"),
    (["--times", "-1"], "must be ≥ 0"),
    (["--train", "{d}/missing.npz"], "cannot load"),
    (["--train", "{d}/test_noy.npz"], "must hold arrays x and y"),
    (["--train", "{d}/bad_dim.npz"], "this network needs (N, 2)"),
    (["--train", "{d}/bad_y.npz"], "expected (10, ...)"),
    (["--train", "{d}/nan.npz"], "finite numbers"),
    (["--plot", "{d}/out.unknown"], "cannot write"),
    (["--learning-rate", "-1"], "learning_rate"),
    (["-o", "{d}/no/such/dir/out.npz"], "cannot write"),
])
def test_user_errors_exit_2_with_one_line(files, capsys, args, message):
    x = circle(10, 0)
    np.savez(files / "bad_dim.npz", x=np.ones((3, 5)), y=np.ones(3))
    np.savez(files / "bad_y.npz", x=x, y=np.ones(4))
    np.savez(files / "nan.npz", x=x, y=np.full(10, np.nan))
    if "--plot" in args:
        pytest.importorskip("matplotlib")
    argv = ["flow", SPEC, "--train", str(files / "train.npz")]
    argv += [a.format(d=files) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (files / "no").exists()


def test_atomic_output_and_entry_point(files):
    out = files / "o.npz"
    proc = subprocess.run([sys.executable, "-m", "ntkdsl", "flow", SPEC, "--train", str(files / "train.npz"),
                           "-o", str(out), "--times", "oops"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert not out.exists() and not list(files.glob(".ntkdsl-*"))   # nothing half-written

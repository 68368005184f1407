"""``ntkdsl eval --diagonal``: K(x, x) per --x1 point against closed forms written here (a ReLU MLP, a
linear GNN with --graph1) and against the diagonal of the full kernel; misuse exits 2 with
``ntkdsl: error: ...`` and leaves no output behind (nor changes an existing one)."""

import numpy as np
import pytest

from ntkdsl.cli.main import main

W, B, W_OUT, B_OUT = 1.3, 0.2, 0.9, 0.1
MLP = f"network mlp(input = 3) {{ dense(64, w_std = {W}, b_std = {B}); relu; dense(1, w_std = {W_OUT}, b_std = {B_OUT}) }}"
GNN = f"network gnn(input = [4, 2]) {{ conv(8, kernel = 1, w_std = {W}); aggregate; global_avg_pool; dense(1, w_std = {W_OUT}) }}"
# The closed forms below take a few float64 operations in another order than the generated module:
# agreement to 1e-13 relative is round-off.
RTOL = 1e-13


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "mlp.ntk").write_text(MLP)
    (tmp_path / "gnn.ntk").write_text(GNN)
    np.save(tmp_path / "x.npy", rng.standard_normal((6, 3)))
    np.save(tmp_path / "signals.npy", rng.standard_normal((5, 4, 2)))
    np.save(tmp_path / "graphs.npy", rng.random((5, 4, 4)))
    return tmp_path


def run(argv, capsys):
    capsys.readouterr()
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_relu_mlp_against_its_closed_form(files, capsys):
    """NTK parameterization, one ReLU layer (kernel-math.md §2–3): Σ¹ = W²|x|²/d + B², E[relu(u)²] = Σ¹/2 and
    E[relu'(u)²] = 1/2 at u ~ N(0, Σ¹) (Cho & Saul 2009 at angle 0), so Σ = W_out²Σ¹/2 + B_out² and
    Θ = Σ + W_out²·Σ¹·1/2 = W_out²Σ¹ + B_out²."""
    out = files / "k.npz"
    status, text, err = run(["eval", files / "mlp.ntk", "--x1", files / "x.npy", "--diagonal", "-o", out], capsys)
    assert status == 0, err
    assert "shape (6,)" in text
    x = np.load(files / "x.npy")
    s1 = W**2 * np.sum(x**2, axis=1) / 3 + B**2
    got = np.load(out)
    np.testing.assert_allclose(got["nngp"], W_OUT**2 * s1 / 2 + B_OUT**2, rtol=RTOL)
    np.testing.assert_allclose(got["ntk"], W_OUT**2 * s1 + B_OUT**2, rtol=RTOL)
    full = files / "full.npz"
    assert run(["eval", files / "mlp.ntk", "--x1", files / "x.npy", "-o", full], capsys)[0] == 0
    for name in ("nngp", "ntk"):  # the self-kernel's exact diagonal, through the other module function
        np.testing.assert_array_equal(got[name], np.diagonal(np.load(full)[name]))


def test_gnn_with_graphs_against_its_closed_form(files, capsys):
    """conv(kernel 1) → aggregate → global_avg_pool → dense, no biases: Σ¹ = W²·x xᵀ/C per node pair, Σ² =
    AᵀΣ¹A (the aggregate y = Aᵀx), the mean over node pairs, Σ = W_out²·mean(Σ²); every layer is linear, so
    Θ = Σ + W_out²·mean(Θ²) with Θ² = Σ²: Θ = 2Σ."""
    out = files / "k.npz"
    status, _, err = run(["eval", files / "gnn.ntk", "--x1", files / "signals.npy", "--graph1", files / "graphs.npy",
                          "--diagonal", "-o", out], capsys)
    assert status == 0, err
    x, a = np.load(files / "signals.npy"), np.load(files / "graphs.npy")
    sigma = np.array([W_OUT**2 * np.mean(g.T @ (W**2 * p @ p.T / 2) @ g) for p, g in zip(x, a)])
    got = np.load(out)
    np.testing.assert_allclose(got["nngp"], sigma, rtol=RTOL)
    np.testing.assert_allclose(got["ntk"], 2 * sigma, rtol=RTOL)
    status, text, err = run(["eval", files / "gnn.ntk", "--x1", files / "signals.npy", "--graph1",
                             files / "graphs.npy", "--diagonal"], capsys)
    assert status == 0 and "K(x, x) of 5 points" in text and f"max {sigma.max():.6g}" in text, err


@pytest.mark.parametrize("extra, message", [
    (["--x2", "x.npy"], "--diagonal evaluates K(x, x) for each --x1 point alone; it takes no --x2"),
    (["--batch-size", "2"], "--batch-size does not apply"),
    (["--memory-budget", "1G"], "--memory-budget does not apply"),
    (["--memmap", "disk"], "--memmap does not apply"),
    (["--zarr", "store"], "--zarr does not apply"),
])
def test_misuse_is_refused_and_writes_nothing(files, capsys, extra, message):
    out = files / "k.npz"
    out.write_bytes(b"kept")
    argv = ["eval", files / "mlp.ntk", "--x1", files / "x.npy", "--diagonal", "-o", out]
    status, text, err = run(argv + [a if a.startswith("--") or a[0].isdigit() else files / a for a in extra], capsys)
    assert status == 2 and err.startswith("ntkdsl: error: ") and err.count("\n") == 1 and message in err and text == ""
    assert out.read_bytes() == b"kept" and not (files / "disk").exists() and not (files / "store").exists()


def test_gnn_without_graphs_and_unwritable_output(files, capsys):
    status, _, err = run(["eval", files / "gnn.ntk", "--x1", files / "signals.npy", "--diagonal"], capsys)
    assert status == 2 and err.startswith("ntkdsl: error: network gnn aggregates over graphs: pass --graph1 FILE")
    status, _, err = run(["eval", files / "mlp.ntk", "--x1", files / "x.npy", "--diagonal", "-o",
                          files / "missing" / "k.npz"], capsys)
    assert status == 2 and err.startswith("ntkdsl: error: cannot write") and not (files / "missing").exists()

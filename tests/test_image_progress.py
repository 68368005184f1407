"""Progress inside the fused image kernels (ntkdsl/codegen/fused_spatial.py, ntkdsl.progress.pair_progress):
a request that runs in one piece counts its input pairs, from the worker threads, to the last one;
the results do not change; the command line shows the bar in a terminal and only there."""

import subprocess
import sys

import numpy as np
import pytest

import ntkdsl
from ntkdsl.progress import pair_progress
from shared import assert_progress_counts, needs_numba
from test_cli_consistency import ROOT, _in_a_terminal

CNN = """network progress_cnn(input = [6, 6, 2]) {
    conv(8, kernel = 3, padding = same, w_std = 1.4, b_std = 0.1)
    relu
    avg_pool(2)
    conv(8, kernel = 3, padding = same)
    relu
    global_avg_pool
    dense(1)
}
"""


@pytest.fixture(scope="module")
def cnn():
    return ntkdsl.loads(CNN)


@needs_numba
@pytest.mark.parametrize("pair", [False, True], ids=["x2-None", "x2-given"])
def test_a_callable_counts_every_pair_and_the_results_do_not_change(cnn, pair):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((30, 6, 6, 2)), rng.standard_normal((11, 6, 6, 2))
    args = (x, y) if pair else (x,)
    total = 30 * 11 if pair else 30 * 31 // 2  # a self-kernel computes the pairs j ≥ i
    assert_progress_counts(cnn, args, total)


def test_pair_progress_is_quiet_for_short_calls_and_thread_safe(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr("ntkdsl.progress._DEFAULT", True)
    quiet = pair_progress(None, 100, "short")  # None: a bar only after a second
    quiet.advance(100)
    assert quiet.bar is None
    seen = []
    bar = pair_progress(lambda done, n: seen.append(done), 4000, "threads", interval=0.0)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: [bar.advance(1) for _ in range(1000)], range(4)))
    assert seen[-1] == 4000 and seen == sorted(seen)
    with pytest.raises(TypeError, match="progress must be"):
        pair_progress("yes", 10, "bad")


@needs_numba
def test_the_command_line_shows_the_pairs_in_a_terminal_and_only_there(tmp_path):
    spec = tmp_path / "cnn.ntk"
    spec.write_text(CNN)
    np.save(tmp_path / "x.npy", np.random.default_rng(1).standard_normal((24, 6, 6, 2)))
    argv = ["eval", str(spec), "--x1", str(tmp_path / "x.npy"), "--backend", "numba", "-o", str(tmp_path / "k.npz")]
    status, err = _in_a_terminal(argv + ["--progress"])
    assert status == 0, err
    assert "300/300" in err and "pair" in err  # 24·25/2 pairs j ≥ i, the bar's last state (tqdm or the built-in bar)
    status, err = _in_a_terminal(argv + ["--no-progress"])
    assert status == 0 and err == ""
    plain = subprocess.run([sys.executable, "-m", "ntkdsl", *argv], capture_output=True, text=True, cwd=ROOT)
    assert plain.returncode == 0 and plain.stderr == ""  # stderr not a terminal: no bar

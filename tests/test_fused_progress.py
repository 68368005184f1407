"""Progress inside the fused vector kernels (ntkdsl/codegen/fused.py, ntkdsl.progress.pair_progress): a
request that runs in one piece counts its rows, from the worker threads' blocks of rows, to the last
one (and, with numerical duals, one step for the refill after the loops); the results do not depend on
the blocks or on progress; the command line shows the bar in a terminal and only there."""

import itertools
import subprocess
import sys

import numpy as np
import pytest

import ntkdsl
from ntkdsl.codegen.dispatch import runtime_values
from shared import assert_progress_counts, needs_numba
from test_cli_consistency import ROOT, _in_a_terminal

MLP = "network progress_mlp(input = 5) {\n    dense(16, w_std = 1.4, b_std = 0.1)\n    relu\n    dense(16)\n    erf\n    dense(1)\n}\n"
TANH = "network progress_tanh(input = 3) {\n    dense(8)\n    tanh\n    dense(1)\n}\n"  # numerical dual: Mehler + refill


@pytest.fixture(scope="module", params=[MLP, TANH], ids=["closed-form", "numerical"])
def net(request):
    return ntkdsl.loads(request.param)


def _inputs(net, pair):
    """x1 and x2 (None for a self-kernel). The numerical net gets the 30 integer points of R³ with
    |x|² = 9 (one variance for all: its per-point Hermite coefficients are integrated once)."""
    if "tanh" in net.name:
        points = {tuple(s * v for s, v in zip(signs, perm)) for perm in itertools.permutations((1, 2, 2))
                  for signs in itertools.product((1, -1), repeat=3)} | {tuple(np.roll((3 * s, 0, 0), k))
                                                                      for s in (1, -1) for k in range(3)}
        x = np.array(sorted(points), dtype=float)
        return x, (x[::-2][:11] if pair else None)
    rng = np.random.default_rng(0)
    return rng.standard_normal((300, 5)), (rng.standard_normal((170, 5)) if pair else None)


@needs_numba
@pytest.mark.parametrize("pair", [False, True], ids=["x2-None", "x2-given"])
def test_a_callable_counts_every_row_and_the_results_do_not_change(net, pair):
    x, y = _inputs(net, pair)
    args = (x,) if y is None else (x, y)
    total = len(x) + (1 if "tanh" in net.name else 0)  # rows of x1, and the refill step of the numerical duals
    assert_progress_counts(net, args, total)


@needs_numba
def test_the_threads_report_each_block_and_the_blocks_do_not_change_the_results(net, monkeypatch):
    x, _ = _inputs(net, False)
    net.kernels(x, backend="numba")  # loads the module
    module, params = net._modules["numba"], runtime_values(net.program)
    whole = module.kernels(x, params=params)
    monkeypatch.setattr(module, "_rows_per_block", lambda n2: 7)  # many blocks on every thread
    blocks = []
    split = module.kernels(x, params=params, progress=blocks.append)
    assert sum(blocks) == module.progress_steps(len(x), len(x))[0] and len(blocks) >= len(x) // 7
    assert max(blocks) <= 7
    for a, b in zip(split, whole):
        assert np.array_equal(a, b)  # every row is computed by the same loops whatever the blocks
    assert module.progress_steps(0, 5)[0] == 0 and module.progress_steps(5, 0)[0] == 0  # nothing to count


@needs_numba
def test_the_command_line_shows_the_rows_in_a_terminal_and_only_there(tmp_path):
    spec = tmp_path / "mlp.ntk"
    spec.write_text(MLP)
    np.save(tmp_path / "x.npy", np.random.default_rng(1).standard_normal((240, 5)))
    argv = ["eval", str(spec), "--x1", str(tmp_path / "x.npy"), "--backend", "numba", "-o", str(tmp_path / "k.npz")]
    status, err = _in_a_terminal(argv + ["--progress"])
    assert status == 0, err
    assert "240/240" in err and "row" in err  # the bar's last state (tqdm or the built-in bar)
    status, err = _in_a_terminal(argv + ["--no-progress"])
    assert status == 0 and err == ""
    plain = subprocess.run([sys.executable, "-m", "ntkdsl", *argv], capture_output=True, text=True, cwd=ROOT)
    assert plain.returncode == 0 and plain.stderr == ""  # stderr not a terminal: no bar


DTYPES = "network dtype_probe(input = 4) {\n    dense(8)\n    gelu\n    dense(8)\n    abs\n    dense(1)\n}\n"


@needs_numba
def test_auto_counts_a_compile_for_a_dtype_the_module_is_not_compiled_for(tmp_path, monkeypatch, capsys):
    """numba compiles the fused vector loops once per dtype: float64's code on disk or in this process
    is no reason to choose numba for a float32 request (a compile of seconds), and vice versa."""
    from ntkdsl.codegen import cache, dispatch

    monkeypatch.setattr(cache, "_folders", lambda cache_dir: (tmp_path,))  # a cold cache of its own
    net = ntkdsl.loads(DTYPES)
    program, text = net.program, net.to_python("numba")
    # a request whose NumPy time saved lies between a disk-cache load and a compile (the rule of fused_pays)
    saved = 0.5 * (dispatch.NUMBA_LOAD_SECONDS + dispatch.compile_seconds(program))
    per_pair = dispatch._numpy_seconds_per_pair(program) / dispatch.MODEL_NUMPY_OVERESTIMATE
    pairs = int(saved / (per_pair * (1 - 1 / dispatch._fused_speedup())))
    auto = {dtype: (lambda modules, dtype=dtype: dispatch.resolve(program, None, pairs, modules, dtype)[0])
            for dtype in (np.float64, np.float32)}
    assert auto[np.float64]({}) == auto[np.float32]({}) == "numpy"  # cold: a compile costs more than it saves
    x = np.random.default_rng(2).standard_normal((20, 4))
    net.kernels(x, backend="numba")  # float64 compiled, on disk and in this process
    assert cache.compiled_on_disk(text, net.name, dtype=np.float64)
    assert not cache.compiled_on_disk(text, net.name, dtype=np.float32)
    assert auto[np.float64]({}) == "numba" and auto[np.float64](net._modules) == "numba"
    assert auto[np.float32]({}) == "numpy" and auto[np.float32](net._modules) == "numpy"
    monkeypatch.setattr("ntkdsl.progress._DEFAULT", True)  # notes as in a terminal
    capsys.readouterr()
    net.kernels(x, backend="numba", dtype=np.float32)
    assert "compiling the float32 numba kernels of network dtype_probe once" in capsys.readouterr().err
    net.kernels(x, backend="numba", dtype=np.float32)
    assert capsys.readouterr().err == ""  # compiled now: no note
    assert cache.compiled_on_disk(text, net.name, dtype=np.float32)
    assert auto[np.float32]({}) == "numba" and auto[np.float32](net._modules) == "numba"

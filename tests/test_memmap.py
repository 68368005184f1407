"""Kernels streamed to disk (large N): ``net.kernels_to_disk`` and ``ntkdsl eval --memmap``.

Equal to the in-memory kernels, resumable after an interruption (only the missing tiles are
computed, with identical results), a directory of another request refused, final files only when
complete, the CLI's mistakes answered with exit status 2 and no traceback; the progress bar.
"""

import io
import json
import os

import numpy as np
import pytest

import ntkdsl
from ntkdsl import progress as progress_module
from ntkdsl.cli import main
from ntkdsl.streaming import MANIFEST, ResumeMismatchError

CNN = """network cnn(input = [4, 4, 2]) {
    conv(8, kernel = 3, padding = same, w_std = 1.4, b_std = 0.1); relu
    conv(8, kernel = 3, padding = same); relu; global_avg_pool; dense(1) }"""
MLP = "network mlp(input = 6) { dense(16, b_std = 0.1); relu; dense(16); erf; dense(1) }"
# Tiling contract (tests/test_architectures_tiling.py): tiles change only the shapes of the
# input Gram GEMMs, whose BLAS blocking sums in another order: a few ulps, bounded by 1e-13 relative
# for inputs without duplicate points across x1 and x2. Streaming to disk uses the same tiles.
RTOL = 1e-13


class Stop(Exception):
    """The simulated interruption."""


def inputs(net, n, seed):
    return np.random.default_rng(seed).standard_normal((n,) + net.ir.input_shape)


def close(a, b):
    return np.max(np.abs(np.asarray(a) - b)) <= RTOL * np.max(np.abs(b))


def counting(net, monkeypatch):
    calls = []
    evaluate = net._evaluate
    monkeypatch.setattr(net, "_evaluate", lambda a, b, *rest: calls.append((len(a), None if b is None else len(b)))
                        or evaluate(a, b, *rest))
    return calls


@pytest.mark.parametrize("spec", [CNN, MLP], ids=["cnn", "mlp"])
@pytest.mark.parametrize("same", [True, False], ids=["self", "cross"])
def test_disk_equals_in_memory(spec, same, tmp_path):
    net = ntkdsl.loads(spec)
    x1, x2 = inputs(net, 11, 1), (None if same else inputs(net, 7, 2))
    whole = net.kernels(x1, x2)
    k = net.kernels_to_disk(x1, x2, tmp_path / "out", batch_size=4, progress=False)
    for name, a, b in (("nngp", k.nngp, whole.nngp), ("ntk", k.ntk, whole.ntk)):
        assert isinstance(a, np.memmap) and not a.flags.writeable
        assert a.shape == b.shape and a.dtype == np.float64
        assert close(a, b)
        assert close(np.load(tmp_path / "out" / f"{name}.npy"), b)
        if same:
            assert np.array_equal(a, a.T)
    assert sorted(os.listdir(tmp_path / "out")) == ["nngp.npy", "ntk.npy", MANIFEST]
    assert json.loads((tmp_path / "out" / MANIFEST).read_text())["complete"] is True


def test_float32_and_default_tile(tmp_path):
    net = ntkdsl.loads(MLP)
    x = inputs(net, 30, 3)
    k = net.kernels_to_disk(x, None, tmp_path, dtype="float32", progress=False)
    assert k.ntk.dtype == np.float32
    # float32 output: a rounding of the float64 result (NumPy), or a float32 Gram matrix (fused kernels):
    # a few float32 ulps (eps 1.2e-7)
    np.testing.assert_allclose(k.ntk, net.kernels(x).ntk, rtol=1e-6)
    assert json.loads((tmp_path / MANIFEST).read_text())["tile"] == [30, 30]  # small: one tile


@pytest.mark.parametrize("same", [True, False], ids=["self", "cross"])
def test_resume_computes_only_the_missing_tiles(same, tmp_path, monkeypatch):
    net = ntkdsl.loads(CNN)
    x1, x2 = inputs(net, 10, 4), (None if same else inputs(net, 9, 5))
    total = 6 if same else 9  # tiles of 4: 3 row blocks; self-kernels compute the upper triangle only
    reference = net.kernels_to_disk(x1, x2, tmp_path / "ref", batch_size=4, progress=False)

    def stop_after(k):
        def progress(done, n):
            assert n == total
            if done == k:
                raise Stop
        return progress

    calls = counting(net, monkeypatch)
    with pytest.raises(Stop):
        net.kernels_to_disk(x1, x2, tmp_path / "run", batch_size=4, progress=stop_after(2))
    assert len(calls) == 2
    files = sorted(os.listdir(tmp_path / "run"))
    assert "nngp.npy" not in files and "ntk.npy" not in files  # never a final name for a partial result
    manifest = json.loads((tmp_path / "run" / MANIFEST).read_text())
    assert manifest["complete"] is False and len(manifest["done"]) == 2

    seen = []
    k = net.kernels_to_disk(x1, x2, tmp_path / "run", batch_size=3, progress=lambda d, n: seen.append(d))
    assert len(calls) == total  # only the missing tiles, in the first call's tile shape (4, not 3)
    assert seen == list(range(3, total + 1))
    assert np.array_equal(k.nngp, reference.nngp) and np.array_equal(k.ntk, reference.ntk)

    # a finished directory is returned as it is
    again = net.kernels_to_disk(x1, x2, tmp_path / "run", batch_size=4, progress=False)
    assert len(calls) == total and np.array_equal(again.ntk, reference.ntk)


def test_interrupted_in_a_tile_loses_only_that_tile(tmp_path, monkeypatch):
    net = ntkdsl.loads(MLP)
    x = inputs(net, 9, 6)
    evaluate, count = net._evaluate, []

    def flaky(*args):
        count.append(1)
        if len(count) == 3:
            raise KeyboardInterrupt
        return evaluate(*args)

    monkeypatch.setattr(net, "_evaluate", flaky)
    with pytest.raises(KeyboardInterrupt):
        net.kernels_to_disk(x, None, tmp_path, batch_size=3, progress=False)
    assert len(json.loads((tmp_path / MANIFEST).read_text())["done"]) == 2
    k = net.kernels_to_disk(x, None, tmp_path, batch_size=3, progress=False)
    assert len(count) == 3 + 4  # 6 tiles in all: 2 kept, the interrupted one and 3 more
    assert close(k.ntk, net.kernels(x).ntk)


@pytest.mark.parametrize("change", ["x1", "x2", "network", "dtype"])
def test_resume_with_another_request_is_refused(change, tmp_path):
    net = ntkdsl.loads(MLP)
    x1, x2 = inputs(net, 8, 7), inputs(net, 5, 8)
    with pytest.raises(Stop):
        net.kernels_to_disk(x1, x2, tmp_path, batch_size=4, progress=lambda d, n: (_ for _ in ()).throw(Stop()))
    before = {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path)}
    other = dict(x1=x1, x2=x2, net=net, dtype=None)
    if change == "x1":
        other["x1"] = x1.copy()
        other["x1"][0, 0] += 1e-12
    elif change == "x2":
        other["x2"] = None
    elif change == "network":
        other["net"] = ntkdsl.loads(MLP.replace("b_std = 0.1", "b_std = 0.2"))
    else:
        other["dtype"] = "float32"
    with pytest.raises(ResumeMismatchError, match="cannot resume .* another request"):
        other["net"].kernels_to_disk(other["x1"], other["x2"], tmp_path, batch_size=4, dtype=other["dtype"],
                                     progress=False)
    assert {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path)} == before  # nothing touched


def test_foreign_result_files_are_not_overwritten(tmp_path):
    net = ntkdsl.loads(MLP)
    np.save(tmp_path / "ntk.npy", np.zeros(3))
    with pytest.raises(ResumeMismatchError, match="no progress.json"):
        net.kernels_to_disk(inputs(net, 4, 0), None, tmp_path, progress=False)
    assert np.array_equal(np.load(tmp_path / "ntk.npy"), np.zeros(3))


# ---- the command line -------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path):
    spec = tmp_path / "cnn.ntk"
    spec.write_text(CNN)
    net = ntkdsl.loads(CNN)
    np.save(tmp_path / "a.npy", inputs(net, 9, 1))
    np.save(tmp_path / "b.npy", inputs(net, 6, 2))
    np.save(tmp_path / "c.npy", inputs(net, 9, 3))
    return tmp_path, spec, net


def test_cli_memmap_writes_and_resumes(files, capsys):
    tmp, spec, net = files
    out = tmp / "k"
    assert main(["eval", str(spec), "--x1", str(tmp / "a.npy"), "--x2", str(tmp / "b.npy"), "--memmap", str(out),
                 "--batch-size", "4", "--no-progress"]) == 0
    assert "nngp.npy" in capsys.readouterr().out
    whole = net.kernels(np.load(tmp / "a.npy"), np.load(tmp / "b.npy"))
    assert close(np.load(out / "ntk.npy"), whole.ntk) and close(np.load(out / "nngp.npy"), whole.nngp)
    # the same command again: already complete, nothing recomputed, same files
    stamp = os.stat(out / "ntk.npy").st_mtime_ns
    assert main(["eval", str(spec), "--x1", str(tmp / "a.npy"), "--x2", str(tmp / "b.npy"), "--memmap", str(out)]) == 0
    assert os.stat(out / "ntk.npy").st_mtime_ns == stamp


@pytest.mark.parametrize("case", ["other-inputs", "with-out", "file-not-dir", "cupy"])
def test_cli_memmap_errors_exit_2_without_traceback(files, capsys, case):
    tmp, spec, _ = files
    out = tmp / "k"
    base = ["eval", str(spec), "--x1", str(tmp / "a.npy"), "--memmap", str(out), "--no-progress"]
    if case == "other-inputs":
        assert main(base) == 0
        capsys.readouterr()
        argv = base[:3] + [str(tmp / "c.npy")] + base[4:]
        expect = "cannot resume"
    elif case == "with-out":
        argv, expect = base + ["-o", str(tmp / "k.npz")], "cannot be combined"
    elif case == "file-not-dir":
        (tmp / "plain").write_text("x")
        argv, expect = base[:5] + [str(tmp / "plain")] + base[6:], "not a directory"
    else:
        argv, expect = base + ["--backend", "cupy"], "--memmap"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 3


# ---- the progress bar -------------------------------------------------------------------------


def test_progress_bar_builtin_when_asked(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)  # as if tqdm were not installed
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    net = ntkdsl.loads(MLP)
    x = inputs(net, 10, 9)
    k = net.kernels(x, batch_size=4, progress=True)
    assert close(k.ntk, net.kernels(x).ntk)
    text = stream.getvalue()
    assert "6/6 tiles" in text and text.endswith("\n")


def test_progress_bar_defaults_to_silent_off_a_terminal(monkeypatch):
    stream = io.StringIO()  # not a TTY
    monkeypatch.setattr("sys.stderr", stream)
    net = ntkdsl.loads(MLP)
    net.kernels(inputs(net, 10, 9), batch_size=4)
    assert stream.getvalue() == ""
    assert isinstance(progress_module.tile_progress(None, 5), progress_module._Silent)
    with pytest.raises(TypeError):
        progress_module.tile_progress("yes", 5)


@pytest.mark.parametrize("same", [True, False], ids=["self", "cross"])
def test_duplicate_points_match_the_in_memory_kernels(same, tmp_path):
    net = ntkdsl.loads(MLP)
    x1 = inputs(net, 9, 10)
    x1[7] = x1[1]  # a duplicate, across tiles of 4
    x2 = None if same else np.concatenate([x1[1:2], inputs(net, 5, 11), x1[7:8]])
    whole = net.kernels(x1, x2)
    k = net.kernels_to_disk(x1, x2, tmp_path, batch_size=4, progress=False)
    assert close(k.nngp, whole.nngp) and close(k.ntk, whole.ntk)
    if same:
        assert k.ntk[1, 7] == k.ntk[1, 1] == k.ntk[7, 7]

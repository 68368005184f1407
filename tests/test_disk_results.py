"""Results on disk: checksummed resumable tiles, damaged manifests, atomic outputs that never
replace an input, and the file mode an ordinary ``open`` would give.

Oracles: the in-memory kernels of the same network (the tiling contract, 1e-13 relative), the
SHA-256 of the bytes on disk, the process umask, and the input files' bytes before and after.
"""

import json
import os
import stat
import warnings

import numpy as np
import pytest

import ntkdsl
from ntkdsl import _files
from ntkdsl.cli import main
from ntkdsl.errors import UserError
from ntkdsl.streaming import MANIFEST, ResumeMismatchError, ResumeWarning

MLP = "network mlp(input = 6) { dense(16, b_std = 0.1); relu; dense(16); erf; dense(1) }"
# Tiling contract (tests/test_architectures_tiling.py): tiles change only the BLAS blocking of the
# input Gram matrix: a few ulps, bounded by 1e-13 relative.
RTOL = 1e-13
TILE = 4  # points: 16 points -> 10 tiles on and above the diagonal


class Stop(Exception):
    """The simulated interruption."""


@pytest.fixture(scope="module")
def net():
    return ntkdsl.loads(MLP)


@pytest.fixture(scope="module")
def x():
    a = np.random.default_rng(0).standard_normal((16, 6))
    a[13] = a[2]  # a duplicate pair across tiles: its exact value must survive the checks
    return a


def interrupted(net, x, directory, after):
    """Start a run and stop it once ``after`` tiles are on disk."""
    def stop(done, total):
        if done == after:
            raise Stop
    with pytest.raises(Stop):
        net.kernels_to_disk(x, None, directory, batch_size=TILE, progress=stop)


def counting(net, monkeypatch):
    calls = []
    evaluate = net._evaluate
    monkeypatch.setattr(net, "_evaluate", lambda a, b, *rest: calls.append(1) or evaluate(a, b, *rest))
    return calls


def assert_equals_memory(k, net, x):
    ref = net.kernels(x)
    for a, b in ((k.nngp, ref.nngp), (k.ntk, ref.ntk)):
        assert np.max(np.abs(np.asarray(a) - b)) <= RTOL * np.max(np.abs(b))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(a).T)  # exactly symmetric
    assert k.ntk[2, 13] == k.ntk[2, 2] and k.nngp[13, 2] == k.nngp[2, 2]  # duplicates: the exact (x, x) value


def resume(net, x, directory, monkeypatch):
    """Resume; returns (kernels, warning messages, tiles evaluated)."""
    calls = counting(net, monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        k = net.kernels_to_disk(x, None, directory, batch_size=TILE, progress=False)
    return k, [str(w.message) for w in caught if issubclass(w.category, ResumeWarning)], len(calls)


def test_manifest_records_a_checksum_per_finished_tile(net, x, tmp_path):
    interrupted(net, x, tmp_path, after=3)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["format"] == 2 and len(manifest["done"]) == 3
    part = {name: np.load(tmp_path / f"{name}.partial.npy") for name in ("nngp", "ntk")}
    for i, j, digest in manifest["done"]:  # recompute each digest from the bytes on disk
        import hashlib

        h = hashlib.sha256()
        for name in ("nngp", "ntk"):
            blocks = [part[name][i:i + TILE, j:j + TILE]] + ([part[name][j:j + TILE, i:i + TILE]] if i != j else [])
            for b in blocks:
                h.update(np.ascontiguousarray(b).tobytes())
        assert h.hexdigest() == digest


def test_truncated_partial_file_is_detected_and_repaired(net, x, tmp_path, monkeypatch):
    """The run that used to resume silently with a 0.93 relative error."""
    interrupted(net, x, tmp_path, after=6)
    with open(tmp_path / "nngp.partial.npy", "r+b") as f:
        f.truncate(600)  # the header and part of the first row survive
    k, messages, evaluated = resume(net, x, tmp_path, monkeypatch)
    assert len(messages) == 1 and "did not match the checksum" in messages[0]
    assert evaluated >= 10 - 6 + 1  # the missing tiles and at least one damaged one again
    assert_equals_memory(k, net, x)


def test_one_damaged_number_costs_one_tile(net, x, tmp_path, monkeypatch):
    interrupted(net, x, tmp_path, after=6)
    a = np.load(tmp_path / "ntk.partial.npy", mmap_mode="r+")
    a[1, 6] += 1e-9  # inside tile (0, 4), the second one written
    a.flush()
    del a
    k, messages, evaluated = resume(net, x, tmp_path, monkeypatch)
    assert messages and messages[0].startswith("1 finished tile in")
    assert evaluated == 10 - 6 + 1  # the 4 missing tiles + the damaged one (no duplicate pair in them)
    assert_equals_memory(k, net, x)


def test_damaged_final_file_is_repaired_on_the_next_call(net, x, tmp_path, monkeypatch):
    net.kernels_to_disk(x, None, tmp_path, batch_size=TILE, progress=False)
    k, messages, evaluated = resume(net, x, tmp_path, monkeypatch)
    assert messages == [] and evaluated == 0  # intact: nothing computed
    del k
    a = np.load(tmp_path / "nngp.npy", mmap_mode="r+")
    a[15, 5] = 0.0  # below the diagonal: the mirror of tile (4, 12) (no duplicate pair in it)
    a.flush()
    del a
    k, messages, evaluated = resume(net, x, tmp_path, monkeypatch)
    assert len(messages) == 1 and evaluated == 1
    assert_equals_memory(k, net, x)
    assert json.loads((tmp_path / MANIFEST).read_text())["complete"] is True
    assert sorted(os.listdir(tmp_path)) == sorted([MANIFEST, "nngp.npy", "ntk.npy"])


def test_manifest_without_checksums_recomputes_its_tiles(net, x, tmp_path, monkeypatch):
    """A format-1 manifest (no checksums) cannot vouch for its tiles: they are computed again."""
    interrupted(net, x, tmp_path, after=4)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    manifest.update(format=1, done=[e[:2] for e in manifest["done"]])
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    k, messages, evaluated = resume(net, x, tmp_path, monkeypatch)
    assert len(messages) == 1 and messages[0].startswith("4 finished tiles")
    assert evaluated == 10 + 1  # every tile, and the duplicate pair's self-kernel
    assert_equals_memory(k, net, x)


GARBLED = ["{not json", "[]", "null", '{"format": 2}', '{"format": 2, "tile": [4, 4], "done": [[0, "a"]]}',
           '{"format": 2, "tile": [0, 4], "done": []}', '{"format": 2, "tile": [4, 4], "done": [[0, 0, "short"]]}',
           '{"format": 99, "tile": [4, 4], "done": []}', b"\xff\xfe\x00"]


@pytest.mark.parametrize("text", GARBLED, ids=range(len(GARBLED)))
def test_garbled_manifest_is_a_clear_error(net, x, tmp_path, text, capsys):
    interrupted(net, x, tmp_path, after=2)
    path = tmp_path / MANIFEST
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ResumeMismatchError, match=r"progress.json is damaged .*remove .* to start over"):
        net.kernels_to_disk(x, None, tmp_path, batch_size=TILE)
    np.save(tmp_path.parent / "x.npy", x)
    spec = tmp_path.parent / "mlp.ntk"
    spec.write_text(MLP)
    assert main(["eval", str(spec), "--x1", str(tmp_path.parent / "x.npy"), "--memmap", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ntkdsl: error: cannot resume in") and "Traceback" not in err


# ------------------------------------------------------------------ atomic outputs, modes, inputs


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_new_outputs_get_the_umask_mode(tmp_path, umask, mask):
    umask(mask)
    _files.write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == 0o666 & ~mask
    assert _files.umask() == mask


def test_replaced_output_keeps_its_mode_and_no_temporary_stays(tmp_path, umask):
    path = tmp_path / "k.npz"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    _files.write_npz(path, a=np.arange(3))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    np.testing.assert_array_equal(np.load(path)["a"], np.arange(3))
    with pytest.raises(RuntimeError), _files.atomic_open(path) as f:
        f.write(b"half")
        raise RuntimeError("interrupted")
    np.testing.assert_array_equal(np.load(path)["a"], np.arange(3))  # untouched
    assert os.listdir(tmp_path) == ["k.npz"]


def test_compile_refuses_to_overwrite_its_spec(tmp_path, capsys):
    spec = tmp_path / "mlp.ntk"
    spec.write_text(MLP)
    link = tmp_path / "link.ntk"
    link.symlink_to(spec)
    for out in (spec, link):
        assert main(["compile", str(spec), "-o", str(out)]) == 2
        assert "refusing to write" in capsys.readouterr().err
    assert spec.read_text() == MLP
    assert main(["compile", str(spec), "-o", str(tmp_path / "out.py")]) == 0


def test_eval_refuses_to_overwrite_its_inputs(tmp_path, capsys):
    spec = tmp_path / "mlp.ntk"
    spec.write_text(MLP)
    x = tmp_path / "x.npy"
    np.save(x, np.ones((2, 6)))
    before = x.read_bytes()
    for out in (x, spec):
        assert main(["eval", str(spec), "--x1", str(x), "-o", str(out)]) == 2
        assert "it is an input of this command" in capsys.readouterr().err
    assert x.read_bytes() == before and spec.read_text() == MLP


def test_protection_ends_with_the_command(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("a")
    with _files.protecting([path]), pytest.raises(UserError):
        _files.write_text(path, "b")
    _files.write_text(path, "b")
    assert path.read_text() == "b"

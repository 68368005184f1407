"""Sizes checked before reading: a spec file is refused after reading at most the size limit + 1
characters, and a stored .npy array by its header (shape, dtype, the bytes it promises) before
numpy allocates anything for its data.

Each case used to read a whole file (a spec from /dev/zero never ended) or allocate the size a
forged header promised (a MemoryError traceback asking for 2 TiB); now each is a located error
(API) or ``ntkdsl: error: ...`` with exit status 2 (CLI), within seconds.
"""

from __future__ import annotations

import io
import os
import time
import zipfile

import numpy as np
import pytest

import ntkdsl
from ntkdsl.cli import main
from ntkdsl.errors import LimitSpecError
from ntkdsl.frontend import limits

SECONDS = 5.0  # a check of a size or a header: milliseconds; generous for a loaded CI machine
SPEC = "network n(input = 3) {\n    dense(2)\n    relu\n    dense(1)\n}\n"


def forged_npy(shape, descr="<f8", data=b"\0" * 64) -> bytes:
    """A .npy file whose header promises ``shape`` but that holds only ``data``."""
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
    return f.getvalue() + data


def test_a_spec_file_over_the_limit_is_refused_by_its_size(tmp_path):
    path = tmp_path / "big.ntk"
    path.write_text(SPEC + "#" * (limits.MAX_SOURCE_BYTES + 10))
    with pytest.raises(LimitSpecError, match=rf"big\.ntk: error: the file has {path.stat().st_size} bytes; "
                                             rf"a spec may have at most {limits.MAX_SOURCE_BYTES}"):
        ntkdsl.load(path)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero: an endless file")
def test_an_endless_file_is_refused_after_the_limit():
    start = time.perf_counter()
    with pytest.raises(LimitSpecError, match=rf"more than {limits.MAX_SOURCE_BYTES} bytes"):
        ntkdsl.load("/dev/zero")
    assert time.perf_counter() - start < SECONDS


def test_the_cli_refuses_an_endless_spec(capsys):
    if not os.path.exists("/dev/zero"):
        pytest.skip("needs /dev/zero")
    for command in (["check", "/dev/zero"], ["compile", "/dev/zero"]):
        assert main(command) == 2
        assert f"/dev/zero: error: the file has more than {limits.MAX_SOURCE_BYTES} bytes" in capsys.readouterr().err


def test_a_spec_within_the_limit_still_loads(tmp_path):
    path = tmp_path / "ok.ntk"
    path.write_text(SPEC + "#" * (limits.MAX_SOURCE_BYTES - len(SPEC) - 1) + "\n")
    assert path.stat().st_size == limits.MAX_SOURCE_BYTES
    assert ntkdsl.load(path).ir.input_dim == 3


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "n.ntk"
    path.write_text(SPEC)
    return str(path)


HEADERS = [  # (file bytes, the message's fragment)
    (forged_npy((10**11, 3)), "shorter than its header says: shape (100000000000, 3) of float64 needs 2400000000000 bytes"),
    (forged_npy((10**11, 5)), "has shape (100000000000, 5); this network needs (N, 3)"),
    (forged_npy((4, 3), "|O"), "holds None or other objects, not numbers"),
    (forged_npy((4, 3), "<c16"), "holds complex numbers"),
    (forged_npy((0, 3)), "holds no points"),
    (b"\x93NUMPY\x01\x00\x05\x00{'de\n", "is not a .npy array of numbers"),
]


@pytest.mark.parametrize("data, fragment", HEADERS)
def test_npy_headers_are_checked_before_the_data_is_read(spec, tmp_path, capsys, data, fragment):
    (tmp_path / "x.npy").write_bytes(data)
    with zipfile.ZipFile(tmp_path / "x.npz", "w") as z:  # the same array as the member of an .npz
        z.writestr("x.npy", data)
    for name in ("x.npy", "x.npz", "x.npz:x"):
        start = time.perf_counter()
        assert main(["eval", spec, "--x1", str(tmp_path / name), "-o", str(tmp_path / "out.npz")]) == 2
        assert time.perf_counter() - start < SECONDS
        err = capsys.readouterr().err
        assert err.startswith("ntkdsl: error: --x1 in ") and fragment in err, err
        assert "Traceback" not in err
        assert not (tmp_path / "out.npz").exists()


def test_a_truncated_npy_is_refused(spec, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.ones((5, 3)))
    whole = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(whole[:-8])   # one float64 short
    assert main(["eval", spec, "--x1", str(tmp_path / "x.npy")]) == 2
    assert "needs 120 bytes of data, the file holds 112 (truncated?)" in capsys.readouterr().err


def test_good_arrays_load_as_before(spec, tmp_path):
    x = np.random.default_rng(0).normal(size=(4, 3))
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", x=x)
    np.savez(tmp_path / "two.npz", x=x, y=x[:, 0])
    for name in ("x.npy", "x.npz", "two.npz:x"):
        out = tmp_path / f"k_{name.replace(':', '_')}.npz"
        assert main(["eval", spec, "--x1", str(tmp_path / name), "-o", str(out)]) == 0
        with np.load(out) as k:
            np.testing.assert_array_equal(k["nngp"], ntkdsl.load(spec).kernels(x).nngp)  # same inputs, same code


def test_flow_npz_headers_are_checked(spec, tmp_path, capsys):
    with zipfile.ZipFile(tmp_path / "train.npz", "w") as z:
        z.writestr("x.npy", forged_npy((10**11, 3)))
        z.writestr("y.npy", forged_npy((10**11,)))
    start = time.perf_counter()
    assert main(["flow", spec, "--train", str(tmp_path / "train.npz"), "--times", "0"]) == 2
    assert time.perf_counter() - start < SECONDS
    err = capsys.readouterr().err
    assert "x in " in err and "is shorter than its header says" in err and "Traceback" not in err, err

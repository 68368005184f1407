"""Atomic output: a file is either written whole or not at all (never half-written), never over an input.

:func:`atomic_open` writes a temporary file beside the target and renames it over the target only
once it is complete and flushed (``os.replace`` is atomic on POSIX), so a reader, a crash or
Ctrl-C never sees a partial file. The result has the mode an ordinary ``open`` would give it
(0666 minus the umask; a replaced file keeps its mode), not the 0600 of the temporary file.
While :func:`protecting` is active (the CLI wraps each command in it), writing over one of the
command's input files is refused with a :class:`~ntkdsl.errors.UserError`:
``ntkdsl compile spec.ntk -o spec.ntk`` cannot destroy the spec.
"""

from __future__ import annotations

import os
import stat
import tempfile
from contextlib import contextmanager
from typing import BinaryIO, Iterable, Iterator, List

import numpy as np

from .errors import UserError

_protected: List[str] = []  # input files of the running command


@contextmanager
def protecting(paths: Iterable) -> Iterator[None]:
    """Within this block, :func:`atomic_open` refuses to replace any of the existing ``paths``."""
    added = [os.fspath(p) for p in paths if p is not None and os.path.isfile(os.fspath(p))]
    _protected.extend(added)
    try:
        yield
    finally:
        for p in added:
            _protected.remove(p)


def _refuse_inputs(path: str) -> None:
    if not os.path.exists(path):
        return
    for p in _protected:
        try:
            same = os.path.samefile(path, p)
        except OSError:
            continue
        if same:
            raise UserError(f"refusing to write {path!r}: it is an input of this command ({p!r}); choose another output")


def umask() -> int:
    """The process's umask, read without changing it where /proc tells it (Linux ≥ 4.7)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but only a fallback)
    os.umask(mask)
    return mask


def _final_mode(path: str) -> int:
    """The mode ``open(path, "w")`` would leave: an existing file's, else 0666 minus the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~umask()


@contextmanager
def atomic_open(path) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; on success rename it over ``path``, else delete it.

    Raises:
        UserError: ``path`` is an input file of the running command (:func:`protecting`).
    """
    path = os.fspath(path)
    _refuse_inputs(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".ntkdsl-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _final_mode(path))
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text.encode("utf-8"))


def write_npz(path, **arrays: np.ndarray) -> None:
    with atomic_open(path) as f:
        np.savez(f, **arrays)

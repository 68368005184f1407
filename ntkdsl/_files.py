"""Atomic output: a file is either written whole or not at all (never half-written)."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from typing import Iterator, BinaryIO

import numpy as np


@contextmanager
def atomic_open(path: str) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; on success rename it over ``path``, else delete it."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".ntkdsl-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text.encode("utf-8"))


def write_npz(path: str, **arrays: np.ndarray) -> None:
    with atomic_open(path) as f:
        np.savez(f, **arrays)

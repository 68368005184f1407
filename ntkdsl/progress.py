"""Progress over the tiles of a large kernel request: tqdm when installed, else a one-line stderr bar.

``progress`` arguments of :meth:`ntkdsl.CompiledNetwork.kernels` and
:meth:`ntkdsl.CompiledNetwork.kernels_to_disk` take:

* ``None`` (default): a bar only when stderr is a terminal and there is more than one tile;
* ``True`` / ``False``: always / never a bar;
* a callable ``progress(done, total)``: called after each tile (tiles, not points), no bar. It may
  raise to stop the request: the streamed-to-disk variant keeps every finished tile, so the next
  call with the same arguments resumes (the tests simulate interruptions this way).

tqdm is optional (``pip install 'ntkdsl[progress]'``); without it the bar is a minimal one written
with carriage returns.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Union

Progress = Union[None, bool, Callable[[int, int], object]]


class _Bar:
    """The minimal built-in bar: ``desc: 37% |#######       | 15/40 tiles [12 s < 20 s]`` on stderr."""

    def __init__(self, total: int, initial: int, desc: str, stream=None):
        self.total, self.n, self.desc = total, initial, desc
        self.stream = stream or sys.stderr
        self.start, self.initial = time.monotonic(), initial
        self._draw()

    def update(self, n: int = 1) -> None:
        self.n += n
        self._draw()

    def _draw(self) -> None:
        frac = self.n / self.total if self.total else 1.0
        width = 24
        filled = int(round(frac * width))
        elapsed = time.monotonic() - self.start
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        eta = f" < {(self.total - self.n) / rate:.0f} s" if rate > 0 and self.n < self.total else ""
        self.stream.write(f"\r{self.desc}: {100 * frac:3.0f}% |{'#' * filled}{' ' * (width - filled)}| "
                          f"{self.n}/{self.total} tiles [{elapsed:.0f} s{eta}]")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


class _Callback:
    def __init__(self, fn: Callable[[int, int], object], total: int, initial: int):
        self.fn, self.total, self.n = fn, total, initial

    def update(self, n: int = 1) -> None:
        self.n += n
        self.fn(self.n, self.total)

    def close(self) -> None:
        pass


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def tile_progress(progress: Progress, total: int, initial: int = 0, desc: str = "kernels"):
    """An object with ``update(n=1)`` and ``close()`` for ``total`` tiles, ``initial`` already done.

    Raises:
        TypeError: ``progress`` is none of None, a bool or a callable.
    """
    if callable(progress) and not isinstance(progress, bool):
        return _Callback(progress, total, initial)
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be None, True, False or a callable (done, total), not {progress!r}")
    show = progress if progress is not None else (total > 1 and _stderr_is_tty())
    if not show:
        return _Silent()
    try:
        from tqdm import tqdm
    except ImportError:
        return _Bar(total, initial, desc)
    return tqdm(total=total, initial=initial, desc=desc, unit="tile", file=sys.stderr)


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False

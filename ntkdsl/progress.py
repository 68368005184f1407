"""Progress over the tiles of a large kernel request: tqdm when installed, else a one-line stderr bar.

``progress`` arguments of :meth:`ntkdsl.CompiledNetwork.kernels` and
:meth:`ntkdsl.CompiledNetwork.kernels_to_disk` take:

* ``None`` (default): a bar only when stderr is a terminal and there is more than one tile;
* ``True`` / ``False``: always / never a bar;
* a callable ``progress(done, total)``: called after each tile (tiles, not points), no bar. It may
  raise to stop the request: the streamed-to-disk variant keeps every finished tile, so the next
  call with the same arguments resumes (the tests simulate interruptions this way).

A request that runs in one piece on the fused numba kernels counts input pairs (image networks) or
rows (vector networks) instead of tiles (:class:`pair_progress`, fed by the kernels' worker threads
after each block).

tqdm is optional (``pip install 'ntkdsl[progress]'``); without it the bar is a minimal one written
with carriage returns.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Callable, Optional, Union

Progress = Union[None, bool, Callable[[int, int], object]]

_DEFAULT: Optional[bool] = None  # None: show progress and notes when stderr is a terminal


def add_option(parser: argparse.ArgumentParser, what: str) -> None:
    """The command line's one ``--progress/--no-progress`` flag (same meaning on every command)."""
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help=f"progress bar on stderr ({what}) and one-line notes before slow steps (a first "
                             "numba compile, numerical duals); --no-progress: none (default: only when "
                             "stderr is a terminal)")


def set_default(show: Optional[bool]) -> None:
    """What ``progress=None`` means in this process: None (stderr is a terminal), True or False."""
    global _DEFAULT
    _DEFAULT = show


def wanted(progress: Progress = None) -> bool:
    """Whether to draw a bar or write notes for ``progress`` (None: the default of :func:`set_default`)."""
    if isinstance(progress, bool):
        return progress
    if progress is not None:  # a callable gets the counts; no bar, no notes
        return False
    return _DEFAULT if _DEFAULT is not None else _stderr_is_tty()


def note(text: str, progress: Progress = None) -> None:
    """A one-line note on stderr before a step that may take a while (``ntkdsl: TEXT``), when :func:`wanted`."""
    if wanted(progress):
        sys.stderr.write(f"ntkdsl: {text}\n")
        sys.stderr.flush()


SLOW_QUADRATURE_PAIRS = 10_000   # numerical duals: quadrature per pair per layer (docs/numerical-duals.md)
SLOW_IMAGE_ENTRIES = 10 ** 8     # image networks: input pairs x entries of the largest pixel grid


def request_note(net, n1: int, n2: int, progress: Progress = None) -> None:
    """A one-line note before a kernel request of ``net`` (a CompiledNetwork) that may take a while:
    numerical duals on many pairs, or an image network whose pixel grids hold many entries
    (:func:`note`; nothing for small requests, and nothing is inspected for them)."""
    pairs, name = n1 * n2, net.name
    if pairs < SLOW_QUADRATURE_PAIRS or not wanted(progress):
        return
    from .algebra.functions import GaussianExpectation

    numerical = any(expr.has(GaussianExpectation) for step in net.program.steps for _, expr in step.assignments)
    grid = net._largest_kernel if len(net.ir.input_shape) > 1 else 1
    if numerical:
        note(f"network {name}: numerical duals by quadrature on {n1} x {n2} input pairs: this can take "
             "minutes (docs/numerical-duals.md)", progress)
    elif grid > 1 and pairs * grid >= SLOW_IMAGE_ENTRIES:
        note(f"network {name}: {n1} x {n2} image pairs, {grid} grid entries each ({pairs * grid:.2g} in all): "
             "this can take a while", progress)


class _Bar:
    """The minimal built-in bar: ``desc: 37% |#######       | 15/40 tiles [12 s < 20 s]`` on stderr."""

    def __init__(self, total: int, initial: int, desc: str, stream=None, unit: str = "tile"):
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
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
                          f"{self.n}/{self.total} {self.unit}s [{elapsed:.0f} s{eta}]")
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


def tile_progress(progress: Progress, total: int, initial: int = 0, desc: str = "kernels", unit: str = "tile"):
    """An object with ``update(n=1)`` and ``close()`` for ``total`` steps (tiles, or ``unit``s),
    ``initial`` already done.

    Raises:
        TypeError: ``progress`` is none of None, a bool or a callable.
    """
    if callable(progress) and not isinstance(progress, bool):
        return _Callback(progress, total, initial)
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be None, True, False or a callable (done, total), not {progress!r}")
    show = progress if progress is not None else (total > 1 and wanted(None))
    if not show:
        return _Silent()
    try:
        from tqdm import tqdm
    except ImportError:
        return _Bar(total, initial, desc, unit=unit)
    size = {} if _sized() else {"ncols": 80, "nrows": 24}
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, **size)


def _sized() -> bool:
    """Whether stderr's terminal has a size (a pseudo-terminal may have 0 x 0: tqdm would draw nothing)."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return size.columns > 0 and size.lines > 0


class pair_progress:
    """Progress over the input pairs (or rows: ``unit``) of one evaluation, fed from worker threads:
    ``advance(n)`` after each block of n (the fused kernels, ntkdsl/codegen/fused_spatial.py, fused.py). Thread-safe;
    redraws (or calls the callable ``progress(done, total)``) at most every ``interval`` seconds and
    at the last pair. For ``progress`` None the bar appears only once the call has run ``delay``
    seconds and only where :func:`wanted` (short calls stay quiet); True shows it at once.
    ``active``: whether anything is shown at all (else the kernels need not call ``advance``)."""

    def __init__(self, progress: Progress, total: int, desc: str, delay: float = 1.0, interval: float = 0.1,
                 unit: str = "pair"):
        if progress is not None and not isinstance(progress, bool) and not callable(progress):
            raise TypeError(f"progress must be None, True, False or a callable (done, total), not {progress!r}")
        self.progress, self.total, self.desc, self.interval, self.unit = progress, total, desc, interval, unit
        self.active = total > 0 and (progress is True or (progress is None and wanted(None))
                                     or callable(progress))
        self.delay = delay if progress is None else 0.0
        self.start = self.last = time.monotonic()
        self.done = self.shown = 0
        self.bar = None
        self._lock = threading.Lock()

    def advance(self, n: int) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            if self.bar is None and now - self.start < self.delay:
                return  # a short call: no bar, not even at its end
            if self.done < self.total and now - self.last < self.interval:
                return
            if self.bar is None:
                self.bar = tile_progress(True if self.progress is None else self.progress, self.total,
                                         desc=self.desc, unit=self.unit)
            self.bar.update(self.done - self.shown)
            self.shown, self.last = self.done, now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class time_progress:
    """A bar over the integration time of an ODE, ``with time_progress(t_end, desc) as bar: ... bar.at(t)``:
    percent of ``t_end`` reached (solvers step back and forth; the bar shows the furthest time)."""

    def __init__(self, t_end: float, desc: str, progress: Progress = None):
        self.t_end, self.done = t_end, 0
        self.bar = tile_progress(progress, 100, desc=desc, unit="%") if t_end > 0 else _Silent()

    def __enter__(self) -> "time_progress":
        return self

    def at(self, t: float) -> None:
        percent = min(100, int(100 * t / self.t_end)) if self.t_end > 0 else 100
        if percent > self.done:
            self.bar.update(percent - self.done)
            self.done = percent

    def __exit__(self, *exc) -> None:
        self.bar.close()


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False

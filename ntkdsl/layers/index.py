"""``index[...]``: a Python subscript of the spatial axes (crop, stride, reverse, pick), as numpy reads
it (neural-tangents' Index on the spatial axes: ``index[1:5, ::-1]`` is Index[:, 1:5, ::-1, :]).

One entry per leading spatial axis (fewer entries keep the remaining axes whole); a slice keeps the
axis, an integer picks one pixel and drops the axis. Kernel (kernel-math.md §2): the same pixels
picked on both pixel axes of every kernel array; the layout is kept, no parameters, a Gaussian input
stays Gaussian.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

import sympy as sp

from ..algebra import spatial as ops
from ..algebra.state import KernelState
from ..errors import ArgumentSpecError, ShapeSpecError, Span
from ..ir.layer import Layer, span_field
from .arrays import namespace
from .registry import LayerRule, register
from .windows import spatial_input

Entry = object  # an int, or (start, stop, step) with None for a missing part


@dataclass(frozen=True)
class Index(Layer):
    """x[..., entries, ...] on the spatial axes."""

    entries: Tuple[Entry, ...]
    span: Optional[Span] = span_field()

    def picks(self, spatial) -> Tuple[Tuple[Tuple[int, ...], ...], Tuple[bool, ...]]:
        """(the picked pixels of each spatial axis, whether the axis is dropped); errors at the span."""
        if len(self.entries) > len(spatial):
            raise ShapeSpecError(f"index has {len(self.entries)} entries, but its input has {len(spatial)} spatial "
                                 f"dimension{'s' if len(spatial) != 1 else ''}", self.span)
        picks, drops = [], []
        for axis, n in enumerate(spatial):
            entry = self.entries[axis] if axis < len(self.entries) else (None, None, None)
            if isinstance(entry, tuple):
                chosen = tuple(range(*slice(*entry).indices(n)))
                if not chosen:
                    raise ShapeSpecError(f"index: the slice {_slice_text(entry)} of spatial axis {axis + 1} (size {n}) "
                                         "selects no pixel", self.span)
                picks.append(chosen)
                drops.append(False)
            else:
                if not -n <= entry < n:
                    raise ShapeSpecError(f"index: {entry} is out of range for spatial axis {axis + 1} of size {n}", self.span)
                picks.append((entry % n,))
                drops.append(True)
        return tuple(picks), tuple(drops)

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        spatial = spatial_input("index", in_shape, 0, self.span)
        picks, drops = self.picks(spatial)
        return tuple(len(p) for p, d in zip(picks, drops) if not d) + (in_shape[-1],)

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        picks, drops = self.picks(s.shape)
        shape = tuple(len(q) for q, d in zip(picks, drops) if not d)

        def picked(k):
            return ops.index(k, s.shape, picks, drops, s.layout)

        return KernelState(picked(s.cov1), picked(s.cov2), picked(s.nngp), picked(s.ntk), gaussian=s.gaussian,
                           width=s.width, shape=shape, layout=s.layout if shape else ops.DIAGONAL)

    def check(self) -> None:
        for entry in self.entries:
            ok = isinstance(entry, int) or (isinstance(entry, tuple) and len(entry) == 3 and entry[2] != 0 and
                                             all(v is None or isinstance(v, int) for v in entry))
            if not ok:
                raise ArgumentSpecError(f"index entries are integers or slices, got {entry!r}", self.span)

    def ends_fresh(self) -> Optional[bool]:
        return None  # a selection of a fresh affine output is as fresh

    def spatial_rank_after(self, rank: int) -> int:
        return rank - sum(1 for e in self.entries if not isinstance(e, tuple))

    def format(self, indent: str = "") -> str:
        return "index[" + ", ".join(str(e) if isinstance(e, int) else _slice_text(e) for e in self.entries) + "]"

    def forward(self, params, x):
        """x at the picked pixels. Cache: the input's shape."""
        picks, drops = self.picks(x.shape[1:-1])
        return _pick(x, picks, drops, 1), x.shape

    def backward(self, params, in_shape, g):
        """The adjoint: g placed back at the picked pixels of a zero array (picks never repeat)."""
        picks, drops = self.picks(in_shape[1:-1])
        xp = namespace(g)
        out = xp.zeros(g.shape[:2] + tuple(in_shape[1:]), dtype=g.dtype)
        grid = xp.ix_(*(xp.asarray(q) for q in picks))
        shape = tuple(len(q) for q in picks)
        out[(slice(None), slice(None)) + grid] = g.reshape(g.shape[:2] + shape + g.shape[-1:])
        return out


def _pick(a, picks, drops, first: int):
    xp = namespace(a)
    for axis, chosen in enumerate(picks):
        a = xp.take(a, xp.asarray(chosen), axis=first + axis)
    keep = tuple(size for i, size in enumerate(a.shape) if not (first <= i < first + len(drops) and drops[i - first]))
    return a.reshape(keep)


def _slice_text(entry) -> str:
    start, stop, step = ("" if v is None else str(v) for v in entry)
    return f"{start}:{stop}" + (f":{step}" if step else "")


register(LayerRule("index", (), lambda v, call: Index(call.subscript, call.span), subscript=True))

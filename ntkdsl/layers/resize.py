"""``resize(shape, method = linear | nearest, antialias = true)``: images resized to a new spatial shape
as jax.image.resize does it (neural-tangents' ImageResize), ``-1`` keeping an axis.

Resizing is linear and separable: along each resized axis the features become R·x with R of
:func:`ntkdsl.arraycode.spatial_maps.resize_matrix`, so every kernel array becomes R·K·Rᵀ on both
pixel axes (kernel-math.md §2). Linear resizing mixes pixels and needs all pixel pairs of its input;
nearest selects one pixel per output and keeps the layout. Parameter-free; a Gaussian input stays
Gaussian.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Optional, Tuple

import sympy as sp

from ..algebra import spatial as ops
from ..algebra.state import KernelState
from ..arraycode.spatial_maps import resize_matrix
from ..errors import ArgumentSpecError, Span
from ..ir.arguments import BOOLEANS, boolean, check_rank, MAX_WIDTH, REQUIRED, Spec, enum
from ..ir.layer import Layer, span_field
from .arrays import namespace
from .registry import LayerRule, register
from .windows import spatial_input, tuple_text

METHODS = ("linear", "nearest")


@dataclass(frozen=True)
class Resize(Layer):
    """Resize to ``size`` (one entry per spatial axis, −1 = unchanged) by ``method``."""

    size: Tuple[int, ...]
    method: str = "linear"
    antialias: bool = True
    span: Optional[Span] = span_field()

    def _target(self, spatial) -> Tuple[int, ...]:
        return tuple(n if m == -1 else m for n, m in zip(spatial, self.size))

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        spatial = spatial_input("resize", in_shape, len(self.size), self.span)
        return self._target(spatial) + (in_shape[-1],)

    def needs_full_input(self, full_output: bool) -> bool:
        return full_output or self.method == "linear"  # linear weights mix pixels: (p, p') pairs needed

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        size = self._target(s.shape)
        if self.method == "linear" and s.layout != ops.FULL and size != tuple(s.shape):  # pragma: no cover
            raise AssertionError("linear resize reached with a diagonal kernel: layout inference is wrong")

        def mapped(k):
            return ops.resize(k, s.shape, size, self.method, self.antialias, s.layout)

        return KernelState(mapped(s.cov1), mapped(s.cov2), mapped(s.nngp), mapped(s.ntk), gaussian=s.gaussian,
                           width=s.width, shape=size, layout=s.layout)

    def check(self) -> None:
        if self.method not in METHODS:
            raise ArgumentSpecError(f"unknown resize method '{self.method}' (one of {', '.join(METHODS)})", self.span)

    def ends_fresh(self) -> Optional[bool]:
        return None  # linear and parameter-free

    def format(self, indent: str = "") -> str:
        return f"resize({tuple_text(self.size)}, method = {self.method}, antialias = {BOOLEANS[self.antialias]})"

    def forward(self, params, x):
        """R·x along every resized axis. Cache: the input's spatial shape."""
        return _apply(self, x, x.shape[1:-1], 1, transpose=False), x.shape[1:-1]

    def backward(self, params, spatial, g):
        return _apply(self, g, spatial, 2, transpose=True)


def _apply(node, a, spatial, first: int, transpose: bool):
    """R (or Rᵀ) along each resized spatial axis of ``a``, axes counted from ``first``."""
    xp = namespace(a)
    for d, (n, m) in enumerate(zip(spatial, node._target(spatial))):
        if n == m:
            continue
        r = xp.asarray(_matrix(int(n), int(m), node.method, node.antialias))
        a = xp.moveaxis(xp.tensordot(r.T if transpose else r, a, axes=(1, first + d)), 0, first + d)
    return a


@lru_cache(maxsize=64)
def _matrix(n: int, m: int, method: str, antialias: bool):
    """:func:`ntkdsl.arraycode.spatial_maps.resize_matrix`, built once per axis length and method (read-only)."""
    r = resize_matrix(n, m, method, antialias)
    r.setflags(write=False)
    return r


def _sizes(low, v, span, name: str, env=()) -> Tuple[int, ...]:
    """A new spatial shape: one entry per spatial axis, each a positive integer or −1 (unchanged)."""
    values = v if isinstance(v, tuple) else (v,)
    out = []
    for value in values:
        n = low.as_number(value, span, env, f"each entry of {name} (a positive integer or -1)")
        if not (n.is_integer and (n > 0 or n == -1)):
            raise ArgumentSpecError(f"each entry of {name} must be a positive integer or -1 (keep), got {n}", span)
        if n > MAX_WIDTH:
            raise ArgumentSpecError(f"{name} entry {n} is too large (at most {MAX_WIDTH})", span)
        out.append(int(n))
    check_rank(low, len(out), span, name)
    return tuple(out)


def _build(v, call) -> Resize:
    return Resize(v["shape"], v["method"], v["antialias"], call.span)


register(LayerRule("resize", (
    Spec("shape", REQUIRED, _sizes),
    Spec("method", "linear", enum(METHODS)),
    Spec("antialias", True, boolean),
), _build))

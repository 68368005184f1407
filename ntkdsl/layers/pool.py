"""Pooling: ``avg_pool``/``sum_pool(window, stride = window, padding)`` and ``global_avg_pool``/
``global_sum_pool``. No parameters; every rule is linear in the kernel (kernel-math.md §2), and both
need all pixel pairs (p, p') of their input (an output pixel averages several input pixels). Zero
pads count in the average (neural-tangents' AvgPool, normalize_edges = False).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from math import prod
from typing import Mapping, Optional, Tuple

import sympy as sp

from ..algebra import spatial as ops
from ..algebra.masking import masks_active, unmasked_pool
from ..algebra.state import KernelState
from ..errors import ArgumentSpecError, Span
from ..ir.arguments import REQUIRED, Spec, enum, none_or, per_dimension
from ..ir.layer import Layer, span_field
from .arrays import namespace
from .finite import Params, current_keep
from .registry import LayerRule, register
from .windows import PADDINGS, check_window, geometry, pad, spatial_input, tap, tuple_text, unpad, windowed

POOL_MODES = ("avg", "sum")


@dataclass(frozen=True)
class Pool(Layer):
    """Average (``mode = 'avg'``) or sum pooling over a window, with strides and padding; no parameters."""

    mode: str
    window: Tuple[int, ...]
    stride: Tuple[int, ...]
    padding: str = "valid"
    span: Optional[Span] = span_field()

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        what = f"{self.mode}_pool"
        spatial = spatial_input(what, in_shape, len(self.window), self.span)
        return windowed(what, spatial, self.window, self.stride, self.padding, self.span) + (in_shape[-1],)

    def needs_full_input(self, full_output: bool) -> bool:
        return True  # an output pixel averages several input pixels: it needs their covariances (p, p')

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        """kernel-math.md §2: (1/|w|²)·Σ_{δ, δ' ∈ w} K(s·o + δ, s·o' + δ') (sum pooling: no division)."""
        _needs_full(s, self)

        def window(k):
            return ops.pool(k, s.shape, self.window, self.stride, self.padding, self.mode)

        shape = self.out_shape(s.shape + (s.width,))[:-1]
        return KernelState(window(s.cov1), window(s.cov2), window(s.nngp), window(s.ntk), gaussian=s.gaussian,
                           width=s.width, shape=shape, layout=ops.FULL)

    def check(self) -> None:
        check_window(self, self.window, self.format())
        if self.mode not in POOL_MODES:
            raise ArgumentSpecError(f"unknown pooling mode '{self.mode}'", self.span)

    def ends_fresh(self) -> Optional[bool]:
        return None  # linear and parameter-free: decided by the layers before it

    def format(self, indent: str = "") -> str:
        return f"{self.mode}_pool({tuple_text(self.window)}, stride = {tuple_text(self.stride)}, padding = {self.padding})"

    def forward(self, params, x):
        return pool_forward(self, params, x)

    def backward(self, params, cache, g):
        return pool_backward(self, params, cache, g)


@dataclass(frozen=True)
class GlobalPool(Layer):
    """Global average (``mode = 'avg'``) or sum pooling over all pixels: (*S, C) -> (C,)."""

    mode: str
    span: Optional[Span] = span_field()

    masking = "keep"  # pools over the unmasked pixel pairs (its masked rule); the output has no positions

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        spatial_input(f"global_{self.mode}_pool", in_shape, 0, self.span)
        return (in_shape[-1],)

    def needs_full_input(self, full_output: bool) -> bool:
        return True

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        """kernel-math.md §2: the mean (sum) of K(p, p') over all pixel pairs; with position masks over
        the unmasked pairs only (neural-tangents' _GlobalPool, linear.py:1756)."""
        _needs_full(s, self)
        if masks_active():
            m = lambda k, side: unmasked_pool(k, s.shape, self.mode, side)  # noqa: E731
            return KernelState(m(s.cov1, "cov1"), m(s.cov2, "cov2"), m(s.nngp, "pair"), m(s.ntk, "pair"),
                               gaussian=s.gaussian, width=s.width)
        g = lambda k: ops.global_mean(k, s.shape, self.mode)  # noqa: E731
        return KernelState(g(s.cov1), g(s.cov2), g(s.nngp), g(s.ntk), gaussian=s.gaussian, width=s.width)

    def check(self) -> None:
        if self.mode not in POOL_MODES:
            raise ArgumentSpecError(f"unknown pooling mode '{self.mode}'", self.span)

    def ends_fresh(self) -> Optional[bool]:
        return None

    def spatial_rank_after(self, rank: int) -> int:
        return 0

    def format(self, indent: str = "") -> str:
        return f"global_{self.mode}_pool"

    def forward(self, params, x):
        return global_pool_forward(self, params, x)

    def backward(self, params, cache, g):
        return global_pool_backward(self, params, cache, g)


def _needs_full(s: KernelState, layer) -> None:
    if s.layout != ops.FULL:  # pragma: no cover - layout inference guarantees it
        raise AssertionError(f"{type(layer).__name__} reached with a {s.layout} kernel: layout inference is wrong")


def pool_forward(node, params: Params, x):
    """Σ (avg: mean) of the window's pixels per channel; zero pads count in the average
    (neural-tangents' AvgPool, normalize_edges = False, as the analytic rule). Cache: the input shape."""
    spatial = x.shape[1:-1]
    geoms = geometry(spatial, node.window, node.stride, node.padding)
    padded = pad(x, 1, geoms, node.padding)
    taps = list(product(*(range(k) for k in node.window)))
    first, *rest = taps
    y = padded[tap(1, x.ndim, first, node.stride, geoms)].copy()
    for t in rest:
        y += padded[tap(1, x.ndim, t, node.stride, geoms)]
    if node.mode == "avg":
        y /= prod(node.window)
    return y, x.shape


def pool_backward(node, params: Params, in_shape, g):
    """The adjoint: every output's cotangent (/|w| for avg) added to the pixels of its window."""
    spatial = in_shape[1:-1]
    geoms = geometry(spatial, node.window, node.stride, node.padding)
    taps = list(product(*(range(k) for k in node.window)))
    spatial_pad = [n + lo + hi for n, (lo, hi, _) in zip(spatial, geoms)]
    xp = namespace(g)
    out = xp.zeros(tuple(g.shape[:2]) + tuple(spatial_pad) + (g.shape[-1],), dtype=g.dtype)
    for t in taps:
        out[tap(2, out.ndim, t, node.stride, geoms)] += g
    if node.mode == "avg":
        out /= prod(node.window)
    return unpad(out, 2, spatial, geoms, node.padding)


def global_pool_forward(node, params: Params, x):
    """The mean (sum) over all pixels per channel: (N, *S, C) -> (N, C); with position masks the mean over
    each point's n unmasked pixels (x is 0 at the others; neural-tangents' mean_and_var with the mask).
    Cache: (the input shape, the divisor: P, or n per point as (N, 1))."""
    axes = tuple(range(1, x.ndim - 1))
    keep = current_keep()
    count = prod(x.shape[1:-1]) if keep is None else keep.reshape(keep.shape[0], -1).sum(axis=1)[:, None]
    if node.mode == "sum":
        count = 1.0
    return x.sum(axis=axes) / count, (x.shape, count)


def global_pool_backward(node, params: Params, cache, g):
    """g (N, m, C) divided by the forward's divisor, copied to every pixel."""
    xp = namespace(g)
    in_shape, count = cache
    spatial = tuple(in_shape[1:-1])
    scale = 1.0 / count if xp.ndim(count) == 0 else (1.0 / count)[:, None]  # (N, 1, 1) per point
    g = g * scale
    shape = g.shape[:2] + (1,) * len(spatial) + g.shape[-1:]
    return xp.ascontiguousarray(xp.broadcast_to(g.reshape(shape), g.shape[:2] + spatial + g.shape[-1:]))



def _pool_rule(mode: str) -> LayerRule:
    def build(v, call) -> Pool:
        return Pool(mode, v["window"], v["stride"] or v["window"], v["padding"], call.span)

    return LayerRule(f"{mode}_pool", (Spec("window", REQUIRED, per_dimension), Spec("stride", None, none_or(per_dimension)),
                                      Spec("padding", "valid", enum(PADDINGS))), build)


for _mode in POOL_MODES:
    register(_pool_rule(_mode))
    register(LayerRule(f"global_{_mode}_pool", (), lambda v, call, mode=_mode: GlobalPool(mode, call.span)))

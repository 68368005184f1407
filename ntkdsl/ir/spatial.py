"""IR nodes of image and signal networks: conv, pooling, flatten, global pooling, layer norm.

Features have shape ``(*S, C)`` (channels last; ``S`` the spatial shape, any number of dimensions).
Each node carries, side by side, its output shape (with the shape errors, at its span), the layout
it needs of its input (kernel-math.md §1: pooling needs all pixel pairs (p, p'), the others only
what their output needs) and its kernel rule (kernel-math.md §2) written with the structural
functions of :mod:`ntkdsl.symbolic.spatial`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Dict, Mapping, Optional, Tuple

import sympy as sp

from ..errors import LimitSpecError, ShapeSpecError, Span
from ..symbolic import spatial as ops
from .geometry import window_geometry
from .nodes import KernelState, SamplerRules, affine_kernel, weight_parameters

_span = dict(default=None, compare=False, repr=False)

PADDINGS = ("valid", "same", "circular")
POOL_MODES = ("avg", "sum")


def _spatial_input(what: str, in_shape: Tuple[int, ...], rank: int, span) -> Tuple[int, ...]:
    """The spatial part of ``in_shape``; an error if it is a vector or has another rank."""
    if len(in_shape) == 1:
        raise ShapeSpecError(
            f"{what} needs an image or signal input (channels last, such as input = [32, 32, 3]), but its input is "
            f"a vector of {in_shape[0]} features", span)
    spatial = tuple(in_shape[:-1])
    if rank and len(spatial) != rank:
        raise ShapeSpecError(
            f"{what} has a {rank}-dimensional window, but its input has {len(spatial)} spatial dimension"
            f"{'s' if len(spatial) != 1 else ''} (shape {list(in_shape)})", span)
    return spatial


def _windowed(what: str, spatial, window, stride, padding, span) -> Tuple[int, ...]:
    """The output spatial shape of a sliding window; an error where it does not fit."""
    out = []
    for axis, (n, w, s) in enumerate(zip(spatial, window, stride)):
        if padding != "valid" and w > 2 * n - 1:
            raise LimitSpecError(
                f"{what}: the window ({w} along spatial axis {axis + 1}) is larger than 2·{n} − 1 = {2 * n - 1}, twice "
                f"its input ({n} pixels) less one: with padding = {padding}, its outer taps would only ever see "
                "padding", span)
        size = window_geometry(n, w, s, padding)[2]
        if size < 1:
            raise ShapeSpecError(
                f"{what}: the window ({w} along spatial axis {axis + 1}) is larger than its input ({n} pixels) "
                "with padding = valid, which leaves no output; use a smaller window or padding = same", span)
        out.append(size)
    return tuple(out)


@dataclass(frozen=True)
class Conv(SamplerRules):
    """A convolution with shared weights: ``channels`` outputs, a ``kernel_size`` filter, strides, padding.

    NTK parameterization: z = (σ_w/√fan_in)·W * x + σ_b·b, fan_in = C_in·Π kernel_size; standard:
    W ~ N(0, σ_w²/fan_in), b ~ N(0, σ_b²); ``b_std = None`` means no bias.
    """

    _finite = "spatial_layers.conv"  # finite-width rules: ntkdsl/sampler/spatial_layers.py

    channels: int
    kernel_size: Tuple[int, ...]
    stride: Tuple[int, ...]
    padding: str = "valid"
    w_std: sp.Expr = sp.S.One
    b_std: Optional[sp.Expr] = None
    parameterization: str = "ntk"
    span: Optional[Span] = field(**_span)

    def parameters(self) -> Dict[str, sp.Expr]:
        return weight_parameters(self.w_std, self.b_std)

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        spatial = _spatial_input("conv", in_shape, len(self.kernel_size), self.span)
        return _windowed("conv", spatial, self.kernel_size, self.stride, self.padding, self.span) + (self.channels,)

    def needs_full_input(self, full_output: bool) -> bool:
        return full_output  # output pair (p, p') reads input pairs (p + δ, p' + δ): same layout

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        """kernel-math.md §2: Σ' = σ_w²·C[Σ] + σ_b², Θ' = Σ' + σ_w²·C[Θ] (NTK) or
        fan_in·C[Σ] + σ_w²·C[Θ] + 1{bias} (standard), C the mean over the filter's shifted diagonal."""
        def taps(k):
            return ops.conv(k, s.shape, self.kernel_size, self.stride, self.padding, s.layout)

        # fan_in = C_in·Π kernel_size: neural-tangents' standard parameterization
        cov1, cov2, nngp, ntk = affine_kernel(s, p, self.parameterization, s.width * prod(self.kernel_size), taps)
        shape = self.out_shape(s.shape + (s.width,))[:-1]
        return KernelState(cov1, cov2, nngp, ntk, gaussian=True, width=self.channels, shape=shape, layout=s.layout)


@dataclass(frozen=True)
class Pool(SamplerRules):
    """Average (``mode = 'avg'``) or sum pooling over a window, with strides and padding; no parameters."""

    _finite = "spatial_layers.pool"  # finite-width rules: ntkdsl/sampler/spatial_layers.py

    mode: str
    window: Tuple[int, ...]
    stride: Tuple[int, ...]
    padding: str = "valid"
    span: Optional[Span] = field(**_span)

    def parameters(self) -> Dict[str, sp.Expr]:
        return {}

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        what = f"{self.mode}_pool"
        spatial = _spatial_input(what, in_shape, len(self.window), self.span)
        return _windowed(what, spatial, self.window, self.stride, self.padding, self.span) + (in_shape[-1],)

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


@dataclass(frozen=True)
class GlobalPool(SamplerRules):
    """Global average (``mode = 'avg'``) or sum pooling over all pixels: (*S, C) -> (C,)."""

    _finite = "spatial_layers.global_pool"  # finite-width rules: ntkdsl/sampler/spatial_layers.py

    mode: str
    span: Optional[Span] = field(**_span)

    def parameters(self) -> Dict[str, sp.Expr]:
        return {}

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        _spatial_input(f"global_{self.mode}_pool", in_shape, 0, self.span)
        return (in_shape[-1],)

    def needs_full_input(self, full_output: bool) -> bool:
        return True

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        """kernel-math.md §2: the mean (sum) of K(p, p') over all pixel pairs."""
        _needs_full(s, self)
        g = lambda k: ops.global_mean(k, s.shape, self.mode)  # noqa: E731
        return KernelState(g(s.cov1), g(s.cov2), g(s.nngp), g(s.ntk), gaussian=s.gaussian, width=s.width)


@dataclass(frozen=True)
class Flatten(SamplerRules):
    """All features in one vector: (*S, C) -> (P·C,), P = Π S."""

    _finite = "spatial_layers.flatten"  # finite-width rules: ntkdsl/sampler/spatial_layers.py

    span: Optional[Span] = field(**_span)

    def parameters(self) -> Dict[str, sp.Expr]:
        return {}

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        _spatial_input("flatten", in_shape, 0, self.span)
        return (prod(in_shape),)

    def needs_full_input(self, full_output: bool) -> bool:
        return False  # reads only the pairs (p, p)

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        """kernel-math.md §2: the mean of K(p, p) over the pixels.

        The flattened features are not one Gaussian process with this kernel (each pixel has its
        own), so an activation may not follow directly (``gaussian = False``, as neural-tangents'
        Flatten): elementwise layers commute with flatten and belong before it.
        """
        f = lambda k: ops.flatten(k, s.shape, s.layout)  # noqa: E731
        return KernelState(f(s.cov1), f(s.cov2), f(s.nngp), f(s.ntk), gaussian=False,
                           width=prod(s.shape) * s.width)


@dataclass(frozen=True)
class LayerNorm(SamplerRules):
    """Normalisation over the channels of each pixel (over the features of a vector), on Gaussian input."""

    _finite = "spatial_layers.layer_norm"  # finite-width rules: ntkdsl/sampler/spatial_layers.py

    eps: sp.Expr = sp.Rational(1, 10**12)
    span: Optional[Span] = field(**_span)

    def parameters(self) -> Dict[str, sp.Expr]:
        return {"eps": self.eps}

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return tuple(in_shape)

    def needs_full_input(self, full_output: bool) -> bool:
        return full_output

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        """kernel-math.md §2 (neural-tangents' LayerNorm): every field K at (q1, q2) becomes
        K/√((ε + q1)(ε + q2)), q1 and q2 the variances of its two pixels (cov1 -> cov1/(ε + cov1))."""
        eps = p["eps"]
        at = ops.dual_arguments(s)

        def normalised(k, q1, q2):
            return k / sp.sqrt((eps + q1) * (eps + q2))

        nngp = normalised(s.nngp, *at["nngp"][:2])
        ntk = normalised(s.ntk, *at["nngp"][:2])
        cov1 = normalised(s.cov1, *at["cov1"][:2])
        cov2 = normalised(s.cov2, *at["cov2"][:2])
        return KernelState(cov1, cov2, nngp, ntk, gaussian=s.gaussian, width=s.width, shape=s.shape, layout=s.layout)


def _needs_full(s: KernelState, layer) -> None:
    if s.layout != ops.FULL:  # pragma: no cover - layout inference guarantees it
        raise AssertionError(f"{type(layer).__name__} reached with a {s.layout} kernel: layout inference is wrong")


SPATIAL_LAYERS = (Conv, Pool, GlobalPool, Flatten, LayerNorm)

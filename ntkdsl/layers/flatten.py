"""``flatten``: all features in one vector, (*S, C) -> (P·C,), pixels major and channels minor
(kernel-math.md §2: the kernel is the mean of K(p, p) over the pixels)."""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Mapping, Optional, Tuple

import sympy as sp

from ..algebra import spatial as ops
from ..algebra.masking import masked, masks_active
from ..algebra.state import KernelState
from ..errors import Span
from ..ir.layer import Layer, span_field
from .registry import LayerRule, register
from .windows import spatial_input


@dataclass(frozen=True)
class Flatten(Layer):
    """All features in one vector: (*S, C) -> (P·C,), P = Π S."""

    masking = "keep"  # the mean over all P pixels, masked ones 0 (neural-tangents' Flatten: its input is masked)
    span: Optional[Span] = span_field()

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        spatial_input("flatten", in_shape, 0, self.span)
        return (prod(in_shape),)

    def needs_full_input(self, full_output: bool) -> bool:
        return False  # reads only the pairs (p, p)

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        """kernel-math.md §2: the mean of K(p, p) over the pixels.

        The flattened features are not one Gaussian process with this kernel (each pixel has its
        own), so an activation may not follow directly (``gaussian = False``, as neural-tangents'
        Flatten): elementwise layers commute with flatten and belong before it.
        """
        f = lambda k, side: ops.flatten(k, s.shape, s.layout)  # noqa: E731
        if masks_active():  # masked positions count as 0 (an activation before may leave σ(0)² there)
            f = lambda k, side: ops.flatten(masked(k, s.shape, s.layout, side), s.shape, s.layout)  # noqa: E731
        return KernelState(f(s.cov1, "cov1"), f(s.cov2, "cov2"), f(s.nngp, "pair"), f(s.ntk, "pair"), gaussian=False,
                           width=prod(s.shape) * s.width)

    def verified(self, shape, gaussian, why, check):
        return False, ("the output of flatten, whose features each have their own pixel's kernel (not one Gaussian process; "
                       "elementwise layers commute with flatten: put the activation before it)")

    def ends_fresh(self) -> Optional[bool]:
        return None

    def spatial_rank_after(self, rank: int) -> int:
        return 0

    def format(self, indent: str = "") -> str:
        return "flatten"

    def forward(self, params, x):
        """(N, *S, C) -> (N, P·C), pixels major and channels minor (C order). Cache: the input shape."""
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, params, in_shape, g):
        return g.reshape(g.shape[:2] + tuple(in_shape[1:]))


register(LayerRule("flatten", (), lambda v, call: Flatten(call.span)))

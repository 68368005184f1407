"""``dropout(rate)``: neural-tangents' ``Dropout(rate, mode='train')``, the training-mode kernel of
inverted dropout, where ``rate`` is the KEEP probability (0 < rate ≤ 1; jax's stax convention).

Finite width: y = m ⊙ x / rate with m ~ Bernoulli(rate) i.i.d. per point, pixel and channel, drawn
afresh at every forward pass (:func:`ntkdsl.layers.finite.mask_rng`), so the two factors of K(x, x)
share a mask and two different points have independent ones. With f = 1/rate, E[m·m′]/rate² is f for
one mask (the same point at the same pixel and channel) and 1 for independent ones (kernel-math.md §2):

    Σ′(x, x′)(p, p′) = Σ(x, x′)(p, p′)·(1 + (f − 1)·δ(x, x′)·δ(p, p′)),   Θ′ likewise,

δ(x, x′) the same-point indicator of the request (:mod:`ntkdsl.algebra.points`: by index, as
neural-tangents' ``x1_is_x2``), and each variance Σ(x, x)(p, p′) (cov1, cov2) times f on its pixel
diagonal p = p′ only (neural-tangents' ``_diag_mul``). The output is not a Gaussian process: an
activation right after it is refused (as neural-tangents does), and so is dropout on the network input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import sympy as sp

from ..algebra import spatial as ops
from ..algebra.functions import number
from ..algebra.points import SAME_POINT
from ..algebra.state import KernelState
from ..errors import ArgumentSpecError, Span, StructureSpecError
from ..ir.arguments import REQUIRED, Spec, real
from ..ir.layer import Layer, span_field
from ..ir.printer import format_value
from .arrays import namespace
from .finite import mask_rng
from .registry import LayerRule, register


def _is_probability(x) -> bool:
    """0 < x ≤ 1 for an exact number."""
    x = number(x)
    return bool(x.is_number and 0 < x <= 1)


def keep_probability(low, v, span, name: str, env=()) -> sp.Expr:
    """A probability of keeping a feature: 0 < rate ≤ 1."""
    x = real(low, v, span, name, env)
    if not _is_probability(x):
        raise ArgumentSpecError(f"{name} is the probability of keeping a feature (as neural-tangents' Dropout) and "
                                f"must satisfy 0 < {name} <= 1, got {x}", span)
    return x


@dataclass(frozen=True)
class Dropout(Layer):
    """Inverted dropout in training mode; ``rate`` the keep probability."""

    masking = "keep"  # scales entries: zeros stay zeros (neural-tangents: remask_kernel=False)
    rate: sp.Expr = sp.S.Half
    span: Optional[Span] = span_field()

    entrywise = True  # each entry from its own (x, x′) entry and the pair's same-point indicator

    def check(self) -> None:
        if not _is_probability(self.rate):
            raise ArgumentSpecError(f"dropout's rate must satisfy 0 < rate <= 1, got {self.rate}", self.span)

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        """Each variance times f on the pixel diagonal, Σ and Θ times f where a point meets itself at one pixel."""
        extra = 1 / number(self.rate) - 1  # f − 1
        if s.shape and s.layout == ops.FULL:
            def boost(k):  # (f − 1)·δ(p, p′)·K: only the pixel diagonal gains the factor
                return extra * ops.embed(ops.diagonal(k, s.shape), s.shape)
        else:
            def boost(k):
                return extra * k
        cov1, cov2 = s.cov1 + boost(s.cov1), s.cov2 + boost(s.cov2)
        nngp, ntk = (k + SAME_POINT * boost(k) for k in (s.nngp, s.ntk))
        return KernelState(cov1, cov2, nngp, ntk, gaussian=False, width=s.width, shape=s.shape, layout=s.layout)

    def verified(self, shape, gaussian, why, check):
        if why.startswith("the network input"):
            raise StructureSpecError(
                "dropout cannot act on the network input: its kernel x·x'/d is not a layer's output (neural-tangents "
                "fails there too); put dropout after an activation and before an affine layer", self.span)
        return False, "the output of dropout (a product with a random mask, not a Gaussian process)"

    def format(self, indent: str = "") -> str:
        return f"dropout(rate = {format_value(self.rate)})"

    def forward(self, params, x):
        """y = m ⊙ x / rate, m ~ Bernoulli(rate) i.i.d. per entry, fresh each pass. Cache: m / rate."""
        xp = namespace(x)
        rate = float(self.rate)
        scale = (mask_rng().random(x.shape) < rate) / rate
        scale = xp.asarray(scale)
        return x * scale, scale

    def backward(self, params, cache, g):
        """∂y/∂x = m / rate, entry by entry: g·(m / rate) on each of the m cotangents."""
        return g * cache[:, None]


def _build(v, call) -> Dropout:
    return Dropout(v["rate"], call.span)


register(LayerRule("dropout", (Spec("rate", REQUIRED, keep_probability),), _build))

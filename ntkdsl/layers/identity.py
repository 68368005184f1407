"""``identity``: the layer that changes nothing (kernel and forward rule: the input itself)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Optional

import sympy as sp

from ..algebra.state import KernelState
from ..errors import Span
from ..ir.layer import Layer, span_field
from .registry import LayerRule, register


@dataclass(frozen=True)
class Identity(Layer):
    """The no-op layer."""

    masking = "keep"
    span: Optional[Span] = span_field()

    transparent = True
    entrywise = True

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        return replace(s, nngp_dot=None)

    def ends_fresh(self) -> Optional[bool]:
        return None  # decided by the layers before it

    def format(self, indent: str = "") -> str:
        return "identity"

    def forward(self, params, x):
        return x, None

    def backward(self, params, cache, g):
        return g


register(LayerRule("identity", (), lambda v, call: Identity(call.span)))

"""``layer_norm(eps = 1e-12)``: normalisation over the channels of each pixel (the features of a
vector), on Gaussian input (neural-tangents' LayerNorm(axis = -1); kernel-math.md §2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional

import sympy as sp

from ..algebra import spatial as ops
from ..algebra.state import KernelState
from ..errors import Span
from ..ir.arguments import Spec, positive_real
from ..ir.layer import Layer, span_field
from ..ir.printer import format_value
from .arrays import namespace
from .finite import Params
from .registry import LayerRule, register


@dataclass(frozen=True)
class LayerNorm(Layer):
    """Normalisation over the channels of each pixel (over the features of a vector), on Gaussian input."""

    eps: sp.Expr = sp.Rational(1, 10**12)
    span: Optional[Span] = span_field()

    def parameters(self) -> Dict[str, sp.Expr]:
        return {"eps": self.eps}

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

    def gaussian_input_needed(self) -> Optional[str]:
        return "layer_norm needs a Gaussian input (kernel-math.md §1: put it right after dense or conv)"

    def format(self, indent: str = "") -> str:
        return f"layer_norm(eps = {format_value(self.eps)})"

    def forward(self, params, x):
        return layer_norm_forward(self, params, x)

    def backward(self, params, cache, g):
        return layer_norm_backward(self, params, cache, g)


def layer_norm_forward(node, params: Params, x):
    """y = (z − mean_c z)/√(ε + var_c z) over the channels (last axis) of each pixel, as
    neural-tangents' LayerNorm(axis = -1); its kernel rule K/√((ε + q1)(ε + q2)) (kernel-math.md §2)
    is the wide limit, where mean_c z → 0 and var_c z → q. Cache: (y, √(ε + var))."""
    mean = x.mean(axis=-1, keepdims=True)
    d = x - mean
    s = (float(node.eps) + (d * d).mean(axis=-1, keepdims=True)) ** 0.5
    y = d / s
    return y, (y, s)


def layer_norm_backward(node, params: Params, cache, g):
    """∂y_i/∂z_j = (δ_ij − 1/n − y_i·y_j/n)/s, so g_in = (g − mean_c g − y·mean_c(g·y))/s."""
    y, s = cache
    xp = namespace(g)
    y, s = xp.expand_dims(y, 1), xp.expand_dims(s, 1)
    return (g - g.mean(axis=-1, keepdims=True) - y * (g * y).mean(axis=-1, keepdims=True)) / s



register(LayerRule("layer_norm", (Spec("eps", sp.Rational(1, 10**12), positive_real),),
                   lambda v, call: LayerNorm(v["eps"], call.span)))

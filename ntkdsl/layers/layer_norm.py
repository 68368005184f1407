"""``layer_norm(axes = channels | spatial_and_channels, eps = 1e-12)``: normalisation over the channels
of each pixel (the features of a vector), or over all pixels and channels of each input, on Gaussian
input (neural-tangents' LayerNorm(axis = -1), LayerNorm(axis = (1, ..., -1)); kernel-math.md §2)."""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Dict, Mapping, Optional

import sympy as sp

from ..algebra import spatial as ops
from ..algebra.masking import masks_active, unmasked_mean
from ..algebra.state import KernelState
from ..errors import ArgumentSpecError, Span
from ..ir.arguments import Spec, enum, positive_real
from ..ir.layer import Layer, span_field
from ..ir.printer import format_value
from .arrays import namespace
from .finite import Params, current_keep
from .registry import LayerRule, register

AXES = ("channels", "spatial_and_channels")


@dataclass(frozen=True)
class LayerNorm(Layer):
    """Normalisation over the channels of each pixel (over the features of a vector), or over every
    pixel and channel of an input (``axes = "spatial_and_channels"``), on Gaussian input."""

    eps: sp.Expr = sp.Rational(1, 10**12)
    axes: str = "channels"
    span: Optional[Span] = span_field()

    masking = "keep"  # K/√(…): zeros stay zeros (neural-tangents: remask_kernel=False)

    def parameters(self) -> Dict[str, sp.Expr]:
        return {"eps": self.eps}

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        """kernel-math.md §2 (neural-tangents' LayerNorm): every field K at (q1, q2) becomes
        K/√((ε + q1)(ε + q2)), q1 and q2 the variances of its two pixels (cov1 -> cov1/(ε + cov1));
        over pixels and channels, q the input's mean variance over its pixels, mean_p Σ(x, x)(p, p) (with
        position masks over its unmasked pixels, neural-tangents' mean_and_var, requirements.py:1104)."""
        eps = p["eps"]
        if self.axes == "spatial_and_channels" and s.shape and masks_active():
            m1, m2 = (unmasked_mean(k, s.shape, s.layout, side) for k, side in ((s.cov1, "cov1"), (s.cov2, "cov2")))
            at = {"nngp": (m1, m2), "cov1": (m1, m1), "cov2": (m2, m2)}
        elif self.axes == "spatial_and_channels" and s.shape:
            m1, m2 = (ops.flatten(k, s.shape, s.layout) for k in (s.cov1, s.cov2))
            at = {"nngp": (m1, m2), "cov1": (m1, m1), "cov2": (m2, m2)}
        else:
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

    def check(self) -> None:
        if self.axes not in AXES:
            raise ArgumentSpecError(f"unknown layer_norm axes '{self.axes}' (one of {', '.join(AXES)})", self.span)

    def format(self, indent: str = "") -> str:
        return f"layer_norm(axes = {self.axes}, eps = {format_value(self.eps)})"

    def forward(self, params, x):
        return layer_norm_forward(self, params, x)

    def backward(self, params, cache, g):
        return layer_norm_backward(self, params, cache, g)


def _axes(node, ndim: int, lead: int):
    """The normalised axes of an array with ``lead`` leading axes (batch, or batch and m) and ``ndim`` in all."""
    return (ndim - 1,) if node.axes == "channels" else tuple(range(lead, ndim))


def layer_norm_forward(node, params: Params, x):
    """y = (z − mean z)/√(ε + var z) over the channels (last axis) of each pixel, or over all
    non-batch axes, as neural-tangents' LayerNorm; its kernel rule (kernel-math.md §2) is the wide
    limit, where mean z → 0 and var z → q (its mean over pixels). With position masks the mean and
    variance over space run over the n unmasked pixels (z is 0 at the others; neural-tangents'
    mean_and_var with the mask). Cache: (y, √(ε + var), the count n·C of the normalised entries)."""
    axes = _axes(node, x.ndim, 1)
    keep = current_keep() if node.axes == "spatial_and_channels" and x.ndim > 2 else None
    if keep is None:
        count = prod(x.shape[a] for a in axes)
        w = 1.0
    else:
        w = keep.reshape(keep.shape + (1,))
        count = (keep.reshape(keep.shape[0], -1).sum(axis=1) * x.shape[-1]).reshape((-1,) + (1,) * (x.ndim - 1))
    mean = x.sum(axis=axes, keepdims=True) / count
    d = x - mean
    s = (float(node.eps) + (w * d * d).sum(axis=axes, keepdims=True) / count) ** 0.5
    y = d / s
    return y, (y, s, count)


def layer_norm_backward(node, params: Params, cache, g):
    """∂y_i/∂z_j = (δ_ij − 1/n − y_i·y_j/n)/s over the n normalised entries, so
    g_in = (g − mean g − y·mean(g·y))/s, means over the normalised axes (with masks over the unmasked
    entries: g is 0 at masked positions, so the sums over all of them are those over the unmasked)."""
    y, s, count = cache
    xp = namespace(g)
    y, s = xp.expand_dims(y, 1), xp.expand_dims(s, 1)
    count = count if xp.ndim(count) == 0 else xp.expand_dims(count, 1)
    axes = _axes(node, g.ndim, 2)
    mean = lambda a: a.sum(axis=axes, keepdims=True) / count  # noqa: E731
    return (g - mean(g) - y * mean(g * y)) / s


register(LayerRule("layer_norm", (Spec("axes", "channels", enum(AXES)), Spec("eps", sp.Rational(1, 10**12), positive_real)),
                   lambda v, call: LayerNorm(v["eps"], v["axes"], call.span)))

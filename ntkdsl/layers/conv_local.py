"""``conv_local(channels, kernel, stride = 1, padding, w_std, b_std, parameterization)``: a locally
connected layer, a convolution whose filter and bias are drawn afresh at every output position
(neural-tangents' ConvLocal).

Kernel (kernel-math.md §2): at a pixel pair (p, p) it is conv's, σ_w²·C[Σ] + σ_b² with C the mean over
the filter's shifted diagonal; between different output pixels it is 0 (independent weights and
biases), so it reads only the diagonal of its input and, where a later layer needs all pixel pairs,
its output is that diagonal placed on the pixel diagonal of a full array (:func:`ntkdsl.algebra.spatial.embed`).
Finite width: weights (*O, *kernel, C_in, C_out), biases (*O, C_out); z(p) = s_w·W(p)·patch(p) + s_b·b(p).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from math import prod
from typing import ClassVar, Mapping

import numpy as np
import sympy as sp

from ..algebra import spatial as ops
from ..algebra.state import KernelState, affine_kernel
from .arrays import namespace
from .conv import Conv, _patches, register_windowed
from .dense import dense_scales
from .finite import Params
from .windows import geometry, scatter_taps, unpad


@dataclass(frozen=True)
class ConvLocal(Conv):
    """A convolution with unshared weights: ``channels`` outputs, a ``kernel_size`` filter per position."""

    keyword: ClassVar[str] = "conv_local"

    def needs_full_input(self, full_output: bool) -> bool:
        return False  # output pairs (p, p') with p ≠ p' are 0 whatever the input: only (p, p) is read

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        """conv's rule on the diagonal layout, then δ(p, p')·K(p) in the full layout."""
        s = ops.to_layout(s, ops.DIAGONAL)

        def taps(k):
            return ops.conv(k, s.shape, self.kernel_size, self.stride, self.padding, ops.DIAGONAL)

        fields = affine_kernel(s, p, self.parameterization, s.width * prod(self.kernel_size), taps)
        shape = self.out_shape(s.shape + (s.width,))[:-1]
        cov1, cov2, nngp, ntk = (ops.embed(k, shape) for k in fields)
        return KernelState(cov1, cov2, nngp, ntk, gaussian=True, width=self.channels, shape=shape, layout=ops.FULL)

    def init_params(self, rng, in_shape):
        """W of shape (*O, *kernel, C_in, C_out) and b (*O, C_out): every output position its own."""
        out_shape = self.out_shape(tuple(in_shape))
        fan_in = in_shape[-1] * prod(self.kernel_size)
        std_w, std_b = 1.0, 1.0
        if self.parameterization == "standard":
            std_w = float(self.w_std) / np.sqrt(fan_in)
            std_b = float(self.b_std) if self.b_std is not None else 0.0
        positions = tuple(out_shape[:-1])
        params = {"w": std_w * rng.standard_normal(positions + tuple(self.kernel_size) + (in_shape[-1], self.channels))}
        if self.b_std is not None:
            params["b"] = std_b * rng.standard_normal(positions + (self.channels,))
        return params, out_shape

    def forward(self, params, x):
        """z(p) = s_w·W(p)·patch(p) + s_b·b(p). Cache: the patches (N, *O, F) and the input shape."""
        w, scales = _weights(self, params)
        patches = _patches(self, x)
        xp = namespace(x)
        n = x.shape[0]
        z = scales[0] * xp.einsum("npf,pfc->npc", patches.reshape(n, w.shape[0], -1), w, optimize=True)
        if "b" in params:
            z += scales[1] * params["b"].reshape(w.shape[0], -1)
        return z.reshape(patches.shape[:-1] + (w.shape[-1],)), (patches, x.shape)

    def backward(self, params, cache, g):
        """s_w·W(p)ᵀ·g(p) spread back over each output's patch (col2im), then unpadded."""
        patches, in_shape = cache
        w, (s_w, _) = _weights(self, params)
        spatial, c_in = in_shape[1:-1], in_shape[-1]
        n, m = g.shape[:2]
        taps = list(product(*(range(k) for k in self.kernel_size)))
        gp = s_w * namespace(g).einsum("nmpc,pfc->nmpf", g.reshape(n, m, w.shape[0], -1), w, optimize=True)
        gp = gp.reshape(g.shape[:-1] + (len(taps), c_in))
        geoms = geometry(spatial, self.kernel_size, self.stride, self.padding)
        spatial_pad = [size + lo + hi for size, (lo, hi, _) in zip(spatial, geoms)]
        return unpad(scatter_taps(gp, 2, spatial_pad, taps, self.stride, geoms, g.shape[:2], c_in), 2, spatial, geoms,
                     self.padding)

    def param_grads(self, params, cache, g, per_example=False):
        """∂/∂W(p) = s_w·patch(p) ⊗ g(p), ∂/∂b(p) = s_b·g(p): each position only its own."""
        patches, _ = cache
        w, (s_w, s_b) = _weights(self, params)
        xp = namespace(g)
        n, m = g.shape[:2]
        a, d = patches.reshape(n, w.shape[0], -1), g.reshape(n, m, w.shape[0], -1)
        if per_example:
            out = {"w": (s_w * xp.einsum("npf,nmpc->nmpfc", a, d, optimize=True)).reshape((n, m) + params["w"].shape)}
            if "b" in params:
                out["b"] = (s_b * d).reshape((n, m) + params["b"].shape)
            return out
        out = {"w": (s_w * xp.einsum("npf,nmpc->pfc", a, d, optimize=True)).reshape(params["w"].shape)}
        if "b" in params:
            out["b"] = (s_b * d.sum(axis=(0, 1))).reshape(params["b"].shape)
        return out

    def ntk_terms(self, params, cache1, g1, cache2, g2, trace=True):
        """Σ_p [s_w²·(patch(x, p)·patch(x′, p)) + s_b²·1{bias}]·(δ(x, p)·δ(x′, p)): the dense rule of
        kernel-math.md §5 at each output position, summed over positions (no pair of different ones)."""
        w, (s_w, s_b) = _weights(self, params)
        xp = namespace(g1)
        n1, n2, m = g1.shape[0], g2.shape[0], g1.shape[1]
        a1, a2 = cache1[0].reshape(n1, w.shape[0], -1), cache2[0].reshape(n2, w.shape[0], -1)
        d1, d2 = g1.reshape(n1, m, w.shape[0], -1), g2.reshape(n2, m, w.shape[0], -1)
        a = s_w**2 * xp.einsum("apf,bpf->abp", a1, a2, optimize=True)
        if "b" in params:
            a += s_b**2
        if trace:
            return xp.einsum("abp,aipc,bipc->ab", a, d1, d2, optimize=True)
        return xp.einsum("abp,aipc,bjpc->abij", a, d1, d2, optimize=True)


def _weights(node, params: Params):
    """W as (P, F, C) (positions, fan-in, outputs) and the scales (s_w, s_b) of kernel-math.md §2."""
    w = params["w"]
    fan_in = prod(w.shape[len(node.kernel_size) + len(node.stride):-1]) * prod(node.kernel_size)
    positions = prod(w.shape[:len(node.stride)])
    return w.reshape(positions, fan_in, w.shape[-1]), dense_scales(node, fan_in)


register_windowed(ConvLocal)

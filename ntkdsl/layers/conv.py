"""``conv(channels, kernel, stride = 1, padding = valid | same | circular, w_std, b_std, parameterization)``:
a convolution with shared weights, channels last, any number of spatial dimensions.

NTK parameterization: z = (σ_w/√fan_in)·W * x + σ_b·b, fan_in = C_in·Π kernel; standard:
W ~ N(0, σ_w²/fan_in), b ~ N(0, σ_b²) (neural-tangents' Conv). Kernel rule kernel-math.md §2 on the
structural operation :class:`ntkdsl.algebra.spatial.conv_taps`; finite-width rules §5 (im2col).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from math import prod
from typing import ClassVar, Dict, Mapping, Optional, Tuple

import numpy as np
import sympy as sp

from ..algebra import spatial as ops
from ..algebra.state import KernelState, affine_kernel
from ..errors import Span
from ..ir.arguments import FROM_NETWORK, PARAMETERIZATIONS, REQUIRED, Spec, enum, per_dimension, positive_int, std, std_or_none
from ..ir.layer import Layer, span_field
from .arrays import namespace
from .dense import check_affine, dense_scales, weight_parameters, weight_text
from .finite import Params
from .registry import LayerRule, register
from .windows import PADDINGS, check_window, geometry, pad, scatter_taps, spatial_input, tap, tuple_text, unpad, windowed


@dataclass(frozen=True)
class Conv(Layer):
    """A convolution with shared weights: ``channels`` outputs, a ``kernel_size`` filter, strides, padding.

    NTK parameterization: z = (σ_w/√fan_in)·W * x + σ_b·b, fan_in = C_in·Π kernel_size; standard:
    W ~ N(0, σ_w²/fan_in), b ~ N(0, σ_b²); ``b_std = None`` means no bias. The windowed affine layers
    (conv_local, conv_transpose) subclass it: same arguments, facts and text, their own rules.
    """

    keyword: ClassVar[str] = "conv"

    channels: int
    kernel_size: Tuple[int, ...]
    stride: Tuple[int, ...]
    padding: str = "valid"
    w_std: sp.Expr = sp.S.One
    b_std: Optional[sp.Expr] = None
    parameterization: str = "ntk"
    span: Optional[Span] = span_field()

    def parameters(self) -> Dict[str, sp.Expr]:
        return weight_parameters(self.w_std, self.b_std)

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        spatial = spatial_input(self.keyword, in_shape, len(self.kernel_size), self.span)
        return windowed(self.keyword, spatial, self.kernel_size, self.stride, self.padding, self.span) + (self.channels,)

    @property
    def masking(self) -> Optional[str]:
        """Position masks pass a per-position conv (kernel 1, stride 1), remasked after it as
        neural-tangents' Conv; wider windows refuse them (NT keeps each window's centre-tap mask)."""
        per_position = self.keyword == "conv" and set(self.kernel_size) == {1} and set(self.stride) == {1}
        return "remask" if per_position else None

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

    def check(self) -> None:
        check_affine(self, self.channels, "channels")
        check_window(self, self.kernel_size, self.format())

    def verified(self, shape, gaussian, why, check):
        return True, ""

    def ends_fresh(self) -> Optional[bool]:
        return True

    def format(self, indent: str = "") -> str:
        args = [str(self.channels), f"kernel = {tuple_text(self.kernel_size)}", f"stride = {tuple_text(self.stride)}",
                f"padding = {self.padding}"] + weight_text(self)
        return f"{self.keyword}({', '.join(args)})"

    def init_params(self, rng, in_shape):
        return conv_init(self, rng, in_shape)

    def forward(self, params, x):
        return conv_forward(self, params, x)

    def backward(self, params, cache, g):
        return conv_backward(self, params, cache, g)

    def param_grads(self, params, cache, g, per_example=False):
        return conv_param_grads(self, params, cache, g, per_example)

    def ntk_terms(self, params, cache1, g1, cache2, g2, trace=True):
        return conv_ntk_terms(self, params, cache1, g1, cache2, g2, trace)


def conv_init(node, rng: np.random.Generator, in_shape: Tuple[int, ...]):
    """W of shape (*kernel, C_in, C_out) (neural-tangents' HWIO) and, with a bias, b of shape (C_out,).

    NTK parameterization: W, b ~ N(0, 1); standard: W ~ N(0, σ_w²/fan_in), b ~ N(0, σ_b²),
    fan_in = C_in·Π kernel (kernel-math.md §2, §5).
    """
    out_shape = node.out_shape(tuple(in_shape))
    c_in = in_shape[-1]
    fan_in = c_in * prod(node.kernel_size)
    std_w, std_b = 1.0, 1.0
    if node.parameterization == "standard":
        std_w = float(node.w_std) / np.sqrt(fan_in)
        std_b = float(node.b_std) if node.b_std is not None else 0.0
    params = {"w": std_w * rng.standard_normal(tuple(node.kernel_size) + (c_in, node.channels))}
    if node.b_std is not None:
        params["b"] = std_b * rng.standard_normal(node.channels)
    return params, out_shape


def _conv_scales(node, w) -> Tuple[float, float]:
    """(s_w, s_b) as for dense with n_in = fan_in = C_in·Π kernel (kernel-math.md §2)."""
    return dense_scales(node, prod(w.shape[:-1]))


def _patches(node, x):
    """(N, *S, C) -> the input patch under the filter at each output position, (N, *O, T·C):
    T = Π kernel taps in C order, then channels, matching ``w.reshape(T·C_in, C_out)``."""
    xp = namespace(x)
    spatial = x.shape[1:-1]
    geoms = geometry(spatial, node.kernel_size, node.stride, node.padding)
    padded = pad(x, 1, geoms, node.padding)
    taps = list(product(*(range(k) for k in node.kernel_size)))
    cols = xp.stack([padded[tap(1, x.ndim, t, node.stride, geoms)] for t in taps], axis=-2)
    return cols.reshape(cols.shape[:-2] + (-1,))


def conv_forward(node, params: Params, x):
    """z(p) = s_w·W·patch(p) + s_b·b at every output position p (im2col, one GEMM).

    The cache holds the patches (N, *O, F), F = fan_in, and the input shape.
    """
    w = params["w"]
    s_w, s_b = _conv_scales(node, w)
    patches = _patches(node, x)
    z = patches.reshape(-1, patches.shape[-1]) @ w.reshape(-1, w.shape[-1])
    z *= s_w
    if "b" in params:
        z += s_b * params["b"]
    return z.reshape(patches.shape[:-1] + (w.shape[-1],)), (patches, x.shape)


def conv_backward(node, params: Params, cache, g):
    """The input cotangent: s_w·Wᵀ·g(p) spread back over each output's patch (col2im), then unpadded."""
    patches, in_shape = cache
    w = params["w"]
    s_w, _ = _conv_scales(node, w)
    spatial, c_in = in_shape[1:-1], in_shape[-1]
    taps = list(product(*(range(k) for k in node.kernel_size)))
    gp = g.reshape(-1, w.shape[-1]) @ w.reshape(-1, w.shape[-1]).T  # one GEMM: (N·m·P, F)
    gp *= s_w
    gp = gp.reshape(g.shape[:-1] + (len(taps), c_in))
    geoms = geometry(spatial, node.kernel_size, node.stride, node.padding)
    spatial_pad = [n + lo + hi for n, (lo, hi, _) in zip(spatial, geoms)]
    full = scatter_taps(gp, 2, spatial_pad, taps, node.stride, geoms, g.shape[:2], c_in)
    return unpad(full, 2, spatial, geoms, node.padding)


def conv_param_grads(node, params: Params, cache, g, per_example: bool = False) -> Params:
    """∂/∂W = s_w·Σ_p patch(p) ⊗ g(p) (shared weights sum over output positions), ∂/∂b = s_b·Σ_p g(p)."""
    patches, _ = cache
    xp = namespace(g)
    w = params["w"]
    s_w, s_b = _conv_scales(node, w)
    n, m, c = g.shape[0], g.shape[1], w.shape[-1]
    a = patches.reshape(n, -1, patches.shape[-1])  # (N, P, F)
    d = g.reshape(n, m, -1, c)  # (N, m, P, C)
    if per_example:
        out = {"w": (s_w * xp.einsum("npf,nmpc->nmfc", a, d, optimize=True)).reshape((n, m) + w.shape)}
        if "b" in params:
            out["b"] = s_b * d.sum(axis=2)
        return out
    ds = d.sum(axis=1)
    out = {"w": (s_w * (a.reshape(-1, a.shape[-1]).T @ ds.reshape(-1, c))).reshape(w.shape)}
    if "b" in params:
        out["b"] = s_b * ds.sum(axis=(0, 1))
    return out


def conv_ntk_terms(node, params: Params, cache1, g1, cache2, g2, trace: bool = True):
    """This conv's share of the empirical NTK, by the cheaper of two exact contractions.

    Shared weights: ∂f/∂W(x) = s_w·Σ_p patch(x, p) ⊗ δ(x, p), so

        Θ_W(x, x′) = s_w²·Σ_{p, p′} (patch(x, p)·patch(x′, p′))·(δ(x, p)·δ(x′, p′))
        Θ_b(x, x′) = s_b²·(Σ_p δ(x, p))·(Σ_p′ δ(x′, p′))

    (the dense rule of kernel-math.md §5 summed over all pairs of output positions). Structured:
    the patch Gram (N1·P x N2·P) and the cotangent Gram, multiplied and summed over (p, p′):
    O(N1·N2·P²·(F + m·C)) flops (m²·C without ``trace``) and N1·N2·P² memory (·m²), no Jacobian.
    Jacobian: the per-example weight gradients (N, m, F·C) contracted: O((N1 + N2)·m·P·F·C +
    N1·N2·m·F·C) (m² without trace), memory (N1 + N2)·m·F·C. P output positions, F = C_in·Π kernel,
    C output channels. The structured form wins for few positions and wide layers; wide WRN-style
    stacks with many positions and many outputs favour the Jacobian. Both are exact.
    """
    w = params["w"]
    s_w, s_b = _conv_scales(node, w)
    p1, p2 = cache1[0], cache2[0]
    n1, n2, m, c = g1.shape[0], g2.shape[0], g1.shape[1], w.shape[-1]
    a1, a2 = p1.reshape(n1, -1, p1.shape[-1]), p2.reshape(n2, -1, p2.shape[-1])  # (N, P, F)
    d1, d2 = g1.reshape(n1, m, -1, c), g2.reshape(n2, m, -1, c)  # (N, m, P, C)
    same = g2 is g1 and p2 is p1
    contract = _conv_ntk_structured if conv_ntk_method(a1.shape, a2.shape, m, c, trace) == "structured" \
        else _conv_ntk_jacobian
    out = s_w**2 * contract(a1, d1, a2, d2, trace, same)
    if "b" in params:
        b1, b2 = d1.sum(axis=2), d2.sum(axis=2)  # (N, m, C): Σ_p δ(x, p)
        if trace:
            out += s_b**2 * (b1.reshape(n1, -1) @ b2.reshape(n2, -1).T)
        else:
            out += s_b**2 * namespace(g1).einsum("aic,bjc->abij", b1, b2, optimize=True)
    return out


def conv_ntk_method(shape1, shape2, m: int, c: int, trace: bool) -> str:
    """'structured' or 'jacobian', whichever takes fewer flops (cost model of :func:`conv_ntk_terms`);
    shapes are those of the patches, (N, P, F)."""
    (n1, npos, f), n2 = shape1, shape2[0]
    mm = m if trace else m * m
    structured = n1 * n2 * npos * npos * (f + mm * c)
    jacobian = (n1 + n2) * m * npos * f * c + n1 * n2 * mm * f * c
    return "structured" if structured <= jacobian else "jacobian"


def _conv_ntk_structured(a1, d1, a2, d2, trace: bool, same: bool):
    """Σ_{p, p′} (patch·patch′)(δ·δ′) from the two Gram matrices, without scales."""
    xp = namespace(d1)
    (n1, npos, f), (n2, npos2, _) = a1.shape, a2.shape
    m, c = d1.shape[1], d1.shape[-1]
    pa = (a1.reshape(n1 * npos, f) @ a2.reshape(n2 * npos2, f).T).reshape(n1, npos, n2, npos2)
    if trace:
        gg = (d1.transpose(0, 2, 1, 3).reshape(n1 * npos, m * c)
              @ d2.transpose(0, 2, 1, 3).reshape(n2 * npos2, m * c).T).reshape(n1, npos, n2, npos2)
        return (pa * gg).sum(axis=(1, 3))
    gg = (d1.reshape(n1 * m * npos, c) @ d2.reshape(n2 * m * npos2, c).T).reshape(n1, m, npos, n2, m, npos2)
    return xp.einsum("apbq,aipbjq->abij", pa, gg, optimize=True)


def _conv_ntk_jacobian(a1, d1, a2, d2, trace: bool, same: bool):
    """The per-example weight gradients Σ_p patch ⊗ δ, (N, m, F·C), contracted; without scales."""
    xp = namespace(d1)
    n1, n2, m = a1.shape[0], a2.shape[0], d1.shape[1]
    j1 = xp.einsum("npf,nmpc->nmfc", a1, d1, optimize=True).reshape(n1, m, -1)
    j2 = j1 if same else xp.einsum("npf,nmpc->nmfc", a2, d2, optimize=True).reshape(n2, m, -1)
    if trace:
        return j1.reshape(n1, -1) @ j2.reshape(n2, -1).T
    return xp.einsum("aik,bjk->abij", j1, j2, optimize=True)



def register_windowed(cls) -> None:
    """Register a windowed affine layer (conv and its subclasses) under its keyword, with conv's arguments."""
    def build(v, call):
        return cls(v["channels"], v["kernel"], v["stride"], v["padding"], v["w_std"], v["b_std"], v["parameterization"],
                   call.span)

    register(LayerRule(cls.keyword, (
        Spec("channels", REQUIRED, positive_int),
        Spec("kernel", REQUIRED, per_dimension),
        Spec("stride", sp.S.One, per_dimension),
        Spec("padding", "valid", enum(PADDINGS)),
        Spec("w_std", sp.S.One, std),
        Spec("b_std", None, std_or_none),
        Spec("parameterization", FROM_NETWORK, enum(PARAMETERIZATIONS)),
    ), build))


register_windowed(Conv)

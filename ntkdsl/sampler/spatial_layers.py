"""Finite-width rules of image and signal layers: conv, pooling, global pooling, flatten, layer norm.

The interface is that of :mod:`.layers` (init_params, forward, backward, param_grads, ntk_terms).
Features are channels last, (N, *S, C) with S the spatial shape (any number of dimensions);
cotangents carry the m axis after the batch, (N, m, *S, C). Windows follow neural-tangents and
``jax.lax`` (kernel-math.md §2; :func:`ntkdsl.ir.geometry.window_geometry`, shared with the
analytic kernels): 'valid' pads nothing, 'same' pads zeros (the smaller half before), 'circular'
wraps the opposite edge. Every rule loops over the filter or window taps only, never over pixels
or points; the array module is that of the inputs (:func:`.backend.namespace`).
"""

from __future__ import annotations

from itertools import product
from math import prod
from typing import Tuple

import numpy as np

from ..ir.geometry import window_geometry
from .backend import namespace
from .layers import Params, dense_scales


# --- window geometry shared by conv and pooling -----------------------------------------------------

def _geometry(spatial, window, stride, padding):
    """[(pad_lo, pad_hi, out_size)] per spatial axis (lax conventions)."""
    return [window_geometry(n, w, s, padding) for n, w, s in zip(spatial, window, stride)]


def _pad(x, axis0: int, geoms, padding: str):
    """x padded on the spatial axes axis0, axis0 + 1, ...: zeros, or wrapped for 'circular'."""
    if all(lo == hi == 0 for lo, hi, _ in geoms):
        return x
    widths = [(0, 0)] * x.ndim
    for d, (lo, hi, _) in enumerate(geoms):
        widths[axis0 + d] = (lo, hi)
    return namespace(x).pad(x, widths, mode="wrap" if padding == "circular" else "constant")


def _tap(axis0: int, ndim: int, tap, stride, geoms):
    """The index of the padded pixels that tap ``tap`` of the window reads at every output position:
    input pixel s·o + t (padded coordinates), o = 0 .. out − 1."""
    index = [slice(None)] * ndim
    for d, (t, s, (_, _, out)) in enumerate(zip(tap, stride, geoms)):
        index[axis0 + d] = slice(t, t + s * (out - 1) + 1, s)
    return tuple(index)


def _unpad(gp, axis0: int, spatial, geoms, padding: str):
    """The adjoint of :func:`_pad`: drop the zero pads, or fold the wrapped pads back (circular).

    Circular: padded pixel q is input pixel (q − pad_lo) mod n; the padded axis is added to the
    output in runs of consecutive pixels (a few runs per axis, no loop over pixels).
    """
    xp = namespace(gp)
    for d, ((lo, hi, _), n) in enumerate(zip(geoms, spatial)):
        if lo == hi == 0:
            continue
        axis = axis0 + d
        if padding != "circular":
            gp = gp[(slice(None),) * axis + (slice(lo, lo + n),)]
            continue
        shape = list(gp.shape)
        shape[axis] = n
        out = xp.zeros(shape, dtype=gp.dtype)
        q, length = 0, gp.shape[axis]
        while q < length:
            i = (q - lo) % n
            run = min(n - i, length - q)
            out[(slice(None),) * axis + (slice(i, i + run),)] += gp[(slice(None),) * axis + (slice(q, q + run),)]
            q += run
        gp = out
    return gp


def _scatter_taps(values, axis0: int, spatial_pad, taps, stride, geoms, lead, channels):
    """Σ over taps t of ``values[..., t, :]`` added at the pixels tap t reads (the adjoint of reading
    them), into a zero array of shape (*lead, *spatial_pad, channels)."""
    xp = namespace(values)
    out = xp.zeros(tuple(lead) + tuple(spatial_pad) + (channels,), dtype=values.dtype)
    for i, t in enumerate(taps):
        out[_tap(axis0, out.ndim, t, stride, geoms)] += values[..., i, :]
    return out


# --- conv ----------------------------------------------------------------------------------------

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
    geoms = _geometry(spatial, node.kernel_size, node.stride, node.padding)
    padded = _pad(x, 1, geoms, node.padding)
    taps = list(product(*(range(k) for k in node.kernel_size)))
    cols = xp.stack([padded[_tap(1, x.ndim, t, node.stride, geoms)] for t in taps], axis=-2)
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
    geoms = _geometry(spatial, node.kernel_size, node.stride, node.padding)
    spatial_pad = [n + lo + hi for n, (lo, hi, _) in zip(spatial, geoms)]
    full = _scatter_taps(gp, 2, spatial_pad, taps, node.stride, geoms, g.shape[:2], c_in)
    return _unpad(full, 2, spatial, geoms, node.padding)


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


# --- pooling -------------------------------------------------------------------------------------

def pool_init(node, rng, in_shape):
    return {}, node.out_shape(tuple(in_shape))


def pool_forward(node, params: Params, x):
    """Σ (avg: mean) of the window's pixels per channel; zero pads count in the average
    (neural-tangents' AvgPool, normalize_edges = False, as the analytic rule). Cache: the input shape."""
    spatial = x.shape[1:-1]
    geoms = _geometry(spatial, node.window, node.stride, node.padding)
    padded = _pad(x, 1, geoms, node.padding)
    taps = list(product(*(range(k) for k in node.window)))
    first, *rest = taps
    y = padded[_tap(1, x.ndim, first, node.stride, geoms)].copy()
    for t in rest:
        y += padded[_tap(1, x.ndim, t, node.stride, geoms)]
    if node.mode == "avg":
        y /= prod(node.window)
    return y, x.shape


def pool_backward(node, params: Params, in_shape, g):
    """The adjoint: every output's cotangent (/|w| for avg) added to the pixels of its window."""
    spatial = in_shape[1:-1]
    geoms = _geometry(spatial, node.window, node.stride, node.padding)
    taps = list(product(*(range(k) for k in node.window)))
    spatial_pad = [n + lo + hi for n, (lo, hi, _) in zip(spatial, geoms)]
    xp = namespace(g)
    out = xp.zeros(tuple(g.shape[:2]) + tuple(spatial_pad) + (g.shape[-1],), dtype=g.dtype)
    for t in taps:
        out[_tap(2, out.ndim, t, node.stride, geoms)] += g
    if node.mode == "avg":
        out /= prod(node.window)
    return _unpad(out, 2, spatial, geoms, node.padding)


# --- global pooling, flatten -----------------------------------------------------------------------

def global_pool_init(node, rng, in_shape):
    return {}, node.out_shape(tuple(in_shape))


def global_pool_forward(node, params: Params, x):
    """The mean (sum) over all pixels per channel: (N, *S, C) -> (N, C). Cache: the input shape."""
    axes = tuple(range(1, x.ndim - 1))
    return (x.mean(axis=axes) if node.mode == "avg" else x.sum(axis=axes)), x.shape


def global_pool_backward(node, params: Params, in_shape, g):
    """g (N, m, C) copied to every pixel, divided by the pixel count P for the mean."""
    xp = namespace(g)
    spatial = tuple(in_shape[1:-1])
    scale = 1.0 / prod(spatial) if node.mode == "avg" else 1.0
    shape = g.shape[:2] + (1,) * len(spatial) + g.shape[-1:]
    return xp.ascontiguousarray(xp.broadcast_to(scale * g.reshape(shape), g.shape[:2] + spatial + g.shape[-1:]))


def flatten_init(node, rng, in_shape):
    return {}, node.out_shape(tuple(in_shape))


def flatten_forward(node, params: Params, x):
    """(N, *S, C) -> (N, P·C), pixels major and channels minor (C order). Cache: the input shape."""
    return x.reshape(x.shape[0], -1), x.shape


def flatten_backward(node, params: Params, in_shape, g):
    return g.reshape(g.shape[:2] + tuple(in_shape[1:]))


# --- layer norm ----------------------------------------------------------------------------------

def layer_norm_init(node, rng, in_shape):
    return {}, tuple(in_shape)


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

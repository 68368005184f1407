"""``conv_transpose(channels, kernel, stride = 1, padding = valid | same | circular, w_std, b_std,
parameterization)``: a transposed convolution (neural-tangents' ConvTranspose, jax's conv_transpose).

Along each spatial axis of n pixels with filter k and stride s, the input is dilated by s (s − 1 holes
between pixels), padded by a before and b after, and correlated with the filter, not flipped:
'valid' pads a = k − 1 (output n·s + max(k − s, 0)), 'same' pads a = k − 1 if s > k − 1 else
⌈(k + s − 2)/2⌉ (output n·s), 'circular' folds the 'valid' output onto n·s positions
(:func:`ntkdsl.arraycode.spatial_maps.transpose_geometry`). fan_in = C_in·Π kernel, not divided by
the stride. Kernel (kernel-math.md §2): conv's affine rule with the mean over taps of the dilated
kernel (holes contribute 0, the divisor stays Π kernel), :class:`ntkdsl.algebra.spatial.conv_transpose_taps`.
Finite width: the dilated, padded input through a stride-1 'valid' :class:`~.conv.Conv` (its rules and
parameters), folded for 'circular'.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import prod
from typing import ClassVar, Mapping, Tuple

import sympy as sp

from ..algebra import spatial as ops
from ..algebra.state import KernelState, affine_kernel
from ..arraycode.spatial_maps import fold_matrix, transpose_geometry
from .arrays import namespace
from .conv import Conv, conv_backward, conv_forward, conv_init, conv_ntk_terms, conv_param_grads, register_windowed
from .dense import dense_scales
from .windows import spatial_input


@dataclass(frozen=True)
class ConvTranspose(Conv):
    """A transposed convolution with shared weights: ``channels`` outputs, a ``kernel_size`` filter."""

    keyword: ClassVar[str] = "conv_transpose"

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        spatial = spatial_input(self.keyword, in_shape, len(self.kernel_size), self.span)
        return tuple(n * s if self.padding == "circular" else transpose_geometry(n, k, s, self.padding)[1]
                     for n, k, s in zip(spatial, self.kernel_size, self.stride)) + (self.channels,)

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        """Σ' = σ_w²·T[Σ] + σ_b², Θ' as conv's (kernel-math.md §2), T the transposed mean over taps."""
        def taps(k):
            return ops.conv_transpose(k, s.shape, self.kernel_size, self.stride, self.padding, s.layout)

        cov1, cov2, nngp, ntk = affine_kernel(s, p, self.parameterization, s.width * prod(self.kernel_size), taps)
        shape = self.out_shape(s.shape + (s.width,))[:-1]
        return KernelState(cov1, cov2, nngp, ntk, gaussian=True, width=self.channels, shape=shape, layout=s.layout)

    # --- finite width: a stride-1 'valid' conv over the dilated, padded input
    @property
    def _inner(self) -> Conv:
        return Conv(self.channels, self.kernel_size, (1,) * len(self.kernel_size), "valid", self.w_std, self.b_std,
                    self.parameterization)

    def init_params(self, rng, in_shape):
        params, _ = conv_init(self._inner, rng, _expanded_shape(self, tuple(in_shape)))
        return params, self.out_shape(tuple(in_shape))

    def forward(self, params, x):
        if self.padding != "circular":
            z, cache = conv_forward(self._inner, params, _expand(self, x))
            return z, (cache, x.shape)
        z, cache = conv_forward(self._inner, _weights_only(params), _expand(self, x))
        z = _fold(self, z, 1, x.shape[1:-1])
        if "b" in params:  # the bias after the fold: once per output position
            z += self._scales(params)[1] * params["b"]
        return z, (cache, x.shape)

    def backward(self, params, cache, g):
        inner, in_shape = cache
        g = _unfold(self, g, in_shape[1:-1])
        return _contract(self, conv_backward(self._inner, params, inner, g), in_shape[1:-1])

    def param_grads(self, params, cache, g, per_example=False):
        inner, in_shape = cache
        if self.padding != "circular":
            return conv_param_grads(self._inner, params, inner, g, per_example)
        out = conv_param_grads(self._inner, _weights_only(params), inner, _unfold(self, g, in_shape[1:-1]), per_example)
        if "b" in params:  # ∂/∂b = s_b·Σ_q g(q) over the folded outputs
            s_b = self._scales(params)[1]
            flat = g.reshape(g.shape[:2] + (-1, g.shape[-1]))
            out["b"] = s_b * (flat.sum(axis=2) if per_example else flat.sum(axis=(0, 1, 2)))
        return out

    def ntk_terms(self, params, cache1, g1, cache2, g2, trace=True):
        h1 = _unfold(self, g1, cache1[1][1:-1])
        h2 = h1 if (g2 is g1 and cache2 is cache1) else _unfold(self, g2, cache2[1][1:-1])
        if self.padding != "circular":
            return conv_ntk_terms(self._inner, params, cache1[0], h1, cache2[0], h2, trace)
        out = conv_ntk_terms(self._inner, _weights_only(params), cache1[0], h1, cache2[0], h2, trace)
        if "b" in params:  # s_b²·(Σ_q δ(x, q))·(Σ_q′ δ(x′, q′)) over the folded outputs
            s_b = self._scales(params)[1]
            b1 = g1.reshape(g1.shape[:2] + (-1, g1.shape[-1])).sum(axis=2)
            b2 = g2.reshape(g2.shape[:2] + (-1, g2.shape[-1])).sum(axis=2)
            if trace:
                out = out + s_b**2 * (b1.reshape(b1.shape[0], -1) @ b2.reshape(b2.shape[0], -1).T)
            else:
                out = out + s_b**2 * namespace(g1).einsum("aic,bjc->abij", b1, b2, optimize=True)
        return out

    def _scales(self, params):
        """(s_w, s_b) with fan_in = C_in·Π kernel (W of shape (*kernel, C_in, C_out)), kernel-math.md §2."""
        return dense_scales(self, prod(params["w"].shape[:-1]))


def _weights_only(params):
    return {"w": params["w"]}


def _pads(node, spatial):
    """[(pad before, pad after, dilated length)] per axis of the 'valid' or 'same' correlation."""
    out = []
    for n, k, s in zip(spatial, node.kernel_size, node.stride):
        lo, size = transpose_geometry(n, k, s, "valid" if node.padding == "circular" else node.padding)
        dilated = (n - 1) * s + 1
        out.append((lo, size + k - 1 - lo - dilated, dilated))
    return out


def _expanded_shape(node, in_shape):
    return tuple(lo + hi + d for lo, hi, d in _pads(node, in_shape[:-1])) + (in_shape[-1],)


def _expand(node, x):
    """(N, *S, C): the input dilated by the strides (holes between pixels) and zero-padded."""
    xp = namespace(x)
    spatial = x.shape[1:-1]
    pads = _pads(node, spatial)
    out = xp.zeros((x.shape[0],) + tuple(lo + hi + d for lo, hi, d in pads) + (x.shape[-1],), dtype=x.dtype)
    index = (slice(None),) + tuple(slice(lo, lo + d, s) for (lo, _, d), s in zip(pads, node.stride))
    out[index] = x
    return out


def _contract(node, g, spatial):
    """The adjoint of :func:`_expand` on cotangents (N, m, *padded, C): the entries at input pixels."""
    pads = _pads(node, spatial)
    return g[(slice(None), slice(None)) + tuple(slice(lo, lo + d, s) for (lo, _, d), s in zip(pads, node.stride))]


@lru_cache(maxsize=64)
def _fold_matrix(n: int, k: int, s: int):
    """:func:`ntkdsl.arraycode.spatial_maps.fold_matrix`, built once per axis length, filter and stride (read-only)."""
    m = fold_matrix(n, k, s)
    m.setflags(write=False)
    return m


def _fold(node, z, first: int, spatial):
    """Fold the 'valid' output onto n·s positions per axis (axes from ``first``)."""
    xp = namespace(z)
    for axis, n in enumerate(spatial):
        m = xp.asarray(_fold_matrix(int(n), node.kernel_size[axis], node.stride[axis]))
        z = xp.moveaxis(xp.tensordot(m, z, axes=(1, first + axis)), 0, first + axis)
    return z


def _unfold(node, g, spatial):
    """The adjoint of :func:`_fold` on cotangents (N, m, *out, C); g itself for other paddings."""
    if node.padding != "circular":
        return g
    xp = namespace(g)
    for axis, n in enumerate(spatial):
        m = xp.asarray(_fold_matrix(int(n), node.kernel_size[axis], node.stride[axis]))
        g = xp.moveaxis(xp.tensordot(m.T, g, axes=(1, 2 + axis)), 0, 2 + axis)
    return g


register_windowed(ConvTranspose)

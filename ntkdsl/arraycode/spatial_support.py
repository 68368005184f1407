"""Run-time routines of image and signal kernels, written once over the array module ``xp``.

Generated modules that need them carry a verbatim copy (``inspect.getsource``; see
:func:`ntkdsl.arraycode.sources.routine_sources`), so they stay standalone; tests call these same functions. Keep them free
of names other than ``xp``, the builtins and each other.

Arrays hold the pixel axes first and the two point axes last — (..., N1, N2) for nngp and ntk,
(..., N1, 1) for cov1, (..., 1, N2) for cov2 — with pixel axes ``*S`` in the diagonal layout (pairs
(p, p)) or ``*S, *S`` in the full layout (p's axes, then p′'s). Points last makes every shift of a
convolution or pooling window a slice of whole contiguous N1 x N2 blocks (streaming memory access,
no gather), and the arrays of a vector network are the plain (N1, N2) matrices. A scalar (a constant
kernel) stands for an array of that value.
"""

import numpy as xp

from ..algebra.geometry import window_geometry


def _pixels(shape):
    """The number of pixels P = Π shape."""
    p = 1
    for n in shape:
        p *= int(n)
    return p


def _spatial_array(k, shape, full):
    """``k`` as a float64 array with pixel and point axes (a scalar broadcast to (*pixels, 1, 1))."""
    k = xp.asarray(k, dtype=xp.float64)
    if k.ndim == 0:
        return xp.broadcast_to(k, tuple(shape) * (2 if full else 1) + (1, 1))
    return k


def _window_sum(k, axes, size, window, stride, padding, pad_lo, pad_hi):
    """out[..., o, ...] = Σ_{t < window} k[..., stride·o + t − pad_lo, ...] on every axis of ``axes``
    at once (the same tap t on all), for o < size.

    Pixels outside the input are zeros ('valid', 'same': each tap adds the slice where it overlaps
    the input, no padded copy) or the opposite edge ('circular': one wrapped copy). One slice per
    tap, accumulated in place: no loop over pixels or points.
    """
    if padding == "circular" and (pad_lo or pad_hi):
        widths = [(0, 0)] * k.ndim
        for axis in axes:
            widths[axis] = (pad_lo, pad_hi)
        k, pad_lo = xp.pad(k, widths, mode="wrap"), 0
    n = k.shape[axes[0]]
    shape = list(k.shape)
    for axis in axes:
        shape[axis] = size
    acc = None
    for t in range(window):
        first = max(0, -((t - pad_lo) // stride))  # the first o with stride·o + t − pad_lo ≥ 0
        last = min(size - 1, (n - 1 + pad_lo - t) // stride)  # the last one inside the input
        if first > last:
            continue
        start = stride * first + t - pad_lo
        out, src = [slice(None)] * k.ndim, [slice(None)] * k.ndim
        for axis in axes:
            out[axis] = slice(first, last + 1)
            src[axis] = slice(start, start + stride * (last - first) + 1, stride)
        if acc is None:  # the first tap is copied, zeros only where it does not reach (= 0 + k, exactly)
            acc = xp.empty(tuple(shape), dtype=k.dtype)
            for axis in axes:
                edge = [slice(None)] * k.ndim
                edge[axis] = slice(0, first)
                acc[tuple(edge)] = 0
                edge[axis] = slice(last + 1, size)
                acc[tuple(edge)] = 0
            acc[tuple(out)] = k[tuple(src)]
        else:
            acc[tuple(out)] += k[tuple(src)]
    return xp.zeros(tuple(shape), dtype=k.dtype) if acc is None else acc


def conv_taps(k, shape, kernel, stride, padding, full):
    """(1/|f|)·Σ_{δ ∈ f} k(s·p + δ, s·p′ + δ): a convolution's mean over its filter's shifted diagonal.

    The same tap δ moves both pixels (shared weights, kernel-math.md §2); the diagonal layout keeps
    p = p′. The filter is a product of 1-D windows, so the sum runs one spatial dimension d at a
    time: k_d slices of the whole array per dimension (no loop over pixels or points).

    Cost: O(N1·N2·P·Σ_d k_d) flops in the diagonal layout and O(N1·N2·P²·Σ_d k_d) in the full one
    (P pixels; a direct sum over the filter would take Π_d k_d instead of Σ_d k_d); memory: one
    accumulator of the array's size (and a wrapped copy for circular padding).

    Args:
        k: kernel array (see the module docstring) or scalar.
        shape: input spatial shape S.
        kernel, stride: filter taps and strides per spatial dimension.
        padding: 'valid', 'same' or 'circular'.
        full: whether ``k`` holds all pixel pairs (p, p′).

    Returns:
        The array over the output pixels, same layout.
    """
    k = _spatial_array(k, shape, full)
    n = len(shape)
    for d in range(n):
        lo, hi, size = window_geometry(shape[d], kernel[d], stride[d], padding)
        k = _window_sum(k, (d, n + d) if full else (d,), size, kernel[d], stride[d], padding, lo, hi)
    k /= _pixels(kernel)
    return k


def pool_window(k, shape, window, stride, padding, mode):
    """Σ_{δ, δ′ ∈ w} k(s·o + δ, s·o′ + δ′) over a full-layout array, divided by |w|² for 'avg'.

    The windows of the two pixels are independent: each of the 2·len(S) pixel axes is summed on
    its own. Cost O(N1·N2·P²·Σ_d w_d); zero padding counts in the average (neural-tangents'
    default, normalize_edges = False).
    """
    k = _spatial_array(k, shape, True)
    n = len(shape)
    for d in range(n):
        lo, hi, size = window_geometry(shape[d], window[d], stride[d], padding)
        for axis in (d, n + d):
            k = _window_sum(k, (axis,), size, window[d], stride[d], padding, lo, hi)
    if mode == "avg":
        k /= _pixels(window) ** 2
    return k


def flatten_mean(k, shape, full):
    """mean_p k(p, p): the kernel of the flattened features (the diagonal's mean in the full layout)."""
    k = _spatial_array(k, shape, full)
    p = _pixels(shape)
    if full:
        return xp.trace(k.reshape((p, p) + k.shape[-2:]), axis1=0, axis2=1) / p
    return xp.sum(k.reshape((p,) + k.shape[-2:]), axis=0) / p


def global_pool(k, shape, mode):
    """The mean ('avg') or sum of k(p, p′) over all pixel pairs of a full-layout array: O(N1·N2·P²)."""
    k = _spatial_array(k, shape, True)
    p = _pixels(shape)
    total = xp.sum(k.reshape((p * p,) + k.shape[-2:]), axis=0)
    return total / (p * p) if mode == "avg" else total


def _diagonal(k, shape):
    """The pairs (p, p) of a full-layout array, as (P, *point axes)."""
    p = _pixels(shape)
    return xp.moveaxis(xp.diagonal(k.reshape((p, p) + k.shape[-2:]), axis1=0, axis2=1), -1, 0)


def pixel_variance(k, shape, side):
    """The diagonal k(p, p) of a full-layout array, on the axes of p (side 0) or of p′ (side 1)."""
    k = xp.asarray(k, dtype=xp.float64)
    if k.ndim == 0:
        return k
    ones = (1,) * len(shape)
    pixels = tuple(shape) + ones if side == 0 else ones + tuple(shape)
    return _diagonal(k, shape).reshape(pixels + k.shape[-2:])


def spatial_diagonal(k, shape):
    """The diagonal layout (pairs (p, p)) of a full-layout array, as a new (writable, C-ordered) array.

    A copy even where the diagonal view is already contiguous (one pixel): ``ascontiguousarray``
    would then return the read-only view itself, and generated code writes exact diagonals into it.
    """
    k = xp.asarray(k, dtype=xp.float64)
    if k.ndim == 0:
        return k
    return _diagonal(k, shape).copy().reshape(tuple(shape) + k.shape[-2:])


def input_variances(x, full):
    """Σ⁰(x, x)(p, p′) = x(p)·x(p′)/C of each input of shape (N, *S, C) by itself (kernel-math.md §1):
    shape (*S, *S, N, 1) in the full layout, (*S, N, 1) in the diagonal one (the pixel variances)."""
    n, c = x.shape[0], x.shape[-1]
    shape = tuple(x.shape[1:-1])
    a = xp.ascontiguousarray(xp.moveaxis(x.reshape(n, _pixels(shape), c), 1, 0))  # (P, N, C)
    if full:
        return (xp.einsum("pic,qic->pqi", a, a) / c).reshape(shape + shape + (n, 1))
    return (xp.sum(a * a, axis=2) / c).reshape(shape + (n, 1))


def input_covariances(x1, x2, same, full):
    """Σ⁰(x, x′)(p, p′) = x(p)·x′(p′)/C for inputs of shape (N, *S, C) (kernel-math.md §1).

    Returns (cov1, cov2, nngp) of shapes (..., N1, 1), (..., 1, N2), (..., N1, N2) in the diagonal
    or full layout (the variances by :func:`input_variances`). With ``same`` (x2 is x1) nngp is made
    exactly symmetric and its diagonal nngp[..., i, i] is cov1[..., i, 0] itself, bit for bit. One
    GEMM of (N1, C) by (C, N2) per pixel pair (P² of them, the result in place; one GEMM of (P·N1, C)
    by (C, P·N2) and a transposed copy was 1 to 130 times slower: the copy's power-of-two strides),
    per pixel in the diagonal layout; the right operand C-ordered (OpenBLAS runs a transposed one of
    these small GEMMs through its threads: 5 to 300 times slower on 2 busy cores). benchmarks/README.md.
    """
    n1, n2, c = x1.shape[0], x2.shape[0], x1.shape[-1]
    shape = tuple(x1.shape[1:-1])
    p = _pixels(shape)
    a = xp.ascontiguousarray(xp.moveaxis(x1.reshape(n1, p, c), 1, 0))  # (P, N1, C)
    b = xp.ascontiguousarray(x2.reshape(n2, p, c).transpose(2, 1, 0))  # (C, P, N2)
    cov1 = input_variances(x1, full)
    cov2 = xp.swapaxes(cov1 if same else input_variances(x2, full), -1, -2)
    if full:
        nngp = xp.matmul(a[:, None], b.transpose(1, 0, 2)[None])  # (P, P, N1, N2)
        swap = (1, 0, 3, 2)
        pixels = shape + shape
    else:
        nngp = xp.matmul(a, b.transpose(1, 0, 2))  # (P, N1, N2)
        swap = (0, 2, 1)
        pixels = shape
    nngp /= c
    if same:
        nngp = (nngp + nngp.transpose(swap)) / 2
        index = xp.arange(n1)
        nngp[..., index, index] = cov1.reshape(nngp.shape[:-2] + (n1,))
    return cov1, cov2, nngp.reshape(pixels + (n1, n2))

"""Run-time routines of image and signal kernels, written once over the array module ``xp``.

Generated modules that need them carry a verbatim copy (``inspect.getsource``; see
:func:`routine_sources`), so they stay standalone; tests call these same functions. Keep them free
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


def transpose_geometry(n, k, s, padding):
    """(pad before, output size) of a transposed convolution along one axis of n pixels, filter k,
    stride s: jax's conv_transpose (lhs dilation s, the filter not flipped); 'circular' is 'valid'
    wrapped onto n·s positions (neural-tangents' ConvTranspose)."""
    if padding == "same":
        lo = k - 1 if s > k - 1 else (k + s - 1) // 2
        return lo, n * s
    return k - 1, n * s + max(k - s, 0)


def transpose_taps(n, k, s, padding):
    """The 0/1 matrices M[δ] (k, out, n): output q reads input pixel j through tap δ when
    q + δ − pad = s·j; for 'circular', the 'valid' matrices folded onto n·s rows."""
    lo, size = transpose_geometry(n, k, s, padding)
    m = xp.zeros((k, size, n), dtype=xp.float64)
    for d in range(k):
        for j in range(n):
            q = s * j + lo - d
            if 0 <= q < size:
                m[d, q, j] = 1.0
    if padding == "circular":
        m = xp.einsum("oi,dij->doj", fold_matrix(n, k, s), m)
    return m


def fold_matrix(n, k, s):
    """(n·s, valid length) 0/1: 'circular' adds the 'valid' output position i to (i − offset) mod n·s,
    offset = max(k − s, 0) // 2 (neural-tangents' ConvTranspose)."""
    size, out = transpose_geometry(n, k, s, "valid")[1], n * s
    fold = xp.zeros((out, size), dtype=xp.float64)
    for i in range(size):
        fold[(i - max(k - s, 0) // 2) % out, i] = 1.0
    return fold


def conv_transpose_taps(k, shape, kernel, stride, padding, full):
    """(1/|f|)·Σ_{δ ∈ f} k(D(q + δ), D(q′ + δ)) of a transposed convolution, D(j) = j/s at the
    input pixels and a hole (0) between them (kernel-math.md §2, ConvTranspose): per spatial
    dimension, M[δ]·k·M[δ]ᵀ summed over the taps in the full layout, (Σ_δ M[δ])·k on the diagonal
    (one input pixel per output and tap: M[δ] has at most one 1 per row).

    Cost: O(N1·N2·P·Σ_d k_d·n_d) flops (diagonal) and O(N1·N2·P²·Σ_d k_d·n_d) (full); memory: one
    array of the output's size per dimension.
    """
    k = _spatial_array(k, shape, full)
    n = len(shape)
    for d in range(n):
        m = transpose_taps(shape[d], kernel[d], stride[d], padding)
        if not full:
            k = xp.moveaxis(xp.tensordot(m.sum(axis=0), k, axes=(1, d)), 0, d)
            continue
        total = None
        for tap in m:
            part = xp.moveaxis(xp.tensordot(tap, k, axes=(1, d)), 0, d)
            part = xp.moveaxis(xp.tensordot(tap, part, axes=(1, n + d)), 0, n + d)
            total = part if total is None else total + part
        k = total
    return k / _pixels(kernel)


def resize_matrix(n, m, method, antialias):
    """(m, n): the linear map jax.image.resize applies along one axis of n pixels resized to m
    (neural-tangents' ImageResize). 'nearest': output i takes pixel ⌊(i + 1/2)·n/m⌋, in float32 as jax
    computes it; 'linear': a triangle kernel at the sample points (i + 1/2)·n/m − 1/2, widened by n/m
    when shrinking with antialias, each output's weights normalised to 1, samples outside
    [−1/2, n − 1/2] zero (jax's scale_and_translate)."""
    if method == "nearest":
        offsets = xp.floor((xp.arange(m, dtype=xp.float32) + xp.float32(0.5)) * xp.float32(n) / xp.float32(m))
        out = xp.zeros((m, n), dtype=xp.float64)
        out[xp.arange(m), offsets.astype(xp.int64)] = 1.0
        return out
    inverse = 1.0 / (m / n)
    width = max(inverse, 1.0) if antialias else 1.0
    sample = (xp.arange(m, dtype=xp.float64) + 0.5) * inverse - 0.5
    weights = xp.maximum(0.0, 1.0 - xp.abs(sample[None, :] - xp.arange(n, dtype=xp.float64)[:, None]) / width)
    total = weights.sum(axis=0, keepdims=True)
    weights = xp.where(xp.abs(total) > 1000.0 * 1.1920929e-07, weights / xp.where(total != 0, total, 1.0), 0.0)
    inside = (sample >= -0.5) & (sample <= n - 0.5)
    return xp.where(inside[None, :], weights, 0.0).T


def resize_map(k, shape, size, method, antialias, full):
    """R·k·Rᵀ along every resized spatial dimension (both pixel axes of the full layout), R of
    :func:`resize_matrix`; in the diagonal layout (nearest only: R selects one pixel per output) R·k.

    Cost: O(N1·N2·P²·Σ_d n_d) flops in the full layout; memory: one array of the output's size.
    """
    k = _spatial_array(k, shape, full)
    n = len(shape)
    for d in range(n):
        if shape[d] == size[d]:
            continue
        r = resize_matrix(shape[d], size[d], method, antialias)
        k = xp.moveaxis(xp.tensordot(r, k, axes=(1, d)), 0, d)
        if full:
            k = xp.moveaxis(xp.tensordot(r, k, axes=(1, n + d)), 0, n + d)
    return k


def spatial_index(k, shape, picks, drops, full):
    """k at the picked pixels of every spatial axis (both pixel axes in the full layout), axes picked
    by an integer dropped: the kernel of ``x[..., picks, ...]`` (neural-tangents' Index).

    Cost: a gather of the output's size.
    """
    k = _spatial_array(k, shape, full)
    n = len(shape)
    axes = [d for d in range(n)] + ([n + d for d in range(n)] if full else [])
    for axis in axes:
        k = xp.take(k, xp.asarray(picks[axis % n], dtype=xp.int64), axis=axis)
    dropped = tuple(a for a in axes if drops[a % n])
    return k.reshape(tuple(size for a, size in enumerate(k.shape) if a not in dropped))


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


def time_shift(k, shape, full):
    """k(t − 1, t′ − 1) at (t, t′) and 0 where t or t′ is the first step (full layout; k(t − 1) at t
    in the diagonal one): one step of a recurrence along the time axis of a signal (shape (T,)).

    Cost: a copy of the array.
    """
    k = _spatial_array(k, shape, full)
    out = xp.zeros(k.shape, dtype=xp.float64)
    if full:
        out[1:, 1:] = k[:-1, :-1]
    else:
        out[1:] = k[:-1]
    return out


def graph_aggregate(k, graph1, graph2, side):
    """A(x)ᵀ·K·A(x′) on the node axes of a full-layout array (V, V, n1, n2), per pair of points
    (neural-tangents' Aggregate, kernel-math.md §2): graph1 (N1, V, V) and graph2 (N2, V, V) are the
    adjacencies of the request's points (A[i, j] the weight of the edge i → j). ``side`` 'pair' (nngp,
    ntk): graph1 on the left, graph2 on the right; 'cov1' graph1 on both sides (points on axis −2);
    'cov2' graph2 on both (points on axis −1). graph2 None (kernels_diagonal: the pairs (x_i, x_i) as
    a column) reads graph1 on both sides whatever ``side``.

    Cost: two batched V x V products per pair of points, O(V³·n1·n2).
    """
    v = graph1.shape[-1]
    k = _spatial_array(k, (v,), True)
    if graph2 is None or side == "cov1":
        k = xp.broadcast_to(k, (v, v, graph1.shape[0], k.shape[-1]))
        t = xp.einsum("aij,ikab->jkab", graph1, k)
        return xp.einsum("jkab,akl->jlab", t, graph1)
    if side == "cov2":
        k = xp.broadcast_to(k, (v, v, k.shape[-2], graph2.shape[0]))
        t = xp.einsum("bij,ikab->jkab", graph2, k)
        return xp.einsum("jkab,bkl->jlab", t, graph2)
    k = xp.broadcast_to(k, (v, v, graph1.shape[0], graph2.shape[0]))
    t = xp.einsum("aij,ikab->jkab", graph1, k)
    return xp.einsum("jkab,bkl->jlab", t, graph2)


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
    GEMM of (P·N1, C) by (C, P·N2) in the full layout, P GEMMs of (N1, C) by (C, N2) in the diagonal one.
    """
    n1, n2, c = x1.shape[0], x2.shape[0], x1.shape[-1]
    shape = tuple(x1.shape[1:-1])
    p = _pixels(shape)
    a = xp.ascontiguousarray(xp.moveaxis(x1.reshape(n1, p, c), 1, 0))  # (P, N1, C)
    b = xp.ascontiguousarray(xp.moveaxis(x2.reshape(n2, p, c), 1, 0))
    cov1 = input_variances(x1, full)
    cov2 = xp.swapaxes(cov1 if same else input_variances(x2, full), -1, -2)
    if full:
        nngp = (a.reshape(p * n1, c) @ b.reshape(p * n2, c).T).reshape(p, n1, p, n2).transpose(0, 2, 1, 3) / c
        swap = (1, 0, 3, 2)
        pixels = shape + shape
    else:
        nngp = xp.matmul(a, b.transpose(0, 2, 1)) / c  # (P, N1, N2)
        swap = (0, 2, 1)
        pixels = shape
    nngp = xp.ascontiguousarray(nngp)
    if same:
        nngp = (nngp + nngp.transpose(swap)) / 2
        index = xp.arange(n1)
        nngp[..., index, index] = cov1.reshape(nngp.shape[:-2] + (n1,))
    return cov1, cov2, nngp.reshape(pixels + (n1, n2))


def diagonal_embed(k, shape):
    """The full layout (P, P, *point axes) of a diagonal-layout array, zero between different pixels."""
    k = xp.asarray(k, dtype=xp.float64)
    if k.ndim < 2:  # a constant: the same number at every pixel
        k = xp.broadcast_to(k.reshape((1,) * len(shape) + (1, 1)), tuple(shape) + (1, 1))
    p = _pixels(shape)
    flat = k.reshape((p,) + k.shape[-2:])
    out = xp.zeros((p, p) + k.shape[-2:], dtype=xp.float64)
    index = xp.arange(p)
    out[index, index] = flat
    return out.reshape(tuple(shape) * 2 + k.shape[-2:])


ROUTINES = {  # printed name -> the functions its generated module needs, in definition order
    "conv_taps": ("window_geometry", "_pixels", "_spatial_array", "_window_sum", "conv_taps"),
    "conv_transpose_taps": ("_pixels", "_spatial_array", "transpose_geometry", "fold_matrix", "transpose_taps",
                            "conv_transpose_taps"),
    "resize_map": ("_pixels", "_spatial_array", "resize_matrix", "resize_map"),
    "spatial_index": ("_pixels", "_spatial_array", "spatial_index"),
    "pool_window": ("window_geometry", "_pixels", "_spatial_array", "_window_sum", "pool_window"),
    "flatten_mean": ("_pixels", "_spatial_array", "flatten_mean"),
    "global_pool": ("_pixels", "_spatial_array", "global_pool"),
    "pixel_variance": ("_pixels", "_diagonal", "pixel_variance"),
    "spatial_diagonal": ("_pixels", "_diagonal", "spatial_diagonal"),
    "diagonal_embed": ("_pixels", "diagonal_embed"),
    "time_shift": ("_spatial_array", "time_shift"),
    "graph_aggregate": ("_spatial_array", "graph_aggregate"),
    "input_covariances": ("_pixels", "input_variances", "input_covariances"),
    "input_variances": ("_pixels", "input_variances"),
}


def routine_sources(names) -> str:
    """The source of every routine that ``names`` need, each once, in a fixed order."""
    import inspect
    import sys

    module = sys.modules[__name__]
    wanted = []
    for name in sorted(names):
        for fn in ROUTINES[name]:
            if fn not in wanted:
                wanted.append(fn)
    order = ("window_geometry", "_pixels", "_spatial_array", "_window_sum", "_diagonal")
    wanted.sort(key=lambda fn: (order.index(fn) if fn in order else len(order), fn))
    return "\n\n".join(inspect.getsource(getattr(module, fn)).rstrip("\n") + "\n" for fn in wanted)

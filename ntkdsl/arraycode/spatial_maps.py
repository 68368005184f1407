"""Run-time routines of the layers that map kernel arrays beyond windows and pooling: transposed
convolutions, resizing, spatial indexing, the unshared-weight embedding, the recurrent time shift and
graph aggregation. Written over the array module ``xp`` like :mod:`.spatial_support` (same array
conventions), copied verbatim into the generated modules that need them (:mod:`.sources`).
"""

import numpy as xp

from .spatial_support import _pixels, _spatial_array


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
    tap, out, pixel = xp.arange(k)[:, None, None], xp.arange(size)[None, :, None], xp.arange(n)[None, None, :]
    m = (out == s * pixel + lo - tap).astype(xp.float64)
    if padding == "circular":
        m = xp.einsum("oi,dij->doj", fold_matrix(n, k, s), m)
    return m


def fold_matrix(n, k, s):
    """(n·s, valid length) 0/1: 'circular' adds the 'valid' output position i to (i − offset) mod n·s,
    offset = max(k − s, 0) // 2 (neural-tangents' ConvTranspose)."""
    size, out = transpose_geometry(n, k, s, "valid")[1], n * s
    fold = xp.zeros((out, size), dtype=xp.float64)
    fold[(xp.arange(size) - max(k - s, 0) // 2) % out, xp.arange(size)] = 1.0
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

    Cost: two batched V x V matrix products per pair of points, O(V³·n1·n2) (matmul over the
    point axes broadcast, (a, b, V, V) views of the arrays: 5 to 7 times faster than einsum on a
    tile of 22 x 22 pairs, V = 16 and 32; benchmarks/README.md).
    """
    v = graph1.shape[-1]
    k = _spatial_array(k, (v,), True)
    if graph2 is None or side == "cov1":  # per point of axis −2 on both sides
        left = right = graph1[:, None]
    elif side == "cov2":  # per point of axis −1 on both sides
        left = right = graph2[None]
    else:
        left, right = graph1[:, None], graph2[None]
    out = xp.swapaxes(left, -1, -2) @ xp.moveaxis(k, (0, 1), (-2, -1)) @ right  # (a, b, V, V)
    return xp.ascontiguousarray(xp.moveaxis(out, (-2, -1), (0, 1)))


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


"""Run-time routines of fused image modules (:mod:`.fused_spatial`), written as Python.

One pair's pixel grid at a time: the per-point arrays and stacks (NumPy), the input Gram entries,
the separable window sums of convolutions and pooling, the pixel means and diagonals (numba
loops over flat arrays) and the blocks of pairs each thread takes. Copied verbatim
(``inspect.getsource``) into the generated module under the numba decorators of
:data:`DECORATORS` (added there: this module imports no numba, and its routines run as plain Python
in tests). Keep them free of names other than ``math``, ``xp`` (NumPy), ``FASTMATH`` (the generated
module's) and this module's own.
"""

from __future__ import annotations

import math

import numpy as xp

from .fused_routines import INLINE_LOOP, LOOP, source


def _input_variances_diagonal(x, side):
    """The pixel variances Σ⁰(x, x)(p, p) = |x(p)|²/C (kernel-math.md §1) of the points x (N, *S, C),
    as (*S, N, 1) (side 0) or with (1, N) last (side 1): pixel axes first, points last, the layout of
    the NumPy path's per-point arrays (same rounding)."""
    n, grid, channels = x.shape[0], tuple(x.shape[1:-1]), x.shape[-1]
    a = xp.ascontiguousarray(xp.moveaxis(x.reshape(n, math.prod(grid), channels), 1, 0))  # (P, N, C)
    v = xp.sum(a * a, axis=2) / channels
    return v.reshape(grid + ((n, 1) if side == 0 else (1, n)))


def _input_variances_full(x, side):
    """Σ⁰(x, x)(p, q) = x(p)·x(q)/C for every pixel pair (kernel-math.md §1) of the points x
    (N, *S, C), as (*S, *S, N, 1) (side 0) or with (1, N) last (side 1): pixel axes first, points
    last, the layout of the NumPy path's per-point arrays (same rounding)."""
    n, grid, channels = x.shape[0], tuple(x.shape[1:-1]), x.shape[-1]
    a = xp.ascontiguousarray(xp.moveaxis(x.reshape(n, math.prod(grid), channels), 1, 0))  # (P, N, C)
    v = xp.einsum("pic,qic->pqi", a, a) / channels
    return v.reshape(grid + grid + ((n, 1) if side == 0 else (1, n)))


def _put(stack, k, v):
    """Per-point numbers v into stack[:, k, :P]: points first, then the quantity, then its pixels
    (contiguous for the pair loops). v is a constant, or an array (*pixels, N, 1) or (*pixels, 1, N),
    or (*pixels, 1, 1) where it does not depend on the point (a variance after rbf, say)."""
    v = xp.asarray(v, dtype=xp.float64)
    if v.ndim == 0:
        stack[:, k, :] = v
        return
    pixels = v.reshape(v.shape[:-2] + (-1,))  # (*pixels, N) or (*pixels, 1)
    pixels = pixels.reshape(-1, pixels.shape[-1])  # (P, N) or (P, 1)
    stack[:, k, :pixels.shape[0]] = pixels.T  # a point-independent (1, P) broadcasts to every point


def _other_side(v):
    """x1's per-point array (..., N, 1) as x2's (..., 1, N) (a view; a constant stays itself)."""
    return xp.swapaxes(v, -1, -2) if xp.ndim(v) >= 2 else v


def _sparse_rows(m):
    """(idx, w) of the matrices m (…, rows, n): row r's nonzero columns at idx[…, r, :] in
    ascending order, −1 after the last, their entries at w[…, r, :] (at least one slot per row).
    The sparse form of a layer's spatial map (spatial_maps.transpose_taps, resize_matrix) that
    ``_matrix_pass`` and ``_matrix_pass2`` apply."""
    m = xp.asarray(m, dtype=xp.float64)
    nonzero = m != 0
    counts = nonzero.sum(axis=-1).ravel()
    width = max(int(counts.max()) if counts.size else 0, 1)
    idx = xp.full(m.shape[:-1] + (width,), -1, dtype=xp.int64)
    w = xp.zeros(m.shape[:-1] + (width,))
    *lead, col = xp.nonzero(nonzero)  # row-major: columns ascending within each row
    row = xp.ravel_multi_index(tuple(lead), m.shape[:-1]) if lead else xp.zeros(col.size, dtype=xp.int64)
    slot = xp.arange(col.size) - (xp.cumsum(counts) - counts)[row]
    idx[(*lead, slot)] = col
    w[(*lead, slot)] = m[nonzero]
    return idx, w


def _pick_matrix(n, picks):
    """(len(picks), n) 0/1: output o is input pixel picks[o] (spatial_maps.spatial_index along one axis)."""
    m = xp.zeros((len(picks), n))
    m[xp.arange(len(picks)), xp.asarray(picks, dtype=xp.int64)] = 1.0
    return m


def _shift_matrix(n):
    """(n, n) 0/1: output t is input t − 1, nothing at t = 0 (spatial_maps.time_shift along the time axis)."""
    return xp.eye(n, k=-1)


def _input_pairs(a, block, out, pixels, channels):
    """out[b·P + p] = Σ_c a[p, c]·block[b, p, c]/C: Σ⁰ of the pairs (i, j0 + b) at every pixel
    (kernel-math.md §1); a is x1[i], block is x2[j0:j1], both (…, P, C)."""
    for b in range(block.shape[0]):
        for p in range(pixels):
            acc = 0.0
            for c in range(channels):
                acc += a[p, c] * block[b, p, c]
            out[b * pixels + p] = acc / channels


def _window_pass(src, dst, outer, n, inner, size, window, stride, pad_lo, circular):
    """dst[a, o, c] = Σ_{t < window} src[a, stride·o + t − pad_lo, c] on flat arrays viewed as
    (outer, n, inner) -> (outer, size, inner): one spatial axis of a separable window sum. Pixels
    outside the input are zeros, or the opposite edge's when circular. The taps add in the order
    t = 0, 1, ... of spatial_support._window_sum, so both paths round alike. The last axis
    (inner = 1) sums each output in a register; the others add whole runs of contiguous pixels
    per tap (one run per (a, tap) at stride 1: a long loop that vectorises)."""
    if inner == 1:
        for a in range(outer):
            for o in range(size):
                acc = 0.0
                for t in range(window):
                    s = stride * o + t - pad_lo
                    if circular:
                        s %= n
                    if 0 <= s < n:
                        acc += src[a * n + s]
                dst[a * size + o] = acc
        return
    block_in = n * inner  # written as a·block + o·inner (not (a·size + o)·inner): LLVM then vectorises
    block_out = size * inner  # the runs (measured 4x faster on 32 x 32 grids)
    for q in range(outer * block_out):
        dst[q] = 0.0
    for a in range(outer):
        for t in range(window):
            if circular:
                for o in range(size):
                    d0 = a * block_out + o * inner
                    s0 = a * block_in + ((stride * o + t - pad_lo) % n) * inner
                    for c in range(inner):
                        dst[d0 + c] += src[s0 + c]
                continue
            first = max(0, -((t - pad_lo) // stride))  # the outputs this tap reaches inside the input
            last = min(size - 1, (n - 1 + pad_lo - t) // stride)
            if last < first:
                continue
            if stride == 1:
                d0 = a * block_out + first * inner
                s0 = a * block_in + (first + t - pad_lo) * inner
                for q in range((last - first + 1) * inner):
                    dst[d0 + q] += src[s0 + q]
            else:
                for o in range(first, last + 1):
                    d0 = a * block_out + o * inner
                    s0 = a * block_in + (stride * o + t - pad_lo) * inner
                    for c in range(inner):
                        dst[d0 + c] += src[s0 + c]


def _window_pass2(src, dst, outer, n, mid, inner, size, window, stride, pad_lo, circular):
    """dst[a, o, m, o', c] = Σ_{t < window} src[a, s(o, t), m, s(o', t), c], s(o, t) = stride·o + t − pad_lo,
    on flat arrays viewed as (outer, n, mid, n, inner): a convolution's tap t moves both pixels of a
    pair (p, q) (full layout), zeros outside (or the opposite edge when circular); taps in order."""
    block_in = n * mid * n * inner
    block_out = size * mid * size * inner
    row_in = mid * n * inner
    row_out = mid * size * inner
    for q in range(outer * block_out):
        dst[q] = 0.0
    for a in range(outer):
        for t in range(window):
            if circular:
                for o in range(size):
                    s = (stride * o + t - pad_lo) % n
                    for m in range(mid):
                        d0 = a * block_out + o * row_out + m * size * inner
                        s0 = a * block_in + s * row_in + m * n * inner
                        for o2 in range(size):
                            s2 = (stride * o2 + t - pad_lo) % n
                            for c in range(inner):
                                dst[d0 + o2 * inner + c] += src[s0 + s2 * inner + c]
                continue
            first = max(0, -((t - pad_lo) // stride))  # the outputs this tap reaches inside the input
            last = min(size - 1, (n - 1 + pad_lo - t) // stride)
            for o in range(first, last + 1):
                s = stride * o + t - pad_lo
                for m in range(mid):
                    d0 = a * block_out + o * row_out + m * size * inner
                    s0 = a * block_in + s * row_in + m * n * inner
                    if stride == 1:  # one contiguous run of the q axis (and what follows it)
                        dd = d0 + first * inner
                        ss = s0 + (first + t - pad_lo) * inner
                        for q in range((last - first + 1) * inner):
                            dst[dd + q] += src[ss + q]
                    else:
                        for o2 in range(first, last + 1):
                            dd = d0 + o2 * inner
                            ss = s0 + (stride * o2 + t - pad_lo) * inner
                            for c in range(inner):
                                dst[dd + c] += src[ss + c]


def _divide(buf, pixels, divisor):
    """buf[p] /= divisor: the mean over a filter's taps (spatial_support.conv_taps divides last too)."""
    for p in range(pixels):
        buf[p] = buf[p] / divisor


def _pixel_sums(src, dst, nb, entries, divisor):
    """dst[b] = Σ_e src[b·E + e] / divisor, summed in order (as spatial_support.flatten_mean and
    global_pool: the mean over pixels, or over pixel pairs, or their sum for divisor 1)."""
    for b in range(nb):
        acc = 0.0
        for e in range(entries):
            acc += src[b * entries + e]
        dst[b] = acc / divisor


def _pixel_traces(src, dst, nb, pixels):
    """dst[b] = mean_p src[b, p, p] of full-layout grids (flatten after pooling)."""
    for b in range(nb):
        acc = 0.0
        for p in range(pixels):
            acc += src[(b * pixels + p) * pixels + p]
        dst[b] = acc / pixels


def _diagonals(src, dst, nb, pixels):
    """dst[b, p] = src[b, p, p]: the diagonal layout of full-layout grids."""
    for b in range(nb):
        for p in range(pixels):
            dst[b * pixels + p] = src[(b * pixels + p) * pixels + p]


def _input_pairs_full(a, block, out, pixels, channels):
    """out[b, p, q] = Σ_c a[p, c]·block[b, q, c]/C: Σ⁰ of the pairs (i, j0 + b) at every pixel pair."""
    for b in range(block.shape[0]):
        for p in range(pixels):
            for q in range(pixels):
                acc = 0.0
                for c in range(channels):
                    acc += a[p, c] * block[b, q, c]
                out[(b * pixels + p) * pixels + q] = acc / channels


def _matrix_pass(src, dst, outer, n, inner, size, idx, w):
    """dst[a, o, c] = Σ_e w[o, e]·src[a, idx[o, e], c] on flat arrays viewed as (outer, n, inner) ->
    (outer, size, inner): a sparse matrix (``_sparse_rows``) along one spatial axis, each row's terms
    in the order of their columns, from 0 (as the NumPy path's matrix products of
    spatial_maps.resize_map, spatial_index, time_shift and conv_transpose_taps' diagonal layout)."""
    width = idx.shape[1]
    if inner == 1 and width == 1:  # the last axis, one term a row (picks, shifts, nearest): a gather
        for a in range(outer):
            for o in range(size):
                j = idx[o, 0]
                dst[a * size + o] = w[o, 0] * src[a * n + j] if j >= 0 else 0.0
        return
    if inner == 1:  # the last axis: each output's sum in a register
        for a in range(outer):
            for o in range(size):
                acc = 0.0
                for e in range(width):
                    j = idx[o, e]
                    if j < 0:
                        break
                    acc += w[o, e] * src[a * n + j]
                dst[a * size + o] = acc
        return
    for a in range(outer):
        for o in range(size):
            d0 = (a * size + o) * inner
            for c in range(inner):
                dst[d0 + c] = 0.0
            for e in range(width):
                j = idx[o, e]
                if j < 0:
                    break
                f = w[o, e]
                s0 = (a * n + j) * inner
                for c in range(inner):
                    dst[d0 + c] += f * src[s0 + c]


def _matrix_pass2(src, dst, outer, n, mid, inner, size, idx, w):
    """dst[a, o, m, o′, c] = Σ_t Σ_e′ w[t, o′, e′]·(Σ_e w[t, o, e]·src[a, idx[t, o, e], m, idx[t, o′, e′], c]) on
    flat arrays viewed as (outer, n, mid, n, inner) -> (outer, size, mid, size, inner): Σ_t M_t·K·M_tᵀ
    on the axes of p and of q (full layout), M_t the taps of a transposed convolution. Taps in order,
    each tap's sum formed first over p's axis, then over q's, as spatial_maps.conv_transpose_taps
    forms it, so both paths round alike."""
    taps, width = idx.shape[0], idx.shape[2]
    for q in range(outer * size * mid * size * inner):
        dst[q] = 0.0
    for a in range(outer):
        for t in range(taps):
            for o in range(size):
                if idx[t, o, 0] < 0:
                    continue
                for m in range(mid):
                    d0 = ((a * size + o) * mid + m) * size * inner
                    for o2 in range(size):
                        for c in range(inner):
                            acc = 0.0
                            for e2 in range(width):
                                j2 = idx[t, o2, e2]
                                if j2 < 0:
                                    break
                                part = 0.0
                                for e in range(width):
                                    j = idx[t, o, e]
                                    if j < 0:
                                        break
                                    part += w[t, o, e] * src[(((a * n + j) * mid + m) * n + j2) * inner + c]
                                acc += w[t, o2, e2] * part
                            dst[d0 + o2 * inner + c] += acc


def _embed_diagonal(src, dst, nb, pixels):
    """dst[b, p, q] = src[b, p] if p = q else 0: the full layout of diagonal-layout grids (spatial_maps.diagonal_embed)."""
    for b in range(nb):
        for p in range(pixels):
            for q in range(pixels):
                dst[(b * pixels + p) * pixels + q] = src[b * pixels + p] if p == q else 0.0


def _pair_blocks(n1, n2, same, size, first, step):
    """The blocks (i, j0, j1, diagonal) of at most ``size`` pairs (i, j0 … j1 − 1), row by row, every
    step-th from the first-th (one thread's share); with ``same`` only j ≥ i, and diagonal = i − j0
    for the block that holds the pair (i, i), else −1."""
    k = 0
    for i in range(n1):
        for j0 in range(i if same else 0, n2, size):
            if k % step == first:
                j1 = min(j0 + size, n2)
                yield i, j0, j1, (i - j0 if same and j0 <= i < j1 else -1)
            k += 1


# --- the text generated modules carry

DECORATORS = {_input_pairs: LOOP, _window_pass: INLINE_LOOP, _window_pass2: INLINE_LOOP, _divide: INLINE_LOOP,
              _pixel_sums: LOOP, _pixel_traces: LOOP, _diagonals: LOOP, _input_pairs_full: LOOP, _matrix_pass: LOOP,
              _matrix_pass2: LOOP, _embed_diagonal: LOOP}


def arrays_source(full: bool) -> str:
    """The per-point routines: the input variances (``_input_variances_full`` where the input is read
    in the full layout, else ``_input_variances_diagonal``), ``_put``, ``_other_side`` and the builders of
    the sparse spatial maps."""
    return source(_input_variances_full if full else _input_variances_diagonal, _put, _other_side, _sparse_rows,
                  _pick_matrix, _shift_matrix, decorators=DECORATORS)


def routines_source() -> str:
    """The pair routines, each under its numba decorator, and the blocks of pairs (plain Python)."""
    return source(*DECORATORS, _pair_blocks, decorators=DECORATORS)

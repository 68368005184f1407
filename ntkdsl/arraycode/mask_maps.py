"""Run-time routines of masked programs (:mod:`ntkdsl.algebra.masking`): the per-point position masks
applied to kernel arrays. Written over the array module ``xp`` like :mod:`.spatial_support` (pixel
axes first, points last; cov1 (..., N1, 1), cov2 (..., 1, N2)), copied verbatim into the generated
modules that need them (:mod:`.sources`).

``keep1`` (N1, P) and ``keep2`` (N2, P) are 1 − mask as floats, P positions in row-major order; keep2
None in kernels_diagonal (the pairs (x_i, x_i) as a column: x_i's own mask on both sides).
"""

import numpy as xp

from .spatial_support import _diagonal, _pixels, _spatial_array


def _keep_factors(keep1, keep2, shape, side):
    """(left, right): the keep factors of pixel p (points on axis −2) and of p′ (points on axis −1 in a
    pair or cov2 array, −2 in cov1), each shaped (*S, N, 1) or (*S, 1, N)."""
    column = lambda keep: keep.T.reshape(tuple(shape) + (-1, 1))  # noqa: E731
    row = lambda keep: keep.T.reshape(tuple(shape) + (1, -1))  # noqa: E731
    if keep2 is None or side == "cov1":
        return column(keep1), column(keep1)
    if side == "cov2":
        return row(keep2), row(keep2)
    return column(keep1), row(keep2)


def remask(k, keep1, keep2, shape, full, side):
    """k(p, p′)·keep(x)(p)·keep(x′)(p′): every entry touching a masked position set to 0
    (neural-tangents' Kernel.mask, utils/kernel.py:224)."""
    k = _spatial_array(k, shape, full)
    left, right = _keep_factors(keep1, keep2, shape, side)
    if full:
        ones = (1,) * len(shape)
        left = left.reshape(tuple(shape) + ones + left.shape[-2:])
        right = right.reshape(ones + tuple(shape) + right.shape[-2:])
    return k * left * right


def masked_mean(k, keep1, keep2, shape, full, side):
    """Σ_p keep(p)·k(p, p) / max(Σ_p keep(p), 1): a point's mean pixel variance over its unmasked
    positions (neural-tangents' mean_and_var with a mask, requirements.py:1127), (N, 1) or (1, N)."""
    k = _spatial_array(k, shape, full)
    p = _pixels(shape)
    diagonal = _diagonal(k, shape) if full else k.reshape((p,) + k.shape[-2:])
    weight, _ = _keep_factors(keep1, keep2, shape, side)
    weight = weight.reshape((p,) + weight.shape[-2:])
    return xp.sum(diagonal * weight, axis=0) / xp.maximum(xp.sum(weight, axis=0), 1.0)


def masked_pool(k, keep1, keep2, shape, mode, side):
    """Σ over the unmasked pixel pairs of a full-layout array, divided by their number for 'avg'
    (at least 1): global pooling of masked inputs (neural-tangents' _GlobalPool, linear.py:1756)."""
    k = _spatial_array(k, shape, True)
    p = _pixels(shape)
    left, right = _keep_factors(keep1, keep2, shape, side)
    left = left.reshape((p, 1) + left.shape[-2:])
    right = right.reshape((1, p) + right.shape[-2:])
    total = xp.sum(k.reshape((p, p) + k.shape[-2:]) * left * right, axis=(0, 1))
    if mode != "avg":
        return total
    return total / xp.maximum(xp.sum(left, axis=(0, 1)) * xp.sum(right, axis=(0, 1)), 1.0)


def masked_keys(logits, keep1, keep2, shape, mechanism, side):
    """Attention logits (*S, *S, n1, n2) of one input ('cov1' or 'cov2') with each masked key p′ (the second
    pixel axes) set to −1e20 for softmax (no weight; neural-tangents' _NEG_INF) or 0 for the other
    mechanisms (neural-tangents L.2326–2338)."""
    k = _spatial_array(logits, shape, True)
    _, key = _keep_factors(keep1, keep2, shape, side)
    key = key.reshape((1,) * len(shape) + tuple(shape) + key.shape[-2:])
    return xp.where(key > 0, k, -1e20 if mechanism == "softmax" else 0.0)

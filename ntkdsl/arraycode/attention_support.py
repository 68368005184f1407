"""Run-time routines of global self-attention kernels (neural-tangents' GlobalSelfAttention; kernel-math.md
§2, attention), over the array module ``xp`` with the conventions of :mod:`.spatial_support` (pixel axes
first, full layout ``*S, *S``, point axes last), copied verbatim into the generated modules that need
them (:mod:`.sources`).

The weights of one input come from its own full covariance: ``attention_weights`` turns the logits
QK·Σ̃(x, x)(p, p′) into mech(·), softmax over the key pixel p′; ``attention_map`` applies the weights of
both inputs to a kernel, G·K·G′ᵀ on the pixel axes. With position masks the logits reach
``attention_weights`` through ``masked_keys`` (:mod:`.mask_maps`: masked keys at −1e20 or 0).
"""

import numpy as xp

from .spatial_support import _pixels, _spatial_array


def position_covariance(shape, p_norm, decay, rate):
    """R(p, p′) of the positional embeddings, (*S, *S, 1, 1): with d = Σ_axes |p − p′|^p_norm (neural-tangents'
    ``_pos_emb_pdist``), 'none' δ(p, p′) (one-hot embeddings), 'exp' exp(−rate·d), 'linear' max(0, 1 − rate·d).

    Cost: O(P²·rank).
    """
    grids = xp.meshgrid(*[xp.arange(n, dtype=xp.float64) for n in shape], indexing="ij")
    pos = xp.stack([g.reshape(-1) for g in grids], axis=1)
    d = xp.sum(xp.abs(pos[:, None, :] - pos[None, :, :]) ** p_norm, axis=2)
    if decay == "none":
        r = (d == 0).astype(xp.float64)
    elif decay == "exp":
        r = xp.exp(-rate * d)
    else:
        r = xp.maximum(1.0 - rate * d, 0.0)
    return r.reshape(tuple(shape) * 2 + (1, 1))


def attention_weights(logits, shape, mechanism):
    """mech(logits) on a full-layout array (*S, *S, n1, n2), softmax over the key pixel p′ (the second
    pixel axes): the attention weights of one input (neural-tangents L.2340–2350). Softmax subtracts
    each row's largest logit first, so large logits cannot overflow.

    Cost: O(P²·n1·n2).
    """
    k = _spatial_array(logits, shape, True)
    p = _pixels(shape)
    flat = k.reshape((p, p) + k.shape[-2:])
    if mechanism == "softmax":
        e = xp.exp(flat - flat.max(axis=1, keepdims=True))
        flat = e / e.sum(axis=1, keepdims=True)
    elif mechanism == "abs":
        flat = xp.abs(flat)
    elif mechanism == "relu":
        flat = xp.maximum(flat, 0.0)
    return flat.reshape(k.shape)


def attention_map(k, left, right, shape):
    """out(q, q′) = Σ_{p, p′} left(q, p)·k(p, p′)·right(q′, p′) per pair of points, every array full
    layout (*S, *S, ·, ·) with point axes that broadcast (weights of x1 (..., N1, 1), of x2 (..., 1, N2)).

    Cost: two batched P x P products per pair of points, O(P³·n1·n2).
    """
    p = _pixels(shape)

    def batched(a):  # (*S, *S, a, b) -> (a, b, P, P)
        a = _spatial_array(a, shape, True)
        return xp.moveaxis(a.reshape((p, p) + a.shape[-2:]), (0, 1), (-2, -1))

    out = batched(left) @ batched(k) @ xp.swapaxes(batched(right), -1, -2)
    return xp.ascontiguousarray(xp.moveaxis(out, (-2, -1), (0, 1))).reshape(tuple(shape) * 2 + out.shape[:2])

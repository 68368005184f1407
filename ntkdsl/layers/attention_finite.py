"""The finite-width rules of :class:`ntkdsl.layers.attention.Attention` behind its methods (neural-tangents
0.6.5 ``GlobalSelfAttention`` apply_fn, linear.py L.2170–2273, differentiated by hand): the attention
mechanisms and their derivatives, the pullback of cotangents, and the parameter gradients and NTK terms
of weights whose per-example gradient is kept as two factors."""

from __future__ import annotations

from .arrays import namespace


def mechanism(kind: str, logits):
    """mech(logits), softmax along the last axis (the keys) after subtracting each row's largest logit."""
    xp = namespace(logits)
    if kind == "softmax":
        e = xp.exp(logits - logits.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if kind == "abs":
        return xp.abs(logits)
    if kind == "relu":
        return xp.maximum(logits, 0.0)
    return logits


def mechanism_backward(kind: str, logits, weights, d):
    """∂/∂logits of Σ d·mech(logits) (softmax along the last axis)."""
    xp = namespace(d)
    if kind == "softmax":
        return weights * (d - (d * weights).sum(axis=-1, keepdims=True))
    if kind == "abs":
        return xp.sign(logits) * d
    if kind == "relu":
        return (logits > 0) * d
    return d


def pullback(layer, params, cache, g):
    """(gradients, ∂/∂x (N, m, *S, C)) of cotangents g (N, m, *out_shape). A weight's per-example gradient
    Σ_p X[n, p, c]·D[n, m, h, p, j] is kept as its factors (X, D) (:func:`param_grads`, :func:`ntk_terms`);
    the bias and the embedding draws as arrays with leading (N, m) axes."""
    keys_in, values_in, k, q, logits, a, v, heads, factor, in_shape, keep = cache
    xp = namespace(g)
    n, m, c = g.shape[0], g.shape[1], in_shape[-1]
    logit, s_o = layer._scales(keys_in.shape[-1], values_in.shape[-1])
    gy = g.reshape(n, m, keys_in.shape[1], layer.channels)
    grads = {"wo": (heads, s_o * gy[:, :, None])}
    if "b" in params:
        grads["b"] = float(layer.b_std) * gy.sum(axis=2)
    dheads = s_o * (gy @ params["wo"].T)
    dheads = xp.moveaxis(dheads.reshape(n, m, gy.shape[2], layer.heads, -1), 3, 2)  # (N, m, H, P, d_v)
    da = xp.einsum("nmhpj,nhqj->nmhpq", dheads, v)
    dv = xp.einsum("nhpq,nmhpj->nmhqj", a, dheads)
    dlogits = logit * mechanism_backward(layer.mechanism, logits[:, None], a[:, None], da)
    if keep is not None:  # a masked key's logit is a constant
        dlogits = dlogits * keep[:, None, None, None, :]
    dq = xp.einsum("nmhpq,nhqj->nmhpj", dlogits, k)
    dk = xp.einsum("nmhpq,nhpj->nmhqj", dlogits, q)
    if layer.linear_scaling:  # queries are the keys (tied)
        dk = dk + dq
    else:
        grads["wq"] = (keys_in, dq)
    grads["wk"], grads["wv"] = (keys_in, dk), (values_in, dv)
    dkeys = xp.einsum("nmhpj,hcj->nmpc", dk, params["wk"])
    if not layer.linear_scaling:
        dkeys = dkeys + xp.einsum("nmhpj,hcj->nmpc", dq, params["wq"])
    dvalues = xp.einsum("nmhpj,hcj->nmpc", dv, params["wv"])
    if layer.val_pos_emb:
        dkeys, dvalues = dkeys + dvalues, 0.0
    dx = dvalues + dkeys[..., :c]
    if "pe" in params:
        de = dkeys if layer.pos_emb == "sum" else dkeys[..., c:]
        de = de if keep is None else de * keep[:, None, :, None]
        if factor is not None:
            de = xp.einsum("qp,nmqc->nmpc", factor, de)
        grads["pe"] = float(layer.w_pos_emb_std) * de.reshape((n, m) + params["pe"].shape)
    return grads, dx.reshape((n, m) + tuple(in_shape[1:]))


def param_grads(grads: dict, params, per_example: bool = False) -> dict:
    """∂/∂θ of Σ ⟨g, y⟩ from the pullback's gradients ``grads`` (:func:`pullback`), summed over points and
    the m axis or (``per_example``) with leading (N, m) axes."""
    out = {}
    for name, grad in grads.items():
        if isinstance(grad, tuple):
            x, d = grad
            grad = namespace(d).einsum("npc,nmhpj->nmhcj" if per_example else "npc,nmhpj->hcj", x, d)
            shape = params[name].shape
            out[name] = grad.reshape(((grad.shape[0], grad.shape[1]) if per_example else ()) + shape)
        else:
            out[name] = grad if per_example else grad.sum(axis=(0, 1))
    return out


def ntk_terms(j1: dict, j2: dict, xp, trace: bool = True):
    """Σ_θ ⟨∂f/∂θ(x), ∂f/∂θ(x′)⟩ of the pullbacks' gradients ``j1`` of x and ``j2`` of x′ (``xp``: their array
    namespace): for a weight with
    gradient Σ_p X[p, c]·D[m, h, p, j], Σ_{p, q} (X(x)[p]·X(x′)[q])·(Σ_{h, j} D(x)[m, h, p, j]·D(x′)[m′, h, q, j])
    (as dense's, kernel-math.md §5), O(N1·N2·P²·(C + m·H·d)) without the Jacobian; the bias and the
    embedding draws directly."""
    total = 0.0
    for name, a in j1.items():
        b = j2[name]
        if isinstance(a, tuple):
            gram = xp.einsum("apc,bqc->abpq", a[0], b[0])
            total = total + (xp.einsum("abpq,amhpj,bmhqj->ab", gram, a[1], b[1], optimize=True) if trace else
                             xp.einsum("abpq,amhpj,bkhqj->abmk", gram, a[1], b[1], optimize=True))
            continue
        a, b = a.reshape(a.shape[0], a.shape[1], -1), b.reshape(b.shape[0], b.shape[1], -1)
        if trace:
            total = total + a.reshape(a.shape[0], -1) @ b.reshape(b.shape[0], -1).T
        else:
            total = total + xp.einsum("aip,bjp->abij", a, b, optimize=True)
    return total


__all__ = ["mechanism", "mechanism_backward", "ntk_terms", "param_grads", "pullback"]

"""``attention(channels, key_channels, value_channels, heads, linear_scaling, ..., mechanism, pos_emb, ...)``:
global self-attention over all positions of ``[L, C]``, ``[H, W, C]``, ... signals (neural-tangents 0.6.5
``GlobalSelfAttention``, linear.py L.1932–2443; Hron et al. 2020, "Infinite attention: NNGP and NTK for deep
attention networks", arXiv:2006.10540).

Finite width (NT's apply_fn, X the (P, C) positions × channels of a point): positional embeddings
E = w_pe·L·Z (Z ~ N(0, 1) of shape (P, C_pe), L L ᵀ = R, :func:`position_factor`) are added (``sum``) or
appended (``concat``) to X for the keys (X_k, C_k channels), and to the values only with ``val_pos_emb``
(X_v, C_v channels); per head h, K_h = X_k·WK_h, queries Q_h = K_h under linear scaling (tied) else X_k·WQ_h,
logits G_h = QK/(C_k·d_k^(1 or ½))·Q_h·K_hᵀ, A_h = mech(G_h) (softmax over keys), head_h = A_h·X_v·WV_h;
out = OV/√(d_v·H·C_v)·concat_h(head_h)·W_out + b_std·b, all weights N(0, 1), QK = w_query_std·w_key_std,
OV = w_out_std·w_value_std. One parameterization (NT's: NTK); the network's ``parameterization`` does not
apply. Kernel rules in kernel-math.md §2 (attention); E is a trained parameter, as in NT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import sympy as sp

from ..algebra import spatial as ops
from ..algebra.masking import keys_masked, masked, masked_state, masks_active
from ..algebra.state import KernelState
from ..arraycode.attention_support import position_covariance
from ..errors import ArgumentSpecError, ShapeSpecError, Span
from ..ir.arguments import (BOOLEANS, REQUIRED, Spec, Word, WordCall, boolean, enum, is_positive_int, none_or,
                            positive_int, positive_real, std, std_or_none)
from ..ir.layer import Layer, span_field
from ..ir.printer import format_value
from .arrays import namespace
from .attention_finite import mechanism, ntk_terms, param_grads, pullback
from .finite import current_keep
from .registry import LayerRule, register
from .windows import spatial_input

MECHANISMS = ("softmax", "identity", "abs", "relu")
POS_EMBS = ("none", "sum", "concat")
DECAYS = ("none", "exp", "linear")


@dataclass(frozen=True)
class Attention(Layer):
    """Global self-attention; ``key_channels``/``value_channels`` None: ``channels`` (so a width override of the
    sampler resizes them with it)."""

    channels: int
    key_channels: Optional[int] = None
    value_channels: Optional[int] = None
    heads: int = 1
    linear_scaling: bool = True
    w_key_std: sp.Expr = sp.S.One
    w_value_std: sp.Expr = sp.S.One
    w_query_std: sp.Expr = sp.S.One
    w_out_std: sp.Expr = sp.S.One
    b_std: Optional[sp.Expr] = None
    mechanism: str = "softmax"
    pos_emb: str = "none"
    pos_emb_p_norm: sp.Expr = sp.Integer(2)
    pos_emb_decay: str = "none"
    pos_emb_decay_rate: sp.Expr = sp.S.Zero  # s of exp(s) / linear(s)
    pos_emb_channels: Optional[int] = None  # None: the input's channel count
    w_pos_emb_std: sp.Expr = sp.S.One
    val_pos_emb: bool = False
    span: Optional[Span] = span_field()

    masking = "remask"  # with position masks: masked keys get no weight, masked queries are zeroed after (NT)

    @property
    def d_k(self) -> int:
        return self.key_channels or self.channels

    @property
    def d_v(self) -> int:
        return self.value_channels or self.channels

    # --- structure ---------------------------------------------------------------------------
    def parameters(self) -> Dict[str, sp.Expr]:
        out = {"w_key_std": self.w_key_std, "w_value_std": self.w_value_std, "w_query_std": self.w_query_std,
               "w_out_std": self.w_out_std}
        if self.b_std is not None:
            out["b_std"] = self.b_std
        if self.pos_emb != "none":
            out["w_pos_emb_std"] = self.w_pos_emb_std
        return out

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        spatial = spatial_input("attention", in_shape, 0, self.span)
        if self.pos_emb == "sum" and self.pos_emb_channels not in (None, in_shape[-1]):
            raise ShapeSpecError(f"attention: pos_emb = sum adds the embeddings to the input, so pos_emb_channels "
                                 f"({self.pos_emb_channels}) must equal the input's channel count ({in_shape[-1]}); "
                                 "leave it out or use pos_emb = concat", self.span)
        return spatial + (self.channels,)

    def needs_full_input(self, full_output: bool) -> bool:
        return True  # every position attends to every other: all pixel pairs (p, p′) of the input are read

    def _embedding_weights(self, channels: int, w_pe) -> Tuple[sp.Expr, sp.Expr]:
        """(input weight, embedding weight) of the interpolated covariances (NT L.2284–2298): sum 1, w_pe²;
        concat C/(C + C_pe), w_pe²·C_pe/(C + C_pe)."""
        w2 = w_pe**2
        if self.pos_emb != "concat":
            return sp.S.One, w2
        c_pe = self.pos_emb_channels or channels
        return sp.Rational(channels, channels + c_pe), w2 * sp.Rational(c_pe, channels + c_pe)

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        """kernel-math.md §2, attention (NT L.2275–2443)."""
        if s.layout != ops.FULL:  # pragma: no cover - layout inference gives a full input (needs_full_input)
            raise AssertionError("attention reached with a diagonal kernel: layout inference is wrong")
        qk, ov = p["w_query_std"] * p["w_key_std"], p["w_out_std"] * p["w_value_std"]
        b2 = p["b_std"] ** 2 if "b_std" in p else sp.S.Zero
        if masks_active():  # kernel-math.md §2, masks: masked positions hold nothing, R masked as the kernels (NT)
            s = masked_state(s)
        if self.pos_emb == "none":
            tilde = lambda k: k  # noqa: E731
        else:
            kw, pw = self._embedding_weights(s.width, p["w_pos_emb_std"])
            r = ops.positions(s.shape, self.pos_emb_p_norm, self.pos_emb_decay, self.pos_emb_decay_rate)
            side = {s.cov1: "cov1", s.cov2: "cov2"}  # nngp, ntk: the pair
            r_of = (lambda k: masked(r, s.shape, ops.FULL, side.get(k, "pair"))) if masks_active() else (lambda k: r)
            tilde = lambda k: kw * k + pw * r_of(k)  # noqa: E731
        rule = self._linear_rule if self.linear_scaling else self._identity_rule
        cov1, cov2, nngp, ntk = rule(s, tilde, qk, ov, b2)
        return KernelState(cov1, cov2, nngp, ntk, gaussian=True, width=self.channels, shape=s.shape, layout=ops.FULL)

    def _linear_rule(self, s, tilde, qk, ov, b2):
        """G = mech(QK·Σ̃(x, x)) per input; Σ′ = OV²·G·V·G′ᵀ + b², Θ′ = OV²·G·T·G′ᵀ + b² + 2(Σ′ − b²)."""
        keys = (lambda logits, side: keys_masked(logits, s.shape, self.mechanism, side)) if masks_active() else (
            lambda logits, side: logits)  # masked keys: no weight (NT L.2326–2338)
        g1 = ops.attention(keys(qk * tilde(s.cov1), "cov1"), s.shape, self.mechanism)
        g2 = ops.attention(keys(qk * tilde(s.cov2), "cov2"), s.shape, self.mechanism)
        values = tilde if self.val_pos_emb else (lambda k: k)
        cov1, cov2, nngp = (ov**2 * ops.attend(values(k), a, b, s.shape) + b2
                            for k, a, b in ((s.cov1, g1, g1), (s.cov2, g2, g2), (s.nngp, g1, g2)))
        ntk = ov**2 * ops.attend(values(s.ntk), g1, g2, s.shape) + b2 + 2 * (nngp - b2)
        return cov1, cov2, nngp, ntk

    def _identity_rule(self, s, tilde, qk, ov, b2):
        """Identity mechanism, 1/√d_k scaling (NT L.2387–2428), ⟨A, B⟩ = Σ_{p, p′} A·B per input pair:
        Σ′ = (QK·OV)²·⟨Σ̃, V⟩·Σ̃ + b², Θ′ = (QK·OV)²·[(⟨Σ̃, Θ_v⟩ + ⟨Σ_v, Θ̃⟩)·Σ̃ + ⟨Σ̃, V⟩·(Θ̃ + 4Σ̃)] + b²."""
        dot = lambda a, b: ops.global_mean(a * b, s.shape, "sum")  # noqa: E731
        std2 = (qk * ov) ** 2
        plain = self.val_pos_emb or self.pos_emb == "none"
        v = tilde if self.val_pos_emb else (lambda k: k)
        cov1, cov2, nngp = (std2 * dot(tilde(k), v(k)) * tilde(k) + b2 for k in (s.cov1, s.cov2, s.nngp))
        n_t, t_t = tilde(s.nngp), tilde(s.ntk)
        cross = 2 * dot(n_t, t_t) if plain else dot(n_t, s.ntk) + dot(s.nngp, t_t)
        ntk = std2 * (cross * n_t + dot(n_t, v(s.nngp)) * (t_t + 4 * n_t)) + b2
        return cov1, cov2, nngp, ntk

    # --- facts and text ------------------------------------------------------------------------
    def check(self) -> None:
        sizes = (self.channels, self.d_k, self.d_v, self.heads)
        if not all(map(is_positive_int, sizes)) or not (self.pos_emb_channels is None
                                                        or is_positive_int(self.pos_emb_channels)):
            raise ArgumentSpecError("attention: channel counts and heads must be positive integers", self.span)
        if (self.mechanism, self.pos_emb, self.pos_emb_decay) not in [(m, e, d) for m in MECHANISMS for e in POS_EMBS
                                                                      for d in DECAYS]:
            raise ArgumentSpecError("attention: unknown mechanism, pos_emb or pos_emb_decay word", self.span)
        if not self.linear_scaling and self.mechanism != "identity":
            raise ArgumentSpecError(
                f"attention: no infinite-width kernel is known for mechanism = {self.mechanism} with linear_scaling = "
                "false (the 1/√key_channels scaling leaves an integral without closed form; neural-tangents "
                "raises NotImplementedError too); use linear_scaling = true or mechanism = identity", self.span)
        if self.pos_emb_decay != "none" and not self.pos_emb_decay_rate > 0:
            raise ArgumentSpecError(f"attention: the rate s of pos_emb_decay = {self.pos_emb_decay}(s) must be "
                                    f"positive, got {self.pos_emb_decay_rate}", self.span)

    def verified(self, shape, gaussian, why, check):
        return True, ""  # a fresh W_out layer last (NT: is_gaussian = True); any input will do

    def ends_fresh(self) -> Optional[bool]:
        return True  # out = (...)·W_out + b with W_out, b fresh and zero-mean

    def format(self, indent: str = "") -> str:
        args = [str(self.channels)] + [f"{name} = {getattr(self, name)}" for name in ("key_channels", "value_channels")
                                       if getattr(self, name) is not None]
        args += [f"heads = {self.heads}", f"linear_scaling = {BOOLEANS[self.linear_scaling]}"]
        args += [f"{name} = {format_value(getattr(self, name))}" for name in
                 ("w_key_std", "w_value_std", "w_query_std", "w_out_std")]
        args += ["b_std = none" if self.b_std is None else f"b_std = {format_value(self.b_std)}",
                 f"mechanism = {self.mechanism}", f"pos_emb = {self.pos_emb}"]
        if self.pos_emb != "none":
            decay = self.pos_emb_decay if self.pos_emb_decay == "none" else \
                f"{self.pos_emb_decay}({format_value(self.pos_emb_decay_rate)})"
            args += [f"pos_emb_p_norm = {format_value(self.pos_emb_p_norm)}", f"pos_emb_decay = {decay}"]
            if self.pos_emb_channels is not None:
                args.append(f"pos_emb_channels = {self.pos_emb_channels}")
            args += [f"w_pos_emb_std = {format_value(self.w_pos_emb_std)}",
                     f"val_pos_emb = {BOOLEANS[self.val_pos_emb]}"]
        return f"attention({', '.join(args)})"

    # --- finite width (NT init_fn L.2119–2168, apply_fn L.2170–2273; gradients in attention_finite.py) ---
    def _embedding_channels(self, channels: int) -> int:
        return self.pos_emb_channels or channels

    def init_params(self, rng, in_shape):
        """wk (H, C_k, d_k), wq (linear_scaling = false), wv (H, C_v, d_v), wo (H·d_v, channels), b, and the
        embedding draws pe (*S, C_pe), all N(0, 1)."""
        out_shape = self.out_shape(tuple(in_shape))
        c = in_shape[-1]
        c_pe = self._embedding_channels(c) if self.pos_emb != "none" else 0
        c_k = c + (c_pe if self.pos_emb == "concat" else 0)
        c_v = c_k if self.val_pos_emb else c
        h = self.heads
        params = {"wk": rng.standard_normal((h, c_k, self.d_k))}
        if not self.linear_scaling:
            params["wq"] = rng.standard_normal((h, c_k, self.d_k))
        params["wv"] = rng.standard_normal((h, c_v, self.d_v))
        params["wo"] = rng.standard_normal((h * self.d_v, self.channels))
        if self.b_std is not None:
            params["b"] = rng.standard_normal(self.channels)
        if self.pos_emb != "none":
            self.position_factor(tuple(in_shape[:-1]))  # refuse a decay without a factor before drawing
            params["pe"] = rng.standard_normal(tuple(in_shape[:-1]) + (c_pe,))
        return params, out_shape

    def position_factor(self, spatial: Tuple[int, ...]) -> np.ndarray:
        """L (P, P) with L·Lᵀ = R (eigenvectors times the square roots of the eigenvalues; NT takes R's
        Cholesky factor, the same distribution of L·Z); a located error when R is not positive semidefinite."""
        p = int(np.prod(spatial))
        r = position_covariance(spatial, float(self.pos_emb_p_norm), self.pos_emb_decay,
                                float(self.pos_emb_decay_rate)).reshape(p, p)
        lam, u = np.linalg.eigh(r)
        if lam.min() < -1e-10 * max(lam.max(), 1.0):  # eigh's rounding is ~1e-16·‖R‖; anything beyond is real
            raise ArgumentSpecError(
                f"attention: pos_emb_decay = {self.pos_emb_decay}({format_value(self.pos_emb_decay_rate)}) with "
                f"pos_emb_p_norm = {format_value(self.pos_emb_p_norm)} gives a position covariance R that is not "
                f"positive semidefinite on {list(spatial)} (smallest eigenvalue {lam.min():.3g}), so finite networks "
                "cannot draw embeddings with covariance R (the kernel is still defined)", self.span)
        return u * np.sqrt(np.maximum(lam, 0.0))

    def _scales(self, c_k: int, c_v: int) -> Tuple[float, float]:
        """(logit scale QK/(C_k·d_k^(1 or ½)), output scale OV/√(d_v·H·C_v)) of the finite network."""
        qk = float(self.w_query_std) * float(self.w_key_std)
        logit = qk / (c_k * self.d_k ** (1.0 if self.linear_scaling else 0.5))
        return logit, float(self.w_out_std) * float(self.w_value_std) / np.sqrt(self.d_v * self.heads * c_v)

    def forward(self, params, x):
        """y = OV/√(d_v·H·C_v)·concat_h(mech(G_h)·X_v·WV_h)·W_out + b_std·b per point (x of shape (N, *S, C))."""
        xp = namespace(x)
        n, spatial, c = x.shape[0], tuple(x.shape[1:-1]), x.shape[-1]
        flat = x.reshape(n, -1, c)
        factor, keys_in = None, flat
        keep = current_keep()  # position masks (N, *S): masked keys get no weight (NT L.2326–2338)
        keep = None if keep is None else keep.reshape(n, -1)
        if "pe" in params:
            z = params["pe"].reshape(-1, params["pe"].shape[-1])
            if self.pos_emb_decay != "none":
                factor = xp.asarray(self.position_factor(spatial))
            e = float(self.w_pos_emb_std) * (z if factor is None else factor @ z)
            e = e if keep is None else e * keep[..., None]  # masked positions' embeddings zeroed (NT)
            keys_in = flat + e if self.pos_emb == "sum" else xp.concatenate(
                [flat, xp.broadcast_to(e, (n,) + e.shape[-2:])], axis=-1)
        values_in = keys_in if self.val_pos_emb else flat
        logit, s_o = self._scales(keys_in.shape[-1], values_in.shape[-1])
        k = xp.einsum("npc,hcj->nhpj", keys_in, params["wk"])
        q = k if self.linear_scaling else xp.einsum("npc,hcj->nhpj", keys_in, params["wq"])
        g = logit * (q @ xp.swapaxes(k, -1, -2))
        if keep is not None:
            g = xp.where(keep[:, None, None, :] > 0, g, -1e20 if self.mechanism == "softmax" else 0.0)
        a = mechanism(self.mechanism, g)
        v = xp.einsum("npc,hcj->nhpj", values_in, params["wv"])
        heads = xp.moveaxis(a @ v, 1, 2).reshape(n, flat.shape[1], -1)
        y = s_o * (heads @ params["wo"])
        if "b" in params:
            y = y + float(self.b_std) * params["b"]
        cache = (keys_in, values_in, k, q, g, a, v, heads, factor, x.shape, keep)
        return y.reshape((n,) + spatial + (self.channels,)), cache

    def backward(self, params, cache, g):
        return pullback(self, params, cache, g)[1]

    def param_grads(self, params, cache, g, per_example=False):
        """∂/∂θ of Σ ⟨g, y⟩, summed over points and the m axis or (``per_example``) with leading (N, m) axes."""
        return param_grads(pullback(self, params, cache, g)[0], params, per_example)

    def ntk_terms(self, params, cache1, g1, cache2, g2, trace=True):
        """Σ_θ ⟨∂f/∂θ(x), ∂f/∂θ(x′)⟩ without the Jacobian (:func:`ntkdsl.layers.attention_finite.ntk_terms`)."""
        j1 = pullback(self, params, cache1, g1)[0]
        j2 = j1 if (cache2 is cache1 and g2 is g1) else pullback(self, params, cache2, g2)[0]
        return ntk_terms(j1, j2, namespace(g1), trace)


# --- arguments ---------------------------------------------------------------------------------
def decay(low, v, span, name: str, env=()) -> Tuple[str, sp.Expr]:
    """``none``, ``exp(s)`` (R = exp(−s·d)) or ``linear(s)`` (R = max(0, 1 − s·d)) as (word, s)."""
    if v == "none" or (isinstance(v, Word) and v.name == "none"):
        return "none", sp.S.Zero
    if isinstance(v, WordCall) and v.name == "linear":
        rate = v.value
    elif isinstance(v, sp.exp) or v is sp.E:
        rate = sp.S.One if v is sp.E else v.args[0]
    else:
        raise ArgumentSpecError(f"{name} must be none, exp(s) (R = exp(−s·d)) or linear(s) (R = max(0, 1 − s·d)) "
                                "with a number s > 0", span)
    if not (rate.is_number and rate > 0):
        raise ArgumentSpecError(f"{name}: the rate s must be a positive number, got {rate}", span)
    return ("linear" if isinstance(v, WordCall) else "exp"), rate


def _build(v, call) -> Attention:
    word, rate = v["pos_emb_decay"]
    embedding = {} if v["pos_emb"] == "none" else dict(
        pos_emb_p_norm=v["pos_emb_p_norm"], pos_emb_decay=word, pos_emb_decay_rate=rate,
        pos_emb_channels=v["pos_emb_channels"], w_pos_emb_std=v["w_pos_emb_std"], val_pos_emb=v["val_pos_emb"])
    layer = Attention(v["channels"], v["key_channels"], v["value_channels"],
                      v["heads"], v["linear_scaling"], v["w_key_std"], v["w_value_std"], v["w_query_std"],
                      v["w_out_std"], v["b_std"], v["mechanism"], v["pos_emb"], span=call.span, **embedding)
    layer.check()
    return layer


register(LayerRule("attention", (
    Spec("channels", REQUIRED, positive_int),
    Spec("key_channels", None, none_or(positive_int)),
    Spec("value_channels", None, none_or(positive_int)),
    Spec("heads", sp.Integer(1), positive_int),
    Spec("linear_scaling", True, boolean),
    Spec("w_key_std", sp.S.One, std),
    Spec("w_value_std", sp.S.One, std),
    Spec("w_query_std", sp.S.One, std),
    Spec("w_out_std", sp.S.One, std),
    Spec("b_std", None, std_or_none),
    Spec("mechanism", "softmax", enum(MECHANISMS)),
    Spec("pos_emb", "none", enum(POS_EMBS)),
    Spec("pos_emb_p_norm", sp.Integer(2), positive_real),
    Spec("pos_emb_decay", "none", decay),
    Spec("pos_emb_channels", None, none_or(positive_int)),
    Spec("w_pos_emb_std", sp.S.One, std),
    Spec("val_pos_emb", False, boolean),
), _build))

"""The attention operations of the kernel algebra (neural-tangents' GlobalSelfAttention; kernel-math.md §2,
attention): the weights mech(QK·Σ̃) of one input, the map G·K·G′ᵀ and the positional-embedding
covariance R. Unlike the other spatial operations the weights are not linear in their argument."""

from __future__ import annotations

import sympy as sp
from sympy.core.symbol import Str

from .functions import _powered, number
from .spatial_base import SpatialOp as _SpatialOp
from .spatial_base import ints as _ints
from .spatial_base import static


class attention_weights(_SpatialOp):  # noqa: N801
    """mech(L) of full-layout attention logits L(p, p′) = QK·Σ̃(x, x)(p, p′) of one input, softmax taken over
    the key pixel p′ (neural-tangents' GlobalSelfAttention with linear scaling; kernel-math.md §2,
    attention). Not linear: softmax(0) is uniform, so no shortcut at 0. Arguments: (L, spatial shape,
    mechanism word 'softmax' | 'identity' | 'abs' | 'relu').
    """

    nargs = 3

    @classmethod
    def eval(cls, k, *settings):
        return None

    def _eval_derivative(self, s):
        if self.args[0].has(s):
            raise NotImplementedError("attention weights are not differentiated symbolically")
        return sp.S.Zero

    @_powered
    def _latex(self, printer):
        tex = rf"\operatorname{{{static(self.args[2])}}}_{{p'}}\left[{self._arg_tex(printer)}\right]"
        return tex


class attention_map(_SpatialOp):  # noqa: N801
    """G·K·G′ᵀ on the pixel axes of a full-layout kernel, per pair of points: out(q, q′) =
    Σ_{p, p′} G(q, p)·K(p, p′)·G′(q′, p′), G and G′ :class:`attention_weights` arrays whose point axes
    broadcast against K's (nngp: G of x on the left, G′ of x′ on the right; a variance: its own point's
    weights on both sides). Linear in K. Arguments: (K, G, G′, spatial shape).
    """

    nargs = 4

    def _eval_derivative(self, s):
        if self.args[1].has(s) or self.args[2].has(s):
            raise NotImplementedError("attention weights are not differentiated symbolically")
        return super()._eval_derivative(s)

    @_powered
    def _latex(self, printer):
        left, right = (printer._print(a) for a in self.args[1:3])
        tex = rf"{left}\left[{self._arg_tex(printer)}\right]{right}^{{\top}}"
        return tex


class position_covariance(_SpatialOp):  # noqa: N801
    """R(p, p′) of positional embeddings as a full-layout array (*S, *S, 1, 1): with
    d = Σ_axes |p − p′|^p_norm, 'none' δ(p, p′), 'exp' exp(−rate·d), 'linear' max(0, 1 − rate·d)
    (kernel-math.md §2, attention). Arguments: (spatial shape, p_norm, decay word, rate).
    """

    nargs = 4

    @classmethod
    def eval(cls, *settings):
        return None

    def _eval_is_real(self):
        return True

    def _eval_derivative(self, s):
        return sp.S.Zero

    @_powered
    def _latex(self, printer):
        tex = r"R_{pp'}"
        return tex


def attention(logits, shape, mechanism: str) -> sp.Expr:
    return attention_weights(logits, _ints(shape), Str(mechanism))


def attend(k, left, right, shape) -> sp.Expr:
    return attention_map(k, left, right, _ints(shape))


def positions(shape, p_norm, decay: str, rate) -> sp.Expr:
    return position_covariance(_ints(shape), number(p_norm), Str(decay), number(rate))

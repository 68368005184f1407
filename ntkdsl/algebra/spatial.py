"""Structural operations on spatial kernels, as sympy functions that keep the program readable.

A kernel of an image network is an array over pixel pairs (kernel-math.md §1). Every array has
pixel axes first — the **diagonal** layout (the pixel pairs (p, p) only: ``*S``) or the **full**
layout (all pairs (p, p′): ``*S, *S``, first the spatial axes of p, then those of p′) — and two
point axes last: nngp and ntk (..., N1, N2), cov1 (..., N1, 1), cov2 (..., 1, N2). So elementwise
duals broadcast cov1 against cov2 and nngp in both layouts (and in vector networks, whose arrays
are the (N1, N2) matrices), a full (P, P′) block is a plain matrix after a reshape, and every
window shift is a slice of contiguous N1 x N2 blocks.

Each function below is linear in its first argument (the kernel array) and its other arguments are
static, except the attention ops (attention_weights: a softmax of logits; attention_map: the weights
are arrays too; position_covariance: no array); static arguments are
(``sp.Tuple`` of integers, ``Str`` words), so CSE and differentiation pass through them. The code
printer turns each into a call of the run-time routine of the same name
(:mod:`ntkdsl.arraycode.spatial_support`); ``_latex`` gives an operator notation.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, Tuple

import sympy as sp
from sympy.core.symbol import Str

from .attention_ops import attend, attention, attention_map, attention_weights, position_covariance, positions  # noqa: F401
from .functions import _powered
from .spatial_base import SpatialOp as _SpatialOp
from .spatial_base import ints as _ints
from .spatial_base import static
from .spatial_base import times as _times

DIAGONAL, FULL = "diagonal", "full"


class conv_taps(_SpatialOp):  # noqa: N801 - sympy functions are lower-case by convention
    """(1/|f|)·Σ_{δ ∈ f} K(s·p + δ, s·p′ + δ): a convolution's mean over its filter's shifted diagonal.

    Arguments: (K, input spatial shape, filter shape, strides, padding word, layout word).
    """

    nargs = 6

    @_powered
    def _latex(self, printer):
        _, _, kernel, stride, padding, _ = self.args
        extra = "" if set(static(stride)) == {1} else rf",\ s={_times(stride)}"
        tex = rf"\operatorname{{conv}}_{{{_times(kernel)},\ \mathrm{{{static(padding)}}}{extra}}}\left[{self._arg_tex(printer)}\right]"
        return tex


class conv_transpose_taps(_SpatialOp):  # noqa: N801
    """(1/|f|)·Σ_{δ ∈ f} K(D(q + δ − a), D(q′ + δ − a)): a transposed convolution's mean over its taps,
    D(j) = j/s at input pixels and a hole (contributing 0) between them, a the pad before
    (kernel-math.md §2, ConvTranspose). Arguments as :class:`conv_taps`.
    """

    nargs = 6

    @_powered
    def _latex(self, printer):
        _, _, kernel, stride, padding, _ = self.args
        extra = "" if set(static(stride)) == {1} else rf",\ s={_times(stride)}"
        tex = (rf"\operatorname{{conv}}^{{\top}}_{{{_times(kernel)},\ \mathrm{{{static(padding)}}}{extra}}}"
               rf"\left[{self._arg_tex(printer)}\right]")
        return tex


class resize_map(_SpatialOp):  # noqa: N801
    """R·K·Rᵀ along each resized spatial dimension, R the map of jax.image.resize (neural-tangents'
    ImageResize; both pixel axes in the full layout). Arguments: (K, spatial shape, new shape,
    method word 'linear' | 'nearest', antialias word 'true' | 'false', layout word).
    """

    nargs = 6

    @_powered
    def _latex(self, printer):
        _, _, size, method, _, _ = self.args
        tex = rf"\operatorname{{resize}}_{{{_times(size)},\ \mathrm{{{static(method)}}}}}\left[{self._arg_tex(printer)}\right]"
        return tex


class spatial_index(_SpatialOp):  # noqa: N801
    """K at the picked pixels of each spatial axis (both pixel axes of the full layout), an axis
    indexed by an integer dropped: the kernel of x[..., picks, ...] (neural-tangents' Index).
    Arguments: (K, spatial shape, picks per axis (tuples of pixel indices), drops per axis (0 | 1),
    layout word).
    """

    nargs = 5
    _constant_passes = True  # a constant kernel picked is the same constant

    @_powered
    def _latex(self, printer):
        tex = rf"\operatorname{{index}}\left[{self._arg_tex(printer)}\right]"
        return tex


class pool_window(_SpatialOp):  # noqa: N801
    """Σ_{δ, δ′ ∈ w} K(s·o + δ, s·o′ + δ′), divided by |w|² for average pooling (full layout).

    Arguments: (K, input spatial shape, window, strides, padding word, mode word 'avg' | 'sum').
    """

    nargs = 6

    @_powered
    def _latex(self, printer):
        _, _, window, stride, padding, mode = self.args
        tex = (rf"\operatorname{{{static(mode)}pool}}_{{{_times(window)},\ s={_times(stride)},\ \mathrm{{{static(padding)}}}}}"
               rf"\left[{self._arg_tex(printer)}\right]")
        return tex


class flatten_mean(_SpatialOp):  # noqa: N801
    """mean_p K(p, p): the kernel of the flattened features (kernel-math.md §2).

    Arguments: (K, spatial shape, layout word).
    """

    nargs = 3
    _constant_passes = True

    @_powered
    def _latex(self, printer):
        tex = rf"\operatorname{{mean}}_{{p}} \left[{self._arg_tex(printer)}\right]_{{pp}}"
        return tex


class global_pool(_SpatialOp):  # noqa: N801
    """mean (or sum) of K(p, p′) over all pixel pairs (full layout): global average/sum pooling.

    Arguments: (K, spatial shape, mode word 'avg' | 'sum').
    """

    nargs = 3

    @classmethod
    def eval(cls, k, shape, mode):
        if k == 0:
            return sp.S.Zero
        if k.is_number and static(mode) == "avg":
            return k
        return None

    @_powered
    def _latex(self, printer):
        name = "mean" if static(self.args[2]) == "avg" else "sum"
        tex = rf"\operatorname{{{name}}}_{{p, p'}} \left[{self._arg_tex(printer)}\right]_{{pp'}}"
        return tex


class pixel_variance(_SpatialOp):  # noqa: N801
    """The diagonal K(p, p) of a full-layout array, placed on the axes of p (side 0) or of p′ (side 1).

    An activation at the pixel pair (p, p′) needs Σ(x, x) at p and Σ(x′, x′) at p′ (kernel-math.md
    §3). Arguments: (K, spatial shape, side).
    """

    nargs = 3
    _constant_passes = True

    @_powered
    def _latex(self, printer):
        pixel = "p" if static(self.args[2]) == 0 else "p'"
        tex = rf"\left[{self._arg_tex(printer)}\right]_{{{pixel}{pixel}}}"
        return tex


class spatial_diagonal(_SpatialOp):  # noqa: N801
    """The diagonal layout of a full-layout array: K(p, p) on the axes of p. Arguments: (K, spatial shape)."""

    nargs = 2
    _constant_passes = True

    @classmethod
    def eval(cls, k, *settings):
        if isinstance(k, diagonal_embed):  # diag(δ·K) = K: no full array for a layer whose output is read diagonally
            return k.args[0]
        return super().eval(k, *settings)

    @_powered
    def _latex(self, printer):
        tex = rf"\operatorname{{diag}}\left[{self._arg_tex(printer)}\right]"
        return tex


class diagonal_embed(_SpatialOp):  # noqa: N801
    """The full layout of a kernel that vanishes between different pixels: δ(p, p′)·K(p), from its
    diagonal layout (the output of a layer with unshared weights, kernel-math.md §2). Arguments:
    (K, spatial shape)."""

    nargs = 2

    @_powered
    def _latex(self, printer):
        tex = rf"\delta_{{pp'}}\left[{self._arg_tex(printer)}\right]_{{p}}"
        return tex


class time_shift(_SpatialOp):  # noqa: N801
    """K(t − 1, t′ − 1) at (t, t′), 0 where t = 1 or t′ = 1: one step of a recurrence along the single
    spatial (time) axis of a signal (the full layout shifts both axes, the diagonal one its only axis;
    kernel-math.md §2, recurrent). Arguments: (K, spatial shape (T,), layout word).
    """

    nargs = 3

    @_powered
    def _latex(self, printer):
        tex = rf"\operatorname{{shift}}\left[{self._arg_tex(printer)}\right]"
        return tex


class graph_aggregate(_SpatialOp):  # noqa: N801
    """A₁ᵀ·K·A₂ on the node axes of a full-layout kernel of a graph signal, each point with its own
    adjacency given at run time (neural-tangents' Aggregate; kernel-math.md §2, aggregate): nngp and ntk
    take A(x) on the left and A(x′) on the right (side 'pair'), cov1 A(x) on both sides, cov2 A(x′).
    Arguments: (K, node shape (V,), side word 'pair' | 'cov1' | 'cov2').
    """

    nargs = 3

    @_powered
    def _latex(self, printer):
        side = static(self.args[2])
        left, right = {"pair": ("A", "A'"), "cov1": ("A", "A"), "cov2": ("A'", "A'")}[side]
        tex = rf"{left}^{{\top}}\left[{self._arg_tex(printer)}\right]{right}"
        return tex


SPATIAL_FUNCTIONS = (conv_taps, conv_transpose_taps, resize_map, spatial_index, pool_window, flatten_mean, global_pool,
                     pixel_variance, spatial_diagonal, diagonal_embed, time_shift, graph_aggregate, attention_weights,
                     attention_map, position_covariance)


# ---------------------------------------------------------------- constructors with named settings
def conv(k, shape, kernel, stride, padding: str, layout: str) -> sp.Expr:
    return conv_taps(k, _ints(shape), _ints(kernel), _ints(stride), Str(padding), Str(layout))


def conv_transpose(k, shape, kernel, stride, padding: str, layout: str) -> sp.Expr:
    return conv_transpose_taps(k, _ints(shape), _ints(kernel), _ints(stride), Str(padding), Str(layout))


def resize(k, shape, size, method: str, antialias: bool, layout: str) -> sp.Expr:
    return resize_map(k, _ints(shape), _ints(size), Str(method), Str("true" if antialias else "false"), Str(layout))


def index(k, shape, picks, drops, layout: str) -> sp.Expr:
    return spatial_index(k, _ints(shape), sp.Tuple(*(_ints(p) for p in picks)), _ints(int(d) for d in drops), Str(layout))


def pool(k, shape, window, stride, padding: str, mode: str) -> sp.Expr:
    return pool_window(k, _ints(shape), _ints(window), _ints(stride), Str(padding), Str(mode))


def flatten(k, shape, layout: str) -> sp.Expr:
    return flatten_mean(k, _ints(shape), Str(layout))


def global_mean(k, shape, mode: str) -> sp.Expr:
    return global_pool(k, _ints(shape), Str(mode))


def variance_at(k, shape, side: int) -> sp.Expr:
    return pixel_variance(k, _ints(shape), sp.Integer(side))


def diagonal(k, shape) -> sp.Expr:
    return spatial_diagonal(k, _ints(shape))


def shift(k, shape, layout: str) -> sp.Expr:
    return time_shift(k, _ints(shape), Str(layout))


def aggregate(k, shape, side: str) -> sp.Expr:
    return graph_aggregate(k, _ints(shape), Str(side))


# ---------------------------------------------------------------- state-level helpers
def embed(k, shape) -> sp.Expr:
    return diagonal_embed(k, _ints(shape))


def dual_arguments(s) -> Dict[str, Tuple[sp.Expr, sp.Expr, sp.Expr]]:
    """The (q1, q2, c) at which an elementwise rule evaluates each field of the state ``s``.

    Vector and diagonal layouts: Σ(x, x′) at (cov1, cov2, nngp) and each variance at (q, q, q), so
    the diagonal is evaluated with θ = 0 exactly. Full layout: the pixel pair (p, p′) of nngp takes
    Σ(x, x) at p and Σ(x′, x′) at p′; cov1 is itself a full (p, p′) covariance, taken the same way.
    """
    if s.shape and s.layout == FULL:
        v = lambda k, side: variance_at(k, s.shape, side)  # noqa: E731
        return {"nngp": (v(s.cov1, 0), v(s.cov2, 1), s.nngp),
                "cov1": (v(s.cov1, 0), v(s.cov1, 1), s.cov1),
                "cov2": (v(s.cov2, 0), v(s.cov2, 1), s.cov2)}
    return {"nngp": (s.cov1, s.cov2, s.nngp), "cov1": (s.cov1,) * 3, "cov2": (s.cov2,) * 3}


def to_layout(s, layout: str):
    """The state ``s`` in ``layout``: full -> diagonal takes each array's diagonal; a state already
    in the layout (or without spatial axes) is returned unchanged. Diagonal -> full is impossible."""
    if not s.shape or s.layout == layout:
        return s
    if layout == FULL:
        raise ValueError("a diagonal-layout kernel cannot be turned into a full one (the (p, p') pairs are gone)")
    d = lambda k: None if k is None else diagonal(k, s.shape)  # noqa: E731
    return replace(s, cov1=d(s.cov1), cov2=d(s.cov2), nngp=d(s.nngp), ntk=d(s.ntk), nngp_dot=None, layout=DIAGONAL)

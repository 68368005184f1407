"""Per-input position masks in the kernel algebra (neural-tangents' ``supports_masking``,
requirements.py:137–253; kernel-math.md §2, masks).

Each input point x carries a boolean mask m(x) over its spatial positions (True = masked). A masked
program reads, beside the kernel arrays, the run-time arrays ``keep1`` (N1, P) and ``keep2`` (N2, P),
1 − m as floats (P positions, row-major), and every operation below is linear in its kernel argument:

- :class:`remask`: K(p, p′)·keep(x)(p)·keep(x′)(p′), neural-tangents' ``Kernel.mask`` (kernel.py:224):
  every covariance entry touching a masked position set to 0, after each layer NT marks
  ``remask_kernel=True`` (dense, conv, activations, attention);
- :class:`masked_mean`: the mean of the pixel diagonal K(p, p) of a point's own covariance over its
  unmasked positions (``mean_and_var(..., mask)``, requirements.py:1127): layer norm over space;
- :class:`masked_pool`: global average (or sum) pooling over the unmasked pixel pairs only
  (linear.py:1756–1761).

Whether a derivation is masked is a context (:func:`masked_derivation`), so layers whose rule changes
with masks (global pooling, layer norm over space, attention) ask :func:`masks_active` instead of
every kernel state carrying a flag.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

import sympy as sp
from sympy.core.symbol import Str

from .functions import _powered
from .spatial_base import SpatialOp as _SpatialOp
from .spatial_base import ints as _ints
from .spatial_base import static

_MASKED: ContextVar = ContextVar("ntkdsl_masked_derivation", default=False)


@contextmanager
def masked_derivation(active: bool = True):
    """Within the block, layers derive their masked kernel rules (:func:`masks_active` is True)."""
    token = _MASKED.set(bool(active))
    try:
        yield
    finally:
        _MASKED.reset(token)


def masks_active() -> bool:
    """Whether the running derivation is of the masked program (:func:`masked_derivation`)."""
    return _MASKED.get()


class remask(_SpatialOp):  # noqa: N801 - sympy functions are lower-case by convention
    """K(p, p′)·k(x)(p)·k(x′)(p′), k = 1 − mask: zero every entry touching a masked position.

    Arguments: (K, spatial shape, layout word, side word 'pair' | 'cov1' | 'cov2'): nngp and ntk take
    x1's mask at p and x2's at p′, cov1 x1's on both, cov2 x2's on both.
    """

    nargs = 4

    @_powered
    def _latex(self, printer):
        side = static(self.args[3])
        left, right = {"pair": ("k", "k'"), "cov1": ("k", "k"), "cov2": ("k'", "k'")}[side]
        return rf"{left}_{{p}}{right}_{{p'}}\left[{self._arg_tex(printer)}\right]"


class masked_mean(_SpatialOp):  # noqa: N801
    """Σ_p k(p)·K(p, p) / max(Σ_p k(p), 1): a point's mean pixel variance over its unmasked positions.

    Arguments: (K, spatial shape, layout word, side word 'cov1' | 'cov2').
    """

    nargs = 4

    @_powered
    def _latex(self, printer):
        return rf"\operatorname{{mean}}_{{p:\,k_p = 1}} \left[{self._arg_tex(printer)}\right]_{{pp}}"


class masked_pool(_SpatialOp):  # noqa: N801
    """Σ_{p,p′} k(p)k′(p′)·K(p, p′), divided by max(Σ k · Σ k′, 1) for 'avg': global pooling over the
    unmasked pixel pairs of a full-layout array. Arguments: (K, spatial shape, mode word, side word)."""

    nargs = 4

    @_powered
    def _latex(self, printer):
        name = "mean" if static(self.args[2]) == "avg" else "sum"
        return rf"\operatorname{{{name}}}_{{p, p':\,k_p k'_{{p'}} = 1}} \left[{self._arg_tex(printer)}\right]_{{pp'}}"


class masked_keys(_SpatialOp):  # noqa: N801
    """Attention logits L(p, p′) of one input with every masked key p′ set to −1e20 (softmax: no weight,
    and an all-masked row a uniform softmax rather than NaN) or 0 (the other mechanisms), neural-tangents
    L.2326–2338. Not linear (the fill is a constant). Arguments: (L, spatial shape, mechanism word, side
    word 'cov1' | 'cov2')."""

    nargs = 4

    @classmethod
    def eval(cls, k, *settings):
        return None

    def _eval_derivative(self, s):
        if self.args[0].has(s):
            raise NotImplementedError("masked attention logits are not differentiated symbolically")
        return sp.S.Zero

    @_powered
    def _latex(self, printer):
        return rf"\left[{self._arg_tex(printer)}\right]_{{k'_{{p'}} = 1}}"


MASK_FUNCTIONS = (remask, masked_mean, masked_pool, masked_keys)


def masked(k, shape, layout: str, side: str) -> sp.Expr:
    return remask(k, _ints(shape), Str(layout), Str(side))


def unmasked_mean(k, shape, layout: str, side: str) -> sp.Expr:
    return masked_mean(k, _ints(shape), Str(layout), Str(side))


def unmasked_pool(k, shape, mode: str, side: str) -> sp.Expr:
    return masked_pool(k, _ints(shape), Str(mode), Str(side))


def keys_masked(logits, shape, mechanism: str, side: str) -> sp.Expr:
    return masked_keys(logits, _ints(shape), Str(mechanism), Str(side))


def masked_state(s):
    """The state ``s`` with every entry of cov1, cov2, nngp and ntk that touches a masked position zeroed."""
    from dataclasses import replace

    return replace(s, **{name: mask_field(getattr(s, name), name, s) for name in ("cov1", "cov2", "nngp", "ntk")})


def mask_field(expr, name: str, s) -> sp.Expr:
    """``expr``, the new value of the field ``name`` of a layer whose output state is ``s``, with every
    entry touching a masked position zeroed (cov1/cov2 by the point's own mask on both pixels, nngp and
    ntk by x1's at p and x2's at p′); a vector state (no positions) and Σ̇ (a multiplier) unchanged."""
    if not s.shape or name == "nngp_dot":
        return expr
    return masked(expr, s.shape, s.layout, name if name in ("cov1", "cov2") else "pair")


__all__ = ["MASK_FUNCTIONS", "keys_masked", "mask_field", "masked", "masked_derivation", "masked_keys", "masked_mean",
           "masked_pool", "masked_state", "masks_active", "remask", "unmasked_mean", "unmasked_pool"]

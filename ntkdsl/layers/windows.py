"""What the windowed layers (conv, pooling) share: shape rules with their errors, and the
finite-width padding and tap slicing of neural-tangents and ``jax.lax`` (kernel-math.md §2;
:func:`ntkdsl.algebra.geometry.window_geometry`, shared with the analytic kernels): 'valid' pads
nothing, 'same' pads zeros (the smaller half before), 'circular' wraps the opposite edge. Features
are channels last, (N, *S, C); cotangents carry the m axis after the batch, (N, m, *S, C).
"""

from __future__ import annotations

from typing import Tuple

from ..algebra.geometry import window_geometry
from ..errors import ArgumentSpecError, LimitSpecError, ShapeSpecError
from ..ir.arguments import is_positive_int
from .arrays import namespace

PADDINGS = ("valid", "same", "circular")


def spatial_input(what: str, in_shape: Tuple[int, ...], rank: int, span) -> Tuple[int, ...]:
    """The spatial part of ``in_shape``; an error if it is a vector or has another rank."""
    if len(in_shape) == 1:
        raise ShapeSpecError(
            f"{what} needs an image or signal input (channels last, such as input = [32, 32, 3]), but its input is "
            f"a vector of {in_shape[0]} features", span)
    spatial = tuple(in_shape[:-1])
    if rank and len(spatial) != rank:
        raise ShapeSpecError(
            f"{what} has a {rank}-dimensional window, but its input has {len(spatial)} spatial dimension"
            f"{'s' if len(spatial) != 1 else ''} (shape {list(in_shape)})", span)
    return spatial


def windowed(what: str, spatial, window, stride, padding, span) -> Tuple[int, ...]:
    """The output spatial shape of a sliding window; an error where it does not fit."""
    out = []
    for axis, (n, w, s) in enumerate(zip(spatial, window, stride)):
        if padding != "valid" and w > 2 * n - 1:
            raise LimitSpecError(
                f"{what}: the window ({w} along spatial axis {axis + 1}) is larger than 2·{n} − 1 = {2 * n - 1}, twice "
                f"its input ({n} pixels) less one: with padding = {padding}, its outer taps would only ever see "
                "padding", span)
        size = window_geometry(n, w, s, padding)[2]
        if size < 1:
            raise ShapeSpecError(
                f"{what}: the window ({w} along spatial axis {axis + 1}) is larger than its input ({n} pixels) "
                "with padding = valid, which leaves no output; use a smaller window or padding = same", span)
        out.append(size)
    return tuple(out)



def check_window(layer, window, what: str) -> None:
    """Padding, window and strides re-checked for IR built in Python."""
    if layer.padding not in PADDINGS:
        raise ArgumentSpecError(f"unknown padding '{layer.padding}' (one of {', '.join(PADDINGS)})", layer.span)
    if not window or len(window) != len(layer.stride) or not all(map(is_positive_int, window + layer.stride)):
        raise ArgumentSpecError(f"{what}: window and strides must be positive integers, one per "
                                "spatial dimension", layer.span)


def tuple_text(values) -> str:
    """A per-dimension tuple in sequence syntax: ``(3, 3)``, ``(3,)`` for one dimension."""
    return "(" + ", ".join(str(int(v)) for v in values) + ("," if len(values) == 1 else "") + ")"


def geometry(spatial, window, stride, padding):
    """[(pad_lo, pad_hi, out_size)] per spatial axis (lax conventions)."""
    return [window_geometry(n, w, s, padding) for n, w, s in zip(spatial, window, stride)]


def pad(x, axis0: int, geoms, padding: str):
    """x padded on the spatial axes axis0, axis0 + 1, ...: zeros, or wrapped for 'circular'."""
    if all(lo == hi == 0 for lo, hi, _ in geoms):
        return x
    widths = [(0, 0)] * x.ndim
    for d, (lo, hi, _) in enumerate(geoms):
        widths[axis0 + d] = (lo, hi)
    return namespace(x).pad(x, widths, mode="wrap" if padding == "circular" else "constant")


def tap(axis0: int, ndim: int, offset, stride, geoms):
    """The index of the padded pixels that the window's tap at ``offset`` reads at every output
    position: input pixel s·o + t (padded coordinates), o = 0 .. out − 1."""
    index = [slice(None)] * ndim
    for d, (t, s, (_, _, out)) in enumerate(zip(offset, stride, geoms)):
        index[axis0 + d] = slice(t, t + s * (out - 1) + 1, s)
    return tuple(index)


def unpad(gp, axis0: int, spatial, geoms, padding: str):
    """The adjoint of :func:`pad`: drop the zero pads, or fold the wrapped pads back (circular).

    Circular: padded pixel q is input pixel (q − pad_lo) mod n; the padded axis is added to the
    output in runs of consecutive pixels (a few runs per axis, no loop over pixels).
    """
    xp = namespace(gp)
    for d, ((lo, hi, _), n) in enumerate(zip(geoms, spatial)):
        if lo == hi == 0:
            continue
        axis = axis0 + d
        if padding != "circular":
            gp = gp[(slice(None),) * axis + (slice(lo, lo + n),)]
            continue
        shape = list(gp.shape)
        shape[axis] = n
        out = xp.zeros(shape, dtype=gp.dtype)
        q, length = 0, gp.shape[axis]
        while q < length:
            i = (q - lo) % n
            run = min(n - i, length - q)
            out[(slice(None),) * axis + (slice(i, i + run),)] += gp[(slice(None),) * axis + (slice(q, q + run),)]
            q += run
        gp = out
    return gp


def scatter_taps(values, axis0: int, spatial_pad, taps, stride, geoms, lead, channels):
    """Σ over taps t of ``values[..., t, :]`` added at the pixels tap t reads (the adjoint of reading
    them), into a zero array of shape (*lead, *spatial_pad, channels)."""
    xp = namespace(values)
    out = xp.zeros(tuple(lead) + tuple(spatial_pad) + (channels,), dtype=values.dtype)
    for i, t in enumerate(taps):
        out[tap(axis0, out.ndim, t, stride, geoms)] += values[..., i, :]
    return out


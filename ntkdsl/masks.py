"""Per-input position masks (neural-tangents' masking, True = masked): checking what
``net.kernels(x1, x2, mask1=, mask2=)`` and ``--mask1/--mask2`` receive, and the masked program that
evaluates them.

A mask is a boolean array (N, *S) per set of points, S the spatial shape of the network's input
([L, C] -> (N, L), [H, W, C] -> (N, H, W)); True marks a position that is not there (padding of a
shorter sequence). The kernels are neural-tangents 0.6.5's (kernel-math.md §2, masks): masked input
entries are zeroed, every covariance entry touching a masked position is zeroed after the layers that
remask, global pooling averages over the unmasked pixel pairs, layer norm over space over the unmasked
positions, attention gives masked keys no weight. Only per-position layers take masks
(:func:`ntkdsl.ir.layer.refuse_unmaskable`).

A request with masks runs the network's masked twin (:func:`masked_network`): the same IR derived with
``masked=True``, whose modules take ``mask1``/``mask2``; the network without masks keeps its program
and modules unchanged. Masks travel like graphs, as per-point side data sliced with the points of
each tile (:mod:`ntkdsl.side`).
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def as_masks(mask, n: int, shape: Tuple[int, ...], name: str, points: str, *, where: str = "") -> np.ndarray:
    """``mask`` as a C-contiguous boolean array (N, *S) for the ``n`` points named ``points``.

    Raises:
        ValueError: naming ``name``: not an array of booleans (0/1 integers are accepted), a shape other
            than (n, *shape), or a point whose every position is masked.
    """
    try:
        arr = np.asarray(mask)
    except Exception as exc:  # e.g. ragged lists
        raise ValueError(f"{name}{where} is not an array of booleans ({exc})") from None
    if arr.dtype.kind in "iu" and arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name}{where} holds integers other than 0 and 1: a mask is boolean (True = masked)")
    if arr.dtype.kind not in "biu":
        raise ValueError(f"{name}{where} has dtype {arr.dtype}: a mask is boolean, True where a position is masked")
    want = "(N, " + ", ".join(str(s) for s in shape) + ")"
    if arr.shape[1:] != tuple(shape) or arr.ndim != len(shape) + 1:
        raise ValueError(f"{name}{where} has shape {arr.shape}; the network's input has positions {tuple(shape)}, so "
                         f"a mask has shape {want}: one boolean per point and position, True = masked")
    if arr.shape[0] != n:
        raise ValueError(f"{name}{where} holds {arr.shape[0]} mask{'s' * (arr.shape[0] != 1)} but {points} has {n} "
                         f"point{'s' * (n != 1)}: one mask per point")
    arr = np.ascontiguousarray(arr, dtype=bool)
    full = arr.reshape(n, -1).all(axis=1)
    if full.any():
        raise ValueError(f"{name}{where}: every position of point {int(np.flatnonzero(full)[0])} of {points} is masked; "
                         "a point needs at least one unmasked position")
    return arr


def masked_network(net):
    """The masked twin of ``net`` (a :class:`ntkdsl.CompiledNetwork`): the same IR derived for position
    masks, built once and kept on ``net``.

    Raises:
        StructureSpecError: the network has a layer that cannot take masks (located) or no spatial axes.
    """
    if getattr(net.program, "masked", False):
        return net
    twin = net.__dict__.get("_masked_twin")
    if twin is None:
        twin = type(net)(net.ir, net.source, net.filename, layout=net.layout, masked=True)
        net.__dict__["_masked_twin"] = twin
    return twin


def request_masks(net, x1, x2, mask1, mask2) -> Optional[dict]:
    """``{"mask1": ..., "mask2": ...}`` (mask2 None in a self request) for the masked twin ``net``,
    checked against the points; None for a network without masks (which then must get none)."""
    if not net.program.masked:
        if mask1 is not None or mask2 is not None:
            raise ValueError(f"network {net.name} is evaluated without masks here; pass mask1/mask2 to net.kernels")
        return None
    shape = tuple(net.ir.input_shape[:-1])
    positions = ", ".join(str(s) for s in shape)
    want = f"(N1, {positions})"
    if mask1 is None:
        raise ValueError(f"mask1 is missing: pass each x1 point's position mask, booleans of shape {want}"
                         + ("" if mask2 is None else " (mask2 alone is not enough)"))
    m1 = as_masks(mask1, len(x1), shape, "mask1", "x1")
    if x2 is None:
        if mask2 is not None:
            raise ValueError("mask2 is given without x2: a self kernel uses mask1 for both sides; pass x2 too, or drop mask2")
        return {"mask1": m1, "mask2": None}
    if mask2 is None:
        raise ValueError(f"x2 is given, so pass its points' masks as mask2=, booleans of shape (N2, {positions}) "
                         "(all False: nothing masked)")
    return {"mask1": m1, "mask2": as_masks(mask2, len(x2), shape, "mask2", "x2")}


__all__ = ["as_masks", "masked_network", "request_masks"]

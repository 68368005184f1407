"""Per-point side data of a kernel request: the graphs of networks that aggregate (``graph1``/``graph2``,
dense adjacencies, :mod:`ntkdsl.graphs`) and position masks (``mask1``/``mask2``, True = masked,
:mod:`ntkdsl.masks`), checked against their points and travelling with them through tiles.

A mask given for one set of points only is refused everywhere (:func:`request_side`, :func:`side_options`):
a mask is part of its point, and a network fit on masked (padded) points and asked about unmasked ones
would read the padding silently; pass all False for points without masked positions.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def request_side(net, x1, x2, graph1=None, graph2=None, mask1=None, mask2=None):
    """(the network that evaluates the request, its per-point side data or None): ``net`` with its graphs
    (:func:`ntkdsl.graphs.request_graphs`), or the masked twin with the masks
    (:func:`ntkdsl.masks.request_masks`)."""
    from .graphs import request_graphs
    from .masks import masked_network, request_masks

    if mask1 is not None or mask2 is not None:
        net = masked_network(net)
    graphs = request_graphs(net, x1, x2, graph1, graph2)
    masks = request_masks(net, x1, x2, mask1, mask2)
    if graphs is None and masks is None:
        return net, None
    return net, {**(graphs or {}), **(masks or {})}


def side_graph(ir, graph, n: int, name: str, points: str, *, where: str = ""):
    """``graph`` (named ``name``) as dense float64 adjacencies (N, V, V) of the ``n`` points named ``points``
    (:func:`ntkdsl.graphs.as_graphs`) for the network ``ir`` (:class:`ntkdsl.ir.Network`) if it aggregates;
    None for one without aggregate layers.

    Raises:
        ValueError: graphs given to a network without aggregate layers, missing for one with them, or bad.
    """
    from .graphs import as_graphs
    from .layers.aggregate import aggregates

    if not aggregates(ir.layers):
        if graph is not None:
            raise ValueError(f"network {ir.name} has no aggregate layer: {name} is not used; leave it out")
        return None
    nodes = int(ir.input_shape[0])
    if graph is None:
        raise ValueError(f"network {ir.name} aggregates over graphs: pass {name}=, each point of {points}'s adjacency "
                         f"((N, {nodes}, {nodes}) floats or an (N, E, 2) integer edge list)")
    return as_graphs(graph, n, nodes, name, points, where=where)


def side_mask(ir, mask, n: int, name: str, points: str, *, where: str = ""):
    """``mask`` (named ``name``) as booleans (N, *S), True = masked, of the ``n`` points named ``points``
    (:func:`ntkdsl.masks.as_masks`) for the network ``ir``; None for no mask.

    Raises:
        ValueError: a bad mask.
        StructureSpecError: a network with a layer that cannot take masks (located at the layer).
    """
    from .ir.layer import refuse_unmaskable
    from .masks import as_masks

    if mask is None:
        return None
    refuse_unmaskable(ir)
    return as_masks(mask, n, tuple(ir.input_shape[:-1]), name, points, where=where)


def point_side(net, x, points: str, suffix: str = "", graph=None, mask=None) -> dict:
    """The per-point side data of the points ``x`` (named ``points``) for ``net.kernels``: ``{"graph": ...}``,
    dense float64 adjacencies (N, V, V) (:func:`ntkdsl.graphs.as_graphs`), for a network that aggregates over
    graphs; ``{"mask": ...}``, booleans (N, *S) with True = masked (:func:`ntkdsl.masks.as_masks`), where masks
    are given; {} for neither. A network object without a program (a wrapper) gets them as given, for its
    ``kernels`` to check. The arguments are named ``graph{suffix}`` and ``mask{suffix}`` in errors.

    Raises:
        ValueError: graphs missing for a network that aggregates, given to one that does not, or not one
            adjacency (mask) per point of ``points``; a mask of another shape than (N, *S).
        StructureSpecError: masks for a network with a layer that cannot take them (located at the layer).
    """
    side = {k: v for k, v in (("graph", graph), ("mask", mask)) if v is not None}
    if getattr(net, "program", None) is None:
        return side
    checked = {"mask": side_mask(net.ir, mask, len(x), f"mask{suffix}", points),
               "graph": side_graph(net.ir, graph, len(x), f"graph{suffix}", points)}
    return {k: v for k, v in checked.items() if v is not None}


def side_options(x1, side1: dict, x2=None, side2: Optional[dict] = None) -> dict:
    """``net.kernels``' keyword arguments for the side data (:func:`point_side`) of the points ``x1`` and ``x2``
    (None: a self request): graph1/graph2 and mask1/mask2.

    Raises:
        ValueError: masks for one set of points only (the flow's training or test points, an estimator's
            fit or predict): the other set's masks are needed too (all False where nothing is masked).
    """
    out = {"graph1": side1.get("graph"), "mask1": side1.get("mask")}
    if x2 is None:
        return out
    side2 = side2 or {}
    out.update(graph2=side2.get("graph"), mask2=side2.get("mask"))
    if (out["mask1"] is None) != (out["mask2"] is None):
        raise ValueError("position masks were given for one set of points only (training or test): give the other "
                         "set's masks too (all False for points without masked positions); without them the "
                         "padding of its masked positions would be read as data")
    return out


def side_rows(side: dict, a, b=None, same: bool = False) -> dict:
    """The per-point side data (graphs or masks: ``name1`` for x1's points, ``name2`` for x2's) of a tile:
    every ``name1`` array at the rows ``a``, every ``name2`` at the rows ``b`` of x2's arrays, or of x1's
    where the request is a self request (``same``); ``b`` None (a tile of x1 with itself): ``name2`` None."""
    out = {}
    for name, value in side.items():
        if name.endswith("1"):
            other = name[:-1] + "2"
            out[name] = value[a]
            out[other] = None if b is None else (value[b] if same else side[other][b])
    return out


def with_side(kernels, x1, x2, side: dict):
    """``kernels(a, b=None, side)`` as a function of index columns (the points' row numbers), so that
    :func:`ntkdsl.tiling.evaluate` slices each tile's side data (graphs, masks) with its points.
    Returns (function, i1, i2)."""
    def run(a, b=None):
        a = a[:, 0]
        if b is None:
            return kernels(x1[a], None, side_rows(side, a))
        b = b[:, 0]
        return kernels(x1[a], (x1 if x2 is None else x2)[b], side_rows(side, a, b, x2 is None))

    i1 = np.arange(len(x1))[:, None]
    return run, i1, None if x2 is None else np.arange(len(x2))[:, None]


def overflow_reason(side: dict) -> str:
    """Why kernels evaluated with the side data ``side`` may not be finite, and the remedy: the graphs'
    edge weights (each aggregate multiplies the variances by them) or, with masks alone, the inputs'
    scale. The overflow tracer re-runs single points without their side data, so it cannot name a layer."""
    if side.get("graph1") is not None:
        return "graphs (large edge weights grow the variances at each aggregate; normalise the adjacencies)"
    return "masks (a variance left the float64 range: scale the inputs down)"


__all__ = ["overflow_reason", "point_side", "request_side", "side_graph", "side_mask", "side_options", "side_rows",
           "with_side"]

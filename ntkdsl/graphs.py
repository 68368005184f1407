"""The per-point adjacencies of networks that aggregate over graphs (``aggregate``): checking and
converting what ``net.kernels(x1, x2, graph1=, graph2=)`` and ``--graph1/--graph2`` receive. They travel
with their points as per-point side data (:mod:`ntkdsl.side`), like position masks.

A graph is given per input point, either dense, a float (or boolean) array (N, V, V) with A[i, j] the
weight of the edge i → j, or as an edge list, an integer array (N, E, 2) of [sender, receiver] rows,
each of weight 1, repeated edges adding up and rows with a negative index padding (neural-tangents'
Aggregate, dense and sparse). Edge lists become dense arrays here; an index ≥ V is an error (where
neural-tangents wraps it around).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .validate import finite_array


def as_graphs(graph, n: int, nodes: int, name: str, points: str, *, where: str = "") -> np.ndarray:
    """``graph`` as a float64 array (N, V, V) for the ``n`` points named ``points``, V = ``nodes``.

    Raises:
        ValueError: naming ``name``: not an array of numbers, NaN, a shape other than (N, V, V) or
            (N, E, 2) with N the points' count, an edge list with an index ≥ V.
    """
    arr = finite_array(graph, name, where=where, keep_float32=False)  # (raises before asarray below could)
    if np.asarray(graph).dtype.kind in "iu":
        return _edge_list(np.asarray(graph), n, nodes, name, points, where)
    if arr.ndim != 3 or arr.shape[1:] != (nodes, nodes):
        raise ValueError(f"{name}{where} has shape {arr.shape}; the network's input has {nodes} nodes, so a dense "
                         f"adjacency per point has shape (N, {nodes}, {nodes}) (an edge list: integers of shape (N, E, 2))")
    if arr.shape[0] != n:
        raise ValueError(f"{name}{where} holds {arr.shape[0]} graph{'s' * (arr.shape[0] != 1)} but {points} has {n} "
                         f"point{'s' * (n != 1)}: one graph per point")
    return np.ascontiguousarray(arr, dtype=np.float64)


def _edge_list(arr, n: int, nodes: int, name: str, points: str, where: str) -> np.ndarray:
    """The dense (N, V, V) adjacencies of an integer edge list (N, E, 2): weight 1 per row, repeats add."""
    if arr.ndim != 3 or arr.shape[2] != 2:
        raise ValueError(f"{name}{where} is an integer array of shape {arr.shape}: integers are read as edge lists of "
                         f"shape (N, E, 2) ([sender, receiver] rows); pass a dense adjacency (N, {nodes}, {nodes}) as floats")
    if arr.shape[0] != n:
        raise ValueError(f"{name}{where} holds {arr.shape[0]} edge list{'s' * (arr.shape[0] != 1)} but {points} has {n} "
                         f"point{'s' * (n != 1)}: one graph per point")
    arr = arr.astype(np.int64)
    real = (arr >= 0).all(axis=2)  # a row with a negative index is padding
    too_big = real & (arr >= nodes).any(axis=2)
    if too_big.any():
        p, e = (int(v) for v in np.argwhere(too_big)[0])
        raise ValueError(f"{name}{where}: edge {e} of point {p} is {arr[p, e].tolist()}, but the network's input has "
                         f"{nodes} nodes (indices 0 to {nodes - 1}; a row with a negative index is padding)")
    dense = np.zeros((n, nodes, nodes))
    p, e = np.nonzero(real)
    np.add.at(dense, (p, arr[p, e, 0], arr[p, e, 1]), 1.0)
    return dense


def request_graphs(net, x1, x2, graph1, graph2) -> Optional[dict]:
    """``{"graph1": ..., "graph2": ...}`` (graph2 None in a self request) for a network that aggregates,
    checked against the points; None for one that does not (which then must get no graphs)."""
    from .codegen.prologue import uses_graphs

    if not uses_graphs(net.program):
        if graph1 is not None or graph2 is not None:
            raise ValueError(f"network {net.name} has no aggregate layer: graph1/graph2 are not used; leave them out")
        return None
    nodes = int(net.ir.input_shape[0])
    if graph1 is None:
        raise ValueError(f"network {net.name} aggregates over graphs: pass each input point's adjacency as graph1= "
                         f"(N1, {nodes}, {nodes}) floats or an (N1, E, 2) integer edge list"
                         + (", and graph2= for x2" if x2 is not None else ""))
    g1 = as_graphs(graph1, len(x1), nodes, "graph1", "x1")
    if x2 is None:
        if graph2 is not None:
            raise ValueError("graph2 is given without x2: a self kernel uses graph1 for both sides; pass x2 too, or drop graph2")
        return {"graph1": g1, "graph2": None}
    if graph2 is None:
        raise ValueError(f"network {net.name} aggregates over graphs: x2 is given, so pass its points' adjacencies "
                         f"as graph2= (N2, {nodes}, {nodes}) or (N2, E, 2)")
    return {"graph1": g1, "graph2": as_graphs(graph2, len(x2), nodes, "graph2", "x2")}


__all__ = ["as_graphs", "request_graphs"]

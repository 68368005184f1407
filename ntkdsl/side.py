"""Per-point side data of a kernel request: the graphs of networks that aggregate (``graph1``/``graph2``,
:mod:`ntkdsl.graphs`) and the position masks of masked requests (``mask1``/``mask2``, True = masked,
:mod:`ntkdsl.masks`), travelling with their points."""

from __future__ import annotations


def overflow_reason(side: dict) -> str:
    """Why kernels evaluated with the side data ``side`` may not be finite, and the remedy: the graphs'
    edge weights (each aggregate multiplies the variances by them) or, with masks alone, the inputs'
    scale. The overflow tracer re-runs single points without their side data, so it cannot name a layer."""
    if side.get("graph1") is not None:
        return "graphs (large edge weights grow the variances at each aggregate; normalise the adjacencies)"
    return "masks (a variance left the float64 range: scale the inputs down)"


__all__ = ["overflow_reason"]

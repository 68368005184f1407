"""``aggregate``: graph aggregation on ``[nodes, C]`` signals, each input point with its own adjacency
given at evaluation (neural-tangents' ``Aggregate``; the GNTK of Du et al. 2019).

Finite width: y[j, c] = Σ_i A[i, j]·x[i, c] per point, A (V, V) the point's adjacency, A[i, j] the
weight of the edge i → j (neural-tangents: x @ A on the node axis). Self loops and normalisation
(e.g. D^−½(A + I)D^−½) are the user's, written into A. No parameters.

Kernel (kernel-math.md §2, aggregate): on the full node-pair layout, per pair of points,
Σ′(x, x′) = A(x)ᵀ·Σ(x, x′)·A(x′), Θ′ likewise, and each variance by its own point's graph on both sides
(:class:`ntkdsl.algebra.spatial.graph_aggregate`). A linear map of a Gaussian process: the output stays
Gaussian. The adjacencies reach the generated module as ``kernels(x1, x2, graph1=, graph2=)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

import sympy as sp

from ..algebra import spatial as ops
from ..algebra.state import KernelState
from ..errors import ShapeSpecError, Span
from ..ir.layer import Layer, span_field
from .arrays import namespace
from .finite import current_graphs
from .registry import LayerRule, register
from .windows import spatial_input


@dataclass(frozen=True)
class Aggregate(Layer):
    """y = Aᵀx on the node axis of a ``[nodes, C]`` signal, A the point's adjacency."""

    span: Optional[Span] = span_field()

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        spatial = spatial_input("aggregate", in_shape, 0, self.span)
        if len(spatial) != 1:
            raise ShapeSpecError(f"aggregate needs a graph signal [nodes, channels] (one spatial axis: the nodes), but its "
                                 f"input has shape {list(in_shape)}", self.span)
        return tuple(in_shape)

    def fits_input(self, shape: Tuple[int, ...], network_input: Tuple[int, ...]) -> None:
        if len(shape) == len(network_input) == 2 and shape[0] != network_input[0]:  # one graph per point, over the input's nodes
            raise ShapeSpecError(f"aggregate acts on {shape[0]} nodes, but the graphs given at evaluation are over the "
                                 f"network input's {network_input[0]} nodes (a layer before it changed the node count)",
                                 self.span)

    def needs_full_input(self, full_output: bool) -> bool:
        return True  # A mixes nodes: every node pair (i, k) of the input is read

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        """A(x)ᵀ·K·A(x′) on the node axes of nngp and ntk; cov1, cov2 by their own point's graph."""
        if s.layout != ops.FULL:  # pragma: no cover - layout inference gives a full input (needs_full_input)
            raise AssertionError("aggregate reached with a diagonal kernel: layout inference is wrong")
        cov1, cov2, nngp, ntk = (ops.aggregate(k, s.shape, side) for k, side in
                                 ((s.cov1, "cov1"), (s.cov2, "cov2"), (s.nngp, "pair"), (s.ntk, "pair")))
        return KernelState(cov1, cov2, nngp, ntk, gaussian=s.gaussian, width=s.width, shape=s.shape, layout=ops.FULL)

    def ends_fresh(self) -> Optional[bool]:
        return None  # linear and parameter-free

    def format(self, indent: str = "") -> str:
        return "aggregate"

    def forward(self, params, x):
        """y[n, j, c] = Σ_i A[n, i, j]·x[n, i, c] (neural-tangents: x @ A). Cache: the adjacencies A."""
        a = current_graphs()
        if a is None or a.shape[0] != x.shape[0]:
            raise ValueError("aggregate needs each point's adjacency: fnet.apply(x, graph=A), fnet.ntk(x1, x2, "
                             "graph1=A1, graph2=A2), ntkdsl.monte_carlo(..., graph1=A1, graph2=A2)")
        a = namespace(x).asarray(a)
        return namespace(x).einsum("nij,nic->njc", a, x), a

    def backward(self, params, cache, g):
        """∂y/∂x is A per point: g[n, m, j, c] -> Σ_j A[n, i, j]·g[n, m, j, c]."""
        return namespace(g).einsum("nij,nmjc->nmic", cache, g)


def aggregates(layers) -> bool:
    """Whether any of ``layers`` (or of their branches) is an aggregate."""
    return any(isinstance(layer, Aggregate) or any(aggregates(b) for b in layer.branch_sequences()) for layer in layers)


register(LayerRule("aggregate", (), lambda v, call: Aggregate(call.span)))

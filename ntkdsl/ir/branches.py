"""IR nodes with branches: ``residual(scale) { body }`` and ``parallel(merge) { ... } { ... }``.

A branching node holds its branches as tuples of layers. The derivation runs every branch from the
same kernel state and hands the branch states to the node's :meth:`combine`, its kernel rule
(kernel-math.md §2: FanOut, then FanInSum / FanInConcat / FanInProd). Sums and products are exact
only for uncorrelated branches; :meth:`check_branches` refuses the others with a span.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence, Tuple

import sympy as sp

from ..errors import BranchSpecError, ShapeSpecError, Span
from . import nodes
from .shapes import sequence_shape

_span = dict(default=None, compare=False, repr=False)

MERGES = ("sum", "concat", "prod")


def fresh_end(layers: Sequence) -> Tuple[bool, Optional[object]]:
    """Whether a branch ends in a fresh zero-mean affine layer (dense or conv), possibly followed by
    parameter-free linear layers (identity, pooling, flatten) — kernel-math.md §2 — and the layer
    that decides it (None for an empty branch).

    A fresh affine output is independent of everything else in the limit, so it is uncorrelated
    with any other branch. A nested ``parallel`` sum or concat is fresh when all its branches are.
    """
    from .spatial import Conv, Flatten, GlobalPool, Pool

    for layer in reversed(layers):
        if isinstance(layer, (nodes.Identity, Pool, GlobalPool, Flatten)):
            continue
        if isinstance(layer, (nodes.Dense, Conv)):
            return True, layer
        if isinstance(layer, Parallel):
            return all(fresh_end(b)[0] for b in layer.branches), layer
        return False, layer
    return False, None


def _describe(layer) -> str:
    if layer is None:
        return "has no dense or conv layer (it passes its input on)"
    from .printer import format_header

    return f"ends in '{format_header(layer)}'"


class _BranchRules(nodes.SamplerRules):
    """Finite-width backward rules shared by the branching nodes: ntkdsl/sampler/branch_layers.py."""

    _finite = "branch_layers.branches"

    def split_cotangent(self, params, cache, g):
        from ..sampler.branch_layers import split_cotangent

        return split_cotangent(self, params, cache, g)

    def merge_cotangents(self, params, cache, g, parts):
        from ..sampler.branch_layers import merge_cotangents

        return merge_cotangents(self, params, cache, g, parts)


@dataclass(frozen=True)
class Residual(_BranchRules):
    """x + scale·f(x), f the body (kernel-math.md §7: scale = 1)."""

    body: Tuple[object, ...]
    scale: sp.Expr = sp.S.One
    span: Optional[Span] = field(**_span)

    def parameters(self) -> Dict[str, sp.Expr]:
        return {"scale": self.scale}

    def branch_sequences(self) -> Tuple[Tuple[object, ...], ...]:
        """The branches the derivation runs: the skip connection (no layers) and the body."""
        return ((), self.body)

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        out = sequence_shape(self.body, in_shape)
        if out != tuple(in_shape):
            raise ShapeSpecError(
                f"residual adds x and f(x), but its body maps features of shape {list(in_shape)} to {list(out)}; "
                "the body must keep the shape (same channels, padding = same, stride 1)", self.span)
        return tuple(in_shape)

    def check_branches(self) -> None:
        """x and f(x) are uncorrelated only if f ends in a fresh dense/conv layer (kernel-math.md §2)."""
        fresh, last = fresh_end(self.body)
        if not fresh:
            raise BranchSpecError(
                f"residual adds x and f(x), but its body {_describe(last)}: x and f(x) are then correlated and the "
                "kernel of x + f(x) is not the sum of their kernels (kernel-math.md §2); end the body with a dense "
                "or conv layer (optionally followed by pooling)", getattr(last, "span", None) or self.span)

    # finite-width rules (kernel-math.md §5): ntkdsl/sampler/branch_layers.py
    def finite_sequences(self) -> Tuple[Tuple[object, ...], ...]:
        return (self.body,)

    def finite_merge(self) -> str:
        return "residual"

    def merge_outputs(self, x, outs):
        """x + scale·f(x)."""
        return x + float(self.scale) * outs[0]

    def combine(self, states: Sequence[nodes.KernelState], p: Mapping[str, sp.Symbol]) -> nodes.KernelState:
        """Σ = Σ_x + scale²·Σ_f and Θ = Θ_x + scale²·Θ_f (FanInSum of independent branches)."""
        x, f = states
        a2 = p["scale"] ** 2
        add = lambda a, b: a + a2 * b  # noqa: E731
        return nodes.KernelState(add(x.cov1, f.cov1), add(x.cov2, f.cov2), add(x.nngp, f.nngp), add(x.ntk, f.ntk),
                                 gaussian=x.gaussian and f.gaussian, width=x.width, shape=x.shape, layout=x.layout)


@dataclass(frozen=True)
class Parallel(_BranchRules):
    """Branches on the same input, merged by ``sum``, ``concat`` (channels) or ``prod`` (elementwise)."""

    merge: str
    branches: Tuple[Tuple[object, ...], ...]
    span: Optional[Span] = field(**_span)
    branch_spans: Tuple[Optional[Span], ...] = field(default=(), compare=False, repr=False)

    def parameters(self) -> Dict[str, sp.Expr]:
        return {}

    def branch_sequences(self) -> Tuple[Tuple[object, ...], ...]:
        return self.branches

    def _branch_span(self, i: int) -> Optional[Span]:
        return self.branch_spans[i] if i < len(self.branch_spans) and self.branch_spans[i] else self.span

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        shapes = [sequence_shape(b, in_shape) for b in self.branches]
        first = shapes[0]
        for i, shape in enumerate(shapes[1:], start=1):
            same = shape[:-1] == first[:-1] if self.merge == "concat" else shape == first
            if not same:
                need = "the same spatial shape" if self.merge == "concat" else "the same shape"
                raise ShapeSpecError(
                    f"parallel(merge = {self.merge}) needs branches of {need}, but branch 1 gives features of shape "
                    f"{list(first)} and branch {i + 1} {list(shape)}", self._branch_span(i))
        if self.merge == "concat":
            return first[:-1] + (sum(s[-1] for s in shapes),)
        return first

    def check_branches(self) -> None:
        """Sums and products need all branches but one to end in a fresh dense/conv (kernel-math.md §2)."""
        if self.merge == "concat":
            return  # channels side by side: the kernel is their average whatever the correlations
        ends = [fresh_end(b) for b in self.branches]
        stale = [i for i, (fresh, _) in enumerate(ends) if not fresh]
        if len(stale) > 1:
            i, j = stale[0], stale[1]
            raise BranchSpecError(
                f"parallel(merge = {self.merge}): branch {i + 1} {_describe(ends[i][1])} and branch {j + 1} "
                f"{_describe(ends[j][1])}, so their outputs are correlated and the kernel of their "
                f"{'sum' if self.merge == 'sum' else 'product'} is not the {'sum' if self.merge == 'sum' else 'product'} "
                "of their kernels (kernel-math.md §2); end every branch but one with a dense or conv layer",
                self._branch_span(j), notes=[f"note: branch {i + 1} is the other one"])

    # finite-width rules (kernel-math.md §5): ntkdsl/sampler/branch_layers.py
    def finite_sequences(self) -> Tuple[Tuple[object, ...], ...]:
        return self.branches

    def finite_merge(self) -> str:
        return self.merge

    def merge_outputs(self, x, outs):
        """Σ_i y_i, the y_i side by side along channels, or Π_i y_i elementwise."""
        from ..sampler.backend import namespace

        if self.merge == "concat":
            return namespace(*outs).concatenate(outs, axis=-1)
        total = outs[0]
        for y in outs[1:]:
            total = total + y if self.merge == "sum" else total * y
        return total

    def combine(self, states: Sequence[nodes.KernelState], p: Mapping[str, sp.Symbol]) -> nodes.KernelState:
        """FanInSum (fields add), FanInConcat (average weighted by channel counts) or FanInProd
        (Σ multiplies, Θ by the product rule Θ = Σ_i Θ_i·Π_{j≠i} Σ_j)."""
        first = states[0]
        if self.merge == "sum":
            fields = {k: sp.Add(*(getattr(s, k) for s in states)) for k in ("cov1", "cov2", "nngp", "ntk")}
            gaussian, width = all(s.gaussian for s in states), first.width
        elif self.merge == "concat":
            width = sum(s.width for s in states)
            fields = {k: sp.Add(*(sp.Rational(s.width, width) * getattr(s, k) for s in states))
                      for k in ("cov1", "cov2", "nngp", "ntk")}
            gaussian = False  # channels with different kernels: not one Gaussian process
        else:
            fields = {k: sp.Mul(*(getattr(s, k) for s in states)) for k in ("cov1", "cov2", "nngp")}
            fields["ntk"] = sp.Add(*(s.ntk * sp.Mul(*(t.nngp for j, t in enumerate(states) if j != i))
                                     for i, s in enumerate(states)))
            gaussian, width = False, first.width
        return nodes.KernelState(gaussian=gaussian, width=width, shape=first.shape, layout=first.layout, **fields)


BRANCHING = (Residual, Parallel)

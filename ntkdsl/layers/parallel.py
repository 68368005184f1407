"""``parallel(merge = sum | concat | prod) { ... } { ... } ...``: branches on the same input, merged
(kernel-math.md §2: FanOut, then FanInSum / FanInConcat / FanInProd). Sums and products are exact
only for uncorrelated branches: all but one must end in a fresh dense or conv layer."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, Mapping, Optional, Sequence, Tuple

import sympy as sp

from ..algebra.state import KernelState
from ..errors import ArgumentSpecError, BranchSpecError, ShapeSpecError, Span, StructureSpecError
from ..ir.arguments import REQUIRED, Spec, enum
from ..ir.layer import span_field
from ..ir.shapes import sequence_shape
from .arrays import namespace
from .branching import Branching, describe, fresh_end
from .registry import LayerRule, register

MERGES = ("sum", "concat", "prod")


@dataclass(frozen=True)
class Parallel(Branching):
    """Branches on the same input, merged by ``sum``, ``concat`` (channels) or ``prod`` (elementwise)."""

    masking = "keep"  # sums and products of masked kernels stay masked
    merge: str
    branches: Tuple[Tuple[object, ...], ...]
    span: Optional[Span] = span_field()
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
                f"parallel(merge = {self.merge}): branch {i + 1} {describe(ends[i][1])} and branch {j + 1} "
                f"{describe(ends[j][1])}, so their outputs are correlated and the kernel of their "
                f"{'sum' if self.merge == 'sum' else 'product'} is not the {'sum' if self.merge == 'sum' else 'product'} "
                "of their kernels (kernel-math.md §2); end every branch but one with a dense or conv layer",
                self._branch_span(j), notes=[f"note: branch {i + 1} is the other one"])

    def finite_sequences(self) -> Tuple[Tuple[object, ...], ...]:
        return self.branches

    def finite_merge(self) -> str:
        return self.merge

    def merge_outputs(self, x, outs):
        """Σ_i y_i, the y_i side by side along channels, or Π_i y_i elementwise."""
        if self.merge == "concat":
            return namespace(*outs).concatenate(outs, axis=-1)
        total = outs[0]
        for y in outs[1:]:
            total = total + y if self.merge == "sum" else total * y
        return total

    def combine(self, states: Sequence[KernelState], p: Mapping[str, sp.Symbol]) -> KernelState:
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
        return KernelState(gaussian=gaussian, width=width, shape=first.shape, layout=first.layout, **fields)

    def check(self) -> None:
        if self.merge not in MERGES:
            raise ArgumentSpecError(f"unknown merge '{self.merge}' (one of {', '.join(MERGES)})", self.span)

    def verified(self, shape, gaussian, why, check):
        if len(self.branches) < 2:
            raise StructureSpecError("parallel needs at least two branches", self.span)
        self.check_branches()
        results = [check(b, shape, gaussian, why) for b in self.branches]
        gaussian = self.merge == "sum" and all(g for _, g, _ in results)
        return gaussian, {"sum": "a sum of branches that are not all Gaussian",
                          "concat": "a concatenation of branches (channels with different kernels, not one Gaussian "
                                    "process; add dense or conv after it)",
                          "prod": "a product of branches (not Gaussian)"}[self.merge]

    def ends_fresh(self) -> Optional[bool]:
        return all(fresh_end(b)[0] for b in self.branches)

    def header(self) -> str:
        return f"parallel(merge = {self.merge})"

    def with_branches(self, branches) -> "Parallel":
        return replace(self, branches=tuple(tuple(b) for b in branches))



def _build(v, call) -> Parallel:
    if len(call.bodies) < 2:
        raise StructureSpecError(
            f"parallel needs at least two branches, each in braces: parallel(merge = {v['merge']}) {{ ... }} {{ ... }}; "
            f"got {len(call.bodies)}", call.span)
    return Parallel(v["merge"], call.bodies, call.span, call.body_spans)


register(LayerRule("parallel", (Spec("merge", REQUIRED, enum(MERGES)),), _build, bodies=True))

"""``residual(scale = 1) { body }``: x + scale·f(x), f the body (kernel-math.md §2, §7): FanOut, the
skip connection and the body, FanInSum. Exact only when x and f(x) are uncorrelated: the body must
end in a fresh dense or conv layer (:func:`.branching.fresh_end`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Mapping, Optional, Sequence, Tuple

import sympy as sp

from ..algebra.state import KernelState
from ..errors import BranchSpecError, ShapeSpecError, Span, StructureSpecError
from ..ir.arguments import Spec, scale
from ..ir.layer import span_field
from ..ir.printer import format_value
from ..ir.shapes import sequence_shape
from .branching import Branching, describe, fresh_end
from .registry import LayerRule, register


@dataclass(frozen=True)
class Residual(Branching):
    """x + scale·f(x), f the body (kernel-math.md §7: scale = 1)."""

    body: Tuple[object, ...]
    scale: sp.Expr = sp.S.One
    span: Optional[Span] = span_field()

    keeps_input_width = True  # x + f(x): the body's output has the input's channels
    masking = "keep"  # a sum of masked kernels (neural-tangents' FanInSum ANDs the branches' equal masks)

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
                f"residual adds x and f(x), but its body {describe(last)}: x and f(x) are then correlated and the "
                "kernel of x + f(x) is not the sum of their kernels (kernel-math.md §2); end the body with a dense "
                "or conv layer (optionally followed by pooling)", getattr(last, "span", None) or self.span)

    def finite_sequences(self) -> Tuple[Tuple[object, ...], ...]:
        return (self.body,)

    def finite_merge(self) -> str:
        return "residual"

    def merge_outputs(self, x, outs):
        """x + scale·f(x)."""
        return x + float(self.scale) * outs[0]

    def combine(self, states: Sequence[KernelState], p: Mapping[str, sp.Symbol]) -> KernelState:
        """Σ = Σ_x + scale²·Σ_f and Θ = Θ_x + scale²·Θ_f (FanInSum of independent branches)."""
        x, f = states
        a2 = p["scale"] ** 2
        add = lambda a, b: a + a2 * b  # noqa: E731
        return KernelState(add(x.cov1, f.cov1), add(x.cov2, f.cov2), add(x.nngp, f.nngp), add(x.ntk, f.ntk),
                                 gaussian=x.gaussian and f.gaussian, width=x.width, shape=x.shape, layout=x.layout)

    def branch_names(self) -> Optional[Tuple[str, ...]]:
        return ("skip", "body")

    def verified(self, shape, gaussian, why, check):
        self.check_branches()
        _, body_gaussian, _ = check(self.body, shape, gaussian, why)
        gaussian = gaussian and body_gaussian
        return gaussian, ("a residual sum whose skip input is not Gaussian" if not gaussian else why)

    def header(self) -> str:
        return f"residual(scale = {format_value(self.scale)})"

    def with_branches(self, branches) -> "Residual":
        (body,) = branches
        return replace(self, body=tuple(body))



def _build(v, call) -> Residual:
    if len(call.bodies) != 1:
        where = call.body_spans[1] if len(call.bodies) > 1 else call.span
        raise StructureSpecError(f"residual takes exactly one {{ body }} (x + scale·f(x)), got {len(call.bodies)}", where)
    return Residual(call.bodies[0], v["scale"], call.span)


register(LayerRule("residual", (Spec("scale", sp.S.One, scale),), _build, bodies=True))

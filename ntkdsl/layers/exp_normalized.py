"""``exp_normalized(gamma = 1, shift = -1, do_clip = false)``: the "Gaussian normalized kernel"
(Shankar et al. 2020, "Neural Kernels Without Tangents", p. 6; neural-tangents' ExpNormalized), a
transform of the kernel with no finite-width network behind it.

With ρ = c/√(q1·q2) the correlation of the Gaussian input (kernel-math.md §1):

    Σ' = √(q1·q2)·exp(γ·(ρ + shift)),   Θ' = γ·Θ·exp(γ·(ρ + shift)),

the diagonal at ρ = 1 exactly (Σ'(x, x) = q·exp(γ·(1 + shift))), Θ' = Θ·∂Σ'/∂c. ρ is always clamped to
[−1, 1] (the angle form :class:`ntkdsl.algebra.functions.cos_angle`, ρ = 1 at a zero-norm input whose
Σ' is 0), so ``do_clip`` only states neural-tangents' option: without it neural-tangents lets
rounding push ρ past ±1 by an ulp. Like an activation it needs a Gaussian input and its output is
not one. ``net.finite`` and ``ntkdsl sample`` refuse it with a located error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional

import sympy as sp

from ..algebra.functions import cos_angle
from ..algebra.spatial import dual_arguments
from ..algebra.state import KernelState
from ..errors import Span, StructureSpecError
from ..ir.arguments import BOOLEANS, boolean, Spec, scale
from ..ir.layer import Layer, span_field
from ..ir.printer import format_value
from .registry import LayerRule, register



@dataclass(frozen=True)
class ExpNormalized(Layer):
    """The exponentiated normalised covariance, scaled back by the variances."""

    masking = "remask"  # as neural-tangents' ExpNormalized
    gamma: sp.Expr = sp.S.One
    shift: sp.Expr = sp.S.NegativeOne
    do_clip: bool = False
    span: Optional[Span] = span_field()

    entrywise = True  # each entry from its own (q1, q2, c): vector networks fuse

    def parameters(self) -> Dict[str, sp.Expr]:
        return {"gamma": self.gamma, "shift": self.shift}

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        gamma, shift = p["gamma"], p["shift"]

        def transformed(q1, q2, c):  # (Σ', ∂Σ'/∂c) at variances q1, q2 and covariance c
            e = sp.exp(gamma * (cos_angle(c, q1 * q2) + shift))
            return sp.sqrt(q1 * q2) * e, gamma * e

        at = dual_arguments(s)
        nngp, dot = transformed(*at["nngp"])
        return KernelState(transformed(*at["cov1"])[0], transformed(*at["cov2"])[0], nngp, s.ntk * dot,
                           gaussian=False, width=s.width, nngp_dot=dot, shape=s.shape, layout=s.layout)

    def gaussian_input_needed(self) -> Optional[str]:
        return "exp_normalized needs a Gaussian input (an affine layer such as dense or conv before it)"

    def verified(self, shape, gaussian, why, check):
        return False, "the output of exp_normalized"

    def format(self, indent: str = "") -> str:
        return (f"exp_normalized(gamma = {format_value(self.gamma)}, shift = {format_value(self.shift)}, "
                f"do_clip = {BOOLEANS[self.do_clip]})")

    def init_params(self, rng, in_shape):
        self.refuse_finite()

    def forward(self, params, x):
        self.refuse_finite()

    def backward(self, params, cache, g):
        self.refuse_finite()

    def refuse_finite(self):
        """A located error: the layer has no finite-width network (nothing to draw, apply or pull back)."""
        raise StructureSpecError(
            "exp_normalized has no finite-width network: it transforms the kernel (the Gaussian normalized "
            "kernel of Shankar et al. 2020, as neural-tangents' ExpNormalized, whose apply_fn raises too), so "
            "net.finite and ntkdsl sample cannot build this network", self.span)


def _build(v, call) -> ExpNormalized:
    return ExpNormalized(v["gamma"], v["shift"], v["do_clip"], call.span)


register(LayerRule("exp_normalized", (
    Spec("gamma", sp.S.One, scale),
    Spec("shift", sp.S.NegativeOne, scale),
    Spec("do_clip", False, boolean),
), _build))

"""``dense(width, w_std = 1, b_std = none, parameterization)``: a fully connected layer.

NTK parameterization: z = (σ_w/√n_in)·W·x + σ_b·b with W, b ~ N(0, 1); standard: z = W·x + b with
W ~ N(0, σ_w²/n_in), b ~ N(0, σ_b²), the NTK taken with respect to W and b themselves
(Sohl-Dickstein et al. 2020). Kernel rule kernel-math.md §2, finite-width rules §5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import sympy as sp

from ..algebra.state import KernelState, affine_kernel
from ..errors import ArgumentSpecError, ShapeSpecError, Span
from ..ir.arguments import FROM_NETWORK, PARAMETERIZATIONS, REQUIRED, Spec, enum, is_positive_int, positive_int, std, std_or_none
from ..ir.layer import Layer, span_field
from ..ir.printer import format_value
from .arrays import namespace
from .finite import Params
from .registry import LayerRule, register


def weight_parameters(w_std: sp.Expr, b_std: Optional[sp.Expr]) -> Dict[str, sp.Expr]:
    """The parameters of an affine layer (dense, conv): ``w_std``, and ``b_std`` unless it has no bias."""
    return {"w_std": w_std} if b_std is None else {"w_std": w_std, "b_std": b_std}


def check_affine(layer, size: int, what: str) -> None:
    """An affine layer's output count and parameterization, re-checked for IR built in Python."""
    if not is_positive_int(size):
        raise ArgumentSpecError(f"{what} must be a positive integer, got {size}", layer.span)
    if layer.parameterization not in PARAMETERIZATIONS:
        raise ArgumentSpecError(f"unknown parameterization '{layer.parameterization}'", layer.span)


def weight_text(layer) -> list:
    """The keyword arguments w_std, b_std, parameterization in canonical text."""
    return [f"w_std = {format_value(layer.w_std)}",
            "b_std = none" if layer.b_std is None else f"b_std = {format_value(layer.b_std)}",
            f"parameterization = {layer.parameterization}"]


@dataclass(frozen=True)
class Dense(Layer):
    """A fully connected layer of ``width`` outputs; ``b_std = None`` means no bias."""

    masking = "remask"  # with position masks: the bias reaches masked positions (neural-tangents' Dense remasks)
    width: int
    w_std: sp.Expr = sp.S.One
    b_std: Optional[sp.Expr] = None
    parameterization: str = "ntk"
    span: Optional[Span] = span_field()

    entrywise = True

    def parameters(self) -> Dict[str, sp.Expr]:
        return weight_parameters(self.w_std, self.b_std)

    def out_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        """(width,) from a vector input; an image input is an error (flatten or pool it first)."""
        if len(in_shape) > 1:
            raise ShapeSpecError(
                f"dense needs a vector input, but its input has shape {list(in_shape)} (an image or signal "
                "with channels last); add flatten or global_avg_pool before it", self.span)
        return (self.width,)

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        """kernel-math.md §2 (neural-tangents' Dense): affine map of Σ, then Θ."""
        cov1, cov2, nngp, ntk = affine_kernel(s, p, self.parameterization, fan_in=s.width)
        return KernelState(cov1, cov2, nngp, ntk, gaussian=True, width=self.width)

    def check(self) -> None:
        check_affine(self, self.width, "width")

    def verified(self, shape, gaussian, why, check):
        return True, ""

    def ends_fresh(self) -> Optional[bool]:
        return True

    def format(self, indent: str = "") -> str:
        return f"dense({', '.join([str(self.width)] + weight_text(self))})"

    def init_params(self, rng, in_shape):
        return dense_init(self, rng, in_shape)

    def forward(self, params, x):
        return dense_forward(self, params, x)

    def backward(self, params, cache, g):
        return dense_backward(self, params, cache, g)

    def param_grads(self, params, cache, g, per_example=False):
        return dense_param_grads(self, params, cache, g, per_example)

    def ntk_terms(self, params, cache1, g1, cache2, g2, trace=True):
        return dense_ntk_terms(self, params, cache1, g1, cache2, g2, trace)


def dense_scales(node, n_in: int) -> Tuple[float, float]:
    """(weight multiplier, bias multiplier) applied to the stored parameters in the forward pass.

    NTK parameterization: (σ_w/√n_in, σ_b); standard: (1, 1), the variances live in the draw.
    """
    if node.parameterization == "ntk":
        b = float(node.b_std) if node.b_std is not None else 0.0
        return float(node.w_std) / np.sqrt(n_in), b
    return 1.0, 1.0


def dense_init(node, rng: np.random.Generator, in_shape: Tuple[int, ...]) -> Tuple[Params, Tuple[int, ...]]:
    """W of shape (n_in, width) and, with a bias, b of shape (width,), drawn from the prior."""
    if len(in_shape) != 1:
        raise ValueError(f"dense needs a flat input; got features of shape {in_shape}")
    (n_in,) = in_shape
    std_w, std_b = 1.0, 1.0
    if node.parameterization == "standard":
        std_w = float(node.w_std) / np.sqrt(n_in)
        std_b = float(node.b_std) if node.b_std is not None else 0.0
    params = {"w": std_w * rng.standard_normal((n_in, node.width))}
    if node.b_std is not None:
        params["b"] = std_b * rng.standard_normal(node.width)
    return params, (node.width,)


def dense_forward(node, params: Params, x: np.ndarray):
    """z = s_w·x·W (+ s_b·b); the cache is the input x."""
    s_w, s_b = dense_scales(node, x.shape[-1])
    z = x @ params["w"]
    z *= s_w
    if "b" in params:
        z += s_b * params["b"]
    return z, x


def dense_backward(node, params: Params, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    s_w, _ = dense_scales(node, x.shape[-1])
    w = params["w"]
    out = g.reshape(-1, w.shape[1]) @ w.T  # 2-D: one GEMM (a 3-D matmul would loop over inputs)
    out *= s_w
    return out.reshape(g.shape[:-1] + (w.shape[0],))


def dense_param_grads(node, params: Params, x: np.ndarray, g: np.ndarray, per_example: bool = False) -> Params:
    s_w, s_b = dense_scales(node, x.shape[-1])
    if per_example:  # (N, m, n_in, width): the explicit Jacobian rows of W
        out = {"w": (s_w * x)[:, None, :, None] * g[:, :, None, :]}  # one pass over the big array
        if "b" in params:
            out["b"] = s_b * g
        return out
    gs = g.sum(axis=1)
    out = {"w": s_w * (x.T @ gs)}
    if "b" in params:
        out["b"] = s_b * gs.sum(axis=0)
    return out


def dense_ntk_terms(node, params: Params, x1, g1, x2, g2, trace: bool = True) -> np.ndarray:
    """kernel-math.md §5: [s_w²·(a(x)·a(x′)) + s_b²·1{bias}] ⊙ (δ(x)·δ(x′)), O(N1·N2·(n_in + m·width)).

    ∂z_i/∂W_ji = s_w·a_j and ∂z_i/∂b_i = s_b, so the W share is s_w²·(a·a′)·(δ·δ′) and the bias
    share s_b²·(δ·δ′); in the standard parameterization s_w = s_b = 1.
    """
    s_w, s_b = dense_scales(node, x1.shape[-1])
    a = s_w**2 * (x1 @ x2.T)
    if "b" in params:
        a += s_b**2
    n1, n2 = g1.shape[0], g2.shape[0]
    if trace:
        return a * (g1.reshape(n1, -1) @ g2.reshape(n2, -1).T)
    return a[:, :, None, None] * namespace(g1).einsum("aij,bkj->abik", g1, g2, optimize=True)



def _build(v, call) -> Dense:
    return Dense(v["width"], v["w_std"], v["b_std"], v["parameterization"], call.span)


register(LayerRule("dense", (
    Spec("width", REQUIRED, positive_int),
    Spec("w_std", sp.S.One, std),
    Spec("b_std", None, std_or_none),
    Spec("parameterization", FROM_NETWORK, enum(PARAMETERIZATIONS)),
), _build))

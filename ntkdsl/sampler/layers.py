"""The finite-width rules of each layer kind (kernel-math.md §5), called by the IR nodes' methods.

Every IR node answers the same five questions (the methods of :mod:`ntkdsl.ir.nodes`; a new layer
kind implements them and the sampler needs no other change):

``init_params(rng, in_shape) -> (params, out_shape)``
    a dict of float64 parameter arrays, all drawn i.i.d. from their prior; shapes exclude the batch.
``forward(params, x) -> (y, cache)``
    x of shape (N, *in_shape); the cache is whatever the backward rules need.
``backward(params, cache, g) -> g_in``
    cotangents g of shape (N, m, *out_shape) — m vectors per input (m = k, one per output, for the
    NTK; m = 1 for a loss gradient) — pulled back to (N, m, *in_shape).
``param_grads(params, cache, g, per_example=False) -> dict``
    ∂/∂θ of Σ ⟨g, y⟩: summed over inputs and the m axis, or (``per_example``) with leading (N, m)
    axes, i.e. the explicit Jacobian rows.
``ntk_terms(params, cache1, g1, cache2, g2, trace=True) -> array | None``
    this layer's share Σ_θ ⟨∂f/∂θ(x), ∂f/∂θ(x′)⟩ of the empirical NTK, contracted without the
    Jacobian: (N1, N2) summed over the m axis (``trace``) or (N1, N2, m, m); None without parameters.

Dense and elementwise layers are here; conv, pooling, global pooling, flatten and layer norm in
:mod:`.spatial_layers`; residual and parallel (and the backward walk that descends into branches)
in :mod:`.branch_layers`. Nodes other than dense and the activations find their functions through
:class:`ntkdsl.ir.nodes.SamplerRules`. Array math uses the namespace of its arguments
(:mod:`.backend`: NumPy, or CuPy for a network built with ``backend = "cupy"``).

Conventions match the analytic rules: NTK parameterization z = (σ_w/√n_in)·W·x + σ_b·b with
W, b ~ N(0, 1); standard parameterization z = W·x + b with W ~ N(0, σ_w²/n_in), b ~ N(0, σ_b²),
the NTK taken with respect to W and b themselves (Sohl-Dickstein et al. 2020, "On the infinite
width limit of neural networks with a standard parameterization").
"""

from __future__ import annotations

from functools import lru_cache
from typing import Dict, Tuple

import numpy as np

from .backend import namespace, to_numpy
from .functions import Elementwise, compile_elementwise

Params = Dict[str, np.ndarray]


# --- dense ---------------------------------------------------------------------------------------

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


# --- parameter-free layers --------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _elementwise(node) -> Elementwise:
    """σ, σ' of an activation node (frozen, hashable), its parameters replaced by their values."""
    return compile_elementwise(node.elementwise(node.parameters()))


def _on_host(fn, x):
    """fn (a NumPy/SciPy function from :mod:`.functions`) at x, on the host for a device array.

    σ and σ' are lambdified over NumPy and SciPy (with an mpmath fallback for overflow), so a CuPy
    array makes a round trip; the layers with parameters, where the time goes, stay on the device.
    """
    xp = namespace(x)
    return fn(x) if xp is np else xp.asarray(fn(to_numpy(x)))


def elementwise_forward(node, x: np.ndarray):
    """y = σ(x); the cache is the pre-activation x (σ' is evaluated only when needed)."""
    return _on_host(_elementwise(node).sigma, x), x


def elementwise_backward(node, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """g·σ'(x), σ' broadcast over the m axis; σ' = 0 at jumps (kernel-math.md §3)."""
    return g * namespace(g).expand_dims(_on_host(_elementwise(node).sigma_prime, x), 1)

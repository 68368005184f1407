"""The kernel state between layers (kernel-math.md §1) and the two kernel rules several layers share:
the affine map of dense and conv (§2) and the dual of an elementwise σ (§3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

import sympy as sp

from .spatial import dual_arguments


@dataclass(frozen=True)
class KernelState:
    """The kernel state between layers (kernel-math.md §1), as sympy expressions.

    ``cov1``/``cov2`` are the variances Σ(x, x) of the two input sets, ``nngp`` the covariance
    Σ(x, x'), ``ntk`` Θ(x, x'); ``gaussian`` says whether an affine layer came last, and ``width``
    is the current feature count (the next layer's n_in).
    """

    cov1: sp.Expr
    cov2: sp.Expr
    nngp: sp.Expr
    ntk: sp.Expr
    gaussian: bool
    width: int
    nngp_dot: Optional[sp.Expr] = None  # Σ̇ = K̇_σ of an activation layer, which Θ then multiplies
    note: str = ""  # how an activation's dual was obtained (closed form, exact, numerical)
    shape: Tuple[int, ...] = ()  # spatial shape of the features ((): a vector of ``width`` features)
    layout: str = "diagonal"  # with a spatial shape: "diagonal" (pixel pairs (p, p)) or "full" (all (p, p'))


def affine_kernel(s: KernelState, p: Mapping[str, sp.Symbol], parameterization: str, fan_in,
                  taps=lambda k: k) -> Tuple[sp.Expr, sp.Expr, sp.Expr, sp.Expr]:
    """kernel-math.md §2, shared by dense and conv (``taps`` the conv's filter mean C, identity for dense).

    Σ' = σ_w²·C[Σ] + σ_b²; Θ' = Σ' + σ_w²·C[Θ] (NTK) or fan_in·C[Σ] + σ_w²·C[Θ] + 1{bias} (standard,
    Σ before the layer; Sohl-Dickstein et al. 2020). Returns (cov1, cov2, nngp, ntk)."""
    w2 = p["w_std"] ** 2
    b2 = p["b_std"] ** 2 if "b_std" in p else sp.S.Zero
    cov1, cov2, nngp = (w2 * taps(k) + b2 for k in (s.cov1, s.cov2, s.nngp))
    if parameterization == "ntk":
        ntk = nngp + w2 * taps(s.ntk)
    else:
        ntk = fan_in * taps(s.nngp) + w2 * taps(s.ntk) + (1 if "b_std" in p else 0)
    return cov1, cov2, nngp, ntk


def elementwise_kernel(s: KernelState, dual_at) -> KernelState:
    """kernel-math.md §3 for any elementwise σ given ``dual_at(q1, q2, c) -> Dual``: Σ' = K_σ,
    Θ' = Θ·K̇_σ, and the variances by the same dual on the diagonal (c = q, so θ = 0 exactly).

    Spatial states: per pixel pair, at the arguments of :func:`ntkdsl.algebra.spatial.dual_arguments`
    (in the full layout Σ(x, x) at p and Σ(x', x') at p')."""
    at = dual_arguments(s)
    dual = dual_at(*at["nngp"])
    cov1 = dual_at(*at["cov1"]).nngp
    cov2 = dual_at(*at["cov2"]).nngp
    return KernelState(cov1, cov2, dual.nngp, s.ntk * dual.nngp_dot, gaussian=False, width=s.width,
                       nngp_dot=dual.nngp_dot, note=dual.method, shape=s.shape, layout=s.layout)

"""Activations without an elementary closed-form dual: their kernels are computed by quadrature.

tanh, the logistic sigmoid, softplus, SiLU/swish (Ramachandran et al. 2017; Elfwing et al. 2018)
and Mish (Misra 2019) have no known elementary dual (kernel-math.md §3). Their rows give σ only;
:func:`ntkdsl.activations.dual.numerical_dual` evaluates E[σ(u)σ(v)] and E[σ'(u)σ'(v)] with
kink-aware composite Gauss–Legendre quadrature (accuracy and cost: docs/numerical-duals.md).
"""

from __future__ import annotations

import sympy as sp

from .registry import REGISTRY, ActivationRow

_NUMERICAL = "no elementary closed form; numerical dual by quadrature (kernel-math.md §3)"


def _softplus(x):
    return sp.log(1 + sp.exp(x))


def _row(name, fn, doc, citation, aliases=()):
    REGISTRY.add(ActivationRow(name=name, params=(), fn=fn, nngp=None, nngp_dot=None,
                               citation=citation + "; " + _NUMERICAL, doc=doc), aliases=aliases)


_row("tanh", sp.tanh, "tanh(x)", "hyperbolic tangent")
_row("sigmoid", lambda x: 1 / (1 + sp.exp(-x)), "1/(1 + e^(−x))", "logistic sigmoid")
_row("softplus", _softplus, "log(1 + e^x)", "Dugas et al. 2001, 'Incorporating second-order functional knowledge'")
_row("silu", lambda x: x / (1 + sp.exp(-x)), "x/(1 + e^(−x))",
     "Elfwing, Uchibe & Doya 2018; Ramachandran, Zoph & Le 2017 (swish)", aliases=("swish",))
_row("mish", lambda x: x * sp.tanh(_softplus(x)), "x·tanh(log(1 + e^x))", "Misra 2019, 'Mish'")

"""σ and σ' of any elementwise activation, as vectorised float64 NumPy functions.

Every activation (catalog row, custom expression, composition) reaches the sampler as a one-variable
sympy ``Lambda`` (``node.elementwise(values)``); nothing here knows a particular activation, so new
catalog rows work without code. σ' is the symbolic derivative with the derivative of every jump
(``DiracDelta``, from ``Heaviside`` or ``sign``) taken as 0: what backpropagation sees almost
everywhere (kernel-math.md §3).

Both are compiled with :func:`sympy.lambdify` over NumPy/SciPy, deliberately *not* through the
kernel code printer, so that Monte Carlo tests of the analytic kernels do not share its code path.
A closed form can overflow in an intermediate step where the true value is finite
(``log(exp(x) + 1)`` at x = 800); entries that come out non-finite from a finite input are
recomputed with mpmath, whose exponent range is unbounded.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, NamedTuple

import numpy as np
import sympy as sp

from ..algebra.functions import derivative


class Elementwise(NamedTuple):
    """σ and σ' of one activation, each mapping a float64 array to one of the same shape."""

    sigma: Callable[[np.ndarray], np.ndarray]
    sigma_prime: Callable[[np.ndarray], np.ndarray]


def _compile(fn: sp.Lambda) -> Callable[[np.ndarray], np.ndarray]:
    (x,) = fn.variables
    fast = sp.lambdify(x, fn.expr, modules=["numpy", "scipy"])
    slow = sp.lambdify(x, fn.expr, modules="mpmath")

    def evaluate(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64)
        with np.errstate(all="ignore"):
            out = np.array(np.broadcast_to(fast(a), a.shape), dtype=np.float64)
        bad = ~np.isfinite(out) & np.isfinite(a)
        if bad.any():  # rare: an intermediate overflow (see the module docstring)
            out[bad] = [_float(slow(v)) for v in a[bad]]
        return out

    return evaluate


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):  # a complex mpmath result of a real-valued expression
        return float(getattr(value, "real", np.nan))


@lru_cache(maxsize=None)
def compile_elementwise(fn: sp.Lambda) -> Elementwise:
    """Vectorised σ and σ' of a one-variable sympy Lambda (cached: Lambdas are hashable).

    Args:
        fn: σ, parameters already replaced by numbers.

    Returns:
        :class:`Elementwise` whose functions accept and return float64 arrays.
    """
    return Elementwise(_compile(fn), _compile(derivative(fn)))

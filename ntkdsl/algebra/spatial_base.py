"""The base of the spatial operations (:mod:`ntkdsl.algebra.spatial`): a sympy function linear in its
first argument (a kernel array) with static settings, and the conversions of those settings."""

from __future__ import annotations

from typing import Sequence, Tuple

import sympy as sp
from sympy.core.symbol import Str

__all__ = ["SpatialOp", "ints", "static", "times"]


def ints(values: Sequence[int]) -> sp.Tuple:
    return sp.Tuple(*(sp.Integer(int(v)) for v in values))


def static(arg) -> object:
    """A static argument as a plain Python value: a (nested) tuple of ints, a string or an int."""
    if isinstance(arg, sp.Tuple):
        return tuple(static(a) for a in arg)
    if isinstance(arg, Str):
        return arg.name
    return int(arg)


def times(t) -> str:
    return r"\times ".join(str(v) for v in static(t))


class SpatialOp(sp.Function):
    """A linear map of kernel arrays (first argument) with static settings (the others)."""

    _constant_passes = False  # op(c) = c for a number c (means of a constant); else only op(0) = 0

    @classmethod
    def eval(cls, k, *settings):
        if k == 0:
            return sp.S.Zero
        if cls._constant_passes and k.is_number:
            return k
        return None

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_derivative(self, s):  # linear in the kernel: d op(K) = op(dK)
        return self.func(sp.diff(self.args[0], s), *self.args[1:])

    def _arg_tex(self, printer) -> str:
        return printer._print(self.args[0])

    @property
    def settings(self) -> Tuple[object, ...]:
        return tuple(static(a) for a in self.args[1:])

"""Built-in layers and argument converters: how each built-in layer's arguments become IR values.

A layer's parameters are :class:`Spec` rows (name, default, converter); a converter turns a lowered
value (a sympy number, a tuple or a :class:`~ntkdsl.ir.lower.Word`) into what the IR node stores,
raising a SpecError with the argument's span otherwise. ``LAYERS`` maps a layer's name to the
function that builds its IR node from a call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import sympy as sp

from ..errors import ArgumentSpecError, NameSpecError, StructureSpecError, did_you_mean
from ..frontend import ast
from . import nodes

MAX_WIDTH = 10**9
REQUIRED = object()


@dataclass(frozen=True)
class Word:
    """A bare name that resolved to nothing; meaningful only as an enumeration word."""

    name: str
    span: Optional[object]


@dataclass(frozen=True)
class Spec:
    """One parameter of a built-in: its name, default and converter (lowerer, value, span, name) -> IR value."""

    name: str
    default: object
    convert: Callable


# ---------------------------------------------------------------- converters: (lowerer, value, span, name[, env])
def positive_int(low, v, span, name: str, env=()) -> int:
    n = low.as_number(v, span, env, f"{name} (a positive integer)")
    if not (n.is_integer and n > 0):
        raise ArgumentSpecError(f"{name} must be a positive integer, got {n}", span)
    if n > MAX_WIDTH:
        raise ArgumentSpecError(f"{name} {n} is too large (at most {MAX_WIDTH})", span)
    return int(n)


def natural(low, v, span, name: str, env=()) -> sp.Expr:
    n = low.as_number(v, span, env, f"'{name}' (an integer ≥ 0)")
    if not (n.is_integer and n >= 0):
        raise ArgumentSpecError(f"{name} must be an integer ≥ 0, got {n}", span)
    if n > 64:
        raise ArgumentSpecError(f"{name} = {n} is too large (at most 64)", span)
    return n


def real(low, v, span, name: str, env=()) -> sp.Expr:
    return low.as_number(v, span, env, f"'{name}' (a number)")


def std(low, v, span, name: str, env=()) -> sp.Expr:
    x = real(low, v, span, name, env)
    if x.is_negative:
        raise ArgumentSpecError(f"{name} is a standard deviation and must be non-negative, got {x}", span)
    return x


def std_or_none(low, v, span, name: str, env=()) -> Optional[sp.Expr]:
    if v is None or (isinstance(v, Word) and v.name == "none"):
        return None
    if isinstance(v, Word):
        raise NameSpecError(f"{name} must be a number or `none`, got undefined name '{v.name}'{did_you_mean(v.name, ['none'])}", v.span)
    return std(low, v, span, name, env)


def enum(words: Sequence[str]):
    def convert(low, v, span, name: str, env=()) -> str:
        if isinstance(v, str) and v in words:  # a default
            return v
        if isinstance(v, Word) and v.name in words:
            return v.name
        got = f"'{v.name}'" if isinstance(v, Word) else "a number" if not isinstance(v, tuple) else "a sequence"
        hint = did_you_mean(v.name, words) if isinstance(v, Word) else ""
        raise ArgumentSpecError(f"{name} must be one of {', '.join(words)}; got {got}{hint}", span)

    return convert


def input_shape(low, v, span, name: str, env=()) -> Tuple[int, ...]:
    dims = v if isinstance(v, tuple) else (v,)
    if not dims:
        raise ArgumentSpecError("input needs at least one dimension", span)
    shape = tuple(positive_int(low, d, span, "each input dimension", env) for d in dims)
    if len(shape) > 1:
        raise StructureSpecError(
            f"input = {list(shape)} is an image or signal input; this version compiles fully connected "
            "networks only, whose input is a vector: input = D",
            span,
        )
    return shape


# ---------------------------------------------------------------- built-in structural layers
def _dense(low, st: ast.LayerCall, env, param: str) -> nodes.Dense:
    specs = [
        Spec("width", REQUIRED, positive_int),
        Spec("w_std", sp.S.One, std),
        Spec("b_std", None, std_or_none),
        Spec("parameterization", param, enum(nodes.PARAMETERIZATIONS)),
    ]
    args = low.bind("dense", specs, st.args, env, st.name_span)
    v = {s.name: s.convert(low, args[s.name].value, args[s.name].span, s.name, env) for s in specs}
    return nodes.Dense(v["width"], v["w_std"], v["b_std"], v["parameterization"], st.span)


def _identity(low, st: ast.LayerCall, env, param: str) -> nodes.Identity:
    low.bind("identity", [], st.args, env, st.name_span)
    return nodes.Identity(st.span)


LAYERS = {"dense": _dense, "identity": _identity}
